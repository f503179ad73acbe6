//! The `config.toml` that `init` writes: the phases, budgets and choices it found, the
//! variables to fill in, every other key as a commented default. Values are written by the
//! toml crate, so that any name or text (a control character, a key in Japanese) makes a
//! valid file.

use std::fmt::Write as _;

use crate::config::Config;

/// The config file: the phases found, the variables needed, the rest commented defaults.
pub(super) fn config_text(config: &Config, total: u64) -> String {
    let mut out = HEADER
        .replace(
            "name = \"MAP4\"",
            &format!("name = {}", toml_string(&config.project.name)),
        )
        .replace("@MODEL@", &toml_string(MODEL));
    if let Some(prompts) = &config.project.prompts {
        // In [project], just below its name.
        let line = format!(
            "\nprompts = {}               # the prompts, relative to this file",
            toml_string(&prompts.display().to_string())
        );
        if let Some(at) = out
            .find("[project]\n")
            .and_then(|p| out[p..].find('\n').map(|_| p))
        {
            let end = out[at..]
                .match_indices('\n')
                .nth(1)
                .map_or(out.len(), |(i, _)| at + i);
            out.insert_str(end, &line);
        }
    }
    let _ = write!(
        out,
        "\n[budget]\n# Phase budgets: footer hints as written; elsewhere retry.max_attempts passes of the\n# estimate's worst case, x 1.5 for an endpoint whose tokenizer counts more than tiktoken.\ntotal = {total}\nper_prompt = {}              # fits the largest request (its history too), x 1.5\n{BUDGET_DEFAULTS}",
        config.budget.per_prompt
    );
    if config.prompts.send == crate::config::Send::Fenced {
        out.push_str("\n[prompts]\nsend = \"fenced\"                # only each file's fenced prompt block(s); the rest is notes\n");
    }
    if config.context.history != crate::config::History::None || !config.context.files.is_empty() {
        out.push_str("\n[context]\n");
        if config.context.history != crate::config::History::None {
            out.push_str("history = \"all\"                # earlier prompts and their replies go with each prompt\n# max_tokens = 8000             # the oldest turns go first past this\n");
        }
        if config.context.files.is_empty() {
            out.push_str("# files = [\"AGENTS.md\"]        # sent with every prompt\n");
        } else {
            let files: Vec<String> = config
                .context
                .files
                .iter()
                .map(|f| toml_string(&f.display().to_string()))
                .collect();
            let _ = writeln!(
                out,
                "files = [{}]   # sent with every prompt",
                files.join(", ")
            );
        }
    }
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
            let _ = writeln!(out, "{} = {}{todo}", toml_key(name), toml_string(value));
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

/// A TOML string, as the toml crate writes it (control characters escaped as TOML wants).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare when it may be (ASCII letters, digits, `_`, `-`), else quoted.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        toml_string(key)
    }
}

/// The model the written config names.
pub(super) const MODEL: &str = "llama3.2";

const HEADER: &str = r#"# Written by `orchestrator init`. Every key has a default; docs/src/configuration.md has the reference.
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

const BUDGET_DEFAULTS: &str = r#"# min_output = 256
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
# max_wait = "6h"          # a rate or usage limit that resets later than max_delay pauses the run, up to this

[run]
# on_failure = "halt"            # halt | skip
# max_duration = "8h"

# [mock]                         # the embedded model of `run --mock`
# latency = "300ms"
# fail = ["01.2"]

# [workspace]                    # agent builds (docs, "Agent builds")
# dir = "build"
# [verify]
# from_prompt = true
# commands = []
# timeout = "10m"
"#;
