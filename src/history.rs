//! A session's history, from its journal: every attempt of every prompt in order (with
//! its retries and waits, failures, checks and commit), the budget burned per phase as it
//! went, and what each prompt produced. It is what `report` shows (`report.html`) and what
//! `report --json` prints: one document, built from the journal alone (plus the plan's
//! phases and config's budgets to weigh it against), read a record at a time.

use std::collections::BTreeMap;

use serde_json::Map;

use crate::budget::Ledger;
use crate::config::Config;
use crate::documents::{
    AttemptHistory, AttemptOutcome, CheckHistory, Criterion, Halted, PhaseHistory, PromptHistory,
    PromptStatus, ReportDoc,
};
use crate::plan::Plan;
use crate::state::{Event, Fold, Record};

/// The most of a reply a report holds (the whole one is in `outputs/<id>.md`): a report of
/// a thousand prompts stays small.
pub(crate) const REPLY_SHOWN: usize = 1024;

/// The journal walked in order, a record at a time (a report never holds the whole
/// journal): [`Walk::finish`] weighs it against the plan's phases and config's budgets.
pub(crate) fn walk(plan: &Plan) -> Walk<'_> {
    let phases = plan.phases.len();
    Walk {
        plan,
        index: plan
            .prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect(),
        prompts: plan.prompts.iter().map(|p| not_run(p, plan)).collect(),
        burns: vec![Vec::new(); phases],
        total_burn: Vec::new(),
        spent: vec![0; phases],
        spent_total: 0,
        last_event: String::new(),
    }
}

fn not_run(p: &crate::plan::Prompt, plan: &Plan) -> PromptHistory {
    PromptHistory {
        id: p.id.to_string(),
        name: p.name.clone(),
        phase: plan.phases[p.phase].name.clone(),
        status: PromptStatus::Pending,
        attempts: Vec::new(),
        request_tokens: 0,
        reply: None,
        reply_bytes: 0,
        variables: Map::new(),
        commit: None,
        reason: None,
    }
}

/// The journal walked so far.
pub(crate) struct Walk<'a> {
    plan: &'a Plan,
    index: BTreeMap<&'a str, usize>,
    prompts: Vec<PromptHistory>,
    burns: Vec<Vec<u64>>,
    total_burn: Vec<u64>,
    spent: Vec<u64>,
    spent_total: u64,
    last_event: String,
}

impl Walk<'_> {
    /// The history of the session walked (folded as `fold`), weighed against the plan's
    /// phases and `config`'s budgets, with its `criteria` measured.
    pub(crate) fn finish(
        self,
        fold: &Fold,
        config: &Config,
        criteria: Vec<Criterion>,
    ) -> ReportDoc {
        let ledger = Ledger::new(fold, self.plan, config);
        let phases = ledger
            .phases
            .iter()
            .zip(self.burns)
            .map(|(s, burn)| PhaseHistory {
                name: s.name.clone(),
                budget: s.budget,
                used: s.used,
                possibly_billed: s.possibly_billed,
                burn,
            })
            .collect();
        ReportDoc {
            project: config.project.name.clone(),
            session_id: fold.session_id.clone(),
            started: fold.started.clone(),
            last_event: self.last_event,
            mock: fold.mock,
            prompts: self.prompts,
            phases,
            total: PhaseHistory {
                name: "Total".into(),
                budget: Some(ledger.total.budget),
                used: ledger.total.used,
                possibly_billed: ledger.total.possibly_billed,
                burn: self.total_burn,
            },
            cost_usd: ledger.total.cost_usd,
            unpriced: ledger.total.unpriced,
            completed: fold.completed.clone(),
            failed: fold.failed.clone(),
            skipped: fold.skipped.clone(),
            halted: fold.halted.as_ref().map(|(reason, code)| Halted {
                reason: reason.clone(),
                code: *code,
            }),
            paused: crate::documents::Paused::of(fold.paused.as_ref()),
            criteria,
        }
    }

    pub(crate) fn apply(&mut self, r: &Record) {
        self.last_event.clone_from(&r.at);
        let Some(i) = prompt_of(&r.event).and_then(|id| self.index.get(id).copied()) else {
            return;
        };
        let p = &mut self.prompts[i];
        match &r.event {
            Event::AttemptStarted {
                attempt,
                input_tokens,
                by,
                ..
            } => {
                p.status = PromptStatus::Running;
                p.request_tokens = p.request_tokens.max(*input_tokens);
                p.attempts.push(AttemptHistory {
                    attempt: *attempt,
                    started: r.at.clone(),
                    outcome: AttemptOutcome::Unknown,
                    input_tokens: *input_tokens,
                    estimated: true,
                    by: by.clone(),
                    ..AttemptHistory::default()
                });
            }
            Event::AttemptFinished(a) => {
                if let Some(h) = p.attempts.iter_mut().rev().find(|h| h.attempt == a.attempt) {
                    finished(h, a);
                }
                self.burn(self.plan.prompts[i].phase, a.budgeted());
            }
            Event::Retry {
                attempt, delay_ms, ..
            } => {
                // `attempt` is the one to come: the wait follows the one before it.
                if let Some(h) = p.attempts.iter_mut().rev().find(|h| h.attempt < *attempt) {
                    h.retry_after_ms = Some(*delay_ms);
                }
            }
            Event::Paused { until_ms, .. } => {
                if let Some(h) = p.attempts.last_mut() {
                    h.paused_until = Some(crate::text::rfc3339(*until_ms));
                }
            }
            Event::Verified {
                attempt,
                from,
                check,
                passed,
                ..
            } => {
                if let Some(h) = p.attempts.iter_mut().rev().find(|h| h.attempt == *attempt) {
                    h.checks.push(CheckHistory {
                        from: *from,
                        check: check.lines().next().unwrap_or("").to_string(),
                        passed: *passed,
                    });
                }
            }
            Event::Completed {
                variables,
                reply,
                commit,
                ..
            } => {
                p.status = PromptStatus::Completed;
                p.reply = Some(crate::text::head(reply, REPLY_SHOWN).to_string());
                p.reply_bytes = reply.len();
                p.variables.clone_from(variables);
                p.commit.clone_from(commit);
                p.reason = None;
            }
            Event::Failed { error, .. } => {
                p.status = PromptStatus::Failed;
                p.reason = Some(error.clone());
            }
            Event::Skipped { reason, .. } => {
                p.status = PromptStatus::Skipped;
                p.reason = Some(reason.clone());
            }
            _ => {}
        }
    }

    /// An attempt that spent `cost` in `phase`: a point of the burn-down.
    fn burn(&mut self, phase: usize, cost: u64) {
        if cost == 0 {
            return;
        }
        self.spent[phase] = self.spent[phase].saturating_add(cost);
        self.spent_total = self.spent_total.saturating_add(cost);
        self.burns[phase].push(self.spent[phase]);
        self.total_burn.push(self.spent_total);
    }
}

/// An attempt's history once its result is in.
fn finished(h: &mut AttemptHistory, a: &crate::state::AttemptResult) {
    h.outcome = a.outcome;
    (h.input_tokens, h.output_tokens) = (a.input_tokens, a.output_tokens);
    h.reasoning_tokens = a.reasoning_tokens;
    h.estimated = a.estimated;
    h.duration_ms = a.duration_ms;
    h.error.clone_from(&a.error);
    h.cache_read_tokens = a.cache_read_tokens;
    h.cost_usd = if a.cost_usd.is_finite() {
        a.cost_usd
    } else {
        0.0
    };
    h.agent_errors.clone_from(&a.agent_errors);
}

/// The prompt an event is about.
fn prompt_of(event: &Event) -> Option<&str> {
    match event {
        Event::AttemptStarted { id, .. }
        | Event::Retry { id, .. }
        | Event::Paused { id, .. }
        | Event::Verified { id, .. }
        | Event::Completed { id, .. }
        | Event::Failed { id, .. }
        | Event::Skipped { id, .. } => Some(id),
        Event::AttemptFinished(a) => Some(&a.id),
        _ => None,
    }
}
