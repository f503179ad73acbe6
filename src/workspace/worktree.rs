//! Linked worktrees of the workspace's repository, one per attempt of a parallel agent
//! build (`run --jobs N`), so that prompts in flight at once never share a work tree.
//!
//! A worktree starts detached at the commit its attempt builds on (`git worktree add`),
//! with the workspace's own top-level virtualenvs and `node_modules` (the excludes that
//! name a plain folder) linked into it rather than copied or rebuilt: they are the build's
//! state that git does not hold, and they are shared, not versioned. The links are the
//! runner's, so they are never staged or cleaned. When the attempt's work is merged, what
//! it made that git does not hold and the workspace lacks (a new virtualenv, ignored build
//! output) is moved into the workspace ([`Worktree::hand_over`]); everything else goes with
//! the worktree.

use std::path::{Path, PathBuf};

use super::Workspace;
use super::git::GitError;
use super::model::{Extras, Head, Pin};
use super::repo::Repo;
use crate::error::{Error, Result};

/// An attempt's own worktree, and the [`Workspace`] that snapshots it.
pub(crate) struct Worktree {
    ws: Workspace,
    /// The workspace's folders linked into it (relative to it).
    links: Vec<String>,
}

impl Worktree {
    /// A new worktree of `main`'s repository at `dir` (replacing whatever is there),
    /// detached at `commit`, with the top-level excluded folders of `from` (else `main`'s)
    /// linked into it.
    pub(crate) async fn add(
        main: &Workspace,
        dir: &Path,
        commit: &str,
        from: Option<&Worktree>,
    ) -> Result<Worktree> {
        remove(main, dir).await?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let repo = main.repo()?;
        let shown = dir.display().to_string();
        repo.git
            .run(&[
                "worktree", "add", "--quiet", "--detach", "--force", &shown, commit,
            ])
            .await
            .map_err(|e| main.git_error(&e))?;
        let mut links = Vec::new();
        let sources = from
            .map(|w| w.dir())
            .into_iter()
            .chain([main.dir.as_path()]);
        let sources: Vec<&Path> = sources.collect();
        for name in plain_folders(&main.excludes) {
            let found = sources
                .iter()
                .map(|s| s.join(&name))
                .find(|target| target.is_dir() && !target.is_symlink());
            if let Some(target) = found {
                let link = dir.join(&name);
                std::os::unix::fs::symlink(&target, &link).map_err(|e| Error::io(&link, e))?;
                links.push(name);
            }
        }
        Worktree::at(main, dir, links)
    }

    /// The worktree at `dir` (one an attempt cut by a crash left), if git made it.
    pub(crate) fn existing(main: &Workspace, dir: &Path) -> Option<Worktree> {
        let links = plain_folders(&main.excludes)
            .into_iter()
            .filter(|name| dir.join(name).is_symlink())
            .collect();
        Worktree::at(main, dir, links).ok()
    }

    fn at(main: &Workspace, dir: &Path, links: Vec<String>) -> Result<Worktree> {
        let dot_git = dir.join(".git");
        let text = std::fs::read_to_string(&dot_git).map_err(|e| Error::io(&dot_git, e))?;
        let git_dir = text
            .trim()
            .strip_prefix("gitdir:")
            .map(|p| PathBuf::from(p.trim()))
            .ok_or_else(|| Error::Git {
                dir: dir.to_path_buf(),
                message: "its `.git` file does not name a worktree's folder".into(),
            })?;
        let repo = main.repo()?;
        let git = repo.git.for_worktree(git_dir, dir.to_path_buf());
        let protect: Vec<String> = main.protect.iter().chain(&links).cloned().collect();
        let ws = Workspace {
            dir: dir.to_path_buf(),
            snapshots: true,
            protect: protect.clone(),
            excludes: main.excludes.clone(),
            repo: Some(Repo::new(
                git,
                dir.to_path_buf(),
                protect,
                main.excludes.clone(),
            )),
            pin: main.pin.as_ref().map(|p| Pin {
                baseline: p.baseline.clone(),
                head: Some(Head::Detached),
            }),
            _lock: None,
        };
        Ok(Worktree { ws, links })
    }

    /// The worktree as a workspace: scanned, and its work accepted, as the workspace's is.
    pub(crate) fn workspace(&self) -> &Workspace {
        &self.ws
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.ws.dir
    }

    /// What the attempt made that git does not hold (`extras.ignored`, and top-level
    /// excluded folders that are not the links) moved into `main` where `main` has
    /// nothing of that name; the paths moved.
    pub(crate) fn hand_over(&self, main: &Workspace, extras: &Extras) -> Vec<String> {
        let mut moved = Vec::new();
        let made = plain_folders(&main.excludes)
            .into_iter()
            .filter(|name| !self.links.contains(name) && self.ws.dir.join(name).is_dir());
        for rel in extras.ignored.iter().cloned().chain(made) {
            let rel = rel.trim_end_matches('/').to_string();
            let (from, to) = (self.ws.dir.join(&rel), main.dir.join(&rel));
            if to.symlink_metadata().is_ok() || from.symlink_metadata().is_err() {
                continue;
            }
            if let Some(parent) = to.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            // Same file system (the worktree lies in the runner's folder): a rename.
            if std::fs::rename(&from, &to).is_ok() {
                relocate(&from, &to);
                moved.push(rel);
            }
        }
        moved
    }
}

/// Whether this git can merge without a work tree (`git merge-tree --write-tree
/// --merge-base`, git 2.40 or later); else the version it says it is.
pub(crate) async fn can_merge(main: &Workspace) -> Result<std::result::Result<(), String>> {
    let said = main
        .repo()?
        .git
        .run(&["version"])
        .await
        .map_err(|e| main.git_error(&e))?;
    let version = said.trim().trim_start_matches("git version ").to_string();
    Ok(if merges_alone(&version) {
        Ok(())
    } else {
        Err(version)
    })
}

/// Whether git `version` ("2.47.3", "2.39.5 (Apple Git-154)") is 2.40 or later.
fn merges_alone(version: &str) -> bool {
    let mut numbers = version
        .split(['.', ' '])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (2, 40)
}

/// Removes the worktree at `dir`, its files and git's record of it; nothing there is fine.
pub(crate) async fn remove(main: &Workspace, dir: &Path) -> Result<()> {
    let repo = main.repo()?;
    if dir.join(".git").is_file() {
        let shown = dir.display().to_string();
        let _ = repo
            .git
            .run(&["worktree", "remove", "--force", "--force", &shown])
            .await;
    }
    if dir.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    repo.git
        .run(&["worktree", "prune"])
        .await
        .map_err(|e| main.git_error(&e))?;
    Ok(())
}

/// `theirs` (a commit on `base`) merged onto `onto` as a new commit with `message`, on
/// no branch: the commit, or the files that conflict.
pub(crate) async fn merge(
    main: &Workspace,
    base: &str,
    onto: &str,
    theirs: &str,
    message: &str,
) -> Result<std::result::Result<String, Vec<String>>> {
    let repo = main.repo()?;
    let fail = |e: GitError| main.git_error(&e);
    match repo
        .git
        .merge_tree(base, onto, theirs)
        .await
        .map_err(fail)?
    {
        Ok(tree) => Ok(Ok(repo
            .commit_tree(&tree, Some(onto), message)
            .await
            .map_err(fail)?)),
        Err(conflicted) => Ok(Err(conflicted)),
    }
}

/// A folder moved from `from` to `to`, whose scripts may name the old place (a
/// virtualenv's `bin/` scripts and `pyvenv.cfg` carry its absolute path, so its console
/// scripts would start a Python that is gone): that path rewritten to the new one in its
/// text files there.
fn relocate(from: &Path, to: &Path) {
    let (Some(old), Some(new)) = (from.to_str(), to.to_str()) else {
        return;
    };
    let scripts = std::fs::read_dir(to.join("bin"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    for path in scripts.chain([to.join("pyvenv.cfg")]) {
        let small_file = path
            .symlink_metadata()
            .is_ok_and(|m| m.is_file() && m.len() <= 1 << 20);
        if !small_file {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.contains(old)
        {
            let _ = std::fs::write(&path, text.replace(old, new));
        }
    }
}

/// The excludes that name one plain top-level folder (`.venv/`, `node_modules/`), caches
/// aside (they are rebuilt in each tree, and one shared would mix trees).
fn plain_folders(excludes: &[String]) -> Vec<String> {
    excludes
        .iter()
        .filter_map(|e| {
            let name = e.strip_suffix('/')?.trim_start_matches('/');
            let plain = !name.is_empty()
                && !name.contains(['/', '*', '?', '[', '\\', '!'])
                && name != "."
                && name != ".."
                && !name.contains("cache");
            plain.then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_without_a_work_tree_needs_git_2_40() {
        for (version, merges) in [
            ("2.47.3", true),
            ("2.40.0", true),
            ("3.0", true),
            ("2.39.5 (Apple Git-154)", false),
            ("2.34.1", false),
            ("1.9", false),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(merges_alone(version), merges, "{version}");
        }
    }

    #[test]
    fn only_excludes_that_name_one_plain_folder_are_linked() {
        let excludes: Vec<String> = [
            ".venv/",
            "/node_modules/",
            "__pycache__/",
            ".pytest_cache/",
            "*.pyc",
            "a/b/",
            "cache*/",
            "!keep/",
            "target",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(plain_folders(&excludes), [".venv", "node_modules"]);
    }
}
