//! `config.toml`: the build's settings (spec, "Configuration reference").
//!
//! Every key has a default, so an empty file is valid, and every table rejects unknown keys
//! so that a misspelt key is an error naming it rather than a setting silently ignored.
//! Errors carry the file and line, taken from the TOML parser's span.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result, line_of};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub project: Project,
    pub llm: Llm,
    pub tokenizer: TokenizerConfig,
    pub budget: Budget,
    pub pricing: Option<Pricing>,
    pub retry: Retry,
    pub run: Run,
    /// Constants usable as `{{name}}` in every prompt.
    pub variables: BTreeMap<String, serde_json::Value>,
    pub phases: Vec<PhaseConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Project {
    pub name: String,
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
pub enum ProviderKind {
    Openai,
    Anthropic,
    Command,
}

/// The variables in the context recall: those the prompt's placeholders use (the default:
/// by the end of the bundled build "all" is ~90 variables, ~1,000 tokens on every request,
/// which leaves the Features phase no room for output), or every variable known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextVariables {
    Used,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Llm {
    pub provider: ProviderKind,
    /// Defaults per provider; `OPENAI_BASE_URL` overrides it for `openai`.
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub max_tokens: u32,
    pub temperature: f64,
    pub stream: bool,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    pub system_template: Option<PathBuf>,
    /// Which variables the context recall lists as JSON.
    pub context_variables: ContextVariables,
    pub command: Vec<String>,
    pub env: Vec<String>,
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
    pub fn model(&self) -> &str {
        match (&self.model, self.provider) {
            (Some(m), _) => m,
            (None, ProviderKind::Anthropic) => "claude-3-5-haiku-latest",
            (None, _) => "gpt-4o-mini",
        }
    }

    pub fn api_key_env(&self) -> &str {
        match (&self.api_key_env, self.provider) {
            (Some(k), _) => k,
            (None, ProviderKind::Anthropic) => "ANTHROPIC_API_KEY",
            (None, ProviderKind::Command) => "ANTHROPIC_API_KEY",
            (None, ProviderKind::Openai) => "OPENAI_API_KEY",
        }
    }

    /// The base URL: `OPENAI_BASE_URL` (openai only), then config, then the provider's default.
    pub fn base_url(&self) -> String {
        if self.provider == ProviderKind::Openai
            && let Ok(url) = std::env::var("OPENAI_BASE_URL")
            && !url.trim().is_empty()
        {
            return url.trim_end_matches('/').to_string();
        }
        match (&self.base_url, self.provider) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, ProviderKind::Anthropic) => "https://api.anthropic.com".into(),
            (None, _) => "https://api.openai.com/v1".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    pub encoding: Option<crate::tokens::Encoding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    Halt,
    Warn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    pub total: u64,
    pub per_prompt: u64,
    pub min_output: u64,
    pub on_exceed: OnExceed,
    pub max_cost_usd: Option<f64>,
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
pub struct Pricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Pricing {
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_mtok + output as f64 * self.output_per_mtok) / 1e6
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retry {
    pub max_attempts: u32,
    #[serde(deserialize_with = "duration")]
    pub initial_delay: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_delay: Duration,
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
pub enum OnFailure {
    Halt,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Run {
    pub on_failure: OnFailure,
    #[serde(deserialize_with = "duration")]
    pub max_duration: Duration,
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
pub struct PhaseConfig {
    pub dir: String,
    pub name: Option<String>,
    pub budget: Option<u64>,
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
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
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
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
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
        let mut dirs = std::collections::BTreeSet::new();
        for (i, phase) in self.phases.iter().enumerate() {
            if !dirs.insert(phase.dir.as_str()) {
                return Err(bad(
                    &format!("phases[{i}].dir"),
                    format!("the folder {:?} is listed twice", phase.dir),
                ));
            }
        }
        for name in self.variables.keys() {
            if !crate::plan::is_identifier(name) {
                return Err(bad(
                    &format!("variables.{name}"),
                    "a variable name is letters, digits, `_` and `.`".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn phase(&self, dir: &str) -> Option<&PhaseConfig> {
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
