//! What an agent CLI printed (docs, "Providers"), recognised by its shape:
//!
//! - Claude Code `--output-format json`: one object with `type: "result"`; `result` is the
//!   reply; usage is `modelUsage` summed over models (the whole call: its `usage` covers
//!   the main loop only), else `usage`; `is_error` fails the attempt whatever the exit
//!   status (Claude Code exits 1 with the JSON on stdout), classified by `subtype` and
//!   `api_error_status`.
//! - Codex `exec --json`: JSON lines; the last `agent_message` item is the reply,
//!   `turn.completed` usage is summed (`reasoning_output_tokens` as the part of the output
//!   spent on reasoning), `turn.failed` fails, and so does an `error` event no completed
//!   turn follows (a reconnect notice a turn completes after is not a failure).
//! - Gemini CLI `--output-format json`: `response`, `stats.models.*.tokens`, `error`.
//! - Anything else: stdout is the reply, with no usage.
//!
//! Formats change between releases, so every field is optional and unknown ones are
//! ignored. Numbers from outside are read with [`super::call::tokens`]: never a panic, never a
//! wrapped-around count.

use serde_json::Value;

use super::call::{FailureKind, Usage, UsageReader};

/// An agent's output, read.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parsed {
    pub(crate) text: String,
    pub(crate) usage: Option<Usage>,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) session_id: Option<String>,
    /// The agent said it failed (with exit status 0 or not).
    pub(crate) error: Option<AgentError>,
    /// What the agent reported failing on its way: Codex's commands that exited non-zero
    /// (or were declined), Claude Code's tool results marked as errors (`stream-json`).
    pub(crate) agent_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentError {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    /// Final whatever follows (Codex: `turn.failed`); an error event a completed turn
    /// follows is not.
    pub(crate) fatal: bool,
}

pub(crate) fn parse(stdout: &str) -> Parsed {
    let trimmed = stdout.trim();
    if let Some(parsed) = claude_code_stream(trimmed) {
        return parsed;
    }
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        if value.get("type").and_then(Value::as_str) == Some("result")
            || value.get("is_error").is_some()
            || value.get("modelUsage").is_some()
        {
            return claude_code(&value);
        }
        if value.get("response").is_some()
            || (value.get("stats").is_some() && value.get("session_id").is_some())
            || value.get("error").is_some_and(Value::is_object)
        {
            return gemini(&value);
        }
    }
    if let Some(parsed) = codex(trimmed) {
        return parsed;
    }
    Parsed {
        text: stdout.to_string(),
        ..Parsed::default()
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn claude_code(obj: &Value) -> Parsed {
    let usage = claude_usage(obj);
    let cost_usd = obj
        .get("modelUsage")
        .and_then(Value::as_object)
        .map(|models| {
            models
                .values()
                .filter_map(|m| m.get("costUSD").and_then(Value::as_f64))
                .sum::<f64>()
        })
        .or_else(|| obj.get("total_cost_usd").and_then(Value::as_f64))
        .filter(|c| c.is_finite() && *c >= 0.0);
    let mut text = text_of(obj.get("result"));
    let is_error = obj
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let error = is_error.then(|| {
        let subtype = obj.get("subtype").and_then(Value::as_str).unwrap_or("");
        let errors: Vec<String> = obj
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| e.iter().map(|m| text_of(Some(m))).collect())
            .unwrap_or_default();
        let detail = if errors.is_empty() {
            text.clone()
        } else {
            errors.join("; ")
        };
        let status = obj
            .get("api_error_status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        let kind = match (subtype, status) {
            ("error_max_budget_usd", _) => FailureKind::Budget,
            ("error_max_turns" | "error_max_structured_output_retries", _) => {
                FailureKind::Permanent
            }
            (_, Some(402)) => FailureKind::Quota,
            (_, Some(408 | 409 | 429 | 500..=599)) => FailureKind::Transient,
            (_, Some(_)) => FailureKind::Permanent,
            _ => FailureKind::Transient,
        };
        let mut message = match status {
            Some(s) => format!("API error {s}: {detail}"),
            None => detail,
        };
        if !subtype.is_empty() && subtype != "success" {
            message = format!("{subtype}: {message}");
        }
        AgentError {
            kind,
            message,
            fatal: true,
        }
    });
    if error.is_some() {
        text.clear();
    }
    Parsed {
        text,
        usage,
        cost_usd,
        session_id: obj
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        error,
        agent_errors: Vec::new(),
    }
}

/// What a line an agent printed says of its progress, for `llm.idle_timeout`: an `error`
/// event (Codex's "Reconnecting… 1/5") is noise; work started that may print nothing for
/// long (Codex's `item.started`, Claude Code's `tool_use`) stops the clock; any other line
/// is progress. Claude Code's `json` format prints nothing until the end, so the clock
/// never starts for it.
pub(crate) fn progress(line: &[u8]) -> crate::process::Progress {
    use crate::process::Progress;
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        return Progress::Done;
    };
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    let tool_use = || {
        event
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            })
    };
    match kind {
        "error" => Progress::Noise,
        "item.started" => Progress::Busy,
        "assistant" if tool_use() => Progress::Busy,
        _ => Progress::Done,
    }
}

/// Claude Code `--output-format stream-json --verbose`: JSON lines ending with the
/// `result` object, read as the `json` format's; the tool results marked `is_error` on the
/// way are the agent's errors. `None` unless the last line is a result and others precede.
fn claude_code_stream(stdout: &str) -> Option<Parsed> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let last: Value = serde_json::from_str(lines.next_back()?).ok()?;
    if last.get("type").and_then(Value::as_str) != Some("result") {
        return None;
    }
    let mut errors = Vec::new();
    let mut any = false;
    for line in lines {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        any = true;
        if event.get("type").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let content = event
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array);
        for block in content.into_iter().flatten() {
            if block.get("type").and_then(Value::as_str) == Some("tool_result")
                && block.get("is_error").and_then(Value::as_bool) == Some(true)
            {
                // Claude Code's Bash results read "Exit code N" then the output.
                errors.push(first_lines(&tool_text(block.get("content")), 2));
            }
        }
    }
    if !any {
        return None;
    }
    let mut parsed = claude_code(&last);
    parsed.agent_errors = errors;
    Some(parsed)
}

/// A tool result's content: a string, or text blocks.
fn tool_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        other => text_of(other),
    }
}

/// The first `n` non-empty lines of `text`, joined with `: `, at most 200 bytes.
fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect();
    crate::text::truncate(&lines.join(": "), 200)
}

/// `modelUsage` summed over models (the whole call), else the top-level `usage`.
fn claude_usage(obj: &Value) -> Option<Usage> {
    if let Some(models) = obj.get("modelUsage").and_then(Value::as_object)
        && !models.is_empty()
    {
        let mut reader = UsageReader::new(obj.get("modelUsage").cloned());
        for (name, m) in models {
            let at = |key: &str| format!("modelUsage.{name}.{key}");
            let input = reader.count(m, "inputTokens", &at("inputTokens"));
            let cache_read = reader.count(m, "cacheReadInputTokens", &at("cacheReadInputTokens"));
            let cache_write = reader.count(
                m,
                "cacheCreationInputTokens",
                &at("cacheCreationInputTokens"),
            );
            let output = reader.count(m, "outputTokens", &at("outputTokens"));
            reader.add(input, output, cache_read, cache_write);
        }
        return Some(reader.finish());
    }
    let u = obj.get("usage").filter(|u| u.is_object())?;
    super::call::anthropic_usage(u)
}

fn gemini(obj: &Value) -> Parsed {
    let usage = obj
        .get("stats")
        .and_then(|s| s.get("models"))
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(|models| {
            let mut reader = UsageReader::new(obj.get("stats").cloned());
            for (name, m) in models {
                let Some(t) = m.get("tokens") else { continue };
                let at = |key: &str| format!("stats.models.{name}.tokens.{key}");
                // `prompt` is the whole input; `cached` is the part read from cache.
                let prompt = reader.count(t, "prompt", &at("prompt"));
                let cached = reader.count(t, "cached", &at("cached"));
                let output = reader
                    .count(t, "candidates", &at("candidates"))
                    .saturating_add(reader.count(t, "thoughts", &at("thoughts")));
                reader.add(prompt.saturating_sub(cached), output, cached, 0);
            }
            reader.finish()
        });
    let error = obj.get("error").filter(|e| e.is_object()).map(|e| {
        let message = text_of(e.get("message"));
        let code = e.get("code").and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        });
        let kind = match code {
            Some(402) => FailureKind::Quota,
            Some(408 | 409 | 429 | 500..=599) | None => FailureKind::Transient,
            Some(_) => FailureKind::Permanent,
        };
        AgentError {
            kind,
            message: match code {
                Some(c) => format!("{message} (code {c})"),
                None => message,
            },
            fatal: true,
        }
    });
    Parsed {
        text: if error.is_some() {
            String::new()
        } else {
            text_of(obj.get("response"))
        },
        usage,
        cost_usd: None,
        session_id: obj
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        error,
        agent_errors: Vec::new(),
    }
}

/// What a Codex error message means for a retry.
fn codex_error_kind(message: &str) -> FailureKind {
    let lower = message.to_ascii_lowercase();
    if lower.contains("401")
        || lower.contains("403")
        || lower.contains("missing environment variable")
    {
        FailureKind::Permanent
    } else if lower.contains("quota") || lower.contains("402") {
        FailureKind::Quota
    } else {
        FailureKind::Transient
    }
}

/// A Codex command that exited non-zero, failed or was declined, as a line.
fn failed_command(item: &Value) -> Option<String> {
    let command = text_of(item.get("command"));
    let status = item.get("status").and_then(Value::as_str).unwrap_or("");
    let code = item.get("exit_code").and_then(Value::as_i64);
    let how = match (code, status) {
        (Some(0), _) => return None,
        (Some(c), _) => format!("exited {c}"),
        (None, "failed" | "declined") => status.to_string(),
        (None, _) => return None,
    };
    let output = first_lines(&text_of(item.get("aggregated_output")), 1);
    let command = crate::text::truncate(&command, 120);
    Some(if output.is_empty() {
        format!("`{command}` {how}")
    } else {
        format!("`{command}` {how}: {output}")
    })
}

/// Codex `exec --json`: `None` unless the lines are Codex events.
fn codex(stdout: &str) -> Option<Parsed> {
    let events: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").and_then(Value::as_str).is_some())
        .collect();
    let is_codex = events.iter().any(|e| {
        matches!(
            e.get("type").and_then(Value::as_str),
            Some("thread.started" | "turn.started" | "turn.completed" | "turn.failed")
        )
    });
    if !is_codex {
        return None;
    }
    let mut parsed = Parsed::default();
    let mut reader: Option<UsageReader> = None;
    for e in &events {
        match e.get("type").and_then(Value::as_str).unwrap_or("") {
            "thread.started" => {
                parsed.session_id = e
                    .get("thread_id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            "item.completed" => {
                let item = e.get("item");
                match item.and_then(|i| i.get("type")).and_then(Value::as_str) {
                    Some("agent_message") => {
                        parsed.text = text_of(item.and_then(|i| i.get("text")));
                    }
                    Some("command_execution") => {
                        parsed.agent_errors.extend(item.and_then(failed_command))
                    }
                    _ => {}
                }
            }
            "turn.completed" => {
                if let Some(u) = e.get("usage") {
                    let r = reader.get_or_insert_with(|| UsageReader::new(None));
                    // `input_tokens` includes the cached part.
                    let input = r.count(u, "input_tokens", "usage.input_tokens");
                    let cache_read = r.count(u, "cached_input_tokens", "usage.cached_input_tokens");
                    let cache_write = r.count(
                        u,
                        "cache_write_input_tokens",
                        "usage.cache_write_input_tokens",
                    );
                    let output = r.count(u, "output_tokens", "usage.output_tokens");
                    // Of `output_tokens` (as the Responses API counts it), not on top.
                    let reasoning = r.count(
                        u,
                        "reasoning_output_tokens",
                        "usage.reasoning_output_tokens",
                    );
                    r.add_total(input, output, cache_read, cache_write);
                    r.reasoning(reasoning);
                    r.keep(u);
                }
                // A turn that completes after an `error` event (Codex's "Reconnecting…
                // 1/5") succeeded: only `turn.failed`, or an error no turn completed
                // after, fails.
                if !matches!(&parsed.error, Some(e) if e.fatal) {
                    parsed.error = None;
                }
            }
            "turn.failed" | "error" => {
                let message = e
                    .get("error")
                    .and_then(|x| x.get("message"))
                    .or_else(|| e.get("message"));
                let message = text_of(message);
                let kind = codex_error_kind(&message);
                let fatal = e.get("type").and_then(Value::as_str) == Some("turn.failed");
                if !matches!(&parsed.error, Some(e) if e.fatal) {
                    parsed.error = Some(AgentError {
                        kind,
                        message,
                        fatal,
                    });
                }
            }
            _ => {}
        }
    }
    parsed.usage = reader.map(UsageReader::finish);
    if parsed.error.is_some() {
        parsed.text.clear();
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input (cache included), output, cache read, cache write.
    type Figures = (u64, u64, u64, u64);

    /// (name, stdout, reply text, usage, cost, error kind)
    type Case = (
        &'static str,
        String,
        &'static str,
        Option<Figures>,
        Option<f64>,
        Option<FailureKind>,
    );

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Option<Figures> {
        Some((input, output, cache_read, cache_write))
    }

    fn figures(p: &Parsed) -> Option<Figures> {
        p.usage
            .as_ref()
            .map(|u| (u.input, u.output, u.cache_read, u.cache_write))
    }

    #[test]
    fn agent_outputs_and_what_they_mean() {
        let cases: Vec<Case> = vec![
            (
                "Claude Code success with modelUsage over two models",
                r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s","total_cost_usd":0.011,"usage":{"input_tokens":11,"output_tokens":7},"modelUsage":{"claude-sonnet":{"inputTokens":300,"outputTokens":200,"cacheReadInputTokens":100,"cacheCreationInputTokens":50,"costUSD":0.01},"claude-haiku":{"inputTokens":150,"outputTokens":20,"costUSD":0.001}}}"#.into(),
                "done", usage(600, 220, 100, 50), Some(0.011), None,
            ),
            (
                "Claude Code success with usage only",
                r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.01,"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}"#.into(),
                "done", usage(15, 3, 5, 0), Some(0.01), None,
            ),
            (
                "Claude Code API error 500 (exit 1)",
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":500,"result":"API Error: 500 boom"}"#.into(),
                "", None, None, Some(FailureKind::Transient),
            ),
            (
                "Claude Code API error 401",
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Invalid API key"}"#.into(),
                "", None, None, Some(FailureKind::Permanent),
            ),
            (
                "Claude Code not logged in (no status)",
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"result":"Not logged in"}"#.into(),
                "", None, None, Some(FailureKind::Transient),
            ),
            (
                "Claude Code max turns",
                r#"{"type":"result","subtype":"error_max_turns","is_error":true,"errors":["Reached maximum number of turns (2)"],"modelUsage":{"m":{"inputTokens":10,"outputTokens":1,"costUSD":0.001}}}"#.into(),
                "", usage(10, 1, 0, 0), Some(0.001), Some(FailureKind::Permanent),
            ),
            (
                "Claude Code max budget",
                r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"errors":["Reached maximum budget ($0.002)"],"total_cost_usd":0.0024}"#.into(),
                "", None, Some(0.0024), Some(FailureKind::Budget),
            ),
            (
                "Codex JSON lines, two turns summed",
                [
                    r#"{"type":"thread.started","thread_id":"t1"}"#,
                    r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata not found"}}"#,
                    r#"{"type":"turn.started"}"#,
                    r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"first"}}"#,
                    r#"{"type":"turn.completed","usage":{"input_tokens":200,"cached_input_tokens":20,"output_tokens":40}}"#,
                    r#"{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"DONE"}}"#,
                    r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"cache_write_input_tokens":5,"output_tokens":10}}"#,
                ].join("\n"),
                "DONE", usage(300, 50, 20, 5), None, None,
            ),
            (
                "Codex turn failed",
                [
                    r#"{"type":"turn.started"}"#,
                    r#"{"type":"error","message":"unexpected status 401 Unauthorized: bad key"}"#,
                    r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: bad key"}}"#,
                ].join("\n"),
                "", None, None, Some(FailureKind::Permanent),
            ),
            (
                "Codex turn completed after a reconnect notice",
                [
                    r#"{"type":"thread.started","thread_id":"t2"}"#,
                    r#"{"type":"turn.started"}"#,
                    r#"{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion: error sending request)"}"#,
                    r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"DONE"}}"#,
                    r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":30,"reasoning_output_tokens":12}}"#,
                ].join("\n"),
                "DONE", usage(100, 30, 0, 0), None, None,
            ),
            (
                "Codex error event with no turn completed after it",
                [
                    r#"{"type":"turn.started"}"#,
                    r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"half"}}"#,
                    r#"{"type":"turn.completed","usage":{"input_tokens":10,"output_tokens":3}}"#,
                    r#"{"type":"turn.started"}"#,
                    r#"{"type":"error","message":"stream disconnected before completion"}"#,
                ].join("\n"),
                "", usage(10, 3, 0, 0), None, Some(FailureKind::Transient),
            ),
            (
                "Gemini CLI success",
                r#"{"session_id":"g","response":"hello","stats":{"models":{"gemini-2.5-pro":{"tokens":{"input":13745,"prompt":24401,"candidates":215,"total":24719,"cached":10656,"thoughts":103,"tool":0}}}}}"#.into(),
                "hello", usage(24401, 318, 10656, 0), None, None,
            ),
            (
                "Gemini CLI error",
                r#"{"session_id":"g","error":{"type":"Error","message":"Something went wrong","code":500}}"#.into(),
                "", None, None, Some(FailureKind::Transient),
            ),
            (
                "plain text",
                "just text\n".into(),
                "just text\n", None, None, None,
            ),
            (
                "JSON that is no agent's",
                r#"{"other": 1}"#.into(),
                r#"{"other": 1}"#, None, None, None,
            ),
        ];
        for (name, stdout, text, want_usage, cost, kind) in cases {
            let p = parse(&stdout);
            assert_eq!(p.text, text, "{name}");
            assert_eq!(figures(&p), want_usage, "{name}");
            match (cost, p.cost_usd) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{name}: cost {b}"),
                (a, b) => panic!("{name}: cost {b:?}, wanted {a:?}"),
            }
            assert_eq!(
                p.error.as_ref().map(|e| e.kind),
                kind,
                "{name}: {:?}",
                p.error
            );
        }
    }

    #[test]
    fn codex_reasoning_tokens_are_kept_as_the_part_of_the_output_spent_on_reasoning() {
        let p = parse(
            r#"{"type":"turn.started"}
{"type":"turn.completed","usage":{"input_tokens":100,"output_tokens":30,"reasoning_output_tokens":12}}"#,
        );
        let u = p.usage.expect("usage");
        assert_eq!((u.output, u.reasoning), (30, 12));
    }

    #[test]
    fn what_the_agent_reported_failing_is_read() {
        let codex = [
            r#"{"type":"thread.started","thread_id":"t"}"#,
            r#"{"type":"item.completed","item":{"id":"1","type":"command_execution","command":"bash -lc 'pytest -q'","aggregated_output":"\n1 failed, 3 passed\n","exit_code":1,"status":"failed"}}"#,
            r#"{"type":"item.completed","item":{"id":"2","type":"command_execution","command":"ls","aggregated_output":"a\n","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"3","type":"command_execution","command":"rm -rf /","exit_code":null,"status":"declined"}}"#,
            r#"{"type":"item.completed","item":{"id":"4","type":"agent_message","text":"done"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":1,"output_tokens":1}}"#,
        ]
        .join("\n");
        let p = parse(&codex);
        assert_eq!(
            p.agent_errors,
            [
                "`bash -lc 'pytest -q'` exited 1: 1 failed, 3 passed",
                "`rm -rf /` declined"
            ]
        );
        assert_eq!(p.text, "done");
        let claude = [
            r#"{"type":"system","subtype":"init","session_id":"s"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"python -m venv .venv"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"Exit code 127\nbash: python: command not found"}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","is_error":false,"content":"ok"}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"built","session_id":"s","total_cost_usd":0.01,"usage":{"input_tokens":5,"output_tokens":2}}"#,
        ]
        .join("\n");
        let p = parse(&claude);
        assert_eq!(
            p.agent_errors,
            ["Exit code 127: bash: python: command not found"]
        );
        assert_eq!(p.text, "built");
        assert_eq!(p.session_id.as_deref(), Some("s"));
        assert!(p.error.is_none());
    }

    #[test]
    fn what_a_line_says_of_an_agents_progress() {
        use crate::process::Progress;
        for (line, want) in [
            (
                r#"{"type":"error","message":"Reconnecting... 2/5"}"#,
                Progress::Noise,
            ),
            (
                r#"{"type":"item.started","item":{"type":"command_execution"}}"#,
                Progress::Busy,
            ),
            (
                r#"{"type":"item.completed","item":{"type":"command_execution"}}"#,
                Progress::Done,
            ),
            (
                r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash"}]}}"#,
                Progress::Busy,
            ),
            (
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}"#,
                Progress::Done,
            ),
            (
                r#"{"type":"user","message":{"content":[{"type":"tool_result"}]}}"#,
                Progress::Done,
            ),
            ("plain text", Progress::Done),
        ] {
            assert_eq!(progress(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn malformed_usage_is_flagged_not_trusted() {
        let p = parse(
            r#"{"type":"result","is_error":false,"result":"x","modelUsage":{"m":{"inputTokens":-5,"outputTokens":1.5}}}"#,
        );
        let u = p.usage.expect("usage");
        assert!(u.malformed.is_some(), "{u:?}");
    }
}
