//! An agent CLI as a provider (`claude -p --output-format json`, `codex exec`,
//! `aider --message`...): the prompt on stdin, the reply on stdout.
//!
//! The prompt is the system message, a line `---` between blank lines, then the user
//! message. If stdout is a JSON object with `result`, that is the reply, and `usage`,
//! `total_cost_usd` and `is_error` are used (Claude Code's shape); otherwise stdout is the
//! reply. A non-zero exit or `is_error` is a failure carrying the tail of stderr. The
//! child runs in its own process group, which the timeout (or our own exit) kills whole,
//! and gets a scrubbed environment: PATH, HOME, the key variable and `[llm].env`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http::truncate;
use super::{Failure, FailureKind, Finish, Outcome, Progress, Reply, Usage, redact};
use crate::config::Config;
use crate::request::Request;

pub struct Command {
    argv: Vec<String>,
    key_env: String,
    pass_env: Vec<String>,
    timeout: Duration,
}

/// Kills the child's whole process group when dropped (timeout, signal, early return).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Command {
    pub fn new(config: &Config, key_env: String) -> Command {
        Command {
            argv: config.llm.command.clone(),
            key_env,
            pass_env: config.llm.env.clone(),
            timeout: config.llm.timeout,
        }
    }

    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The prompt as the agent gets it on stdin.
    pub fn stdin_text(request: &Request) -> String {
        format!("{}\n\n---\n\n{}", request.system, request.user)
    }

    pub async fn send(&self, request: &Request, progress: Progress<'_>) -> Outcome {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(Failure::permanent("llm.command is empty"));
        };
        let key = std::env::var(&self.key_env).ok();
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in ["PATH", "HOME"]
            .into_iter()
            .chain(std::iter::once(self.key_env.as_str()))
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::permanent(format!(
                    "llm.command: `{program}` was not found; install it or give its full path"
                ))
            } else {
                Failure::permanent(format!("llm.command: cannot start `{program}`: {e}"))
            }
            .not_billed()
        })?;
        let _group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let input = Command::stdin_text(request);
        let work = async {
            let write = async {
                if let Some(mut s) = stdin.take() {
                    // An agent that exits without reading its input is not our failure.
                    let _ = s.write_all(input.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            };
            let read_out = read_limited(stdout.as_mut());
            let read_err = read_limited(stderr.as_mut());
            let (_, out, err) = tokio::join!(write, read_out, read_err);
            let status = child.wait().await;
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Failure::transient(format!(
                    "`{program}` did not finish within llm.timeout ({}); its process group was killed",
                    humantime::format_duration(self.timeout)
                )));
            }
        };
        let out = out.map_err(|m| Failure::permanent(format!("`{program}`: {m}")))?;
        let err = err.unwrap_or_default();
        progress(1);
        let stderr_tail = redact(&tail(&String::from_utf8_lossy(&err)), key.as_deref());
        let stdout = String::from_utf8_lossy(&out).into_owned();
        let status = status.map_err(|e| Failure::transient(format!("`{program}`: {e}")))?;
        let parsed = parse_output(&stdout);
        if !status.success() || parsed.is_error {
            let what = if status.success() {
                "reported an error (is_error)".to_string()
            } else {
                format!("exited with {status}")
            };
            let detail = if parsed.is_error {
                truncate(&parsed.text, 500)
            } else {
                String::new()
            };
            let mut message = format!("`{program}` {what}");
            if !detail.is_empty() {
                message.push_str(&format!(": {detail}"));
            }
            if !stderr_tail.is_empty() {
                message.push_str(&format!("; stderr: {stderr_tail}"));
            }
            let lower = message.to_ascii_lowercase();
            let kind = if lower.contains("credit balance") || lower.contains("quota") {
                FailureKind::Quota
            } else {
                FailureKind::Transient
            };
            let mut f = Failure::transient(redact(&message, key.as_deref()));
            f.kind = kind;
            f.partial = parsed.text;
            return Err(f);
        }
        Ok(Reply {
            text: parsed.text,
            finish: Finish::Stop,
            usage: parsed.usage,
            request_id: parsed.session_id,
            cost_usd: parsed.cost_usd,
        })
    }
}

async fn read_limited(
    pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>,
) -> Result<Vec<u8>, String> {
    let Some(pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    let limit = super::MAX_REPLY_BYTES as u64;
    pipe.take(limit + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > limit {
        return Err(format!(
            "printed more than {} MiB; the agent is misbehaving",
            limit / (1024 * 1024)
        ));
    }
    Ok(buf)
}

/// The last lines of stderr, for a failure's message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(10);
    let joined = lines[start..].join(" | ");
    if joined.len() > 1500 {
        let mut cut = joined.len() - 1500;
        while !joined.is_char_boundary(cut) {
            cut += 1;
        }
        format!("…{}", &joined[cut..])
    } else {
        joined
    }
}

#[derive(Debug, Default, PartialEq)]
struct Parsed {
    text: String,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    is_error: bool,
    session_id: Option<String>,
}

/// Claude Code's `--output-format json` result, or plain text.
fn parse_output(stdout: &str) -> Parsed {
    let trimmed = stdout.trim();
    let Some(obj) = serde_json::from_str::<Value>(trimmed)
        .ok()
        .filter(|v| v.get("result").is_some() || v.get("is_error").is_some())
    else {
        return Parsed {
            text: stdout.to_string(),
            ..Parsed::default()
        };
    };
    let usage = obj.get("usage").and_then(|u| {
        let input = u.get("input_tokens").and_then(Value::as_u64)?
            + u.get("cache_creation_input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0)
            + u.get("cache_read_input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        Some(Usage {
            input,
            output: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
        })
    });
    Parsed {
        text: match obj.get("result") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        },
        usage,
        cost_usd: obj.get("total_cost_usd").and_then(Value::as_f64),
        is_error: obj
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        session_id: obj
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_code_result_shape() {
        let p = parse_output(
            r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1","total_cost_usd":0.01,"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}"#,
        );
        assert_eq!(p.text, "done");
        assert_eq!(
            p.usage,
            Some(Usage {
                input: 15,
                output: 3
            })
        );
        assert_eq!(p.cost_usd, Some(0.01));
        assert!(!p.is_error);
    }

    #[test]
    fn plain_text_is_the_reply() {
        let p = parse_output("just text\n");
        assert_eq!(p.text, "just text\n");
        assert_eq!(p.usage, None);
        let p = parse_output(r#"{"other": 1}"#);
        assert_eq!(p.text, r#"{"other": 1}"#);
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 20"), "{t}");
        assert!(t.ends_with("line 29"), "{t}");
    }
}
