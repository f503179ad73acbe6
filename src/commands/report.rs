//! `report`: the session as one self-contained HTML page, `checkpoints/report.html` (also
//! written at the end of every `run` and `rerun`), built from the journal; `--json` prints
//! the same data.

use std::path::PathBuf;

use serde_json::json;

use super::Settings;
use super::status::outputs_saved;
use crate::budget::Ledger;
use crate::documents::ReportDoc;
use crate::error::Result;
use crate::plan::Plan;
use crate::state::{self, Fold};
use crate::views;

/// Where the page goes, in the checkpoints folder.
pub(crate) const REPORT: &str = "report.html";

pub(crate) fn report(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let printer = settings.printer;
    if printer.json {
        let Some(doc) = read(settings, &plan)? else {
            return printer.json(&json!({"session_id": null}));
        };
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
    let Some(doc) = read(settings, plan)? else {
        return Ok(None);
    };
    let path = settings.checkpoints.join(REPORT);
    state::write_atomic(&path, |w| crate::html::render(&doc, w))?;
    Ok(Some(path))
}

/// The session's history, its journal read a record at a time.
fn read(settings: &Settings, plan: &Plan) -> Result<Option<ReportDoc>> {
    let mut fold = Fold::default();
    let mut walk = crate::history::walk(plan);
    state::each_record(&settings.checkpoints.join(state::JOURNAL), |r| {
        fold.apply(&r);
        walk.apply(&r);
    })?;
    if fold.session_id.is_empty() {
        return Ok(None);
    }
    let ledger = Ledger::new(&fold, plan, &settings.config);
    let saved = outputs_saved(&fold, settings);
    let criteria = views::criteria(&fold, plan, &ledger, &settings.config, saved);
    Ok(Some(walk.finish(&fold, &settings.config, criteria)))
}
