//! The workspace boundary (issue 17) as a property: whatever an agent does in the
//! workspace, the runner never touches what it does not own. `boundary.rs` pins one
//! reproduction per test; here random agents are driven through the real binary, because
//! the boundary's failures come from combinations (a whitelist `.gitignore` and then
//! `git stash -u`, `git add -f -A .` and then a reset, a reset in the attempt the run halts
//! on) that no list of hand-written cases covers.
//!
//! Each case is a build of three prompts run by the scripted agent
//! (`tests/support/scripted_agent.py`), each prompt's `## Execute` block 1 to 4 random
//! actions (files written, appended to, deleted; empty folders; `.gitignore`s of three
//! kinds; nested repositories with and without a commit; branch switches, resets, commits,
//! forced adds, stashes; a virtualenv), and each prompt's `## Validation` check passing or
//! failing per call from a random plan (two attempts a prompt, so that some prompts fail
//! and the run halts). The workspace is either `build/`, an existing repository inside
//! another one (the user's, with a staged file), or the build's own folder (so that the
//! runner's config, prompts and checkpoints lie inside the workspace), in both cases with
//! the user's branch `feature` next to the session's `main`. After `orchestrator run`,
//! whatever its exit code:
//! 1. the user's refs are where they were: the enclosing repository's HEAD, refs and
//!    staged file, and `feature` (which an agent may move itself, with `git checkout
//!    feature` and a commit or a reset: its reflog tells those moves from the runner's);
//! 2. every prompt status.json lists as completed is committed exactly once on the
//!    session's branch, and no other prompt is;
//! 3. no commit the runner keeps (the session's branch, `refs/orchestrator/`) holds the
//!    runner's files;
//! 4. the journal still parses, and holds a `completed` event for every completed prompt.

use std::fmt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::support::{Build, git, journal, repo, status_json, strings, user_repo};

/// The prompts' names: `01.1-one`, `01.2-two`, `01.3-three`.
const PROMPTS: [&str; 3] = ["one", "two", "three"];
/// Files an agent writes, appends to or deletes (`user.txt` is the user's, tracked).
const FILES: [&str; 6] = [
    "a.txt",
    "b.json",
    "notes.log",
    "src/c.py",
    "src/deep/d.toml",
    "user.txt",
];
const FOLDERS: [&str; 2] = ["empty", "data/empty"];
/// Where a `.gitignore` goes.
const IGNORE_DIRS: [&str; 2] = ["", "src/"];
/// How many attempts a prompt gets (`retry.max_attempts`).
const ATTEMPTS: usize = 2;

/// Where the agent builds.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `build/`, the user's repository, inside the build folder, itself the user's
    /// repository with a staged, uncommitted file.
    NestedInTheUsersRepository,
    /// `"."`: the build's own folder, the user's repository, with the runner's files in it.
    TheBuildFolder,
}

#[derive(Clone, Copy, Debug)]
enum Ignore {
    /// `*` and back in `*.json`, `*.jsonl`, `*.toml` and folders.
    Whitelist,
    Everything,
    Logs,
}

/// One thing the agent does (a line of its `## Execute` block).
#[derive(Clone, Copy)]
enum Action {
    Write(&'static str),
    Append(&'static str),
    Delete(&'static str),
    EmptyFolder(&'static str),
    Gitignore(Ignore, &'static str),
    NestedRepository { committed: bool },
    CheckoutFeature,
    NewBranch,
    ResetHard,
    CommitAll,
    AddForce,
    Stash,
    Virtualenv,
}

/// An action is shown as the line it runs.
impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shell())
    }
}

impl Action {
    fn shell(self) -> String {
        let mkdir_for = |file: &str| match file.rsplit_once('/') {
            Some((dir, _)) => format!("mkdir -p {dir} && "),
            None => String::new(),
        };
        match self {
            Action::Write(f) => format!("{}echo written > {f}", mkdir_for(f)),
            Action::Append(f) => format!("if [ -f {f} ]; then echo appended >> {f}; fi"),
            Action::Delete(f) => format!("rm -f {f}"),
            Action::EmptyFolder(d) => format!("mkdir -p {d}"),
            Action::Gitignore(kind, dir) => {
                let lines = match kind {
                    Ignore::Whitelist => "*\\n!*.json\\n!*.jsonl\\n!*.toml\\n!*/\\n",
                    Ignore::Everything => "*\\n",
                    Ignore::Logs => "*.log\\n",
                };
                let file = format!("{dir}.gitignore");
                format!("{}printf '{lines}' > {file}", mkdir_for(&file))
            }
            Action::NestedRepository { committed: true } => "git init -q nested && git -C nested -c user.name=a -c user.email=a@b commit -q --allow-empty -m n".into(),
            Action::NestedRepository { committed: false } => "git init -q empty-repo".into(),
            Action::CheckoutFeature => "git checkout -q feature".into(),
            Action::NewBranch => "git checkout -q -b agent-branch".into(),
            Action::ResetHard => "git reset -q --hard HEAD~1 || true".into(),
            Action::CommitAll => "git -c user.name=a -c user.email=a@b commit -qam wip || true".into(),
            Action::AddForce => "git add -f -A . || true".into(),
            Action::Stash => "git stash -q -u || true".into(),
            Action::Virtualenv => "mkdir -p venv/lib && echo v > venv/lib/x.py".into(),
        }
    }
}

/// A prompt: what its agent does on every attempt, and whether its check's 1st, 2nd...
/// call passes (a call past the plan fails).
#[derive(Clone, Debug)]
struct PromptPlan {
    actions: Vec<Action>,
    checks: Vec<bool>,
}

impl PromptPlan {
    fn execute(&self) -> String {
        let lines: Vec<String> = self.actions.iter().map(|a| a.shell()).collect();
        lines.join("\n")
    }

    /// A check that counts its calls in `$T` and passes or fails as planned.
    fn validation(&self, id: &str) -> String {
        let mut arms: Vec<String> = self
            .checks
            .iter()
            .enumerate()
            .map(|(i, pass)| format!("{}) exit {};;", i + 1, if *pass { 0 } else { 1 }))
            .collect();
        arms.push("*) exit 1;;".into());
        format!(
            "n=$(cat \"$T/checks-{id}\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$T/checks-{id}\"\ncase $n in {} esac",
            arms.join(" ")
        )
    }
}

#[derive(Clone)]
struct Case {
    shape: Shape,
    prompts: Vec<PromptPlan>,
}

/// A case as a reproduction: the shape, then each prompt's Execute block and check plan.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?}", self.shape)?;
        for (i, p) in self.prompts.iter().enumerate() {
            writeln!(f, "  {} (check calls pass: {:?}):", stem(i), p.checks)?;
            for line in p.execute().lines() {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

fn id(i: usize) -> String {
    format!("01.{}", i + 1)
}

fn stem(i: usize) -> String {
    format!("{}-{}", id(i), PROMPTS[i])
}

// ---- Generation ---------------------------------------------------------------------------

fn any_action() -> impl Strategy<Value = Action> {
    let file = || prop::sample::select(&FILES[..]);
    let ignore = prop_oneof![
        Just(Ignore::Whitelist),
        Just(Ignore::Everything),
        Just(Ignore::Logs)
    ];
    prop_oneof![
        3 => file().prop_map(Action::Write),
        1 => file().prop_map(Action::Append),
        1 => file().prop_map(Action::Delete),
        1 => prop::sample::select(&FOLDERS[..]).prop_map(Action::EmptyFolder),
        2 => (ignore, prop::sample::select(&IGNORE_DIRS[..]))
            .prop_map(|(kind, dir)| Action::Gitignore(kind, dir)),
        1 => any::<bool>().prop_map(|committed| Action::NestedRepository { committed }),
        1 => Just(Action::CheckoutFeature),
        1 => Just(Action::NewBranch),
        1 => Just(Action::ResetHard),
        1 => Just(Action::CommitAll),
        1 => Just(Action::AddForce),
        1 => Just(Action::Stash),
        1 => Just(Action::Virtualenv),
    ]
}

fn any_prompt() -> impl Strategy<Value = PromptPlan> {
    (
        prop::collection::vec(any_action(), 1..=4),
        prop::collection::vec(any::<bool>(), ATTEMPTS),
    )
        .prop_map(|(actions, checks)| PromptPlan { actions, checks })
}

fn any_case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(Shape::NestedInTheUsersRepository),
            Just(Shape::TheBuildFolder)
        ],
        prop::collection::vec(any_prompt(), PROMPTS.len()),
    )
        .prop_map(|(shape, prompts)| Case { shape, prompts })
}

// ---- The build and the user's repositories ------------------------------------------------

/// The case's build (as `boundary.rs`'s `Scenario` lays one out) and its `$T`.
fn agent_build(case: &Case) -> (Build, tempfile::TempDir) {
    let mut b = Build::new();
    let state = tempfile::tempdir().expect("state dir");
    for (i, p) in case.prompts.iter().enumerate() {
        let stem = stem(i);
        b.file(
            &format!("prompts/01-a/{stem}.md"),
            format!(
                "# {stem}\n\n## Execute\n```bash\n{}\n```\n\n## Validation\n```bash\n{}\n```\n\n## Checkpoint\n```json\n{{\"prompt\": \"{stem}\", \"success\": true, \"outputs\": {{}}}}\n```\n",
                p.execute(),
                p.validation(&id(i))
            ),
        );
    }
    let workspace = match case.shape {
        Shape::NestedInTheUsersRepository => "build",
        Shape::TheBuildFolder => ".",
    };
    let agent = repo().join("tests/support/scripted_agent.py");
    b.config(&format!(
        "[llm]\nprovider = \"command\"\ncommand = [{:?}]\nenv = [\"T\", \"SCRIPTED_AGENT_LOG\"]\ntimeout = \"60s\"\n[retry]\nmax_attempts = {ATTEMPTS}\ninitial_delay = \"10ms\"\nmax_delay = \"50ms\"\n[workspace]\ndir = {workspace:?}\n[verify]\nfrom_prompt = true\nenv = [\"T\"]\n[[phases]]\ndir = \"01-a\"\nname = \"A\"\n",
        agent.display().to_string()
    ));
    let t = state.path().display().to_string();
    b.env("T", &t);
    b.env("SCRIPTED_AGENT_LOG", &format!("{t}/agent.log"));
    (b, state)
}

/// The user's repository as the workspace: `main` checked out, `feature` a commit ahead,
/// clean.
fn user_repo_with_feature(dir: &Path) {
    user_repo(dir, "user.txt");
    git(dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("feature.txt"), "feature\n").expect("write");
    git(dir, &["add", "feature.txt"]);
    git(dir, &["commit", "-q", "-m", "the user's feature"]);
    git(dir, &["checkout", "-q", "main"]);
}

/// What of the user's must not change: the enclosing repository's HEAD, refs and staged
/// files; and `feature` in the workspace's repository, which an agent can move itself (it
/// runs git there: `git checkout feature` and a commit or a reset) but the runner never
/// does. Its reflog tells them apart: an agent's moves are logged as its commands
/// (`commit: wip`, `reset: moving to HEAD~1`), the runner's restores as `reset: moving to
/// <commit>`, on the session's branch alone.
#[derive(Debug)]
struct UsersRefs {
    feature: String,
    /// `feature`'s reflog, newest first.
    feature_moves: Vec<String>,
    enclosing: Option<String>,
}

/// How the agent's own commands (`Action::CommitAll`, `Action::ResetHard`) are logged.
fn an_agents_move(reflog_line: &str) -> bool {
    reflog_line == "commit: wip" || reflog_line == "reset: moving to HEAD~1"
}

impl UsersRefs {
    fn read(b: &Build, ws: &Path, shape: Shape) -> UsersRefs {
        let enclosing = match shape {
            Shape::TheBuildFolder => None,
            Shape::NestedInTheUsersRepository => {
                let user = b.path();
                Some(format!(
                    "HEAD {}{}refs:\n{}staged:\n{}",
                    git(user, &["symbolic-ref", "HEAD"]),
                    git(user, &["rev-parse", "HEAD"]),
                    git(user, &["for-each-ref"]),
                    git(user, &["diff", "--cached", "--name-only"])
                ))
            }
        };
        UsersRefs {
            feature: git(ws, &["rev-parse", "feature"]),
            feature_moves: git(
                ws,
                &["reflog", "show", "--format=%gs", "refs/heads/feature"],
            )
            .lines()
            .map(str::to_string)
            .collect(),
            enclosing,
        }
    }

    /// `feature`'s moves since `before`, newest first.
    fn feature_moves_since(&self, before: &UsersRefs) -> Vec<String> {
        let new = self
            .feature_moves
            .len()
            .saturating_sub(before.feature_moves.len());
        self.feature_moves[..new].to_vec()
    }
}

/// The user's repositories for `shape`; the workspace.
fn lay_out_the_users_repositories(b: &Build, shape: Shape) -> PathBuf {
    match shape {
        Shape::NestedInTheUsersRepository => {
            let user = b.path();
            user_repo(user, "README.md");
            std::fs::write(user.join("staged.txt"), "staged, not committed\n").expect("write");
            git(user, &["add", "staged.txt"]);
            let ws = user.join("build");
            user_repo_with_feature(&ws);
            ws
        }
        Shape::TheBuildFolder => {
            user_repo_with_feature(b.path());
            b.path().to_path_buf()
        }
    }
}

// ---- The property -------------------------------------------------------------------------

/// Lays out `case`, runs it, and checks the four invariants and `orchestrator status`.
fn run_and_check(case: &Case) -> Result<(), TestCaseError> {
    let (b, _state) = agent_build(case);
    let ws = lay_out_the_users_repositories(&b, case.shape);
    let before = UsersRefs::read(&b, &ws, case.shape);

    let run = b.run(&["run"]);
    run.no_panic();
    let said = format!("\n--- the run's stderr (exit {})\n{}", run.code, run.stderr);
    prop_assert!(
        matches!(run.code, 0..=2),
        "an exit code of 0, 1 or 2{}",
        said
    );

    the_users_refs_are_where_they_were(&before, &UsersRefs::read(&b, &ws, case.shape), &said)?;
    each_completed_prompt_is_committed_once(&b, &ws, &said)?;
    the_runners_files_are_in_no_commit(&ws, &said)?;
    the_journal_holds_every_completion(&b, &said)?;

    b.run(&["status"]).no_panic();
    Ok(())
}

/// 1. The enclosing repository as it was; `feature` moved by the agent's own commands
///    alone (see [`UsersRefs`]).
fn the_users_refs_are_where_they_were(
    before: &UsersRefs,
    after: &UsersRefs,
    said: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        &after.enclosing,
        &before.enclosing,
        "the enclosing repository changed{}",
        said
    );
    let moves = after.feature_moves_since(before);
    prop_assert!(
        moves.iter().all(|m| an_agents_move(m)),
        "feature was moved by other than the agent's own commands: {:?}{}",
        moves,
        said
    );
    prop_assert!(
        !moves.is_empty() || after.feature == before.feature,
        "feature moved from {} to {} with nothing in its reflog{}",
        before.feature.trim(),
        after.feature.trim(),
        said
    );
    Ok(())
}

/// 2. `<id> <name>` exactly once in the session's branch (`main`) for each prompt
///    status.json lists as completed, and never for another.
fn each_completed_prompt_is_committed_once(
    b: &Build,
    ws: &Path,
    said: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(
        b.path().join("checkpoints/status.json").is_file(),
        "checkpoints/status.json is gone{}",
        said
    );
    let completed = strings(&status_json(b)["completed"]);
    let log = git(ws, &["log", "--format=%s", "main"]);
    for i in 0..PROMPTS.len() {
        let subject = format!("{} {}", id(i), stem(i));
        let commits = log.lines().filter(|l| *l == subject).count();
        let done = completed.contains(&id(i));
        prop_assert_eq!(
            commits,
            usize::from(done),
            "{} is {} in status.json and has {} commit(s) on main:\n{}{}",
            id(i),
            if done { "completed" } else { "not completed" },
            commits,
            log,
            said
        );
    }
    Ok(())
}

/// 3. No commit the runner keeps (the session's branch, `refs/orchestrator/`) lists
///    `config.toml`, `prompts/` or `checkpoints/`. (What an agent commits to refs of its
///    own, its branch or `git stash`, is the agent's; the runner keeps none of it.)
fn the_runners_files_are_in_no_commit(ws: &Path, said: &str) -> Result<(), TestCaseError> {
    let all = git(
        ws,
        &[
            "log",
            "--name-only",
            "--format=%h %s",
            "main",
            "--glob=refs/orchestrator/*",
        ],
    );
    for own in ["config.toml", "prompts/", "checkpoints/"] {
        prop_assert!(
            !all.lines().any(|l| l.starts_with(own)),
            "{} was committed:\n{}\n--- refs\n{}{}",
            own,
            all,
            git(ws, &["for-each-ref"]),
            said
        );
    }
    Ok(())
}

/// 4. The journal is there, every line of it JSON, with a `completed` event for every
///    prompt status.json lists as completed.
fn the_journal_holds_every_completion(b: &Build, said: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        b.path().join("checkpoints/journal.jsonl").is_file(),
        "checkpoints/journal.jsonl is gone{}",
        said
    );
    let journaled: Vec<String> = journal(b)
        .iter()
        .filter(|e| e["event"] == "completed")
        .map(|e| e["id"].as_str().unwrap_or("?").to_string())
        .collect();
    for done in strings(&status_json(b)["completed"]) {
        prop_assert!(
            journaled.contains(&done),
            "{} is completed in status.json but the journal has no completed event for it (it has {:?}){}",
            done,
            journaled,
            said
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_agents_never_touch_what_the_runner_does_not_own(case in any_case()) {
        run_and_check(&case)?;
    }
}
