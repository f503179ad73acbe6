//! An agent build's checks (docs, "Agent builds"), after a reply passed the protocol: the
//! prompt's `## Validation` blocks, front matter, phase and config checks, run in the
//! workspace one by one; the first that fails is the attempt's content failure, and its
//! note (command, exit status, output, the prompt's `## If Failed`) goes to the next
//! attempt. What ran comes back as events, for the attempt to journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::context::Context;
use super::events::Said;
use super::interrupt::Interrupt;
use super::snapshot::{Point, Snapshots};
use super::steps::Attempted;
use super::tally::Book;
use crate::documents::CheckSource;
use crate::error::Result;
use crate::process::Mark;
use crate::state::Event;
use crate::verify;

/// What the checks of one attempt found.
pub(crate) struct Verified {
    /// Each check run, as an event (and a line for `-v`).
    pub(crate) said: Said,
    /// The first failure's note for the next attempt; `None` when all passed.
    pub(crate) failure: Option<String>,
}

/// Where checks run: the workspace, else beside the config.
pub(crate) fn check_dir(workspace: Option<&Path>, config_dir: &Path) -> PathBuf {
    match workspace {
        Some(ws) => ws.to_path_buf(),
        // "" is the current folder.
        None if config_dir.as_os_str().is_empty() => PathBuf::from("."),
        None => config_dir.to_path_buf(),
    }
}

/// The checks of prompt `index` (attempt `attempt`, whose prompt text was `sent`) run in
/// `dir`, after its reply passed the protocol; the first that fails ends them. `merged`:
/// `dir` is a tree the prompt's accepted work was merged into with work accepted meanwhile
/// (a parallel agent build), where only the phase's and `[verify].commands` checks run
/// again (the prompt's own passed on its own tree).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn verify(
    ctx: Context<'_>,
    (index, attempt, passing_before): (usize, u32, &[String]),
    vars: &BTreeMap<String, Value>,
    (dir, merged): (&Path, bool),
    sent: &str,
    mark: &Mark,
    interrupt: &Interrupt,
) -> Result<Verified> {
    let keep =
        |from: CheckSource| !merged || matches!(from, CheckSource::Phase | CheckSource::Config);
    let mut said = Said::default();
    let checks = match verify::checks(ctx.config, ctx.plan, index, vars) {
        Ok(checks) => checks
            .into_iter()
            .filter(|c| keep(c.check.from))
            .collect::<Vec<_>>(),
        Err(why) => {
            return Ok(Verified {
                said,
                failure: Some(why),
            });
        }
    };
    let timeout = ctx.config.verify.timeout;
    let mut env = verify::CheckEnv::of(ctx.config);
    env.mark = Some(mark);
    let id = ctx.plan.prompts[index].id.to_string();
    for bound in checks {
        let checked = interrupt
            .unless(verify::run(&bound, dir, timeout, &env))
            .await?;
        let check = &bound.check;
        said.details.push(format!(
            "{id} attempt {attempt}: check ({}) {}: {}",
            check.from.as_str(),
            if checked.passed { "passed" } else { "failed" },
            check.script.lines().next().unwrap_or("")
        ));
        said.events.push(Event::Verified {
            id: id.clone(),
            attempt,
            from: check.from,
            check: check.script.clone(),
            passed: checked.passed,
            exit_code: checked.exit_code,
            duration_ms: checked.duration_ms,
            output: checked.output.clone(),
        });
        if !checked.passed {
            let advice = crate::checkpoint::section(sent, "if failed").map(|r| &sent[r]);
            return Ok(Verified {
                said,
                failure: Some(verify::failure_note(&bound, &checked, advice)),
            });
        }
    }
    said.warnings.extend(passed_before(&id, passing_before));
    Ok(Verified {
        said,
        failure: None,
    })
}

/// Whether prompt `index` has checks a merged tree runs again: the phase's or
/// `[verify].commands` (see [`verify`] with `merged`).
pub(crate) fn checks_merged_trees(
    ctx: Context<'_>,
    index: usize,
    vars: &BTreeMap<String, Value>,
) -> bool {
    verify::checks(ctx.config, ctx.plan, index, vars).is_ok_and(|checks| {
        checks
            .iter()
            .any(|b| matches!(b.check.from, CheckSource::Phase | CheckSource::Config))
    })
}

/// Prompt `index`'s front matter `until` check, run in `dir` once an attempt was accepted
/// as iteration `iteration` (from 1) with `commit`: `None` when there is none or it passes
/// (the prompt is done); else the iteration's journal event and what comes next, the
/// prompt sent again on top of it, or past `max_iterations` failed with the check's output.
pub(crate) async fn until(
    ctx: Context<'_>,
    book: &std::cell::RefCell<Book>,
    index: usize,
    vars: &BTreeMap<String, Value>,
    dir: &Path,
    interrupt: &Interrupt,
    (commit, tokens): (&(String, crate::workspace::Extras), (u64, u64, bool)),
) -> Result<Option<(Event, Attempted)>> {
    let prompt = &ctx.plan.prompts[index];
    let Some(script) = prompt.front.until.clone() else {
        return Ok(None);
    };
    let done = (book.borrow().fold.prompts.get(prompt.id.as_str())).map_or(0, |s| s.iteration);
    let iteration = done + 1;
    let check = verify::Check {
        from: CheckSource::FrontMatter,
        script: script.clone(),
    };
    let output = match verify::bind(check, vars) {
        Ok(bound) => {
            let env = verify::CheckEnv::of(ctx.config);
            let timeout = ctx.config.verify.timeout;
            let checked = interrupt
                .unless(verify::run(&bound, dir, timeout, &env))
                .await?;
            if checked.passed {
                return Ok(None);
            }
            checked.output
        }
        Err(why) => why,
    };
    let output = crate::text::tail(&output, 2000).to_string();
    let max = prompt.front.max_iterations;
    let next = if iteration >= max {
        Attempted::Fail(format!(
            "its `until` check `{script}` still fails after {iteration} {} (max_iterations = {max}); its output:\n{output}",
            crate::text::plural(iteration as usize, "iteration"),
        ))
    } else {
        let reason = format!("iteration {iteration} accepted; its `until` check still fails");
        Attempted::again(reason, tokens)
    };
    let event = Event::Iterated {
        id: prompt.id.to_string(),
        iteration,
        commit: Some(commit.0.clone()),
        extras: Some(commit.1.clone()),
        check: script,
        output,
    };
    Ok(Some((event, next)))
}

/// `[verify] before`, before the first attempt at prompt `index` (of `at`) in an agent
/// build: its own checks (its `## Validation` blocks and front matter `verify`; the
/// phase's and config's are regression checks, expected to pass) run on a copy of the
/// commit it starts from, outside the workspace (their side effects go with the copy);
/// the ones that pass already, which then prove nothing about the prompt's work.
pub(crate) async fn passing_before(
    ctx: Context<'_>,
    snapshots: &Snapshots,
    (at, index): (&Point, usize),
    vars: &BTreeMap<String, Value>,
    interrupt: &Interrupt,
) -> Result<Vec<String>> {
    let Ok(checks) = verify::checks(ctx.config, ctx.plan, index, vars) else {
        return Ok(Vec::new());
    };
    if !ctx.config.verify.before || checks.is_empty() {
        return Ok(Vec::new());
    }
    let Some(copy) = snapshots.copy_of_base(at).await? else {
        return Ok(Vec::new());
    };
    let dir = copy.0.as_path();
    // `{{workspace}}` names the copy, so that a check's side effects stay out of the
    // workspace (and out of a parallel attempt's worktree, which does not exist yet).
    let mut vars = vars.clone();
    crate::config::workspace_at(&mut vars, dir);
    let Ok(checks) = verify::checks(ctx.config, ctx.plan, index, &vars) else {
        return Ok(Vec::new());
    };
    // A check that does not pass within a minute on the copy is not passing there: a
    // check that waits for what is not built yet must not cost a full verify.timeout.
    let timeout = ctx
        .config
        .verify
        .timeout
        .min(std::time::Duration::from_secs(60));
    let env = verify::CheckEnv::of(ctx.config);
    let mut passing = Vec::new();
    for bound in checks.into_iter().filter(|b| {
        matches!(
            b.check.from,
            CheckSource::Validation | CheckSource::FrontMatter
        )
    }) {
        let checked = interrupt
            .unless(verify::run(&bound, dir, timeout, &env))
            .await?;
        if checked.passed {
            passing.push(bound.check.script);
        }
    }
    Ok(passing)
}

/// The warnings for the checks that passed before the agent ran.
pub(crate) fn passed_before(id: &str, scripts: &[String]) -> Vec<String> {
    scripts
        .iter()
        .map(|s| {
            format!(
                "{id}: the check `{}` passed before the agent ran, so it proves nothing about this prompt's work; make it test what the prompt builds",
                crate::text::truncate(s.lines().next().unwrap_or(""), 80)
            )
        })
        .collect()
}

/// For a new session's first run: how many shell checks will run, from which files, so
/// that nothing runs that the user has not been told of (`plan` shows them all).
pub(crate) fn planned_note(ctx: Context<'_>) -> Option<String> {
    let mut count = 0;
    let mut files: Vec<String> = Vec::new();
    for (i, p) in ctx.plan.prompts.iter().enumerate() {
        for check in verify::shown(ctx.config, ctx.plan, i) {
            count += 1;
            let file = match check.from {
                CheckSource::Validation | CheckSource::FrontMatter => p.path.display().to_string(),
                CheckSource::Phase | CheckSource::Config => ctx.config_file.display().to_string(),
            };
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    if count == 0 {
        return None;
    }
    let shown: Vec<&str> = files.iter().take(5).map(String::as_str).collect();
    let more = files.len().saturating_sub(5);
    Some(format!(
        "{count} shell {} will run after the replies, from {}{}; `orchestrator plan` shows every line",
        if count == 1 { "check" } else { "checks" },
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more files")
        } else {
            String::new()
        }
    ))
}

/// What the agent reported failing, as `[verify] agent_errors` takes it: with `fail`, why
/// the attempt is not accepted; with `warn`, a warning.
pub(crate) fn agent_errors(
    config: &crate::config::Config,
    id: &str,
    errors: &[String],
) -> (Option<String>, Option<String>) {
    if errors.is_empty() {
        return (None, None);
    }
    let more = errors.len().saturating_sub(5);
    let listed = format!(
        "{}{}",
        errors[..errors.len().min(5)].join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    );
    let n = errors.len();
    let what = format!(
        "the agent reported {n} of its own {} failing: {listed}",
        crate::text::plural(n, "step")
    );
    match config.verify.agent_errors {
        crate::config::AgentErrors::Fail => (
            Some(format!("{what} ([verify] agent_errors = \"fail\")")),
            None,
        ),
        crate::config::AgentErrors::Warn => (
            None,
            Some(format!(
                "{id}: {what} (accepted all the same: [verify] agent_errors = \"warn\")"
            )),
        ),
    }
}

/// Kills every process the attempt started that is still alive (however it detached).
pub(crate) fn end_processes(mark: &Mark, id: &str, attempt: u32) -> Said {
    let killed = mark.kill_all();
    let mut said = Said::default();
    if killed > 0 {
        said.details.push(format!(
            "{id} attempt {attempt}: {killed} process{} the attempt started outlived it and {} killed",
            if killed == 1 { "" } else { "es" },
            if killed == 1 { "was" } else { "were" }
        ));
    }
    said
}
