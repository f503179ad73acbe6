//! One runner per checkpoints folder: `.lock` (a [`crate::lockfile`]) records the holder's
//! pid, which a second runner names when it is refused.

use std::fs::File;
use std::path::Path;

use super::layout::LOCK;
use crate::error::{Error, Result};
use crate::lockfile::{self, Refused};

/// Takes the lock of folder `dir`, or says who holds it.
pub(super) fn take(dir: &Path) -> Result<File> {
    let lock_path = dir.join(LOCK);
    match lockfile::take(&lock_path, &std::process::id().to_string()) {
        Ok(file) => Ok(file),
        Err(Refused::Held(pid)) => Err(Error::state(
            dir,
            format!(
                "another orchestrator (pid {}) is running on this checkpoints folder; wait for it to finish or stop it",
                pid.as_deref().unwrap_or("unknown")
            ),
        )),
        Err(Refused::Io(e)) => Err(Error::io(&lock_path, e)),
    }
}
