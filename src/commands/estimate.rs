//! `estimate` (and `run --dry-run`): every request counted as `run` builds it, against the
//! budgets; sends nothing. Exit 3 when a prompt is over `per_prompt` or inputs alone are
//! over a budget; a worst case over a budget is a warning.

use crate::error::{Error, Result};
use crate::estimate::Estimate;
use crate::plan::Graph;
use crate::request::RequestBuilder;
use crate::settings::Settings;
use crate::state::Reading;
use crate::tables;

pub(crate) fn estimate(settings: &Settings) -> Result<()> {
    let plan = settings.load_plan()?;
    let builder = RequestBuilder::new(&settings.config, &plan, &settings.config_dir)?;
    let state = Reading::read_if_any(&settings.checkpoints)?;
    let e = crate::estimate::estimate(
        &plan,
        &settings.config,
        &builder,
        &|i| {
            state
                .as_ref()
                .and_then(|s| s.variables_of(&plan.prompts[i]))
        },
        &|i| state.as_ref().and_then(|s| s.spent_on(&plan.prompts[i])),
    )?;
    if settings.printer.json {
        settings.printer.json(&e)?;
    } else {
        let config = &settings.config;
        let graph = Graph::of(&plan.prompts, &plan.phases, config.context.history);
        // A completed prompt's own time, else its footer's; a mock session's times (the
        // embedded model answers at once) say nothing of a real run's.
        let past = |i: usize| -> Option<f64> {
            let fold = &state.as_ref()?.fold;
            if fold.mock {
                return None;
            }
            let id = plan.prompts[i].id.as_str();
            let p = fold.prompts.get(id).filter(|_| fold.done.contains(id))?;
            Some(p.duration_ms as f64 / 60_000.0)
        };
        let minutes = |i: usize| past(i).or_else(|| plan.prompts[i].footer.as_ref()?.minutes);
        let by = if (0..plan.prompts.len()).any(|i| past(i).is_some()) {
            "past runs and the footers"
        } else {
            "the footers"
        };
        let mut text = tables::estimate_text(&e);
        text.push_str(&tables::critical_path_line(
            &plan,
            &graph,
            &minutes,
            config.run.jobs,
            by,
        ));
        settings.printer.data(&text)?;
    }
    for p in e
        .phases
        .iter()
        .filter(|p| p.worst_case_over && !p.over_budget)
    {
        settings.printer.warn(&format!(
            "phase {}: the worst case ({} tokens) is over its budget ({}); the run caps max_tokens to what remains",
            p.name,
            p.worst_case_tokens,
            p.budget.unwrap_or_default()
        ));
    }
    if e.over_budget {
        return Err(Error::Budget(format!(
            "over budget:\n  {}",
            over_budget(&e).join("\n  ")
        )));
    }
    Ok(())
}

/// Why an estimate is over budget, one line per reason.
fn over_budget(e: &Estimate) -> Vec<String> {
    let mut reasons = Vec::new();
    for p in e.prompts.iter().filter(|p| p.over_per_prompt) {
        reasons.push(format!(
            "prompt {} counts {} tokens, over budget.per_prompt {}",
            p.id, p.input_tokens, e.total.per_prompt
        ));
    }
    for p in e.phases.iter().filter(|p| p.over_budget) {
        reasons.push(format!(
            "phase {}: inputs alone count {} tokens, over its budget {}",
            p.name,
            p.input_tokens,
            p.budget.unwrap_or_default()
        ));
    }
    if e.total.over_budget {
        reasons.push(format!(
            "inputs alone count {} tokens, over budget.total {}",
            e.total.input_tokens, e.total.budget
        ));
    }
    reasons
}
