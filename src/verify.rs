//! Checks that decide whether a prompt is accepted (docs, "Agent builds"): not the
//! model's `"success": true`, but commands run in the workspace after the reply passed the
//! checkpoint protocol. In order: the shell blocks of the prompt's `## Validation` section
//! when `[verify].from_prompt` (each block one `bash -e -o pipefail` script; a checklist
//! without code runs nothing), front matter `verify`, the phase's `verify`, then
//! `[verify].commands`. They come from files the user wrote and run only when config turns
//! them on.
//!
//! Model output is never a command: checks are taken from the prompt file as written
//! (never from the rendered text a variable could have added a section to), and a
//! placeholder's value reaches a check only as an environment variable
//! (`{{module_name}}` becomes `"${ORCHESTRATOR_MODULE_NAME}"`, quoted for where it stands),
//! which the shell expands but never parses as code. Checks get a scrubbed environment
//! (PATH, HOME, the locale, `llm.env` and `[verify] env`; never the API key) and the
//! attempt's mark, so that what they leave running ends with the attempt.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::documents::CheckSource;
use crate::plan::Plan;
use crate::process::{Ended, Keep, Mark, scrubbed_env, spawn_in_group, talk};
use crate::template::{Segment, Template, lookup};

/// A check's output is journaled and shown to the next attempt: its last 4 KiB.
pub(crate) const OUTPUT_KEPT: usize = 4 * 1024;

/// One check: where it comes from and the shell text to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Check {
    pub(crate) from: CheckSource,
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

/// Every shell check prompt `index` may run, as `plan` shows them: its checks and its
/// front matter `until` (nothing runs that `plan` does not show).
pub(crate) fn shown(config: &Config, plan: &Plan, index: usize) -> Vec<Check> {
    let prompt = &plan.prompts[index];
    let mut checks = planned(config, plan, index);
    if let Some(until) = &prompt.front.until {
        checks.push(Check {
            from: CheckSource::FrontMatter,
            script: format!(
                "# until: sent again while this fails, at most {} times\n{until}",
                prompt.front.max_iterations
            ),
        });
    }
    checks
}

/// What `plan` warns about the checks of an agent build (`[workspace]` and an agent
/// command): a prompt with none, whose acceptance would be the agent's word alone, and a
/// check that only prints (`echo $VIRTUAL_ENV`), which passes whatever the agent did.
pub(crate) fn weak_checks(config: &Config, plan: &Plan, checks: &[Vec<Check>]) -> Vec<String> {
    let agent_build = config.workspace.dir.is_some()
        && config.llm.provider == crate::config::ProviderKind::Command;
    if !agent_build {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for (p, checks) in plan.prompts.iter().zip(checks) {
        if checks.is_empty() {
            warnings.push(format!(
                "{} has no check that runs: in an agent build only the agent's word would accept it. Give it a bash block under `## Validation` ([verify] from_prompt = true) or add [verify] commands",
                p.id
            ));
        }
        for c in checks.iter().filter(|c| only_prints(&c.script)) {
            warnings.push(format!(
                "{}'s check `{}` only prints, so it passes whatever the agent did; make it test something (`test -n \"$VIRTUAL_ENV\"`, `python -c 'import pkg'`)",
                p.id,
                crate::text::truncate(c.script.trim(), 80)
            ));
        }
    }
    warnings
}

/// Whether every command of `script` only prints (`echo`, `printf`, `true`, `:`): such
/// a check exits 0 whatever the workspace holds.
fn only_prints(script: &str) -> bool {
    let mut commands = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    commands.peek().is_some()
        && commands.all(|l| {
            let word = l.split_whitespace().next().unwrap_or("");
            matches!(word, "echo" | "printf" | "true" | ":")
                && !l.contains("&&")
                && !l.contains("||")
                && !l.contains('|')
                && !l.contains(';')
        })
}

/// A check ready to run: the check as written, the script with its placeholders turned
/// into references to environment variables, and their values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bound {
    pub(crate) check: Check,
    code: String,
    env: Vec<(String, String)>,
    /// The script with the values written in: what a note to the model shows (text, never
    /// run).
    shown: String,
}

/// The checks of prompt `index` as they run, bound to `vars`. `Err` names a placeholder
/// of a command that has no value (in a `## Validation` block, which is code in a prompt,
/// a name with no value stays text, as it is sent).
pub(crate) fn checks(
    config: &Config,
    plan: &Plan,
    index: usize,
    vars: &BTreeMap<String, Value>,
) -> Result<Vec<Bound>, String> {
    planned(config, plan, index)
        .into_iter()
        .map(|check| bind(check, vars))
        .collect()
}

fn gather(
    config: &Config,
    plan: &Plan,
    index: usize,
    validation: Vec<String>,
) -> Vec<(CheckSource, String)> {
    let prompt = &plan.prompts[index];
    let phase = config.phase(&plan.phases[prompt.phase].dir);
    validation
        .into_iter()
        .map(|s| (CheckSource::Validation, s))
        .chain(
            prompt
                .front
                .verify
                .iter()
                .map(|s| (CheckSource::FrontMatter, s.clone())),
        )
        .chain(
            phase
                .into_iter()
                .flat_map(|p| p.verify.iter().map(|s| (CheckSource::Phase, s.clone()))),
        )
        .chain(
            config
                .verify
                .commands
                .iter()
                .map(|s| (CheckSource::Config, s.clone())),
        )
        .collect()
}

/// `check` with each placeholder that has a value in `vars` replaced by a quoted reference
/// to an environment variable holding it.
pub(crate) fn bind(check: Check, vars: &BTreeMap<String, Value>) -> Result<Bound, String> {
    let script = &check.script;
    let known = |name: &str| lookup(|n| vars.get(n), name).is_some();
    let (template, unknown) = Template::parse(script, &known, &[], 1);
    if check.from != CheckSource::Validation
        && let Some(u) = unknown.first()
    {
        return Err(format!(
            "the check `{script}` uses {{{{{}}}}}, which has no value",
            u.name
        ));
    }
    let mut code = String::with_capacity(script.len());
    let mut shown = String::with_capacity(script.len());
    let mut env: Vec<(String, String)> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut quoting = Quoting::default();
    for segment in &template.segments {
        match segment {
            Segment::Text(range) => {
                let text = script.get(range.clone()).unwrap_or_default();
                quoting.feed(text);
                code.push_str(text);
                shown.push_str(text);
            }
            Segment::Var { name, .. } => {
                let Some(value) = lookup(|n| vars.get(n), name) else {
                    return Err(format!(
                        "the check `{script}` uses {{{{{name}}}}}, which has no value"
                    ));
                };
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if value.contains('\0') {
                    return Err(format!(
                        "the check `{script}` uses {{{{{name}}}}}, whose value holds a NUL byte that no environment variable can"
                    ));
                }
                let var = match names.get(name) {
                    Some(var) => var.clone(),
                    None => {
                        let var = env_name(name, &env);
                        names.insert(name.clone(), var.clone());
                        env.push((var.clone(), value));
                        var
                    }
                };
                code.push_str(&quoting.reference(&var));
                if let Some((_, value)) = env.iter().find(|(v, _)| *v == var) {
                    shown.push_str(value);
                }
            }
        }
    }
    Ok(Bound {
        check,
        code,
        env,
        shown,
    })
}

/// `ORCHESTRATOR_` and the name in capitals, anything but letters and digits as `_`, with
/// a number added when another placeholder took that already (`a.b` and `a_b`).
fn env_name(name: &str, taken: &[(String, String)]) -> String {
    let base: String = std::iter::once("ORCHESTRATOR_".to_string())
        .chain(name.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase().to_string()
            } else {
                "_".to_string()
            }
        }))
        .collect();
    let mut var = base.clone();
    let mut n = 1;
    while taken.iter().any(|(t, _)| *t == var) {
        n += 1;
        var = format!("{base}_{n}");
    }
    var
}

/// Where a shell script's text stands: inside single or double quotes, or in none, with a
/// context of its own inside each `$(…)`. Enough to quote a reference so that it is one
/// word with the value in it; where it guesses wrong, the value comes out with stray quotes
/// or not at all, never as code (an expansion's result is not parsed again).
#[derive(Debug, Default)]
struct Quoting {
    /// The quotes of each open `$(`, innermost last; the outermost is the script's.
    stack: Vec<Quote>,
    /// The last character fed was a backslash outside single quotes.
    escaped: bool,
    /// Inside a comment (until the end of the line).
    comment: bool,
    /// The last character fed (`$` before `(`; a word start before `#`).
    last: Option<char>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Quote {
    #[default]
    None,
    Single,
    Double,
}

impl Quoting {
    fn top(&mut self) -> &mut Quote {
        if self.stack.is_empty() {
            self.stack.push(Quote::None);
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            let last = self.last.replace(c);
            if self.comment {
                self.comment = c != '\n';
                continue;
            }
            if self.escaped {
                self.escaped = false;
                continue;
            }
            let depth = self.stack.len();
            let top = self.top();
            match (*top, c) {
                (Quote::Single, '\'') => *top = Quote::None,
                (Quote::Single, _) => {}
                (_, '\\') => self.escaped = true,
                (Quote::None, '\'') => *top = Quote::Single,
                (Quote::None, '"') => *top = Quote::Double,
                (Quote::Double, '"') => *top = Quote::None,
                (_, '(') if last == Some('$') => self.stack.push(Quote::None),
                (Quote::None, ')') if depth > 1 => {
                    self.stack.pop();
                }
                (Quote::None, '#') if last.is_none_or(char::is_whitespace) => {
                    self.comment = true;
                }
                _ => {}
            }
        }
    }

    /// A reference to `var` that is one word holding its value, where the text stands.
    fn reference(&mut self, var: &str) -> String {
        match *self.top() {
            Quote::None => format!("\"${{{var}}}\""),
            Quote::Double => format!("${{{var}}}"),
            Quote::Single => format!("'\"${{{var}}}\"'"),
        }
    }
}

/// What a check's process gets: the variables passed on besides PATH, HOME and the locale
/// (`llm.env` and `[verify] env`), those it never gets (the API key), and the attempt's
/// mark.
pub(crate) struct CheckEnv<'a> {
    pub(crate) pass: Vec<String>,
    pub(crate) hidden: Vec<String>,
    pub(crate) mark: Option<&'a Mark>,
}

impl CheckEnv<'_> {
    pub(crate) fn of(config: &Config) -> CheckEnv<'static> {
        CheckEnv {
            pass: config
                .llm
                .env
                .iter()
                .chain(&config.verify.env)
                .cloned()
                .collect(),
            hidden: vec![config.llm.api_key_env().to_string()],
            mark: None,
        }
    }
}

/// Runs `bound` with `bash -e -o pipefail` in `dir`, within `timeout`, its environment
/// `env`.
pub(crate) async fn run(
    bound: &Bound,
    dir: &Path,
    timeout: Duration,
    env: &CheckEnv<'_>,
) -> Checked {
    let started = std::time::Instant::now();
    let mut cmd = tokio::process::Command::new("bash");
    let hidden: Vec<&str> = env.hidden.iter().map(String::as_str).collect();
    // One stream, as a terminal would show it.
    cmd.args(["-e", "-o", "pipefail", "-c"])
        .arg(format!("exec 2>&1\n{}", bound.code))
        .current_dir(dir)
        .env_clear()
        .envs(scrubbed_env(&env.pass, &hidden))
        .envs(bound.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(mark) = env.mark {
        mark.put(&mut cmd);
    }
    let (mut child, _group) = match spawn_in_group(&mut cmd) {
        Ok(started) => started,
        Err(e) => {
            return Checked {
                passed: false,
                exit_code: None,
                duration_ms: 0,
                output: format!("cannot start bash: {e}"),
            };
        }
    };
    let (ended, out, _) = talk(&mut child, b"", timeout, Keep::Tail(OUTPUT_KEPT)).await;
    let mut output = String::from_utf8_lossy(&out).into_owned();
    let duration_ms = crate::text::millis(started.elapsed());
    let exit_code = match ended {
        Ended::Exited(Ok(status)) => status.code(),
        Ended::Exited(Err(e)) => {
            output.push_str(&format!("\n(waiting for the check failed: {e})"));
            None
        }
        Ended::TimedOut | Ended::Idle => {
            output.push_str(&format!(
                "\n(did not finish within verify.timeout, {}; its process group was killed)",
                crate::text::duration(timeout)
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
pub(crate) fn failure_note(bound: &Bound, checked: &Checked, if_failed: Option<&str>) -> String {
    let status = checked.exit_code.map_or_else(
        || "no exit status (killed)".to_string(),
        |c| format!("exit status {c}"),
    );
    let mut note = format!(
        "a check failed ({} check, {status}):\n```bash\n{}\n```\nIts output (the end):\n```\n{}\n```",
        bound.check.from.as_str(),
        bound.shown.trim_end(),
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
            from: CheckSource::Config,
            script: script.into(),
        }
    }

    #[test]
    fn checks_that_only_print_are_told_apart() {
        for (script, prints) in [
            ("echo $VIRTUAL_ENV", true),
            ("# where are we\necho $VIRTUAL_ENV\nprintf '%s' done", true),
            ("true", true),
            ("test -n \"$VIRTUAL_ENV\"", false),
            ("echo ok && pytest -q", false),
            ("echo start\npython -m pytest", false),
            ("python -c 'import wordfreq' | echo", false),
            ("", false),
        ] {
            assert_eq!(only_prints(script), prints, "{script:?}");
        }
    }

    fn run_now(c: &Check, timeout: Duration) -> Checked {
        run_bound(&bind(c.clone(), &BTreeMap::new()).expect("binds"), timeout)
    }

    fn run_bound(b: &Bound, timeout: Duration) -> Checked {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = CheckEnv {
            pass: Vec::new(),
            hidden: Vec::new(),
            mark: None,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run(b, dir.path(), timeout, &env))
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

    fn vars(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn placeholders_become_quoted_references_wherever_they_stand() {
        let cases = [
            ("test -n {{x}}", "test -n \"${ORCHESTRATOR_X}\""),
            ("test -n \"{{x}}\"", "test -n \"${ORCHESTRATOR_X}\""),
            ("echo '{{x}}'", "echo ''\"${ORCHESTRATOR_X}\"''"),
            ("echo \"it's {{x}}\"", "echo \"it's ${ORCHESTRATOR_X}\""),
            ("echo \\'{{x}}", "echo \\'\"${ORCHESTRATOR_X}\""),
            (
                "test \"$(echo 'a' | grep {{x}})\" = a",
                "test \"$(echo 'a' | grep \"${ORCHESTRATOR_X}\")\" = a",
            ),
            (
                "# {{x}} in a comment\necho {{x}}",
                "# \"${ORCHESTRATOR_X}\" in a comment\necho \"${ORCHESTRATOR_X}\"",
            ),
            (
                "{{paths.src}}/{{a_b}} {{a.b}}",
                "\"${ORCHESTRATOR_PATHS_SRC}\"/\"${ORCHESTRATOR_A_B}\" \"${ORCHESTRATOR_A_B_2}\"",
            ),
            ("echo ${{ github.ref }}", "echo ${{ github.ref }}"),
        ];
        let v = vars(&[
            ("x", Value::from("v")),
            ("paths", serde_json::json!({"src": "s"})),
            ("a_b", Value::from(1)),
            ("a", serde_json::json!({"b": true})),
        ]);
        for (script, want) in cases {
            let bound = bind(check(script), &v).expect(script);
            assert_eq!(bound.code, want, "{script}");
        }
    }

    #[test]
    fn a_value_that_is_code_stays_a_value() {
        let hostile = "x\"; touch PWNED; \"$(touch PWNED2)`touch PWNED3`'; touch PWNED4; '";
        let v = vars(&[("name", Value::from(hostile))]);
        let dir = tempfile::tempdir().expect("tempdir");
        for script in [
            "test -n \"{{name}}\"",
            "test -n {{name}}",
            "test -n '{{name}}'",
            "printf '%s' \"{{name}}\" > got.txt",
        ] {
            let bound = bind(check(script), &v).expect("binds");
            let env = CheckEnv {
                pass: Vec::new(),
                hidden: Vec::new(),
                mark: None,
            };
            let checked = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run(&bound, dir.path(), Duration::from_secs(10), &env));
            assert!(checked.passed, "{script}: {checked:?}");
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["got.txt"], "nothing but what the check wrote");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got.txt")).expect("read"),
            hostile
        );
    }

    #[test]
    fn commands_refuse_a_placeholder_with_no_value_and_validation_blocks_send_it_as_text() {
        let v = vars(&[("venv", Value::from("/v"))]);
        assert!(bind(check("{{nope}} -V"), &v).is_err());
        let validation = Check {
            from: CheckSource::Validation,
            script: "echo {{ track.title }}".into(),
        };
        let bound = bind(validation, &v).expect("text");
        assert_eq!(bound.code, "echo {{ track.title }}");
        assert!(bind(check("x {{venv}}"), &vars(&[("venv", Value::from("a\0b"))])).is_err());
    }

    #[test]
    fn pipelines_fail_when_a_stage_fails() {
        let failed = run_now(&check("false | cat"), Duration::from_secs(10));
        assert!(!failed.passed, "{failed:?}");
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
        let bound = bind(c, &BTreeMap::new()).expect("binds");
        let note = failure_note(
            &bound,
            &checked,
            Some("## If Failed\nInstall pytest first."),
        );
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
