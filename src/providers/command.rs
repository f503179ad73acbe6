//! An agent CLI as a provider (`claude -p --output-format json`, `codex exec`,
//! `aider --message`...): the prompt on stdin, the reply on stdout.
//!
//! The prompt is the system message, a line `---` between blank lines, then the user
//! message. What the agent prints is read by [`super::agent_output`].
//!
//! The agent's process is ours for exactly as long as the attempt: it runs in its own
//! process group with a scrubbed environment (PATH, HOME, the key variable and
//! `[llm].env`) and the attempt's mark (see [`crate::process`]), it gets SIGKILL from the kernel if the runner dies (Linux's parent-death
//! signal, so even `kill -9` of the runner takes it along), and its whole group is killed
//! when the attempt ends for any reason (the reply taken, a timeout, a signal). The group is
//! reported to the runner as soon as it exists ([`super::call::Update::AgentStarted`]), so that a
//! run resumed after a crash can find a group that outlived its agent and kill it before
//! starting the prompt again.
//!
//! When the agent exits, its reply is taken after a short grace for output still in the
//! pipe, even if a background process it left holds the pipe open; the group is then killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::agent_output::{self, AgentError};
use super::call::{Call, Failure, FailureKind, Finish, OnUpdate, Reply, Sent, Update, redact};
use super::usage_limit;
use crate::config::Config;
use crate::process::{Ended, GroupGuard, Idle, Keep, ProcessGroup, spawn_in_group, talk};
use crate::request::Request;
use crate::template::Template;

pub(crate) struct Command {
    argv: Vec<String>,
    /// `llm.continue_session`.
    continue_session: Vec<String>,
    key_env: String,
    pass_env: Vec<String>,
    timeout: Duration,
    /// `llm.idle_timeout`: an agent that printed progress, then none for this long, is cut.
    idle: Duration,
}

impl Command {
    pub(crate) fn new(config: &Config, key_env: String) -> Command {
        Command {
            argv: config.llm.command.clone(),
            continue_session: config.llm.continue_session.clone(),
            key_env,
            pass_env: config.llm.env.clone(),
            timeout: config.llm.timeout,
            idle: config.llm.idle_timeout,
        }
    }

    pub(crate) fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The prompt as the agent gets it on stdin: the system message, earlier turns (as a
    /// transcript) when there are any, then the prompt.
    pub(crate) fn stdin_text(request: &Request) -> String {
        let mut text = format!("{}\n\n---\n\n", request.system);
        if !request.history.is_empty() {
            text.push_str("Earlier in this build (oldest first):\n\n");
            for turn in &request.history {
                text.push_str(&format!(
                    "### Prompt\n\n{}\n\n### Your reply\n\n{}\n\n",
                    turn.user.trim_end(),
                    turn.assistant.trim_end()
                ));
            }
            text.push_str("---\n\nNow this prompt:\n\n");
        }
        text.push_str(&request.user);
        text
    }

    pub(crate) async fn send(
        &self,
        request: &Request,
        max_tokens: u32,
        call: &Call<'_>,
        progress: OnUpdate<'_>,
    ) -> Sent {
        let input = Command::stdin_text(request);
        // `{{prompt_file}}`: the prompt in a file of its own (removed after the call), and
        // nothing on stdin (some CLIs add what stdin holds to their prompt).
        let prompt_file = if self.argv.iter().any(|a| a.contains("prompt_file")) {
            Some(PromptFile::write(&input)?)
        } else {
            None
        };
        let values = Values {
            max_tokens,
            budget_usd_left: call.budget_usd_left,
            prompt_file: prompt_file.as_ref().map(|f| f.0.as_path()),
            workspace: call.workdir,
            agent_session: call.agent_session,
        };
        let (mut child, _group) = self.spawn(&values, call, prompt_file.is_none())?;
        let pid = child.id();
        if let Some(group) = pid.and_then(ProcessGroup::of) {
            progress(Update::AgentStarted(group));
        }
        let input = if prompt_file.is_some() {
            String::new()
        } else {
            input
        };
        let (ended, out, err) = talk(
            &mut child,
            input.as_bytes(),
            self.timeout,
            Keep::Watched(
                super::http::MAX_REPLY_BYTES,
                Idle {
                    after: self.idle,
                    read: agent_output::progress,
                },
            ),
        )
        .await;
        let program = self.program();
        let key = std::env::var(&self.key_env).ok();
        progress(Update::Streamed(1));
        let stderr_tail = redact(&tail(&String::from_utf8_lossy(&err)), key.as_deref());
        let status = match ended {
            Ended::TooLarge => {
                return Err(Failure::permanent(format!(
                    "`{program}` printed a reply over {} MiB; the agent is misbehaving (its process group was killed)",
                    super::http::MAX_REPLY_BYTES / (1024 * 1024)
                )));
            }
            Ended::TimedOut => {
                return Err(Failure::transient(format!(
                    "`{program}` did not finish within llm.timeout ({}); its process group was killed",
                    humantime::format_duration(self.timeout)
                )));
            }
            Ended::Idle => {
                return Err(Failure::transient(format!(
                    "`{program}` printed nothing that shows progress for llm.idle_timeout ({}) (its last lines: {}); its process group was killed",
                    humantime::format_duration(self.idle),
                    crate::text::tail(&String::from_utf8_lossy(&out), 300).trim()
                )));
            }
            Ended::Exited(status) => {
                status.map_err(|e| Failure::transient(format!("`{program}`: {e}")))?
            }
        };
        if out.len() > super::http::MAX_REPLY_BYTES {
            return Err(Failure::permanent(format!(
                "`{program}` printed a reply over {} MiB; the agent is misbehaving",
                super::http::MAX_REPLY_BYTES / (1024 * 1024)
            )));
        }
        reply(program, status, &out, &stderr_tail, key.as_deref())
    }

    /// Starts the agent with `[llm].command`'s placeholders filled in, in `workdir`: its
    /// own process group, a scrubbed environment, killed by the kernel if the runner dies.
    fn spawn(
        &self,
        values: &Values<'_>,
        call: &Call<'_>,
        stdin: bool,
    ) -> Result<(tokio::process::Child, GroupGuard), Failure> {
        let mut argv: Vec<String> = self.argv.iter().map(|a| values.fill(a)).collect();
        if values.agent_session.is_some() {
            // Before a last `-` (the prompt on stdin, as Codex's `exec … resume ID -`).
            let at =
                argv.len() - usize::from(argv.len() > 1 && argv.last().is_some_and(|a| a == "-"));
            let more = self.continue_session.iter().map(|a| values.fill(a));
            argv.splice(at..at, more);
        }
        let Some((program, args)) = argv.split_first() else {
            return Err(Failure::permanent("llm.command is empty"));
        };
        let mut cmd = tokio::process::Command::new(program);
        if let Some(dir) = call.workdir {
            cmd.current_dir(dir);
        }
        cmd.args(args)
            .env_clear()
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in ["PATH", "HOME"]
            .into_iter()
            .chain(std::iter::once(self.key_env.as_str()))
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        if let Some(mark) = call.mark {
            mark.put(&mut cmd);
        }
        spawn_in_group(&mut cmd).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::permanent(format!(
                    "llm.command: `{program}` was not found; install it or give its full path"
                ))
            } else {
                Failure::permanent(format!("llm.command: cannot start `{program}`: {e}"))
            }
            .not_billed()
        })
    }
}

/// The values of `[llm].command`'s placeholders for one call.
struct Values<'a> {
    max_tokens: u32,
    budget_usd_left: Option<f64>,
    prompt_file: Option<&'a Path>,
    workspace: Option<&'a Path>,
    agent_session: Option<&'a str>,
}

impl Values<'_> {
    /// `arg` with its placeholders filled in (checked against
    /// [`crate::config::COMMAND_PLACEHOLDERS`] when the config was loaded).
    fn fill(&self, arg: &str) -> String {
        let path = |p: Option<&Path>| p.map_or_else(String::new, |p| p.display().to_string());
        let vars: BTreeMap<String, Value> = [
            ("max_tokens", Value::from(self.max_tokens)),
            // Money left is rounded down, so that an agent told it never exceeds it.
            (
                "budget_usd_left",
                Value::from(self.budget_usd_left.map_or_else(String::new, |usd| {
                    format!("{:.4}", (usd.max(0.0) * 1e4).floor() / 1e4)
                })),
            ),
            ("prompt_file", Value::from(path(self.prompt_file))),
            ("workspace", Value::from(path(self.workspace))),
            (
                "agent_session",
                Value::from(self.agent_session.unwrap_or("")),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (template, _) = Template::parse(arg, &|n| vars.contains_key(n), &[], 1);
        template
            .render(arg, &vars)
            .unwrap_or_else(|_| arg.to_string())
    }
}

/// The prompt written to a private file for the call, removed when dropped.
struct PromptFile(PathBuf);

impl PromptFile {
    fn write(text: &str) -> Result<PromptFile, Failure> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(8)
            .collect();
        let path = std::env::temp_dir().join(format!(
            "orchestrator-prompt-{}-{suffix}.md",
            std::process::id()
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                Failure::permanent(format!(
                    "cannot write {{{{prompt_file}}}} ({}): {e}",
                    path.display()
                ))
                .not_billed()
            })?;
        Ok(PromptFile(path))
    }
}

impl Drop for PromptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn agent_failure(
    program: &str,
    error: &AgentError,
    stderr_tail: &str,
    key: Option<&str>,
) -> Failure {
    let mut message = format!("`{program}` reported an error: {}", error.message);
    if !stderr_tail.is_empty() {
        message.push_str(&format!("; stderr: {stderr_tail}"));
    }
    let mut f = Failure::transient(redact(&message, key));
    f.kind = error.kind;
    if usage_limit::is_limit(&error.message) {
        // A usage limit is the account's, not the prompt's: never permanent; waited out
        // until its reset when the agent says when that is.
        f.kind = FailureKind::Transient;
        f.limit = true;
        let now = jiff::Timestamp::now();
        f.retry_after = usage_limit::resets_at(&error.message, now, &jiff::tz::TimeZone::system())
            .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default());
    }
    f
}

/// What an agent that exited with `status` printed (`out`), read as its reply or its
/// failure.
fn reply(
    program: &str,
    status: std::process::ExitStatus,
    out: &[u8],
    stderr_tail: &str,
    key: Option<&str>,
) -> Sent {
    let stdout = String::from_utf8_lossy(out);
    let mut parsed = agent_output::parse(&stdout);
    if let Some(error) = parsed.error.take() {
        // A failed call may still have worked, and been billed, for a while.
        let mut f = agent_failure(program, &error, stderr_tail, key);
        f.partial = parsed.text;
        f.usage = parsed.usage.map(Box::new);
        f.cost_usd = parsed.cost_usd;
        return Err(f);
    }
    if !status.success() {
        let mut message = format!("`{program}` exited with {status}");
        if !stderr_tail.is_empty() {
            message.push_str(&format!("; stderr: {stderr_tail}"));
        }
        let lower = message.to_ascii_lowercase();
        let mut f = Failure::transient(redact(&message, key));
        if lower.contains("credit balance") || lower.contains("quota") {
            f.kind = FailureKind::Quota;
        }
        f.partial = parsed.text;
        f.usage = parsed.usage.map(Box::new);
        f.cost_usd = parsed.cost_usd;
        return Err(f);
    }
    Ok(Reply {
        text: parsed.text,
        finish: Finish::Stop,
        usage: parsed.usage,
        request_id: parsed.session_id,
        cost_usd: parsed.cost_usd,
        agent_errors: parsed.agent_errors,
    })
}

/// The last lines of stderr, for a failure's message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(10);
    let joined = lines[start..].join(" | ");
    let kept = crate::text::tail(&joined, 1500);
    if kept.len() < joined.len() {
        format!("…{kept}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_end() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 20"), "{t}");
        assert!(t.ends_with("line 29"), "{t}");
        let long = "é".repeat(2000);
        assert!(tail(&long).starts_with('…'));
    }
}
