//! `config.toml`: the build's settings (README, "Configuration reference").
//!
//! Every key has a default, so an empty file is valid, and every table rejects unknown keys
//! so that a misspelt key is an error naming it rather than a setting silently ignored.
//! Errors carry the file and line, taken from the TOML parser's span.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result, line_of};
use crate::template::is_identifier;

/// Config's constants may nest this deep (as may prompts' outputs): state files that
/// hold them must stay readable (serde_json stops at 128 levels).
pub(crate) const MAX_VARIABLE_DEPTH: usize = 32;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) project: Project,
    pub(crate) llm: Llm,
    pub(crate) tokenizer: TokenizerConfig,
    pub(crate) budget: Budget,
    pub(crate) pricing: Option<Pricing>,
    pub(crate) retry: Retry,
    pub(crate) run: Run,
    /// Constants usable as `{{name}}` in every prompt.
    pub(crate) variables: BTreeMap<String, serde_json::Value>,
    pub(crate) phases: Vec<PhaseConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Project {
    pub(crate) name: String,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            name: "MAP4".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProviderKind {
    Openai,
    Anthropic,
    Command,
}

/// The variables in the context recall: those the prompt's placeholders use (the default:
/// by the end of the bundled build "all" is ~90 variables, ~1,000 tokens on every request,
/// which leaves the Features phase no room for output), or every variable known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ContextVariables {
    Used,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Llm {
    pub(crate) provider: ProviderKind,
    /// Defaults per provider; `OPENAI_BASE_URL` overrides it for `openai`.
    pub(crate) base_url: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) api_key_env: Option<String>,
    pub(crate) max_tokens: u32,
    pub(crate) temperature: f64,
    pub(crate) stream: bool,
    #[serde(deserialize_with = "duration")]
    pub(crate) connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) idle_timeout: Duration,
    pub(crate) system_template: Option<PathBuf>,
    /// Which variables the context recall lists as JSON.
    pub(crate) context_variables: ContextVariables,
    pub(crate) command: Vec<String>,
    pub(crate) env: Vec<String>,
}

impl Default for Llm {
    fn default() -> Self {
        Llm {
            provider: ProviderKind::Openai,
            base_url: None,
            model: None,
            api_key_env: None,
            max_tokens: 2000,
            temperature: 0.2,
            stream: true,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(120),
            system_template: None,
            context_variables: ContextVariables::Used,
            command: vec![
                "claude".into(),
                "-p".into(),
                "--output-format".into(),
                "json".into(),
            ],
            env: Vec::new(),
        }
    }
}

impl Llm {
    pub(crate) fn model(&self) -> &str {
        match (&self.model, self.provider) {
            (Some(m), _) => m,
            (None, ProviderKind::Anthropic) => "claude-3-5-haiku-latest",
            (None, _) => "gpt-4o-mini",
        }
    }

    pub(crate) fn api_key_env(&self) -> &str {
        match (&self.api_key_env, self.provider) {
            (Some(k), _) => k,
            (None, ProviderKind::Anthropic) => "ANTHROPIC_API_KEY",
            (None, ProviderKind::Command) => "ANTHROPIC_API_KEY",
            (None, ProviderKind::Openai) => "OPENAI_API_KEY",
        }
    }

    /// The base URL: `OPENAI_BASE_URL` (openai only), then config, then the provider's
    /// default; checked as [`check_url`] does, the error naming where it came from.
    pub(crate) fn base_url(&self) -> std::result::Result<reqwest::Url, String> {
        if self.provider == ProviderKind::Openai
            && let Ok(url) = std::env::var("OPENAI_BASE_URL")
            && !url.trim().is_empty()
        {
            return check_url(url.trim()).map_err(|e| format!("OPENAI_BASE_URL: {e}"));
        }
        let text = match (&self.base_url, self.provider) {
            (Some(u), _) => u.as_str(),
            (None, ProviderKind::Anthropic) => "https://api.anthropic.com",
            (None, _) => "https://api.openai.com/v1",
        };
        check_url(text).map_err(|e| format!("`llm.base_url`: {e}"))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TokenizerConfig {
    pub(crate) encoding: Option<crate::tokens::Encoding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnExceed {
    Halt,
    Warn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Budget {
    pub(crate) total: u64,
    pub(crate) per_prompt: u64,
    pub(crate) min_output: u64,
    pub(crate) on_exceed: OnExceed,
    pub(crate) max_cost_usd: Option<f64>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            total: 100_000,
            per_prompt: 3000,
            min_output: 256,
            on_exceed: OnExceed::Halt,
            max_cost_usd: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Pricing {
    pub(crate) input_per_mtok: f64,
    pub(crate) output_per_mtok: f64,
}

impl Pricing {
    pub(crate) fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_mtok + output as f64 * self.output_per_mtok) / 1e6
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Retry {
    pub(crate) max_attempts: u32,
    #[serde(deserialize_with = "duration")]
    pub(crate) initial_delay: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnFailure {
    Halt,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Run {
    pub(crate) on_failure: OnFailure,
    #[serde(deserialize_with = "duration")]
    pub(crate) max_duration: Duration,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            on_failure: OnFailure::Halt,
            max_duration: Duration::from_secs(8 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhaseConfig {
    pub(crate) dir: String,
    pub(crate) name: Option<String>,
    pub(crate) budget: Option<u64>,
}

/// A duration as messages show it: to the millisecond under ten seconds, to the second
/// above (`300ms`, `5s 90ms`, `1m 30s`), "ever" past a century (a server asking to wait
/// `1e20` seconds).
pub(crate) fn show_duration(d: Duration) -> String {
    if d > Duration::from_secs(100 * 365 * 24 * 3600) {
        return "more than a century".into();
    }
    let rounded = if d < Duration::from_secs(10) {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}

/// An endpoint's base URL: `http` or `https`, with a host, and no credentials (a key in a
/// URL would be written to logs and state; it belongs in the environment). The message
/// never repeats the URL, which may hold a password.
pub(crate) fn check_url(text: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        format!("{e}; write a full URL such as \"http://127.0.0.1:4000/v1\" or \"https://api.openai.com/v1\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is {:?}; use http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are refused (they would be written to logs and state); put the key in the environment variable llm.api_key_env names".into());
    }
    Ok(url)
}

/// Durations are strings such as `"90s"`, `"8h"`, `"1h 30m"` (humantime's syntax).
fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e}; write a number and a unit, such as \"90s\", \"10m\" or \"8h\""
        ))
    })
}

impl Config {
    /// Parses config text; `path` is only used in messages.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: format!(
                "{}; see the configuration reference in README.md",
                e.message().trim_end()
            ),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Loads `path`. A missing file is an error only when the user named it (`explicit`);
    /// otherwise every key takes its default.
    pub(crate) fn load(path: &Path, explicit: bool) -> Result<Config> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| Error::Config {
                    path: path.to_path_buf(),
                    line: Some(line_of(
                        &String::from_utf8_lossy(e.as_bytes()),
                        e.utf8_error().valid_up_to(),
                    )),
                    message: "the file is not UTF-8 text".into(),
                })?;
                Config::parse(&text, path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Config {
                path: path.to_path_buf(),
                line: None,
                message: "no such file; pass an existing file to --config".into(),
            }),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, message: String| Error::Config {
            path: path.to_path_buf(),
            line: None,
            message: format!("`{key}`: {message}"),
        };
        if self.llm.max_tokens == 0 {
            return Err(bad("llm.max_tokens", "must be at least 1".into()));
        }
        if !(0.0..=2.0).contains(&self.llm.temperature) {
            return Err(bad("llm.temperature", "must be between 0 and 2".into()));
        }
        for (key, d) in [
            ("llm.connect_timeout", self.llm.connect_timeout),
            ("llm.timeout", self.llm.timeout),
            ("llm.idle_timeout", self.llm.idle_timeout),
            ("run.max_duration", self.run.max_duration),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be longer than zero".into()));
            }
        }
        if self.retry.max_attempts == 0 {
            return Err(bad("retry.max_attempts", "must be at least 1".into()));
        }
        if self.retry.initial_delay > self.retry.max_delay {
            return Err(bad(
                "retry.initial_delay",
                "is longer than retry.max_delay".into(),
            ));
        }
        if self.llm.provider == ProviderKind::Command && self.llm.command.is_empty() {
            return Err(bad(
                "llm.command",
                "is empty; give the agent CLI and its arguments".into(),
            ));
        }
        if self.budget.per_prompt == 0 || self.budget.total == 0 {
            return Err(bad("budget", "budgets must be at least 1 token".into()));
        }
        let money = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(
                    key,
                    format!("is {v}; give a number of US dollars, 0 or more"),
                ))
            }
        };
        if let Some(max) = self.budget.max_cost_usd {
            money("budget.max_cost_usd", max)?;
        }
        if let Some(p) = &self.pricing {
            money("pricing.input_per_mtok", p.input_per_mtok)?;
            money("pricing.output_per_mtok", p.output_per_mtok)?;
        }
        if let Some(url) = &self.llm.base_url {
            check_url(url).map_err(|e| bad("llm.base_url", e))?;
        }
        let mut dirs = std::collections::BTreeSet::new();
        for (i, phase) in self.phases.iter().enumerate() {
            if !dirs.insert(phase.dir.as_str()) {
                return Err(bad(
                    &format!("phases[{i}].dir"),
                    format!("the folder {:?} is listed twice", phase.dir),
                ));
            }
            if phase.budget == Some(0) {
                return Err(bad(
                    &format!("phases[{i}].budget"),
                    "is 0; a phase budget must be at least 1 token (leave it out for none)".into(),
                ));
            }
        }
        for (name, value) in &self.variables {
            if !is_identifier(name) {
                return Err(bad(
                    &format!("variables.{name}"),
                    "a variable name is letters, digits and `_`, with `.` only between keys".into(),
                ));
            }
            if crate::checkpoint::depth(value) > MAX_VARIABLE_DEPTH {
                return Err(bad(
                    &format!("variables.{name}"),
                    format!("nests deeper than {MAX_VARIABLE_DEPTH} levels; give a flatter value"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn phase(&self, dir: &str) -> Option<&PhaseConfig> {
        self.phases.iter().find(|p| p.dir == dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn empty_file_takes_every_default() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.budget.total, 100_000);
        assert_eq!(c.budget.per_prompt, 3000);
        assert_eq!(c.budget.min_output, 256);
        assert_eq!(c.llm.max_tokens, 2000);
        assert_eq!(c.run.max_duration, Duration::from_secs(8 * 3600));
        assert_eq!(c.retry.max_attempts, 3);
    }

    #[test]
    fn misspelt_key_is_named_with_its_line() {
        let err = parse("[llm]\nmodel = \"x\"\nmax_tokns = 5\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("max_tokns"), "{msg}");
        assert!(msg.starts_with("config.toml:3:"), "{msg}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let err = parse("[run]\nmax_duration = \"8 hourz\"\n").expect_err("bad duration");
        let msg = err.to_string();
        assert!(msg.contains("config.toml:2"), "{msg}");
        assert!(msg.contains("invalid duration \"8 hourz\""), "{msg}");
    }

    #[test]
    fn durations_parse() {
        let c = parse("[llm]\ntimeout = \"90s\"\nidle_timeout = \"1h 30m\"\n").expect("valid");
        assert_eq!(c.llm.timeout, Duration::from_secs(90));
        assert_eq!(c.llm.idle_timeout, Duration::from_secs(5400));
    }

    #[test]
    fn durations_show_rounded() {
        for (d, shown) in [
            (Duration::from_millis(300), "300ms"),
            (Duration::new(5, 90), "5s"),
            (Duration::new(5, 90_000_000), "5s 90ms"),
            (Duration::new(90, 123_456_789), "1m 30s"),
            (Duration::MAX, "more than a century"),
        ] {
            assert_eq!(show_duration(d), shown, "{d:?}");
        }
    }

    #[test]
    fn base_urls() {
        for (url, ok) in [
            ("http://127.0.0.1:4000/v1", true),
            ("https://api.openai.com/v1", true),
            (
                "https://h/openai/deployments/x?api-version=2024-10-21",
                true,
            ),
            ("127.0.0.1:4341/v1", false),
            ("", false),
            ("ftp://h/v1", false),
            ("http://user:pw@h/v1", false),
            ("http://user@h/v1", false),
        ] {
            let got = check_url(url);
            assert_eq!(got.is_ok(), ok, "{url:?}: {got:?}");
            if let Err(e) = got {
                assert!(!e.contains("pw"), "{e}");
            }
        }
    }

    #[test]
    fn duplicate_phase_dir_is_an_error() {
        let err = parse("[[phases]]\ndir = \"a\"\n[[phases]]\ndir = \"a\"\n").expect_err("dup");
        assert!(err.to_string().contains("phases[1].dir"), "{err}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_gives_a_config_or_a_named_error(text in "(\\PC|\n|\\[|\\]|=|\")*") {
                if let Err(e) = Config::parse(&text, Path::new("config.toml")) {
                    prop_assert!(e.to_string().starts_with("config.toml"));
                }
            }
        }
    }
}
