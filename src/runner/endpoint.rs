//! The endpoint in a run: how much input a request is reserved at (exact, calibrated, or
//! with a margin), what it taught the runner during a call and what the user must hear of
//! it (settings it refused, journaled so that a resumed run starts with them; a reply
//! longer than the cap sent; no input counted), and, for `-v`, what came back.

use std::cell::Cell;

use super::accounting;
use super::events::Said;
use super::steps::Prepared;
use crate::checkpoint::split_thinking;
use crate::providers::{Count, Provider, Reply};
use crate::request::{Request, RequestBuilder};
use crate::state::Event;

/// Before an endpoint whose tokenizer is not tiktoken's has reported any usage (and where
/// it cannot count for free), requests are counted at this multiple of tiktoken's count:
/// other tokenizers count up to a third more for English and code (Claude's, Gemma's,
/// Mistral's); the first reported usage then calibrates the count.
const UNCALIBRATED_MARGIN: f64 = 1.5;

/// Where requests go and what is learned of it in a run: the provider, the requests'
/// builder, and how its counts are to be taken.
pub(crate) struct Endpoint<'a> {
    pub(crate) provider: Provider,
    /// `[[llm.fallback]]`, in order, each with its name for the journal.
    pub(crate) fallbacks: Vec<(String, Provider)>,
    /// Until when (Unix milliseconds) each is at a limit: the primary first, then the
    /// fallbacks.
    limited: Vec<Cell<u64>>,
    pub(crate) builder: RequestBuilder<'a>,
    /// The tokenizer is the model's own (tiktoken for an OpenAI model): counts are exact.
    pub(crate) tokenizer_exact: bool,
    /// Whether to ask the endpoint to count (until it says it cannot).
    endpoint_counts: Cell<bool>,
    /// A report of no input was warned about (once a run).
    zero_input_told: Cell<bool>,
}

impl<'a> Endpoint<'a> {
    /// The journal's record of attempt `attempt` at prompt `id` (file `file`) as it starts,
    /// `p` ready to send, its processes marked `mark`, in `worktree` if it has one; and a
    /// line for `-v`.
    pub(crate) fn started(
        &self,
        (id, file, attempt): (&str, &str, u32),
        p: &Prepared,
        mark: &crate::process::Mark,
        worktree: Option<&std::path::Path>,
    ) -> Said {
        let mut said = Said::event(Event::AttemptStarted {
            id: id.to_string(),
            file: file.to_string(),
            attempt,
            input_tokens: p.reserved,
            max_tokens: p.max_tokens,
            tokenizer_tokens: (p.reserved != p.counted).then_some(p.counted),
            by: self.at(p.by).1.map(str::to_string),
            mark: Some(mark.0.clone()),
            worktree: worktree.map(|d| d.display().to_string()),
        });
        said.details.push(format!(
            "{id} attempt {attempt}: sending to {}: model {}, {} input tokens (tokenizer {}), max_tokens {}",
            self.at(p.by).0.describe(),
            p.request.model,
            p.reserved,
            p.counted,
            p.max_tokens
        ));
        said
    }

    pub(crate) fn new(
        provider: Provider,
        builder: RequestBuilder<'a>,
        model: &str,
    ) -> Endpoint<'a> {
        Endpoint {
            tokenizer_exact: provider.counts_exactly(model),
            provider,
            fallbacks: Vec::new(),
            limited: vec![Cell::new(0)],
            builder,
            endpoint_counts: Cell::new(true),
            zero_input_told: Cell::new(false),
        }
    }

    /// With `[[llm.fallback]]`, each named for the journal.
    pub(crate) fn with_fallbacks(mut self, fallbacks: Vec<(String, Provider)>) -> Self {
        self.limited = (0..=fallbacks.len()).map(|_| Cell::new(0)).collect();
        self.fallbacks = fallbacks;
        self
    }

    /// Which answers an attempt started at `now_ms`: the first not at a limit (0 the
    /// primary, then the fallbacks), else the primary.
    pub(crate) fn pick(&self, now_ms: u64) -> usize {
        (self.limited.iter())
            .position(|until| until.get() <= now_ms)
            .unwrap_or(0)
    }

    /// The provider `pick` chose, and its name (`None`: the primary).
    pub(crate) fn at(&self, i: usize) -> (&Provider, Option<&str>) {
        match i.checked_sub(1).and_then(|f| self.fallbacks.get(f)) {
            Some((name, p)) => (p, Some(name.as_str())),
            None => (&self.provider, None),
        }
    }

    /// Provider `i` is at a limit until `until_ms`: whether another can answer meanwhile.
    pub(crate) fn limited_until(&self, i: usize, until_ms: u64, now_ms: u64) -> bool {
        if let Some(cell) = self.limited.get(i) {
            cell.set(until_ms);
        }
        self.limited.iter().any(|until| until.get() <= now_ms)
    }

    /// An agent CLI (it cannot be capped mid-call), not an HTTP endpoint.
    pub(crate) fn is_agent(&self) -> bool {
        !self.provider.caps_output()
    }

    /// The input to reserve for `request` (`counted` by the tokenizer): exact where the
    /// tokenizer is the model's or the endpoint counts for free; scaled by calibration
    /// (`calibrated`, the fold's, once the endpoint has reported usage); else scaled by a
    /// margin.
    pub(crate) async fn reserved_input(
        &self,
        calibrated: Option<u64>,
        request: &Request,
        counted: u64,
    ) -> (u64, Said) {
        if let Some(c) = calibrated {
            return (c, Said::default());
        }
        if self.tokenizer_exact {
            return (counted, Said::default());
        }
        let mut said = Said::default();
        if self.endpoint_counts.get() {
            match self.provider.count(request).await {
                Count::Exact(n) => return (n, said),
                Count::Unsupported => self.endpoint_counts.set(false),
                Count::Failed(why) => {
                    said = Said::warning(format!(
                        "the endpoint could not count the request ({why}); counting it with a margin"
                    ))
                }
            }
        }
        ((counted as f64 * UNCALIBRATED_MARGIN).ceil() as u64, said)
    }

    /// The settings the endpoint refused during the last call, as changed, each with a
    /// warning (journaled, so that a resumed run starts with them).
    pub(crate) fn learned(&self, id: &str) -> Said {
        let mut said = Said::default();
        for learned in self.provider.learned() {
            let (setting, value) = learned.change.setting();
            said.warnings.push(format!(
                "{id}: the endpoint refused a setting, so {} is now {} for this session (it said: {})",
                setting, value, learned.reason
            ));
            said.events.push(Event::Learned {
                setting: setting.to_string(),
                value: value.to_string(),
                reason: learned.reason,
            });
        }
        said
    }

    /// What `reply` to attempt `attempt` of prompt `id` (sent: `sent` tokens by the
    /// tokenizer's count, asking for `max_tokens`) is counted as, with what the user must
    /// hear of it (journaled with the attempt).
    pub(crate) fn count_reply(
        &self,
        id: &str,
        attempt: u32,
        reply: &Reply,
        sent: u64,
        max_tokens: u32,
    ) -> (accounting::Counted, Said) {
        let encoding = &self.builder.encoding;
        let text_tokens = encoding.count(&reply.text);
        let agent = self.is_agent();
        let mut counted = accounting::count(reply.usage.as_ref(), sent, text_tokens, agent);
        if let (0, Some(thinking)) = (counted.reasoning, split_thinking(&reply.text).0) {
            counted.reasoning = encoding.count(thinking).min(counted.output);
        }
        let mut said = self.counts_told(id, &counted, sent, max_tokens);
        if let Some((why, _)) = &counted.distrusted {
            let message = format!(
                "attempt {attempt}: the endpoint's usage report cannot be true ({why}); it is kept in the journal and the tokenizer's count is used"
            );
            said.warnings.push(format!("{id}: {message}"));
            said.events.push(Event::Warning {
                id: Some(id.to_string()),
                message,
            });
        }
        (counted, said)
    }

    /// The warnings one reply's counts call for, shown and to be journaled with it.
    fn counts_told(
        &self,
        id: &str,
        counted: &accounting::Counted,
        sent: u64,
        max_tokens: u32,
    ) -> Said {
        let cap = self.provider.caps_output().then_some(max_tokens);
        let said = accounting::warnings(counted, sent, cap, self.zero_input_told.get());
        if counted.input == 0 && !counted.estimated {
            self.zero_input_told.set(true);
        }
        let mut out = Said::default();
        for message in said {
            out.warnings.push(format!("{id}: {message}"));
            out.events.push(Event::Warning {
                id: Some(id.to_string()),
                message,
            });
        }
        out
    }
}

/// For `-v`: what came back.
pub(super) fn reply_detail(
    id: &str,
    attempt: u32,
    reply: &Reply,
    counted: &accounting::Counted,
    duration_ms: u64,
) -> String {
    format!(
        "{id} attempt {attempt}: {} after {duration_ms} ms, finish {}, {} in / {} out{}{}{}",
        if reply.usage.is_some() {
            "reply"
        } else {
            "reply without usage"
        },
        reply.finish.as_str(),
        counted.input,
        counted.output,
        if counted.reasoning > 0 {
            format!(" ({} reasoning)", counted.reasoning)
        } else {
            String::new()
        },
        if counted.estimated {
            " (estimated)"
        } else {
            ""
        },
        reply
            .request_id
            .as_deref()
            .map(|r| format!(", request id {r}"))
            .unwrap_or_default(),
    )
}
