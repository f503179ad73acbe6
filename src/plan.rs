//! The plan: a build's prompt files, in run order, each parsed once (spec, "A build on disk",
//! "Prompt files").
//!
//! Everything that can be wrong with a build on disk is found here, before anything is sent:
//! duplicate ids, prompts outside a phase folder, files that are not UTF-8, bad front matter,
//! `depends_on` naming no earlier prompt, and placeholders that nothing declares. All are
//! collected (not just the first) and reported with path and line.
//!
//! Placeholders are found by [`crate::template`]; here they are judged against what config
//! and earlier prompts define. Inside a fenced or indented code block, a name that no prompt
//! declares and config does not define is text (Jinja's `{{ track.title }}`), and `plan`
//! notes it; outside code it is an error, as is a dotted name (`{{deep.l1.zz}}`) that what
//! defines its root shows cannot be rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{self, Checkpoint};
use crate::config::Config;
use crate::error::{Error, PlanError, Result, line_of};
use crate::template::{Segment, Template, Unknown, is_identifier, lookup, root_name};

/// A prompt id: the numeric prefix of a file name, compared part by part as numbers.
#[derive(Debug, Clone)]
pub struct PromptId {
    text: String,
    parts: Vec<u64>,
}

impl PromptId {
    /// Parses `01.2`, `7`, `02.10` (digits and dots, nothing else).
    pub fn parse(text: &str) -> Option<PromptId> {
        let (id, rest) = PromptId::split_prefix(text)?;
        rest.is_empty().then_some(id)
    }

    /// Splits a numeric prefix off a file or folder stem: `01.2-dependencies` gives
    /// (`01.2`, `-dependencies`). The prefix must be followed by nothing, `-`, `_` or a space.
    pub fn split_prefix(stem: &str) -> Option<(PromptId, &str)> {
        let bytes = stem.as_bytes();
        let mut end = 0;
        let mut parts = Vec::new();
        loop {
            let start = end;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return None;
            }
            parts.push(stem[start..end].parse::<u64>().ok()?);
            if end + 1 < bytes.len() && bytes[end] == b'.' && bytes[end + 1].is_ascii_digit() {
                end += 1;
            } else {
                break;
            }
        }
        let rest = &stem[end..];
        if rest.is_empty() || rest.starts_with(['-', '_', ' ']) {
            Some((
                PromptId {
                    text: stem[..end].to_string(),
                    parts,
                },
                rest,
            ))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for PromptId {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}
impl Eq for PromptId {}
impl PartialOrd for PromptId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PromptId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts.cmp(&other.parts)
    }
}
impl std::fmt::Display for PromptId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointMode {
    Required,
    Optional,
}

/// TOML front matter between `+++` lines at the top of a prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrontMatter {
    pub max_tokens: Option<u32>,
    pub model: Option<String>,
    /// Ids of earlier prompts, each with the line it is written on.
    pub depends_on: Vec<(String, usize)>,
    pub checkpoint: Option<CheckpointMode>,
}

/// The front matter as written, with where each value is (for errors with lines).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenFront {
    max_tokens: Option<toml::Spanned<u32>>,
    model: Option<toml::Spanned<String>>,
    #[serde(default)]
    depends_on: Vec<toml::Spanned<String>>,
    checkpoint: Option<CheckpointMode>,
}

impl WrittenFront {
    /// Checks the values; `line(offset)` is the file line of a byte in the TOML text.
    fn check(
        self,
        line: impl Fn(usize) -> usize,
    ) -> std::result::Result<FrontMatter, (usize, String)> {
        if let Some(m) = &self.max_tokens
            && *m.get_ref() == 0
        {
            return Err((
                line(m.span().start),
                "front matter: max_tokens = 0 asks for no reply; give at least 1 (or leave it out for llm.max_tokens)".into(),
            ));
        }
        if let Some(m) = &self.model
            && m.get_ref().trim().is_empty()
        {
            return Err((
                line(m.span().start),
                "front matter: model is empty; name a model (or leave it out for llm.model)".into(),
            ));
        }
        Ok(FrontMatter {
            max_tokens: self.max_tokens.map(toml::Spanned::into_inner),
            model: self.model.map(toml::Spanned::into_inner),
            depends_on: self
                .depends_on
                .into_iter()
                .map(|d| (line(d.span().start), d.into_inner()))
                .map(|(l, d)| (d, l))
                .collect(),
            checkpoint: self.checkpoint,
        })
    }
}

/// The seed's footer: `*Tokens: ~2000 | Time: 5 min | Checkpoint: Required*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Footer {
    pub tokens: Option<u64>,
    pub minutes: Option<f64>,
    pub checkpoint: Option<CheckpointMode>,
}

impl Footer {
    /// Reads the footer from the last few non-empty lines of a prompt.
    pub fn parse(text: &str) -> Option<Footer> {
        text.lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .find_map(Footer::parse_line)
    }

    fn parse_line(line: &str) -> Option<Footer> {
        let inner = line.trim().trim_matches(|c| c == '*' || c == '_').trim();
        let mut footer = Footer::default();
        let mut found = false;
        for field in inner.split('|') {
            let Some((key, value)) = field.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "tokens" => {
                    found = true;
                    footer.tokens = parse_token_hint(value);
                }
                "time" => {
                    found = true;
                    footer.minutes = parse_minutes(value);
                }
                "checkpoint" => {
                    found = true;
                    footer.checkpoint = match value.to_ascii_lowercase().as_str() {
                        "optional" | "no" | "none" | "disabled" => Some(CheckpointMode::Optional),
                        _ => Some(CheckpointMode::Required),
                    };
                }
                _ => {}
            }
        }
        found.then_some(footer)
    }
}

fn parse_token_hint(value: &str) -> Option<u64> {
    let v: String = value
        .trim_start_matches(['~', '≈', '<'])
        .chars()
        .filter(|c| *c != ',' && *c != '_' && !c.is_whitespace())
        .collect();
    let v = v.to_ascii_lowercase();
    match v.strip_suffix('k') {
        Some(k) => k.parse::<f64>().ok().map(|n| (n * 1000.0).round() as u64),
        None => v.parse().ok(),
    }
}

fn parse_minutes(value: &str) -> Option<f64> {
    let v = value.trim_start_matches(['~', '≈']).trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let n: f64 = v[..split].parse().ok()?;
    let unit = v[split..].trim().to_ascii_lowercase();
    let factor = match unit.as_str() {
        "" | "m" | "min" | "mins" | "minute" | "minutes" => 1.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 60.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0 / 60.0,
        _ => return None,
    };
    Some(n * factor)
}

/// One prompt file, parsed.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub id: PromptId,
    /// The file stem, `01.1-python-setup`.
    pub name: String,
    /// The file name, `01.1-python-setup.md`.
    pub file: String,
    pub path: PathBuf,
    /// Index into [`Plan::phases`].
    pub phase: usize,
    pub front: FrontMatter,
    pub footer: Option<Footer>,
    pub checkpoint: CheckpointMode,
    /// Declared outputs with the example values shown in the `## Checkpoint` block.
    pub produces: BTreeMap<String, Value>,
    /// Where the placeholders are in the text to send (front matter removed).
    pub template: Template,
    /// Where that text starts in the file.
    pub body_offset: usize,
    /// Placeholder root names this prompt uses, in order of first use.
    pub needs: Vec<String>,
    /// The outputs of this prompt that a later prompt uses.
    pub needed_later: BTreeSet<String>,
    /// Prompts this one depends on: front matter `depends_on` and the producers of its needs.
    pub depends_on: Vec<usize>,
    /// sha256 of the file's bytes, to tell when a prompt changed after it ran.
    pub hash: String,
}

impl Prompt {
    /// The text to send (front matter removed), read again from the file. An error if the
    /// file changed since the plan was made: its placeholders may have moved.
    pub fn read_body(&self) -> Result<String> {
        let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        if sha256_hex(&bytes) != self.hash {
            return Err(Error::Usage(format!(
                "{}: the file changed while orchestrator was running; run the command again to plan it anew",
                self.path.display()
            )));
        }
        bytes
            .get(self.body_offset..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{}: cannot read the prompt again",
                    self.path.display()
                ))
            })
    }

    /// The text to send with its placeholders filled in.
    pub fn render(
        &self,
        vars: &BTreeMap<String, Value>,
    ) -> Result<std::result::Result<String, Vec<String>>> {
        let body = self.read_body()?;
        Ok(self.template.render(&body, vars))
    }
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub dir: String,
    pub name: String,
    pub budget: Option<u64>,
    /// Whether config lists this folder in `[[phases]]`.
    pub configured: bool,
    /// The phase's prompts, as a range of [`Plan::prompts`].
    pub prompts: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub root: PathBuf,
    pub phases: Vec<Phase>,
    pub prompts: Vec<Prompt>,
    /// `.md` files and folders that are not prompts or phases.
    pub ignored: Vec<PathBuf>,
    /// Things worth saying that are not errors.
    pub notes: Vec<String>,
}

struct Found {
    id: PromptId,
    path: PathBuf,
    phase: usize,
}

impl Plan {
    /// Reads the prompts folder `root` under `config`.
    pub fn load(root: &Path, config: &Config) -> Result<Plan> {
        let mut errors = Vec::new();
        let mut ignored = Vec::new();
        let mut notes = Vec::new();
        let entries = read_dir_sorted(root).map_err(|e| {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => "the prompts folder does not exist; create it (prompts/NN-phase/NN.M-name.md) or pass --prompts DIR",
                std::io::ErrorKind::NotADirectory => "is a file, not a folder of prompts; pass --prompts the folder that holds the phase folders",
                _ => return Error::io(root, e),
            };
            Error::Plan(vec![PlanError {
                path: root.to_path_buf(),
                line: None,
                message: message.into(),
            }])
        })?;

        // Phase folders, by their number.
        let mut phase_dirs: Vec<(PromptId, String, PathBuf)> = Vec::new();
        for path in entries {
            let name = file_name(&path);
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                match PromptId::split_prefix(&name) {
                    Some((num, _)) => phase_dirs.push((num, name, path)),
                    None => ignored.push(path),
                }
            } else if is_markdown(&path) {
                if PromptId::split_prefix(stem(&path)).is_some() {
                    errors.push(PlanError {
                        path: path.clone(),
                        line: None,
                        message: "a prompt outside any phase folder; move it into a phase folder such as prompts/01-foundation/".into(),
                    });
                } else {
                    ignored.push(path);
                }
            }
        }
        phase_dirs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));

        let mut phases = Vec::new();
        let mut found: Vec<Found> = Vec::new();
        for (phase_index, (_, dir, path)) in phase_dirs.into_iter().enumerate() {
            let configured = config.phase(&dir);
            if configured.is_none() {
                notes.push(format!(
                    "phase folder {dir}/ is not in config's [[phases]]: it runs as {:?} with no phase budget of its own",
                    phase_name_from_dir(&dir)
                ));
            }
            let entries = read_dir_sorted(&path).map_err(|e| Error::io(&path, e))?;
            for entry in entries {
                let name = file_name(&entry);
                if name.starts_with('.') {
                    continue;
                }
                if entry.is_dir() {
                    ignored.push(entry);
                    continue;
                }
                if !is_markdown(&entry) {
                    continue;
                }
                match PromptId::split_prefix(stem(&entry)) {
                    Some((id, _)) => found.push(Found {
                        id,
                        path: entry,
                        phase: phase_index,
                    }),
                    None => ignored.push(entry),
                }
            }
            phases.push(Phase {
                name: configured
                    .and_then(|p| p.name.clone())
                    .unwrap_or_else(|| phase_name_from_dir(&dir)),
                budget: configured.and_then(|p| p.budget),
                configured: configured.is_some(),
                dir,
                prompts: 0..0,
            });
        }
        for listed in &config.phases {
            if !phases.iter().any(|p| p.dir == listed.dir) {
                notes.push(format!(
                    "config lists phase folder {:?}, which is not in {}",
                    listed.dir,
                    root.display()
                ));
            }
        }

        // Order: phases by number, prompts by id within their phase.
        found.sort_by(|a, b| a.phase.cmp(&b.phase).then_with(|| a.id.cmp(&b.id)));
        let mut seen: BTreeMap<PromptId, PathBuf> = BTreeMap::new();
        for f in &found {
            if let Some(first) = seen.get(&f.id) {
                errors.push(PlanError {
                    path: f.path.clone(),
                    line: None,
                    message: format!(
                        "id {} is also the id of {}; give each prompt its own number",
                        f.id,
                        first.display()
                    ),
                });
            } else {
                seen.insert(f.id.clone(), f.path.clone());
            }
        }

        // One pass in run order: each file is read, parsed and dropped (the plan keeps no
        // prompt text). Placeholders nothing earlier declares are judged at the end, once
        // every declaration is known.
        let mut prompts: Vec<Prompt> = Vec::new();
        let mut producer: BTreeMap<String, usize> = BTreeMap::new();
        let mut unknowns: Vec<(PathBuf, Unknown)> = Vec::new();
        for f in found {
            let r = match RawPrompt::read(&f.path) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            notes.extend(r.notes.iter().map(|n| format!("{}: {n}", f.path.display())));
            let index = prompts.len();
            let known = |name: &str| {
                let root = root_name(name);
                config.variables.contains_key(name)
                    || config.variables.contains_key(root)
                    || producer.contains_key(root)
                    || producer.contains_key(name)
            };
            let (template, unknown) =
                Template::parse(&r.body, &known, &r.code_blocks, r.body_first_line);
            unknowns.extend(unknown.into_iter().map(|u| (f.path.clone(), u)));
            for segment in &template.segments {
                if let Segment::Var { name, line } = segment
                    && let Some(message) = path_problem(name, config, &producer, &prompts)
                {
                    errors.push(PlanError {
                        path: f.path.clone(),
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
                .filter_map(|n| producer.get(n).copied())
                .collect();
            for (dep, line) in &r.front.depends_on {
                match PromptId::parse(dep.trim())
                    .and_then(|id| prompts.iter().position(|p: &Prompt| p.id == id))
                {
                    Some(i) => {
                        depends_on.insert(i);
                    }
                    None => errors.push(PlanError {
                        path: f.path.clone(),
                        line: Some(*line),
                        message: format!(
                            "depends_on names {dep:?}, which is not the id of an earlier prompt"
                        ),
                    }),
                }
            }
            let checkpoint = r
                .front
                .checkpoint
                .or(r.footer.as_ref().and_then(|f| f.checkpoint))
                .unwrap_or(CheckpointMode::Required);
            for name in r.produces.keys() {
                producer.insert(name.clone(), index);
            }
            prompts.push(Prompt {
                id: f.id.clone(),
                file: file_name(&f.path),
                name: stem(&f.path).to_string(),
                path: f.path,
                phase: f.phase,
                front: r.front,
                footer: r.footer,
                checkpoint,
                produces: r.produces,
                template,
                body_offset: r.body_offset,
                needs,
                needed_later: BTreeSet::new(),
                depends_on: depends_on.into_iter().collect(),
                hash: r.hash,
            });
        }
        for (path, u) in unknowns {
            if u.malformed {
                if u.in_code {
                    notes.push(format!(
                        "{}:{}: {{{{{}}}}} in a code block is not a variable name; it is sent as written",
                        path.display(),
                        u.line,
                        u.name
                    ));
                } else {
                    errors.push(PlanError {
                        path,
                        line: Some(u.line),
                        message: format!(
                            "placeholder {{{{{}}}}} is not a variable name (letters, digits and `_`, with `.` only between keys); fix it, or write \\{{{{{}}}}} to send it as text",
                            u.name, u.name
                        ),
                    });
                }
                continue;
            }
            let later = prompts
                .iter()
                .find(|p| p.produces.contains_key(root_name(&u.name)))
                .map(|p| p.path.clone());
            if u.in_code && later.is_none() {
                notes.push(format!(
                    "{}:{}: {{{{{}}}}} in a code block is no known variable; it is sent as written",
                    path.display(),
                    u.line,
                    u.name
                ));
                continue;
            }
            let message = match later {
                Some(later) => format!(
                    "placeholder {{{{{}}}}} uses a variable that only a later prompt declares ({}); prompts run in order, so move the prompt or the declaration",
                    u.name,
                    later.display()
                ),
                None => format!(
                    "placeholder {{{{{}}}}}: no earlier prompt declares `{}` and config's [variables] does not define it; declare it in an earlier prompt's ## Checkpoint outputs, add it to [variables], or write \\{{{{{}}}}} to send it as text",
                    u.name,
                    root_name(&u.name),
                    u.name
                ),
            };
            errors.push(PlanError {
                path,
                line: Some(u.line),
                message,
            });
        }

        // What each prompt must return: the outputs (and keys inside them) later prompts use.
        let mut used_later: BTreeSet<String> = BTreeSet::new();
        for p in prompts.iter_mut().rev() {
            p.needed_later = used_later
                .iter()
                .filter(|name| p.produces.contains_key(root_name(name)))
                .cloned()
                .collect();
            used_later.extend(p.template.names().map(str::to_string));
        }

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
        Ok(Plan {
            root: root.to_path_buf(),
            phases,
            prompts,
            ignored,
            notes,
        })
    }

    /// Finds a prompt by id (`02.3`, `2.3`), name (`02.3-name`) or file name.
    pub fn find(&self, key: &str) -> Option<usize> {
        let key = key.trim();
        let key = key.strip_suffix(".md").unwrap_or(key);
        let id = PromptId::split_prefix(key).map(|(id, _)| id);
        self.prompts.iter().position(|p| {
            p.name == key || (PromptId::parse(key).is_some() && Some(&p.id) == id.as_ref())
        })
    }

    /// Like [`Plan::find`], as a usage error that lists what exists.
    pub fn resolve(&self, key: &str) -> Result<usize> {
        self.find(key).ok_or_else(|| {
            Error::Usage(format!(
                "no prompt has the id {key:?}; `orchestrator plan` lists them ({} … {})",
                self.prompts.first().map_or("", |p| p.id.as_str()),
                self.prompts.last().map_or("", |p| p.id.as_str())
            ))
        })
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

/// Parses one prompt file's bytes as `plan` would (front matter, footer, checkpoint
/// section, placeholders), with no other prompt declaring anything: for fuzzing and
/// property tests. Returns the placeholder names found, or the file's error.
pub fn parse_prompt_bytes(bytes: &[u8]) -> std::result::Result<Vec<String>, PlanError> {
    let raw = RawPrompt::parse(Path::new("fuzz.md"), bytes)?;
    let known = |name: &str| raw.produces.contains_key(root_name(name));
    let (template, unknown) =
        Template::parse(&raw.body, &known, &raw.code_blocks, raw.body_first_line);
    let _ = template.render(&raw.body, &BTreeMap::new());
    Ok(unknown.into_iter().map(|u| u.name).collect())
}

/// What one file says, before placeholders are resolved against the plan.
struct RawPrompt {
    front: FrontMatter,
    footer: Option<Footer>,
    produces: BTreeMap<String, Value>,
    body: String,
    body_offset: usize,
    body_first_line: usize,
    code_blocks: Vec<Range<usize>>,
    hash: String,
    notes: Vec<String>,
}

impl RawPrompt {
    fn read(path: &Path) -> std::result::Result<RawPrompt, PlanError> {
        let bytes = std::fs::read(path).map_err(|e| PlanError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        RawPrompt::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> std::result::Result<RawPrompt, PlanError> {
        let err = |line: Option<usize>, message: String| PlanError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let hash = sha256_hex(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            err(
                Some(line),
                format!(
                    "not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
                    e.valid_up_to()
                ),
            )
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);

        let (front, body, body_first_line) =
            split_front_matter(text).map_err(|(l, m)| err(Some(l), m))?;
        if body.trim().is_empty() {
            return Err(err(
                Some(body_first_line),
                "the prompt is empty: there is nothing to send; write the task below the front matter, or delete the file".into(),
            ));
        }
        let footer = Footer::parse(body);
        let (blocks, headings) = checkpoint::outline(body);
        let code_blocks = blocks.iter().map(|b| b.range.clone()).collect();

        let mut notes = Vec::new();
        let mut produces = BTreeMap::new();
        if let Some(h) = headings
            .iter()
            .position(|h| h.text.trim().to_ascii_lowercase().starts_with("checkpoint"))
        {
            let heading = &headings[h];
            let section_end = headings[h + 1..]
                .iter()
                .find(|n| n.level <= heading.level)
                .map_or(body.len(), |n| n.start);
            if let Some(block) = blocks.iter().find(|b| {
                b.range.start > heading.start && b.range.start < section_end && b.is_json()
            }) {
                let line = body_first_line + line_of(body, block.range.start) - 1;
                match serde_json::from_str::<Value>(&block.content) {
                    Ok(value) => match Checkpoint::from_value(&value) {
                        Some(cp) => produces = cp.variables.into_iter().collect(),
                        None => notes.push(format!(
                            "line {line}: the checkpoint block has neither a \"prompt\" nor a \"checkpoint\" key; it declares no outputs"
                        )),
                    },
                    Err(e) => notes.push(format!(
                        "line {}: the checkpoint block is not valid JSON ({e}); it declares no outputs",
                        line + e.line()
                    )),
                }
            }
        }
        for name in produces.keys() {
            if !is_identifier(name) {
                return Err(err(
                    None,
                    format!(
                        "the checkpoint block declares {name:?}, which is not a variable name (letters, digits, `_`, `.`)"
                    ),
                ));
            }
        }
        Ok(RawPrompt {
            front,
            footer,
            produces,
            body_offset: bytes.len() - body.len(),
            body: body.to_string(),
            body_first_line,
            code_blocks,
            hash,
            notes,
        })
    }
}

/// Splits `+++` TOML front matter off the top of `text`: (front matter, body, body's first line).
fn split_front_matter(
    text: &str,
) -> std::result::Result<(FrontMatter, &str, usize), (usize, String)> {
    let Some(rest) = text
        .strip_prefix("+++\n")
        .or_else(|| text.strip_prefix("+++\r\n"))
    else {
        return Ok((FrontMatter::default(), text, 1));
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "+++" {
            let toml_text = &rest[..offset];
            let body = &rest[offset + line.len()..];
            let written: WrittenFront = toml::from_str(toml_text).map_err(|e| {
                let line = 1 + e.span().map_or(1, |s| line_of(toml_text, s.start));
                (line, format!("front matter: {}", e.message().trim_end()))
            })?;
            let front = written.check(|offset| 1 + line_of(toml_text, offset))?;
            let body_first_line = line_of(text, text.len() - body.len());
            return Ok((front, body, body_first_line));
        }
        offset += line.len();
    }
    Err((
        1,
        "front matter opened with +++ is never closed; end it with a line of +++".into(),
    ))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

fn is_markdown(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

/// `04-extra-tools` runs as "extra tools".
fn phase_name_from_dir(dir: &str) -> String {
    let rest = PromptId::split_prefix(dir).map_or(dir, |(_, rest)| rest);
    let name = rest
        .trim_start_matches(['-', '_', ' '])
        .replace(['-', '_'], " ");
    if name.is_empty() {
        dir.to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_part_by_part_as_numbers() {
        let mut ids: Vec<_> = ["02.10", "02.9", "01.1", "07", "02.1"]
            .iter()
            .map(|s| PromptId::parse(s).expect("id"))
            .collect();
        ids.sort();
        let order: Vec<_> = ids.iter().map(PromptId::as_str).collect();
        assert_eq!(order, ["01.1", "02.1", "02.9", "02.10", "07"]);
        assert_eq!(PromptId::parse("2.1"), PromptId::parse("02.1"));
    }

    #[test]
    fn prefixes() {
        let (id, rest) = PromptId::split_prefix("01.2-dependencies").expect("prefix");
        assert_eq!((id.as_str(), rest), ("01.2", "-dependencies"));
        assert_eq!(
            PromptId::split_prefix("07").map(|(i, _)| i.as_str().to_string()),
            Some("07".into())
        );
        assert!(PromptId::split_prefix("README").is_none());
        assert!(PromptId::split_prefix("2024notes").is_none());
        assert!(PromptId::split_prefix("1.x").is_none());
    }

    #[test]
    fn footers() {
        let f = Footer::parse("body\n---\n*Tokens: ~2000 | Time: 5 min | Checkpoint: Required*\n")
            .expect("footer");
        assert_eq!(f.tokens, Some(2000));
        assert_eq!(f.minutes, Some(5.0));
        assert_eq!(f.checkpoint, Some(CheckpointMode::Required));
        let f =
            Footer::parse("*Tokens: ~2.5k | Time: 1 h | Checkpoint: Optional*").expect("footer");
        assert_eq!(
            (f.tokens, f.minutes, f.checkpoint),
            (Some(2500), Some(60.0), Some(CheckpointMode::Optional))
        );
        assert!(Footer::parse("*just emphasis*").is_none());
    }

    #[test]
    fn front_matter_is_removed_and_lines_kept() {
        let text = "+++\nmax_tokens = 500\ndepends_on = [\"01.1\"]\n+++\n# Title\n";
        let (front, body, first) = split_front_matter(text).expect("front matter");
        assert_eq!(front.max_tokens, Some(500));
        assert_eq!(front.depends_on, vec![("01.1".to_string(), 3)]);
        assert_eq!(body, "# Title\n");
        assert_eq!(first, 5);
        let (line, msg) =
            split_front_matter("+++\nmax_tokens = 1\nbogus = 2\n+++\n").expect_err("unknown key");
        assert_eq!(line, 3);
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn phase_names_from_folders() {
        assert_eq!(phase_name_from_dir("04-extra-tools"), "extra tools");
        assert_eq!(phase_name_from_dir("05"), "05");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_prompt_bytes(&bytes);
            }

            #[test]
            fn any_text_parses_without_panic(text in "(\\PC|\n|\\{|\\}|\\+\\+\\+|```|#|\\*|\\|)*") {
                let _ = parse_prompt_bytes(text.as_bytes());
                let _ = Footer::parse(&text);
            }

        }
    }
}
