//! Overnight with an agent (issue 21): a usage limit pauses the build until its reset
//! rather than failing it, a kill during the pause resumes the wait, a reset past
//! `retry.max_wait` stops the run saying when; a Codex turn that completes after a
//! reconnect notice is accepted. The agent is a shell script answering in the agent CLIs'
//! own shapes.

use std::time::Duration;

use serde_json::Value;

use crate::support::builder::TestBuild;

use crate::support::{
    AGENT_REPLY, Build, Running, agent_script, attempts, events, eventually, status_json, strings,
};

/// `t` built (its prompts in phase `01-a`), its agent `agent.sh` (`body`) run as
/// `command = ["agent.sh"{args}]`, with `tables` (TOML) after `[llm]`'s first lines.
fn scripted(t: TestBuild, body: &str, args: &str, tables: &str) -> Build {
    let b = t.build();
    let script = agent_script(&b, "agent.sh", body);
    b.config(&format!(
        "[llm]\nprovider = \"command\"\ncommand = [\"{}\"{args}]\n{tables}\n[[phases]]\ndir = \"01-a\"\nname = \"A\"\nbudget = 200000\n",
        script.display()
    ));
    b
}

/// One prompt, `01.1-first`, producing `title`.
fn one_prompt() -> TestBuild {
    TestBuild::new().phase("01-a", "A", Some(200_000)).prompt(
        "01.1-first",
        "Write the first part.",
        &["title"],
    )
}

/// One prompt, `01.1-first`, answered by `agent.sh` (`body`), one attempt allowed and
/// backoff capped at 50ms: any wait longer is a limit's pause or a failure.
fn build(body: &str, extra: &str) -> Build {
    let tables = format!(
        "timeout = \"20s\"\n[retry]\nmax_attempts = 1\ninitial_delay = \"10ms\"\nmax_delay = \"50ms\"\n{extra}"
    );
    scripted(one_prompt(), body, "", &tables)
}

/// An agent that reports `limit` (a shell word, expanded) as Claude Code's error result
/// on its first call and answers on the next; each call's time (Unix seconds) is appended
/// to `calls` beside the script.
fn limited_once(limit: &str) -> String {
    format!(
        "dir=$(dirname \"$0\")\ndate +%s >> \"$dir/calls\"\nif [ ! -e \"$dir/limited\" ]; then\n  touch \"$dir/limited\"\n  cat >/dev/null\n  printf '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":\"%s\",\"session_id\":\"s\"}}\\n' {limit}\n  exit 1\nfi\n{AGENT_REPLY}"
    )
}

fn calls(b: &Build) -> Vec<u64> {
    b.read("calls")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn paused_until_secs(b: &Build) -> u64 {
    let paused = events(b, "paused");
    assert_eq!(paused.len(), 1, "{paused:#?}");
    paused[0]["until_ms"].as_u64().expect("until_ms") / 1000
}

#[test]
fn a_claude_code_usage_limit_pauses_the_build_until_its_reset_and_uses_no_attempt() {
    // The older text: `Claude AI usage limit reached|<epoch>`, two seconds on.
    let b = build(
        &limited_once("\"Claude AI usage limit reached|$(( $(date +%s) + 2 ))\""),
        "",
    );
    let run = b.run(&["run"]);
    run.code(0).stderr_has("paused until");
    let calls = calls(&b);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let until = paused_until_secs(&b);
    assert!(
        calls[1] >= until,
        "sent again at {} before the reset {until}",
        calls[1]
    );
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(a[0]["throttled"], true, "not counted: {:#}", a[0]);
    assert_eq!(strings(&status_json(&b)["completed"]), ["01.1"]);
}

#[test]
fn a_kill_during_a_pause_resumes_the_wait_and_the_agent_is_not_called_before_the_reset() {
    let b = build(
        &limited_once("\"Claude AI usage limit reached|$(( $(date +%s) + 3 ))\""),
        "",
    );
    let runner = Running::spawn_quiet(&b, &["run"]);
    assert!(
        eventually(Duration::from_secs(20), || {
            b.path().join("checkpoints/journal.jsonl").exists() && !events(&b, "paused").is_empty()
        }),
        "the run paused"
    );
    runner.kill();
    let until = paused_until_secs(&b);
    let json = b.run(&["status", "--json"]);
    let status: Value = serde_json::from_str(&json.stdout).expect("status --json");
    assert_eq!(status["paused"]["prompt"], "01.1", "{status}");
    let text = b.run(&["status"]);
    text.code(0).stdout_has("Paused until");
    let run = b.run(&["run"]);
    run.code(0).stderr_has("as the last run was");
    let calls = calls(&b);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[1] >= until,
        "sent again at {} before the reset {until}",
        calls[1]
    );
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]), ["01.1"]);
    assert_eq!(status["paused"], Value::Null, "the pause is over: {status}");
}

#[test]
fn a_limit_that_resets_past_max_wait_stops_the_run_with_the_reset_time() {
    // The newer text, with its time zone: at most a day away, past a max_wait of 1s.
    let b = build(
        &limited_once("\"You have hit your limit · resets 7pm (America/Los_Angeles)\""),
        "max_wait = \"1s\"",
    );
    let run = b.run(&["run"]);
    run.code(1)
        .stderr_has("retry.max_wait")
        .stderr_has("the limit resets at");
    assert_eq!(calls(&b).len(), 1);
    assert!(events(&b, "paused").is_empty());
    assert_eq!(strings(&status_json(&b)["failed"]), ["01.1"]);
}

#[test]
fn a_codex_turn_that_completes_after_a_reconnect_notice_is_accepted() {
    let body = r##"cat >/dev/null
printf '%s\n' '{"type":"thread.started","thread_id":"t1"}' '{"type":"turn.started"}' '{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion)"}'
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"Done.\\n\\n```json\\n{\\"prompt\\": \\"01.1-first\\", \\"success\\": true, \\"outputs\\": {\\"title\\": \\"t\\"}}\\n```\\n"}}\n'
printf '%s\n' '{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":30,"reasoning_output_tokens":12}}'
"##;
    let b = build(body, "");
    b.run(&["run"]).code(0);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["outcome"], "ok", "{:#}", a[0]);
    assert_eq!(a[0]["reasoning_tokens"], 12, "{:#}", a[0]);
    assert_eq!(status_json(&b)["variables"]["01.1"]["title"], "t");
}

#[test]
fn max_call_usd_caps_the_budget_one_agent_call_is_handed() {
    // $0.50 left in all, $0.05 at most per call: the agent is told $0.05.
    let body = format!("printf '%s\\n' \"$2\" >> \"$(dirname \"$0\")/handed\"\n{AGENT_REPLY}");
    let args = ", \"--max-budget-usd\", \"{{budget_usd_left}}\"";
    let tables = "max_call_usd = 0.05\n[budget]\nmax_cost_usd = 0.5";
    let b = scripted(one_prompt(), &body, args, tables);
    b.run(&["run"]).code(0);
    assert_eq!(b.read("handed").trim(), "0.0500");
}

#[test]
fn the_second_prompt_goes_on_in_the_session_the_first_call_reported_and_the_first_starts_fresh() {
    // The agent answers as Claude Code does, with `"session_id":"s"`; each call's
    // arguments are logged, one line per call.
    let two = one_prompt().prompt("01.2-second", "Build on {{title}}.", &["summary"]);
    let body = format!("echo \"args:$*\" >> \"$(dirname \"$0\")/argv\"\n{AGENT_REPLY}");
    let tables = "continue_session = [\"--resume\", \"{{agent_session}}\"]";
    let b = scripted(two, &body, ", \"-p\"", tables);
    b.run(&["run"]).code(0);
    let argv = b.read("argv");
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines, ["args:-p", "args:-p --resume s"], "{argv}");
    assert_eq!(status_json(&b)["prompts"]["01.1"]["agent_session"], "s");
}

/// A notifier that appends what it reads on stdin to `notified` beside it, and the build
/// `body` answers, with `[notify] command` set to it.
fn notified_build(body: &str, extra: &str) -> Build {
    let b = build(body, extra);
    let notifier = agent_script(&b, "notify.sh", "cat >> \"$(dirname \"$0\")/notified\"\n");
    let config = b.read("config.toml");
    b.config(&format!(
        "{config}\n[notify]\ncommand = [\"{}\"]\n",
        notifier.display()
    ));
    b
}

fn notices(b: &Build) -> Vec<Value> {
    b.read("notified")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect()
}

#[test]
fn a_finished_run_sends_the_notifier_one_document_on_one_line() {
    let b = notified_build(AGENT_REPLY, "");
    b.run(&["run"]).code(0);
    let n = notices(&b);
    assert_eq!(n.len(), 1, "{n:#?}");
    assert_eq!(n[0]["event"], "finished");
    assert_eq!(n[0]["exit_code"], 0);
    assert_eq!(n[0]["completed"], 1);
    assert_eq!(n[0]["failed"], 0);
    assert_eq!(n[0]["session_id"], status_json(&b)["session_id"]);
    assert!(n[0]["cost_usd"].as_f64().is_some(), "{}", n[0]);
}

#[test]
fn a_failed_run_and_a_pause_are_told_to_the_notifier() {
    // A usage limit two seconds away (a pause, told), then an agent that fails for good.
    let body = "dir=$(dirname \"$0\")\nif [ ! -e \"$dir/limited\" ]; then\n  touch \"$dir/limited\"\n  cat >/dev/null\n  printf '{\"type\":\"result\",\"is_error\":true,\"result\":\"Claude AI usage limit reached|%s\"}\\n' $(( $(date +%s) + 2 ))\n  exit 1\nfi\ncat >/dev/null\necho 'fatal: no model' >&2\nexit 3\n";
    let b = notified_build(body, "");
    b.run(&["run"]).code(1);
    let n = notices(&b);
    assert_eq!(n.len(), 2, "{n:#?}");
    assert_eq!(n[0]["event"], "paused");
    assert_eq!(n[0]["prompt"], "01.1");
    assert!(
        n[0]["paused_until"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{}",
        n[0]
    );
    assert_eq!(n[1]["event"], "failed");
    assert_eq!(n[1]["exit_code"], 1);
    assert_eq!(n[1]["failed"], 1);
    assert!(
        n[1]["reason"].as_str().is_some_and(|r| r.contains("01.1")),
        "{}",
        n[1]
    );
}

#[test]
fn a_usd_limit_nothing_can_enforce_stops_the_run_after_the_first_unpriced_call() {
    // A plain agent (stdout is the reply, no cost reported), a USD limit, no [pricing].
    let body = "cat >/dev/null\nprintf 'Done.\\n\\n```json\\n{\"prompt\": \"01.1-first\", \"success\": true, \"outputs\": {\"title\": \"t\"}}\\n```\\n'\n";
    let b = build(body, "[budget]\nmax_cost_usd = 1.0");
    let run = b.run(&["run"]);
    run.code(2)
        .stderr_has("[pricing]")
        .stderr_has("max_cost_usd");
    assert_eq!(
        attempts(&b, "01.1").len(),
        1,
        "the call is recorded, its tokens counted"
    );
}

#[test]
fn a_usd_limit_on_an_agent_that_reports_no_cost_is_refused_before_any_call() {
    let b = build(AGENT_REPLY, "[budget]\nmax_cost_usd = 1.0");
    let config = b.read("config.toml").replace(
        "command = [",
        "command = [\"codex\", \"exec\", \"--json\", \"-\"]\n# was: [",
    );
    b.config(&config);
    let run = b.run(&["run"]);
    run.code(2)
        .stderr_has("pricing")
        .stderr_has("`codex` reports no cost");
    assert!(!b.path().join("calls").exists());
}

/// A Codex-shaped agent whose `pytest` exits 1 on its way, and which then reports success.
const CODEX_WITH_A_FAILED_COMMAND: &str = r##"cat >/dev/null
printf '%s\n' '{"type":"thread.started","thread_id":"t1"}' '{"type":"turn.started"}'
printf '%s\n' '{"type":"item.completed","item":{"id":"c1","type":"command_execution","command":"pytest -q","aggregated_output":"1 failed","exit_code":1,"status":"failed"}}'
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"Done.\\n\\n```json\\n{\\"prompt\\": \\"01.1-first\\", \\"success\\": true, \\"outputs\\": {\\"title\\": \\"t\\"}}\\n```\\n"}}\n'
printf '%s\n' '{"type":"turn.completed","usage":{"input_tokens":100,"output_tokens":30}}'
"##;

#[test]
fn what_the_agent_reported_failing_is_shown_and_accepted_with_a_warning_by_default() {
    let b = build(CODEX_WITH_A_FAILED_COMMAND, "");
    let run = b.run(&["run"]);
    run.code(0)
        .stderr_has("the agent reported 1 of its own step failing: `pytest -q` exited 1: 1 failed");
    let a = attempts(&b, "01.1");
    assert_eq!(
        a[0]["agent_errors"][0], "`pytest -q` exited 1: 1 failed",
        "{:#}",
        a[0]
    );
    let status = status_json(&b);
    assert_eq!(
        status["prompts"]["01.1"]["agent_errors"][0],
        "`pytest -q` exited 1: 1 failed"
    );
    let report = b.run(&["report", "--json"]);
    let doc: Value = serde_json::from_str(&report.stdout).expect("report --json");
    assert_eq!(
        doc["prompts"][0]["attempts"][0]["agent_errors"][0],
        "`pytest -q` exited 1: 1 failed"
    );
}

#[test]
fn with_agent_errors_fail_what_the_agent_reported_failing_fails_the_attempt() {
    let b = build(
        CODEX_WITH_A_FAILED_COMMAND,
        "[verify]\nagent_errors = \"fail\"",
    );
    let run = b.run(&["run"]);
    run.code(1).stderr_has("agent_errors = \"fail\"");
    let a = attempts(&b, "01.1");
    assert_eq!(a[0]["outcome"], "content", "{:#}", a[0]);
    assert_eq!(strings(&status_json(&b)["failed"]), ["01.1"]);
}

#[test]
fn plan_warns_of_an_agent_build_prompt_with_no_check_and_of_a_check_that_only_prints() {
    let b = TestBuild::new()
        .phase("01-a", "A", Some(50_000))
        .prompt(
            "01.1-venv",
            "Create the venv.\n\n## Validation\n```bash\necho $VIRTUAL_ENV\n```\n",
            &[],
        )
        .prompt(
            "01.2-module",
            "Write the module.\n\n## Validation\n```python\nimport wordfreq\n```\n",
            &[],
        )
        .build();
    b.config(
        "[llm]\nprovider = \"command\"\ncommand = [\"claude\", \"-p\"]\n[workspace]\ndir = \"build\"\n[verify]\nfrom_prompt = true\n[[phases]]\ndir = \"01-a\"\nname = \"A\"\n",
    );
    let plan = b.run(&["plan"]);
    plan.code(0)
        .stderr_has("01.1's check `echo $VIRTUAL_ENV` only prints")
        .stderr_has("01.2 has no check that runs");
}

#[test]
fn a_check_that_passes_before_the_agent_runs_is_flagged() {
    // `test -d .` holds in any workspace; `test -f made.txt` only once the agent made it.
    let t = TestBuild::new().phase("01-a", "A", Some(200_000)).prompt(
        "01.1-first",
        "Make made.txt.\n\n## Validation\n```bash\ntest -d .\n```\n\n```bash\ntest -f made.txt\n```\n",
        &["title"],
    );
    let body = format!("touch made.txt\n{AGENT_REPLY}");
    let tables = "[workspace]\ndir = \"build\"\n[verify]\nfrom_prompt = true\nbefore = true";
    let b = scripted(t, &body, "", tables);
    let run = b.run(&["run"]);
    run.code(0)
        .stderr_has("the check `test -d .` passed before the agent ran");
    assert!(
        !run.stderr.contains("`test -f made.txt` passed before"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_check_run_before_the_agent_touches_only_its_copy_of_the_base() {
    // Before the agent ran (no made.txt yet), the check writes through `{{workspace}}`:
    // that must land in the copy it runs on, not in the workspace.
    let t = TestBuild::new().phase("01-a", "A", Some(200_000)).prompt(
        "01.1-first",
        "Make made.txt.\n\n## Validation\n```bash\n[ -f made.txt ] || touch {{workspace}}/side-effect\ntest -f made.txt\n```\n",
        &["title"],
    );
    let body = format!("touch made.txt\n{AGENT_REPLY}");
    let tables = "[workspace]\ndir = \"build\"\n[verify]\nfrom_prompt = true\nbefore = true";
    let b = scripted(t, &body, "", tables);
    b.run(&["run"]).code(0);
    assert!(b.path().join("build/made.txt").exists());
    assert!(
        !b.path().join("build/side-effect").exists(),
        "the check run before the agent wrote into the workspace"
    );
}

/// An agent build of one prompt whose agent adds one to `count` in the workspace each
/// call, with front matter `front`.
fn counting_loop(front: &str) -> Build {
    let text = crate::support::prompt("01.1-count", "Add one to count.", &["title"]);
    let t = TestBuild::new().phase("01-a", "A", Some(200_000)).file(
        "prompts/01-a/01.1-count.md",
        &format!("+++\n{front}\n+++\n{text}"),
    );
    let body =
        format!("n=$(cat count 2>/dev/null || echo 0)\necho $((n + 1)) > count\n{AGENT_REPLY}");
    scripted(t, &body, "", "[workspace]\ndir = \"build\"")
}

fn commits_of(b: &Build, message: &str) -> usize {
    crate::support::git(&b.path().join("build"), &["log", "--format=%s"])
        .lines()
        .filter(|l| l.starts_with(message))
        .count()
}

#[test]
fn a_prompt_with_until_is_sent_again_on_top_of_its_last_iteration_until_the_check_passes() {
    let b = counting_loop("until = \"test $(cat count) -ge 3\"\nmax_iterations = 5");
    let run = b.run(&["run"]);
    run.code(0);
    assert_eq!(
        b.read("build/count").trim(),
        "3",
        "each iteration built on the last"
    );
    assert_eq!(
        commits_of(&b, "01.1 01.1-count"),
        3,
        "a commit per iteration"
    );
    assert_eq!(events(&b, "iterated").len(), 2);
    assert_eq!(strings(&status_json(&b)["completed"]), ["01.1"]);
}

#[test]
fn a_prompt_whose_until_check_never_passes_fails_at_max_iterations_with_the_checks_output() {
    let b = counting_loop("until = \"echo still at $(cat count); false\"\nmax_iterations = 2");
    let run = b.run(&["run"]);
    run.code(1)
        .stderr_has("still fails after 2 iterations")
        .stderr_has("still at 2");
    assert_eq!(b.read("build/count").trim(), "2");
    assert_eq!(commits_of(&b, "01.1 01.1-count"), 2, "both iterations kept");
    assert_eq!(strings(&status_json(&b)["failed"]), ["01.1"]);
}

#[test]
fn plan_shows_the_until_check() {
    let b = counting_loop("until = \"test $(cat count) -ge 3\"");
    b.run(&["plan"])
        .code(0)
        .stdout_has("# until: sent again while this fails, at most 5 times")
        .stdout_has("test $(cat count) -ge 3");
}

/// `build`, with `llm.idle_timeout` at one second.
fn build_idle(body: &str) -> Build {
    let b = build(body, "");
    let config = b.read("config.toml").replace(
        "timeout = \"20s\"",
        "timeout = \"20s\"\nidle_timeout = \"1s\"",
    );
    b.config(&config);
    b
}

#[test]
fn an_agent_that_only_prints_reconnect_notices_is_cut_at_the_idle_timeout() {
    // Codex against a dead endpoint: it started, then only says it is reconnecting.
    let body = r#"cat >/dev/null
printf '%s\n' '{"type":"thread.started","thread_id":"t1"}' '{"type":"turn.started"}'
while true; do
  printf '%s\n' '{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion)"}'
  sleep 0.2
done
"#;
    let b = build_idle(body);
    let run = b.run(&["run"]);
    run.code(1)
        .stderr_has("printed nothing that shows progress for llm.idle_timeout (1s)");
    let a = attempts(&b, "01.1");
    assert_eq!(a[0]["outcome"], "transient", "{:#}", a[0]);
}

#[test]
fn an_agent_busy_with_a_long_command_is_not_cut_at_the_idle_timeout() {
    // A command that prints nothing for twice the idle timeout, then the turn completes.
    let body = r##"cat >/dev/null
printf '%s\n' '{"type":"thread.started","thread_id":"t1"}' '{"type":"turn.started"}'
printf '%s\n' '{"type":"item.started","item":{"id":"c1","type":"command_execution","command":"pip install x","status":"in_progress"}}'
sleep 2
printf '%s\n' '{"type":"item.completed","item":{"id":"c1","type":"command_execution","command":"pip install x","aggregated_output":"ok","exit_code":0,"status":"completed"}}'
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"Done.\\n\\n```json\\n{\\"prompt\\": \\"01.1-first\\", \\"success\\": true, \\"outputs\\": {\\"title\\": \\"t\\"}}\\n```\\n"}}\n'
printf '%s\n' '{"type":"turn.completed","usage":{"input_tokens":100,"output_tokens":30}}'
"##;
    let b = build_idle(body);
    b.run(&["run"]).code(0);
    assert_eq!(attempts(&b, "01.1")[0]["outcome"], "ok");
}

#[test]
fn a_fallback_answers_while_the_primary_is_at_its_usage_limit_and_the_journal_says_which() {
    // The primary is at its limit for an hour; the fallback answers both prompts at once.
    let primary = "dir=$(dirname \"$0\")\necho primary >> \"$dir/calls\"\ncat >/dev/null\nprintf '{\"type\":\"result\",\"is_error\":true,\"result\":\"Claude AI usage limit reached|%s\"}\\n' $(( $(date +%s) + 3600 ))\nexit 1\n";
    let two = one_prompt().prompt("01.2-second", "Build on {{title}}.", &["summary"]);
    let b = two.build();
    let fallback = agent_script(
        &b,
        "fallback.sh",
        &format!("echo fallback >> \"$(dirname \"$0\")/calls\"\n{AGENT_REPLY}"),
    );
    let script = agent_script(&b, "agent.sh", primary);
    b.config(&format!(
        "[llm]\nprovider = \"command\"\ncommand = [\"{}\"]\n[[llm.fallback]]\nprovider = \"command\"\ncommand = [\"{}\"]\n[retry]\nmax_attempts = 1\ninitial_delay = \"10ms\"\nmax_delay = \"50ms\"\n[[phases]]\ndir = \"01-a\"\nname = \"A\"\nbudget = 200000\n",
        script.display(),
        fallback.display()
    ));
    let run = b.run(&["run"]);
    run.code(0).stderr_has("answers meanwhile");
    assert_eq!(
        b.read("calls").lines().collect::<Vec<_>>(),
        ["primary", "fallback", "fallback"]
    );
    let by: Vec<Value> = events(&b, "attempt_started")
        .iter()
        .map(|e| e["by"].clone())
        .collect();
    assert_eq!(by[0], Value::Null, "the first attempt went to [llm]");
    for b in &by[1..] {
        assert!(
            b.as_str()
                .is_some_and(|s| s.starts_with("llm.fallback[0] (command ")),
            "{b}"
        );
    }
    assert!(
        events(&b, "paused").is_empty(),
        "no pause while a fallback answers"
    );
    let report = b.run(&["report", "--json"]);
    let doc: Value = serde_json::from_str(&report.stdout).expect("report --json");
    assert!(
        doc["prompts"][1]["attempts"][0]["by"]
            .as_str()
            .is_some_and(|s| s.starts_with("llm.fallback[0]")),
        "{}",
        doc["prompts"][1]
    );
}

#[test]
fn a_fallback_is_checked_as_llm_is_and_named_by_its_place() {
    let b = build(AGENT_REPLY, "");
    let config = b.read("config.toml").replace(
        "[retry]",
        "[[llm.fallback]]\nprovider = \"command\"\ncommand = [\"codex\", \"{{nope}}\"]\n[retry]",
    );
    b.config(&config);
    b.run(&["run"])
        .code(2)
        .stderr_has("llm.fallback[0].command")
        .stderr_has("{{nope}}");
}

#[test]
fn the_cost_of_calls_that_report_none_without_pricing_is_unknown_not_zero() {
    // A Codex-shaped agent: usage, no cost; no [pricing], no USD limit.
    let b = build(CODEX_WITH_A_FAILED_COMMAND, "");
    b.run(&["run"]).code(0);
    assert_eq!(status_json(&b)["total"]["unpriced"], 1);
    b.run(&["status"])
        .code(0)
        .stdout_has("Cost: unknown (1 attempt: no [pricing], and the endpoint reported none)");
    let report = b.run(&["report", "--json"]);
    let doc: Value = serde_json::from_str(&report.stdout).expect("report --json");
    assert_eq!(doc["unpriced"], 1);
}

#[test]
fn a_halted_run_is_told_to_the_notifier_with_its_exit_code_and_reason() {
    // A USD limit nothing can count: the run halts (exit 2) after the first call.
    let body = "cat >/dev/null\nprintf 'Done.\\n\\n```json\\n{\"prompt\": \"01.1-first\", \"success\": true, \"outputs\": {\"title\": \"t\"}}\\n```\\n'\n";
    let b = notified_build(body, "[budget]\nmax_cost_usd = 1.0");
    b.run(&["run"]).code(2);
    let n = notices(&b);
    assert_eq!(n.len(), 1, "{n:#?}");
    assert_eq!(n[0]["event"], "halted");
    assert_eq!(n[0]["exit_code"], 2);
    assert!(
        n[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("[pricing]")),
        "{}",
        n[0]
    );
}

#[test]
fn a_kill_inside_an_until_loop_resumes_from_the_last_iteration() {
    // The second call hangs (once); the runner is killed there. The next run starts again
    // from iteration 1's commit (count = 1), so iterations 2 and 3 follow it.
    let text = crate::support::prompt("01.1-count", "Add one to count.", &["title"]);
    let t = TestBuild::new().phase("01-a", "A", Some(200_000)).file(
        "prompts/01-a/01.1-count.md",
        &format!("+++\nuntil = \"test $(cat count) -ge 3\"\n+++\n{text}"),
    );
    let body = format!(
        "n=$(( $(cat count 2>/dev/null || echo 0) + 1 ))\necho $n > count\nmark=\"$(dirname \"$0\")/hung\"\nif [ $n -eq 2 ] && [ ! -e \"$mark\" ]; then touch \"$mark\"; sleep 300; fi\n{AGENT_REPLY}"
    );
    let b = scripted(t, &body, "", "[workspace]\ndir = \"build\"");
    let runner = Running::spawn_quiet(&b, &["run"]);
    assert!(
        eventually(Duration::from_secs(30), || b.path().join("hung").exists()),
        "the second call started"
    );
    runner.kill();
    assert_eq!(events(&b, "iterated").len(), 1);
    b.run(&["run"]).code(0);
    assert_eq!(b.read("build/count").trim(), "3");
    assert_eq!(events(&b, "iterated").len(), 2);
    assert_eq!(
        commits_of(&b, "01.1 01.1-count"),
        3,
        "iterations 1 and 2, and the last"
    );
    assert_eq!(strings(&status_json(&b)["completed"]), ["01.1"]);
}

#[test]
fn an_interrupted_run_is_told_to_the_notifier() {
    let body = "touch \"$(dirname \"$0\")/started\"\nexec sleep 300\n";
    let b = notified_build(body, "");
    let mut runner = Running::spawn_quiet(&b, &["run"]);
    assert!(
        eventually(Duration::from_secs(30), || b
            .path()
            .join("started")
            .exists()),
        "the agent started"
    );
    runner.signal("INT");
    runner.wait().code(130);
    let n = notices(&b);
    assert_eq!(n.len(), 1, "{n:#?}");
    assert_eq!(n[0]["event"], "interrupted");
    assert_eq!(n[0]["exit_code"], 130);
}
