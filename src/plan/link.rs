//! Judging each prompt against the rest of the plan: its placeholders against what config
//! and earlier prompts define (a name nothing defines, a malformed name, a dotted name that
//! cannot be rendered, a name only a later prompt declares), its `depends_on`, and what it
//! must return for the prompts after it. Errors are collected, not returned at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::discover::{Found, file_name, stem};
use super::id::PromptId;
use super::prompt::Prompt;
use super::prompt_file::CheckpointMode;
use super::prompt_file::RawPrompt;
use crate::config::Config;
use crate::error::PlanError;
use crate::template::{Segment, Template, Unknown, lookup, root_name};

/// Turns files read in run order into prompts, remembering who declares what.
pub(super) struct Linker<'a> {
    config: &'a Config,
    /// Each variable's latest producer so far (an index into the prompts).
    producer: BTreeMap<String, usize>,
    /// Placeholders nothing declared when their prompt was read, judged at the end.
    unknowns: Vec<(PathBuf, Unknown)>,
}

impl<'a> Linker<'a> {
    pub(crate) fn new(config: &'a Config) -> Linker<'a> {
        Linker {
            config,
            producer: BTreeMap::new(),
            unknowns: Vec::new(),
        }
    }

    /// The prompt for `found`, read as `raw`, after the `earlier` ones.
    pub(crate) fn link(
        &mut self,
        found: Found,
        raw: RawPrompt,
        earlier: &[Prompt],
        errors: &mut Vec<PlanError>,
    ) -> Prompt {
        let config = self.config;
        let producer = &self.producer;
        let known = |name: &str| {
            let root = root_name(name);
            config.variables.contains_key(name)
                || config.variables.contains_key(root)
                || producer.contains_key(root)
                || producer.contains_key(name)
        };
        let (template, unknown) = template_of(&raw, &known);
        self.unknowns
            .extend(unknown.into_iter().map(|u| (found.path.clone(), u)));
        for segment in &template.segments {
            if let Segment::Var { name, line } = segment
                && let Some(message) = path_problem(name, config, &self.producer, earlier)
            {
                errors.push(PlanError {
                    path: found.path.clone(),
                    line: Some(*line),
                    message,
                });
            }
        }
        let mut needs: Vec<String> = Vec::new();
        for name in template.names() {
            let root = root_name(name).to_string();
            if !needs.contains(&root) {
                needs.push(root);
            }
        }
        let mut depends_on: BTreeSet<usize> = needs
            .iter()
            .filter_map(|n| self.producer.get(n).copied())
            .collect();
        for (dep, line) in &raw.front.depends_on {
            match PromptId::parse(dep.trim()).and_then(|id| earlier.iter().position(|p| p.id == id))
            {
                Some(i) => {
                    depends_on.insert(i);
                }
                None => errors.push(PlanError {
                    path: found.path.clone(),
                    line: Some(*line),
                    message: format!(
                        "depends_on names {dep:?}, which is not the id of an earlier prompt"
                    ),
                }),
            }
        }
        for name in raw.produces.keys() {
            self.producer.insert(name.clone(), earlier.len());
        }
        let (name, file) = match &found.section {
            Some(section) => (
                section.name.clone(),
                format!("{}#{}", file_name(&found.path), section.name),
            ),
            None => (stem(&found.path).to_string(), file_name(&found.path)),
        };
        Prompt {
            id: found.id,
            file,
            name,
            path: found.path,
            phase: found.phase,
            front: raw.front,
            footer: raw.footer,
            // Settled once every prompt is read (`checkpoint_modes`).
            checkpoint: CheckpointMode::Required,
            checkpoint_why: if raw.has_checkpoint {
                CHECKPOINT_SECTION
            } else {
                ""
            },
            produces: raw.produces,
            template,
            source: raw.source,
            needs,
            needed_later: BTreeSet::new(),
            depends_on: depends_on.into_iter().collect(),
            hash: raw.hash,
            validation: raw.validation,
        }
    }

    /// Judges the placeholders nothing declared when they were read, now that every
    /// declaration is known: errors outside code blocks, notes inside.
    pub(crate) fn finish(
        self,
        prompts: &[Prompt],
        errors: &mut Vec<PlanError>,
        notes: &mut Vec<String>,
    ) {
        for (path, u) in self.unknowns {
            match judge_unknown(&u, prompts) {
                Judged::Text(why) => notes.push(format!(
                    "{}:{}: {{{{{}}}}} in a code block {why}; it is sent as written",
                    path.display(),
                    u.line,
                    u.name
                )),
                Judged::Error(message) => errors.push(PlanError {
                    path,
                    line: Some(u.line),
                    message,
                }),
            }
        }
    }
}

enum Judged {
    /// Text in a code block (why it is no placeholder).
    Text(&'static str),
    Error(String),
}

fn judge_unknown(u: &Unknown, prompts: &[Prompt]) -> Judged {
    if u.malformed {
        return if u.in_code {
            Judged::Text("is not a variable name")
        } else {
            Judged::Error(format!(
                "placeholder {{{{{}}}}} is not a variable name (letters, digits and `_`, with `.` only between keys); fix it, or write \\{{{{{}}}}} to send it as text",
                u.name, u.name
            ))
        };
    }
    let later = prompts
        .iter()
        .find(|p| p.produces.contains_key(root_name(&u.name)));
    match later {
        None if u.in_code => Judged::Text("is no known variable"),
        Some(later) => Judged::Error(format!(
            "placeholder {{{{{}}}}} uses a variable that only a later prompt declares ({}); prompts run in order, so move the prompt or the declaration",
            u.name,
            later.path.display()
        )),
        None => Judged::Error(format!(
            "placeholder {{{{{}}}}}: {UNDEFINED}{}` and config's [variables] does not define it; declare it in an earlier prompt's ## Checkpoint outputs, add it to [variables], or write \\{{{{{}}}}} to send it as text",
            u.name,
            root_name(&u.name),
            u.name
        )),
    }
}

/// How a plan error about a variable nothing defines says so, just before the name.
const UNDEFINED: &str = "no earlier prompt declares `";

/// The variable a plan error says nothing defines (for `init`, which adds it to
/// `[variables]`); `None` for any other error.
pub(crate) fn undefined_variable(message: &str) -> Option<&str> {
    let rest = &message[message.find(UNDEFINED)? + UNDEFINED.len()..];
    rest.split('`').next()
}

/// Why a prompt's checkpoint is required when it has a `## Checkpoint` section.
const CHECKPOINT_SECTION: &str = "## Checkpoint";

/// The placeholders of a prompt's text, found piece by piece (each with its own first
/// line in the file), as one template over the text.
fn template_of(raw: &RawPrompt, known: &dyn Fn(&str) -> bool) -> (Template, Vec<Unknown>) {
    let mut segments = Vec::new();
    let mut unknowns = Vec::new();
    let mut at = 0;
    for part in &raw.parts {
        if part.range.start > at {
            segments.push(Segment::Text(at..part.range.start));
        }
        let text = raw.body.get(part.range.clone()).unwrap_or_default();
        let (template, unknown) = Template::parse(text, known, &part.code, part.first_line);
        let shift = part.range.start;
        segments.extend(template.segments.into_iter().map(|s| match s {
            Segment::Text(r) => Segment::Text(r.start + shift..r.end + shift),
            var => var,
        }));
        unknowns.extend(unknown);
        at = part.range.end;
    }
    if at < raw.body.len() {
        segments.push(Segment::Text(at..raw.body.len()));
    }
    (Template { segments }, unknowns)
}

/// Each prompt's checkpoint rule, and why: its front matter, else its footer, else
/// `[run] checkpoint`; under `"auto"` (the default), required for a prompt with a
/// `## Checkpoint` section or whose outputs a later prompt uses, optional for the rest.
pub(super) fn checkpoint_modes(prompts: &mut [Prompt], config: &Config) {
    use crate::config::CheckpointRule;
    for p in prompts {
        let (mode, why) = match (
            p.front.checkpoint,
            p.footer.as_ref().and_then(|f| f.checkpoint),
            config.run.checkpoint,
        ) {
            (Some(m), _, _) => (m, "front matter"),
            (None, Some(m), _) => (m, "footer"),
            (None, None, CheckpointRule::Required) => {
                (CheckpointMode::Required, "[run] checkpoint")
            }
            (None, None, CheckpointRule::Optional) => {
                (CheckpointMode::Optional, "[run] checkpoint")
            }
            (None, None, CheckpointRule::Auto) if p.checkpoint_why == CHECKPOINT_SECTION => {
                (CheckpointMode::Required, CHECKPOINT_SECTION)
            }
            (None, None, CheckpointRule::Auto) if !p.needed_later.is_empty() => {
                (CheckpointMode::Required, "outputs used later")
            }
            (None, None, CheckpointRule::Auto) => (CheckpointMode::Optional, "auto"),
        };
        p.checkpoint = mode;
        p.checkpoint_why = why;
    }
}

/// What each prompt must return: the outputs (and keys inside them) later prompts use.
pub(super) fn mark_needed_later(prompts: &mut [Prompt]) {
    let mut used_later: BTreeSet<String> = BTreeSet::new();
    for p in prompts.iter_mut().rev() {
        p.needed_later = used_later
            .iter()
            .filter(|name| p.produces.contains_key(root_name(name)))
            .cloned()
            .collect();
        used_later.extend(p.template.names().map(str::to_string));
    }
}

/// Why a dotted placeholder (`{{paths.src}}`) cannot be rendered, if what defines its root
/// shows that it cannot: config's value lacks the key, or the producing prompt's example
/// is an object without it. A producer whose example is not an object cannot be checked
/// here; its reply is checked when it is accepted.
fn path_problem(
    name: &str,
    config: &Config,
    producer: &BTreeMap<String, usize>,
    prompts: &[Prompt],
) -> Option<String> {
    let root = root_name(name);
    if root == name || config.variables.contains_key(name) {
        return None;
    }
    if let Some(&i) = producer.get(root) {
        let p = &prompts[i];
        let example = p.produces.get(root)?;
        if !example.is_object() || lookup(|n| p.produces.get(n), name).is_some() {
            return None;
        }
        return Some(format!(
            "placeholder {{{{{name}}}}}: {} declares `{root}` without that key (its example: {example}); add the key to its ## Checkpoint example, or use a key it has",
            p.file
        ));
    }
    let value = config.variables.get(root)?;
    if lookup(|n| config.variables.get(n), name).is_some() {
        return None;
    }
    Some(format!(
        "placeholder {{{{{name}}}}}: config's [variables] defines `{root}` ({value}) but not `{name}`; a dotted name reads keys of objects (arrays are not indexed)"
    ))
}
