//! State in `checkpoints/` (spec, "State in checkpoints/").
//!
//! `journal.jsonl` is the truth: one JSON event per line, appended and fsynced before the step
//! it records counts as done. `status.json` (the seed's schema, extended) and `memory.json`
//! are views folded from it and replaced atomically (temporary file, fsync, rename, fsync of
//! the folder, by `atomic-write-file`). A torn last journal line, which a crash mid-write
//! leaves, is dropped with a warning; any other unreadable line or state file is an error
//! that names it, and the file is never overwritten.
//!
//! One runner per folder: `.lock` is held with `File::try_lock` (released by the kernel when
//! the holder dies, so a stale lock never blocks) and records the holder's pid.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::plan::{Plan, Prompt};
use crate::providers::AgentGroup;

pub const SCHEMA_VERSION: u32 = 1;
pub const JOURNAL: &str = "journal.jsonl";
pub const STATUS: &str = "status.json";
pub const MEMORY: &str = "memory.json";
pub const LOCK: &str = ".lock";
pub const OUTPUTS: &str = "outputs";
pub const ARCHIVE: &str = "archive";

/// How an attempt ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A reply with a valid checkpoint.
    Ok,
    /// Connection, timeout, 429/5xx, a cut stream: retried.
    Transient,
    /// 4xx, quota, context length: not retried.
    Permanent,
    /// A reply that fails the checkpoint protocol (no block, `success: false`, truncated,
    /// refusal, a needed variable missing): retried with a note.
    Content,
    /// The runner stopped (signal) while the request was in flight.
    Interrupted,
    /// No result was recorded (the runner died mid-request): possibly billed.
    #[default]
    Unknown,
}

/// How an attempt ended, with what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptResult {
    pub id: String,
    pub attempt: u32,
    pub outcome: Outcome,
    /// All input, cache reads and writes included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`: read from and written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cache_read_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cache_write_tokens: u64,
    /// Counted by the tokenizer, not reported by the endpoint.
    pub estimated: bool,
    /// A usage report that could not be trusted (kept as sent; the counts above are
    /// the tokenizer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_usage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(default)]
    pub cost_usd: f64,
    /// An agent's call: its usage includes the agent's own prompts and tools, so it
    /// never calibrates the tokenizer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub by_agent: bool,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        session_id: String,
        started: String,
    },
    /// A run (or rerun) began in this session, by process `pid`.
    RunStarted {
        pid: u32,
        command: String,
    },
    /// Written before the request is sent.
    AttemptStarted {
        id: String,
        file: String,
        /// Numbered per prompt across the session.
        attempt: u32,
        /// The input the budget check reserved: the endpoint's count, the tokenizer's
        /// count scaled by calibration or a margin, or the tokenizer's count.
        input_tokens: u64,
        max_tokens: u32,
        /// The tokenizer's count, where `input_tokens` is another figure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokenizer_tokens: Option<u64>,
    },
    /// An agent's process group exists (written while the agent runs): a run resumed
    /// after a crash kills it if it is still alive.
    AgentStarted {
        id: String,
        attempt: u32,
        group: AgentGroup,
    },
    AttemptFinished(AttemptResult),
    Retry {
        id: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    Completed {
        id: String,
        name: String,
        file: String,
        hash: String,
        variables: Map<String, Value>,
        #[serde(default)]
        files_created: Vec<String>,
        /// `outputs/<id>.md`, a copy of `reply` for people and tools.
        output: String,
        /// The accepted reply: durable with this event, so the output file needs no
        /// fsync of its own and is rewritten from here if it is missing.
        #[serde(default)]
        reply: String,
    },
    Failed {
        id: String,
        file: String,
        error: String,
    },
    Skipped {
        id: String,
        reason: String,
    },
    Warning {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message: String,
    },
    Halted {
        reason: String,
        code: i32,
    },
    Finished {},
}

/// A journal line: schema version, time, event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
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
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// An attempt journaled as started with no result yet.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAttempt {
    pub id: String,
    pub attempt: u32,
    pub input_tokens: u64,
    pub max_tokens: u32,
    /// The tokenizer's count of its input, for calibration.
    pub tokenizer_tokens: u64,
    /// The agent's process group, once it started.
    pub group: Option<AgentGroup>,
}

/// The journal folded: everything the views and the runner need.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    pub session_id: String,
    pub started: String,
    pub completed: Vec<String>,
    /// The ids in `completed`, for lookups that stay cheap on long runs.
    pub done: std::collections::HashSet<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
    pub warnings: Vec<String>,
    pub variables: BTreeMap<String, Map<String, Value>>,
    pub last_checkpoint: Option<String>,
    pub prompts: BTreeMap<String, PromptState>,
    pub open: Vec<OpenAttempt>,
    pub halted: Option<(String, i32)>,
    pub finished: bool,
    /// The last attempts, newest last (memory.json's breadcrumb trail).
    pub trail: Vec<String>,
    pub last_files_created: Vec<String>,
    pub events: u64,
    /// The largest ratio seen of the input the endpoint reported to the input we counted
    /// (at least 1): endpoints with other tokenizers count more than tiktoken does, and the
    /// budget check scales its count by this so that hard budgets stay hard. `None` until
    /// an endpoint has reported usage.
    pub input_ratio: Option<f64>,
    /// Cost of every attempt so far (reported, or from `[pricing]`).
    pub cost_usd: f64,
}

const TRAIL: usize = 20;

impl Fold {
    /// Our count of a request's input scaled by what the endpoint has been reporting, if
    /// it has reported any.
    pub fn calibrated(&self, counted: u64) -> Option<u64> {
        self.input_ratio
            .map(|r| (counted as f64 * r.max(1.0)).ceil() as u64)
    }

    pub fn apply(&mut self, record: &Record) {
        self.events += 1;
        let at = &record.at;
        match &record.event {
            Event::SessionStarted {
                session_id,
                started,
            } => {
                self.session_id = session_id.clone();
                self.started = started.clone();
            }
            Event::RunStarted { .. } => {
                self.halted = None;
                self.finished = false;
            }
            Event::AttemptStarted {
                id,
                file,
                attempt,
                input_tokens,
                max_tokens,
                tokenizer_tokens,
            } => {
                let p = self.prompts.entry(id.clone()).or_default();
                p.file = file.clone();
                p.status = PromptStatus::Running;
                p.attempts += 1;
                p.attempts_used += 1;
                p.last_attempt = p.last_attempt.max(*attempt);
                p.max_input = p.max_input.max(*input_tokens);
                self.open.retain(|o| o.id != *id);
                self.open.push(OpenAttempt {
                    id: id.clone(),
                    attempt: *attempt,
                    input_tokens: *input_tokens,
                    max_tokens: *max_tokens,
                    tokenizer_tokens: tokenizer_tokens.unwrap_or(*input_tokens),
                    group: None,
                });
                self.push_trail(format!("{at} {id} attempt {attempt} sent"));
            }
            Event::AgentStarted { id, attempt, group } => {
                if let Some(o) = self
                    .open
                    .iter_mut()
                    .find(|o| o.id == *id && o.attempt == *attempt)
                {
                    o.group = Some(group.clone());
                }
            }
            Event::AttemptFinished(AttemptResult {
                id,
                attempt,
                outcome,
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_tokens,
                estimated,
                finish_reason,
                error,
                duration_ms,
                cost_usd,
                by_agent,
                ..
            }) => {
                if let Some(o) = self
                    .open
                    .iter()
                    .find(|o| o.id == *id && o.attempt == *attempt)
                    && !*by_agent
                    && !*estimated
                    && *outcome == Outcome::Ok
                    && o.tokenizer_tokens > 0
                {
                    let ratio = *input_tokens as f64 / o.tokenizer_tokens as f64;
                    self.input_ratio = Some(self.input_ratio.map_or(ratio, |r| r.max(ratio)));
                }
                self.open
                    .retain(|o| !(o.id == *id && o.attempt == *attempt));
                let p = self.prompts.entry(id.clone()).or_default();
                p.tokens_in = p.tokens_in.saturating_add(*input_tokens);
                p.tokens_out = p.tokens_out.saturating_add(*output_tokens);
                p.cache_read = p.cache_read.saturating_add(*cache_read_tokens);
                p.cache_write = p.cache_write.saturating_add(*cache_write_tokens);
                p.estimated |= *estimated;
                p.duration_ms = p.duration_ms.saturating_add(*duration_ms);
                let cost = if cost_usd.is_finite() { *cost_usd } else { 0.0 };
                p.cost_usd += cost;
                self.cost_usd += cost;
                p.finish_reason = finish_reason.clone();
                match outcome {
                    Outcome::Unknown => {
                        p.possibly_billed += 1;
                        p.possibly_billed_tokens = p
                            .possibly_billed_tokens
                            .saturating_add(input_tokens.saturating_add(*output_tokens));
                        p.attempts_used = p.attempts_used.saturating_sub(1);
                    }
                    Outcome::Interrupted => p.attempts_used = p.attempts_used.saturating_sub(1),
                    _ => {}
                }
                p.retry_note = match outcome {
                    Outcome::Content => error.clone(),
                    _ => None,
                };
                if let Some(e) = error {
                    p.last_error = Some(e.clone());
                }
                self.push_trail(format!(
                    "{at} {id} attempt {attempt}: {outcome:?}{}",
                    error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
            Event::Retry { .. } => {}
            Event::Completed {
                id,
                file,
                hash,
                variables,
                files_created,
                output,
                ..
            } => {
                let p = self.prompts.entry(id.clone()).or_default();
                p.status = PromptStatus::Completed;
                p.attempts_used = 0;
                p.retry_note = None;
                p.file = file.clone();
                p.hash = Some(hash.clone());
                p.files_created = files_created.clone();
                p.output = Some(output.clone());
                p.last_error = None;
                p.completed_at = Some(at.clone());
                if !self.done.insert(id.clone()) {
                    self.completed.retain(|c| c != id);
                }
                self.completed.push(id.clone());
                if !self.failed.is_empty() {
                    self.failed.retain(|c| c != id);
                }
                if !self.skipped.is_empty() {
                    self.skipped.retain(|c| c != id);
                }
                self.variables.insert(id.clone(), variables.clone());
                self.last_checkpoint = Some(at.clone());
                if !files_created.is_empty() {
                    self.last_files_created = files_created.clone();
                }
            }
            Event::Failed { id, error, .. } => {
                let p = self.prompts.entry(id.clone()).or_default();
                p.status = PromptStatus::Failed;
                p.attempts_used = 0;
                p.retry_note = None;
                p.last_error = Some(error.clone());
                // A completed prompt run again that fails needs attention again.
                if self.done.remove(id) {
                    self.completed.retain(|c| c != id);
                }
                self.failed.retain(|c| c != id);
                self.failed.push(id.clone());
                self.last_checkpoint = Some(at.clone());
            }
            Event::Skipped { id, reason } => {
                let p = self.prompts.entry(id.clone()).or_default();
                p.status = PromptStatus::Skipped;
                p.attempts_used = 0;
                p.retry_note = None;
                p.last_error = Some(reason.clone());
                self.skipped.retain(|c| c != id);
                self.skipped.push(id.clone());
            }
            Event::Warning { id, message } => {
                self.warnings.push(match id {
                    Some(id) => format!("{id}: {message}"),
                    None => message.clone(),
                });
            }
            Event::Halted { reason, code } => self.halted = Some((reason.clone(), *code)),
            Event::Finished {} => {
                self.finished = true;
            }
        }
    }

    fn push_trail(&mut self, line: String) {
        self.trail.push(line);
        if self.trail.len() > TRAIL {
            self.trail.remove(0);
        }
    }

    /// Tokens spent on a prompt (in and out, every attempt), counting an attempt with no
    /// result at its worst case.
    pub fn spent(&self, id: &str) -> u64 {
        let p = self.prompts.get(id);
        let recorded = p.map_or(0, |p| p.tokens_in.saturating_add(p.tokens_out));
        recorded.saturating_add(self.open_worst_case(id))
    }

    /// Of [`Fold::spent`]: attempts a crash left without a result, at their worst case.
    pub fn possibly_billed(&self, id: &str) -> u64 {
        let p = self.prompts.get(id);
        p.map_or(0, |p| p.possibly_billed_tokens)
            .saturating_add(self.open_worst_case(id))
    }

    fn open_worst_case(&self, id: &str) -> u64 {
        self.open
            .iter()
            .filter(|o| o.id == id)
            .map(|o| o.input_tokens.saturating_add(u64::from(o.max_tokens)))
            .sum()
    }
}

/// Reads `journal.jsonl`: the records, and a warning if a torn last line was dropped.
pub fn read_journal(path: &Path) -> Result<(Vec<Record>, Option<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(Error::io(path, e)),
    };
    parse_journal(&bytes, path)
}

/// Parses journal bytes (see [`read_journal`]); `path` names the file in messages.
pub fn parse_journal(bytes: &[u8], path: &Path) -> Result<(Vec<Record>, Option<String>)> {
    let mut records = Vec::new();
    let mut warning = None;
    let ends_with_newline = bytes.last() == Some(&b'\n');
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let last = i + 1 == count;
        if line.is_empty() && last {
            break;
        }
        let parsed = std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str::<Record>(s).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) if r.v > SCHEMA_VERSION => {
                return Err(Error::state(
                    path,
                    format!(
                        "line {} has schema version {}, newer than this orchestrator ({SCHEMA_VERSION}); upgrade orchestrator",
                        i + 1,
                        r.v
                    ),
                ));
            }
            Ok(r) => records.push(r),
            Err(_) if last && !ends_with_newline => {
                warning = Some(format!(
                    "{}: the last line ({} bytes) was cut short by a crash mid-write; it is ignored",
                    path.display(),
                    line.len()
                ));
            }
            Err(e) => {
                return Err(Error::state(
                    path,
                    format!(
                        "line {} is not a journal event ({e}); the journal was changed by hand or damaged: `orchestrator run --restart` archives the session as it is (under checkpoints/archive/) and starts anew",
                        i + 1
                    ),
                ));
            }
        }
    }
    Ok((records, warning))
}

/// Read-only state for `estimate` and `status`: the journal folded, no lock taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub fold: Fold,
    pub warning: Option<String>,
}

impl Snapshot {
    /// `None` when the folder holds no session yet. A `status.json` that cannot be read is
    /// an error (it is a view, but a damaged one means something is wrong).
    pub fn read_if_any(dir: &Path) -> Result<Option<Snapshot>> {
        check_status_file(dir)?;
        let (records, warning) = read_journal(&dir.join(JOURNAL))?;
        if records.is_empty() {
            return Ok(None);
        }
        let mut fold = Fold::default();
        for r in &records {
            fold.apply(r);
        }
        Ok(Some(Snapshot { fold, warning }))
    }

    /// The variables this prompt produced in the last run, if it completed.
    pub fn variables_of(&self, prompt: &Prompt) -> Option<Map<String, Value>> {
        self.fold.variables.get(prompt.id.as_str()).cloned()
    }

    /// Tokens spent on this prompt, and of them possibly billed, if any attempt was made.
    pub fn spent_on(&self, prompt: &Prompt) -> Option<(u64, u64)> {
        let id = prompt.id.as_str();
        self.fold
            .prompts
            .contains_key(id)
            .then(|| (self.fold.spent(id), self.fold.possibly_billed(id)))
    }
}

/// A `status.json` that exists must be a regular file inside the folder that parses as JSON.
pub fn check_status_file(dir: &Path) -> Result<()> {
    for name in [STATUS, MEMORY] {
        let path = dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if meta.file_type().is_symlink() {
            return Err(Error::state(
                &path,
                "is a symbolic link; state files must be regular files inside the checkpoints folder (remove the link)",
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
            return Err(Error::state(
                &path,
                format!(
                    "cannot be read ({e}); it is left as it is. Move it away and run again (it is rebuilt from journal.jsonl), or `orchestrator run --restart` to archive the session as it is and start anew"
                ),
            ));
        }
    }
    Ok(())
}

/// The checkpoints folder, opened for writing by one runner.
pub struct Store {
    pub dir: PathBuf,
    journal: File,
    _lock: File,
}

impl Store {
    /// Creates the folder (0700) if needed and takes the lock; a second runner is refused
    /// with the first one's pid.
    pub fn open(dir: &Path) -> Result<Store> {
        create_private_dir(dir)?;
        create_private_dir(&dir.join(OUTPUTS))?;
        let lock_path = dir.join(LOCK);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = holder_pid(&lock_path);
                return Err(Error::state(
                    dir,
                    format!(
                        "another orchestrator (pid {}) is running on this checkpoints folder; wait for it to finish or stop it",
                        pid.as_deref().unwrap_or("unknown")
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        lock.set_len(0).map_err(|e| Error::io(&lock_path, e))?;
        writeln!(lock, "{}", std::process::id()).map_err(|e| Error::io(&lock_path, e))?;
        remove_stray_temporaries(dir);
        let journal_path = dir.join(JOURNAL);
        let journal = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&journal_path)
            .map_err(|e| Error::io(&journal_path, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            journal,
            _lock: lock,
        })
    }

    /// Reads the journal (after checking the views). A torn last line is cut off the file
    /// so that the next append starts on a line of its own.
    pub fn load(&mut self) -> Result<(Vec<Record>, Option<String>)> {
        check_status_file(&self.dir)?;
        let path = self.dir.join(JOURNAL);
        let (records, warning) = read_journal(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if warning.is_some() {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            self.journal
                .set_len(keep as u64)
                .and_then(|()| self.journal.sync_data())
                .map_err(|e| Error::io(&path, e))?;
        } else if bytes.last().is_some_and(|&b| b != b'\n') {
            // A crash between a line's JSON and its newline: the line is whole; end it so
            // that the next append starts a line of its own.
            self.journal
                .write_all(b"\n")
                .and_then(|()| self.journal.sync_data())
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok((records, warning))
    }

    /// Appends events and fsyncs: when this returns, they are on disk.
    pub fn append(&mut self, events: &[Event]) -> Result<Vec<Record>> {
        let at = now();
        let mut buf = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            let record = Record {
                v: SCHEMA_VERSION,
                at: at.clone(),
                event: event.clone(),
            };
            serde_json::to_writer(&mut buf, &record).map_err(|e| {
                Error::state(
                    self.dir.join(JOURNAL),
                    format!("cannot encode an event: {e}"),
                )
            })?;
            buf.push(b'\n');
            records.push(record);
        }
        let path = self.dir.join(JOURNAL);
        self.journal
            .write_all(&buf)
            .and_then(|()| self.journal.sync_data())
            .map_err(|e| Error::io(&path, e))?;
        Ok(records)
    }

    /// `run --restart`: moves the session's files, as they are (damaged or not), to
    /// `archive/<session_id>/` and starts an empty journal. `None` if there was no session.
    pub fn archive(&mut self) -> Result<Option<PathBuf>> {
        if ![JOURNAL, STATUS, MEMORY]
            .iter()
            .any(|f| self.dir.join(f).exists())
        {
            return Ok(None);
        }
        let session_id = self.session_id_as_is();
        let archive = self.dir.join(ARCHIVE);
        create_private_dir(&archive)?;
        let mut target = archive.join(&session_id);
        let mut n = 1;
        while target.exists() {
            n += 1;
            target = archive.join(format!("{session_id}-{n}"));
        }
        create_private_dir(&target)?;
        for name in [JOURNAL, STATUS, MEMORY, OUTPUTS] {
            let from = self.dir.join(name);
            if from.exists() {
                std::fs::rename(&from, target.join(name)).map_err(|e| Error::io(&from, e))?;
            }
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&self.dir, e))?;
        create_private_dir(&self.dir.join(OUTPUTS))?;
        let journal_path = self.dir.join(JOURNAL);
        self.journal = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&journal_path)
            .map_err(|e| Error::io(&journal_path, e))?;
        Ok(Some(target))
    }

    /// The session's id for its archive folder, read from the journal's first line even
    /// if later lines are damaged; else from `status.json`; else one made from the time.
    fn session_id_as_is(&self) -> String {
        let from_journal = std::fs::read(self.dir.join(JOURNAL)).ok().and_then(|b| {
            let first = b.split(|&c| c == b'\n').next()?.to_vec();
            match serde_json::from_slice::<Record>(&first).ok()?.event {
                Event::SessionStarted { session_id, .. } => Some(session_id),
                _ => None,
            }
        });
        let from_status = || {
            let bytes = std::fs::read(self.dir.join(STATUS)).ok()?;
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            v.get("session_id")?.as_str().map(str::to_string)
        };
        from_journal
            .or_else(from_status)
            .filter(|id| {
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .unwrap_or_else(|| format!("unreadable-{}", now().replace([':', '.'], "-")))
    }

    /// Replaces `name` atomically but without fsync: for files whose content the journal
    /// already holds durably (the outputs).
    pub fn write_copy(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        refuse_symlink(&path)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Replaces `name` with `value` as pretty JSON, atomically and durably. The JSON is
    /// written straight into the file: a view of a long run is never held whole in memory.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        write_atomic(&self.dir.join(name), |w| {
            serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })
    }
}

/// Temporary file, fsync, rename, fsync of the folder; created 0600. A symbolic link in
/// the target's place is refused rather than followed or replaced.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    use atomic_write_file::unix::OpenOptionsExt as _;
    refuse_symlink(path)?;
    let mut options = atomic_write_file::AtomicWriteFile::options();
    options.preserve_mode(false).mode(0o600);
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    let mut buffered = std::io::BufWriter::new(&mut file);
    fill(&mut buffered)
        .and_then(|()| buffered.flush())
        .map_err(|e| Error::io(path, e))?;
    drop(buffered);
    file.commit().map_err(|e| Error::io(path, e))
}

fn refuse_symlink(path: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        return Err(Error::state(
            path,
            "is a symbolic link; state files must be regular files inside the checkpoints folder (remove the link)",
        ));
    }
    Ok(())
}

/// Temporary files that an atomic write left when the process was killed mid-write
/// (`.status.json.XXXXXX`, `outputs/.01.1.md.XXXXXX`): removed by the next runner, which
/// holds the lock, so none can be in use.
fn remove_stray_temporaries(dir: &Path) {
    for folder in [dir.to_path_buf(), dir.join(OUTPUTS)] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = [STATUS, MEMORY]
                .iter()
                .any(|f| name.starts_with(&format!(".{f}.")))
                || (folder != dir && name.starts_with('.') && name.contains(".md."))
                || (folder != dir && name.ends_with(".md.tmp"));
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The pid the lock's holder wrote. It writes it just after taking the lock, so a runner
/// that loses a race at start may read the file before it is written: it looks again for
/// up to a second.
fn holder_pid(lock_path: &Path) -> Option<String> {
    for _ in 0..50 {
        let text = std::fs::read_to_string(lock_path).unwrap_or_default();
        let pid = text.trim();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            return Some(pid.to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::state(
            dir,
            "is not a folder; give --checkpoints a folder (it is created if missing)",
        ));
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e)),
        // The runner owns the folder (spec: "written by the runner alone"), so one made
        // by someone else, or checked out by git as 0755, is made private too.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// `status.json`: the seed's keys with the seed's meaning, then the extensions. Serialized
/// straight from the fold (no intermediate JSON tree): it grows with the run.
#[derive(Serialize)]
pub struct StatusView<'a> {
    pub schema_version: u32,
    pub session_id: &'a str,
    pub started: &'a str,
    pub current_prompt: Option<&'a str>,
    pub completed: &'a [String],
    pub failed: &'a [String],
    pub warnings: &'a [String],
    pub variables: &'a BTreeMap<String, Map<String, Value>>,
    pub last_checkpoint: Option<&'a str>,
    pub skipped: &'a [String],
    pub halted: Option<Halted<'a>>,
    pub finished: bool,
    pub prompts: &'a BTreeMap<String, PromptState>,
    pub plan_hashes: BTreeMap<&'a str, &'a str>,
    pub phases: &'a [crate::budget::PhaseSpend],
    pub totals: &'a crate::budget::TotalSpend,
}

#[derive(Serialize)]
pub struct Halted<'a> {
    pub reason: &'a str,
    pub code: i32,
}

impl<'a> StatusView<'a> {
    pub fn new(
        fold: &'a Fold,
        plan: &'a Plan,
        ledger: &'a crate::budget::Ledger,
        current_prompt: Option<&'a str>,
    ) -> StatusView<'a> {
        StatusView {
            schema_version: SCHEMA_VERSION,
            session_id: &fold.session_id,
            started: &fold.started,
            current_prompt,
            completed: &fold.completed,
            failed: &fold.failed,
            warnings: &fold.warnings,
            variables: &fold.variables,
            last_checkpoint: fold.last_checkpoint.as_deref(),
            skipped: &fold.skipped,
            halted: fold.halted.as_ref().map(|(reason, code)| Halted {
                reason,
                code: *code,
            }),
            finished: fold.finished,
            prompts: &fold.prompts,
            plan_hashes: plan
                .prompts
                .iter()
                .map(|p| (p.id.as_str(), p.hash.as_str()))
                .collect(),
            phases: &ledger.phases,
            totals: &ledger.total,
        }
    }
}

/// `memory.json`: what outlives a lost conversation.
#[derive(Serialize)]
pub struct MemoryView<'a> {
    pub schema_version: u32,
    pub session_id: &'a str,
    pub constants: &'a BTreeMap<String, Value>,
    /// The constants and every completed prompt's variables, later prompts winning.
    pub variables: BTreeMap<&'a str, &'a Value>,
    pub last_files_created: &'a [String],
    pub completed: &'a [String],
    pub breadcrumbs: &'a [String],
    pub updated: String,
}

impl<'a> MemoryView<'a> {
    pub fn new(
        fold: &'a Fold,
        plan: &Plan,
        constants: &'a BTreeMap<String, Value>,
    ) -> MemoryView<'a> {
        let mut variables: BTreeMap<&str, &Value> =
            constants.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for p in &plan.prompts {
            if let Some(vars) = fold.variables.get(p.id.as_str()) {
                variables.extend(vars.iter().map(|(k, v)| (k.as_str(), v)));
            }
        }
        MemoryView {
            schema_version: SCHEMA_VERSION,
            session_id: &fold.session_id,
            constants,
            variables,
            last_files_created: &fold.last_files_created,
            completed: &fold.completed,
            breadcrumbs: &fold.trail,
            updated: now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(event: Event) -> Record {
        Record {
            v: SCHEMA_VERSION,
            at: "2026-01-01T00:00:00.000Z".into(),
            event,
        }
    }

    #[test]
    fn records_round_trip_as_one_line_each() {
        let r = rec(Event::AttemptStarted {
            id: "01.1".into(),
            file: "01.1-a.md".into(),
            attempt: 1,
            input_tokens: 10,
            max_tokens: 20,
            tokenizer_tokens: None,
        });
        let line = serde_json::to_string(&r).expect("encode");
        assert!(line.starts_with("{\"v\":1,"), "{line}");
        assert!(line.contains("\"event\":\"attempt_started\""), "{line}");
        let back: Record = serde_json::from_str(&line).expect("decode");
        assert_eq!(back.event, r.event);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_others_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL);
        let good = serde_json::to_string(&rec(Event::Finished {})).expect("encode");
        std::fs::write(&path, format!("{good}\n{{\"v\":1,\"at\":\"x\",\"ev")).expect("write");
        let (records, warning) = read_journal(&path).expect("torn tail is tolerated");
        assert_eq!(records.len(), 1);
        assert!(warning.expect("warned").contains("cut short"));

        std::fs::write(&path, format!("garbage\n{good}\n")).expect("write");
        let err = read_journal(&path).expect_err("a bad middle line is an error");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn an_unfinished_attempt_counts_at_its_worst_case() {
        let mut f = Fold::default();
        f.apply(&rec(Event::AttemptStarted {
            id: "01.1".into(),
            file: "01.1-a.md".into(),
            attempt: 1,
            input_tokens: 100,
            max_tokens: 50,
            tokenizer_tokens: None,
        }));
        assert_eq!(f.spent("01.1"), 150);
        f.apply(&rec(Event::AttemptFinished(AttemptResult {
            id: "01.1".into(),
            attempt: 1,
            outcome: Outcome::Ok,
            input_tokens: 100,
            output_tokens: 7,
            ..AttemptResult::default()
        })));
        assert_eq!(f.spent("01.1"), 107);
    }

    #[test]
    fn reported_input_above_our_count_calibrates_later_counts() {
        let mut f = Fold::default();
        assert_eq!(f.calibrated(100), None);
        f.apply(&rec(Event::AttemptStarted {
            id: "01.1".into(),
            file: "01.1-a.md".into(),
            attempt: 1,
            input_tokens: 100,
            max_tokens: 50,
            tokenizer_tokens: None,
        }));
        f.apply(&rec(Event::AttemptFinished(AttemptResult {
            id: "01.1".into(),
            attempt: 1,
            outcome: Outcome::Ok,
            input_tokens: 150,
            output_tokens: 7,
            ..AttemptResult::default()
        })));
        assert_eq!(f.calibrated(100), Some(150));
    }

    #[test]
    fn completion_moves_a_prompt_from_failed_to_completed() {
        let mut f = Fold::default();
        f.apply(&rec(Event::Failed {
            id: "02.1".into(),
            file: "02.1-x.md".into(),
            error: "boom".into(),
        }));
        assert_eq!(f.failed, ["02.1"]);
        f.apply(&rec(Event::Completed {
            id: "02.1".into(),
            name: "02.1-x".into(),
            file: "02.1-x.md".into(),
            hash: "h".into(),
            variables: Map::new(),
            files_created: vec![],
            output: "outputs/02.1.md".into(),
            reply: String::new(),
        }));
        assert!(f.failed.is_empty());
        assert_eq!(f.completed, ["02.1"]);
    }

    #[test]
    fn a_second_store_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("first");
        let err = Store::open(dir.path()).err().expect("second is refused");
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn event(i: u32) -> Event {
            match i % 3 {
                0 => Event::Retry {
                    id: format!("01.{i}"),
                    attempt: i,
                    delay_ms: 5,
                    reason: "é ✓ \"quoted\"\nline".into(),
                },
                1 => Event::Warning {
                    id: None,
                    message: format!("warning {i}"),
                },
                _ => Event::Skipped {
                    id: format!("02.{i}"),
                    reason: "x".into(),
                },
            }
        }

        proptest! {
            #[test]
            fn any_bytes_give_records_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
                if let Err(e) = parse_journal(&bytes, Path::new("journal.jsonl")) {
                    prop_assert!(e.to_string().contains("journal.jsonl"));
                }
            }

            #[test]
            fn a_journal_cut_anywhere_keeps_every_whole_line(n in 1u32..12, cut in any::<prop::sample::Index>()) {
                let mut bytes = Vec::new();
                let mut ends = Vec::new();
                for i in 0..n {
                    let r = Record { v: SCHEMA_VERSION, at: "t".into(), event: event(i) };
                    bytes.extend(serde_json::to_vec(&r).expect("encode"));
                    bytes.push(b'\n');
                    ends.push(bytes.len());
                }
                let at = cut.index(bytes.len() + 1);
                let (records, warning) = parse_journal(&bytes[..at], Path::new("j")).expect("a cut journal reads");
                // A line is whole once its JSON is complete, newline or not.
                let whole = ends.iter().filter(|&&e| e - 1 <= at).count();
                prop_assert_eq!(records.len(), whole);
                for (i, r) in records.iter().enumerate() {
                    prop_assert_eq!(&r.event, &event(i as u32));
                }
                let torn = at > 0 && !ends.iter().any(|&e| e == at || e - 1 == at);
                prop_assert_eq!(warning.is_some(), torn);
            }
        }
    }
}
