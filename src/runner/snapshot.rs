//! The workspace's snapshots in the run (README, "Agent builds"): a baseline commit when a
//! session starts (changes the runner did not make refused, or taken in with
//! `--allow-dirty`), every attempt started from the last accepted commit before its prompt
//! (the commits it leaves kept under `refs/orchestrator/`), a commit per accepted prompt,
//! and completed prompts whose work a new commit does not hold reopened.

use super::Session;
use crate::error::{Error, Result};
use crate::state::Event;
use crate::workspace::Workspace;

/// How many files a refusal lists.
const LISTED: usize = 20;

impl Session<'_> {
    fn snapshots(&self) -> Option<&Workspace> {
        self.workspace.as_ref().filter(|ws| ws.snapshots())
    }

    /// At the start of a run: the session's baseline, and the workspace checked for changes
    /// the runner did not make.
    pub(super) fn start_workspace(&mut self, allow_dirty: bool) -> Result<()> {
        let Some(ws) = self.snapshots() else {
            return Ok(());
        };
        let changes = ws.changes()?;
        let (id, message) = match &self.book.fold.baseline {
            None if changes.is_empty() => (None, "orchestrator: baseline"),
            None if allow_dirty => (
                None,
                "orchestrator: baseline, with the files found at start (--allow-dirty)",
            ),
            // Debris of an attempt the runner did not see through: restored before the
            // next attempt.
            Some(_) if changes.is_empty() || self.book.fold.workspace_dirty => return Ok(()),
            Some(_) if allow_dirty => (
                self.last_commit_before(self.plan.prompts.len()),
                "orchestrator: changes found at start (--allow-dirty)",
            ),
            _ => {
                let shown: Vec<&str> = changes.iter().take(LISTED).map(String::as_str).collect();
                let more = changes.len().saturating_sub(LISTED);
                return Err(Error::Workspace {
                    dir: ws.dir().to_path_buf(),
                    message: format!(
                        "has changes the runner did not make: {}{}; every attempt starts from the last accepted commit, so they would be lost. Commit or remove them, or run with --allow-dirty to take them in",
                        shown.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ),
                });
            }
        };
        let commit = ws.commit(message)?;
        self.book.journal(vec![Event::WorkspaceCommitted {
            id,
            commit,
            message: message.to_string(),
        }])
    }

    /// The id of the last completed prompt before `index` (in plan order) that has a
    /// commit; `None` when there is none (the baseline is the base).
    fn last_commit_before(&self, index: usize) -> Option<String> {
        self.plan.prompts[..index]
            .iter()
            .rev()
            .find(|p| {
                self.book.fold.done.contains(p.id.as_str())
                    && self
                        .book
                        .fold
                        .prompts
                        .get(p.id.as_str())
                        .is_some_and(|s| s.commit.is_some())
            })
            .map(|p| p.id.to_string())
    }

    /// The commit an attempt at prompt `index` starts from.
    fn base_of(&self, index: usize) -> Option<String> {
        let fold = &self.book.fold;
        match self.last_commit_before(index) {
            Some(id) => fold.prompts.get(&id).and_then(|p| p.commit.clone()),
            None => fold.baseline.clone(),
        }
    }

    /// Before an attempt at prompt `index`: the workspace put back to the last accepted
    /// commit before it (a retry never builds on a failed attempt's debris).
    pub(super) fn restore_for(&mut self, index: usize, attempt: u32) -> Result<()> {
        let Some(base) = self.base_of(index) else {
            return Ok(());
        };
        let Some(ws) = self.snapshots() else {
            return Ok(());
        };
        let head = ws.head();
        if head.as_deref() == Some(base.as_str()) && ws.changes()?.is_empty() {
            return Ok(());
        }
        // What the workspace holds is kept before it is discarded: a failed attempt's
        // files (uncommitted ones too), commits past the base (later prompts' work, when a
        // prompt runs again).
        let id = &self.plan.prompts[index].id;
        let held = ws.snapshot(&format!(
            "orchestrator: the workspace before attempt {attempt} of {id}"
        ))?;
        let kept = match held {
            Some(h) if h != base && !ws.contains(&base, &h) => {
                let name = format!(
                    "replaced/{}/{id}-attempt-{attempt}",
                    self.book.fold.session_id
                );
                Some(ws.keep(&h, &name)?)
            }
            _ => None,
        };
        let discarded = ws.restore(&base)?;
        self.book.journal(vec![Event::WorkspaceRestored {
            commit: base,
            discarded,
            kept,
        }])
    }

    /// After prompt `index` is accepted: its work committed.
    pub(super) fn commit_for(&self, index: usize) -> Result<Option<String>> {
        let Some(ws) = self.snapshots() else {
            return Ok(None);
        };
        let prompt = &self.plan.prompts[index];
        ws.commit(&format!("{} {}", prompt.id, prompt.name))
            .map(Some)
    }

    /// Completed prompts after `index` whose work the workspace no longer holds (`index`
    /// was built again under them): reopened, for `run` to build them again.
    pub(super) fn reopen_after(&mut self, index: usize) -> Result<()> {
        if self.snapshots().is_none() {
            return Ok(());
        }
        let ids: Vec<String> = self.plan.prompts[index + 1..]
            .iter()
            .filter(|p| self.book.fold.done.contains(p.id.as_str()))
            .map(|p| p.id.to_string())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let prompt = &self.plan.prompts[index];
        let reason = format!(
            "its work is not in the workspace since {} was built again; `orchestrator run` builds it again on top",
            prompt.id
        );
        self.warn(&format!(
            "{} reopened: {reason} (their commits are kept under refs/orchestrator/)",
            ids.join(", ")
        ));
        self.book.journal(vec![Event::Reopened { ids, reason }])
    }
}
