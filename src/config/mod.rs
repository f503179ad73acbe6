//! `config.toml`: the build's settings (docs, "Configuration reference").
//!
//! Every key has a default, so an empty file is valid, and every table rejects unknown keys
//! so that a misspelt key is an error naming it rather than a setting silently ignored.
//! Errors carry the file and line, taken from the TOML parser's span.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result, line_of};

mod llm;
mod validate;
mod values;

pub(crate) use llm::{ContextVariables, Llm, MaxTokensParam, ProviderKind};
use values::duration;

/// What `[llm].command` may contain, substituted per call: the output cap, what remains of
/// the tightest USD limit, the prompt written to a file (for CLIs that take one), and the
/// workspace's path.
pub(crate) const COMMAND_PLACEHOLDERS: [&str; 4] =
    ["max_tokens", "budget_usd_left", "prompt_file", "workspace"];

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
    pub(crate) workspace: WorkspaceConfig,
    pub(crate) verify: Verify,
    pub(crate) mock: MockConfig,
    pub(crate) prompts: PromptsConfig,
    pub(crate) context: ContextConfig,
    /// Constants usable as `{{name}}` in every prompt.
    pub(crate) variables: BTreeMap<String, serde_json::Value>,
    pub(crate) phases: Vec<PhaseConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Project {
    pub(crate) name: String,
    /// The prompts: a folder (of phase folders, or of prompt files) or a single plan file;
    /// relative to the config file, made absolute when the config is loaded. Unset:
    /// `prompts/` beside the config.
    pub(crate) prompts: Option<PathBuf>,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            name: "MAP4".into(),
            prompts: None,
        }
    }
}

/// `[prompts]`: what of each prompt file is sent.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PromptsConfig {
    pub(crate) send: Send,
}

/// What of a prompt file is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Send {
    /// The whole file (front matter removed).
    #[default]
    File,
    /// Its untagged fenced blocks (or `text`, `markdown`, `md`, `prompt`), joined: the
    /// prompt inside notes for a human ("copy the prompt below").
    Fenced,
}

/// `[context]`: what goes with every prompt.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ContextConfig {
    /// Files sent with every prompt (`AGENTS.md`, a global context): in the system message
    /// for chat providers, ahead of the prompt for agents. Relative to the config file.
    pub(crate) files: Vec<PathBuf>,
    /// Earlier prompts and their accepted replies, sent as the conversation's earlier turns.
    pub(crate) history: History,
    /// The most tokens of history sent; the oldest turns go first (the newest is kept).
    pub(crate) max_tokens: u64,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            files: Vec::new(),
            history: History::None,
            max_tokens: 8000,
        }
    }
}

/// Which earlier turns a prompt carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum History {
    /// None: each prompt alone, with the variables so far (the seed's way).
    #[default]
    None,
    /// The prompt just before, and its reply.
    Previous,
    /// Every earlier prompt and its reply (oldest dropped first past `max_tokens`).
    All,
}

/// Which prompts must end their reply with a checkpoint block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckpointRule {
    /// Those with a `## Checkpoint` section, or whose outputs a later prompt uses.
    #[default]
    Auto,
    Required,
    Optional,
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
    /// Input read from the provider's prompt cache (default: the input price).
    pub(crate) cache_read_per_mtok: Option<f64>,
    /// Input written to the cache (default: the input price).
    pub(crate) cache_write_per_mtok: Option<f64>,
}

impl Pricing {
    /// The cost of `input` tokens (cache reads and writes included, priced as such) and
    /// `output` tokens.
    pub(crate) fn cost(&self, input: u64, output: u64, cache_read: u64, cache_write: u64) -> f64 {
        let plain = input.saturating_sub(cache_read).saturating_sub(cache_write);
        let read = self.cache_read_per_mtok.unwrap_or(self.input_per_mtok);
        let write = self.cache_write_per_mtok.unwrap_or(self.input_per_mtok);
        (plain as f64 * self.input_per_mtok
            + cache_read as f64 * read
            + cache_write as f64 * write
            + output as f64 * self.output_per_mtok)
            / 1e6
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
    /// Which prompts must return a checkpoint block (a prompt's front matter or footer
    /// says otherwise for itself).
    pub(crate) checkpoint: CheckpointRule,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            on_failure: OnFailure::Halt,
            max_duration: Duration::from_secs(8 * 3600),
            checkpoint: CheckpointRule::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhaseConfig {
    pub(crate) dir: String,
    pub(crate) name: Option<String>,
    pub(crate) budget: Option<u64>,
    /// US dollars the phase may spend (agents report their cost; else `[pricing]`).
    pub(crate) budget_usd: Option<f64>,
    /// Checks after every prompt of the phase.
    #[serde(default)]
    pub(crate) verify: Vec<String>,
}

/// `[mock]`: how the embedded model (`provider = "mock"`, `run --mock`) behaves.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MockConfig {
    /// How long each answer takes (to watch the progress bars).
    #[serde(deserialize_with = "duration")]
    pub(crate) latency: Duration,
    /// Prompts (ids) answered with a failure, to see one and a `rerun`.
    pub(crate) fail: Vec<String>,
}

/// `[workspace]`: the folder an agent builds in (off by default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WorkspaceConfig {
    /// Relative to the config file's folder; made absolute when the config is loaded.
    pub(crate) dir: Option<PathBuf>,
    /// Snapshots with git: a commit per accepted prompt (default: on once `dir` is set).
    pub(crate) git: Option<bool>,
    /// What snapshots leave out and restores keep (gitignore-style patterns); default
    /// [`DEFAULT_EXCLUDES`].
    pub(crate) exclude: Option<Vec<String>>,
}

/// What a snapshot leaves out unless `[workspace] exclude` says otherwise: virtualenvs,
/// `node_modules`, caches and bytecode, which are large, rebuilt from what is committed,
/// and kept across restores.
pub(crate) const DEFAULT_EXCLUDES: &[&str] = &[
    ".venv/",
    "venv/",
    "node_modules/",
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".tox/",
    ".nox/",
    ".cache/",
];

impl WorkspaceConfig {
    /// Whether the workspace is a git repository the runner snapshots.
    pub(crate) fn snapshots(&self) -> bool {
        self.dir.is_some() && self.git.unwrap_or(true)
    }

    /// The snapshot excludes in force.
    pub(crate) fn excludes(&self) -> Vec<String> {
        match &self.exclude {
            Some(list) => list.clone(),
            None => DEFAULT_EXCLUDES.iter().map(|s| (*s).to_string()).collect(),
        }
    }
}

/// `[verify]`: checks that decide whether a prompt is accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Verify {
    /// Run the shell blocks of each prompt's `## Validation` section.
    pub(crate) from_prompt: bool,
    /// After every prompt.
    pub(crate) commands: Vec<String>,
    #[serde(deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    /// Variables of the runner's environment that checks get, beside PATH, HOME, the
    /// locale and `llm.env` (never the API key).
    pub(crate) env: Vec<String>,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            from_prompt: false,
            commands: Vec::new(),
            timeout: Duration::from_secs(600),
            env: Vec::new(),
        }
    }
}

impl Config {
    /// Parses config text; `path` is only used in messages.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: format!(
                "{}; see the configuration reference in docs/src/configuration.md",
                e.message().trim_end()
            ),
        })?;
        validate::validate(&config, path)?;
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
                let mut config = Config::parse(&text, path)?;
                config.anchor(path)?;
                Ok(config)
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

    /// Makes paths given relative to the config file absolute (or relative to where the
    /// command runs): `project.prompts`, `[context] files`, `[workspace].dir` (and
    /// defines the built-in variable `{{workspace}}` as it), and an agent program given as
    /// a relative path (`./agent.sh`), which runs in the workspace.
    fn anchor(&mut self, path: &Path) -> Result<()> {
        let base = path.parent().unwrap_or(Path::new(""));
        if let Some(prompts) = &self.project.prompts {
            self.project.prompts = Some(base.join(prompts));
        }
        for file in &mut self.context.files {
            *file = base.join(&*file);
        }
        if let Some(program) = self.llm.command.first_mut()
            && program.contains('/')
            && Path::new(program.as_str()).is_relative()
            && let Ok(abs) = std::path::absolute(base.join(program.as_str()))
        {
            *program = abs.display().to_string();
        }
        let Some(dir) = &self.workspace.dir else {
            return Ok(());
        };
        let dir = std::path::absolute(base.join(dir)).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: None,
            message: format!("`workspace.dir`: {e}"),
        })?;
        if self.variables.contains_key("workspace") {
            return Err(Error::Config {
                path: path.to_path_buf(),
                line: None,
                message: "`variables.workspace`: `{{workspace}}` is the workspace's path, built in once [workspace].dir is set; rename the variable".into(),
            });
        }
        self.variables.insert(
            "workspace".into(),
            serde_json::Value::from(dir.display().to_string()),
        );
        self.workspace.dir = Some(dir);
        Ok(())
    }

    pub(crate) fn phase(&self, dir: &str) -> Option<&PhaseConfig> {
        self.phases.iter().find(|p| p.dir == dir)
    }
}

#[cfg(test)]
mod tests {
    use super::validate::check_url;
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
