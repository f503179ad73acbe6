//! The workspace's own files outside git's commands: the session's lock on it (in the
//! temporary folder, so that it holds whatever happens inside the workspace), paths
//! resolved before they exist, and lines added to `info/exclude` atomically.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{Error, Result};
use crate::lockfile::{self, Refused};

/// The lock of the workspace at `dir` (canonical): a file in the temporary folder named
/// after the path, so that it holds whatever happens inside the workspace.
pub(crate) fn take_lock(dir: &Path, holder: &str) -> Result<File> {
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("orchestrator-workspace-{name}.lock"));
    match lockfile::take(&path, holder) {
        Ok(file) => Ok(file),
        Err(Refused::Held(about)) => Err(Error::Workspace {
            dir: dir.to_path_buf(),
            message: format!(
                "is in use by another orchestrator session ({}); two sessions on one workspace would undo each other's work. Wait for it to finish or stop it, or give this build a workspace of its own ([workspace].dir)",
                about.as_deref().unwrap_or("its pid is unknown")
            ),
        }),
        Err(Refused::Io(e)) => Err(Error::io(&path, e)),
    }
}

/// `path` made absolute with symbolic links resolved, also when it does not exist yet (its
/// folder resolved).
pub(crate) fn resolve(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let abs = std::path::absolute(path).ok()?;
    match (abs.parent().map(Path::canonicalize), abs.file_name()) {
        (Some(Ok(parent)), Some(name)) => Some(parent.join(name)),
        _ => Some(abs),
    }
}

/// Replaces `path` with `bytes` atomically (a temporary file renamed over it).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Adds to the file at `path` (created if missing) those of `lines` it lacks, under
/// `heading`; a file that cannot be read but exists is an error, never overwritten.
pub(crate) fn add_lines(path: &Path, lines: &[String], heading: &str) -> std::io::Result<()> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
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
    text.push_str(heading);
    text.push('\n');
    for l in missing {
        text.push_str(l);
        text.push('\n');
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_added_once_and_an_unreadable_file_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("info/exclude");
        let lines = ["/a".to_string(), "b/".to_string()];
        add_lines(&path, &lines, "# h").expect("added");
        add_lines(&path, &lines, "# h").expect("again");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "# h\n/a\nb/\n"
        );
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert!(
            add_lines(&path, &lines, "# h").is_err(),
            "not UTF-8: not overwritten"
        );
        assert_eq!(std::fs::read(&path).expect("read"), [0xff, 0xfe]);
    }
}
