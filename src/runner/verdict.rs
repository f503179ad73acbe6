//! What a reply means (docs, "What is sent", "Recovery rules"): accepted with its
//! checkpoint, or a content failure and why. A pure function of the reply and the plan, so
//! that every rule has a row in the table below.
//!
//! The bounds on outputs are there because outputs are state: they are journaled, shown in
//! `status.json` and substituted into later prompts, so nothing accepted may make the
//! session's own files unreadable (serde_json refuses documents nested past 128 levels) or
//! unbounded.

use serde_json::{Map, Value};

use super::events::Said;
use crate::checkpoint::{self, Checkpoint};
use crate::plan::{CheckpointMode, Plan, Prompt, PromptId};
use crate::providers::Finish;
use crate::state::Event;
use crate::template::lookup;
use crate::workspace::Extras;

/// Outputs may nest this deep (a list of objects of lists is 3).
pub(crate) const MAX_OUTPUT_DEPTH: usize = 32;
/// A prompt's outputs, serialized, may take this many bytes.
pub(crate) const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// A reply the protocol accepts: its checkpoint, and anything worth a warning.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Accepted {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) warning: Option<String>,
}

/// `accepted`'s outputs with the worktree `from` an attempt worked in (gone once its work
/// is merged) written as the workspace `to`, so that a path an agent reports still names
/// something.
pub(crate) fn relocate(accepted: &mut Accepted, from: &std::path::Path, to: &std::path::Path) {
    fn walk(v: &mut Value, from: &str, to: &str) {
        match v {
            Value::String(s) => {
                if let Some(moved) = crate::workspace::worktree::replace_path(s, from, to) {
                    *s = moved;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, from, to)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, from, to)),
            _ => {}
        }
    }
    let (Some(from), Some(to)) = (from.to_str(), to.to_str()) else {
        return;
    };
    let outputs = accepted.checkpoint.variables.values_mut();
    outputs.for_each(|v| walk(v, from, to));
}

/// The journal's completion of `prompt`, accepted with its reply `text` (copied to
/// `output`) and, in an agent build, its commit: with the acceptance's warning, if any.
pub(crate) fn completed(
    prompt: &Prompt,
    accepted: Accepted,
    text: &str,
    output: &str,
    commit: Option<(String, Extras)>,
) -> Said {
    let mut said = Said::default();
    let (commit, extras) = commit.map_or((None, None), |(c, e)| (Some(c), Some(e)));
    if let Some(warning) = accepted.warning {
        said.warnings.push(format!("{}: {warning}", prompt.id));
        said.events.push(Event::Warning {
            id: Some(prompt.id.to_string()),
            message: warning,
        });
    }
    said.events.push(Event::Completed {
        id: prompt.id.to_string(),
        name: prompt.name.clone(),
        file: prompt.file.clone(),
        hash: prompt.hash.clone(),
        variables: accepted.checkpoint.variables,
        files_created: accepted.checkpoint.files_created,
        output: output.to_string(),
        reply: text.to_string(),
        commit,
        extras,
    });
    said
}

/// Judges the reply `text` (ended by `finish`, asked for at most `max_tokens`) to prompt
/// `index` of `plan`. `Err` is a content failure: the reason, worded for the retry's note.
pub(crate) fn judge(
    plan: &Plan,
    index: usize,
    text: &str,
    finish: &Finish,
    max_tokens: u32,
) -> Result<Accepted, String> {
    let prompt = &plan.prompts[index];
    // Reasoning written inline (`<think>…</think>`) is not the answer.
    let text = checkpoint::split_thinking(text).1;
    match finish {
        Finish::Length if text.trim().is_empty() => {
            return Err(format!(
                "the reply is empty: the whole output (max_tokens {max_tokens}) went to reasoning before any answer; raise llm.max_tokens (or the prompt's max_tokens), or lower llm.reasoning_effort"
            ));
        }
        Finish::Length => {
            return Err(format!(
                "the reply was cut at the token limit (max_tokens {max_tokens}); answer more briefly so that the checkpoint block fits"
            ));
        }
        Finish::Refusal => return Err(format!("the model refused: {}", short(text))),
        Finish::ContentFilter => {
            return Err("the provider's content filter stopped the reply".into());
        }
        _ => {}
    }
    let Some(cp) = checkpoint::from_reply(text) else {
        return match prompt.checkpoint {
            CheckpointMode::Optional => Ok(Accepted {
                checkpoint: Checkpoint::default(),
                warning: None,
            }),
            CheckpointMode::Required => Err(format!(
                "the reply has no checkpoint block; end it with a fenced json block {{\"prompt\": \"{}\", \"success\": true, \"outputs\": {{...}}}}",
                prompt.name
            )),
        };
    };
    let warning = match names(plan, index, &cp) {
        Named::This | Named::Nothing => None,
        Named::Other(other) => {
            return Err(format!(
                "the checkpoint block names {other}, another prompt of this build; this is {}: answer for this prompt",
                prompt.name
            ));
        }
        Named::Unknown(named) => Some(format!(
            "the checkpoint block names {named:?}, not {}; accepted",
            prompt.name
        )),
    };
    if !cp.succeeded()? {
        let why = cp
            .variables
            .get("error")
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!("the checkpoint says \"success\": false{why}"));
    }
    check_outputs(&cp.variables)?;
    let missing: Vec<&str> = prompt
        .needed_later
        .iter()
        .map(String::as_str)
        .filter(|path| lookup(|name| cp.variables.get(name), path).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the checkpoint lacks outputs that later prompts need: {}",
            missing.join(", ")
        ));
    }
    Ok(Accepted {
        checkpoint: cp,
        warning,
    })
}

/// Outputs are values, bounded in depth and size.
fn check_outputs(outputs: &Map<String, Value>) -> Result<(), String> {
    if let Some((name, _)) = outputs.iter().find(|(_, v)| v.is_null()) {
        return Err(format!(
            "output `{name}` is null; give its real value (or leave it out if there is none)"
        ));
    }
    if let Some((name, _)) = outputs
        .iter()
        .find(|(_, v)| checkpoint::depth(v) > MAX_OUTPUT_DEPTH)
    {
        return Err(format!(
            "output `{name}` nests deeper than {MAX_OUTPUT_DEPTH} levels; give outputs as flat values"
        ));
    }
    let size = serde_json::to_vec(outputs).map_or(usize::MAX, |b| b.len());
    if size > MAX_OUTPUT_BYTES {
        return Err(format!(
            "the outputs take {size} bytes, more than {MAX_OUTPUT_BYTES}; give short values (paths, names, numbers), not file contents"
        ));
    }
    Ok(())
}

enum Named {
    Nothing,
    This,
    /// Another prompt of the plan (its name).
    Other(String),
    /// Something that is no prompt of the plan (a mock's fixed name, say).
    Unknown(String),
}

fn names(plan: &Plan, index: usize, cp: &Checkpoint) -> Named {
    let prompt = &plan.prompts[index];
    let Some(named) = cp.names.as_deref() else {
        return Named::Nothing;
    };
    let named = named.trim();
    let bare = named.strip_suffix(".md").unwrap_or(named);
    let same =
        bare == prompt.name || PromptId::split_prefix(bare).is_some_and(|(id, _)| id == prompt.id);
    if same {
        return Named::This;
    }
    match plan.find(bare) {
        Some(other) => Named::Other(plan.prompts[other].name.clone()),
        None => Named::Unknown(named.to_string()),
    }
}

fn short(text: &str) -> &str {
    crate::text::head(text.trim(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan of `01.1-first` (producing `greeting` and `paths`, both used later) and
    /// `01.2-second`, on disk in a temporary folder.
    fn plan() -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("prompts/01-a");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(
            p.join("01.1-first.md"),
            "# First\n\n## Checkpoint\n```json\n{\"prompt\": \"01.1-first\", \"outputs\": {\"greeting\": \"hi\", \"paths\": {\"src\": \"s\"}, \"extra\": 1}}\n```\n",
        )
        .expect("write");
        std::fs::write(
            p.join("01.2-second.md"),
            "# Second\n\nUse {{greeting}} and {{paths.src}}.\n",
        )
        .expect("write");
        let plan =
            Plan::load(&dir.path().join("prompts"), &Default::default()).expect("plan loads");
        (dir, plan)
    }

    fn block(v: Value) -> String {
        format!("Done.\n\n```json\n{v}\n```\n")
    }

    #[test]
    fn replies_and_what_they_mean() {
        let (_dir, plan) = plan();
        let deep = (0..40).fold(Value::from(1), |v, _| Value::Array(vec![v]));
        let good = serde_json::json!({"greeting": "hi", "paths": {"src": "/s"}});
        let cases: Vec<(&str, String, Finish, Result<(), &str>)> = vec![
            (
                "a good block",
                block(
                    serde_json::json!({"prompt": "01.1-first", "success": true, "outputs": good}),
                ),
                Finish::Stop,
                Ok(()),
            ),
            (
                "the seed's save shape",
                block(
                    serde_json::json!({"checkpoint": "01.1", "action": "save", "data": {"variables": good}}),
                ),
                Finish::Stop,
                Ok(()),
            ),
            (
                "cut at the limit",
                block(serde_json::json!({"prompt": "01.1-first", "outputs": good})),
                Finish::Length,
                Err("token limit"),
            ),
            (
                "all of the output spent on reasoning",
                "".into(),
                Finish::Length,
                Err("went to reasoning"),
            ),
            (
                "inline reasoning, then cut",
                "<think>long thoughts</think>\n".into(),
                Finish::Length,
                Err("went to reasoning"),
            ),
            (
                "inline reasoning holding a block, then the answer's",
                format!(
                    "<think>{}</think>\n{}",
                    block(
                        serde_json::json!({"prompt": "01.1-first", "success": false, "outputs": {"error": "a thought"}})
                    ),
                    block(
                        serde_json::json!({"prompt": "01.1-first", "success": true, "outputs": good})
                    )
                ),
                Finish::Stop,
                Ok(()),
            ),
            (
                "a block only in the reasoning",
                format!(
                    "<think>{}</think>\nDone.",
                    block(
                        serde_json::json!({"prompt": "01.1-first", "success": true, "outputs": good})
                    )
                ),
                Finish::Stop,
                Err("no checkpoint block"),
            ),
            (
                "a refusal",
                "I can't help with that.".into(),
                Finish::Refusal,
                Err("refused"),
            ),
            (
                "the content filter",
                "".into(),
                Finish::ContentFilter,
                Err("content filter"),
            ),
            (
                "no block",
                "All done!".into(),
                Finish::Stop,
                Err("no checkpoint block"),
            ),
            (
                "success false",
                block(
                    serde_json::json!({"prompt": "01.1-first", "success": false, "outputs": {"error": "disk full"}}),
                ),
                Finish::Stop,
                Err("disk full"),
            ),
            (
                "success as a string",
                block(
                    serde_json::json!({"prompt": "01.1-first", "success": "false", "outputs": good}),
                ),
                Finish::Stop,
                Err("\"success\" is \"false\""),
            ),
            (
                "a null output",
                block(
                    serde_json::json!({"prompt": "01.1-first", "outputs": {"greeting": null, "paths": {"src": "/s"}}}),
                ),
                Finish::Stop,
                Err("`greeting` is null"),
            ),
            (
                "another prompt's name",
                block(serde_json::json!({"prompt": "01.2-second", "outputs": good})),
                Finish::Stop,
                Err("names 01.2-second"),
            ),
            (
                "an output needed later missing",
                block(serde_json::json!({"prompt": "01.1-first", "outputs": {"greeting": "hi"}})),
                Finish::Stop,
                Err("paths.src"),
            ),
            (
                "a key inside an output needed later missing",
                block(
                    serde_json::json!({"prompt": "01.1-first", "outputs": {"greeting": "hi", "paths": {"bin": "/b"}}}),
                ),
                Finish::Stop,
                Err("paths.src"),
            ),
            (
                "an output nested too deep",
                block(
                    serde_json::json!({"prompt": "01.1-first", "outputs": {"greeting": "hi", "paths": {"src": "/s"}, "x": deep}}),
                ),
                Finish::Stop,
                Err("deeper than 32"),
            ),
            (
                "outputs too large",
                block(
                    serde_json::json!({"prompt": "01.1-first", "outputs": {"greeting": "x".repeat(300_000), "paths": {"src": "/s"}}}),
                ),
                Finish::Stop,
                Err("bytes"),
            ),
        ];
        for (name, text, finish, want) in cases {
            let got = judge(&plan, 0, &text, &finish, 100);
            match (want, got) {
                (Ok(()), Ok(_)) => {}
                (Err(needle), Err(reason)) => {
                    assert!(
                        reason.contains(needle),
                        "{name}: {reason:?} lacks {needle:?}"
                    )
                }
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_block_naming_no_prompt_of_the_build_is_accepted_with_a_warning() {
        let (_dir, plan) = plan();
        let text = block(
            serde_json::json!({"prompt": "map4-mock", "outputs": {"greeting": "hi", "paths": {"src": "/s"}}}),
        );
        let accepted = judge(&plan, 0, &text, &Finish::Stop, 100).expect("accepted");
        assert!(accepted.warning.is_some_and(|w| w.contains("map4-mock")),);
    }

    #[test]
    fn an_optional_checkpoint_may_be_left_out() {
        let (dir, auto) = plan();
        // `[run] checkpoint = "auto"`: 01.1 has a ## Checkpoint section, 01.2 has none and
        // no output a later prompt uses.
        assert!(judge(&auto, 0, "no block", &Finish::Stop, 100).is_err());
        assert!(judge(&auto, 1, "no block", &Finish::Stop, 100).is_ok());
        let required: crate::config::Config =
            toml::from_str("[run]\ncheckpoint = \"required\"\n").expect("config");
        let strict = Plan::load(&dir.path().join("prompts"), &required).expect("plan");
        assert!(judge(&strict, 1, "no block", &Finish::Stop, 100).is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("prompts/01-a");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(
            p.join("01.1-x.md"),
            "+++\ncheckpoint = \"optional\"\n+++\n# X\n\n## Checkpoint\n```json\n{\"prompt\": \"01.1-x\", \"outputs\": {}}\n```\n",
        )
        .expect("write");
        let plan = Plan::load(&dir.path().join("prompts"), &required).expect("plan");
        assert!(
            judge(&plan, 0, "no block", &Finish::Stop, 100).is_ok(),
            "front matter wins"
        );
    }
}
