//! `report`: the session as one self-contained HTML page, `checkpoints/report.html` (also
//! written at the end of every `run` and `rerun`), built from the journal; `--json` prints
//! the same data.

use std::path::PathBuf;

use serde_json::json;

use super::Settings;
use super::status::criteria;
use crate::budget::Ledger;
use crate::error::Result;
use crate::history::history;
use crate::plan::Plan;
use crate::state::{self, Fold};

/// Where the page goes, in the checkpoints folder.
pub(crate) const REPORT: &str = "report.html";

pub(crate) fn report(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let printer = settings.printer;
    if printer.json {
        let Some((records, fold)) = read(settings)? else {
            return printer.json(&json!({"session_id": null}));
        };
        let ledger = Ledger::new(&fold, &plan, &settings.config);
        let h = history(&records, &fold, &plan, &settings.config);
        let mut doc = serde_json::to_value(&h).unwrap_or_default();
        doc["criteria"] = json!(criteria(&fold, &plan, &ledger, settings));
        return printer.json(&doc);
    }
    match write(settings, &plan)? {
        Some(path) => printer.data(&format!("wrote {}", path.display())),
        None => printer.data(&format!(
            "No session in {} yet: `orchestrator run` starts one.",
            settings.checkpoints.display()
        )),
    }
}

/// Writes `checkpoints/report.html` for the session there; its path, or `None` when there
/// is no session.
pub(crate) fn write(settings: &Settings, plan: &Plan) -> Result<Option<PathBuf>> {
    let Some((records, fold)) = read(settings)? else {
        return Ok(None);
    };
    let ledger = Ledger::new(&fold, plan, &settings.config);
    let h = history(&records, &fold, plan, &settings.config);
    let page = crate::html::render(&h, &criteria(&fold, plan, &ledger, settings));
    drop(records);
    let path = settings.checkpoints.join(REPORT);
    state::write_atomic(&path, |w| w.write_all(page.as_bytes()))?;
    Ok(Some(path))
}

fn read(settings: &Settings) -> Result<Option<(Vec<state::Record>, Fold)>> {
    let (records, _) = state::read_journal(&settings.checkpoints.join(state::JOURNAL))?;
    if records.is_empty() {
        return Ok(None);
    }
    let mut fold = Fold::default();
    for r in &records {
        fold.apply(r);
    }
    Ok(Some((records, fold)))
}
