//! `status`: progress, the seed's budget table and success criteria, from the journal
//! folded read-only (no lock: it can run beside a `run`).

use std::time::Duration;

use serde_json::json;

use super::Settings;
use crate::budget::Ledger;
use crate::error::Result;
use crate::plan::Plan;
use crate::report;
use crate::state::{Fold, Snapshot};
use crate::views::{changed, current_prompt};

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
    let status = report::Status {
        fold,
        plan: &plan,
        ledger: &ledger,
        current_prompt: current_prompt(fold, &plan),
        changed: changed(fold, &plan),
        criteria: criteria(fold, &plan, &ledger, settings),
        cost_usd: ledger.total.cost_usd,
    };
    if printer.json {
        printer.json(&status.json())
    } else {
        printer.data(&status.text())
    }
}

/// The seed's five success criteria, measured.
pub(super) fn criteria(
    fold: &Fold,
    plan: &Plan,
    ledger: &Ledger,
    settings: &Settings,
) -> Vec<report::Criterion> {
    let config = &settings.config;
    let done = plan
        .prompts
        .iter()
        .filter(|p| fold.done.contains(p.id.as_str()))
        .count();
    let biggest = fold
        .prompts
        .values()
        .map(|p| p.max_input)
        .max()
        .unwrap_or(0);
    let outputs_present = fold
        .completed
        .iter()
        .filter(|id| {
            fold.prompts
                .get(id.as_str())
                .and_then(|p| p.output.as_deref())
                .is_some_and(|o| settings.checkpoints.join(o).is_file())
        })
        .count();
    let elapsed = elapsed_secs(&fold.started, fold.last_checkpoint.as_deref());
    vec![
        report::Criterion {
            name: "All checkpoints passed".into(),
            passed: done == plan.prompts.len() && fold.failed.is_empty(),
            value: format!(
                "{done}/{} completed, {} failed",
                plan.prompts.len(),
                fold.failed.len()
            ),
        },
        report::Criterion {
            name: format!(
                "Total tokens < {}",
                crate::text::thousands(config.budget.total)
            ),
            passed: ledger.total.used < config.budget.total,
            value: format!(
                "{}{}",
                crate::text::thousands(ledger.total.used),
                if ledger.total.estimated {
                    " (partly estimated)"
                } else {
                    ""
                }
            ),
        },
        report::Criterion {
            name: format!(
                "No prompt > {} tokens",
                crate::text::thousands(config.budget.per_prompt)
            ),
            passed: biggest <= config.budget.per_prompt,
            // What the budget check held for it: the count, with a margin until the
            // endpoint reported usage (run and estimate show the count itself).
            value: format!(
                "largest request reserved {}",
                crate::text::thousands(biggest)
            ),
        },
        report::Criterion {
            name: "Recovery possible from any point".into(),
            passed: outputs_present == fold.completed.len(),
            value: format!(
                "journal of {} events; {outputs_present}/{} outputs saved",
                fold.events,
                fold.completed.len()
            ),
        },
        report::Criterion {
            name: format!(
                "Complete in < {}",
                humantime::format_duration(config.run.max_duration)
            ),
            passed: elapsed.is_some_and(|s| s < config.run.max_duration.as_secs_f64()),
            value: elapsed.map_or_else(
                || "not started".into(),
                |s| {
                    format!(
                        "{} so far",
                        humantime::format_duration(Duration::from_secs(s as u64))
                    )
                },
            ),
        },
    ]
}

fn elapsed_secs(started: &str, last: Option<&str>) -> Option<f64> {
    let start = humantime::parse_rfc3339_weak(started).ok()?;
    let end = last
        .and_then(|l| humantime::parse_rfc3339_weak(l).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(end.duration_since(start).unwrap_or_default().as_secs_f64())
}
