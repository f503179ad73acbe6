//! Which prompt of a run starts next (`run --jobs`): the first in plan order whose
//! dependencies are accepted (its `depends_on` and the producers of its variables), once
//! every prompt of the run in an earlier phase has settled (phases are gates) and, with
//! `[context] history` on, the prompt before it has (its turn goes with it). A prompt whose
//! dependency failed, was skipped or will not run is blocked. With one job this is the
//! order the prompts always ran in.

use crate::config::History;
use crate::plan::Plan;
use crate::state::Fold;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Running,
    Settled,
}

/// The prompts a run takes on, and where each stands.
pub(crate) struct Queue {
    /// Indices into the plan, in plan order.
    todo: Vec<usize>,
    slots: Vec<Slot>,
    /// A parallel agent build: see [`Queue::in_worktrees`].
    worktrees: bool,
}

/// What the run does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Start this prompt.
    Start(usize),
    /// This prompt cannot run, and why.
    Blocked(usize, String),
    /// Nothing can start until a running prompt settles.
    Wait,
    /// Every prompt has settled.
    Done,
}

impl Queue {
    pub(crate) fn new(mut todo: Vec<usize>) -> Queue {
        todo.sort_unstable();
        todo.dedup();
        let slots = vec![Slot::Waiting; todo.len()];
        Queue {
            todo,
            slots,
            worktrees: false,
        }
    }

    /// A parallel agent build: a prompt also waits while a prompt before it is pending with
    /// a completed prompt of an earlier run between them. Building the earlier one reopens
    /// the completed one (its commit is no longer on the branch), and the later one, started
    /// before that, would be built without it.
    pub(crate) fn in_worktrees(mut self) -> Queue {
        self.worktrees = true;
        self
    }

    fn slot(&self, index: usize) -> Option<Slot> {
        self.todo.binary_search(&index).ok().map(|k| self.slots[k])
    }

    fn set(&mut self, index: usize, slot: Slot) {
        if let Ok(k) = self.todo.binary_search(&index) {
            self.slots[k] = slot;
        }
    }

    pub(crate) fn started(&mut self, index: usize) {
        self.set(index, Slot::Running);
    }

    /// The prompts taken on, in plan order.
    pub(crate) fn todo(&self) -> Vec<usize> {
        self.todo.clone()
    }

    /// The prompts not started yet.
    pub(crate) fn waiting(&self) -> impl Iterator<Item = usize> + '_ {
        self.todo
            .iter()
            .zip(&self.slots)
            .filter(|(_, s)| **s == Slot::Waiting)
            .map(|(&i, _)| i)
    }

    /// Completed, failed or skipped.
    pub(crate) fn settled(&mut self, index: usize) {
        self.set(index, Slot::Settled);
    }

    /// What to do next, the session being `fold`.
    pub(crate) fn next(&self, fold: &Fold, plan: &Plan, history: History) -> Next {
        let pending = |i: usize| matches!(self.slot(i), Some(Slot::Waiting | Slot::Running));
        let done = |i: usize| fold.done.contains(plan.prompts[i].id.as_str());
        let first_pending = self.todo.iter().copied().find(|&i| pending(i));
        let barrier = first_pending
            .filter(|_| self.worktrees)
            .and_then(|k| (k + 1..plan.prompts.len()).find(|&d| done(d) && self.slot(d).is_none()));
        for (k, &i) in self.todo.iter().enumerate() {
            if self.slots[k] != Slot::Waiting {
                continue;
            }
            let prompt = &plan.prompts[i];
            if prompt.depends_on.iter().any(|&d| !done(d) && !pending(d))
                && let Some(reason) = blocked(fold, plan, i)
            {
                return Next::Blocked(i, reason);
            }
            let waits = barrier.is_some_and(|d| i > d)
                || prompt.depends_on.iter().any(|&d| !done(d))
                || (history != History::None && i > 0 && pending(i - 1))
                || self.todo[..k]
                    .iter()
                    .any(|&j| pending(j) && plan.prompts[j].phase < prompt.phase);
            if !waits {
                return Next::Start(i);
            }
        }
        if self.slots.contains(&Slot::Running) {
            Next::Wait
        } else {
            // Waiting prompts nothing running will free: the first says why.
            match self
                .todo
                .iter()
                .zip(&self.slots)
                .find(|(_, s)| **s == Slot::Waiting)
            {
                Some((&i, _)) => Next::Blocked(
                    i,
                    blocked(fold, plan, i)
                        .unwrap_or_else(|| "its dependencies did not complete".into()),
                ),
                None => Next::Done,
            }
        }
    }
}

/// Why prompt `index` cannot run: a dependency that did not complete.
fn blocked(fold: &Fold, plan: &Plan, index: usize) -> Option<String> {
    plan.prompts[index]
        .depends_on
        .iter()
        .find(|&&d| !fold.done.contains(plan.prompts[d].id.as_str()))
        .map(|&d| {
            let dep = &plan.prompts[d];
            let how = if fold.failed.iter().any(|f| f == dep.id.as_str()) {
                "failed"
            } else if fold.skipped.iter().any(|f| f == dep.id.as_str()) {
                "was skipped"
            } else {
                "has not completed"
            };
            format!("it depends on {} ({}), which {how}", dep.id, dep.name)
        })
}
