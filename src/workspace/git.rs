//! `git`, run as a program (as pitboss and Codex do, rather than reimplemented), pinned to
//! the workspace's repository: `--git-dir` and `--work-tree` always given, so a deleted or
//! replaced `.git` is an error and never a walk up into an enclosing repository; `GIT_*`
//! and every other variable of the runner's environment dropped (PATH, HOME and the locale
//! kept, for the user's identity and git's own config), so no `GIT_DIR` or
//! `GIT_INDEX_FILE` sends a snapshot elsewhere and nothing an agent configured sees a
//! secret; hooks and fsmonitor off, automatic gc off (a runner's commits never start a
//! `gc` that outlives it), no signing prompt. Each call runs in a process group of its own
//! (Ctrl-C reaches the runner, which decides), dies with the runner, and is killed after
//! [`TIMEOUT`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::process::{Ended, Keep, scrubbed_env, spawn_in_group, talk};

/// The longest one git command may take (a first snapshot of a large tree).
const TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The most a git command's output may be (a listing of a very large tree).
const MAX_OUTPUT: usize = 256 * 1024 * 1024;

/// Settings every call gets, whatever the repository's config says.
const PINNED: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.quotePath=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "advice.addEmbeddedRepo=false",
    "advice.addIgnoredFile=false",
];

/// The runner's identity, for a repository that has none.
const IDENTITY: [&str; 2] = [
    "user.name=orchestrator",
    "user.email=orchestrator@localhost",
];

/// A git command that failed: what it was and what it said.
#[derive(Debug, Clone)]
pub(crate) struct GitError {
    pub(crate) command: String,
    pub(crate) message: String,
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`git {}` failed: {}", self.command, self.message)
    }
}

/// Git, pinned to one repository and work tree.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    git_dir: PathBuf,
    work_tree: PathBuf,
    /// The runner's identity is given (the repository has none of its own).
    identity: bool,
}

impl Git {
    pub(crate) fn new(git_dir: PathBuf, work_tree: PathBuf) -> Git {
        Git {
            git_dir,
            work_tree,
            identity: false,
        }
    }

    pub(crate) fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    pub(crate) fn use_own_identity(&mut self) {
        self.identity = true;
    }

    /// Runs `git args`; its stdout.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let out = self.run_with(args, None, b"").await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// A git command whose failure is an answer (no, not there): its output, or `None`.
    pub(crate) async fn maybe(&self, args: &[&str]) -> Option<String> {
        self.run(args).await.ok()
    }

    /// Runs `git args` with `input` on stdin and, if given, an index file of its own.
    pub(crate) async fn run_with(
        &self,
        args: &[&str],
        index: Option<&Path>,
        input: &[u8],
    ) -> Result<Vec<u8>, GitError> {
        self.run_allowing(args, index, input, 0).await
    }

    /// The same git, pinned to a linked worktree of the repository (`git_dir` its
    /// administrative folder under the repository's `worktrees/`).
    pub(crate) fn for_worktree(&self, git_dir: PathBuf, work_tree: PathBuf) -> Git {
        Git {
            git_dir,
            work_tree,
            identity: self.identity,
        }
    }

    /// `theirs` merged onto `ours` from `base`, three ways, without touching any work tree
    /// or index (`git merge-tree --write-tree`, git 2.40 or later): the merged tree, or the
    /// files that conflict.
    pub(crate) async fn merge_tree(
        &self,
        base: &str,
        ours: &str,
        theirs: &str,
    ) -> Result<Result<String, Vec<String>>, GitError> {
        let merge_base = format!("--merge-base={base}");
        let args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "-z",
            "--no-messages",
            &merge_base,
            ours,
            theirs,
        ];
        // Exit 1: the merge conflicts; the tree comes first, then the conflicted names.
        let out = self.run_allowing(&args, None, b"", 1).await?;
        let mut fields = nul_separated(&out).into_iter();
        let tree = fields.next().unwrap_or_default();
        let conflicted: Vec<String> = fields.filter(|f| !f.is_empty()).collect();
        if conflicted.is_empty() {
            Ok(Ok(tree))
        } else {
            Ok(Err(conflicted))
        }
    }

    /// Which of `paths` (relative to the work tree) git ignores now.
    pub(crate) async fn ignored(&self, paths: &[String]) -> Result<Vec<String>, GitError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::new();
        for p in paths {
            input.extend_from_slice(p.as_bytes());
            input.push(0);
        }
        // Exit 1: none of them is ignored.
        let out = self
            .run_allowing(&["check-ignore", "-z", "--stdin"], None, &input, 1)
            .await?;
        Ok(nul_separated(&out))
    }

    /// [`Git::run_with`], where exit status `also_ok` (when not 0) is an answer too.
    async fn run_allowing(
        &self,
        args: &[&str],
        index: Option<&Path>,
        input: &[u8],
        also_ok: i32,
    ) -> Result<Vec<u8>, GitError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg(format!("--git-dir={}", self.git_dir.display()))
            .arg(format!("--work-tree={}", self.work_tree.display()));
        for setting in PINNED {
            cmd.arg("-c").arg(setting);
        }
        if self.identity {
            for setting in IDENTITY {
                cmd.arg("-c").arg(setting);
            }
        }
        cmd.args(args)
            .current_dir(&self.work_tree)
            .env_clear()
            .envs(scrubbed_env(&["XDG_CONFIG_HOME".to_string()], &[]))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("LC_ALL", "C")
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(index) = index {
            cmd.env("GIT_INDEX_FILE", index);
        }
        let failed = |message: String| GitError {
            command: shown(args),
            message,
        };
        let (mut child, _group) =
            spawn_in_group(&mut cmd).map_err(|e| failed(format!("cannot run git: {e}")))?;
        let (ended, out, err) = talk(&mut child, input, TIMEOUT, Keep::All(MAX_OUTPUT)).await;
        match ended {
            Ended::Exited(Ok(status)) if status.success() || status.code() == Some(also_ok) => {
                Ok(out)
            }
            Ended::Exited(Ok(status)) => Err(failed(format!(
                "{status}: {}",
                String::from_utf8_lossy(&err).trim()
            ))),
            Ended::Exited(Err(e)) => Err(failed(format!("waiting for git: {e}"))),
            Ended::TimedOut | Ended::Idle => Err(failed(format!(
                "it did not finish within {} and was killed",
                humantime::format_duration(TIMEOUT)
            ))),
            Ended::TooLarge => Err(failed(format!(
                "it printed over {} MiB",
                MAX_OUTPUT / (1024 * 1024)
            ))),
        }
    }
}

/// A command as a message shows it: long argument lists cut.
/// The names in git's `-z` output (each ended by a NUL).
pub(crate) fn nul_separated(out: &[u8]) -> Vec<String> {
    out.split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

fn shown(args: &[&str]) -> String {
    let mut text = args.iter().take(8).copied().collect::<Vec<_>>().join(" ");
    if args.len() > 8 {
        text.push_str(" …");
    }
    text
}

/// Whether `git` can be run at all.
pub(crate) async fn available() -> bool {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd.status().await.is_ok_and(|s| s.success())
}

/// Creates a repository in `dir` (`git init`, with no work tree recorded in its config);
/// its git folder.
pub(crate) async fn init(dir: &Path) -> Result<PathBuf, GitError> {
    unpinned(dir, &["init", "--quiet", "."]).await?;
    Ok(dir.join(".git"))
}

/// The repository whose work tree is exactly `dir` (its `.git`, a folder or a `gitdir:`
/// file), never one found by walking up; `None` when `dir` has no `.git` of its own.
pub(crate) async fn find(dir: &Path) -> Result<Option<PathBuf>, GitError> {
    if std::fs::symlink_metadata(dir.join(".git")).is_err() {
        return Ok(None);
    }
    let out = unpinned(dir, &["rev-parse", "--absolute-git-dir"]).await?;
    Ok(Some(PathBuf::from(String::from_utf8_lossy(&out).trim())))
}

/// `git args` in `dir` before a repository is pinned: the scrubbed environment, and no
/// walk above `dir` (`GIT_CEILING_DIRECTORIES`); its stdout.
async fn unpinned(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env_clear()
        .envs(scrubbed_env(&["XDG_CONFIG_HOME".to_string()], &[]))
        .env("LC_ALL", "C")
        .env(
            "GIT_CEILING_DIRECTORIES",
            dir.parent().unwrap_or(Path::new("/")),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let failed = |message: String| GitError {
        command: shown(args),
        message,
    };
    let out = cmd
        .output()
        .await
        .map_err(|e| failed(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(out.stdout)
}
