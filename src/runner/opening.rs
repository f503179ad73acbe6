//! What happens before a run's loop: whether the session in `checkpoints/` goes on or is
//! set aside (a restart, a mock session meeting a real endpoint), which prompts the mock
//! fails, accepted outputs rewritten from the journal, a new session and its id, the
//! attempts a crash left open settled, and the prompts to take on.

use std::path::Path;

use super::context::{Context, Selection};
use super::events::{Observer, RunEvent, Said};
use crate::config::Pricing;
use crate::documents::AttemptOutcome;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::process::Mark;
use crate::providers::Provider;
use crate::state::{self, AttemptResult, Event, Fold, Store};

/// Why the session in `checkpoints/` is archived before this run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Retire {
    /// `run --restart`.
    Restart,
    /// A mock session met a real endpoint.
    Mock,
}

/// Whether the session in `fold` must be set aside before this run: a mock session meets a
/// real endpoint (it is archived). A real session meeting the mock is refused: the two
/// are never mixed, and a real session is not archived unasked.
pub(super) fn apart(fold: &Fold, provider: &Provider) -> Result<bool> {
    if fold.session_id.is_empty() || fold.mock == provider.is_mock() {
        return Ok(false);
    }
    if fold.mock {
        return Ok(true);
    }
    Err(Error::Usage(format!(
        "checkpoints/ holds session {}, run against a real endpoint; --mock would mix the two. `run --mock --restart` archives it first, or give the mock its own folder with --checkpoints DIR",
        fold.session_id
    )))
}

/// The prompts `[mock] fail` lists, as plan indices, but for those that failed already:
/// the run that meets a listed prompt fails it, and the next `run` or `rerun` of it passes.
pub(super) fn mock_failures(
    ctx: Context<'_>,
    fold: &Fold,
) -> Result<std::collections::HashSet<usize>> {
    let mut out = std::collections::HashSet::new();
    for id in &ctx.config.mock.fail {
        let index = ctx.plan.resolve(id).map_err(|e| {
            Error::Usage(format!(
                "`mock.fail` names {id:?}, which is not a prompt of the build ({e})"
            ))
        })?;
        if !fold
            .failed
            .iter()
            .any(|f| *f == ctx.plan.prompts[index].id.as_str())
        {
            out.insert(index);
        }
    }
    Ok(out)
}

/// Rewrites, from the journal, the output of any completed prompt whose file is missing
/// (outputs are written without fsync; a crash can lose one, never its journal record).
pub(super) fn restore_outputs(
    store: &Store,
    fold: &Fold,
    records: &[state::Record],
    observer: &dyn Observer,
) -> Result<()> {
    for id in &fold.completed {
        let Some(output) = fold.prompts.get(id).and_then(|p| p.output.as_deref()) else {
            continue;
        };
        if store.dir.join(output).is_file() {
            continue;
        }
        let reply = records.iter().rev().find_map(|r| match &r.event {
            Event::Completed { id: rid, reply, .. } if rid == id => Some(reply),
            _ => None,
        });
        if let Some(reply) = reply {
            store.write_copy(output, reply.as_bytes())?;
            observer.event(RunEvent::Note(&format!(
                "{output} was missing; rewritten from the journal"
            )));
        }
    }
    Ok(())
}

/// A new session, with the seed's id (one-second resolution: a session started within the
/// second another was archived gets a suffix, so that no two sessions share an id).
pub(super) fn new_session(checkpoints: &Path, mock: bool) -> Event {
    let started = state::now();
    let base = session_id(&started);
    let archive = checkpoints.join(state::ARCHIVE);
    let mut session_id = base.clone();
    let mut n = 1;
    while archive.join(&session_id).exists() {
        n += 1;
        session_id = format!("{base}-{n}");
    }
    Event::SessionStarted {
        session_id,
        started,
        mock,
    }
}

/// The attempts journaled as started with no result: the runner died mid-request. Each
/// may have been billed, so it is counted at its worst case, and its prompt is sent again;
/// an agent's process group that outlived the runner, and every process the attempt
/// started that still carries its mark, are killed first.
pub(super) fn settle_open_attempts(fold: &Fold, pricing: Option<Pricing>, agent: bool) -> Said {
    let mut said = Said::default();
    for o in &fold.open {
        if let Some(group) = &o.group
            && group.kill_if_left()
        {
            said.warnings.push(format!(
                "{} attempt {}: the agent's process group {} was still running after the runner stopped; it was killed",
                o.id, o.attempt, group.pgid
            ));
        }
        if let Some(mark) = &o.mark {
            let killed = Mark(mark.clone()).kill_all();
            if killed > 0 {
                said.warnings.push(format!(
                    "{} attempt {}: {killed} process{} it started outlived the runner; killed",
                    o.id,
                    o.attempt,
                    if killed == 1 { "" } else { "es" }
                ));
            }
        }
        let worst = o.input_tokens.saturating_add(u64::from(o.max_tokens));
        // Its cost at the same worst case: [pricing]'s figure for it, and for an agent at
        // least the most one agent call has cost.
        let priced = pricing.map_or(0.0, |p| {
            p.cost(o.input_tokens, u64::from(o.max_tokens), 0, 0)
        });
        let cost_usd = if agent {
            priced.max(fold.largest_agent_cost)
        } else {
            priced
        };
        said.warnings.push(format!(
            "{} attempt {}: no result was recorded (the runner stopped mid-request); it is possibly billed and counted at its worst case ({worst} tokens, {})",
            o.id,
            o.attempt,
            crate::text::usd(cost_usd)
        ));
        said.events.push(Event::AttemptFinished(AttemptResult {
            id: o.id.clone(),
            attempt: o.attempt,
            outcome: AttemptOutcome::Unknown,
            input_tokens: o.input_tokens,
            output_tokens: u64::from(o.max_tokens),
            estimated: true,
            error: Some("possibly billed: no result was recorded".into()),
            cost_usd,
            by_agent: agent,
            ..AttemptResult::default()
        }));
    }
    said
}

/// The prompts `selection` takes on (indices into the plan), with a note when it names
/// one that is already completed.
pub(super) fn todo(fold: &Fold, plan: &Plan, selection: Selection) -> (Vec<usize>, Option<String>) {
    let done = |i: usize| fold.done.contains(plan.prompts[i].id.as_str());
    match selection {
        Selection::Resume { from, until } => ((from..=until).filter(|&i| !done(i)).collect(), None),
        Selection::Only(i) if done(i) => (
            Vec::new(),
            Some(format!(
                "{} is already completed; `orchestrator rerun {}` runs it again",
                plan.prompts[i].id, plan.prompts[i].id
            )),
        ),
        Selection::Only(i) => (vec![i], None),
        Selection::Again { from, until } => ((from..=until).collect(), None),
    }
}

/// `rerun`: its prompts reopened first, journaled, so that a rerun cut short (even by
/// `kill -9`) is finished by the next `run` rather than forgotten.
pub(super) fn reopen_for_rerun(fold: &Fold, plan: &Plan, todo: &[usize]) -> Option<Event> {
    let ids: Vec<String> = todo
        .iter()
        .map(|&i| &plan.prompts[i].id)
        .filter(|id| fold.done.contains(id.as_str()))
        .map(|id| id.to_string())
        .collect();
    (!ids.is_empty()).then(|| Event::Reopened {
        ids,
        reason: "`orchestrator rerun` runs it again; `orchestrator run` finishes a rerun cut short"
            .into(),
    })
}

/// The seed's session id format, `%Y%m%d_%H%M%S`, from an RFC 3339 time.
pub(super) fn session_id(rfc3339: &str) -> String {
    let digits: String = rfc3339
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    if digits.len() == 14 {
        format!("{}_{}", &digits[..8], &digits[8..])
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_use_the_seed_format() {
        assert_eq!(session_id("2026-11-25T08:44:09.123Z"), "20261125_084409");
    }

    #[test]
    fn an_attempt_a_crash_cut_is_counted_at_its_worst_case_in_tokens_and_in_dollars() {
        // 100 in, max_tokens 1000, $1000 per million either way: $1.10. An agent's
        // attempt costs at least the most one agent call has cost ($2.50 here).
        let mut fold = Fold::default();
        fold.open.push(crate::state::OpenAttempt {
            id: "01.1".into(),
            attempt: 1,
            input_tokens: 100,
            max_tokens: 1000,
            ..Default::default()
        });
        fold.largest_agent_cost = 2.5;
        let pricing = Pricing {
            input_per_mtok: 1000.0,
            output_per_mtok: 1000.0,
            cache_read_per_mtok: None,
            cache_write_per_mtok: None,
        };
        for (name, pricing, agent, want) in [
            ("a request, priced", Some(pricing), false, 1.1),
            ("an agent call: its largest cost", Some(pricing), true, 2.5),
            ("a request, no pricing", None, false, 0.0),
        ] {
            let said = settle_open_attempts(&fold, pricing, agent);
            let Some(Event::AttemptFinished(r)) = said.events.first() else {
                panic!("{name}: no result");
            };
            assert_eq!((r.input_tokens, r.output_tokens), (100, 1000), "{name}");
            assert!((r.cost_usd - want).abs() < 1e-9, "{name}: {}", r.cost_usd);
        }
    }
}
