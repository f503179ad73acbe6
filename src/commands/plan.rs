//! `plan`: phases and prompts in order, with ids, footer hints, what each needs and
//! produces; exit 2 on plan errors.

use super::Settings;
use crate::error::Result;
use crate::report;

pub(crate) fn plan(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    if settings.printer.json {
        settings.printer.json(&report::plan_json(&plan))
    } else {
        settings.printer.data(&report::plan_text(&plan))
    }
}
