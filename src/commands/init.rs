//! `init [DIR]`: a way in for a user who arrives with a folder of prompts (phase folders or
//! a flat folder of `NN-name.md`): a `config.toml` beside it with the phases found, each
//! phase's budget from its prompts' footer hints (`*Tokens: ~2000*`) or, where a prompt has
//! none, `estimate`'s worst case (input + `max_tokens`), the variables its placeholders need
//! that no prompt declares, and every other key as a commented default. Without `DIR`, a
//! first prompt in the seed's shape and a config, so that `estimate` and `run --mock` work
//! at once. It never overwrites a file unless told to (`--force`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{Config, PhaseConfig};
use crate::error::{Error, Result};
use crate::plan::{self, FLAT, Plan};
use crate::printer::Printer;
use crate::report::{plural, thousands};
use crate::request::RequestBuilder;

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

/// A config for the prompts in `root`.
fn from_folder(printer: Printer, root: &Path, force: bool) -> Result<()> {
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such folder; give the folder that holds your prompt files",
            root.display()
        )));
    }
    let base = root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let config_path = base.join("config.toml");
    refuse_to_overwrite(&[&config_path], force)?;
    let mut config = Config::default();
    config.project.name = folder_name(base);
    // As the written file says, so that the budgets are counted as `estimate` will.
    config.llm.model = Some(MODEL.into());
    let root_name = folder_name(root);
    config.phases = plan::phase_folders(root)
        .map_err(|e| Error::io(root, e))?
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
            "{}: no prompt files found; looked for phase folders (01-foundation/) holding NN.M-name.md files, and for NN-name.md files in the folder itself",
            root.display()
        )));
    }
    let plan = load_defining_variables(root, &mut config)?;
    let found = budgets(&plan, &config, base)?;
    for (phase, f) in config.phases.iter_mut().zip(&found) {
        phase.budget = Some(f.budget.max(1));
    }
    let total: u64 = found.iter().map(|f| f.budget).sum();
    write(&config_path, &config_text(&config, total.max(1)))?;
    let default_prompts = base.join("prompts");
    let mut next = String::from("orchestrator");
    if base != Path::new(".") {
        let _ = write!(next, " --config {}", config_path.display());
    }
    if !same_folder(root, &default_prompts) {
        let _ = write!(next, " --prompts {}", root.display());
    }
    printer.data(&summary(&config_path, &plan, &found, total))?;
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

/// Each phase's budget: footer hints, else the estimate's worst case.
fn budgets(plan: &Plan, config: &Config, base: &Path) -> Result<Vec<FoundPhase>> {
    let builder = RequestBuilder::new(config, plan, base)?;
    let e = crate::estimate::estimate(plan, config, &builder, &|_| None, &|_| None)?;
    Ok(plan
        .phases
        .iter()
        .map(|phase| {
            let prompts = &e.prompts[phase.prompts.clone()];
            let budget = prompts
                .iter()
                .map(|p| p.tokens_hint.unwrap_or(p.worst_case_tokens))
                .sum();
            FoundPhase {
                dir: phase.dir.clone(),
                name: phase.name.clone(),
                prompts: prompts.len(),
                budget,
                estimated: prompts.iter().filter(|p| p.tokens_hint.is_none()).count(),
            }
        })
        .collect())
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
            n if n == f.prompts => "from estimate's worst case".to_string(),
            n => format!("from footer hints, {n} by estimate's worst case"),
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

/// The config file: the phases found, the variables needed, the rest commented defaults.
fn config_text(config: &Config, total: u64) -> String {
    let mut out = HEADER
        .replace(
            "name = \"MAP4\"",
            &format!("name = {}", toml_string(&config.project.name)),
        )
        .replace("@MODEL@", &toml_string(MODEL));
    let _ = write!(out, "\n[budget]\ntotal = {total}\n{BUDGET_DEFAULTS}");
    out.push_str(REST_DEFAULTS);
    if !config.variables.is_empty() {
        out.push_str("\n[variables]                     # constants the prompts use as {{name}}\n");
        for (name, value) in &config.variables {
            let value = value.as_str().unwrap_or_default();
            let todo = if value.is_empty() {
                "    # used by the prompts, declared by none: fill it in"
            } else {
                ""
            };
            let _ = writeln!(out, "{name} = {}{todo}", toml_string(value));
        }
    }
    for p in &config.phases {
        let _ = write!(
            out,
            "\n[[phases]]\ndir = {}\nname = {}\nbudget = {}\n",
            toml_string(&p.dir),
            toml_string(p.name.as_deref().unwrap_or(&p.dir)),
            p.budget.unwrap_or(1)
        );
    }
    out
}

/// A new build: a first prompt in the seed's shape and a config for a local server.
fn scaffold(printer: Printer, force: bool) -> Result<()> {
    let config_path = PathBuf::from("config.toml");
    let prompt_path = PathBuf::from("prompts/01-first/01.1-hello.md");
    refuse_to_overwrite(&[&config_path, &prompt_path], force)?;
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

fn refuse_to_overwrite(paths: &[&Path], force: bool) -> Result<()> {
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() || force {
        return Ok(());
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

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The model the written config names.
const MODEL: &str = "llama3.2";

const HEADER: &str = r#"# Written by `orchestrator init`. Every key has a default; README.md has the reference.
# The commented lines show the defaults.

[project]
name = "MAP4"                  # shown to the model in the context recall

[llm]
provider = "openai"             # openai | openai-responses | anthropic | command | mock
# A local OpenAI-compatible server: Ollama (http://127.0.0.1:11434/v1), LM Studio
# (http://127.0.0.1:1234/v1), llama.cpp (:8080), vLLM (:8000), a LiteLLM proxy (:4000).
# OpenAI itself: base_url = "https://api.openai.com/v1" and export OPENAI_API_KEY.
base_url = "http://127.0.0.1:11434/v1"
model = @MODEL@                  # the model the server serves
# api_key_env = "OPENAI_API_KEY"  # the variable holding the key (never the key itself)
# max_tokens = 2000
# max_tokens_param = "auto"      # auto | max_tokens | max_completion_tokens
# temperature = 0.2              # unset: not sent
# reasoning_effort = "medium"
# stream = true
# connect_timeout = "10s"
# timeout = "600s"
# idle_timeout = "120s"
# context_variables = "used"     # used | all
# query = { "api-version" = "2024-10-21" }
# api_key_header = "api-key"
"#;

const BUDGET_DEFAULTS: &str = r#"# per_prompt = 3000              # a request counting more is never sent
# min_output = 256
# on_exceed = "halt"             # halt | warn
# max_cost_usd = 5.0
"#;

const REST_DEFAULTS: &str = r#"
# [pricing]
# input_per_mtok = 0.15
# output_per_mtok = 0.60

[retry]
# max_attempts = 3
# initial_delay = "1s"
# max_delay = "60s"

[run]
# on_failure = "halt"            # halt | skip
# max_duration = "8h"

# [mock]                         # the embedded model of `run --mock`
# latency = "300ms"
# fail = ["01.2"]

# [workspace]                    # agent builds (README, "Agent builds")
# dir = "build"
# [verify]
# from_prompt = true
# commands = []
# timeout = "10m"
"#;

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
