//! One typed model of everything scripts read (docs, "Machine-readable output"): the
//! state of a session (`status.json`, which `status --json` prints as it is), a session's
//! history (`report --json`), and `run --json`'s events. The runner and the commands write
//! them from these types, and the tests read them back into the same types, so that a key
//! cannot drift between two outputs or away from what the tests check (nextest's pattern).
//! This module is public for that reason; it holds data, and how its words read.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Where a prompt stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStatus {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
}

impl PromptStatus {
    /// As the documents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptStatus::Pending => "pending",
            PromptStatus::Running => "running",
            PromptStatus::Completed => "completed",
            PromptStatus::Failed => "failed",
            PromptStatus::Skipped => "skipped",
        }
    }
}

/// Per-prompt facts folded from the journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PromptState {
    pub file: String,
    pub status: PromptStatus,
    /// Attempts made in the session.
    pub attempts: u32,
    /// The highest attempt number so far (attempts are numbered per prompt across the
    /// session).
    #[serde(skip)]
    pub last_attempt: u32,
    /// Attempts that count against `retry.max_attempts`: those with a result since the
    /// prompt last completed, failed or was skipped. An attempt the runner did not see
    /// through (interrupted, or cut by a crash) is not the prompt's failure and does not
    /// count (a crash's is counted against the budget, at its worst case). A run resumed
    /// after a halt goes on counting; a new `run` after a failure (a decision of the
    /// user's) starts again.
    #[serde(skip)]
    pub attempts_used: u32,
    /// Why the last attempt failed on content, for the next attempt's note.
    #[serde(skip)]
    pub retry_note: Option<String>,
    /// The largest request sent for this prompt (input tokens).
    pub max_input: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Of `tokens_in`: read from and written to the provider's cache.
    #[serde(skip_serializing_if = "is_zero_u64", default)]
    pub cache_read: u64,
    #[serde(skip_serializing_if = "is_zero_u64", default)]
    pub cache_write: u64,
    /// Of `tokens_out`: reasoning.
    #[serde(skip_serializing_if = "is_zero_u64", default)]
    pub reasoning: u64,
    pub estimated: bool,
    pub duration_ms: u64,
    pub cost_usd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub files_created: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Attempts with no recorded result (the runner died mid-request).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub possibly_billed: u32,
    /// Their worst case (input + max_tokens), part of `tokens_in` and `tokens_out`.
    #[serde(skip_serializing_if = "is_zero_u64", default)]
    pub possibly_billed_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The workspace's commit of its accepted work.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub commit: Option<String>,
    /// The last result of each of its checks.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub checks: Vec<CheckState>,
    /// What it spent against the token budgets: input and output, an agent's cache reads
    /// apart (they are shown and priced, not budgeted).
    #[serde(default)]
    pub budgeted: u64,
    /// The agent session its accepted call reported (Claude Code's `session_id`, Codex's
    /// thread), for `llm.continue_session`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_session: Option<String>,
    /// Iterations of its `until` loop accepted so far (none once it completes).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub iteration: u32,
    /// The last iteration's commit: the next attempt builds on it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iteration_commit: Option<String>,
    /// Why it is sent again: the `until` check's command and output.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iteration_note: Option<String>,
    /// What the agent reported failing in the prompt's last attempt (its commands, tools).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub agent_errors: Vec<String>,
    /// The session the last attempt's call reported, until the prompt completes.
    #[serde(skip)]
    pub last_session: Option<String>,
}

impl PromptState {
    /// Its last checks in a table cell: `-`, `3 passed`, or which failed.
    pub(crate) fn checks_summary(&self) -> String {
        let failed: Vec<&str> = (self.checks.iter())
            .filter(|c| !c.passed)
            .map(|c| c.check.lines().next().unwrap_or(""))
            .collect();
        match (self.checks.len(), failed.is_empty()) {
            (0, _) => "-".to_string(),
            (n, true) => format!("{n} passed"),
            _ => format!("failed: {}", failed.join("; ")),
        }
    }

    /// What the agent reported failing, in a table cell: `-`, or how many and the first.
    pub(crate) fn agent_errors_summary(&self) -> String {
        match self.agent_errors.first() {
            None => "-".to_string(),
            Some(first) => {
                let cut = &first[..first.floor_char_boundary(60)];
                let more = if cut.len() < first.len() { "…" } else { "" };
                format!("{}: {cut}{more}", self.agent_errors.len())
            }
        }
    }
}

/// A check's last result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckState {
    pub from: CheckSource,
    pub check: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exit_code: Option<i32>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A reply with a valid checkpoint.
    Ok,
    /// Connection, timeout, 429/5xx, a cut stream: retried.
    Transient,
    /// 4xx, quota, context length: not retried.
    Permanent,
    /// A reply that fails the checkpoint protocol (no block, `success: false`, truncated,
    /// refusal, a needed variable missing): retried with a note.
    Content,
    /// Accepted in its own worktree, but its merge onto the session's branch conflicted
    /// with work merged meanwhile (a parallel agent build): run again from there.
    Conflict,
    /// The runner stopped (signal) while the request was in flight.
    Interrupted,
    /// No result was recorded (the runner died mid-request): possibly billed.
    #[default]
    Unknown,
}

impl AttemptOutcome {
    /// As the documents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Transient => "transient",
            AttemptOutcome::Permanent => "permanent",
            AttemptOutcome::Content => "content",
            AttemptOutcome::Conflict => "conflict",
            AttemptOutcome::Interrupted => "interrupted",
            AttemptOutcome::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpend {
    pub name: String,
    pub dir: String,
    pub budget: Option<u64>,
    pub used: u64,
    pub remaining: Option<u64>,
    /// Spent past the budget: an endpoint counted more than was reserved. Always shown.
    pub over_budget: bool,
    /// Of `used`: attempts a crash left without a result, at their worst case.
    pub possibly_billed: u64,
    /// Input read from a prompt cache: shown and priced, but not in `used` when an agent
    /// read it (its own prompts and tools, read again on every turn).
    pub cache_read: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalSpend {
    pub budget: u64,
    pub used: u64,
    pub remaining: u64,
    pub over_budget: bool,
    /// Of `used`: attempts a crash left without a result, at their worst case.
    pub possibly_billed: u64,
    /// Input read from a prompt cache (see [`PhaseSpend::cache_read`]).
    pub cache_read: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `output_tokens`: reasoning (billed as output, never seen).
    pub reasoning: u64,
    /// Some counts came from the tokenizer rather than the endpoint.
    pub estimated: bool,
    pub cost_usd: f64,
    /// Attempts whose cost is unknown (no reported cost, no `[pricing]`): `cost_usd`
    /// leaves them out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced: u32,
}

/// One of the seed's success criteria, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub passed: bool,
    pub value: String,
}

/// A session's history: `report --json`, and what `report.html` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportDoc {
    pub project: String,
    pub session_id: String,
    pub started: String,
    /// When the journal's last event was written.
    pub last_event: String,
    pub mock: bool,
    pub prompts: Vec<PromptHistory>,
    pub phases: Vec<PhaseHistory>,
    pub total: PhaseHistory,
    pub cost_usd: f64,
    /// Attempts whose cost is unknown, left out of `cost_usd`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced: u32,
    pub completed: Vec<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
    pub halted: Option<Halted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// The seed's success criteria, measured.
    pub criteria: Vec<Criterion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptHistory {
    pub id: String,
    pub name: String,
    pub phase: String,
    /// `running`: cut by a crash; `pending`: not run.
    pub status: PromptStatus,
    pub attempts: Vec<AttemptHistory>,
    /// The largest request sent (input tokens).
    pub request_tokens: u64,
    /// The accepted reply, its first [`REPLY_SHOWN`] bytes.
    pub reply: Option<String>,
    pub reply_bytes: usize,
    pub variables: Map<String, Value>,
    pub commit: Option<String>,
    /// Why it was skipped or failed for good.
    pub reason: Option<String>,
}

#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptHistory {
    pub attempt: u32,
    pub started: String,
    /// `unknown`: a crash cut it (possibly billed, counted at its worst case).
    pub outcome: AttemptOutcome,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub estimated: bool,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The wait before the next attempt, if one was scheduled.
    pub retry_after_ms: Option<u64>,
    pub checks: Vec<CheckHistory>,
    /// Of `input_tokens`: read from a prompt cache (shown apart, not budgeted).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cache_read_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cost_usd: f64,
    /// What the agent reported failing on its way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_errors: Vec<String>,
    /// A pause for a limit after it: until when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<String>,
    /// The `[[llm.fallback]]` that answered it (none: `[llm]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckHistory {
    pub from: CheckSource,
    pub check: String,
    pub passed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseHistory {
    pub name: String,
    pub budget: Option<u64>,
    pub used: u64,
    /// Of `used`: attempts a crash cut, at their worst case.
    pub possibly_billed: u64,
    /// What was spent after each attempt that spent anything, in order: the burn-down.
    pub burn: Vec<u64>,
}

/// Where a check comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSource {
    /// A shell block of the prompt's `## Validation` section.
    #[default]
    Validation,
    /// The prompt's front matter `verify` (written as the words are, as the journal always
    /// has).
    #[serde(rename = "front matter")]
    FrontMatter,
    /// The phase's `[[phases]] verify`.
    Phase,
    /// `[verify].commands`.
    Config,
}

impl CheckSource {
    /// As a sentence says it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckSource::Validation => "validation",
            CheckSource::FrontMatter => "front matter",
            CheckSource::Phase => "phase",
            CheckSource::Config => "config",
        }
    }
}

/// Why a run stopped: the message, and the exit code it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halted {
    pub reason: String,
    pub code: i32,
}

/// A pause for a rate or usage limit that has not ended (no attempt since): nothing is
/// sent before `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    pub prompt: String,
    /// RFC 3339, UTC.
    pub until: String,
    pub reason: String,
}

impl Paused {
    /// The journal's pause (prompt, Unix milliseconds, reason), as documents carry it.
    pub(crate) fn of(p: Option<&(String, u64, String)>) -> Option<Paused> {
        let (prompt, until_ms, reason) = p?;
        let until = jiff::Timestamp::from_millisecond(i64::try_from(*until_ms).unwrap_or(i64::MAX))
            .unwrap_or(jiff::Timestamp::MAX);
        Some(Paused {
            prompt: prompt.clone(),
            until: until.to_string(),
            reason: reason.clone(),
        })
    }
}

/// A session's state: `status.json` and what `status --json` prints, one document. The
/// seed's keys first, with the seed's meaning and types (`completed[-1]`, `failed[-1]`,
/// `current_prompt`, `variables` work as its recovery snippets read them), then the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusDoc<'a> {
    pub schema_version: u32,
    pub session_id: Cow<'a, str>,
    pub started: Cow<'a, str>,
    /// The file of the first prompt not completed; null when all are.
    pub current_prompt: Option<String>,
    pub completed: Cow<'a, [String]>,
    pub failed: Cow<'a, [String]>,
    pub warnings: Cow<'a, [String]>,
    /// Each prompt's variables, by prompt id.
    pub variables: Cow<'a, BTreeMap<String, Map<String, Value>>>,
    pub last_checkpoint: Option<Cow<'a, str>>,
    pub skipped: Cow<'a, [String]>,
    pub halted: Option<Halted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    pub finished: bool,
    /// Run against the embedded mock model.
    pub mock: bool,
    /// Each prompt's state (attempts, tokens, cost, commit, checks), by id.
    pub prompts: Cow<'a, BTreeMap<String, PromptState>>,
    /// The plan's hash of each prompt, by id (a prompt changed since it ran differs).
    pub plan_hashes: BTreeMap<String, String>,
    pub phases: Cow<'a, [PhaseSpend]>,
    pub total: Cow<'a, TotalSpend>,
    /// The seed's success criteria, measured.
    pub criteria: Vec<Criterion>,
    /// Completed prompts whose file changed since they ran.
    pub changed: Vec<String>,
    /// The workspace's baseline commit (agent builds).
    pub baseline: Option<String>,
}

/// One line of `run --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunEventDoc {
    Started {
        session_id: String,
        /// Prompts in the plan.
        prompts: usize,
        to_run: usize,
        /// How many are completed (`completed`, in the other documents, lists them).
        done: usize,
    },
    /// An attempt about to be sent: `input_tokens` as the tokenizer counted it (so
    /// `estimated`: the endpoint's own count comes with the reply), nothing output yet.
    Attempt {
        id: String,
        name: String,
        attempt: u32,
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
        max_tokens: u32,
    },
    Retry {
        id: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
    },
    Completed {
        id: String,
        name: String,
        attempt: u32,
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
        duration_ms: u64,
    },
    Failed {
        id: String,
        name: String,
        attempt: u32,
        error: String,
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
    },
    Skipped {
        id: String,
        name: String,
        reason: String,
    },
    Halted {
        reason: String,
        code: i32,
    },
    Finished {
        /// How many prompts are completed.
        done: usize,
        prompts: usize,
        failed: Vec<String>,
        skipped: Vec<String>,
        used: u64,
        remaining: u64,
        possibly_billed: u64,
        estimated: bool,
    },
}
