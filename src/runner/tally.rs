//! The run's book: the store it journals to, the journal folded, and tallies kept up to
//! date event by event (tokens per phase and in all, prompts done, the commits)
//! rather than recomputed over the whole plan for each prompt, so that a prompt costs the
//! same at the end of a long run as at its start.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::events::{Observer, Said};
use super::retry;
use crate::budget;
use crate::config::Config;
use crate::error::Result;
use crate::plan::Plan;
use crate::state::{Event, Fold, Record, Store};

/// Where a run's events go, and what they add up to.
pub(crate) struct Book {
    pub(crate) store: Store,
    pub(crate) fold: Fold,
    pub(crate) tally: Tally,
}

impl Book {
    /// Prompt `id`'s attempts so far: how many count, the last error, the last attempt's
    /// number, and the note for the next (why the last failed, or an `until` loop's).
    pub(crate) fn so_far(&self, id: &str) -> (u32, Option<String>, u32, Option<String>) {
        let state = self.fold.prompts.get(id);
        let note = state.and_then(|p| p.retry_note.as_deref()).map(retry::note);
        (
            state.map_or(0, |p| p.attempts_used),
            state.and_then(|p| p.last_error.clone()),
            state.map_or(0, |p| p.last_attempt),
            note.or_else(|| {
                state
                    .and_then(|p| p.iteration_note.as_deref())
                    .map(retry::again)
            }),
        )
    }

    /// The agent session to go on in for attempt `attempt` at prompt `index`
    /// (`llm.continue_session`): on the first, the one the last accepted prompt before it
    /// reported. A later attempt starts a fresh session (the workspace was put back to the
    /// last accepted commit; the note says why).
    pub(crate) fn agent_session_for(
        &self,
        plan: &Plan,
        index: usize,
        attempt: u32,
    ) -> Option<String> {
        if attempt != 1 {
            return None;
        }
        let before = plan.prompts[..index]
            .iter()
            .rev()
            .find(|p| self.fold.done.contains(p.id.as_str()))?;
        self.fold
            .prompts
            .get(before.id.as_str())?
            .agent_session
            .clone()
    }

    /// What a step did, recorded: told to `observer`, its events appended to the journal
    /// (fsynced) and applied. The one way a run changes its state.
    pub(crate) fn record(&mut self, said: Said, observer: &dyn Observer) -> Result<()> {
        said.tell(observer);
        if said.events.is_empty() {
            return Ok(());
        }
        let records = self.store.append(&said.events)?;
        for r in &records {
            self.tally.apply(&mut self.fold, r);
        }
        Ok(())
    }
}

pub(crate) struct Tally {
    phase_of: HashMap<String, usize>,
    /// Each prompt's place in the plan.
    index_of: HashMap<String, usize>,
    /// The workspace commits of completed prompts, by place in the plan: the commit an
    /// attempt starts from is the last one before its prompt, found without a scan.
    commits: BTreeMap<usize, String>,
    phase_spent: Vec<u64>,
    total_spent: u64,
    /// US dollars spent per phase.
    phase_cost: Vec<f64>,
    pub(crate) done: usize,
}

impl Tally {
    pub(crate) fn new(fold: &Fold, plan: &Plan, config: &Config) -> Tally {
        let ledger = budget::Ledger::new(fold, plan, config);
        let index_of: HashMap<String, usize> = plan
            .prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.to_string(), i))
            .collect();
        let commits = plan
            .prompts
            .iter()
            .enumerate()
            .filter(|(_, p)| fold.done.contains(p.id.as_str()))
            .filter_map(|(i, p)| Some((i, fold.prompts.get(p.id.as_str())?.commit.clone()?)))
            .collect();
        Tally {
            index_of,
            commits,
            phase_of: plan
                .prompts
                .iter()
                .map(|p| (p.id.to_string(), p.phase))
                .collect(),
            phase_spent: ledger.phases.iter().map(|p| p.used).collect(),
            total_spent: ledger.total.used,
            phase_cost: plan
                .phases
                .iter()
                .map(|ph| {
                    plan.prompts[ph.prompts.clone()]
                        .iter()
                        .filter_map(|p| fold.prompts.get(p.id.as_str()))
                        .map(|p| p.cost_usd)
                        .sum()
                })
                .collect(),
            done: plan
                .prompts
                .iter()
                .filter(|p| fold.done.contains(p.id.as_str()))
                .count(),
        }
    }

    /// Applies a journaled record to the fold and to the tallies.
    pub(crate) fn apply(&mut self, fold: &mut Fold, record: &Record) {
        let id = match &record.event {
            Event::AttemptStarted { id, .. } => Some(id.clone()),
            Event::AttemptFinished(r) => Some(r.id.clone()),
            _ => None,
        };
        let before = id.as_deref().map_or(0, |id| fold.spent(id));
        let cost_before = id
            .as_deref()
            .and_then(|id| fold.prompts.get(id))
            .map_or(0.0, |p| p.cost_usd);
        let was_done = match &record.event {
            Event::Completed { id, .. } | Event::Failed { id, .. } => fold.done.contains(id),
            _ => false,
        };
        let reopened = match &record.event {
            Event::Reopened { ids, .. } => ids.iter().filter(|id| fold.done.contains(*id)).count(),
            _ => 0,
        };
        fold.apply(record);
        self.done = self.done.saturating_sub(reopened);
        if let Some(id) = id {
            let after = fold.spent(&id);
            let delta = |n: u64| n.saturating_add(after).saturating_sub(before);
            self.total_spent = delta(self.total_spent);
            if let Some(&p) = self.phase_of.get(&id) {
                self.phase_spent[p] = delta(self.phase_spent[p]);
                let cost = fold.prompts.get(&id).map_or(0.0, |s| s.cost_usd);
                self.phase_cost[p] += cost - cost_before;
            }
        }
        match &record.event {
            Event::Completed { id, .. } if !was_done && self.phase_of.contains_key(id) => {
                self.done += 1
            }
            Event::Failed { id, .. } if was_done && self.phase_of.contains_key(id) => {
                self.done = self.done.saturating_sub(1);
            }
            _ => {}
        }
        self.track_commits(fold, &record.event);
    }

    /// Keeps [`Tally::commits`] to the done prompts that have a commit.
    fn track_commits(&mut self, fold: &Fold, event: &Event) {
        let ids: Vec<&String> = match event {
            Event::Completed { id, .. }
            | Event::Failed { id, .. }
            | Event::WorkspaceCommitted { id: Some(id), .. } => vec![id],
            Event::Reopened { ids, .. } => ids.iter().collect(),
            _ => return,
        };
        for id in ids {
            let Some(&i) = self.index_of.get(id) else {
                continue;
            };
            let commit = fold
                .done
                .contains(id)
                .then(|| fold.prompts.get(id).and_then(|p| p.commit.clone()))
                .flatten();
            match commit {
                Some(c) => self.commits.insert(i, c),
                None => self.commits.remove(&i),
            };
        }
    }

    /// The last completed prompt before `index` (in plan order) that has a commit, and
    /// the commit; `None` when there is none (the baseline is the base).
    pub(crate) fn last_commit_before(&self, index: usize) -> Option<(usize, &str)> {
        self.commits
            .range(..index)
            .next_back()
            .map(|(&i, c)| (i, c.as_str()))
    }

    /// What remains of prompt's phase budget (if it has one) and of the total.
    pub(crate) fn remaining(
        &self,
        phase: usize,
        plan: &Plan,
        config: &Config,
    ) -> budget::Remaining {
        let ph = &plan.phases[phase];
        budget::Remaining {
            phase: ph
                .budget
                .map(|b| (ph.name.clone(), b.saturating_sub(self.phase_spent[phase]))),
            total: config.budget.total.saturating_sub(self.total_spent),
        }
    }

    /// US dollars spent in `phase`.
    pub(crate) fn phase_cost(&self, phase: usize) -> f64 {
        self.phase_cost[phase]
    }

    /// The variables known before prompt `index`: config's constants, then the outputs of
    /// the completed prompts before it in plan order, later ones winning. Each prompt gets
    /// its own (prompts in flight at once need different ones).
    pub(crate) fn variables_before(
        index: usize,
        fold: &Fold,
        plan: &Plan,
        config: &Config,
    ) -> BTreeMap<String, Value> {
        let mut vars = config.variables.clone();
        for p in &plan.prompts[..index] {
            if let Some(out) = fold.variables.get(p.id.as_str()) {
                vars.extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        vars
    }
}
