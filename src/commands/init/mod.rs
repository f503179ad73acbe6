//! `init [DIR | PLAN.md]`: a way in for a user who arrives with prompts of their own, in
//! any of the shapes people write them (phase folders with any names, numbering restarting
//! in each; a flat folder; a single plan file of `Prompt N` sections; prompts inside notes
//! for a human): a `config.toml` beside them that runs them with no hand edit. It says
//! where the prompts are (`project.prompts`), the phases found, and budgets with headroom:
//! a phase's budget is its prompts' footer hints (the author's figures) or, where a prompt
//! has none, `retry.max_attempts` passes of `estimate`'s worst case with a margin of 1.5 for
//! an endpoint whose tokenizer counts more than tiktoken; `per_prompt` fits the largest
//! prompt with its history. Prompts with no checkpoint protocol get `[context] history =
//! "all"` (each builds on the replies before it, as such chains are written); prompts that
//! are fenced blocks inside notes get `[prompts] send = "fenced"`. The variables their
//! placeholders need that no prompt declares are listed to fill in. Without an argument, a
//! first prompt in the seed's shape and a config. It never overwrites a file unless told to
//! (`--force`, which keeps the old one as `config.toml.bak`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{Config, PhaseConfig};
use crate::error::{Error, Result};
use crate::plan::{self, FLAT, Plan};
use crate::printer::Printer;
use crate::request::RequestBuilder;
use crate::text::{plural, thousands};

mod config_text;

use config_text::{MODEL, config_text};

/// A phase as `init` found it.
struct FoundPhase {
    dir: String,
    name: String,
    prompts: usize,
    budget: u64,
    /// Prompts whose budget came from `estimate` (no footer hint).
    estimated: usize,
}

pub(crate) fn init(printer: Printer, dir: Option<&Path>, force: bool) -> Result<()> {
    match dir {
        Some(dir) => from_folder(printer, dir, force),
        None => scaffold(printer, force),
    }
}

/// What `init` chose, beyond the phases, and why (for its summary).
#[derive(Default)]
struct Choices {
    fenced: bool,
    history: bool,
    /// Files found to send with every prompt.
    context: Vec<PathBuf>,
}

/// A config for the prompts in `root` (a folder, or a plan file).
fn from_folder(printer: Printer, root: &Path, force: bool) -> Result<()> {
    if !root.exists() {
        return Err(Error::Usage(format!(
            "{}: no such folder or file; give the folder that holds your prompt files, or a plan file of `Prompt N` sections",
            root.display()
        )));
    }
    // The config goes where the user runs the commands, naming where the prompts are.
    let base = Path::new(".");
    let config_path = base.join("config.toml");
    let kept = refuse_to_overwrite(&[&config_path], force)?;
    let mut config = Config::default();
    config.project.name = folder_name(base);
    // As the written file says, so that the budgets are counted as `estimate` will.
    config.llm.model = Some(MODEL.into());
    if !same_folder(root, &base.join("prompts")) {
        config.project.prompts = Some(root.to_path_buf());
    }
    let root_name = folder_name(root);
    let dirs = if root.is_file() {
        vec![FLAT.to_string()]
    } else {
        plan::phase_folders(root).map_err(|e| Error::io(root, e))?
    };
    config.phases = dirs
        .into_iter()
        .map(|dir| PhaseConfig {
            name: Some(capitalised(&plan::phase_name_from_dir(if dir == FLAT {
                &root_name
            } else {
                &dir
            }))),
            dir,
            budget: None,
            budget_usd: None,
            verify: Vec::new(),
        })
        .collect();
    if config.phases.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no prompt files found; looked for folders holding NN-name.md (or NN.M-name.md) files, for such files in the folder itself, and a plan file needs `Prompt N` headings",
            root.display()
        )));
    }
    load_defining_variables(root, &mut config)?;
    let choices = choose(root, &mut config)?;
    // What is sent may have changed (`send = "fenced"`): its placeholders counted again.
    let plan = load_defining_variables(root, &mut config)?;
    let (found, per_prompt) = budgets(&plan, &config, base)?;
    for (phase, f) in config.phases.iter_mut().zip(&found) {
        phase.budget = Some(f.budget.max(1));
    }
    config.budget.per_prompt = per_prompt;
    let total: u64 = found.iter().map(|f| f.budget).sum();
    write(&config_path, &config_text(&config, total.max(1)))?;
    let next = "orchestrator";
    printer.data(&summary(&config_path, &plan, &found, total))?;
    for line in choice_lines(&choices, &plan, kept.as_deref()) {
        printer.data(&line)?;
    }
    if !config.variables.is_empty() {
        printer.data(&format!(
            "[variables] lists what the prompts use and none declares ({}): fill in their values",
            config
                .variables
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    printer.data(&format!(
        "next: `{next} estimate`, then `{next} run --mock` (offline) or `{next} run`"
    ))
}

/// What the prompts' shape asks of the config: with no `## Checkpoint` section anywhere,
/// each prompt builds on the replies before it (`[context] history = "all"`); and when
/// every file also holds its prompt in a fenced block among notes for a human, only those
/// blocks are sent (`[prompts] send = "fenced"`).
fn choose(root: &Path, config: &mut Config) -> Result<Choices> {
    let mut choices = Choices {
        context: context_files(root),
        ..Choices::default()
    };
    config.context.files = choices.context.clone();
    let plan = match Plan::load(root, config) {
        Ok(plan) => plan,
        // Variables to fill in, and the like: judged again once they are listed.
        Err(Error::Plan(_)) => return Ok(choices),
        Err(e) => return Err(e),
    };
    let protocol = plan
        .prompts
        .iter()
        .any(|p| p.checkpoint_why == "## Checkpoint");
    if protocol {
        return Ok(choices);
    }
    choices.history = true;
    config.context.history = crate::config::History::All;
    choices.fenced = !root.is_file()
        && plan.prompts.iter().all(|p| {
            std::fs::read_to_string(&p.path).is_ok_and(|text| {
                crate::checkpoint::outline(&text)
                    .0
                    .iter()
                    .any(|b| b.is_prose() && !b.content.trim().is_empty())
            })
        });
    if choices.fenced {
        config.prompts.send = crate::config::Send::Fenced;
    }
    Ok(choices)
}

/// Files written to go with every prompt (`AGENTS.md`, `CLAUDE.md`, a global context):
/// beside the prompts, or in an `instructions/` or `context/` folder among them.
fn context_files(root: &Path) -> Vec<PathBuf> {
    if root.is_file() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for dir in [
        root.to_path_buf(),
        root.join("instructions"),
        root.join("context"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let markdown = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md"));
            if markdown
                && path.is_file()
                && (matches!(stem.as_str(), "agents" | "claude" | "gemini")
                    || stem.contains("context"))
            {
                found.push(path);
            }
        }
    }
    found
}

/// The summary's lines about the choices made.
fn choice_lines(choices: &Choices, plan: &Plan, kept: Option<&Path>) -> Vec<String> {
    let mut lines = Vec::new();
    if plan
        .notes
        .iter()
        .any(|n| n.contains("qualified by its phase"))
    {
        let ids: Vec<&str> = plan.prompts.iter().take(4).map(|p| p.id.as_str()).collect();
        lines.push(format!(
            "prompt numbers repeat across the phase folders, so ids carry their phase's number ({} …); `orchestrator plan` lists them",
            ids.join(", ")
        ));
    }
    if choices.history {
        lines.push("no prompt has a ## Checkpoint section: each one is sent with the earlier prompts and their replies ([context] history = \"all\"), and a reply in prose is accepted".into());
    }
    if choices.fenced {
        lines.push("every prompt file holds its prompt in a fenced block among notes: only those blocks are sent ([prompts] send = \"fenced\")".into());
    }
    if !choices.context.is_empty() {
        lines.push(format!(
            "sent with every prompt ([context] files): {}",
            choices
                .context
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(kept) = kept {
        lines.push(format!(
            "the config that was there is kept as {}; values you set in it are not carried over",
            kept.display()
        ));
    }
    lines
}

/// The plan, with every variable its placeholders need that no prompt declares added to
/// `[variables]` (empty, for the user to fill in). Other plan errors are the user's to fix.
fn load_defining_variables(root: &Path, config: &mut Config) -> Result<Plan> {
    match Plan::load(root, config) {
        Err(Error::Plan(errors)) => {
            let missing: Vec<String> = errors
                .iter()
                .filter_map(|e| plan::undefined_variable(&e.message))
                .map(str::to_string)
                .collect();
            if missing.is_empty() {
                return Err(Error::Plan(errors));
            }
            for name in missing {
                config
                    .variables
                    .insert(name, serde_json::Value::String(String::new()));
            }
            Plan::load(root, config)
        }
        other => other,
    }
}

/// The margin for an endpoint whose tokenizer counts more than tiktoken does (1.2 was
/// seen; 1.5 allows for the rest).
const TOKENIZER_MARGIN: f64 = 1.5;

/// Each phase's budget: its prompts' footer hints (the author's figures), else
/// `retry.max_attempts` passes of the estimate's worst case with [`TOKENIZER_MARGIN`]; and
/// a `per_prompt` that fits the largest request (history included) with the same margin.
fn budgets(plan: &Plan, config: &Config, base: &Path) -> Result<(Vec<FoundPhase>, u64)> {
    // History as `[context] max_tokens` allows it, not cut to fit a per_prompt yet to set.
    let mut unbounded = config.clone();
    unbounded.budget.per_prompt = u64::MAX;
    let builder = RequestBuilder::new(&unbounded, plan, base)?;
    let e = crate::estimate::estimate(plan, &unbounded, &builder, &|_| None, &|_| None)?;
    let passes = f64::from(config.retry.max_attempts.max(1));
    let found = plan
        .phases
        .iter()
        .map(|phase| {
            let prompts = &e.prompts[phase.prompts.clone()];
            let budget = prompts
                .iter()
                .map(|p| {
                    p.tokens_hint.unwrap_or_else(|| {
                        (p.worst_case_tokens as f64 * passes * TOKENIZER_MARGIN).ceil() as u64
                    })
                })
                .sum();
            FoundPhase {
                dir: phase.dir.clone(),
                name: phase.name.clone(),
                prompts: prompts.len(),
                budget,
                estimated: prompts.iter().filter(|p| p.tokens_hint.is_none()).count(),
            }
        })
        .collect();
    let largest = e.prompts.iter().map(|p| p.input_tokens).max().unwrap_or(0);
    let per_prompt = ((largest as f64 * TOKENIZER_MARGIN / 500.0).ceil() as u64 * 500)
        .max(Config::default().budget.per_prompt);
    Ok((found, per_prompt))
}

fn summary(config_path: &Path, plan: &Plan, found: &[FoundPhase], total: u64) -> String {
    let mut out = format!(
        "wrote {}: {} {} in {} {}, total budget {}",
        config_path.display(),
        plan.prompts.len(),
        plural(plan.prompts.len(), "prompt"),
        found.len(),
        plural(found.len(), "phase"),
        thousands(total)
    );
    for f in found {
        let from = match f.estimated {
            0 => "from footer hints".to_string(),
            n if n == f.prompts => "from estimate's worst case, x attempts, x 1.5".to_string(),
            n => format!("from footer hints, {n} by estimate's worst case x attempts x 1.5"),
        };
        let _ = write!(
            out,
            "\n  {} ({}/): {} {}, budget {} {from}",
            f.name,
            f.dir,
            f.prompts,
            plural(f.prompts, "prompt"),
            thousands(f.budget)
        );
    }
    out
}

/// A new build: a first prompt in the seed's shape and a config for a local server.
fn scaffold(printer: Printer, force: bool) -> Result<()> {
    let config_path = PathBuf::from("config.toml");
    let prompt_path = PathBuf::from("prompts/01-first/01.1-hello.md");
    let _ = refuse_to_overwrite(&[&config_path, &prompt_path], force)?;
    let prompt_dir = prompt_path.parent().unwrap_or(Path::new("prompts"));
    std::fs::create_dir_all(prompt_dir).map_err(|e| Error::io(prompt_dir, e))?;
    write(&prompt_path, HELLO)?;
    let config = Config {
        project: crate::config::Project {
            name: "my-project".into(),
            prompts: None,
        },
        variables: BTreeMap::from([(
            "project_name".to_string(),
            serde_json::Value::from("my-project"),
        )]),
        phases: vec![PhaseConfig {
            dir: "01-first".into(),
            name: Some("First".into()),
            budget: Some(10_000),
            budget_usd: None,
            verify: Vec::new(),
        }],
        ..Config::default()
    };
    write(&config_path, &config_text(&config, 10_000))?;
    printer.data(&format!(
        "wrote {} and {}\nnext: `orchestrator estimate`, then `orchestrator run --mock` (offline) or, with a local server at llm.base_url, `orchestrator run`",
        config_path.display(),
        prompt_path.display()
    ))
}

/// Refuses to overwrite any of `paths` without `force`; with it, a config that was there
/// is kept beside as `.bak` (its path).
fn refuse_to_overwrite(paths: &[&Path], force: bool) -> Result<Option<PathBuf>> {
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(None);
    }
    if force {
        let Some(config) = paths
            .iter()
            .find(|p| p.exists() && p.ends_with("config.toml"))
        else {
            return Ok(None);
        };
        let kept = config.with_extension("toml.bak");
        std::fs::copy(config, &kept).map_err(|e| Error::io(&kept, e))?;
        return Ok(Some(kept));
    }
    Err(Error::Usage(format!(
        "{} already {}; init never overwrites a file (--force to do so)",
        existing.join(" and "),
        if existing.len() == 1 {
            "exists"
        } else {
            "exist"
        }
    )))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn folder_name(root: &Path) -> String {
    std::fs::canonicalize(root)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "prompts".into())
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

const HELLO: &str = r#"# 01.1 Hello

## Objective
Greet the user and name the project, to see the whole loop work once.

## Context
This is the first prompt of {{project_name}}. Each prompt's reply ends with a checkpoint
block; its outputs become variables that later prompts use as placeholders.

## Execute
Write one short sentence that greets the user and names {{project_name}}.

## Validation
- [ ] The sentence names {{project_name}}
- [ ] The reply ends with the checkpoint block below

## Checkpoint
```json
{"prompt": "01.1-hello", "success": true, "outputs": {"greeting": "Hello from my-project"}}
```

## If Failed
Answer again, ending with the checkpoint block above.

## Next
Add prompts as prompts/01-first/01.2-name.md (a later one can use \{{greeting}}), or a new
phase folder, prompts/02-second/, listed under [[phases]] in config.toml.

---
*Tokens: ~500 | Time: 1 min | Checkpoint: Required*
"#;
