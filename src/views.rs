//! The views of the journal: `status.json` (the seed's schema, extended) and `memory.json`,
//! and the facts both `status` and the runner read off the fold (the current prompt, the
//! prompts changed since they ran). Above both the state they are folded from and the
//! budgets they show, so that neither has to know the other.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::budget::{Ledger, PhaseSpend, TotalSpend};
use crate::plan::Plan;
use crate::state::{Fold, PromptState, SCHEMA_VERSION, now};

/// `status.json`: the seed's keys with the seed's meaning, then the extensions. Serialized
/// straight from the fold (no intermediate JSON tree): it grows with the run.
#[derive(Serialize)]
pub(crate) struct StatusView<'a> {
    pub(crate) schema_version: u32,
    pub(crate) session_id: &'a str,
    pub(crate) started: &'a str,
    pub(crate) current_prompt: Option<&'a str>,
    pub(crate) completed: &'a [String],
    pub(crate) failed: &'a [String],
    pub(crate) warnings: &'a [String],
    pub(crate) variables: &'a BTreeMap<String, Map<String, Value>>,
    pub(crate) last_checkpoint: Option<&'a str>,
    pub(crate) skipped: &'a [String],
    pub(crate) halted: Option<Halted<'a>>,
    pub(crate) finished: bool,
    pub(crate) prompts: &'a BTreeMap<String, PromptState>,
    pub(crate) plan_hashes: BTreeMap<&'a str, &'a str>,
    pub(crate) phases: &'a [PhaseSpend],
    pub(crate) totals: &'a TotalSpend,
}

#[derive(Serialize)]
pub(crate) struct Halted<'a> {
    pub(crate) reason: &'a str,
    pub(crate) code: i32,
}

impl<'a> StatusView<'a> {
    pub(crate) fn new(
        fold: &'a Fold,
        plan: &'a Plan,
        ledger: &'a Ledger,
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
