//! The folder an agent builds in (README, "Agent builds"): its working directory, where
//! checks run, and, with `[workspace].git` (the default once `dir` is set), a git
//! repository the runner snapshots: a commit per accepted prompt, and every attempt started
//! from the last accepted commit (`git reset --hard` and `git clean -fd`: ignored files such
//! as a venv stay), so that a retry never builds on a failed attempt's debris.
//!
//! The runner's own files (the config, the prompts, `checkpoints/`) are never snapshotted
//! or reset: when the workspace holds them, they go into `.git/info/exclude` before
//! anything else, and a repository that tracks them is refused. `git` is run as a program,
//! as pitboss and Codex do, rather than reimplemented.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Config;
use crate::error::{Error, Result};

/// Where replaced commits are kept reachable.
pub(crate) const KEPT_REFS: &str = "refs/orchestrator";

pub(crate) struct Workspace {
    dir: PathBuf,
    snapshots: bool,
    /// `-c user.name=… -c user.email=…` when the repository has no identity of its own.
    identity: Vec<String>,
}

impl Workspace {
    /// The workspace `config` describes, created if missing; `None` when there is none.
    /// `protect`: the runner's own files and folders.
    pub(crate) fn open(config: &Config, protect: &[&Path]) -> Result<Option<Workspace>> {
        let Some(dir) = &config.workspace.dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut ws = Workspace {
            dir: dir.clone(),
            snapshots: config.workspace.snapshots(),
            identity: Vec::new(),
        };
        if ws.snapshots {
            ws.init(protect)?;
        }
        Ok(Some(ws))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether attempts are snapshotted and restored with git.
    pub(crate) fn snapshots(&self) -> bool {
        self.snapshots
    }

    fn init(&mut self, protect: &[&Path]) -> Result<()> {
        let version = Command::new("git").arg("--version").output();
        if !version.is_ok_and(|o| o.status.success()) {
            return Err(Error::Workspace {
                dir: self.dir.clone(),
                message: "`workspace.git` is on (the default once workspace.dir is set) but the `git` program cannot be run; install git, or set workspace.git = false".into(),
            });
        }
        let top = self.git_maybe(&["rev-parse", "--show-toplevel"]);
        let ours = top.is_some_and(|t| same_dir(Path::new(t.trim()), &self.dir));
        if !ours {
            self.git(&["init", "--quiet"])?;
        }
        let email = self
            .git_maybe(&["config", "user.email"])
            .unwrap_or_default();
        if email.trim().is_empty() {
            self.identity = [
                "-c",
                "user.name=orchestrator",
                "-c",
                "user.email=orchestrator@localhost",
            ]
            .map(String::from)
            .to_vec();
        }
        self.exclude(protect)
    }

    /// Puts the runner's files that lie inside the workspace into `.git/info/exclude`;
    /// refuses a repository that tracks one (a reset would change it).
    fn exclude(&self, protect: &[&Path]) -> Result<()> {
        let mut lines = Vec::new();
        for path in protect {
            let Ok(abs) = std::path::absolute(path) else {
                continue;
            };
            let Ok(rel) = abs.strip_prefix(&self.dir) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            let rel = rel.to_string_lossy().replace('\\', "/");
            if self
                .git_maybe(&["ls-files", "--error-unmatch", "--", &rel])
                .is_some()
            {
                return Err(Error::Workspace {
                    dir: self.dir.clone(),
                    message: format!(
                        "`{rel}` is the runner's own and is tracked by the workspace's git repository: every attempt would reset it. Give [workspace].dir a folder of its own (such as \"build\"), or untrack it (`git rm --cached {rel}`)"
                    ),
                });
            }
            lines.push(format!("/{rel}"));
        }
        if lines.is_empty() {
            return Ok(());
        }
        let exclude = self.git(&["rev-parse", "--git-path", "info/exclude"])?;
        let exclude = self.dir.join(exclude.trim());
        let mut text = std::fs::read_to_string(&exclude).unwrap_or_default();
        let missing: Vec<&String> = lines
            .iter()
            .filter(|l| !text.lines().any(|have| have.trim() == l.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# orchestrator's own files: never snapshotted, never reset\n");
        for l in missing {
            text.push_str(l);
            text.push('\n');
        }
        if let Some(parent) = exclude.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&exclude, text).map_err(|e| Error::io(&exclude, e))
    }

    /// Files that differ from the last commit (changed, added, deleted, untracked), as
    /// `git status` names them; ignored files are not changes.
    pub(crate) fn changes(&self) -> Result<Vec<String>> {
        let out = self.git(&["status", "--porcelain", "--untracked-files=all", "-z"])?;
        Ok(out
            .split('\0')
            .filter(|e| e.len() > 3)
            .map(|e| e[3..].to_string())
            .collect())
    }

    /// The commit checked out, if there is one yet.
    pub(crate) fn head(&self) -> Option<String> {
        self.git_maybe(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
            .map(|s| s.trim().to_string())
    }

    /// Commits everything in the workspace (`git add -A`, `.gitignore` respected), even if
    /// nothing changed; the commit's id.
    pub(crate) fn commit(&self, message: &str) -> Result<String> {
        self.git(&["add", "-A"])?;
        let mut args: Vec<&str> = self.identity.iter().map(String::as_str).collect();
        args.extend([
            "commit",
            "--quiet",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ]);
        self.git(&args)?;
        self.head().ok_or_else(|| Error::Git {
            dir: self.dir.clone(),
            message: "git commit left no HEAD".into(),
        })
    }

    /// Puts the workspace back to `commit` (tracked files reset, untracked ones removed,
    /// ignored ones kept); the files that were discarded.
    pub(crate) fn restore(&self, commit: &str) -> Result<Vec<String>> {
        let discarded = self.changes()?;
        self.git(&["reset", "--quiet", "--hard", commit])?;
        self.git(&["clean", "--quiet", "-fd"])?;
        Ok(discarded)
    }

    /// The whole working tree as `git add -A` sees it (uncommitted and untracked files
    /// too), as a commit on top of HEAD, without touching HEAD or the index: what a failed
    /// attempt left, kept before a restore discards it. HEAD itself when nothing changed.
    pub(crate) fn snapshot(&self, message: &str) -> Result<Option<String>> {
        let head = self.head();
        if self.changes()?.is_empty() {
            return Ok(head);
        }
        let index = self.git(&["rev-parse", "--git-path", "orchestrator-index"])?;
        let index = self.dir.join(index.trim());
        let _ = std::fs::remove_file(&index);
        let tree = self
            .git_with_index(&index, &["add", "-A"])
            .and_then(|_| self.git_with_index(&index, &["write-tree"]));
        let _ = std::fs::remove_file(&index);
        let tree = tree?;
        let mut args: Vec<&str> = self.identity.iter().map(String::as_str).collect();
        args.extend(["commit-tree", tree.trim(), "-m", message]);
        if let Some(h) = &head {
            args.extend(["-p", h]);
        }
        Ok(Some(self.git(&args)?.trim().to_string()))
    }

    /// Keeps `commit` reachable as `refs/orchestrator/<name>`; the ref's name.
    pub(crate) fn keep(&self, commit: &str, name: &str) -> Result<String> {
        let name = format!("{KEPT_REFS}/{name}");
        self.git(&["update-ref", &name, commit])?;
        Ok(name)
    }

    /// Whether `ancestor` is `descendant` or in its history.
    pub(crate) fn contains(&self, descendant: &str, ancestor: &str) -> bool {
        self.git_maybe(&["merge-base", "--is-ancestor", ancestor, descendant])
            .is_some()
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        self.run_git(Command::new("git").args(args), args)
    }

    /// `git` with an index file of its own (`GIT_INDEX_FILE`).
    fn git_with_index(&self, index: &Path, args: &[&str]) -> Result<String> {
        self.run_git(
            Command::new("git").env("GIT_INDEX_FILE", index).args(args),
            args,
        )
    }

    fn run_git(&self, command: &mut Command, args: &[&str]) -> Result<String> {
        let out = command
            .current_dir(&self.dir)
            .output()
            .map_err(|e| Error::Git {
                dir: self.dir.clone(),
                message: format!("cannot run git: {e}"),
            })?;
        if !out.status.success() {
            return Err(Error::Git {
                dir: self.dir.clone(),
                message: format!(
                    "`git {}` failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A git command whose failure is an answer (no, not there): its output, or `None`.
    fn git_maybe(&self, args: &[&str]) -> Option<String> {
        self.git(args).ok()
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(dir: &Path, protect: &[&Path]) -> Workspace {
        let config = Config::parse(
            &format!("[workspace]\ndir = {:?}\n", dir.display().to_string()),
            Path::new("config.toml"),
        )
        .expect("config");
        Workspace::open(&config, protect)
            .expect("opens")
            .expect("a workspace")
    }

    #[test]
    fn commits_restore_and_keep() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("build");
        let ws = workspace(&dir, &[]);
        assert_eq!(ws.head(), None);
        let base = ws.commit("baseline").expect("commit");
        std::fs::write(dir.join("a.txt"), "a").expect("write");
        assert_eq!(ws.changes().expect("changes"), ["a.txt"]);
        let first = ws.commit("01 first").expect("commit");
        assert!(ws.contains(&first, &base));
        std::fs::write(dir.join("debris.txt"), "x").expect("write");
        std::fs::write(dir.join("a.txt"), "changed").expect("write");
        let discarded = ws.restore(&first).expect("restore");
        assert_eq!(discarded.len(), 2, "{discarded:?}");
        assert!(!dir.join("debris.txt").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("a.txt")).expect("read"),
            "a"
        );
        let kept = ws.keep(&first, "replaced/1").expect("keep");
        assert_eq!(kept, "refs/orchestrator/replaced/1");
        ws.restore(&base).expect("restore");
        assert!(!dir.join("a.txt").exists());
        assert!(
            ws.git_maybe(&["cat-file", "-e", &first]).is_some(),
            "still reachable"
        );
    }

    #[test]
    fn the_runners_own_files_are_excluded_and_survive_a_restore() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::write(dir.join("config.toml"), "").expect("write");
        std::fs::create_dir_all(dir.join("checkpoints")).expect("mkdir");
        std::fs::write(dir.join("checkpoints/journal.jsonl"), "{}").expect("write");
        let ws = workspace(dir, &[&dir.join("config.toml"), &dir.join("checkpoints")]);
        let base = ws.commit("baseline").expect("commit");
        assert!(ws.changes().expect("changes").is_empty());
        std::fs::write(dir.join("built.txt"), "x").expect("write");
        ws.restore(&base).expect("restore");
        assert!(!dir.join("built.txt").exists());
        assert!(dir.join("config.toml").exists());
        assert!(dir.join("checkpoints/journal.jsonl").exists());
    }

    #[test]
    fn a_repository_that_tracks_a_runner_file_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::write(dir.join("config.toml"), "").expect("write");
        let ws = workspace(dir, &[]);
        ws.commit("tracks config.toml").expect("commit");
        let config = Config::parse(
            &format!("[workspace]\ndir = {:?}\n", dir.display().to_string()),
            Path::new("config.toml"),
        )
        .expect("config");
        let err = Workspace::open(&config, &[&dir.join("config.toml")])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("config.toml"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
