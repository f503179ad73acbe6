//! The plan: a build's prompt files, in run order, each parsed once.
//!
//! Everything that can be wrong with a build on disk is found here, before anything is
//! sent, and all of it (not just the first) is reported with path and line: the layout
//! ([`discover`]: a prompt outside a phase folder, two files with one id), each file on its
//! own ([`prompt_file`]: not UTF-8, bad front matter, an empty prompt), and each prompt
//! against the rest ([`link`]: placeholders, `depends_on`). Ids are in [`id`], a parsed
//! prompt and a phase in [`prompt`].
//!
//! The plan keeps no prompt text: templates hold ranges, and a prompt's file is read again
//! (and checked against its hash) when its request is built, so that a plan of a thousand
//! prompts stays small.

mod discover;
mod graph;
mod id;
mod link;
mod prompt;
mod prompt_file;

use std::path::{Path, PathBuf};

pub(crate) use discover::{FLAT, phase_folders, phase_name_from_dir};
pub(crate) use graph::Graph;
pub(crate) use id::PromptId;
pub(crate) use link::undefined_variable;
pub(crate) use prompt::{Phase, Prompt};
pub(crate) use prompt_file::{CheckpointMode, parse_prompt_bytes};

use crate::config::Config;
use crate::error::{Error, PlanError, Result};

/// Config's variables that are empty (`""`) and used by prompts: each prompt would be sent
/// with nothing where the value goes (an `init` placeholder left to fill in).
fn empty_variables(config: &Config, prompts: &[Prompt]) -> Vec<String> {
    config
        .variables
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|s| s.trim().is_empty()))
        .filter_map(|(name, _)| {
            let users: Vec<&str> = prompts
                .iter()
                .filter(|p| p.needs.iter().any(|n| n == name))
                .map(|p| p.id.as_str())
                .collect();
            (!users.is_empty()).then(|| {
                format!(
                    "`{name}` is empty ([variables] in the config) and {} {}: fill it in, or {} sent with nothing where it goes",
                    users.join(", "),
                    if users.len() == 1 { "uses it" } else { "use it" },
                    if users.len() == 1 { "that prompt is" } else { "those prompts are" }
                )
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) root: PathBuf,
    pub(crate) phases: Vec<Phase>,
    pub(crate) prompts: Vec<Prompt>,
    /// `.md` files and folders that are not prompts or phases.
    pub(crate) ignored: Vec<PathBuf>,
    /// Things worth saying that are not errors.
    pub(crate) notes: Vec<String>,
    /// Things a user should see before anything is sent (variables that render empty).
    pub(crate) warnings: Vec<String>,
}

impl Plan {
    /// Reads the prompts folder `root` under `config`.
    pub(crate) fn load(root: &Path, config: &Config) -> Result<Plan> {
        let found = discover::discover(root, config)?;
        let (mut phases, ignored) = (found.phases, found.ignored);
        let (mut errors, mut notes) = (found.errors, found.notes);
        // One pass in run order: each file is read, parsed and dropped.
        let mut linker = link::Linker::new(config);
        let mut prompts: Vec<Prompt> = Vec::new();
        for f in found.found {
            let raw = match &f.section {
                Some(section) => prompt_file::RawPrompt::section(
                    &f.path,
                    section.block.clone(),
                    section.first_line,
                ),
                None => prompt_file::RawPrompt::read(&f.path, config.prompts.send),
            };
            match raw {
                Err(e) => errors.push(e),
                Ok(raw) => {
                    notes.extend(
                        raw.notes
                            .iter()
                            .map(|n| format!("{}: {n}", f.path.display())),
                    );
                    let prompt = linker.link(f, raw, &prompts, &mut errors);
                    prompts.push(prompt);
                }
            }
        }
        linker.finish(&prompts, &mut errors, &mut notes);
        link::mark_needed_later(&mut prompts);
        link::checkpoint_modes(&mut prompts, config);
        if errors.is_empty() && prompts.is_empty() {
            errors.push(PlanError {
                path: root.to_path_buf(),
                line: None,
                message: "no prompt files found; a build is prompts/NN-phase/NN.M-name.md (e.g. prompts/01-foundation/01.1-setup.md)".into(),
            });
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
            return Err(Error::Plan(errors));
        }
        for (i, phase) in phases.iter_mut().enumerate() {
            let start = prompts.iter().position(|p| p.phase == i).unwrap_or(0);
            let len = prompts.iter().filter(|p| p.phase == i).count();
            phase.prompts = if len == 0 { 0..0 } else { start..start + len };
            if len == 0 {
                notes.push(format!("phase folder {}/ has no prompts", phase.dir));
            }
        }
        let warnings = empty_variables(config, &prompts);
        Ok(Plan {
            root: root.to_path_buf(),
            phases,
            prompts,
            ignored,
            notes,
            warnings,
        })
    }
    /// Finds a prompt by id (`02.3`, `2.3`), name (`02.3-name`) or file name.
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        let key = key.trim();
        let key = key.strip_suffix(".md").unwrap_or(key);
        let id = PromptId::split_prefix(key).map(|(id, _)| id);
        self.prompts.iter().position(|p| {
            p.name == key || (PromptId::parse(key).is_some() && Some(&p.id) == id.as_ref())
        })
    }

    /// Like [`Plan::find`], as a usage error that lists what exists.
    pub(crate) fn resolve(&self, key: &str) -> Result<usize> {
        self.find(key).ok_or_else(|| {
            Error::Usage(format!(
                "no prompt has the id {key:?}; `orchestrator plan` lists them ({} … {})",
                self.prompts.first().map_or("", |p| p.id.as_str()),
                self.prompts.last().map_or("", |p| p.id.as_str())
            ))
        })
    }
}
