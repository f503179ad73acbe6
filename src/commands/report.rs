//! `report`: the session as one self-contained HTML page, `checkpoints/report.html` (also
//! written at the end of every `run` and `rerun`), built from the journal; `--json` prints
//! the same data.

use std::path::PathBuf;

use serde_json::json;

use super::Settings;
use super::status::criteria;
use crate::budget::Ledger;
use crate::error::Result;
use crate::history::History;
use crate::plan::Plan;
use crate::state::{self, Fold};

/// Where the page goes, in the checkpoints folder.
pub(crate) const REPORT: &str = "report.html";

pub(crate) fn report(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let printer = settings.printer;
    if printer.json {
        let Some((h, fold)) = read(settings, &plan)? else {
            return printer.json(&json!({"session_id": null}));
        };
        let ledger = Ledger::new(&fold, &plan, &settings.config);
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
    let Some((h, fold)) = read(settings, plan)? else {
        return Ok(None);
    };
    let ledger = Ledger::new(&fold, plan, &settings.config);
    let criteria = criteria(&fold, plan, &ledger, settings);
    drop(fold);
    let path = settings.checkpoints.join(REPORT);
    state::write_atomic(&path, |w| crate::html::render(&h, &criteria, w))?;
    Ok(Some(path))
}

/// The session's history and its journal folded, read a record at a time.
fn read(settings: &Settings, plan: &Plan) -> Result<Option<(History, Fold)>> {
    let mut fold = Fold::default();
    let mut walk = crate::history::walk(plan);
    state::each_record(&settings.checkpoints.join(state::JOURNAL), |r| {
        fold.apply(&r);
        walk.apply(&r);
    })?;
    if fold.session_id.is_empty() {
        return Ok(None);
    }
    let h = walk.finish(&fold, &settings.config);
    Ok(Some((h, fold)))
}
