//! A prompt of the plan, parsed (its text is read again, and checked, when a request is
//! built), and a phase.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use serde_json::Value;

use super::id::PromptId;
use super::prompt_file::{self, CheckpointMode, Footer, FrontMatter, Source};
use crate::error::{Error, Result};
use crate::template::Template;

/// One prompt file, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    pub(crate) id: PromptId,
    /// The file stem, `01.1-python-setup`.
    pub(crate) name: String,
    /// The file name, `01.1-python-setup.md`.
    pub(crate) file: String,
    pub(crate) path: PathBuf,
    /// Index into the plan's phases.
    pub(crate) phase: usize,
    pub(crate) front: FrontMatter,
    pub(crate) footer: Option<Footer>,
    pub(crate) checkpoint: CheckpointMode,
    /// Declared outputs with the example values shown in the `## Checkpoint` block.
    pub(crate) produces: BTreeMap<String, Value>,
    /// Why its checkpoint block is required or optional (for `plan`).
    pub(crate) checkpoint_why: &'static str,
    /// Where the placeholders are in the text to send (front matter removed).
    pub(crate) template: Template,
    /// Where that text is in the file.
    pub(crate) source: Source,
    /// Placeholder root names this prompt uses, in order of first use.
    pub(crate) needs: Vec<String>,
    /// The outputs of this prompt that a later prompt uses.
    pub(crate) needed_later: BTreeSet<String>,
    /// Prompts this one depends on: front matter `depends_on` and the producers of its needs.
    pub(crate) depends_on: Vec<usize>,
    /// sha256 of the file's bytes (of the text sent, when that is part of the file), to
    /// tell when a prompt changed after it ran.
    pub(crate) hash: String,
    /// The shell blocks of its `## Validation` section, as written (for `plan`; a run
    /// takes them from the prompt as sent).
    pub(crate) validation: Vec<String>,
}

impl Prompt {
    /// The text to send, read again from the file. An error if it changed since the plan
    /// was made: its placeholders may have moved.
    pub(crate) fn read_body(&self) -> Result<String> {
        let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let changed = || {
            Error::Usage(format!(
                "{}: the file changed while orchestrator was running; run the command again to plan it anew",
                self.path.display()
            ))
        };
        let body = match &self.source {
            Source::File { offset } => {
                if prompt_file::sha256_hex(&bytes) != self.hash {
                    return Err(changed());
                }
                bytes
                    .get(*offset..)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map(str::to_string)
            }
            Source::Parts(ranges) => std::str::from_utf8(&bytes)
                .ok()
                .map(|text| prompt_file::joined(text, ranges).0),
        };
        let body = body.ok_or_else(changed)?;
        if matches!(self.source, Source::Parts(_))
            && prompt_file::sha256_hex(body.as_bytes()) != self.hash
        {
            return Err(changed());
        }
        Ok(body)
    }

    /// The text to send with its placeholders filled in.
    pub(crate) fn render(
        &self,
        vars: &BTreeMap<String, Value>,
    ) -> Result<std::result::Result<String, Vec<String>>> {
        let body = self.read_body()?;
        Ok(self.template.render(&body, vars))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Phase {
    pub(crate) dir: String,
    pub(crate) name: String,
    pub(crate) budget: Option<u64>,
    /// Whether config lists this folder in `[[phases]]`.
    pub(crate) configured: bool,
    /// The phase's prompts, as a range of the plan's prompts.
    pub(crate) prompts: Range<usize>,
}
