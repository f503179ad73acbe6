//! Read-only state for `estimate` and `status`: the journal folded, no lock taken, so that
//! they can run beside a `run` and are never stale.

use std::path::Path;

use serde_json::{Map, Value};

use super::fold::Fold;
use super::journal::read_journal;
use super::layout::{JOURNAL, MEMORY, STATUS};
use crate::error::{Error, Result};
use crate::plan::Prompt;

/// Read-only state for `estimate` and `status`: the journal folded, no lock taken.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    pub(crate) fold: Fold,
    pub(crate) warning: Option<String>,
}

impl Reading {
    /// `None` when the folder holds no session yet. A `status.json` that cannot be read is
    /// an error (it is a view, but a damaged one means something is wrong).
    pub(crate) fn read_if_any(dir: &Path) -> Result<Option<Reading>> {
        check_status_file(dir)?;
        let (records, warning) = read_journal(&dir.join(JOURNAL))?;
        if records.is_empty() {
            return Ok(None);
        }
        let mut fold = Fold::default();
        for r in &records {
            fold.apply(r);
        }
        Ok(Some(Reading { fold, warning }))
    }

    /// The variables this prompt produced in the last run, if it completed.
    pub(crate) fn variables_of(&self, prompt: &Prompt) -> Option<Map<String, Value>> {
        self.fold.variables.get(prompt.id.as_str()).cloned()
    }

    /// Tokens spent on this prompt, and of them possibly billed, if any attempt was made.
    pub(crate) fn spent_on(&self, prompt: &Prompt) -> Option<(u64, u64)> {
        let id = prompt.id.as_str();
        self.fold
            .prompts
            .contains_key(id)
            .then(|| (self.fold.spent(id), self.fold.possibly_billed(id)))
    }
}

/// A `status.json` that exists must be a regular file inside the folder that parses as JSON.
pub(crate) fn check_status_file(dir: &Path) -> Result<()> {
    for name in [STATUS, MEMORY] {
        let path = dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if meta.file_type().is_symlink() {
            return Err(Error::state(
                &path,
                "is a symbolic link; state files must be regular files inside the checkpoints folder (remove the link)",
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
            return Err(Error::state(
                &path,
                format!(
                    "cannot be read ({e}); it is left as it is. Move it away and run again (it is rebuilt from journal.jsonl), or `orchestrator run --restart` to archive the session as it is and start anew"
                ),
            ));
        }
    }
    Ok(())
}
