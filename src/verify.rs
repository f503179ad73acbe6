//! Checks that decide whether a prompt is accepted (README, "Agent builds"): not the
//! model's `"success": true`, but commands run in the workspace after the reply passed the
//! checkpoint protocol. In order: the shell blocks of the prompt's `## Validation` section
//! when `[verify].from_prompt` (each block one `bash -e` script; a checklist without code
//! runs nothing), front matter `verify`, the phase's `verify`, then `[verify].commands`.
//! Checks are taken from the prompt as sent, placeholders rendered; they come from files
//! the user wrote and run only when config turns them on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::checkpoint;
use crate::config::Config;
use crate::plan::Plan;
use crate::process::{Ended, GroupGuard, Keep, die_with_parent, talk};
use crate::template::{Template, lookup};

/// A check's output is journaled and shown to the next attempt: its last 4 KiB.
pub(crate) const OUTPUT_KEPT: usize = 4 * 1024;

/// Where a check comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum From {
    /// A shell block of the prompt's `## Validation` section.
    Validation,
    /// The prompt's front matter `verify`.
    FrontMatter,
    /// The phase's `[[phases]] verify`.
    Phase,
    /// `[verify].commands`.
    Config,
}

impl From {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            From::Validation => "validation",
            From::FrontMatter => "front matter",
            From::Phase => "phase",
            From::Config => "config",
        }
    }
}

/// One check: where it comes from and the shell text to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Check {
    pub(crate) from: From,
    pub(crate) script: String,
}

/// What a check did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    pub(crate) passed: bool,
    /// `None` when it did not exit by itself (a timeout, a signal, a shell missing).
    pub(crate) exit_code: Option<i32>,
    pub(crate) duration_ms: u64,
    /// The last [`OUTPUT_KEPT`] bytes of stdout and stderr, interleaved as printed.
    pub(crate) output: String,
}

/// The checks of prompt `index` as written (for `plan`): placeholders not rendered.
pub(crate) fn planned(config: &Config, plan: &Plan, index: usize) -> Vec<Check> {
    let prompt = &plan.prompts[index];
    let validation = if config.verify.from_prompt {
        prompt.validation.clone()
    } else {
        Vec::new()
    };
    gather(config, plan, index, validation)
        .into_iter()
        .map(|(from, script)| Check { from, script })
        .collect()
}

/// The checks of prompt `index` as they run: the `## Validation` blocks of `sent` (the
/// prompt as sent), the commands with placeholders rendered from `vars`. `Err` names a
/// placeholder that has no value.
pub(crate) fn checks(
    config: &Config,
    plan: &Plan,
    index: usize,
    sent: &str,
    vars: &BTreeMap<String, Value>,
) -> Result<Vec<Check>, String> {
    let validation = if config.verify.from_prompt {
        checkpoint::shell_blocks(sent, "validation")
    } else {
        Vec::new()
    };
    gather(config, plan, index, validation)
        .into_iter()
        .map(|(from, script)| {
            let script = if from == From::Validation {
                script
            } else {
                render(&script, vars)?
            };
            Ok(Check { from, script })
        })
        .collect()
}

fn gather(
    config: &Config,
    plan: &Plan,
    index: usize,
    validation: Vec<String>,
) -> Vec<(From, String)> {
    let prompt = &plan.prompts[index];
    let phase = config.phase(&plan.phases[prompt.phase].dir);
    validation
        .into_iter()
        .map(|s| (From::Validation, s))
        .chain(
            prompt
                .front
                .verify
                .iter()
                .map(|s| (From::FrontMatter, s.clone())),
        )
        .chain(
            phase
                .into_iter()
                .flat_map(|p| p.verify.iter().map(|s| (From::Phase, s.clone()))),
        )
        .chain(
            config
                .verify
                .commands
                .iter()
                .map(|s| (From::Config, s.clone())),
        )
        .collect()
}

/// `{{name}}` in a command, rendered as in a prompt.
fn render(command: &str, vars: &BTreeMap<String, Value>) -> Result<String, String> {
    let known = |name: &str| lookup(|n| vars.get(n), name).is_some();
    let (template, unknown) = Template::parse(command, &known, &[], 1);
    if let Some(u) = unknown.first() {
        return Err(format!(
            "the check `{command}` uses {{{{{}}}}}, which has no value",
            u.name
        ));
    }
    template.render(command, vars).map_err(|missing| {
        format!(
            "the check `{command}` uses {}, which has no value",
            missing.join(", ")
        )
    })
}

/// Runs `check` with `bash -e` in `dir`, within `timeout`; `hidden` names environment
/// variables the check does not get (the API key).
pub(crate) async fn run(check: &Check, dir: &Path, timeout: Duration, hidden: &[&str]) -> Checked {
    let started = std::time::Instant::now();
    let mut cmd = tokio::process::Command::new("bash");
    // One stream, as a terminal would show it.
    cmd.arg("-e")
        .arg("-c")
        .arg(format!("exec 2>&1\n{}", check.script))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in hidden {
        cmd.env_remove(name);
    }
    die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Checked {
                passed: false,
                exit_code: None,
                duration_ms: 0,
                output: format!("cannot start bash: {e}"),
            };
        }
    };
    let _group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    let (ended, out, _) = talk(&mut child, b"", timeout, Keep::Tail(OUTPUT_KEPT)).await;
    let mut output = String::from_utf8_lossy(&out).into_owned();
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let exit_code = match ended {
        Ended::Exited(Ok(status)) => status.code(),
        Ended::Exited(Err(e)) => {
            output.push_str(&format!("\n(waiting for the check failed: {e})"));
            None
        }
        Ended::TimedOut => {
            output.push_str(&format!(
                "\n(did not finish within verify.timeout, {}; its process group was killed)",
                crate::config::show_duration(timeout)
            ));
            None
        }
        Ended::TooLarge => None,
    };
    Checked {
        passed: exit_code == Some(0),
        exit_code,
        duration_ms,
        output,
    }
}

/// What the next attempt is told about a failed check: the command, its exit status, the
/// tail of its output, and the prompt's `## If Failed` section when it has one.
pub(crate) fn failure_note(check: &Check, checked: &Checked, if_failed: Option<&str>) -> String {
    let status = checked.exit_code.map_or_else(
        || "no exit status (killed)".to_string(),
        |c| format!("exit status {c}"),
    );
    let mut note = format!(
        "a check failed ({} check, {status}):\n```bash\n{}\n```\nIts output (the end):\n```\n{}\n```",
        check.from.as_str(),
        check.script.trim_end(),
        checked.output.trim_end()
    );
    if let Some(advice) = if_failed {
        note.push_str(&format!(
            "\nThe prompt says what to do then:\n{}",
            advice.trim()
        ));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(script: &str) -> Check {
        Check {
            from: From::Config,
            script: script.into(),
        }
    }

    fn run_now(c: &Check, timeout: Duration) -> Checked {
        let dir = tempfile::tempdir().expect("tempdir");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run(c, dir.path(), timeout, &[]))
    }

    #[test]
    fn checks_pass_fail_and_keep_the_end_of_their_output() {
        let ok = run_now(&check("echo fine"), Duration::from_secs(10));
        assert!(ok.passed, "{ok:?}");
        assert_eq!(ok.output.trim(), "fine");
        let failed = run_now(
            &check("echo out; echo err >&2; false; echo never"),
            Duration::from_secs(10),
        );
        assert!(!failed.passed);
        assert_eq!(failed.exit_code, Some(1));
        assert!(failed.output.contains("out\nerr"), "{:?}", failed.output);
        assert!(
            !failed.output.contains("never"),
            "bash -e stops at the first failure"
        );
        let long = run_now(&check("yes x | head -c 100000"), Duration::from_secs(10));
        assert!(long.output.len() <= OUTPUT_KEPT, "{}", long.output.len());
    }

    #[test]
    fn a_check_past_its_timeout_fails_and_is_killed() {
        let slow = run_now(&check("sleep 30"), Duration::from_millis(200));
        assert!(!slow.passed);
        assert_eq!(slow.exit_code, None);
        assert!(slow.output.contains("verify.timeout"), "{}", slow.output);
    }

    #[test]
    fn commands_render_placeholders_and_refuse_unknown_ones() {
        let mut vars = BTreeMap::new();
        vars.insert("venv".to_string(), Value::from("/v"));
        assert_eq!(
            render("{{venv}}/bin/python -V", &vars),
            Ok("/v/bin/python -V".into())
        );
        assert!(render("{{nope}} -V", &vars).is_err());
        assert_eq!(render("echo ${{ x }}", &vars), Ok("echo ${{ x }}".into()));
    }

    #[test]
    fn the_note_carries_command_status_output_and_advice() {
        let c = check("pytest -q");
        let checked = Checked {
            passed: false,
            exit_code: Some(2),
            duration_ms: 5,
            output: "1 failed".into(),
        };
        let note = failure_note(&c, &checked, Some("## If Failed\nInstall pytest first."));
        for part in [
            "pytest -q",
            "exit status 2",
            "1 failed",
            "Install pytest first.",
        ] {
            assert!(note.contains(part), "{note}");
        }
    }
}
