//! What an endpoint refuses, learned once and kept for the session: OpenAI's reasoning
//! models (the o-series, gpt-5) take the output cap only as `max_completion_tokens` and no
//! temperature but their default, while many local servers ignore `max_completion_tokens`
//! (no cap at all), so neither can be sent blindly. `llm.max_tokens_param = "auto"` picks
//! the name by host and model; a 400 that names the refused setting switches it once, the
//! request is sent again, and the runner journals what was learned so that a resumed run
//! starts with it.

use std::sync::Mutex;

use crate::config::MaxTokensParam;

/// The journal's name for the cap's setting, and for the temperature's.
const CAP_SETTING: &str = "llm.max_tokens_param";
const TEMPERATURE_SETTING: &str = "llm.temperature";
const NOT_SENT: &str = "not sent";

/// A change an endpoint made the runner make to what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The output cap goes under this name.
    Cap(MaxTokensParam),
    /// No temperature is sent.
    NoTemperature,
}

impl Change {
    /// As the journal writes it: the setting, and its value.
    pub(crate) fn setting(self) -> (&'static str, &'static str) {
        match self {
            Change::Cap(p) => (CAP_SETTING, name(p)),
            Change::NoTemperature => (TEMPERATURE_SETTING, NOT_SENT),
        }
    }

    /// From the journal; `None` for a setting this version does not know (it is not
    /// adopted: the endpoint refuses again, and is learned again).
    pub(crate) fn read(setting: &str, value: &str) -> Option<Change> {
        match (setting, value) {
            (TEMPERATURE_SETTING, NOT_SENT) => Some(Change::NoTemperature),
            (CAP_SETTING, "max_tokens") => Some(Change::Cap(MaxTokensParam::MaxTokens)),
            (CAP_SETTING, "max_completion_tokens") => {
                Some(Change::Cap(MaxTokensParam::MaxCompletionTokens))
            }
            _ => None,
        }
    }
}

/// A change the endpoint made the runner make, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Learned {
    pub(crate) change: Change,
    /// The endpoint's words.
    pub(crate) reason: String,
}

/// The settings one provider sends, as learned so far.
#[derive(Debug)]
pub(crate) struct Adapt {
    configured: MaxTokensParam,
    state: Mutex<Learning>,
}

#[derive(Debug, Default)]
struct Learning {
    /// The cap's name, once learned (`auto` only).
    cap: Option<MaxTokensParam>,
    no_temperature: bool,
    news: Vec<Learned>,
}

impl Adapt {
    pub(crate) fn new(configured: MaxTokensParam) -> Adapt {
        Adapt {
            configured,
            state: Mutex::new(Learning::default()),
        }
    }

    /// The name the output cap goes under for `model` at `host`.
    pub(crate) fn cap_name(&self, host: &str, model: &str) -> &'static str {
        let learned = self.state.lock().ok().and_then(|s| s.cap);
        let param = match (self.configured, learned) {
            (MaxTokensParam::Auto, Some(p)) => p,
            (MaxTokensParam::Auto, None) if openai_host(host) && reasons(model) => {
                MaxTokensParam::MaxCompletionTokens
            }
            (MaxTokensParam::Auto, None) => MaxTokensParam::MaxTokens,
            (p, _) => p,
        };
        name(param)
    }

    /// The temperature to send, if any.
    pub(crate) fn temperature(&self, configured: Option<f64>) -> Option<f64> {
        let dropped = self.state.lock().is_ok_and(|s| s.no_temperature);
        configured.filter(|_| !dropped)
    }

    /// After a 400 whose message is `message`: whether it refused the cap's name `cap` (in
    /// `auto`) or the temperature (when one was sent); if so the change is learned and the
    /// request should go again, once.
    pub(crate) fn learn_from(&self, message: &str, cap: &str, sent_temperature: bool) -> bool {
        let lower = message.to_ascii_lowercase();
        let refused = [
            "unsupported",
            "not supported",
            "does not support",
            "unrecognized",
            "unknown",
            "only the default",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if !refused {
            return false;
        }
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if sent_temperature && lower.contains("temperature") {
            state.no_temperature = true;
            state.news.push(Learned {
                change: Change::NoTemperature,
                reason: message.to_string(),
            });
            return true;
        }
        let switchable = [
            MaxTokensParam::MaxTokens,
            MaxTokensParam::MaxCompletionTokens,
        ]
        .iter()
        .any(|p| name(*p) == cap);
        if self.configured == MaxTokensParam::Auto && switchable && lower.contains(cap) {
            let other = if cap == name(MaxTokensParam::MaxTokens) {
                MaxTokensParam::MaxCompletionTokens
            } else {
                MaxTokensParam::MaxTokens
            };
            state.cap = Some(other);
            state.news.push(Learned {
                change: Change::Cap(other),
                reason: message.to_string(),
            });
            return true;
        }
        false
    }

    /// What a resumed session had learned (from the journal).
    pub(crate) fn adopt(&self, change: Change) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match change {
            Change::NoTemperature => state.no_temperature = true,
            Change::Cap(p) => state.cap = Some(p),
        }
    }

    /// What was learned since the last call, for the journal.
    pub(crate) fn take(&self) -> Vec<Learned> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.news))
            .unwrap_or_default()
    }
}

fn name(param: MaxTokensParam) -> &'static str {
    match param {
        MaxTokensParam::MaxCompletionTokens => "max_completion_tokens",
        _ => "max_tokens",
    }
}

/// OpenAI's own hosts and Azure's, where the reasoning models need `max_completion_tokens`.
fn openai_host(host: &str) -> bool {
    host == "api.openai.com"
        || [
            ".openai.azure.com",
            ".cognitiveservices.azure.com",
            ".services.ai.azure.com",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// A reasoning model of OpenAI's (`o1`, `o3-mini`, `o4-mini`, `gpt-5`, `gpt-5.1-codex`):
/// it thinks before its first token, takes `max_completion_tokens`, and only the default
/// temperature.
pub(crate) fn reasons(model: &str) -> bool {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let mut chars = m.chars();
    (chars.next() == Some('o') && chars.next().is_some_and(|c| c.is_ascii_digit()))
        || m.starts_with("gpt-5")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP_REFUSED: &str = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead. (unsupported_parameter)";
    const TEMPERATURE_REFUSED: &str = "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported. (unsupported_value)";

    #[test]
    fn the_cap_name_by_host_and_model() {
        let auto = Adapt::new(MaxTokensParam::Auto);
        for (host, model, want) in [
            ("api.openai.com", "o3-mini", "max_completion_tokens"),
            ("api.openai.com", "gpt-5.1", "max_completion_tokens"),
            ("api.openai.com", "gpt-4o-mini", "max_tokens"),
            ("me.openai.azure.com", "o4-mini", "max_completion_tokens"),
            (
                "me.cognitiveservices.azure.com",
                "gpt-5",
                "max_completion_tokens",
            ),
            ("127.0.0.1", "o3", "max_tokens"),
            ("openrouter.ai", "openai/o3", "max_tokens"),
            ("localhost", "llama3", "max_tokens"),
        ] {
            assert_eq!(auto.cap_name(host, model), want, "{host} {model}");
        }
        let fixed = Adapt::new(MaxTokensParam::MaxCompletionTokens);
        assert_eq!(
            fixed.cap_name("localhost", "llama3"),
            "max_completion_tokens"
        );
    }

    #[test]
    fn a_refused_cap_name_is_switched_once_and_remembered() {
        let a = Adapt::new(MaxTokensParam::Auto);
        assert!(a.learn_from(CAP_REFUSED, "max_tokens", false));
        assert_eq!(a.cap_name("localhost", "x"), "max_completion_tokens");
        let news = a.take();
        assert_eq!(news.len(), 1);
        assert_eq!(
            news[0].change.setting(),
            (CAP_SETTING, "max_completion_tokens")
        );
        assert!(a.take().is_empty());
        // A server that ignores or refuses the other name: back.
        assert!(a.learn_from(
            "Unrecognized request argument supplied: max_completion_tokens",
            "max_completion_tokens",
            false
        ));
        assert_eq!(a.cap_name("localhost", "x"), "max_tokens");
    }

    #[test]
    fn a_fixed_cap_name_is_never_switched() {
        let a = Adapt::new(MaxTokensParam::MaxTokens);
        assert!(!a.learn_from(CAP_REFUSED, "max_tokens", false));
        assert_eq!(a.cap_name("api.openai.com", "o3"), "max_tokens");
    }

    #[test]
    fn a_refused_temperature_is_dropped() {
        let a = Adapt::new(MaxTokensParam::Auto);
        assert_eq!(a.temperature(Some(0.2)), Some(0.2));
        assert!(
            !a.learn_from(TEMPERATURE_REFUSED, "max_tokens", false),
            "none was sent"
        );
        assert!(a.learn_from(TEMPERATURE_REFUSED, "max_tokens", true));
        assert!(a.learn_from(
            "Unsupported parameter: 'temperature' is not supported with this model.",
            "max_tokens",
            true
        ));
        assert_eq!(a.temperature(Some(0.2)), None);
    }

    #[test]
    fn other_refusals_are_not_learned() {
        let a = Adapt::new(MaxTokensParam::Auto);
        for message in [
            "Invalid 'messages[0].content': string too long.",
            "model not found",
            "",
        ] {
            assert!(!a.learn_from(message, "max_tokens", true), "{message}");
        }
    }

    #[test]
    fn a_resumed_session_adopts_what_was_learned() {
        let a = Adapt::new(MaxTokensParam::Auto);
        // As the journal holds them; a setting this version does not know is not adopted.
        for (setting, value) in [
            (CAP_SETTING, "max_completion_tokens"),
            (TEMPERATURE_SETTING, NOT_SENT),
        ] {
            a.adopt(Change::read(setting, value).expect("known"));
        }
        assert_eq!(Change::read("llm.other", "x"), None);
        assert_eq!(a.cap_name("localhost", "x"), "max_completion_tokens");
        assert_eq!(a.temperature(Some(1.0)), None);
    }
}
