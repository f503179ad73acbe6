//! What a run is given: the build it works on ([`Context`]) and how it goes ([`Options`]).

use std::path::Path;

use crate::config::Config;
use crate::plan::Plan;

/// What a run works on.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) config: &'a Config,
    /// The config file (a workspace holding it never snapshots it).
    pub(crate) config_file: &'a Path,
    /// Where `config.toml` is: a relative `llm.system_template` is found from here.
    pub(crate) config_dir: &'a Path,
    pub(crate) plan: &'a Plan,
    pub(crate) checkpoints: &'a Path,
    /// What goes on once the user has raised a budget that refused a request, as a
    /// refusal advises it: "`orchestrator run` continues", or for a `rerun` (where `run`
    /// would find nothing to do) "`orchestrator rerun 01.1` goes on".
    pub(crate) go_on: &'a str,
}

/// Which prompts a run takes on (indices into the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// What is left, from/until a prompt.
    Resume { from: usize, until: usize },
    /// One prompt (if not completed).
    Only(usize),
    /// Prompts run again whatever their state (`rerun`).
    Again { from: usize, until: usize },
}

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) selection: Selection,
    /// Archive the session (as it is) and start a new one.
    pub(crate) restart: bool,
    /// Take changes found in the workspace at start into a commit rather than refuse.
    pub(crate) allow_dirty: bool,
    /// `run` or `rerun`, for the journal.
    pub(crate) command: &'static str,
}
