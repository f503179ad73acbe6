//! The workspace's repository at the level of git commands: staging the work tree (the
//! runner's files and the excludes left out, whatever the `.gitignore`s say), writing trees
//! and commits, reading what git does not keep of a tree ([`Extras`]), the differences
//! between two trees, and the index lines that put chosen paths of one tree into another.
//! Errors are git's ([`GitError`]); [`super::Workspace`] says what they mean for the run.

use std::path::{Path, PathBuf};

use super::git::{Git, GitError, nul_separated};
use super::model::{Extras, Head};
use super::{paths, status};

pub(crate) struct Repo {
    pub(crate) git: Git,
    work_tree: PathBuf,
    /// The runner's own files and folders, relative to the work tree.
    protect: Vec<String>,
    /// Snapshot excludes (gitignore-style patterns).
    excludes: Vec<String>,
}

/// Why the work tree cannot be staged as it is (the attempt's fault, not the run's).
pub(crate) enum Unstageable {
    /// A nested repository with no commit, which git cannot stage.
    NoCommit(String),
}

impl Repo {
    /// The tracked files of `commit` written into `dir` through the private index `index`.
    pub(crate) async fn export(
        &self,
        commit: &str,
        dir: &Path,
        index: &Path,
    ) -> Result<(), GitError> {
        let prefix = format!("--prefix={}/", dir.display());
        self.git
            .run_with(&["read-tree", commit], Some(index), b"")
            .await?;
        self.git
            .run_with(
                &["checkout-index", "--all", "--force", &prefix],
                Some(index),
                b"",
            )
            .await?;
        Ok(())
    }

    pub(crate) fn new(
        git: Git,
        work_tree: PathBuf,
        protect: Vec<String>,
        excludes: Vec<String>,
    ) -> Repo {
        Repo {
            git,
            work_tree,
            protect,
            excludes,
        }
    }

    /// The pathspecs of every status, listing and clean: the work tree but the runner's
    /// files and the excludes.
    pub(crate) fn pathspecs(&self) -> Vec<String> {
        paths::pathspecs(&self.protect, &self.excludes)
    }

    /// `git clean -e` arguments that keep the runner's files, the excludes and `keep`.
    pub(crate) fn clean_keeps(&self, keep: &[String]) -> Vec<String> {
        paths::clean_keeps(&self.protect, &self.excludes, keep)
    }

    /// Stages the whole work tree into `index` (the repository's own when `None`), the
    /// runner's files and the excludes left out, then the runner's files taken out again
    /// whatever staged them. Nested repositories with no commit are left out when
    /// `skip_empty_repos`, else they are the answer.
    pub(crate) async fn stage(
        &self,
        index: Option<&Path>,
        skip_empty_repos: bool,
    ) -> Result<Result<(), Unstageable>, GitError> {
        let ignored = self.git.ignored(&self.protect).await?;
        // `git add` refuses a pathspec that names an ignored path, even to leave it out;
        // an ignored path is not added anyway, nor anything in an ignored folder.
        let protect: Vec<String> = self
            .protect
            .iter()
            .filter(|p| !ignored.contains(p))
            .cloned()
            .collect();
        let mut specs = paths::pathspecs(&protect, &self.excludes);
        let mut left_out: Vec<String> = Vec::new();
        for _ in 0..100 {
            let mut args: Vec<String> = ["add", "-A", "--"].map(String::from).to_vec();
            args.extend(specs.iter().cloned());
            args.extend(left_out.iter().map(|p| format!(":(exclude,literal){p}")));
            let Err(e) = self.git.run_with(&strs(&args), index, b"").await else {
                return self.untrack_protected(index).await.map(Ok);
            };
            if let Some(repo) = no_commit_repository(&e.message) {
                if !skip_empty_repos {
                    return Ok(Err(Unstageable::NoCommit(repo)));
                }
                if left_out.contains(&repo) {
                    return Err(e);
                }
                left_out.push(repo);
                continue;
            }
            let named = ignored_pathspecs(&e.message);
            let before = specs.len();
            specs.retain(|spec| !named.iter().any(|n| names(spec, n)));
            if specs.len() == before {
                return Err(e);
            }
        }
        Err(GitError {
            command: "add -A".into(),
            message: "the work tree could not be staged".into(),
        })
    }

    async fn untrack_protected(&self, index: Option<&Path>) -> Result<(), GitError> {
        if self.protect.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = ["rm", "-r", "--cached", "-q", "--ignore-unmatch", "--"]
            .map(String::from)
            .to_vec();
        args.extend(self.protect.iter().map(|p| format!(":(literal){p}")));
        self.git.run_with(&strs(&args), index, b"").await?;
        Ok(())
    }

    /// The runner's files that `index` (the repository's own when `None`) holds.
    pub(crate) async fn staged_protected(&self) -> Result<Vec<u8>, GitError> {
        if self.protect.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<String> = ["ls-files", "-z", "--"].map(String::from).to_vec();
        args.extend(self.protect.iter().map(|p| format!(":(literal){p}")));
        self.git.run_with(&strs(&args), None, b"").await
    }

    /// Paths that differ from HEAD (changed, added, deleted, untracked), as `git status`
    /// names them; ignored files, the runner's files and the excludes are not changes.
    pub(crate) async fn changes(&self) -> Result<Vec<String>, GitError> {
        let out = self
            .listing(&[
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--no-renames",
            ])
            .await?;
        Ok(status::parse(&out)
            .into_iter()
            .filter(|e| !e.ignored())
            .map(|e| e.path)
            .collect())
    }

    /// `git <args> -- <pathspecs>`: a listing of the work tree but the runner's files and
    /// the excludes.
    async fn listing(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        all.push("--".into());
        all.extend(self.pathspecs());
        self.git.run_with(&strs(&all), None, b"").await
    }

    /// What git does not keep of the work tree as it is: ignored entries (folders whole)
    /// and empty folders, the runner's files and the excludes left out.
    pub(crate) async fn extras(&self) -> Result<Extras, GitError> {
        let out = self
            .listing(&[
                "status",
                "--porcelain=v1",
                "-z",
                "--ignored=traditional",
                "--untracked-files=normal",
                "--no-renames",
            ])
            .await?;
        let mut ignored: Vec<String> = status::parse(&out)
            .into_iter()
            .filter(|e| e.ignored())
            .map(|e| e.path)
            .collect();
        ignored.sort();
        let out = self
            .listing(&[
                "ls-files",
                "-z",
                "--others",
                "--directory",
                "--exclude-standard",
            ])
            .await?;
        let mut empty_dirs = Vec::new();
        for dir in out.split(|&b| b == 0).filter(|p| p.ends_with(b"/")) {
            let dir = String::from_utf8_lossy(dir);
            empty_leaves(&self.work_tree, dir.trim_end_matches('/'), &mut empty_dirs);
        }
        empty_dirs.sort();
        Ok(Extras {
            ignored,
            empty_dirs,
        })
    }

    /// The commit checked out, if there is one yet.
    pub(crate) async fn head(&self) -> Option<String> {
        self.git
            .maybe(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
            .await
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Where HEAD is: on a branch, or detached.
    pub(crate) async fn current_head(&self) -> Head {
        match self.git.maybe(&["symbolic-ref", "-q", "HEAD"]).await {
            Some(b) if !b.trim().is_empty() => Head::Branch(b.trim().to_string()),
            _ => Head::Detached,
        }
    }

    /// The tree `index` holds.
    pub(crate) async fn write_tree(&self, index: Option<&Path>) -> Result<String, GitError> {
        let tree = self.git.run_with(&["write-tree"], index, b"").await?;
        Ok(String::from_utf8_lossy(&tree).trim().to_string())
    }

    pub(crate) async fn commit_tree(
        &self,
        tree: &str,
        parent: Option<&str>,
        message: &str,
    ) -> Result<String, GitError> {
        let mut args = vec!["commit-tree", tree, "-m", message];
        if let Some(p) = parent {
            args.extend(["-p", p]);
        }
        Ok(self.git.run(&args).await?.trim().to_string())
    }

    /// The files that differ between two commits.
    pub(crate) async fn differing(&self, a: &str, b: &str) -> Result<Vec<String>, GitError> {
        let out = self
            .git
            .run_with(
                &["diff-tree", "-r", "-z", "--no-renames", "--name-only", a, b],
                None,
                b"",
            )
            .await?;
        Ok(nul_separated(&out))
    }

    /// `git update-index --index-info` lines that make `paths` of an index what they are
    /// in `commit`'s tree (absent there: removed).
    pub(crate) async fn index_info(
        &self,
        commit: &str,
        paths: &[String],
    ) -> Result<Vec<u8>, GitError> {
        let mut input = Vec::new();
        let mut present = std::collections::HashSet::new();
        for chunk in paths.chunks(1000) {
            let mut args: Vec<String> = ["ls-tree", "-r", "-z", "--full-tree", commit, "--"]
                .map(String::from)
                .to_vec();
            args.extend(chunk.iter().map(|p| format!(":(literal){p}")));
            let out = self.git.run_with(&strs(&args), None, b"").await?;
            for entry in out.split(|&b| b == 0).filter(|e| !e.is_empty()) {
                // `<mode> SP <type> SP <object> TAB <path>`
                let Some(tab) = entry.iter().position(|&b| b == b'\t') else {
                    continue;
                };
                let mut meta = entry[..tab].split(|&b| b == b' ');
                let (Some(mode), Some(_), Some(object)) = (meta.next(), meta.next(), meta.next())
                else {
                    continue;
                };
                present.insert(entry[tab + 1..].to_vec());
                input.extend_from_slice(mode);
                input.push(b' ');
                input.extend_from_slice(object);
                input.push(b'\t');
                input.extend_from_slice(&entry[tab + 1..]);
                input.push(0);
            }
        }
        for path in paths {
            if !present.contains(path.as_bytes()) {
                input.extend_from_slice(b"0 0000000000000000000000000000000000000000\t");
                input.extend_from_slice(path.as_bytes());
                input.push(0);
            }
        }
        Ok(input)
    }

    /// Why the workspace is no longer where the session put it, if it is not: HEAD on
    /// another branch, the session's history rewritten, a merge or rebase in progress.
    pub(crate) async fn moved_away(&self, want: &Head, base: &str) -> Option<String> {
        let repo = self;
        let now = repo.current_head().await;
        if now != *want {
            return Some(format!(
                "the agent left the workspace on {} rather than on {}, where the build is made; the next attempt starts there again, from the last accepted commit (the runner itself moves no other branch)",
                now.shown(),
                want.shown()
            ));
        }
        let kept = match repo.head().await {
            Some(h) => repo
                .git
                .maybe(&["merge-base", "--is-ancestor", base, &h])
                .await
                .is_some(),
            None => false,
        };
        if !kept {
            return Some(format!(
                "the agent rewrote the build's history: the last accepted commit {} is not in HEAD's history (a reset, a rebase or an amend); the accepted commits are kept, and the next attempt starts from that commit",
                &base[..base.len().min(10)]
            ));
        }
        for state in [
            "MERGE_HEAD",
            "CHERRY_PICK_HEAD",
            "REVERT_HEAD",
            "rebase-merge",
            "rebase-apply",
        ] {
            if repo.git.git_dir().join(state).exists() {
                return Some(format!(
                    "the agent left a git operation half done ({state} in the repository); finish or abort it"
                ));
            }
        }
        None
    }
}

/// The nested repository `git add` could not stage (`error: 'sub/' does not have a commit
/// checked out`), if that is why it failed.
pub(crate) fn no_commit_repository(message: &str) -> Option<String> {
    let at = message.find("does not have a commit checked out")?;
    let before = &message[..at];
    let end = before.rfind('\'')?;
    let start = before[..end].rfind('\'')? + 1;
    Some(before[start..end].trim_end_matches('/').to_string())
}

/// The paths `git add` names when it refuses pathspecs that name ignored paths.
fn ignored_pathspecs(message: &str) -> Vec<String> {
    let Some(at) = message.find("ignored by one of your .gitignore files:") else {
        return Vec::new();
    };
    message[at..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("hint:"))
        .map(|l| l.trim().trim_matches('"').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether an excluding pathspec names `path` before any wildcard.
fn names(spec: &str, path: &str) -> bool {
    let Some(rest) = spec.strip_prefix(":(exclude,") else {
        return false;
    };
    let Some((_, pattern)) = rest.split_once(')') else {
        return false;
    };
    let literal: String = pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '['))
        .collect();
    literal.trim_end_matches('/') == path.trim_end_matches('/')
}

/// The empty folders at or under `rel` (relative to `root`), each with a trailing `/`;
/// `.git` folders are not looked into.
fn empty_leaves(root: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    let mut any = false;
    for entry in entries.flatten() {
        any = true;
        let name = entry.file_name();
        if name == ".git" || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let child = format!("{rel}/{}", name.to_string_lossy());
        empty_leaves(root, &child, out);
    }
    if !any {
        out.push(format!("{rel}/"));
    }
}

pub(crate) fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_repository_without_a_commit_is_named() {
        let cases = [
            (
                "error: 'sub/' does not have a commit checked out\nfatal: adding files failed",
                Some("sub"),
            ),
            (
                "error: 'a b/c/' does not have a commit checked out",
                Some("a b/c"),
            ),
            ("fatal: something else", None),
        ];
        for (message, want) in cases {
            assert_eq!(no_commit_repository(message).as_deref(), want, "{message}");
        }
    }

    #[test]
    fn pathspecs_that_name_ignored_paths_are_found() {
        let message = "exit status: 1: The following paths are ignored by one of your .gitignore files:\ndata/cache\nhint: Use -f if you really want to add them.\n";
        let named = ignored_pathspecs(message);
        assert_eq!(named, ["data/cache"]);
        assert!(names(":(exclude,glob)data/cache/**", "data/cache"));
        assert!(names(":(exclude,literal)checkpoints", "checkpoints"));
        assert!(!names(":(exclude,glob)**/node_modules/**", "node_modules"));
        assert!(!names(".", "data/cache"));
    }
}
