//! `plan`: phases and prompts in order, with ids, footer hints, what each needs and
//! produces; exit 2 on plan errors.

use crate::error::Result;
use crate::settings::Settings;
use crate::tables;
use crate::verify;

pub(crate) fn plan(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let checks: Vec<_> = (0..plan.prompts.len())
        .map(|i| verify::planned(&settings.config, &plan, i))
        .collect();
    if settings.printer.json {
        settings.printer.json(&tables::plan_json(&plan, &checks))
    } else {
        let ws = &settings.config.workspace;
        let excludes = ws.snapshots().then(|| ws.excludes());
        settings
            .printer
            .data(&tables::plan_text(&plan, &checks, excludes.as_deref()))
    }
}
