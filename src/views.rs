//! The views of the journal: `status.json` (the seed's schema, extended) and `memory.json`,
//! and the facts both `status` and the runner read off the fold (the current prompt, the
//! prompts changed since they ran). Above both the state they are folded from and the
//! budgets they show, so that neither has to know the other.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::budget::Ledger;
use crate::config::Config;
use crate::documents::{Criterion, Halted, StatusDoc};
use crate::plan::Plan;
use crate::state::{Fold, SCHEMA_VERSION, now};
use crate::text::thousands;

/// `status.json`, and what `status --json` prints: the seed's keys with the seed's
/// meaning, then the extensions ([`StatusDoc`]), borrowed from the fold (no intermediate
/// JSON tree: it grows with the run). `outputs_saved`: how many completed prompts' outputs
/// are on disk (the runner has just written them all; `status` looks).
pub(crate) fn status_doc<'a>(
    fold: &'a Fold,
    plan: &Plan,
    ledger: &Ledger,
    config: &Config,
    outputs_saved: usize,
) -> StatusDoc<'a> {
    StatusDoc {
        schema_version: SCHEMA_VERSION,
        session_id: Cow::Borrowed(&fold.session_id),
        started: Cow::Borrowed(&fold.started),
        current_prompt: current_prompt(fold, plan),
        completed: Cow::Borrowed(&fold.completed),
        failed: Cow::Borrowed(&fold.failed),
        warnings: Cow::Borrowed(&fold.warnings),
        variables: Cow::Borrowed(&fold.variables),
        last_checkpoint: fold.last_checkpoint.as_deref().map(Cow::Borrowed),
        skipped: Cow::Borrowed(&fold.skipped),
        halted: fold.halted.as_ref().map(|(reason, code)| Halted {
            reason: reason.clone(),
            code: *code,
        }),
        paused: crate::documents::Paused::of(fold.paused.as_ref()),
        finished: fold.finished,
        mock: fold.mock,
        prompts: Cow::Borrowed(&fold.prompts),
        plan_hashes: plan
            .prompts
            .iter()
            .map(|p| (p.id.to_string(), p.hash.clone()))
            .collect(),
        phases: Cow::Owned(ledger.phases.clone()),
        total: Cow::Owned(ledger.total.clone()),
        criteria: criteria(fold, plan, ledger, config, outputs_saved),
        changed: changed(fold, plan),
        baseline: fold.workspace.baseline.clone(),
    }
}

/// The seed's five success criteria, measured.
pub(crate) fn criteria(
    fold: &Fold,
    plan: &Plan,
    ledger: &Ledger,
    config: &Config,
    outputs_saved: usize,
) -> Vec<Criterion> {
    let done = plan
        .prompts
        .iter()
        .filter(|p| fold.done.contains(p.id.as_str()))
        .count();
    let biggest = fold
        .prompts
        .values()
        .map(|p| p.max_input)
        .max()
        .unwrap_or(0);
    let elapsed = elapsed_secs(&fold.started, fold.last_checkpoint.as_deref());
    let partly = if ledger.total.estimated {
        " (partly estimated)"
    } else {
        ""
    };
    vec![
        Criterion {
            name: "All checkpoints passed".into(),
            passed: done == plan.prompts.len() && fold.failed.is_empty(),
            value: format!(
                "{done}/{} completed, {} failed",
                plan.prompts.len(),
                fold.failed.len()
            ),
        },
        Criterion {
            name: format!("Total tokens < {}", thousands(config.budget.total)),
            passed: ledger.total.used < config.budget.total,
            value: format!("{}{partly}", thousands(ledger.total.used)),
        },
        Criterion {
            name: format!("No prompt > {} tokens", thousands(config.budget.per_prompt)),
            passed: biggest <= config.budget.per_prompt,
            // What the budget check held for it: the count, with a margin until the
            // endpoint reported usage (run and estimate show the count itself).
            value: format!("largest request reserved {}", thousands(biggest)),
        },
        Criterion {
            name: "Recovery possible from any point".into(),
            passed: outputs_saved == fold.completed.len(),
            value: format!(
                "journal of {} events; {outputs_saved}/{} outputs saved",
                fold.events,
                fold.completed.len()
            ),
        },
        Criterion {
            name: format!(
                "Complete in < {}",
                humantime::format_duration(config.run.max_duration)
            ),
            passed: elapsed.is_some_and(|s| s < config.run.max_duration.as_secs_f64()),
            value: elapsed.map_or_else(
                || "not started".into(),
                |s| {
                    format!(
                        "{} so far",
                        humantime::format_duration(Duration::from_secs(s as u64))
                    )
                },
            ),
        },
    ]
}

fn elapsed_secs(started: &str, last: Option<&str>) -> Option<f64> {
    let start = humantime::parse_rfc3339_weak(started).ok()?;
    let end = last
        .and_then(|l| humantime::parse_rfc3339_weak(l).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(end.duration_since(start).unwrap_or_default().as_secs_f64())
}

/// `memory.json`: what outlives a lost conversation.
#[derive(Serialize)]
pub(crate) struct MemoryView<'a> {
    pub(crate) schema_version: u32,
    pub(crate) session_id: &'a str,
    pub(crate) constants: &'a BTreeMap<String, Value>,
    /// The constants and every completed prompt's variables, later prompts winning.
    pub(crate) variables: BTreeMap<&'a str, &'a Value>,
    pub(crate) last_files_created: &'a [String],
    pub(crate) completed: &'a [String],
    pub(crate) breadcrumbs: &'a [String],
    pub(crate) updated: String,
}

impl<'a> MemoryView<'a> {
    pub(crate) fn new(
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

/// The seed's `current_prompt`: the file of the first prompt not completed; null when all are.
pub(crate) fn current_prompt(fold: &Fold, plan: &Plan) -> Option<String> {
    plan.prompts
        .iter()
        .find(|p| !fold.done.contains(p.id.as_str()))
        .map(|p| p.file.clone())
}

/// Completed prompts whose file changed since they ran.
pub(crate) fn changed(fold: &Fold, plan: &Plan) -> Vec<String> {
    plan.prompts
        .iter()
        .filter(|p| fold.done.contains(p.id.as_str()))
        .filter(|p| {
            fold.prompts
                .get(p.id.as_str())
                .and_then(|s| s.hash.as_deref())
                .is_some_and(|h| h != p.hash)
        })
        .map(|p| p.id.to_string())
        .collect()
}

/// How many completed prompts' outputs are on disk in `checkpoints`.
pub(crate) fn outputs_saved(fold: &Fold, checkpoints: &Path) -> usize {
    fold.completed
        .iter()
        .filter(|id| {
            fold.prompts
                .get(id.as_str())
                .and_then(|p| p.output.as_deref())
                .is_some_and(|o| checkpoints.join(o).is_file())
        })
        .count()
}
