//! The workspace's snapshots in the run (docs, "Agent builds" and "The workspace
//! boundary"): the repository attached and checked at the start of a run, with a baseline
//! for a new session; the user's changes since the runner last touched the workspace
//! refused, or taken into the base with `--allow-dirty`; every attempt started from the
//! last accepted commit before its prompt; what an attempt that was not accepted left
//! recorded (and kept under `refs/orchestrator/`) before it is discarded; a commit per
//! accepted prompt, refused when the agent moved HEAD off the session's branch or rewrote
//! its history; completed prompts whose work a new commit does not hold reopened.

use std::time::SystemTime;

use super::context::Context;
use super::events::Said;
use super::interrupt::Wait;
use super::tally::Book;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::state::{Event, Expected, Fold, Store};
use crate::workspace::{Changes, Committed, Extras, Head, Pin, Scan, Workspace};

/// A folder holding a copy of a commit's files, removed when dropped.
pub(crate) struct BaseCopy(pub(crate) std::path::PathBuf);

impl Drop for BaseCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a workspace step starts: read from the session before the step awaits.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    /// The commit an attempt starts from (the last accepted one before its prompt).
    pub(crate) base: Committed,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) session_id: String,
    /// What the workspace should hold now.
    pub(crate) expected: Expected,
    /// The commits it may hold, with their extras where known (`None`: unknown).
    pub(crate) known: Option<Vec<(String, Option<Extras>)>>,
}

/// The workspace of a run, if config has one: each step does its git work and returns
/// what happened ([`Said`]), for the run to journal.
pub(crate) struct Snapshots {
    pub(crate) workspace: Option<Workspace>,
    /// When this run began: git's lock files older than this that nothing holds are stale.
    pub(crate) run_started: SystemTime,
}

impl Snapshots {
    /// The workspace, when it is snapshotted with git.
    pub(crate) fn snapshots(&self) -> Option<&Workspace> {
        self.workspace.as_ref().filter(|ws| ws.snapshots())
    }

    /// Where an agent works and checks run, if config has a workspace.
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.workspace.as_ref().map(|ws| ws.dir())
    }

    /// At the start of a run: the repository attached (a baseline for a new session), git
    /// locks nothing holds removed, and what the user changed since the runner last touched
    /// the workspace refused or, with `allow_dirty`, taken into the commit the first of
    /// `todo` starts from.
    pub(crate) async fn start(
        &mut self,
        book: &Book,
        plan: &Plan,
        allow_dirty: bool,
        todo: &[usize],
        wait: Wait<'_>,
    ) -> Result<Said> {
        if self.snapshots().is_none() {
            return Ok(Said::default());
        }
        let fold = &book.fold.workspace;
        let pin = fold.baseline.clone().map(|baseline| Pin {
            baseline,
            head: fold.head.clone(),
        });
        if let Some(ws) = self.workspace.as_mut() {
            ws.attach(pin).await?;
        }
        let said = self.remove_stale_locks(self.run_started)?;
        if book.fold.workspace.baseline.is_none() {
            return Ok(said.and(self.baseline(allow_dirty).await?));
        }
        let Some(&first) = todo.first() else {
            return Ok(said);
        };
        // `None`: an attempt the runner did not see through: what it left is its own, kept
        // and discarded before the next attempt.
        let Some(known) = book.fold.workspace.left() else {
            return Ok(said);
        };
        let Some(ws) = self.snapshots() else {
            return Ok(said);
        };
        let now = wait
            .step(
                "looking for changes in the workspace",
                ws.scan("orchestrator: the workspace at the start of a run", None),
            )
            .await?;
        let changes = users_changes(ws, &known, &now).await?;
        if changes.is_empty() {
            return Ok(said);
        }
        if !allow_dirty {
            return Err(dirty(ws, &changes));
        }
        Ok(said.and(
            self.take_in(book, plan, first, &now, &changes, wait)
                .await?,
        ))
    }

    /// A new session's first commit: the workspace as it is, refused when it holds
    /// changes and `allow_dirty` is off.
    async fn baseline(&mut self, allow_dirty: bool) -> Result<Said> {
        let Some(ws) = self.workspace.as_mut() else {
            return Ok(Said::default());
        };
        let changes = ws.changes().await?;
        if !changes.is_empty() && !allow_dirty {
            let changes = Changes {
                files: changes,
                ..Changes::default()
            };
            return Err(dirty(ws, &changes));
        }
        let message = if changes.is_empty() {
            "orchestrator: baseline"
        } else {
            "orchestrator: baseline, with the files found at start (--allow-dirty)"
        };
        let (committed, head) = ws.baseline(message).await?;
        let (head, detached) = match head {
            Head::Branch(b) => (Some(b), false),
            Head::Detached => (None, true),
        };
        Ok(Said::event(Event::WorkspaceCommitted {
            id: None,
            commit: committed.commit,
            message: message.to_string(),
            head,
            detached,
            extras: Some(committed.extras),
        }))
    }

    /// `--allow-dirty`: the user's changes put on top of the commit prompt `first` starts
    /// from, as a commit that becomes that commit.
    async fn take_in(
        &self,
        book: &Book,
        plan: &Plan,
        first: usize,
        now: &Scan,
        changes: &Changes,
        wait: Wait<'_>,
    ) -> Result<Said> {
        let message = "orchestrator: changes found at start (--allow-dirty)";
        let Some(ws) = self.snapshots() else {
            return Ok(Said::default());
        };
        let (id, base) = base_of(ws, book, plan, first)?;
        let taken = wait
            .step(
                "taking your changes into the workspace's commit",
                ws.take_in(&base, now, changes, message),
            )
            .await?;
        let mut said = Said::event(Event::WorkspaceCommitted {
            id,
            commit: taken.commit,
            message: message.to_string(),
            head: None,
            detached: false,
            extras: Some(taken.extras),
        });
        said.warnings.push(format!(
            "{} taken into the commit the next attempt starts from (--allow-dirty): {}",
            ws.dir().display(),
            changes.listed()
        ));
        Ok(said)
    }

    fn remove_stale_locks(&self, before: SystemTime) -> Result<Said> {
        let Some(ws) = self.snapshots() else {
            return Ok(Said::default());
        };
        let removed = ws.remove_stale_locks(before)?;
        if removed.is_empty() {
            return Ok(Said::default());
        }
        Ok(Said::warning(format!(
            "removed git's lock {} that nothing held any more (left by a git command that was killed): {}",
            if removed.len() == 1 { "file" } else { "files" },
            removed.join(", ")
        )))
    }

    /// What a step on the workspace for prompt `index` needs to know of the session, read
    /// before the step awaits anything; `None` when the workspace takes no snapshots.
    pub(crate) fn point(&self, book: &Book, plan: &Plan, index: usize) -> Result<Option<Point>> {
        let Some(ws) = self.snapshots() else {
            return Ok(None);
        };
        let (_, base) = base_of(ws, book, plan, index)?;
        Ok(Some(Point {
            base,
            id: plan.prompts[index].id.to_string(),
            name: plan.prompts[index].name.clone(),
            session_id: book.fold.session_id.clone(),
            expected: book.fold.workspace.expected.clone(),
            known: book.fold.workspace.left(),
        }))
    }

    /// A copy of the tracked files of the commit the prompt of `at` starts from, in a new
    /// folder outside the workspace (removed when the copy is dropped), for checks that
    /// must not touch the workspace.
    pub(crate) async fn copy_of_base(&self, at: &Point) -> Result<Option<BaseCopy>> {
        let Some(ws) = self.snapshots() else {
            return Ok(None);
        };
        let dir = std::env::temp_dir().join(format!(
            "orchestrator-base-{}-{}",
            std::process::id(),
            at.id
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let copy = BaseCopy(dir);
        ws.export(&at.base.commit, &copy.0).await?;
        Ok(Some(copy))
    }

    /// Before attempt `attempt` at the prompt of `at`: the workspace put back to the last
    /// accepted commit before it (a retry never builds on a failed attempt's debris), what
    /// it held kept under `refs/orchestrator/` first.
    pub(crate) async fn restore_for(
        &self,
        at: Point,
        attempt: u32,
        wait: Wait<'_>,
    ) -> Result<Said> {
        let Some(ws) = self.snapshots() else {
            return Ok(Said::default());
        };
        let Point {
            base,
            id,
            session_id,
            expected,
            ..
        } = at;
        let name = format!("replaced/{session_id}/{id}-attempt-{attempt}");
        let held = match expected {
            Expected::At(c) if c == base.commit => return Ok(Said::default()),
            Expected::At(c) => Some(c),
            Expected::Left { commit, .. } => Some(commit),
            Expected::Unknown | Expected::Moving { .. } => {
                let scan = wait
                    .step(
                        "keeping what the workspace holds before it is restored",
                        ws.scan(
                            &format!(
                                "orchestrator: the workspace before attempt {attempt} of {id}"
                            ),
                            Some(&base.commit),
                        ),
                    )
                    .await?;
                Some(scan.commit)
            }
        };
        let mut kept = None;
        if let Some(h) = &held
            && !ws.contains(&base.commit, h).await
        {
            kept = Some(ws.keep(h, &name).await?);
        }
        let said = self.remove_stale_locks(SystemTime::now())?;
        let discarded = wait
            .step(
                "restoring the workspace to the last accepted commit",
                ws.restore(&base.commit, &base.extras, &[], held.as_deref()),
            )
            .await?;
        Ok(said.and(Said::event(Event::WorkspaceRestored {
            commit: base.commit,
            discarded,
            kept,
        })))
    }

    /// After attempt `attempt` at the prompt of `at`, not accepted: what it left recorded
    /// and kept (the next attempt, or the next run, discards it; anything else found then
    /// is the user's).
    pub(crate) async fn record_left(
        &self,
        at: Point,
        attempt: u32,
        wait: Wait<'_>,
    ) -> Result<Said> {
        let Some(ws) = self.snapshots() else {
            return Ok(Said::default());
        };
        let said = self.remove_stale_locks(SystemTime::now())?;
        let Point {
            base,
            id,
            session_id,
            ..
        } = at;
        let scan = wait
            .step(
                "recording what the attempt left",
                ws.scan(
                    &format!("orchestrator: what attempt {attempt} of {id} left"),
                    Some(&base.commit),
                ),
            )
            .await?;
        ws.park_branch(&base.commit).await?;
        let kept = if scan.unchanged {
            None
        } else {
            let name = format!("replaced/{session_id}/{id}-attempt-{attempt}");
            Some(ws.keep(&scan.commit, &name).await?)
        };
        Ok(said.and(Said::event(Event::WorkspaceLeft {
            id,
            attempt,
            commit: scan.commit,
            extras: scan.extras,
            kept,
        })))
    }

    /// After the prompt of `at` passed its checks: its work committed on the session's
    /// branch. `Err` inside: why it cannot be (the attempt's content failure).
    pub(crate) async fn commit_for(
        &self,
        at: Point,
        wait: Wait<'_>,
    ) -> Result<(std::result::Result<Option<(String, Extras)>, String>, Said)> {
        let Some(ws) = self.snapshots() else {
            return Ok((Ok(None), Said::default()));
        };
        let said = self.remove_stale_locks(SystemTime::now())?;
        let message = format!("{} {}", at.id, at.name);
        let session_ref = format!("sessions/{}", at.session_id);
        let accepted = wait
            .step(
                "committing the accepted work",
                ws.accept(&message, &at.base.commit, &session_ref),
            )
            .await?;
        Ok((accepted.map(|c| Some((c.commit, c.extras))), said))
    }

    /// After an attempt: the runner's own files are still there. A journal something
    /// deleted or replaced (an agent's `git stash -u` or `git reset --hard` in a
    /// workspace that holds `checkpoints/`) is written back from the runner's open copy;
    /// either that or a config or prompt file gone stops the run, naming them.
    pub(crate) fn own_files_intact(&self, store: &mut Store, ctx: Context<'_>) -> Result<()> {
        // Only a workspace puts the runner's files within an agent's reach; a check is a
        // few calls whatever the plan's size (a deleted prompt file is found when its
        // request is built).
        let Some(ws) = &self.workspace else {
            return Ok(());
        };
        let repaired = store.journal_intact()?;
        let mut gone: Vec<String> = [ctx.config_file, ctx.plan.root.as_path()]
            .into_iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if repaired.is_none() && gone.is_empty() {
            return Ok(());
        }
        let mut what = Vec::new();
        if let Some(r) = repaired {
            what.push(r);
        }
        if !gone.is_empty() {
            let more = gone.len().saturating_sub(10);
            gone.truncate(10);
            what.push(format!(
                "the runner's own files are gone: {}{} (an agent's `git stash -u` keeps them in the workspace's `git stash list`)",
                gone.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ));
        }
        Err(Error::Workspace {
            dir: ws.dir().to_path_buf(),
            message: format!(
                "the attempt touched the runner's own files: {}. Put them back, and give the build a workspace of its own ([workspace].dir = \"build\") so that an agent cannot reach them; then `orchestrator run` goes on",
                what.join("; ")
            ),
        })
    }

    /// Before the session `old` is archived: its workspace checked for the user's changes
    /// (they refuse the new session, or with `allow_dirty` stay for its baseline), and
    /// what its last attempt left discarded (kept under `refs/orchestrator/`), so that the
    /// new session starts from `old`'s last accepted commit.
    pub(crate) async fn retire(
        &mut self,
        old: &Fold,
        plan: &Plan,
        allow_dirty: bool,
    ) -> Result<Said> {
        if self.snapshots().is_none() {
            return Ok(Said::default());
        }
        let Some(baseline) = old.workspace.baseline.clone() else {
            return Ok(Said::default());
        };
        let last = plan
            .prompts
            .iter()
            .rev()
            .filter(|p| old.done.contains(p.id.as_str()))
            .find_map(|p| old.prompts.get(p.id.as_str())?.commit.clone())
            .unwrap_or_else(|| baseline.clone());
        let pin = Pin {
            baseline,
            head: old.workspace.head.clone(),
        };
        if let Some(ws) = self.workspace.as_mut() {
            ws.attach(Some(pin)).await?;
        }
        let said = self.remove_stale_locks(self.run_started)?;
        let Some(ws) = self.snapshots() else {
            return Ok(said);
        };
        let now = ws
            .scan(
                "orchestrator: the workspace as the last session left it",
                Some(&last),
            )
            .await?;
        if let Some(known) = old.workspace.left() {
            let changes = users_changes(ws, &known, &now).await?;
            if !changes.is_empty() {
                return if allow_dirty {
                    Ok(said)
                } else {
                    Err(dirty(ws, &changes))
                };
            }
        }
        if now.unchanged && now.head.as_deref() == Some(last.as_str()) {
            return Ok(said);
        }
        ws.park_branch(&last).await?;
        let name = format!("replaced/{}/at-restart", old.session_id);
        ws.keep(&now.commit, &name).await?;
        let extras = old.workspace.extras.get(&last).cloned().unwrap_or_default();
        ws.restore(&last, &extras, &[], Some(&now.commit)).await?;
        Ok(said)
    }

    /// Completed prompts after `index` whose work the workspace no longer holds (`index`
    /// was built again under them): reopened, for `run` to build them again.
    pub(crate) fn reopen_after(&self, book: &Book, plan: &Plan, index: usize) -> Said {
        if self.snapshots().is_none() {
            return Said::default();
        }
        let ids: Vec<String> = plan.prompts[index + 1..]
            .iter()
            .filter(|p| book.fold.done.contains(p.id.as_str()))
            .map(|p| p.id.to_string())
            .collect();
        if ids.is_empty() {
            return Said::default();
        }
        let reason = format!(
            "its work is not in the workspace since {} was built again; `orchestrator run` builds it again on top",
            plan.prompts[index].id
        );
        let mut said = Said::warning(format!(
            "{} reopened: {reason} (their commits are kept under refs/orchestrator/)",
            ids.join(", ")
        ));
        said.events.push(Event::Reopened { ids, reason });
        said
    }
}

/// The commit an attempt at prompt `index` starts from, with its extras, and the id of the
/// prompt it is the commit of (`None`: the baseline).
fn base_of(
    ws: &Workspace,
    book: &Book,
    plan: &Plan,
    index: usize,
) -> Result<(Option<String>, Committed)> {
    let fold = &book.fold.workspace;
    // An `until` loop's next iteration builds on the last one.
    let own = plan.prompts[index].id.as_str();
    let iterated = book
        .fold
        .prompts
        .get(own)
        .and_then(|p| p.iteration_commit.clone());
    let (id, commit) = match (iterated, book.tally.last_commit_before(index)) {
        (Some(c), _) => (Some(own.to_string()), c),
        (None, Some((i, c))) => (Some(plan.prompts[i].id.to_string()), c.to_string()),
        (None, None) => (
            None,
            fold.baseline.clone().ok_or_else(|| Error::Git {
                dir: ws.dir().to_path_buf(),
                message: "the workspace has no baseline commit".into(),
            })?,
        ),
    };
    let extras = fold.extras.get(&commit).cloned().unwrap_or_default();
    Ok((id, Committed { commit, extras }))
}

/// The user's changes in `now`, against what the runner last left there (`known`, from
/// [`crate::state::WorkspaceFold::left`]): none when `now` is any of those; else the
/// changes against the first.
pub(crate) async fn users_changes(
    ws: &Workspace,
    known: &[(String, Option<Extras>)],
    now: &Scan,
) -> Result<Changes> {
    let mut first = None;
    for (commit, had) in known {
        let changes = ws.user_changes(commit, had.as_ref(), now).await?;
        if changes.is_empty() {
            return Ok(changes);
        }
        first.get_or_insert(changes);
    }
    Ok(first.unwrap_or_default())
}

/// The refusal of a workspace that holds changes the runner did not make.
pub(crate) fn dirty(ws: &Workspace, changes: &Changes) -> Error {
    Error::Workspace {
        dir: ws.dir().to_path_buf(),
        message: format!(
            "has changes the runner did not make: {}. Every attempt starts from the last accepted commit, so they would be lost, and the runner never deletes what it did not write. Commit or move them, or run with --allow-dirty to take them into the commit the next attempt starts from",
            changes.listed()
        ),
    }
}
