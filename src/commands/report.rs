//! `report`: the session as one self-contained HTML page, `checkpoints/report.html` (also
//! written at the end of every `run` and `rerun`), built from the journal; `--json` prints
//! the same data.

use serde_json::json;

use crate::error::Result;
use crate::report;
use crate::settings::Settings;

pub(crate) fn report(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let printer = settings.printer;
    if printer.json {
        let Some(doc) = report::document(&settings.checkpoints, &plan, &settings.config)? else {
            return printer.json(&json!({"session_id": null}));
        };
        return printer.json(&doc);
    }
    match report::write(&settings.checkpoints, &plan, &settings.config)? {
        Some(path) => printer.data(&format!("wrote {}", path.display())),
        None => printer.data(&format!(
            "No session in {} yet: `orchestrator run` starts one.",
            settings.checkpoints.display()
        )),
    }
}
