//! `orchestrator`: runs a chain of LLM prompt files unattended, inside hard token budgets,
//! with a checkpoint after every prompt. README.md is the user's guide; this is the map.
//!
//! The house, in layers: each module uses only those above it in this list, and no two
//! modules use each other (`tests/it/architecture.rs` checks both).
//!
//! 1. Leaves: [`error`] (errors and exit codes), [`documents`] (the typed model of
//!    everything scripts read: `status.json`, `report --json`, `run --json`), [`text`]
//!    (numbers, durations, money and cut text as people read them), [`tokens`] (tiktoken
//!    counts), [`template`] (the placeholder engine), [`checkpoint`] (the protocol's json blocks),
//!    [`process`] (children in process groups that die with the runner, the attempt's
//!    mark, the scrubbed environment), [`lockfile`] (a lock that names its holder).
//! 2. [`config`], then [`plan`] (the build on disk: ids, prompt files, discovery, checks)
//!    and [`workspace`] (the folder an agent builds in, snapshotted with git, and the
//!    boundary between what the runner owns and what it never touches).
//! 3. [`request`] (what is sent, built in one place) and [`verify`] (the checks that
//!    decide a prompt), then [`providers`] (sending it: OpenAI chat completions and the
//!    Responses API, Anthropic, an agent CLI; what a server says about waiting; settings an
//!    endpoint refuses, learned).
//! 4. [`state`] (the journal, folded; the folder a runner writes; the lock).
//! 5. [`budget`] (the check and the ledger), [`estimate`] (the dry run), then [`views`]
//!    (`status.json` and `memory.json`, above both state and budget) and [`history`] (a
//!    session's attempts from its journal, for the report).
//! 6. [`runner`] (the run loop, an attempt's steps, the workspace and checks around it,
//!    and its pure pieces: retry, verdict, accounting, tally), reporting through its own
//!    event type.
//! 7. [`tables`] (the tables and text commands print, and `plan --json`) and [`printer`]
//!    (stdout and stderr), then [`report`] (`report.html` and `report --json`), [`settings`]
//!    (what commands work from), [`commands`] (one file per command), and
//!    [`cli`] (clap only), which `main` calls.
//!
//! Everything else is `pub(crate)`: outside the crate there is the binary (through
//! [`main_entry`]), the fuzz targets (through [`fuzzing`]) and the tests, which read the
//! binary's documents back into [`documents`]' types.

mod budget;
mod checkpoint;
mod cli;
mod commands;
mod config;
pub mod documents;
mod error;
mod estimate;
pub mod fuzzing;
mod history;
mod lockfile;
mod plan;
mod printer;
mod process;
mod providers;
mod report;
mod request;
mod runner;
mod settings;
mod state;
mod tables;
mod template;
mod text;
mod tokens;
mod verify;
mod views;
mod workspace;

/// Parses the arguments, runs the command, prints any error; the process's exit code.
pub fn main_entry() -> i32 {
    cli::main_entry()
}
