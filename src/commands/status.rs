//! `status`: progress, the seed's budget table and success criteria, from the journal
//! folded read-only (no lock: it can run beside a `run`).

use serde_json::json;

use crate::budget::Ledger;
use crate::error::Result;
use crate::settings::Settings;
use crate::state::Reading;
use crate::tables;
use crate::views::{outputs_saved, status_doc};

pub(crate) fn status(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let printer = settings.printer;
    let Some(reading) = Reading::read_if_any(&settings.checkpoints)? else {
        if printer.json {
            return printer.json(&json!({"session_id": null, "current_prompt": null, "completed": [], "failed": [], "changed": []}));
        }
        return printer.data(&format!(
            "No session in {} yet: `orchestrator run` starts one.",
            settings.checkpoints.display()
        ));
    };
    if let Some(w) = &reading.warning {
        printer.warn(w);
    }
    let fold = &reading.fold;
    let ledger = Ledger::new(fold, &plan, &settings.config);
    let doc = status_doc(
        fold,
        &plan,
        &ledger,
        &settings.config,
        outputs_saved(fold, &settings.checkpoints),
    );
    if printer.json {
        printer.json(&doc)
    } else {
        printer.data(&tables::status_text(&doc, fold, &plan, &ledger))
    }
}
