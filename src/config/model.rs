//! The settings `config.toml` holds, as types: every key with its default, every table
//! refusing unknown keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use super::llm::{ContextVariables, Llm, MaxTokensParam, ProviderKind};
use super::values::duration;

/// What `[llm].command` may contain, substituted per call: the output cap, what remains of
/// the tightest USD limit, the prompt written to a file (for CLIs that take one), and the
/// workspace's path.
pub(crate) const COMMAND_PLACEHOLDERS: [&str; 5] = [
    "max_tokens",
    "budget_usd_left",
    "prompt_file",
    "workspace",
    "agent_session",
];

/// The most prompts a run may have in flight at once (`run.jobs`, `--jobs`).
pub(crate) const MAX_JOBS: u32 = 64;

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
    pub(crate) notify: Notify,
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
    /// The longest pause for a rate or usage limit to reset; past it the run halts.
    #[serde(deserialize_with = "duration")]
    pub(crate) max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_wait: Duration::from_secs(6 * 3600),
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
    /// How many prompts may be in flight at once (`run --jobs`): 1 runs them one after
    /// another.
    pub(crate) jobs: u32,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            on_failure: OnFailure::Halt,
            max_duration: Duration::from_secs(8 * 3600),
            checkpoint: CheckpointRule::Auto,
            jobs: 1,
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

/// `[notify]`: a command told when a run ends or pauses (one JSON document on stdin).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Notify {
    /// The program and its arguments; empty: nobody is told.
    pub(crate) command: Vec<String>,
    /// How long the run waits for it.
    #[serde(deserialize_with = "duration")]
    pub(crate) timeout: Duration,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            command: Vec::new(),
            timeout: Duration::from_secs(30),
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
    /// What the agent itself reported failing (its commands, its tools): `warn` shows
    /// them, `fail` makes them a content failure.
    pub(crate) agent_errors: AgentErrors,
    /// Before a prompt's first attempt, run its own checks on a copy of the commit it
    /// starts from (each at most a minute), and flag those that pass already.
    pub(crate) before: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AgentErrors {
    #[default]
    Warn,
    Fail,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            from_prompt: false,
            commands: Vec::new(),
            timeout: Duration::from_secs(600),
            env: Vec::new(),
            agent_errors: AgentErrors::Warn,
            before: true,
        }
    }
}

impl Config {
    pub(crate) fn phase(&self, dir: &str) -> Option<&PhaseConfig> {
        self.phases.iter().find(|p| p.dir == dir)
    }
}
