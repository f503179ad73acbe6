//! A lock file held with `File::try_lock` for as long as its holder runs: the kernel releases
//! it when the holder dies, so a stale lock never blocks. The holder writes a line about
//! itself (its pid, what it works on) that a refused second comer names.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a lock could not be taken.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Someone holds it; what they wrote about themselves, if they wrote it in time.
    Held(Option<String>),
    Io(std::io::Error),
}

/// Takes the lock at `path` (created 0600 if missing) and writes `about` into it.
pub(crate) fn take(path: &Path, about: &str) -> Result<File, Refused> {
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(Refused::Io)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(Refused::Held(holder(path))),
        Err(std::fs::TryLockError::Error(e)) => return Err(Refused::Io(e)),
    }
    lock.set_len(0).map_err(Refused::Io)?;
    writeln!(lock, "{about}").map_err(Refused::Io)?;
    Ok(lock)
}

/// What the holder wrote. It writes just after taking the lock, so a second comer that loses
/// a race at start may read the file before it is written: it looks again for up to a second.
fn holder(path: &Path) -> Option<String> {
    for _ in 0..50 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') && !text.trim().is_empty() {
            return Some(text.trim().to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_what_the_holder_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let first = take(&path, "pid 1").expect("first");
        match take(&path, "pid 2") {
            Err(Refused::Held(about)) => assert_eq!(about.as_deref(), Some("pid 1")),
            other => panic!("{other:?}"),
        }
        drop(first);
        take(&path, "pid 2").expect("free again");
    }
}
