//! `run` and `rerun`: the prompts to take on, resolved against the plan, handed to the
//! runner with the progress display as its observer.

use super::progress::Progress;
use crate::error::{Error, Result};
use crate::runner::{self, Context, Options, Selection};
use crate::settings::Settings;

/// Which prompts `run` takes on, as ids (or names) the user gave.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunRange {
    pub(crate) from: Option<String>,
    pub(crate) until: Option<String>,
    pub(crate) only: Option<String>,
}

pub(crate) fn run(
    settings: &Settings,
    range: &RunRange,
    restart: bool,
    allow_dirty: bool,
) -> Result<()> {
    let plan = settings.load_plan()?;
    let last = plan.prompts.len() - 1;
    let resolve = |id: &Option<String>, default: usize| {
        id.as_deref()
            .map(|id| plan.resolve(id))
            .transpose()
            .map(|i| i.unwrap_or(default))
    };
    let selection = match &range.only {
        Some(id) => Selection::Only(plan.resolve(id)?),
        None => {
            let (from, until) = (resolve(&range.from, 0)?, resolve(&range.until, last)?);
            if from > until {
                return Err(Error::Usage(format!(
                    "--from {} comes after --until {}: the range holds no prompt",
                    plan.prompts[from].id, plan.prompts[until].id
                )));
            }
            Selection::Resume { from, until }
        }
    };
    go(settings, &plan, selection, (restart, allow_dirty), "run")
}

pub(crate) fn rerun(
    settings: &Settings,
    id: &str,
    and_after: bool,
    allow_dirty: bool,
) -> Result<()> {
    let plan = settings.load_plan()?;
    let from = plan.resolve(id)?;
    let until = if and_after {
        plan.prompts.len() - 1
    } else {
        from
    };
    go(
        settings,
        &plan,
        Selection::Again { from, until },
        (false, allow_dirty),
        "rerun",
    )
}

fn go(
    settings: &Settings,
    plan: &crate::plan::Plan,
    selection: Selection,
    (restart, allow_dirty): (bool, bool),
    command: &'static str,
) -> Result<()> {
    let progress = Progress::new(settings.printer, plan.prompts.len());
    let go_on = match selection {
        Selection::Again { from, until } => format!(
            "`orchestrator rerun {}{}` goes on",
            plan.prompts[from].id,
            if until > from { " --and-after" } else { "" }
        ),
        _ => "`orchestrator run` continues".to_string(),
    };
    let ctx = Context {
        config: &settings.config,
        config_file: &settings.config_path,
        config_dir: &settings.config_dir,
        plan,
        checkpoints: &settings.checkpoints,
        go_on: &go_on,
    };
    let options = Options {
        selection,
        restart,
        allow_dirty,
        command,
    };
    let result = runner::run(ctx, options, &progress);
    // The report, however the run ended (a state that cannot be read has none).
    if !matches!(result, Err(Error::State { .. }))
        && let Err(e) = crate::report::write(&settings.checkpoints, plan, &settings.config)
    {
        settings
            .printer
            .warn(&format!("the report was not written: {e}"));
    }
    result
}
