//! What every command works from, made once from the command line: the config (loaded and
//! checked), where the prompts and the checkpoints are, and how to talk to the user.
//! Commands never see clap's types (`cli` makes this and hands it down).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::Result;
use crate::plan::Plan;
use crate::printer::Printer;

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) config_path: PathBuf,
    pub(crate) config_dir: PathBuf,
    pub(crate) prompts: PathBuf,
    pub(crate) checkpoints: PathBuf,
    pub(crate) printer: Printer,
}

/// Where things are, as the command line gave them (`None`: the defaults).
pub(crate) struct Locations {
    pub(crate) config: Option<PathBuf>,
    pub(crate) prompts: Option<PathBuf>,
    pub(crate) checkpoints: Option<PathBuf>,
}

impl Settings {
    /// Loads the config (`config.toml` in the current folder unless named; a missing one
    /// is an error only when named) and finds the prompts (`--prompts`, else
    /// `project.prompts`, else `prompts/` beside it) and `checkpoints/` beside it.
    pub(crate) fn load(at: Locations, printer: Printer) -> Result<Settings> {
        let explicit = at.config.is_some();
        let config_path = at.config.unwrap_or_else(|| PathBuf::from("config.toml"));
        let config = crate::config::load(&config_path, explicit)?;
        let config_dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(Settings {
            prompts: at
                .prompts
                .or_else(|| config.project.prompts.clone())
                .unwrap_or_else(|| config_dir.join("prompts")),
            checkpoints: at
                .checkpoints
                .unwrap_or_else(|| config_dir.join("checkpoints")),
            config,
            config_path,
            config_dir,
            printer,
        })
    }

    /// The plan, with its notes said.
    pub(crate) fn load_plan(&self) -> Result<Plan> {
        let plan = Plan::load(&self.prompts, &self.config)?;
        for note in &plan.notes {
            self.printer.note(note);
        }
        for warning in &plan.warnings {
            self.printer.warn(warning);
        }
        Ok(plan)
    }
}
