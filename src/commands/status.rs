//! `status`: progress, the seed's budget table and success criteria, from the journal
//! folded read-only (no lock: it can run beside a `run`).

use serde_json::json;

use super::Settings;
use crate::budget::Ledger;
use crate::error::Result;
use crate::report;
use crate::state::{Fold, Snapshot};
use crate::views::status_doc;

pub(crate) fn status(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let printer = settings.printer;
    let Some(snapshot) = Snapshot::read_if_any(&settings.checkpoints)? else {
        if printer.json {
            return printer.json(&json!({"session_id": null, "current_prompt": null, "completed": [], "failed": [], "changed": []}));
        }
        return printer.data(&format!(
            "No session in {} yet: `orchestrator run` starts one.",
            settings.checkpoints.display()
        ));
    };
    if let Some(w) = &snapshot.warning {
        printer.warn(w);
    }
    let fold = &snapshot.fold;
    let ledger = Ledger::new(fold, &plan, &settings.config);
    let doc = status_doc(
        fold,
        &plan,
        &ledger,
        &settings.config,
        outputs_saved(fold, settings),
    );
    if printer.json {
        printer.json(&doc)
    } else {
        printer.data(&report::status_text(&doc, fold, &plan, &ledger))
    }
}

/// How many completed prompts' outputs are on disk.
pub(super) fn outputs_saved(fold: &Fold, settings: &Settings) -> usize {
    fold.completed
        .iter()
        .filter(|id| {
            fold.prompts
                .get(id.as_str())
                .and_then(|p| p.output.as_deref())
                .is_some_and(|o| settings.checkpoints.join(o).is_file())
        })
        .count()
}
