//! Agent builds (issue 12): the example build of `examples/agent-build/` run by the scripted
//! agent (`tests/support/scripted_agent.py`, which does what each prompt's `## Execute`
//! section says), in a git workspace, with the checks that decide acceptance.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Build, Running, alive, attempts, config_with, events, eventually, example_agent_build, git,
    kill_pid, logged_calls, repo, status_json,
};

const PROMPTS: [&str; 6] = ["01.1", "01.2", "01.3", "01.4", "01.5", "01.6"];

fn scripted_agent() -> PathBuf {
    repo().join("tests/support/scripted_agent.py")
}

/// The example agent build in a temporary folder, its agent the scripted one (behaviours
/// `behave`), each call logged to `checkpoints/agent.log`; `sets` on top of its config.
fn example(behave: &str, sets: &[(&str, toml::Value)]) -> Build {
    let (mut b, base) = example_agent_build();
    let s = |v: &str| toml::Value::String(v.to_string());
    let mut all = vec![
        (
            "llm.command",
            toml::Value::Array(vec![s(&scripted_agent().display().to_string())]),
        ),
        (
            "llm.env",
            toml::Value::Array(
                [
                    "SCRIPTED_AGENT",
                    "SCRIPTED_AGENT_LOG",
                    "SCRIPTED_AGENT_CACHE_READ",
                    "SCRIPTED_AGENT_COST",
                ]
                .map(s)
                .to_vec(),
            ),
        ),
        ("retry.initial_delay", s("10ms")),
        ("retry.max_delay", s("50ms")),
    ];
    all.extend(sets.iter().cloned());
    b.config(&config_with(&base, &all));
    // In the runner's own folder, which no workspace ever snapshots.
    let log = b.path().join("checkpoints/agent.log").display().to_string();
    b.env("SCRIPTED_AGENT", behave);
    b.env("SCRIPTED_AGENT_LOG", &log);
    b
}

/// The calls the scripted agent logged, in order.
fn calls(b: &Build) -> Vec<Value> {
    logged_calls(&b.path().join("checkpoints/agent.log"))
}

fn workspace(b: &Build) -> PathBuf {
    b.path().join("build")
}

#[test]
fn the_example_agent_build_runs_unattended_to_a_package_with_a_commit_per_prompt() {
    let b = example("", &[]);
    b.run(&["run"]).code(0);
    let ws = workspace(&b);
    for file in [
        "wordfreq/__init__.py",
        "wordfreq/core.py",
        "wordfreq/__main__.py",
        "tests/test_core.py",
        "pyproject.toml",
        "README.md",
    ] {
        assert!(ws.join(file).is_file(), "{file} was built");
    }
    let log = git(&ws, &["log", "--format=%s"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects,
        [
            "01.6 01.6-readme",
            "01.5 01.5-packaging",
            "01.4 01.4-cli",
            "01.3 01.3-tests",
            "01.2 01.2-core",
            "01.1 01.1-layout",
            "orchestrator: baseline"
        ]
    );
    assert_eq!(
        git(&ws, &["status", "--porcelain"]),
        "",
        "nothing left uncommitted"
    );
    let status = status_json(&b);
    for id in PROMPTS {
        let p = &status["prompts"][id];
        assert!(
            p["commit"].as_str().is_some_and(|c| c.len() == 40),
            "{id}: {p}"
        );
        let checks = p["checks"].as_array().expect("checks");
        assert_eq!(
            checks.len(),
            2,
            "{id}: a Validation block and the config's command"
        );
        assert!(checks.iter().all(|c| c["passed"] == true), "{id}: {p}");
    }
    let verified = events(&b, "verified");
    assert_eq!(verified.len(), 12);
    let st = b.run(&["status"]);
    st.code(0).stdout_has("| Commit").stdout_has("2 passed");
    let sj = b.run(&["status", "--json"]).status_doc();
    let commits = sj.prompts.values().filter(|p| p.commit.is_some()).count();
    assert_eq!(commits, 6);
}

#[test]
fn the_example_agent_build_runs_in_worktrees_at_once_with_its_checks_before_the_agent() {
    // `[verify] before` is on here: prompts in flight at once export their base commits
    // at once, each through an index of its own.
    let b = example("", &[("run.jobs", toml::Value::Integer(3))]);
    b.run(&["run"]).code(0);
    let ws = workspace(&b);
    let log = git(&ws, &["log", "--format=%s"]);
    let ids: Vec<&str> = log.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        ids,
        [
            "01.6",
            "01.5",
            "01.4",
            "01.3",
            "01.2",
            "01.1",
            "orchestrator:"
        ]
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    let left: Vec<String> = std::fs::read_dir(ws.join(".git"))
        .expect(".git")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("orchestrator-export"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_failed_check_is_retried_from_the_last_accepted_commit_with_the_failure_in_the_note() {
    // On each prompt's first attempt the agent skips its last Execute block.
    let b = example("forget-first", &[]);
    b.run(&["run", "--until", "01.2"]).code(0);
    let ws = workspace(&b);
    let a = attempts(&b, "01.2");
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(a[0]["outcome"], "content", "{}", a[0]);
    assert_eq!(a[1]["outcome"], "ok", "{}", a[1]);
    let verified: Vec<Value> = events(&b, "verified")
        .into_iter()
        .filter(|e| e["id"] == "01.2")
        .collect();
    assert!(
        verified
            .iter()
            .any(|v| v["attempt"] == 1 && v["passed"] == false)
    );
    assert!(
        verified
            .iter()
            .filter(|v| v["attempt"] == 2)
            .all(|v| v["passed"] == true)
    );
    let calls: Vec<Value> = calls(&b)
        .into_iter()
        .filter(|c| c["prompt"] == "01.2-core")
        .collect();
    assert_eq!(calls.len(), 2);
    // The second attempt started from 01.1's commit: nothing the first one wrote.
    let c11 = status_json(&b)["prompts"]["01.1"]["commit"].clone();
    assert_eq!(calls[1]["head"], c11);
    let files: Vec<&str> = calls[1]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(files, ["wordfreq/__init__.py"], "only 01.1's work");
    // What the failed attempt left was discarded from the workspace but is kept.
    let restored: Vec<Value> = events(&b, "workspace_restored")
        .into_iter()
        .filter(|e| e["commit"] == c11)
        .collect();
    assert_eq!(restored.len(), 1, "{restored:#?}");
    assert_eq!(restored[0]["discarded"], serde_json::json!(["forgot.txt"]));
    let kept = restored[0]["kept"].as_str().expect("a kept ref");
    assert!(kept.starts_with("refs/orchestrator/replaced/"), "{kept}");
    assert_eq!(
        git(&ws, &["show", &format!("{kept}:forgot.txt")]),
        "left by a failed attempt"
    );
    // Its message ends with the failed command, its status, its output and If Failed.
    let stdin = calls[1]["stdin"].as_str().expect("stdin");
    let tail = &stdin[stdin.rfind("Note:").expect("a note")..];
    for part in [
        "from wordfreq.core import count_words",
        "exit status 1",
        "ModuleNotFoundError",
        "Compare words lower-cased",
    ] {
        assert!(tail.contains(part), "the note lacks {part:?}:\n{tail}");
    }
    assert!(
        stdin
            .trim_end()
            .ends_with("`top` sorts by count, then by word."),
        "the message ends with the prompt's If Failed advice:\n{tail}"
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
}

#[test]
fn a_runner_killed_mid_agent_loses_nothing_and_leaves_no_stray_file() {
    let b = example("debris-crash", &[]);
    let log = b.path().join("checkpoints/agent.log");
    let runner = Running::spawn_quiet(&b, &["run"]);
    let ready = PathBuf::from(format!("{}.ready", log.display()));
    // The file may be seen before its pid is in it: wait for the pid.
    let pid = || {
        std::fs::read_to_string(&ready)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    assert!(
        eventually(Duration::from_secs(30), || pid().is_some()),
        "the agent never wrote its half file"
    );
    let agent: u32 = pid().expect("pid");
    runner.kill();
    let died = eventually(Duration::from_secs(10), || !alive(agent));
    if !died {
        kill_pid(agent);
    }
    assert!(died, "the agent outlived the runner");
    let ws = workspace(&b);
    assert!(
        ws.join("half-written.py").exists(),
        "the debris is there to clean"
    );
    b.run(&["run"]).code(0);
    let status = status_json(&b);
    let completed: Vec<&str> = status["completed"]
        .as_array()
        .expect("completed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        completed, PROMPTS,
        "each prompt completed exactly once, in order"
    );
    assert!(!ws.join("half-written.py").exists());
    assert!(!ws.join("debris.txt").exists());
    assert_eq!(
        git(&ws, &["status", "--porcelain", "--ignored"])
            .lines()
            .filter(|l| !l.contains("__pycache__"))
            .count(),
        0
    );
    let restored = events(&b, "workspace_restored");
    assert!(
        restored.iter().any(|r| r["discarded"]
            .as_array()
            .is_some_and(|d| d.iter().any(|f| f == "half-written.py"))),
        "{restored:#?}"
    );
}

#[test]
fn rerun_of_a_finished_agent_build_starts_from_the_commit_before_and_keeps_what_it_replaces() {
    let b = example("", &[]);
    b.run(&["run"]).code(0);
    let ws = workspace(&b);
    let before = status_json(&b);
    let c02 = before["prompts"]["01.2"]["commit"].clone();
    let old_head = git(&ws, &["rev-parse", "HEAD"]).trim().to_string();
    b.run(&["rerun", "01.3"]).code(0);
    let last = calls(&b).pop().expect("a call");
    assert_eq!(last["prompt"], "01.3-tests");
    assert_eq!(last["head"], c02, "rerun 01.3 starts from 01.2's commit");
    let kept = git(
        &ws,
        &[
            "for-each-ref",
            "--format=%(objectname)",
            "refs/orchestrator/",
        ],
    );
    assert!(
        kept.lines().any(|l| l == old_head),
        "the old head {old_head} is kept: {kept}"
    );
    // The prompts built on the old 01.3 are reopened, and `run` builds them again.
    let after = status_json(&b);
    assert_eq!(after["completed"], json!(["01.1", "01.2", "01.3"]));
    b.run(&["run"]).code(0);
    assert_eq!(
        status_json(&b)["completed"].as_array().map(Vec::len),
        Some(6)
    );
    assert_eq!(git(&ws, &["log", "--format=%s"]).lines().count(), 7);
}

#[test]
fn a_workspace_with_files_the_runner_did_not_write_is_refused_with_the_files_named() {
    let b = example("", &[]);
    b.file("build/notes.txt", "mine");
    let run = b.run(&["run"]);
    run.code(2)
        .stderr_has("notes.txt")
        .stderr_has("--allow-dirty");
    assert!(calls(&b).is_empty(), "no agent ran");
    // Taken in with --allow-dirty, into the baseline.
    b.run(&["run", "--until", "01.1", "--allow-dirty"]).code(0);
    let ws = workspace(&b);
    let baseline = git(&ws, &["log", "--format=%s", "--reverse"]);
    assert!(
        baseline.starts_with("orchestrator: baseline, with the files found at start"),
        "{baseline}"
    );
    assert!(ws.join("notes.txt").is_file());
    // A file changed between runs is refused too.
    b.file("build/wordfreq/__init__.py", "# edited by hand\n");
    b.run(&["run"]).code(2).stderr_has("wordfreq/__init__.py");
}

#[test]
fn a_workspace_of_the_builds_own_folder_never_snapshots_or_resets_the_runners_files() {
    let b = example(
        "forget-first",
        &[("workspace.dir", toml::Value::String(".".into()))],
    );
    b.run(&["run"]).code(0);
    let dir = b.path();
    let tracked = git(dir, &["ls-tree", "-r", "--name-only", "HEAD"]);
    for own in ["config.toml", "prompts/", "checkpoints/"] {
        assert!(
            !tracked.lines().any(|l| l.starts_with(own)),
            "{own} is in a commit:\n{tracked}"
        );
    }
    assert!(
        !events(&b, "workspace_restored").is_empty(),
        "the retries restored the workspace"
    );
    assert!(dir.join("config.toml").is_file());
    assert!(dir.join("prompts/01-package/01.1-layout.md").is_file());
    assert_eq!(
        status_json(&b)["completed"].as_array().map(Vec::len),
        Some(6)
    );
}

#[test]
fn an_agents_cache_reads_do_not_spend_the_bundled_foundation_budget() {
    let mut b = crate::support::Build::bundled();
    let s = |v: &str| toml::Value::String(v.to_string());
    b.config(&config_with(
        &b.read("config.toml"),
        &[
            ("llm.provider", s("command")),
            (
                "llm.command",
                toml::Value::Array(vec![s(&scripted_agent().display().to_string())]),
            ),
            (
                "llm.env",
                toml::Value::Array(vec![s("SCRIPTED_AGENT"), s("SCRIPTED_AGENT_CACHE_READ")]),
            ),
        ],
    ));
    b.env("SCRIPTED_AGENT", "no-execute");
    b.env("SCRIPTED_AGENT_CACHE_READ", "18000");
    b.run(&["run", "--until", "01.5"]).code(0);
    let status = status_json(&b);
    let foundation = &status["phases"][0];
    assert!(
        foundation["used"].as_u64().expect("used") <= 10_000,
        "{foundation}"
    );
    assert_eq!(foundation["cache_read"], 5 * 18_000, "{foundation}");
    b.run(&["status"]).code(0).stdout_has("Cache reads");
}

#[test]
fn a_phase_budget_usd_halts_before_the_call_that_cannot_fit_and_tells_the_agent_what_is_left() {
    let b = example(
        "",
        &[(
            "llm.command",
            toml::Value::Array(vec![
                toml::Value::String(scripted_agent().display().to_string()),
                toml::Value::String("--max-budget-usd".into()),
                toml::Value::String("{{budget_usd_left}}".into()),
            ]),
        )],
    );
    let mut text = b.read("config.toml");
    text = text.replace("budget = 60000", "budget = 60000\nbudget_usd = 0.05");
    b.config(&text);
    let mut b = b;
    b.env("SCRIPTED_AGENT_COST", "0.02");
    let run = b.run(&["run"]);
    run.code(3).stderr_has("budget_usd");
    let calls = calls(&b);
    assert_eq!(
        calls.len(),
        2,
        "the third call could not fit: 0.04 spent + 0.02 > 0.05"
    );
    let budget_arg = |c: &Value| c["argv"][2].as_str().expect("argv").to_string();
    assert_eq!(budget_arg(&calls[0]), "0.0500");
    assert_eq!(budget_arg(&calls[1]), "0.0300");
}

#[test]
fn claude_code_errors_are_classified_by_subtype_whatever_the_exit_status() {
    for (behave, code, attempts_made) in [
        ("is-error=error_max_budget_usd", 3, 1),
        ("is-error=error_max_turns", 1, 1),
        ("is-error=error_during_execution", 1, 3),
    ] {
        let b = example(behave, &[("retry.max_attempts", toml::Value::Integer(3))]);
        let run = b.run(&["run", "--until", "01.1"]);
        assert_eq!(run.code, code, "{behave}: {}", run.stderr);
        assert_eq!(calls(&b).len(), attempts_made, "{behave}");
        let a = attempts(&b, "01.1");
        assert!(a.iter().all(|e| e["outcome"] != "ok"), "{behave}: {a:#?}");
    }
}
