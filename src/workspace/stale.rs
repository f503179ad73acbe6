//! Git's lock files that nothing holds any more. Git takes a lock by creating `NAME.lock`
//! and drops it by renaming or removing it; a git killed in between (an agent killed at
//! `llm.timeout` mid `git add`, the runner's own git in a killed process group) leaves it,
//! and every later git command that needs it fails until someone removes it by hand. A lock
//! is stale when it is older than the moment the caller knows every process it started was
//! gone, and no live git process works in the repository; those are removed, the others
//! are reported for the user to look at.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Removes the stale locks of the repository at `git_dir` (work tree `work_tree`): those
/// older than `before` while no git process works in it; the ones removed, as shown. `Err`
/// says which lock may still be held.
pub(crate) fn remove(
    work_tree: &Path,
    git_dir: &Path,
    before: SystemTime,
) -> Result<Vec<String>, String> {
    let locks = locks(git_dir);
    if locks.is_empty() {
        return Ok(Vec::new());
    }
    let busy = git_running_in(work_tree, git_dir);
    let mut removed = Vec::new();
    for lock in locks {
        let shown = lock
            .strip_prefix(work_tree)
            .unwrap_or(&lock)
            .display()
            .to_string();
        if busy || !older_than(&lock, before) {
            return Err(format!(
                "`{shown}` is held{}: another git command may be working in the workspace. Wait for it, or remove the file if nothing is",
                if busy {
                    " and a git process is running in it"
                } else {
                    ""
                }
            ));
        }
        std::fs::remove_file(&lock).map_err(|e| format!("`{shown}` cannot be removed: {e}"))?;
        removed.push(shown);
    }
    Ok(removed)
}

/// The lock files of the repository at `git_dir` (its top and its `refs/`).
pub(crate) fn locks(git_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![git_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && (dir != git_dir || entry.file_name() == "refs") {
                dirs.push(path);
            } else if !is_dir && path.extension().is_some_and(|e| e == "lock") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Whether `lock` was last written before `before`.
pub(crate) fn older_than(lock: &Path, before: SystemTime) -> bool {
    std::fs::metadata(lock)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < before)
}

/// Whether a live `git` process works in `work_tree` or `git_dir` (its working folder is
/// inside one of them, or its command line names one). Linux's `/proc`; elsewhere, none
/// can be seen and none is assumed.
pub(crate) fn git_running_in(work_tree: &Path, git_dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let me = std::process::id().to_string();
    let names = [
        work_tree.as_os_str().as_encoded_bytes(),
        git_dir.as_os_str().as_encoded_bytes(),
    ];
    entries.flatten().any(|entry| {
        let pid = entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        if pid == me {
            return false;
        }
        let proc = Path::new("/proc").join(pid);
        let is_git =
            std::fs::read_to_string(proc.join("comm")).is_ok_and(|c| c.trim().starts_with("git"));
        if !is_git {
            return false;
        }
        let cwd = std::fs::read_link(proc.join("cwd")).ok();
        let in_cwd = cwd.is_some_and(|c| c.starts_with(work_tree) || c.starts_with(git_dir));
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
        in_cwd
            || names
                .iter()
                .any(|n| cmdline.windows(n.len()).any(|w| w == *n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_found_at_the_top_and_under_refs_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = dir.path();
        for f in [
            "index.lock",
            "orchestrator-index.lock",
            "refs/heads/main.lock",
            "objects/pack/tmp.lock",
            "HEAD",
        ] {
            let path = git.join(f);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "").expect("write");
        }
        let found: Vec<String> = locks(git)
            .iter()
            .map(|p| p.strip_prefix(git).expect("inside").display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                "index.lock",
                "orchestrator-index.lock",
                "refs/heads/main.lock"
            ]
        );
        assert!(older_than(
            &git.join("index.lock"),
            SystemTime::now() + std::time::Duration::from_secs(5)
        ));
        assert!(!older_than(&git.join("index.lock"), SystemTime::UNIX_EPOCH));
    }
}
