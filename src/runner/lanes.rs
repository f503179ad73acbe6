//! Parallel agent builds (docs, "Parallel agent builds"): with `run --jobs N` and a
//! workspace that takes snapshots, each attempt works in a git worktree of its own (under
//! `checkpoints/worktrees/`, made by [`crate::workspace::worktree`] with what git does not
//! hold of its base), started at the last accepted commit before its prompt, and its checks
//! run there. An accepted attempt becomes one commit on that base, and is then put onto the
//! session's branch **in plan order** (a rebase, never a merge commit): it waits until every prompt of the
//! run before it has settled, so that the branch holds the prompts' commits in the order of
//! the plan, as a sequential build's does, and a rerun, a restore or a reopen reads it the
//! same way. The merge is git's three-way merge of the commit onto the branch's tip (a
//! fast-forward when nothing was merged meanwhile); a conflict sends the prompt again from
//! the new tip (journaled as a `conflict`, bounded by `retry.max_attempts`), and a real
//! merge runs the phase's and `[verify].commands` checks again on the merged tree before
//! it is taken. Only then is the workspace itself moved to the merged commit, after the
//! same look for the user's changes that a run's start makes, and with the move journaled
//! first (`merging`), so that a crash in it is not taken for the user's changes.
//!
//! The trade-off: an accepted attempt holds its job while it waits for its turn, so a slow
//! prompt delays the merges (not the work) of the prompts after it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::context::Context;
use super::events::Said;
use super::interrupt::Interrupt;
use super::snapshot::{Point, dirty, users_changes};
use super::verification;
use crate::error::{Error, Result};
use crate::process::Mark;
use crate::state::Event;
use crate::workspace::worktree::{Worktree, can_merge, merge, remove as remove_worktree};
use crate::workspace::{Extras, Workspace};

/// Why a merge was not taken: the attempt's failure.
pub(crate) struct Refused {
    pub(crate) why: String,
    /// The merge conflicted (not the work's fault): the prompt runs again from the new tip.
    pub(crate) conflict: bool,
}

impl Refused {
    pub(crate) fn content(why: String) -> Refused {
        Refused {
            why,
            conflict: false,
        }
    }

    pub(crate) fn conflict(why: String) -> Refused {
        Refused {
            why,
            conflict: true,
        }
    }
}

/// What the checks on a merged tree need.
pub(crate) struct Checking<'c> {
    pub(crate) ctx: Context<'c>,
    pub(crate) vars: &'c BTreeMap<String, Value>,
    pub(crate) mark: &'c Mark,
    pub(crate) interrupt: &'c Interrupt,
}

impl<'c> Checking<'c> {
    pub(crate) fn new(
        ctx: Context<'c>,
        vars: &'c BTreeMap<String, Value>,
        mark: &'c Mark,
        interrupt: &'c Interrupt,
    ) -> Checking<'c> {
        Checking {
            ctx,
            vars,
            mark,
            interrupt,
        }
    }
}

/// The worktrees of a parallel agent build, and whose turn it is to merge.
pub(crate) struct Lanes {
    root: PathBuf,
    /// The run's prompts that have not settled (indices into the plan).
    unsettled: RefCell<BTreeSet<usize>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Held while a worktree is added or removed: git reads every worktree's records as it
    /// adds one, and fails on one half made.
    adding: tokio::sync::Mutex<()>,
}

impl Lanes {
    /// Worktrees under `root` (the runner's own folder).
    pub(crate) fn new(root: PathBuf) -> Lanes {
        Lanes {
            root,
            unsettled: RefCell::new(BTreeSet::new()),
            changed: tokio::sync::watch::Sender::new(0),
            adding: tokio::sync::Mutex::new(()),
        }
    }

    /// The prompts the run takes on.
    pub(crate) fn begin(&self, todo: &[usize]) {
        *self.unsettled.borrow_mut() = todo.iter().copied().collect();
    }

    /// Prompt `index` completed, failed, was skipped, or will not start in this run.
    pub(crate) fn settled(&self, index: usize) {
        if self.unsettled.borrow_mut().remove(&index) {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Returns once every prompt of the run before `index` has settled.
    async fn turn(&self, index: usize) {
        let mut rx = self.changed.subscribe();
        while self.unsettled.borrow().range(..index).next().is_some() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Where prompt `id`'s attempts work (one at a time), or with `merged` where its merge
    /// is checked: also what `{{workspace}}` names in its prompt and checks.
    pub(crate) fn dir(&self, id: &str, merged: bool) -> PathBuf {
        let name = id.replace(['/', '\\'], "_");
        self.root.join(if merged {
            format!("{name}.merged")
        } else {
            name
        })
    }

    /// At the start of a parallel run: git can do the merges.
    pub(crate) async fn start(&self, main: &Workspace) -> Result<()> {
        match can_merge(main).await? {
            Ok(()) => Ok(()),
            Err(version) => Err(Error::Workspace {
                dir: main.dir().to_path_buf(),
                message: format!(
                    "a parallel agent build (run.jobs above 1) merges each prompt's work with `git merge-tree --merge-base`, which needs git 2.40 or later, and this git is {version}; upgrade git, or run with --jobs 1"
                ),
            }),
        }
    }

    /// A worktree for an attempt at the prompt of `at`, at its base.
    pub(crate) async fn open(&self, main: &Workspace, at: &Point) -> Result<Worktree> {
        let dir = self.dir(&at.id, false);
        let _one = self.adding.lock().await;
        let base = (at.base.commit.as_str(), &at.base.extras);
        Worktree::add(main, &dir, base, None).await
    }

    /// The attempt in `worktree` is over: what it left kept under `refs/orchestrator/`
    /// when it was not accepted, and the worktree removed.
    pub(crate) async fn close(
        &self,
        main: &Workspace,
        worktree: Worktree,
        (at, attempt): (&Point, u32),
        accepted: bool,
    ) -> Result<Said> {
        let mut said = Said::default();
        if !accepted {
            let message = format!("orchestrator: what attempt {attempt} of {} left", at.id);
            let scan = worktree
                .workspace()
                .scan(&message, Some(&at.base.commit))
                .await;
            if let Ok(scan) = scan
                && !scan.unchanged
            {
                let name = format!("replaced/{}/{}-attempt-{attempt}", at.session_id, at.id);
                let kept = main.keep(&scan.commit, &name).await?;
                said.details.push(format!(
                    "{} attempt {attempt}: what it left in its worktree is kept as {kept}",
                    at.id
                ));
            }
        }
        let _one = self.adding.lock().await;
        remove_worktree(main, worktree.dir()).await?;
        Ok(said)
    }

    /// The accepted work of attempt `attempt` in `worktree` (started at `at`) committed
    /// there, then, at its turn, merged onto the last accepted commit before its prompt
    /// (`now` reads it), checked again when the merge is a real one, and the workspace
    /// moved to it (journaled first with `record`): the commit and its extras, or why not.
    pub(crate) async fn accept<Now, Record>(
        &self,
        (main, worktree): (&Workspace, &Worktree),
        (at, index, attempt): (&Point, usize, u32),
        (now, record): (Now, Record),
        checking: Checking<'_>,
    ) -> Result<(std::result::Result<(String, Extras), Refused>, Said)>
    where
        Now: Fn() -> Result<Option<Point>>,
        Record: Fn(Said) -> Result<()>,
    {
        let mut said = Said::default();
        let message = format!("{} {}", at.id, at.name);
        let own = format!("worktrees/{}/{}-attempt-{attempt}", at.session_id, at.id);
        let theirs = match worktree
            .workspace()
            .accept(&message, &at.base.commit, &own)
            .await?
        {
            Ok(c) => c,
            Err(why) => return Ok((Err(Refused::content(why)), said)),
        };
        checking.interrupt.unless(self.turn(index)).await?;
        let Some(now) = now()? else {
            return Ok((Ok((theirs.commit, theirs.extras)), said));
        };
        if now.base.commit != at.base.commit
            && !main.contains(&now.base.commit, &at.base.commit).await
        {
            let why = "the commit it started from is no longer on the session's branch (a prompt before it was built again); it runs again from the last accepted commit".to_string();
            return Ok((Err(Refused::conflict(why)), said));
        }
        let merged = if now.base.commit == at.base.commit {
            theirs.commit.clone()
        } else {
            let onto = &now.base.commit;
            match merge(main, &at.base.commit, onto, &theirs.commit, &message).await? {
                Ok(merged) => merged,
                Err(files) => {
                    let why = format!(
                        "its work conflicts with work accepted while it ran, in {}; it runs again from the last accepted commit (its own is kept as refs/orchestrator/{own})",
                        crate::text::truncate(&files.join(", "), 200)
                    );
                    return Ok((Err(Refused::conflict(why)), said));
                }
            }
        };
        let extras = now.base.extras.with(&theirs.extras);
        let (ctx, vars) = (checking.ctx, checking.vars);
        if merged != theirs.commit && verification::checks_merged_trees(ctx, index, vars) {
            let on = (main, worktree, (merged.as_str(), &extras));
            let checked = self.check_merged(on, (at, index, attempt), checking);
            let verified = checked.await?;
            said = said.and(verified.said);
            if let Some(failed) = verified.failure {
                let why = format!("on its work merged with the work accepted meanwhile: {failed}");
                return Ok((Err(Refused::content(why)), said));
            }
        }
        let to = (merged.as_str(), &extras);
        self.move_workspace(main, (&now, attempt), to, &record)
            .await?;
        let (moved, dropped) = worktree.hand_over(main, &theirs.extras);
        if !moved.is_empty() {
            said.details.push(format!(
                "{} attempt {attempt}: moved from its worktree into the workspace: {}",
                at.id,
                moved.join(", ")
            ));
        }
        if !dropped.is_empty() {
            said.warnings.push(format!(
                "{}: what it made outside git in its worktree could not be moved into the workspace and is gone with the worktree: {} (the workspace has its own of that name, or it lies on another file system than checkpoints/)",
                at.id,
                dropped.join(", ")
            ));
        }
        Ok((Ok((merged, extras)), said))
    }

    /// The phase's and `[verify].commands` checks, in a worktree of the merged commit
    /// (with what the attempt made that git does not hold, such as a new virtualenv).
    async fn check_merged(
        &self,
        (main, attempt_tree, merged): (&Workspace, &Worktree, (&str, &Extras)),
        (at, index, attempt): (&Point, usize, u32),
        c: Checking<'_>,
    ) -> Result<verification::Verified> {
        let dir = self.dir(&at.id, true);
        let tree = {
            let _one = self.adding.lock().await;
            Worktree::add(main, &dir, merged, Some(attempt_tree)).await?
        };
        let mut vars = c.vars.clone();
        crate::config::workspace_at(&mut vars, tree.dir());
        let (on, at) = ((tree.dir(), true), (index, attempt, &[][..]));
        let verified = verification::verify(c.ctx, at, &vars, on, "", c.mark, c.interrupt).await;
        let _one = self.adding.lock().await;
        remove_worktree(main, &dir).await?;
        verified
    }

    /// The workspace moved to `merged`: refused when it holds changes the runner did not
    /// make (as at a run's start); what an attempt cut by a crash left there, and the
    /// commits a rerun builds again, kept under `refs/orchestrator/` first. The move is
    /// journaled before it starts (`record`), so that a crash in it is not taken for the
    /// user's changes.
    async fn move_workspace(
        &self,
        main: &Workspace,
        (now, attempt): (&Point, u32),
        (merged, extras): (&str, &Extras),
        record: &impl Fn(Said) -> Result<()>,
    ) -> Result<()> {
        let message = "orchestrator: the workspace before a merge";
        let scan = main.scan(message, None).await?;
        let replaced = |what: &str| format!("replaced/{}/{}-{what}", now.session_id, now.id);
        match &now.known {
            Some(known) => {
                let changes = users_changes(main, known, &scan).await?;
                if !changes.is_empty() {
                    return Err(dirty(main, &changes));
                }
            }
            None if !scan.unchanged => {
                main.keep(&scan.commit, &replaced("before-merge")).await?;
            }
            None => {}
        }
        let head = scan.head.clone().unwrap_or_else(|| now.base.commit.clone());
        // A rerun: the commits it builds again are kept, as a restore keeps them.
        if !main.contains(merged, &head).await {
            main.keep(&head, &replaced(&format!("attempt-{attempt}")))
                .await?;
        }
        // From exactly what the workspace holds (its scan), so that a crash before the
        // move finds it as it was.
        record(Said::event(Event::Merging {
            id: now.id.clone(),
            attempt,
            from: scan.commit.clone(),
            to: merged.to_string(),
            from_extras: scan.extras.clone(),
            to_extras: extras.clone(),
        }))?;
        main.restore(merged, extras, &[], Some(&scan.commit))
            .await?;
        main.keep(merged, &format!("sessions/{}", now.session_id))
            .await?;
        Ok(())
    }
}

/// Where the attempts of a session in `checkpoints` work: `checkpoints/worktrees/`.
pub(crate) fn root(checkpoints: &Path) -> PathBuf {
    let root = checkpoints.join("worktrees");
    std::path::absolute(&root).unwrap_or(root)
}

/// At the start of any run of an agent build: the worktrees under `root` that an earlier
/// run left (cut by a crash) kept under `refs/orchestrator/` (with the agent's own commits
/// in them) and removed, with git's records of them.
pub(crate) async fn clear(root: &Path, main: &Workspace, session_id: &str) -> Result<Said> {
    let mut said = Said::default();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(said);
    };
    let at = crate::text::now_ms();
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(left) = Worktree::existing(main, &dir)
            && let Ok(scan) = left
                .workspace()
                .scan(&format!("orchestrator: what {name} left"), None)
                .await
        {
            let name = format!("replaced/{session_id}/{name}-at-resume-{at}");
            let kept = main.keep(&scan.commit, &name).await?;
            said.details.push(format!(
                "what a cut run left in a worktree is kept as {kept}"
            ));
        }
        remove_worktree(main, &dir).await?;
    }
    Ok(said)
}
