//! State in `checkpoints/`: the journal ([`journal`]), the same folded ([`fold`]), the
//! folder a runner writes ([`store`], holding [`lock`]), and a read-only look for commands
//! that run beside it ([`snapshot`]). The views of the journal (`status.json`,
//! `memory.json`) are in [`crate::views`], above the budgets they show.

mod fold;
mod journal;
mod lock;
mod snapshot;
mod store;
mod workspace_fold;

pub(crate) use fold::Fold;
pub(crate) use journal::{
    AttemptResult, Event, Record, each_record, now, parse_journal, read_journal,
};
pub(crate) use snapshot::{Snapshot, check_status_file};
pub(crate) use store::{Store, write_atomic};
pub(crate) use workspace_fold::Expected;

pub(crate) const SCHEMA_VERSION: u32 = 1;
pub(crate) const JOURNAL: &str = "journal.jsonl";
pub(crate) const STATUS: &str = "status.json";
pub(crate) const MEMORY: &str = "memory.json";
pub(crate) const LOCK: &str = ".lock";
pub(crate) const OUTPUTS: &str = "outputs";
pub(crate) const ARCHIVE: &str = "archive";
