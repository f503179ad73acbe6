//! What is sent for a prompt (docs, "What is sent"), built in exactly one place so that
//! `estimate` counts what `run` sends.
//!
//! A request is a system message (the context recall: project, phase, prompt, the previous
//! prompt, the variables so far as JSON, and the checkpoint protocol; then the files of
//! `[context] files`) and a user message (the prompt with its placeholders filled in). With
//! `[context] history`, earlier prompts and their accepted replies go before it as the
//! conversation's earlier turns, the oldest dropped first past `[context] max_tokens`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::config::{Config, ContextVariables, History};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::template::Template;
use crate::tokens::{CHAT_OVERHEAD_PER_MESSAGE, CHAT_OVERHEAD_REPLY, Encoding};

/// The built-in context recall. `[llm].system_template` replaces it; the same names are
/// available there. (With `[context] history`, the sentence about no chat history goes.)
pub(crate) const DEFAULT_SYSTEM_TEMPLATE: &str = "\
You are an expert software engineer building the project {{project}}, one prompt at a time, \
unattended. There is no chat history: this message is your memory of the build so far.

Phase: {{phase}}
Prompt: {{prompt}}
Previous prompt: {{previous_prompt}}
Variables (JSON): {{variables}}

Do the task in the user message completely. Then end your reply with one fenced json block, \
the checkpoint, with the real value of every output:
```json
{\"prompt\": \"{{prompt}}\", \"success\": true, \"outputs\": {{outputs}}}
```
If you could not complete the task, set \"success\": false and give the reason as \"error\" \
in \"outputs\".
";

/// The names a system template may use.
pub(crate) const SYSTEM_TEMPLATE_NAMES: [&str; 7] = [
    "project",
    "phase",
    "prompt",
    "prompt_id",
    "previous_prompt",
    "variables",
    "outputs",
];

/// Why a request could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// Placeholders with no value yet (the prompts that produce them have not completed).
    Missing(Vec<String>),
    /// The prompt file cannot be read again, or changed since the plan was made.
    Prompt(Error),
}

/// An earlier prompt and its accepted reply, carried as history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Turn {
    pub(crate) user: String,
    pub(crate) assistant: String,
}

/// One request, provider-neutral.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// Index into the plan's prompts.
    pub(crate) prompt: usize,
    /// The prompt's name (`01.1-python-setup`) and the outputs it must return.
    pub(crate) name: String,
    pub(crate) outputs: Vec<String>,
    pub(crate) model: String,
    pub(crate) system: String,
    pub(crate) user: String,
    /// Where a retry's note starts in `user`: before it, the prompt as rendered.
    pub(crate) note_at: usize,
    /// What config or front matter asks for; the runner caps it to the budgets.
    pub(crate) max_tokens: u32,
    /// Unset: not sent.
    pub(crate) temperature: Option<f64>,
    pub(crate) stream: bool,
    /// Earlier turns, oldest first (`[context] history`).
    pub(crate) history: Vec<Turn>,
}

/// Builds requests for one plan under one config.
pub(crate) struct RequestBuilder<'a> {
    config: &'a Config,
    plan: &'a Plan,
    system_text: String,
    system: Template,
    /// `[context] files`, as they go at the end of the system message.
    context_files: String,
    pub(crate) encoding: Encoding,
}

impl Request {
    /// The prompt as rendered, without a retry's note: where checks are taken from.
    pub(crate) fn prompt_text(&self) -> &str {
        self.user.get(..self.note_at).unwrap_or(&self.user)
    }

    /// The conversation after the system message: the earlier turns, then this prompt,
    /// as (role, text).
    pub(crate) fn messages(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::with_capacity(2 * self.history.len() + 1);
        for turn in &self.history {
            out.push(("user", turn.user.as_str()));
            out.push(("assistant", turn.assistant.as_str()));
        }
        out.push(("user", self.user.as_str()));
        out
    }
}

impl<'a> RequestBuilder<'a> {
    /// `config_dir` resolves a relative `system_template` path.
    pub(crate) fn new(config: &'a Config, plan: &'a Plan, config_dir: &Path) -> Result<Self> {
        let (system_text, path) = match &config.llm.system_template {
            None => (
                DEFAULT_SYSTEM_TEMPLATE.to_string(),
                Path::new("(built-in)").to_path_buf(),
            ),
            Some(file) => {
                let path = config_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
                    path: path.clone(),
                    line: None,
                    message: format!("`llm.system_template`: cannot read the template: {e}"),
                })?;
                (text, path)
            }
        };
        let system_text = if config.context.history == History::None {
            system_text
        } else {
            system_text.replace(
                "There is no chat history: this message is your memory of the build so far.",
                "The conversation so far holds the earlier prompts of the build and your replies.",
            )
        };
        let system = system_template(&system_text, &path)?;
        let context_files = context_files(config)?;
        let encoding = config
            .tokenizer
            .encoding
            .unwrap_or_else(|| Encoding::for_model(config.llm.model()));
        Ok(RequestBuilder {
            config,
            plan,
            system_text,
            system,
            context_files,
            encoding,
        })
    }

    /// Config's constants merged with each earlier prompt's variables, later ones winning.
    /// `outputs(i)` gives the variables prompt `i` produced (or, for an estimate, declared).
    pub(crate) fn variables_before<'v>(
        &self,
        index: usize,
        outputs: impl Fn(usize) -> Option<&'v serde_json::Map<String, Value>>,
    ) -> BTreeMap<String, Value> {
        let mut vars: BTreeMap<String, Value> = self.config.variables.clone();
        for i in 0..index {
            if let Some(out) = outputs(i) {
                vars.extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        vars
    }

    /// The request for prompt `index` given the variables known before it. `retry_note`
    /// (why the last attempt failed) is appended to the user message on a retry.
    pub(crate) fn build(
        &self,
        index: usize,
        vars: &BTreeMap<String, Value>,
        retry_note: Option<&str>,
    ) -> std::result::Result<Request, BuildError> {
        let prompt = &self.plan.prompts[index];
        let mut user = prompt
            .render(vars)
            .map_err(BuildError::Prompt)?
            .map_err(BuildError::Missing)?;
        let note_at = user.len();
        if let Some(note) = retry_note {
            user.push_str("\n\n---\n");
            user.push_str(note);
            user.push('\n');
        }
        let phase = &self.plan.phases[prompt.phase];
        let previous = index.checked_sub(1).map_or_else(
            || "none (this is the first prompt)".to_string(),
            |i| self.plan.prompts[i].file.clone(),
        );
        let outputs: serde_json::Map<String, Value> = prompt
            .produces
            .keys()
            .map(|k| (k.clone(), Value::from("...")))
            .collect();
        let context: BTreeMap<String, Value> = [
            ("project", Value::from(self.config.project.name.clone())),
            (
                "phase",
                Value::from(format!("{} ({})", phase.name, phase.dir)),
            ),
            ("prompt", Value::from(prompt.name.clone())),
            ("prompt_id", Value::from(prompt.id.to_string())),
            ("previous_prompt", Value::from(previous)),
            ("variables", Value::from(self.recall_variables(index, vars))),
            ("outputs", Value::from(Value::Object(outputs).to_string())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut system = self
            .system
            .render(&self.system_text, &context)
            .expect("system template names are checked when it is loaded");
        system.push_str(&self.context_files);
        Ok(Request {
            note_at,
            prompt: index,
            name: prompt.name.clone(),
            outputs: prompt.produces.keys().cloned().collect(),
            model: prompt
                .front
                .model
                .clone()
                .unwrap_or_else(|| self.config.llm.model().to_string()),
            system,
            user,
            max_tokens: prompt
                .front
                .max_tokens
                .unwrap_or(self.config.llm.max_tokens),
            temperature: self.config.llm.temperature,
            stream: self.config.llm.stream,
            history: Vec::new(),
        })
    }

    /// The earlier prompts whose turns prompt `index` may carry, newest first.
    pub(crate) fn history_sources(&self, index: usize) -> Vec<usize> {
        match self.config.context.history {
            History::None => Vec::new(),
            History::Previous => index.checked_sub(1).into_iter().collect(),
            History::All => (0..index).rev().collect(),
        }
    }

    /// Prompt `index`'s text as it was sent (with `vars`) and its accepted `reply`: one
    /// turn of history; `None` when it cannot be rendered.
    pub(crate) fn turn(
        &self,
        index: usize,
        vars: &BTreeMap<String, Value>,
        reply: String,
    ) -> Option<Turn> {
        let user = self.plan.prompts[index].render(vars).ok()?.ok()?;
        Some(Turn {
            user,
            assistant: reply,
        })
    }

    /// Adds `turns` (newest first) to `request` as its history, while the history counts
    /// at most `limit` tokens; the newest turn always goes. The tokens added.
    pub(crate) fn add_history(
        &self,
        request: &mut Request,
        turns: impl IntoIterator<Item = Turn>,
        limit: u64,
    ) -> u64 {
        let mut used = 0;
        let mut kept = Vec::new();
        for turn in turns {
            let cost = self.turn_tokens(&turn);
            if !kept.is_empty() && used + cost > limit {
                break;
            }
            used += cost;
            kept.push(turn);
        }
        kept.reverse();
        request.history = kept;
        used
    }

    /// Drops `request`'s oldest turns until it counts at most `limit` tokens or only the
    /// newest turn is left; its count.
    pub(crate) fn fit_history(&self, request: &mut Request, limit: u64) -> u64 {
        let mut counted = self.input_tokens(request);
        while counted > limit && request.history.len() > 1 {
            let oldest = request.history.remove(0);
            counted = counted.saturating_sub(self.turn_tokens(&oldest));
        }
        counted
    }

    /// A turn's tokens: both messages and their chat overhead.
    pub(crate) fn turn_tokens(&self, turn: &Turn) -> u64 {
        self.encoding.count(&turn.user)
            + self.encoding.count(&turn.assistant)
            + 2 * CHAT_OVERHEAD_PER_MESSAGE
    }

    /// The variables the context recall shows, as JSON (`llm.context_variables`).
    fn recall_variables(&self, index: usize, vars: &BTreeMap<String, Value>) -> String {
        let shown: serde_json::Map<String, Value> = match self.config.llm.context_variables {
            ContextVariables::All => vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ContextVariables::Used => {
                let needs = &self.plan.prompts[index].needs;
                vars.iter()
                    .filter(|(k, _)| needs.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
        };
        Value::Object(shown).to_string()
    }

    /// Input tokens of a request: every message and the chat format's overhead.
    pub(crate) fn input_tokens(&self, request: &Request) -> u64 {
        self.encoding.count(&request.system)
            + self.encoding.count(&request.user)
            + 2 * CHAT_OVERHEAD_PER_MESSAGE
            + CHAT_OVERHEAD_REPLY
            + request
                .history
                .iter()
                .map(|t| self.turn_tokens(t))
                .sum::<u64>()
    }
}

/// `[context] files`, read, as the end of the system message.
fn context_files(config: &Config) -> Result<String> {
    let mut out = String::new();
    for path in &config.context.files {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.clone(),
            line: None,
            message: format!(
                "`context.files` names this file, which cannot be read ({e}); fix the path (relative to config.toml)"
            ),
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        out.push_str(&format!("\n\n## {name}\n\n{}", text.trim_end()));
    }
    if !out.is_empty() {
        out.insert_str(0, "\n\nContext for every prompt of the build:");
        out.push('\n');
    }
    Ok(out)
}

fn system_template(text: &str, path: &Path) -> Result<Template> {
    let known = |name: &str| SYSTEM_TEMPLATE_NAMES.contains(&name);
    let (template, unknown) = Template::parse(text, &known, &[], 1);
    if let Some(u) = unknown.first() {
        return Err(Error::Config {
            path: path.to_path_buf(),
            line: Some(u.line),
            message: format!(
                "the system template uses {{{{{}}}}}; it may use {}",
                u.name,
                SYSTEM_TEMPLATE_NAMES
                    .map(|n| format!("{{{{{n}}}}}"))
                    .join(", ")
            ),
        });
    }
    Ok(template)
}

/// Why the placeholders `missing` ([`BuildError::Missing`]) could not be filled from `vars`,
/// and what to do.
pub(crate) fn missing_reason(vars: &BTreeMap<String, Value>, missing: &[String]) -> String {
    let (present, absent): (Vec<&String>, Vec<&String>) = missing
        .iter()
        .partition(|m| vars.contains_key(crate::template::root_name(m)));
    let mut parts = Vec::new();
    if !absent.is_empty() {
        parts.push(format!(
            "it needs {} but no completed prompt produced {}; run the prompts that declare them first",
            absent.iter().map(|m| format!("{{{{{m}}}}}")).collect::<Vec<_>>().join(", "),
            if absent.len() == 1 { "it" } else { "them" },
        ));
    }
    for m in present {
        let root = crate::template::root_name(m);
        parts.push(format!(
            "{{{{{m}}}}}: `{root}` has no such key (its value: {}); rerun the prompt that produces `{root}`",
            crate::text::head(&vars[root].to_string(), 200)
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_template_uses_only_known_names() {
        let t = system_template(DEFAULT_SYSTEM_TEMPLATE, Path::new("x")).expect("valid");
        let names: Vec<_> = t.names().collect();
        assert!(names.contains(&"variables"));
        assert!(names.contains(&"outputs"));
    }

    #[test]
    fn an_unknown_name_in_a_custom_template_is_a_config_error() {
        let err = system_template("line one\nHello {{whoever}}\n", Path::new("system.md"))
            .expect_err("unknown name");
        let msg = err.to_string();
        assert!(msg.starts_with("system.md:2:"), "{msg}");
        assert!(msg.contains("{{whoever}}"), "{msg}");
    }
}
