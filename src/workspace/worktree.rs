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
    /// detached at `commit`, with what git does not hold of it brought in from `from`, else
    /// from `main`: the top-level excluded folders and the ignored folders of `extras`
    /// linked (the build's shared state), its ignored files copied (each attempt its own),
    /// its empty folders made.
    pub(crate) async fn add(
        main: &Workspace,
        dir: &Path,
        (commit, extras): (&str, &Extras),
        from: Option<&Worktree>,
    ) -> Result<Worktree> {
        // A record git kept of a worktree whose folder is gone, `add -f -f` takes over.
        if dir.symlink_metadata().is_ok() {
            remove(main, dir).await?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let repo = main.repo()?;
        let shown = dir.display().to_string();
        // Twice forced: a path left registered (or locked, by an `add` a crash cut) is
        // taken over.
        let add = [
            "worktree", "add", "--quiet", "--detach", "-f", "-f", &shown, commit,
        ];
        repo.git.run(&add).await.map_err(|e| main.git_error(&e))?;
        let sources: Vec<&Path> = from
            .map(|w| w.dir())
            .into_iter()
            .chain([main.dir.as_path()])
            .collect();
        let find = |rel: &str| {
            let real = |p: &PathBuf| p.symlink_metadata().is_ok_and(|m| !m.is_symlink());
            sources.iter().map(|s| s.join(rel)).find(real)
        };
        let folders = plain_folders(&main.excludes)
            .into_iter()
            .filter(|name| find(name).is_some_and(|p| p.is_dir()));
        // Caches are rebuilt in each tree: one shared would mix trees.
        let ignored = extras
            .ignored
            .iter()
            .map(|p| p.trim_end_matches('/').to_string())
            .filter(|p| !p.rsplit('/').next().unwrap_or("").contains("cache"));
        let mut links = Vec::new();
        // What cannot be brought in (unreadable, or its place taken in this tree) is left
        // out: git does not hold it, and the attempt can make it again.
        for rel in folders.chain(ignored) {
            let to = dir.join(&rel);
            let Some(source) = find(&rel).filter(|_| to.symlink_metadata().is_err()) else {
                continue;
            };
            if let Some(parent) = to.parent()
                && std::fs::create_dir_all(parent).is_err()
            {
                continue;
            }
            if source.is_dir() {
                if std::os::unix::fs::symlink(&source, &to).is_ok() {
                    links.push(rel);
                }
            } else {
                let _ = std::fs::copy(&source, &to);
            }
        }
        for empty in &extras.empty_dirs {
            let _ = std::fs::create_dir_all(dir.join(empty.trim_end_matches('/')));
        }
        Worktree::at(main, dir, links)
    }

    /// The worktree at `dir` (one an attempt cut by a crash left), if git made it.
    pub(crate) fn existing(main: &Workspace, dir: &Path) -> Option<Worktree> {
        let links = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_symlink())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        Worktree::at(main, dir, links).ok()
    }

    fn at(main: &Workspace, dir: &Path, links: Vec<String>) -> Result<Worktree> {
        let dot_git = dir.join(".git");
        let text = std::fs::read_to_string(&dot_git).map_err(|e| Error::io(&dot_git, e))?;
        // Relative with `worktree.useRelativePaths` (git 2.48): from the worktree.
        let git_dir = text
            .trim()
            .strip_prefix("gitdir:")
            .map(|p| dir.join(p.trim()))
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
    /// excluded folders that are not links) moved into `main` where `main` has nothing of
    /// that name: the paths moved, and the attempt's own excluded folders that could not be
    /// (`main` has one of that name already, or the rename failed).
    pub(crate) fn hand_over(
        &self,
        main: &Workspace,
        extras: &Extras,
    ) -> (Vec<String>, Vec<String>) {
        let (mut moved, mut dropped) = (Vec::new(), Vec::new());
        let made: Vec<String> = plain_folders(&main.excludes)
            .into_iter()
            .filter(|name| !self.links.contains(name) && self.ws.dir.join(name).is_dir())
            .collect();
        let ignored = extras
            .ignored
            .iter()
            .map(|p| p.trim_end_matches('/').to_string());
        for rel in ignored.chain(made.iter().cloned()) {
            let (from, to) = (self.ws.dir.join(&rel), main.dir.join(&rel));
            if from.symlink_metadata().is_err() || self.links.contains(&rel) {
                continue;
            }
            if to.symlink_metadata().is_ok() {
                if made.contains(&rel) {
                    dropped.push(rel);
                }
                continue;
            }
            if let Some(parent) = to.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            // Same file system (the worktree lies in the runner's folder): a rename.
            if std::fs::rename(&from, &to).is_ok() {
                relocate(&to, &self.ws.dir, &main.dir);
                moved.push(rel);
            } else {
                dropped.push(rel);
            }
        }
        (moved, dropped)
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
/// First, the workspace's environments the attempt used through its links are made to
/// name the workspace where they named the worktree (a `pip install` there, accepted or
/// not, wrote its path into their scripts and `site-packages`).
pub(crate) async fn remove(main: &Workspace, dir: &Path) -> Result<()> {
    for name in plain_folders(&main.excludes) {
        let link = dir.join(&name);
        if link.is_symlink()
            && std::fs::read_link(&link).is_ok_and(|target| target == main.dir.join(&name))
        {
            relocate(&main.dir.join(&name), dir, &main.dir);
        }
    }
    let repo = main.repo()?;
    if dir.join(".git").is_file() {
        let shown = dir.display().to_string();
        let _ = repo
            .git
            .run(&["worktree", "remove", "--force", "--force", &shown])
            .await;
    }
    match dir.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?,
        Ok(_) => std::fs::remove_file(dir).map_err(|e| Error::io(dir, e))?,
        Err(_) => {}
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

/// The files of an environment `folder` (a virtualenv) that name places by absolute path:
/// its `bin/` scripts (their first line starts its Python), `pyvenv.cfg`, and in its
/// `site-packages` the `.pth`, `__editable__*` and `.egg-link` files and `direct_url.json`
/// of an editable install (`pip install -e .`), which name the tree it was made from.
fn path_files(folder: &Path) -> Vec<PathBuf> {
    let list = |dir: &Path| -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        entries.map(|e| e.path()).collect()
    };
    let mut files = list(&folder.join("bin"));
    files.push(folder.join("pyvenv.cfg"));
    for python in list(&folder.join("lib")) {
        for entry in list(&python.join("site-packages")) {
            let name = entry.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".pth")
                || name.starts_with("__editable__")
                || name.ends_with(".egg-link")
            {
                files.push(entry.clone());
            } else if name.ends_with(".dist-info") {
                files.push(entry.join("direct_url.json"));
            }
        }
    }
    files
}

/// `folder`'s files that name places by absolute path ([`path_files`]) with the worktree
/// `from` written as `to` (the workspace): a virtualenv moved out of the worktree, or the
/// workspace's own one that an editable install in the worktree pointed there, would
/// otherwise name a folder that is gone.
fn relocate(folder: &Path, from: &Path, to: &Path) {
    // Not through a link an agent made: only the environment itself is rewritten.
    if folder.is_symlink() {
        return;
    }
    let canonical = from.canonicalize().ok().filter(|c| c != from);
    let olds: Vec<&str> = [Some(from), canonical.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(Path::to_str)
        .collect();
    let Some(new) = to.to_str() else {
        return;
    };
    for path in path_files(folder) {
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if !meta.is_file() || meta.len() > 1 << 20 {
            continue;
        }
        let Ok(mut text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut changed = false;
        for old in &olds {
            if let Some(moved) = replace_path(&text, old, new) {
                (text, changed) = (moved, true);
            }
        }
        if changed {
            // Replaced whole, never seen half written by a script another attempt runs.
            let _ = write_keeping_mode(&path, text.as_bytes(), meta.permissions());
        }
    }
}

fn write_keeping_mode(
    path: &Path,
    bytes: &[u8],
    mode: std::fs::Permissions,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.set_permissions(mode)?;
    file.commit()
}

/// `text` with the path `old` written as `new` wherever it is a whole path or the start of
/// one (`/w/01.1` in `/w/01.1/src`, not in `/w/01.10`); `None` when it holds none.
pub(crate) fn replace_path(text: &str, old: &str, new: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(old) {
        let end = at + old.len();
        let next = text[end..].chars().next();
        if next.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_')) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(new);
        last = end;
    }
    (last > 0).then(|| out + &text[last..])
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
    fn a_worktree_path_is_rewritten_only_where_it_is_a_whole_path() {
        let old = "/w/01.1";
        for (text, moved) in [
            ("/w/01.1\n", Some("/ws\n")),
            (
                "#!/w/01.1/.venv/bin/python\n",
                Some("#!/ws/.venv/bin/python\n"),
            ),
            (
                "a /w/01.1/src and /w/01.10/src",
                Some("a /ws/src and /w/01.10/src"),
            ),
            ("/w/01.1.merged /w/01.1-x /w/01.1_y", None),
            ("'/w/01.1'", Some("'/ws'")),
            ("nothing here", None),
        ] {
            assert_eq!(replace_path(text, old, "/ws").as_deref(), moved, "{text}");
        }
    }

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
