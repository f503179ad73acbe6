//! `plan`: phases and prompts in order, with ids, footer hints, what each needs and
//! produces; exit 2 on plan errors.

use crate::error::Result;
use crate::plan::Graph;
use crate::settings::Settings;
use crate::tables;
use crate::verify;

pub(crate) fn plan(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let checks: Vec<_> = (0..plan.prompts.len())
        .map(|i| verify::shown(&settings.config, &plan, i))
        .collect();
    let config = &settings.config;
    let graph = Graph::of(&plan.prompts, &plan.phases, config.context.history);
    if settings.printer.json {
        return settings
            .printer
            .json(&tables::plan_json(&plan, &checks, &graph));
    }
    let ws = &config.workspace;
    let excludes = ws.snapshots().then(|| ws.excludes());
    let minutes =
        |i: usize| -> Option<f64> { plan.prompts[i].footer.as_ref().and_then(|f| f.minutes) };
    for warning in verify::weak_checks(config, &plan, &checks) {
        settings.printer.warn(&warning);
    }
    let mut text = tables::plan_text(&plan, &checks, excludes.as_deref());
    text.push_str(&tables::critical_path_line(
        &plan,
        &graph,
        &minutes,
        config.run.jobs,
        "the footers",
    ));
    settings.printer.data(&text)
}
