//! Parallel agent builds (issue 20): with `run --jobs N` and a git workspace, each attempt
//! works in a worktree of its own, its accepted work is merged onto the session's branch in
//! plan order, a conflict sends the prompt again from the new tip, a real merge is checked
//! again, and a kill -9 loses nothing. The scripted agent runs each prompt's `## Execute`
//! block in its working folder (`tests/support/scripted_agent.py`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::boundary::{Scenario, completed, subjects};
use crate::support::{Running, events, eventually, git, journal};

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

/// Every attempt worked in a worktree, and at some moment `n` were in flight at once, each
/// in its own folder.
fn in_worktrees_at_once(s: &Scenario, n: usize) {
    let started = events(&s.b, "attempt_started");
    assert!(
        started.iter().all(|e| e["worktree"].is_string()),
        "{started:#?}"
    );
    let mut in_flight: Vec<String> = Vec::new();
    let mut most = 0;
    for e in journal(&s.b) {
        let id = e["id"].as_str().unwrap_or("").to_string();
        match e["event"].as_str() {
            Some("attempt_started") => in_flight.push(id),
            Some("attempt_finished") => in_flight.retain(|i| *i != id),
            _ => {}
        }
        most = most.max(in_flight.len());
    }
    assert!(most >= n, "at most {most} attempts were in flight at once");
    let cwds: std::collections::BTreeSet<String> =
        s.calls().iter().map(|c| c["cwd"].to_string()).collect();
    assert!(cwds.len() >= n, "{cwds:?}");
}

/// The journal as a kill -9 leaves it just after the workspace was moved to prompt `id`'s
/// merge: the move journaled, the completion not.
fn cut_after_the_merge_of(s: &Scenario, id: &str) {
    let journal_file = s.b.path().join("checkpoints/journal.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&journal_file)
        .expect("journal")
        .lines()
        .map(str::to_string)
        .collect();
    let merging = lines
        .iter()
        .position(|l| l.contains("\"merging\"") && l.contains(&format!("\"{id}\"")))
        .expect("the merge is journaled");
    std::fs::write(&journal_file, lines[..=merging].join("\n") + "\n").expect("cut");
    for view in ["status.json", "memory.json"] {
        let _ = std::fs::remove_file(s.b.path().join("checkpoints").join(view));
    }
}

/// Two independent prompts, `one` and `two`, each writing its file, two jobs.
fn one_and_two() -> Scenario {
    Scenario::new(
        &[
            ("one", "echo one > one.txt", ""),
            ("two", "echo two > two.txt", ""),
        ],
        JOBS,
    )
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
    in_worktrees_at_once(&s, 3);
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
    // Resumed with one job: the cut worktrees are cleared by any run, not only a parallel
    // one.
    s.b.run(&["run", "--jobs", "1"]).code(0);
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
        kept.lines().any(|r| r.contains("01.1-at-resume")),
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
    in_worktrees_at_once(&s, 2);
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

#[test]
fn a_prompt_waits_for_an_earlier_one_whose_rebuild_reopens_what_it_depends_on() {
    // Run 1: 01.1 and 01.3 fail their checks, 01.2 completes. Run 2 takes on 01.1 and
    // 01.3: building 01.1 reopens 01.2 (its commit is no longer on the branch), which 01.3
    // depends on; 01.3 must not have started on 01.2's work before that.
    let s = Scenario::new(
        &[
            ("one", "echo one > one.txt", "test -e \"$T/second-run\""),
            ("two", "echo two > two.txt", ""),
            (
                "three",
                "echo three > three.txt",
                "test -e \"$T/second-run\"",
            ),
        ],
        "[run]\njobs = 2\non_failure = \"skip\"\n",
    );
    let three = "prompts/01-a/01.3-three.md";
    let text = s.b.read(three);
    s.b.file(three, format!("+++\ndepends_on = [\"01.2\"]\n+++\n{text}"));
    s.b.run(&["run"]).code(1);
    assert_eq!(completed(&s.b), ["01.2"]);
    std::fs::write(s.state("second-run"), "").expect("mark");
    let before = events(&s.b, "attempt_started").len();
    s.b.run(&["run"]).code(1).stderr_has("01.2");
    let started: Vec<String> = events(&s.b, "attempt_started")[before..]
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        started.iter().all(|id| id == "01.1"),
        "only 01.1 ran; 01.3 waited and was then blocked by its reopened dependency: {started:?}"
    );
    assert_eq!(completed(&s.b), ["01.1"]);
    nothing_left(&s);
}

/// Prompts 01.2 and 01.3 depend on 01.1 (front matter), so that they run at once on its
/// commit.
fn after_the_first(s: &Scenario) {
    for file in ["prompts/01-a/01.2-two.md", "prompts/01-a/01.3-three.md"] {
        let text = s.b.read(file);
        s.b.file(file, format!("+++\ndepends_on = [\"01.1\"]\n+++\n{text}"));
    }
}

#[test]
fn worktrees_get_the_ignored_files_and_empty_folders_the_accepted_work_had() {
    let s = Scenario::new(
        &[
            (
                "one",
                "mkdir -p data\necho secret > .env\nprintf '.env\\n' > .gitignore",
                "test -d data && test -f .env",
            ),
            ("two", "echo two > two.txt", "test -d data && test -f .env"),
            (
                "three",
                "echo three > three.txt",
                "test -d data && test -f .env",
            ),
        ],
        JOBS,
    );
    after_the_first(&s);
    s.b.run(&["run"]).code(0);
    assert_eq!(completed(&s.b), ["01.1", "01.2", "01.3"]);
    for id in ["01.2", "01.3"] {
        assert_eq!(outcomes(&s, id), [(1, "ok".to_string())], "{id}");
    }
    let ws = s.ws();
    assert_eq!(text(&ws, ".env"), "secret\n");
    assert!(ws.join("data").is_dir());
    nothing_left(&s);
}

#[test]
fn an_editable_install_made_in_a_worktree_names_the_workspace_once_merged() {
    // What `pip install -e .` leaves in the shared virtualenv: a `.pth` naming the tree
    // it was made in (here, the worktree).
    let s = Scenario::new(
        &[
            (
                "one",
                "python3 -m venv --without-pip .venv",
                "test -x .venv/bin/python",
            ),
            (
                "two",
                "mkdir -p src && echo 'X = 42' > src/mymod.py\nsp=$(echo .venv/lib/python3*/site-packages)\necho \"$PWD/src\" > \"$sp/_editable.pth\"",
                ".venv/bin/python -c 'import mymod'",
            ),
            ("three", "echo three > three.txt", ""),
        ],
        JOBS,
    );
    after_the_first(&s);
    s.b.run(&["run"]).code(0);
    let ws = s.ws();
    let out = std::process::Command::new(ws.join(".venv/bin/python"))
        .args(["-c", "import mymod; print(mymod.X, mymod.__file__)"])
        .current_dir(s.b.path())
        .output()
        .expect("python");
    let said = String::from_utf8_lossy(&out.stdout);
    let ws_path = ws.canonicalize().expect("workspace").display().to_string();
    assert!(said.starts_with("42 "), "{out:?}");
    assert!(
        said.contains(&ws_path),
        "imported from the workspace: {said}"
    );
    nothing_left(&s);
}

#[test]
fn a_change_made_in_the_workspace_itself_during_a_parallel_build_stops_the_run_and_is_kept() {
    let s = one_and_two();
    // What a user (or an agent that ignores its folder) writes in the workspace while
    // the prompts run in their worktrees.
    let mine = s.ws().join("mine.txt");
    let two = "prompts/01-a/01.2-two.md";
    let text = s.b.read(two).replace(
        "echo two > two.txt",
        &format!("echo two > two.txt\necho mine > {}", mine.display()),
    );
    s.b.file(two, text);
    let run = s.b.run(&["run"]);
    run.code(2)
        .stderr_has("mine.txt")
        .stderr_has("changes the runner did not make");
    assert_eq!(std::fs::read_to_string(&mine).expect("kept"), "mine\n");
}

#[test]
fn a_crash_while_a_merge_moves_the_workspace_is_not_taken_for_the_users_changes() {
    let s = one_and_two();
    s.b.run(&["run"]).code(0);
    cut_after_the_merge_of(&s, "01.2");
    assert_eq!(text(&s.ws(), "two.txt"), "two\n", "the workspace was moved");
    s.b.run(&["run"]).code(0);
    assert_eq!(completed(&s.b), ["01.1", "01.2"]);
    assert_eq!(
        subjects(&s.ws(), "HEAD"),
        ["01.2 01.2-two", "01.1 01.1-one", "orchestrator: baseline"]
    );
    nothing_left(&s);
}

#[test]
fn ctrl_c_while_an_accepted_attempt_waits_for_its_turn_journals_it_and_exits_130() {
    let s = Scenario::new(
        &[
            (
                "one",
                "echo one > one.txt\n[ -e \"$T/go\" ] || sleep 600",
                "",
            ),
            ("two", "echo two > two.txt", "test -f two.txt"),
        ],
        JOBS,
    );
    let mut runner = Running::foreground(s.b.command(&["run"]));
    // 01.2 is accepted in its worktree (its commit kept) and waits for 01.1 to merge.
    let waiting = eventually(Duration::from_secs(60), || {
        std::process::Command::new("git")
            .arg("-C")
            .arg(s.ws())
            .args(["for-each-ref", "refs/orchestrator/worktrees/"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("01.2-attempt-1"))
    });
    assert!(waiting, "01.2 reached its turn");
    runner.ctrl_c();
    runner.wait().code(130);
    assert_eq!(
        outcomes(&s, "01.2"),
        [(1, "interrupted".to_string())],
        "the accepted attempt's account is journaled, not left for the next run to guess"
    );
    std::fs::write(s.state("go"), "").expect("go");
    s.b.run(&["run"]).code(0);
    assert_eq!(completed(&s.b), ["01.1", "01.2"]);
    nothing_left(&s);
}

#[test]
fn what_a_failed_attempt_installed_in_the_shared_virtualenv_names_the_workspace_after_it() {
    let s = Scenario::new(
        &[
            (
                "one",
                "python3 -m venv --without-pip .venv",
                "test -x .venv/bin/python",
            ),
            (
                "two",
                "sp=$(echo .venv/lib/python3*/site-packages)\necho \"$PWD/src\" > \"$sp/_failed.pth\"",
                "false",
            ),
            ("three", "echo three > three.txt", ""),
        ],
        JOBS,
    );
    after_the_first(&s);
    s.b.run(&["run"]).code(1);
    let ws = s.ws();
    let site = std::fs::read_dir(ws.join(".venv/lib"))
        .expect("lib")
        .flatten()
        .map(|e| e.path().join("site-packages/_failed.pth"))
        .find(|p| p.exists())
        .expect("the failed attempt's .pth");
    let named = std::fs::read_to_string(site).expect("read");
    let ws_path = ws.canonicalize().expect("workspace").display().to_string();
    assert_eq!(
        named.trim(),
        format!("{ws_path}/src"),
        "not the gone worktree"
    );
}

#[test]
fn after_a_crash_in_a_merge_an_ignored_file_the_user_added_is_refused_by_name_not_deleted() {
    let s = Scenario::new(
        &[
            (
                "one",
                "printf '*.log\\n' > .gitignore\necho one > one.txt",
                "",
            ),
            ("two", "echo two > two.txt", ""),
        ],
        JOBS,
    );
    s.b.run(&["run"]).code(0);
    cut_after_the_merge_of(&s, "01.2");
    let mine = s.ws().join("mine.log");
    std::fs::write(&mine, "the user's\n").expect("write");
    s.b.run(&["run"])
        .code(2)
        .stderr_has("mine.log")
        .stderr_has("changes the runner did not make");
    assert_eq!(
        std::fs::read_to_string(&mine).expect("kept"),
        "the user's\n"
    );
}
