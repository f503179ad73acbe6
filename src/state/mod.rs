//! State in `checkpoints/`: the journal ([`journal`]), the same folded ([`fold`]), the
//! folder a runner writes ([`store`], holding [`lock`]), and a read-only look for commands
//! that run beside it ([`reading`]). The views of the journal (`status.json`,
//! `memory.json`) are in [`crate::views`], above the budgets they show.

mod fold;
mod journal;
mod layout;
mod lock;
mod reading;
mod store;
mod workspace_fold;

pub(crate) use fold::Fold;
#[cfg(test)]
pub(crate) use fold::OpenAttempt;
pub(crate) use journal::{AttemptResult, Event, Record, each_record, now, parse_journal};
pub(crate) use layout::{ARCHIVE, JOURNAL, MEMORY, OUTPUTS, SCHEMA_VERSION, STATUS};
pub(crate) use reading::Reading;
pub(crate) use store::{Store, write_atomic};
pub(crate) use workspace_fold::Expected;
