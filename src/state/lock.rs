//! One runner per checkpoints folder: `.lock` is held with `File::try_lock` (released by
//! the kernel when the holder dies, so a stale lock never blocks) and records the holder's
//! pid, which a second runner names when it is refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::LOCK;
use crate::error::{Error, Result};

/// Takes the lock of folder `dir`, or says who holds it.
pub(super) fn take(dir: &Path) -> Result<File> {
    let lock_path = dir.join(LOCK);
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = holder_pid(&lock_path);
            return Err(Error::state(
                dir,
                format!(
                    "another orchestrator (pid {}) is running on this checkpoints folder; wait for it to finish or stop it",
                    pid.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
    }
    lock.set_len(0).map_err(|e| Error::io(&lock_path, e))?;
    writeln!(lock, "{}", std::process::id()).map_err(|e| Error::io(&lock_path, e))?;
    Ok(lock)
}

/// The pid the lock's holder wrote. It writes it just after taking the lock, so a runner
/// that loses a race at start may read the file before it is written: it looks again for
/// up to a second.
fn holder_pid(lock_path: &Path) -> Option<String> {
    for _ in 0..50 {
        let text = std::fs::read_to_string(lock_path).unwrap_or_default();
        let pid = text.trim();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            return Some(pid.to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}
