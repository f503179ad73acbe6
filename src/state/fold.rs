//! The journal folded: where each prompt stands, what it spent, the variables so far, the
//! attempts still open. Everything the views and the runner need, rebuilt from the journal
//! alone.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::journal::{AttemptResult, Event, Record};
use super::workspace_fold::WorkspaceFold;
use crate::documents::{AttemptOutcome, CheckState, PromptState, PromptStatus};
use crate::process::ProcessGroup;

/// An attempt journaled as started with no result yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OpenAttempt {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) input_tokens: u64,
    pub(crate) max_tokens: u32,
    /// The tokenizer's count of its input, for calibration.
    pub(crate) tokenizer_tokens: u64,
    /// The agent's process group, once it started.
    pub(crate) group: Option<ProcessGroup>,
    /// The mark in the environment of every process the attempt started.
    pub(crate) mark: Option<String>,
}

/// The journal folded: everything the views and the runner need.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fold {
    pub(crate) session_id: String,
    pub(crate) started: String,
    pub(crate) completed: Vec<String>,
    /// The ids in `completed`, for lookups that stay cheap on long runs.
    pub(crate) done: std::collections::HashSet<String>,
    pub(crate) failed: Vec<String>,
    pub(crate) skipped: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) variables: BTreeMap<String, Map<String, Value>>,
    pub(crate) last_checkpoint: Option<String>,
    pub(crate) prompts: BTreeMap<String, PromptState>,
    pub(crate) open: Vec<OpenAttempt>,
    pub(crate) halted: Option<(String, i32)>,
    pub(crate) finished: bool,
    /// The last attempts, newest last (memory.json's breadcrumb trail).
    pub(crate) trail: Vec<String>,
    pub(crate) last_files_created: Vec<String>,
    pub(crate) events: u64,
    /// The largest ratio seen of the input the endpoint reported to the input we counted
    /// (at least 1): endpoints with other tokenizers count more than tiktoken does, and the
    /// budget check scales its count by this so that hard budgets stay hard. `None` until
    /// an endpoint has reported usage.
    pub(crate) input_ratio: Option<f64>,
    /// Cost of every attempt so far (reported, or from `[pricing]`).
    pub(crate) cost_usd: f64,
    /// Attempts whose cost is unknown (left out of `cost_usd`).
    pub(crate) unpriced: u32,
    /// An agent build's workspace: baseline, branch, what it should hold.
    pub(crate) workspace: WorkspaceFold,
    /// The most one agent call has spent against the budgets (tokens), and in USD: what
    /// the next agent call is reserved at, at least.
    pub(crate) largest_agent_call: u64,
    pub(crate) largest_agent_cost: f64,
    /// Settings the endpoint refused, as changed (setting, value): a resumed run starts
    /// with them.
    pub(crate) learned: BTreeMap<String, String>,
    /// The session was run against the embedded mock model.
    pub(crate) mock: bool,
    /// A rate or usage limit's pause not yet over (no attempt started since): the
    /// prompt, until when (Unix milliseconds) and why.
    pub(crate) paused: Option<(String, u64, String)>,
}

const TRAIL: usize = 20;

impl Fold {
    /// Our count of a request's input scaled by what the endpoint has been reporting, if
    /// it has reported any.
    pub(crate) fn calibrated(&self, counted: u64) -> Option<u64> {
        self.input_ratio
            .map(|r| (counted as f64 * r.max(1.0)).ceil() as u64)
    }

    pub(crate) fn apply(&mut self, record: &Record) {
        self.events += 1;
        let at = &record.at;
        self.workspace.apply(&record.event);
        match &record.event {
            Event::SessionStarted {
                session_id,
                started,
                mock,
            } => {
                self.session_id = session_id.clone();
                self.started = started.clone();
                self.mock = *mock;
            }
            Event::RunStarted { .. } => {
                self.halted = None;
                self.finished = false;
            }
            Event::AttemptStarted { .. } => self.attempt_started(&record.event, at),
            Event::AgentStarted { id, attempt, group } => {
                if let Some(o) = self
                    .open
                    .iter_mut()
                    .find(|o| o.id == *id && o.attempt == *attempt)
                {
                    o.group = Some(group.clone());
                }
            }
            Event::AttemptFinished(result) => self.attempt_finished(result, at),
            Event::Retry { .. } => {}
            Event::Iterated {
                id,
                iteration,
                commit,
                check,
                output,
                ..
            } => {
                let p = self.prompts.entry(id.clone()).or_default();
                p.iteration = *iteration;
                p.iteration_commit.clone_from(commit);
                p.attempts_used = 0;
                p.retry_note = None;
                p.iteration_note = Some(format!(
                    "the check `{check}` still fails after iteration {iteration}; its output:\n{output}"
                ));
            }
            Event::Paused {
                id,
                until_ms,
                reason,
            } => {
                self.paused = Some((id.clone(), *until_ms, reason.clone()));
                self.push_trail(format!("{at} {id} paused for a limit"));
            }
            Event::Completed { .. } => self.completed(&record.event, at),
            Event::Failed { id, error, .. } => {
                self.settle(id, PromptStatus::Failed, error);
                // A completed prompt run again that fails needs attention again.
                if self.done.remove(id) {
                    self.completed.retain(|c| c != id);
                }
                self.failed.retain(|c| c != id);
                self.failed.push(id.clone());
                self.last_checkpoint = Some(at.clone());
            }
            Event::Skipped { id, reason } => {
                self.settle(id, PromptStatus::Skipped, reason);
                self.skipped.retain(|c| c != id);
                self.skipped.push(id.clone());
            }
            Event::Warning { id, message } => {
                self.warnings.push(match id {
                    Some(id) => format!("{id}: {message}"),
                    None => message.clone(),
                });
            }
            Event::WorkspaceCommitted { .. }
            | Event::WorkspaceRestored { .. }
            | Event::WorkspaceLeft { .. }
            | Event::Verified { .. }
            | Event::Reopened { .. } => self.workspace_event(&record.event),
            Event::Merging { .. } => {}
            Event::Learned { setting, value, .. } => {
                self.learned.insert(setting.clone(), value.clone());
            }
            Event::Halted { reason, code } => self.halted = Some((reason.clone(), *code)),
            Event::Finished {} => {
                self.finished = true;
            }
        }
    }

    /// An agent build's events: the workspace's commits and restores, checks, prompts
    /// reopened.
    fn workspace_event(&mut self, event: &Event) {
        match event {
            Event::WorkspaceCommitted {
                id: Some(id),
                commit,
                ..
            } => {
                if let Some(p) = self.prompts.get_mut(id) {
                    p.commit = Some(commit.clone());
                }
            }
            Event::Verified {
                id,
                from,
                check,
                passed,
                exit_code,
                ..
            } => {
                let p = self.prompts.entry(id.clone()).or_default();
                p.checks.retain(|c| !(c.from == *from && c.check == *check));
                p.checks.push(CheckState {
                    from: *from,
                    check: check.clone(),
                    passed: *passed,
                    exit_code: *exit_code,
                });
            }
            Event::Reopened { ids, reason } => {
                for id in ids {
                    if self.done.remove(id) {
                        self.completed.retain(|c| c != id);
                    }
                    let p = self.prompts.entry(id.clone()).or_default();
                    p.status = PromptStatus::Pending;
                    p.commit = None;
                    p.last_error = Some(reason.clone());
                }
            }
            _ => {}
        }
    }

    /// A prompt failed or was skipped: the next run gives it its attempts again.
    fn settle(&mut self, id: &str, status: PromptStatus, why: &str) {
        let p = self.prompts.entry(id.to_string()).or_default();
        p.status = status;
        p.attempts_used = 0;
        p.retry_note = None;
        p.last_error = Some(why.to_string());
    }

    fn attempt_finished(&mut self, r: &AttemptResult, at: &str) {
        // Only an endpoint's own report of a good reply calibrates the tokenizer.
        if let Some(o) = self
            .open
            .iter()
            .find(|o| o.id == r.id && o.attempt == r.attempt)
            && !r.by_agent
            && !r.estimated
            && r.outcome == AttemptOutcome::Ok
            && o.tokenizer_tokens > 0
        {
            let ratio = r.input_tokens as f64 / o.tokenizer_tokens as f64;
            self.input_ratio = Some(self.input_ratio.map_or(ratio, |x| x.max(ratio)));
        }
        self.open
            .retain(|o| !(o.id == r.id && o.attempt == r.attempt));
        let p = self.prompts.entry(r.id.clone()).or_default();
        let budgeted = r.budgeted();
        p.budgeted = p.budgeted.saturating_add(budgeted);
        if r.by_agent && r.outcome != AttemptOutcome::Unknown {
            self.largest_agent_call = self.largest_agent_call.max(budgeted);
            if r.cost_usd.is_finite() {
                self.largest_agent_cost = self.largest_agent_cost.max(r.cost_usd);
            }
        }
        p.tokens_in = p.tokens_in.saturating_add(r.input_tokens);
        p.tokens_out = p.tokens_out.saturating_add(r.output_tokens);
        p.cache_read = p.cache_read.saturating_add(r.cache_read_tokens);
        p.cache_write = p.cache_write.saturating_add(r.cache_write_tokens);
        p.reasoning = p.reasoning.saturating_add(r.reasoning_tokens);
        p.estimated |= r.estimated;
        p.duration_ms = p.duration_ms.saturating_add(r.duration_ms);
        let cost = if r.cost_usd.is_finite() {
            r.cost_usd
        } else {
            0.0
        };
        p.cost_usd += cost;
        self.cost_usd += cost;
        self.unpriced += u32::from(r.unpriced);
        p.finish_reason = r.finish_reason.clone();
        if r.by_agent {
            p.last_session.clone_from(&r.request_id);
            p.agent_errors.clone_from(&r.agent_errors);
        }
        match r.outcome {
            AttemptOutcome::Unknown => {
                p.possibly_billed += 1;
                p.possibly_billed_tokens = p
                    .possibly_billed_tokens
                    .saturating_add(r.input_tokens.saturating_add(r.output_tokens));
                p.attempts_used = p.attempts_used.saturating_sub(1);
            }
            AttemptOutcome::Interrupted => p.attempts_used = p.attempts_used.saturating_sub(1),
            _ if r.throttled => p.attempts_used = p.attempts_used.saturating_sub(1),
            _ => {}
        }
        p.retry_note = match r.outcome {
            AttemptOutcome::Content | AttemptOutcome::Conflict => r.error.clone(),
            _ => None,
        };
        if let Some(e) = &r.error {
            p.last_error = Some(e.clone());
        }
        let (id, attempt, outcome) = (&r.id, r.attempt, r.outcome);
        let why = r
            .error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        self.push_trail(format!("{at} {id} attempt {attempt}: {outcome:?}{why}"));
    }

    fn attempt_started(&mut self, event: &Event, at: &str) {
        let Event::AttemptStarted {
            by: _,
            worktree: _,
            id,
            file,
            attempt,
            input_tokens,
            max_tokens,
            tokenizer_tokens,
            mark,
        } = event
        else {
            return;
        };
        // The pause is over once its prompt is sent again (another prompt's attempt, in a
        // parallel run, does not end it).
        if self.paused.as_ref().is_some_and(|(p, ..)| p == id) {
            self.paused = None;
        }
        let p = self.prompts.entry(id.clone()).or_default();
        p.file = file.clone();
        p.status = PromptStatus::Running;
        p.checks.clear();
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
            mark: mark.clone(),
        });
        self.push_trail(format!("{at} {id} attempt {attempt} sent"));
    }

    fn completed(&mut self, event: &Event, at: &str) {
        let Event::Completed {
            id,
            file,
            hash,
            variables,
            files_created,
            output,
            commit,
            ..
        } = event
        else {
            return;
        };
        let p = self.prompts.entry(id.clone()).or_default();
        p.status = PromptStatus::Completed;
        p.attempts_used = 0;
        p.retry_note = None;
        p.file = file.clone();
        p.hash = Some(hash.clone());
        p.files_created = files_created.clone();
        p.output = Some(output.clone());
        p.last_error = None;
        p.completed_at = Some(at.to_string());
        p.agent_session = p.last_session.take();
        (p.iteration, p.iteration_commit, p.iteration_note) = (0, None, None);
        if let Some(commit) = commit {
            p.commit = Some(commit.clone());
        }
        if !self.done.insert(id.clone()) {
            self.completed.retain(|c| c != id);
        }
        self.completed.push(id.clone());
        self.failed.retain(|c| c != id);
        self.skipped.retain(|c| c != id);
        self.variables.insert(id.clone(), variables.clone());
        self.last_checkpoint = Some(at.to_string());
        if !files_created.is_empty() {
            self.last_files_created = files_created.clone();
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
    pub(crate) fn spent(&self, id: &str) -> u64 {
        let recorded = self.prompts.get(id).map_or(0, |p| p.budgeted);
        recorded.saturating_add(self.open_worst_case(id))
    }

    /// Of [`Fold::spent`]: attempts a crash left without a result, at their worst case.
    pub(crate) fn possibly_billed(&self, id: &str) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SCHEMA_VERSION;

    fn rec(event: Event) -> Record {
        Record {
            v: SCHEMA_VERSION,
            at: "2026-01-01T00:00:00.000Z".into(),
            event,
        }
    }

    fn started(id: &str, attempt: u32) -> Record {
        rec(Event::AttemptStarted {
            by: None,
            id: id.into(),
            file: format!("{id}-a.md"),
            attempt,
            input_tokens: 100,
            max_tokens: 50,
            tokenizer_tokens: None,
            mark: None,
            worktree: None,
        })
    }

    #[test]
    fn a_pause_ends_when_its_own_prompt_is_sent_again_not_another() {
        let mut f = Fold::default();
        f.apply(&rec(Event::Paused {
            id: "01.1".into(),
            until_ms: 5,
            reason: "limit".into(),
        }));
        f.apply(&started("01.2", 1));
        assert!(
            f.paused.is_some(),
            "another prompt's attempt in a parallel run"
        );
        f.apply(&started("01.1", 1));
        assert!(f.paused.is_none());
    }

    #[test]
    fn an_unfinished_attempt_counts_at_its_worst_case() {
        let mut f = Fold::default();
        f.apply(&started("01.1", 1));
        assert_eq!(f.spent("01.1"), 150);
        f.apply(&rec(Event::AttemptFinished(AttemptResult {
            id: "01.1".into(),
            attempt: 1,
            outcome: AttemptOutcome::Ok,
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
        f.apply(&started("01.1", 1));
        f.apply(&rec(Event::AttemptFinished(AttemptResult {
            id: "01.1".into(),
            attempt: 1,
            outcome: AttemptOutcome::Ok,
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
            commit: Some("c1".into()),
            extras: None,
        }));
        assert!(f.failed.is_empty());
        assert_eq!(f.completed, ["02.1"]);
        assert_eq!(f.prompts["02.1"].commit.as_deref(), Some("c1"));
        f.apply(&rec(Event::Reopened {
            ids: vec!["02.1".into()],
            reason: "rebuilt under it".into(),
        }));
        assert!(f.completed.is_empty(), "reopened: to run again");
        assert!(!f.done.contains("02.1"));
    }

    #[test]
    fn an_agents_cache_reads_are_not_budgeted_and_its_largest_call_is_remembered() {
        let mut f = Fold::default();
        for (attempt, by_agent) in [(1, true), (2, false)] {
            f.apply(&started("01.1", attempt));
            f.apply(&rec(Event::AttemptFinished(AttemptResult {
                id: "01.1".into(),
                attempt,
                outcome: AttemptOutcome::Content,
                input_tokens: 19_000,
                cache_read_tokens: 18_000,
                output_tokens: 300,
                by_agent,
                cost_usd: 0.5,
                ..AttemptResult::default()
            })));
        }
        // The agent's: 1,000 input + 300 output; the HTTP call's: all 19,300.
        assert_eq!(f.spent("01.1"), 1_300 + 19_300);
        assert_eq!(f.largest_agent_call, 1_300);
        assert!((f.largest_agent_cost - 0.5).abs() < 1e-9);
        assert_eq!(f.prompts["01.1"].cache_read, 36_000);
    }
}
