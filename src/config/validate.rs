//! What `config.toml` may not say though TOML lets it: values out of range, names that
//! are not variable names, a base URL that is not one (or carries credentials), nesting
//! that state files could not hold, an agent's command with placeholders it cannot have.
//! Each error names the key.

use std::path::Path;

use super::llm::ProviderKind;
use super::model::{COMMAND_PLACEHOLDERS, Config, MAX_JOBS, MAX_VARIABLE_DEPTH};
use super::values::check_url;
use crate::error::{Error, Result};
use crate::template::{Template, is_identifier};

pub(super) fn validate(config: &Config, path: &Path) -> Result<()> {
    llm(config)
        .and_then(|()| budgets(config))
        .and_then(|()| agent(config))
        .and_then(|()| fallbacks(config))
        .and_then(|()| phases(config))
        .and_then(|()| variables(config))
        .and_then(|()| workspace(config))
        .map_err(|Bad(key, message)| Error::Config {
            path: path.to_path_buf(),
            line: None,
            message: format!("`{key}`: {message}"),
        })
}

/// `[[llm.fallback]]`: each checked as `[llm]` is, its keys named with their place.
fn fallbacks(config: &Config) -> Checked {
    for (i, f) in config.llm.fallback.iter().enumerate() {
        if !f.fallback.is_empty() {
            return Err(bad(
                &format!("llm.fallback[{i}].fallback"),
                "a fallback has no fallbacks of its own; list them all under [[llm.fallback]]",
            ));
        }
        let mut alone = config.clone();
        alone.llm = f.clone();
        llm(&alone)
            .and_then(|()| agent(&alone))
            .map_err(|Bad(key, message)| {
                Bad(
                    format!("llm.fallback[{i}].{}", key.trim_start_matches("llm.")),
                    message,
                )
            })?;
    }
    Ok(())
}

/// `[workspace] exclude` patterns and `[verify] env` names.
fn workspace(config: &Config) -> Checked {
    for (i, pattern) in config.workspace.exclude.iter().flatten().enumerate() {
        if let Some(problem) = exclude_problem(pattern) {
            return Err(bad(
                &format!("workspace.exclude[{i}]"),
                format!(
                    "{pattern:?} {problem}; write a gitignore-style pattern such as \"node_modules/\" or \"*.log\""
                ),
            ));
        }
    }
    let key = config.llm.api_key_env();
    for (i, name) in config.verify.env.iter().enumerate() {
        if name == key {
            return Err(bad(
                &format!("verify.env[{i}]"),
                format!(
                    "names {name}, the API key: checks never get it (only the agent does); remove it"
                ),
            ));
        }
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(bad(
                &format!("verify.env[{i}]"),
                format!("{name:?} is not a variable name"),
            ));
        }
    }
    Ok(())
}

/// Why a snapshot exclude pattern cannot be used, if it cannot.
pub(crate) fn exclude_problem(pattern: &str) -> Option<&'static str> {
    let core = pattern.trim_matches('/');
    if core.is_empty() {
        Some("is empty")
    } else if pattern.starts_with('!') {
        Some("starts with `!`: a snapshot exclude cannot be negated")
    } else if pattern.chars().any(char::is_control) {
        Some("holds a control character")
    } else if core.split('/').any(|part| part == "..") {
        Some("leaves the workspace (`..`)")
    } else {
        None
    }
}

/// A bad value: its key and what is wrong.
struct Bad(String, String);

fn bad(key: &str, message: impl Into<String>) -> Bad {
    Bad(key.to_string(), message.into())
}

type Checked = std::result::Result<(), Bad>;

/// A number of US dollars: finite, 0 or more.
fn money(key: &str, v: f64) -> Checked {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("is {v}; give a number of US dollars, 0 or more"),
        ))
    }
}

fn llm(config: &Config) -> Checked {
    if config.llm.max_tokens == 0 {
        return Err(bad("llm.max_tokens", "must be at least 1"));
    }
    if config
        .llm
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return Err(bad("llm.temperature", "must be between 0 and 2"));
    }
    for (key, d) in [
        ("llm.connect_timeout", config.llm.connect_timeout),
        ("llm.timeout", config.llm.timeout),
        ("llm.idle_timeout", config.llm.idle_timeout),
        ("run.max_duration", config.run.max_duration),
        ("verify.timeout", config.verify.timeout),
    ] {
        if d.is_zero() {
            return Err(bad(key, "must be longer than zero"));
        }
    }
    if !(1..=MAX_JOBS).contains(&config.run.jobs) {
        return Err(bad(
            "run.jobs",
            format!("must be from 1 (one prompt at a time) to {MAX_JOBS}"),
        ));
    }
    if config.llm.max_concurrency == Some(0) {
        return Err(bad(
            "llm.max_concurrency",
            "must be at least 1 (or left out: as many as `run.jobs`)",
        ));
    }
    if config.retry.max_attempts == 0 {
        return Err(bad("retry.max_attempts", "must be at least 1"));
    }
    if config.retry.initial_delay > config.retry.max_delay {
        return Err(bad("retry.initial_delay", "is longer than retry.max_delay"));
    }
    if let Some(url) = &config.llm.base_url {
        check_url(url).map_err(|e| bad("llm.base_url", e))?;
    }
    wire(config)
}

/// What goes on the wire as written: a header name, query pairs, an effort.
fn wire(config: &Config) -> Checked {
    let llm = &config.llm;
    if let Some(effort) = &llm.reasoning_effort
        && (effort.is_empty() || !effort.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return Err(bad(
            "llm.reasoning_effort",
            format!(
                "is {effort:?}; give the model's word, such as \"low\", \"medium\" or \"high\""
            ),
        ));
    }
    if let Some(name) = &llm.api_key_header
        && reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return Err(bad(
            "llm.api_key_header",
            format!("{name:?} is not a header name; give one such as \"api-key\""),
        ));
    }
    if let Some(key) = llm.query.keys().find(|k| k.is_empty()) {
        return Err(bad(
            "llm.query",
            format!(
                "has an empty name ({key:?}); give pairs such as {{ \"api-version\" = \"2024-10-21\" }}"
            ),
        ));
    }
    Ok(())
}

fn budgets(config: &Config) -> Checked {
    if config.budget.per_prompt == 0 || config.budget.total == 0 {
        return Err(bad("budget", "budgets must be at least 1 token"));
    }
    if let Some(max) = config.budget.max_cost_usd {
        money("budget.max_cost_usd", max)?;
    }
    if let Some(max) = config.llm.max_call_usd {
        money("llm.max_call_usd", max)?;
    }
    if let Some(p) = &config.pricing {
        money("pricing.input_per_mtok", p.input_per_mtok)?;
        money("pricing.output_per_mtok", p.output_per_mtok)?;
        for (key, v) in [
            ("pricing.cache_read_per_mtok", p.cache_read_per_mtok),
            ("pricing.cache_write_per_mtok", p.cache_write_per_mtok),
        ] {
            if let Some(v) = v {
                money(key, v)?;
            }
        }
    }
    Ok(())
}

/// `[llm].command`: present for `provider = "command"`, with only the placeholders a
/// command may have, and a USD limit for `{{budget_usd_left}}` to tell.
fn agent(config: &Config) -> Checked {
    if config.llm.provider == ProviderKind::Command && config.llm.command.is_empty() {
        return Err(bad(
            "llm.command",
            "is empty; give the agent CLI and its arguments",
        ));
    }
    let args = (config.llm.command.iter().map(|a| ("llm.command", a))).chain(
        config
            .llm
            .continue_session
            .iter()
            .map(|a| ("llm.continue_session", a)),
    );
    for (key, arg) in args {
        let known = |name: &str| COMMAND_PLACEHOLDERS.contains(&name);
        let (_, unknown) = Template::parse(arg, &known, &[], 1);
        if let Some(u) = unknown.first() {
            return Err(bad(
                key,
                format!(
                    "{{{{{}}}}} is not a placeholder a command may use; it may use {}",
                    u.name,
                    COMMAND_PLACEHOLDERS
                        .map(|n| format!("{{{{{n}}}}}"))
                        .join(", ")
                ),
            ));
        }
    }
    let usd_limit = config.budget.max_cost_usd.is_some()
        || config.llm.max_call_usd.is_some()
        || config.phases.iter().any(|p| p.budget_usd.is_some());
    // Agents known to report no cost: a USD limit on them needs [pricing] to mean anything.
    let program = config
        .llm
        .command
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if config.llm.provider == ProviderKind::Command
        && usd_limit
        && config.pricing.is_none()
        && matches!(program, "codex" | "gemini" | "aider")
    {
        return Err(bad(
            "pricing",
            format!(
                "is not set, and `{program}` reports no cost, so the USD limit (budget.max_cost_usd, a phase's budget_usd or llm.max_call_usd) cannot be enforced; set [pricing] input_per_mtok and output_per_mtok for its model, or remove the USD limit"
            ),
        ));
    }
    if !usd_limit
        && config
            .llm
            .command
            .iter()
            .any(|a| a.contains("budget_usd_left"))
    {
        return Err(bad(
            "llm.command",
            "uses {{budget_usd_left}} but no USD limit is set; set budget.max_cost_usd, a phase's budget_usd or llm.max_call_usd",
        ));
    }
    Ok(())
}

fn phases(config: &Config) -> Checked {
    let mut dirs = std::collections::BTreeSet::new();
    for (i, phase) in config.phases.iter().enumerate() {
        if !dirs.insert(phase.dir.as_str()) {
            return Err(bad(
                &format!("phases[{i}].dir"),
                format!("the folder {:?} is listed twice", phase.dir),
            ));
        }
        if phase.budget == Some(0) {
            return Err(bad(
                &format!("phases[{i}].budget"),
                "is 0; a phase budget must be at least 1 token (leave it out for none)",
            ));
        }
        if let Some(usd) = phase.budget_usd {
            money(&format!("phases[{i}].budget_usd"), usd)?;
        }
    }
    Ok(())
}

fn variables(config: &Config) -> Checked {
    for (name, value) in &config.variables {
        if !is_identifier(name) {
            return Err(bad(
                &format!("variables.{name}"),
                "a variable name is letters, digits and `_`, with `.` only between keys",
            ));
        }
        if crate::checkpoint::depth(value) > MAX_VARIABLE_DEPTH {
            return Err(bad(
                &format!("variables.{name}"),
                format!("nests deeper than {MAX_VARIABLE_DEPTH} levels; give a flatter value"),
            ));
        }
    }
    Ok(())
}
