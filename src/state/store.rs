//! The checkpoints folder, opened for writing by one runner: the journal appended and
//! fsynced, the views replaced atomically and durably (temporary file, fsync, rename, fsync
//! of the folder, by `atomic-write-file`), the outputs replaced atomically, `run --restart`'s
//! archive. The folder is 0700 and every file 0600: prompts and replies may be private.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::journal::{Event, Record, now, read_journal};
use super::layout::{ARCHIVE, JOURNAL, MEMORY, OUTPUTS, SCHEMA_VERSION, STATUS};
use super::lock;
use super::reading::check_status_file;
use crate::error::{Error, Result};

/// The checkpoints folder, opened for writing by one runner.
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
    journal: File,
    _lock: File,
}

impl Store {
    /// Creates the folder (0700) if needed and takes the lock; a second runner is refused
    /// with the first one's pid.
    pub(crate) fn open(dir: &Path) -> Result<Store> {
        create_private_dir(dir)?;
        create_private_dir(&dir.join(OUTPUTS))?;
        let lock = lock::take(dir)?;
        remove_stray_temporaries(dir);
        let journal_path = dir.join(JOURNAL);
        let journal = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&journal_path)
            .map_err(|e| Error::io(&journal_path, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            journal,
            _lock: lock,
        })
    }

    /// Whether the journal at its path is still the file this runner appends to; when
    /// something deleted or replaced it (an agent's `git stash -u` or `git reset --hard`
    /// in a workspace that holds `checkpoints/`), it is written back from the open file,
    /// which the runner still holds, and the answer says so (`Some`: what happened).
    pub(crate) fn journal_intact(&mut self) -> Result<Option<String>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.dir.join(JOURNAL);
        let open = self.journal.metadata().map_err(|e| Error::io(&path, e))?;
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.dev() == open.dev() && m.ino() == open.ino());
        if same && open.nlink() > 0 {
            return Ok(None);
        }
        let what = if std::fs::symlink_metadata(&path).is_ok() {
            "replaced"
        } else {
            "deleted"
        };
        // The open file, by its descriptor: readable though its name is gone (Linux).
        use std::os::fd::AsRawFd;
        let held = format!("/proc/self/fd/{}", self.journal.as_raw_fd());
        let bytes = std::fs::read(&held).map_err(|e| Error::io(&path, e))?;
        create_private_dir(&self.dir)?;
        write_atomic(&path, |w| w.write_all(&bytes))?;
        self.journal = OpenOptions::new()
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Some(format!(
            "{} was {what} while the runner held it; it is written back whole from the runner's open copy",
            path.display()
        )))
    }

    /// Reads the journal (after checking the views). A torn last line is cut off the file
    /// so that the next append starts on a line of its own.
    pub(crate) fn load(&mut self) -> Result<(Vec<Record>, Option<String>)> {
        check_status_file(&self.dir)?;
        let path = self.dir.join(JOURNAL);
        let (records, warning) = read_journal(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if warning.is_some() {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            self.journal
                .set_len(keep as u64)
                .and_then(|()| self.journal.sync_data())
                .map_err(|e| Error::io(&path, e))?;
        } else if bytes.last().is_some_and(|&b| b != b'\n') {
            // A crash between a line's JSON and its newline: the line is whole; end it so
            // that the next append starts a line of its own.
            self.journal
                .write_all(b"\n")
                .and_then(|()| self.journal.sync_data())
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok((records, warning))
    }

    /// Appends events and fsyncs: when this returns, they are on disk.
    pub(crate) fn append(&mut self, events: &[Event]) -> Result<Vec<Record>> {
        let at = now();
        let mut buf = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            let record = Record {
                v: SCHEMA_VERSION,
                at: at.clone(),
                event: event.clone(),
            };
            serde_json::to_writer(&mut buf, &record).map_err(|e| {
                Error::state(
                    self.dir.join(JOURNAL),
                    format!("cannot encode an event: {e}"),
                )
            })?;
            buf.push(b'\n');
            records.push(record);
        }
        let path = self.dir.join(JOURNAL);
        self.journal
            .write_all(&buf)
            .and_then(|()| self.journal.sync_data())
            .map_err(|e| Error::io(&path, e))?;
        Ok(records)
    }

    /// `run --restart`: moves the session's files, as they are (damaged or not), to
    /// `archive/<session_id>/` and starts an empty journal. `None` if there was no session.
    pub(crate) fn archive(&mut self) -> Result<Option<PathBuf>> {
        if ![JOURNAL, STATUS, MEMORY]
            .iter()
            .any(|f| self.dir.join(f).exists())
        {
            return Ok(None);
        }
        let session_id = self.session_id_as_is();
        let archive = self.dir.join(ARCHIVE);
        create_private_dir(&archive)?;
        let mut target = archive.join(&session_id);
        let mut n = 1;
        while target.exists() {
            n += 1;
            target = archive.join(format!("{session_id}-{n}"));
        }
        create_private_dir(&target)?;
        for name in [JOURNAL, STATUS, MEMORY, OUTPUTS] {
            let from = self.dir.join(name);
            if from.exists() {
                std::fs::rename(&from, target.join(name)).map_err(|e| Error::io(&from, e))?;
            }
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&self.dir, e))?;
        create_private_dir(&self.dir.join(OUTPUTS))?;
        let journal_path = self.dir.join(JOURNAL);
        self.journal = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&journal_path)
            .map_err(|e| Error::io(&journal_path, e))?;
        Ok(Some(target))
    }

    /// The session's id for its archive folder, read from the journal's first line even
    /// if later lines are damaged; else from `status.json`; else one made from the time.
    fn session_id_as_is(&self) -> String {
        let from_journal = std::fs::read(self.dir.join(JOURNAL)).ok().and_then(|b| {
            let first = b.split(|&c| c == b'\n').next()?.to_vec();
            match serde_json::from_slice::<Record>(&first).ok()?.event {
                Event::SessionStarted { session_id, .. } => Some(session_id),
                _ => None,
            }
        });
        let from_status = || {
            let bytes = std::fs::read(self.dir.join(STATUS)).ok()?;
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            v.get("session_id")?.as_str().map(str::to_string)
        };
        from_journal
            .or_else(from_status)
            .filter(|id| {
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .unwrap_or_else(|| format!("unreadable-{}", now().replace([':', '.'], "-")))
    }

    /// Replaces `name` atomically but without fsync: for files whose content the journal
    /// already holds durably (the outputs).
    pub(crate) fn write_copy(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        // Named as `atomic-write-file` names its temporaries where it must name them
        // (`.<file>.<random>`), so that one rule finds the strays a kill leaves.
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(6)
            .collect();
        let tmp = path.with_file_name(format!(".{file_name}.{suffix}"));
        refuse_symlink(&path)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Replaces `name` with `value` as pretty JSON, atomically and durably. The JSON is
    /// written straight into the file: a view of a long run is never held whole in memory.
    pub(crate) fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        write_atomic(&self.dir.join(name), |w| {
            serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })
    }
}

/// Temporary file, fsync, rename, fsync of the folder; created 0600. A symbolic link in
/// the target's place is refused rather than followed or replaced.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    use atomic_write_file::unix::OpenOptionsExt as _;
    refuse_symlink(path)?;
    let mut options = atomic_write_file::AtomicWriteFile::options();
    options.preserve_mode(false).mode(0o600);
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    let mut buffered = std::io::BufWriter::new(&mut file);
    fill(&mut buffered)
        .and_then(|()| buffered.flush())
        .map_err(|e| Error::io(path, e))?;
    drop(buffered);
    file.commit().map_err(|e| Error::io(path, e))
}

fn refuse_symlink(path: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        return Err(Error::state(
            path,
            "is a symbolic link; state files must be regular files inside the checkpoints folder (remove the link)",
        ));
    }
    Ok(())
}

/// Temporary files that an atomic write left when the process was killed mid-write
/// (`.status.json.XXXXXX`, `outputs/.01.1.md.XXXXXX`): removed by the next runner, which
/// holds the lock, so none can be in use.
fn remove_stray_temporaries(dir: &Path) {
    for folder in [dir.to_path_buf(), dir.join(OUTPUTS)] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // `.<file>.<random>`, for the files the runner replaces.
            let ours = match name.strip_prefix('.').and_then(|n| n.rsplit_once('.')) {
                Some((target, _)) if folder == dir => [STATUS, MEMORY].contains(&target),
                Some((target, _)) => target.ends_with(".md"),
                None => false,
            };
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::state(
            dir,
            "is not a folder; give --checkpoints a folder (it is created if missing)",
        ));
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e)),
        // The runner owns the folder (README: "written by the runner alone"), so one made
        // by someone else, or checked out by git as 0755, is made private too.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_store_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("first");
        let err = Store::open(dir.path()).err().expect("second is refused");
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }
}
