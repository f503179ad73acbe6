//! Parallel agent builds (issue 20): with `run --jobs N` and a git workspace, each attempt
//! works in a worktree of its own, its accepted work is merged onto the session's branch in
//! plan order, a conflict sends the prompt again from the new tip, a real merge is checked
//! again, and a kill -9 loses nothing. The scripted agent runs each prompt's `## Execute`
//! block in its working folder (`tests/support/scripted_agent.py`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::boundary::{Scenario, completed, subjects};
use crate::support::{Running, events, eventually, git};

const JOBS: &str = "[run]\njobs = 2\n";

/// `(attempt, outcome)` of each finished attempt at prompt `id`, in order.
fn outcomes(s: &Scenario, id: &str) -> Vec<(u64, String)> {
    events(&s.b, "attempt_finished")
        .iter()
        .filter(|e| e["id"] == id)
        .map(|e| {
            let outcome = e["outcome"].as_str().unwrap_or("").to_string();
            (e["attempt"].as_u64().unwrap_or(0), outcome)
        })
        .collect()
}

/// Once a run is over: the workspace holds exactly its commit, and the only worktree git
/// knows of is the workspace itself, with nothing left of the attempts' folders.
fn nothing_left(s: &Scenario) {
    assert_eq!(git(&s.ws(), &["status", "--porcelain"]), "");
    let listed = git(&s.ws(), &["worktree", "list", "--porcelain"]);
    let trees = listed
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count();
    assert_eq!(trees, 1, "{listed}");
    let root = s.b.path().join("checkpoints/worktrees");
    let left = std::fs::read_dir(&root).map_or(0, Iterator::count);
    assert_eq!(left, 0, "worktrees left in {}", root.display());
}

fn text(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn two_prompts_appending_to_one_file_at_once_both_end_up_in_it_each_committed_once() {
    let s = Scenario::new(
        &[
            ("one", "echo one >> notes.txt", "grep -qx one notes.txt"),
            // `{{workspace}}` names the attempt's own worktree, for the agent and the check.
            (
                "two",
                "echo two >> {{workspace}}/notes.txt",
                "grep -qx two {{workspace}}/notes.txt",
            ),
        ],
        JOBS,
    );
    s.b.run(&["run"]).code(0);
    let ws = s.ws();
    assert_eq!(text(&ws, "notes.txt"), "one\ntwo\n");
    assert_eq!(
        subjects(&ws, "HEAD"),
        ["01.2 01.2-two", "01.1 01.1-one", "orchestrator: baseline"],
        "one commit per prompt on the session's branch, in plan order"
    );
    assert_eq!(completed(&s.b), ["01.1", "01.2"]);
    // Both first attempts started from the baseline, at once, each in its own worktree.
    let calls = s.calls();
    let first_two: Vec<&Value> = calls.iter().take(2).collect();
    assert_eq!(first_two.len(), 2, "{calls:#?}");
    assert_eq!(first_two[0]["head"], first_two[1]["head"], "{calls:#?}");
    assert_ne!(first_two[0]["cwd"], first_two[1]["cwd"], "{calls:#?}");
    // The second's append conflicted with the first's, merged meanwhile: it ran again
    // from the new tip, its conflict journaled as such.
    assert_eq!(
        outcomes(&s, "01.2"),
        [(1, "conflict".to_string()), (2, "ok".to_string())]
    );
    assert_eq!(outcomes(&s, "01.1"), [(1, "ok".to_string())]);
    let started = events(&s.b, "attempt_started");
    assert!(
        started.iter().all(|e| e["worktree"].is_string()),
        "{started:#?}"
    );
    nothing_left(&s);
}

#[test]
fn independent_prompts_in_worktrees_merge_onto_the_branch_in_plan_order() {
    let s = Scenario::new(
        &[
            (
                "one",
                "python3 -m venv --without-pip .venv\nprintf '#!%s/.venv/bin/python\\nprint(\"hello from the venv\")\\n' \"$PWD\" > .venv/bin/hello\nchmod +x .venv/bin/hello\necho a > a.txt",
                "test -f a.txt",
            ),
            ("two", "echo b > b.txt", "test -f b.txt"),
            ("three", "mkdir -p data && echo c > data/c.txt", ""),
        ],
        "[run]\njobs = 3\n",
    );
    s.b.run(&["run"]).code(0);
    let ws = s.ws();
    assert_eq!(
        subjects(&ws, "HEAD"),
        [
            "01.3 01.3-three",
            "01.2 01.2-two",
            "01.1 01.1-one",
            "orchestrator: baseline"
        ]
    );
    for (file, body) in [("a.txt", "a\n"), ("b.txt", "b\n"), ("data/c.txt", "c\n")] {
        assert_eq!(text(&ws, file), body, "{file}");
    }
    for id in ["01.1", "01.2", "01.3"] {
        assert_eq!(outcomes(&s, id), [(1, "ok".to_string())], "{id}");
    }
    // The virtualenv the first made in its worktree is the workspace's now, not committed,
    // and its console scripts start its Python from there.
    let hello = std::process::Command::new(ws.join(".venv/bin/hello"))
        .output()
        .expect("the virtualenv's script runs");
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        "hello from the venv\n",
        "{hello:?}"
    );
    let ws_path = ws.canonicalize().expect("workspace");
    assert!(text(&ws, ".venv/bin/activate").contains(&ws_path.display().to_string()));
    let tracked = git(&ws, &["ls-files"]);
    assert!(!tracked.contains(".venv"), "{tracked}");
    nothing_left(&s);
}

#[test]
fn a_merge_runs_the_config_checks_again_on_the_merged_tree() {
    // Each prompt's work passes the check alone; the two together do not.
    let s = Scenario::new(
        &[("one", "echo a > a.txt", ""), ("two", "echo b > b.txt", "")],
        &format!("commands = [\"test ! -f a.txt || test ! -f b.txt\"]\n{JOBS}"),
    );
    s.b.run(&["run"]).code(1);
    let failures: Vec<String> = events(&s.b, "attempt_finished")
        .iter()
        .filter(|e| e["id"] == "01.2" && e["attempt"] == 1)
        .map(|e| e["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].contains("merged with the work accepted meanwhile"),
        "{failures:?}"
    );
    let checked: Vec<Value> = events(&s.b, "verified")
        .into_iter()
        .filter(|e| e["id"] == "01.2" && e["attempt"] == 1)
        .collect();
    assert_eq!(
        checked
            .iter()
            .map(|e| e["passed"].as_bool())
            .collect::<Vec<_>>(),
        [Some(true), Some(false)],
        "passed in its worktree, failed on the merged tree: {checked:#?}"
    );
    let ws = s.ws();
    assert!(ws.join("a.txt").exists());
    assert!(
        !ws.join("b.txt").exists(),
        "the refused merge never reached the workspace"
    );
    assert_eq!(
        subjects(&ws, "HEAD"),
        ["01.1 01.1-one", "orchestrator: baseline"]
    );
    nothing_left(&s);
}

#[test]
fn a_kill_9_during_a_parallel_agent_build_loses_nothing_and_completes_each_prompt_once() {
    let s = Scenario::new(
        &[
            (
                "one",
                "echo one > one.txt\nif [ ! -e \"$T/once\" ]; then touch \"$T/once\"; echo half > half.txt; touch \"$T/ready\"; sleep 600; fi",
                "test -f one.txt",
            ),
            ("two", "echo two > two.txt", "test -f two.txt"),
        ],
        JOBS,
    );
    let runner = Running::spawn_quiet(&s.b, &["run"]);
    assert!(
        eventually(Duration::from_secs(30), || s.state("ready").exists()),
        "the first prompt's agent never started"
    );
    runner.kill();
    s.b.run(&["run"]).code(0);
    let ws = s.ws();
    assert_eq!(completed(&s.b), ["01.1", "01.2"]);
    assert_eq!(
        subjects(&ws, "HEAD"),
        ["01.2 01.2-two", "01.1 01.1-one", "orchestrator: baseline"]
    );
    assert_eq!(text(&ws, "one.txt"), "one\n");
    assert_eq!(text(&ws, "two.txt"), "two\n");
    assert!(!ws.join("half.txt").exists());
    let kept = git(
        &ws,
        &["for-each-ref", "--format=%(refname)", "refs/orchestrator/"],
    );
    assert!(
        kept.lines().any(|r| r.ends_with("01.1-at-resume")),
        "what the cut attempt left is kept: {kept}"
    );
    nothing_left(&s);
}

#[test]
fn rerun_and_after_with_jobs_builds_the_prompts_again_in_worktrees_on_the_earlier_commit() {
    let s = Scenario::new(
        &[
            ("one", "echo one-$(date +%N) > one.txt", "test -f one.txt"),
            ("two", "echo two >> two.txt", "test -f two.txt"),
            ("three", "echo three > three.txt", "test -f three.txt"),
        ],
        JOBS,
    );
    s.b.run(&["run"]).code(0);
    let ws = s.ws();
    let before = git(&ws, &["rev-parse", "HEAD"]);
    let first = text(&ws, "one.txt");
    s.b.run(&["rerun", "01.1", "--and-after", "--jobs", "2"])
        .code(0);
    assert_eq!(
        subjects(&ws, "HEAD"),
        [
            "01.3 01.3-three",
            "01.2 01.2-two",
            "01.1 01.1-one",
            "orchestrator: baseline"
        ],
        "the rebuilt prompts replace the old commits on the branch, in plan order"
    );
    assert_ne!(text(&ws, "one.txt"), first, "01.1 was built again");
    assert_eq!(
        text(&ws, "two.txt"),
        "two\n",
        "built once on the new 01.1, not twice"
    );
    let kept = git(
        &ws,
        &[
            "for-each-ref",
            "--contains",
            before.trim(),
            "refs/orchestrator/",
        ],
    );
    assert!(!kept.is_empty(), "the replaced commits are kept");
    nothing_left(&s);
}
