//! What happens before a run's loop: whether the session in `checkpoints/` goes on or is
//! set aside (a restart, a mock session meeting a real endpoint), which prompts the mock
//! fails, accepted outputs rewritten from the journal, and a new session's id.

use super::Context;
use super::{Observer, RunEvent};
use crate::error::{Error, Result};
use crate::providers::Provider;
use crate::state::{self, Event, Fold, Store};

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
}
