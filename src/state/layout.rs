//! The checkpoints folder's layout: its files' names, and the journal's schema version.

/// The version of the journal's records (and of `status.json`).
pub(crate) const SCHEMA_VERSION: u32 = 1;

pub(crate) const JOURNAL: &str = "journal.jsonl";
pub(crate) const STATUS: &str = "status.json";
pub(crate) const MEMORY: &str = "memory.json";
pub(crate) const LOCK: &str = ".lock";
pub(crate) const OUTPUTS: &str = "outputs";
pub(crate) const ARCHIVE: &str = "archive";
