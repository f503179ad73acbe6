//! `[notify] command` (docs, "Running a build", "Notifications"): told when a run ends
//! (`finished`, `failed`, `halted`, `interrupted`) and when it pauses for a limit
//! (`paused`), with one JSON document on one line on its stdin, in the scrubbed
//! environment checks get (never the API key). The run waits for it, at most
//! `notify.timeout`; a notifier that fails or hangs is a warning, never the run's failure.

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use super::tally::Book;
use crate::budget::Ledger;
use crate::config::Config;
use crate::error::Error;
use crate::plan::Plan;
use crate::process::{Ended, Keep, scrubbed_env, spawn_in_group, talk};
use crate::verify::CheckEnv;

/// What happened, for the document.
pub(crate) struct Notice<'a> {
    pub(crate) event: &'a str,
    pub(crate) exit_code: i32,
    pub(crate) reason: Option<String>,
    /// A pause: the prompt, and until when (Unix milliseconds).
    pub(crate) paused: Option<(&'a str, u64)>,
}

impl Notice<'_> {
    /// How a run ended: `Ok`, or the error it stops with.
    pub(crate) fn of_end(result: &Result<(), Error>) -> Notice<'static> {
        let (event, exit_code, reason) = match result {
            Ok(()) => ("finished", 0, None),
            Err(e @ Error::Interrupted) => ("interrupted", e.exit_code(), None),
            Err(e @ Error::PromptFailed(_)) => ("failed", e.exit_code(), Some(e.to_string())),
            Err(e) => ("halted", e.exit_code(), Some(e.to_string())),
        };
        Notice {
            event,
            exit_code,
            reason,
            paused: None,
        }
    }
}

/// The document the notifier reads.
pub(crate) fn document(book: &Book, plan: &Plan, config: &Config, notice: &Notice<'_>) -> Value {
    let fold = &book.fold;
    let ledger = Ledger::new(fold, plan, config);
    let mut doc = json!({
        "event": notice.event,
        "exit_code": notice.exit_code,
        "session_id": fold.session_id,
        "project": config.project.name,
        "prompts": plan.prompts.len(),
        "completed": fold.completed.len(),
        "failed": fold.failed.len(),
        "skipped": fold.skipped.len(),
        "tokens_used": ledger.total.used,
        "tokens_budget": ledger.total.budget,
        "cost_usd": fold.cost_usd,
    });
    if let Some(reason) = &notice.reason {
        doc["reason"] = json!(reason);
    }
    if let Some((prompt, until_ms)) = notice.paused {
        doc["prompt"] = json!(prompt);
        doc["paused_until"] = json!(crate::text::rfc3339(until_ms));
    }
    doc
}

/// Runs the notifier with `doc` on its stdin, in `dir`; a warning when it did not take it.
pub(crate) async fn tell(config: &Config, dir: &Path, doc: &Value) -> Option<String> {
    let (program, args) = config.notify.command.split_first()?;
    let env = CheckEnv::of(config);
    let hidden: Vec<&str> = env.hidden.iter().map(String::as_str).collect();
    // The config's folder; `""` when the config file was named without one.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(scrubbed_env(&env.pass, &hidden))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut child, _group) = match spawn_in_group(&mut cmd) {
        Ok(started) => started,
        Err(e) => return Some(format!("notify.command `{program}` cannot start: {e}")),
    };
    let line = format!("{doc}\n");
    let (ended, _, err) = talk(
        &mut child,
        line.as_bytes(),
        config.notify.timeout,
        Keep::Tail(2000),
    )
    .await;
    let err = String::from_utf8_lossy(&err);
    match ended {
        Ended::Exited(Ok(status)) if status.success() => None,
        Ended::Exited(Ok(status)) => Some(format!(
            "notify.command `{program}` exited with {status}: {}",
            err.trim()
        )),
        Ended::Exited(Err(e)) => Some(format!("notify.command `{program}`: {e}")),
        Ended::TimedOut | Ended::Idle => Some(format!(
            "notify.command `{program}` did not finish within notify.timeout ({}); it was killed",
            crate::text::duration(config.notify.timeout)
        )),
        Ended::TooLarge => None,
    }
}
