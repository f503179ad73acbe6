//! An agent CLI as a provider (`claude -p --output-format json`, `codex exec`,
//! `aider --message`...): the prompt on stdin, the reply on stdout.
//!
//! The prompt is the system message, a line `---` between blank lines, then the user
//! message. What the agent prints is read by [`super::agent_output`].
//!
//! The agent's process is ours for exactly as long as the attempt: it runs in its own
//! process group with a scrubbed environment (PATH, HOME, the key variable and
//! `[llm].env`), it gets SIGKILL from the kernel if the runner dies (Linux's parent-death
//! signal, so even `kill -9` of the runner takes it along), and its whole group is killed
//! when the attempt ends for any reason (the reply taken, a timeout, a signal). The group is
//! reported to the runner as soon as it exists ([`super::Update::AgentStarted`]), so that a
//! run resumed after a crash can find a group that outlived its agent and kill it before
//! starting the prompt again.
//!
//! When the agent exits, its reply is taken after a short grace for output still in the
//! pipe, even if a background process it left holds the pipe open; the group is then killed.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::agent_output::{self, AgentError};
use super::{Failure, FailureKind, Finish, Outcome, Progress, Reply, Update, redact};
use crate::config::Config;
use crate::request::Request;

/// How long output still in the pipe is waited for once the agent has exited.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How much of stderr is kept (the end) for messages.
const STDERR_KEPT: usize = 64 * 1024;

pub(crate) struct Command {
    argv: Vec<String>,
    key_env: String,
    pass_env: Vec<String>,
    timeout: Duration,
}

/// An agent's process group as the journal keeps it: enough to tell, after a crash,
/// whether a live group is still the one we started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AgentGroup {
    pub(crate) pgid: i32,
    /// `/proc/sys/kernel/random/boot_id`: a group id from another boot is someone else's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) boot_id: Option<String>,
    /// The leader's start time (clock ticks since boot, `/proc/PID/stat` field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started: Option<u64>,
}

impl AgentGroup {
    fn of(pid: u32) -> Option<AgentGroup> {
        Some(AgentGroup {
            pgid: i32::try_from(pid).ok()?,
            boot_id: boot_id(),
            started: start_time(pid),
        })
    }

    /// Kills the group if it is still alive and still ours; whether it did.
    ///
    /// A process group id cannot be handed out again while any process is in the group,
    /// so a live group whose leader is gone is still ours; a live leader must have the
    /// start time we recorded.
    pub(crate) fn kill_if_left(&self) -> bool {
        if self.boot_id.is_some() && self.boot_id != boot_id() {
            return false;
        }
        let group = Pid::from_raw(self.pgid);
        if self.pgid <= 1 || killpg(group, None).is_err() {
            return false;
        }
        let leader = u32::try_from(self.pgid).ok();
        if let Some(now) = leader.and_then(start_time)
            && self.started.is_some_and(|then| then != now)
        {
            return false;
        }
        killpg(group, Signal::SIGKILL).is_ok()
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; fields after the
    // last ')' start at field 3, so the start time (field 22) is the 20th of them.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Kills the child's whole process group when dropped (the attempt ended, however).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Asks the kernel to SIGKILL the child when this runner dies, and makes the child give up
/// if the runner is already gone by the time it runs.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It calls only prctl(2) and
    // getppid(2), which are async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the runner is gone"));
            }
            Ok(())
        });
    }
}

impl Command {
    pub(crate) fn new(config: &Config, key_env: String) -> Command {
        Command {
            argv: config.llm.command.clone(),
            key_env,
            pass_env: config.llm.env.clone(),
            timeout: config.llm.timeout,
        }
    }

    pub(crate) fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The prompt as the agent gets it on stdin.
    pub(crate) fn stdin_text(request: &Request) -> String {
        format!("{}\n\n---\n\n{}", request.system, request.user)
    }

    pub(crate) async fn send(&self, request: &Request, progress: Progress<'_>) -> Outcome {
        let mut child = self.spawn()?;
        let pid = child.id();
        let _group = GroupGuard(pid.and_then(|id| i32::try_from(id).ok()));
        if let Some(group) = pid.and_then(AgentGroup::of) {
            progress(Update::AgentStarted(group));
        }
        let input = Command::stdin_text(request);
        let (ended, out, err) = talk(&mut child, input.as_bytes(), self.timeout).await;
        let program = self.program();
        let key = std::env::var(&self.key_env).ok();
        progress(Update::Streamed(1));
        let stderr_tail = redact(&tail(&String::from_utf8_lossy(&err)), key.as_deref());
        let status = match ended {
            Ended::TooLarge => {
                return Err(Failure::permanent(format!(
                    "`{program}` printed a reply over {} MiB; the agent is misbehaving (its process group was killed)",
                    super::MAX_REPLY_BYTES / (1024 * 1024)
                )));
            }
            Ended::TimedOut => {
                return Err(Failure::transient(format!(
                    "`{program}` did not finish within llm.timeout ({}); its process group was killed",
                    humantime::format_duration(self.timeout)
                )));
            }
            Ended::Exited(status) => {
                status.map_err(|e| Failure::transient(format!("`{program}`: {e}")))?
            }
        };
        if out.len() > super::MAX_REPLY_BYTES {
            return Err(Failure::permanent(format!(
                "`{program}` printed a reply over {} MiB; the agent is misbehaving",
                super::MAX_REPLY_BYTES / (1024 * 1024)
            )));
        }
        let stdout = String::from_utf8_lossy(&out);
        let mut parsed = agent_output::parse(&stdout);
        if let Some(error) = parsed.error.take() {
            // A failed call may still have worked, and been billed, for a while.
            let mut f = agent_failure(program, &error, &stderr_tail, key.as_deref());
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
            let mut f = Failure::transient(redact(&message, key.as_deref()));
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
        })
    }

    /// Starts the agent: its own process group, a scrubbed environment, killed by the
    /// kernel if the runner dies.
    fn spawn(&self) -> Result<tokio::process::Child, Failure> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(Failure::permanent("llm.command is empty"));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        for name in ["PATH", "HOME"]
            .into_iter()
            .chain(std::iter::once(self.key_env.as_str()))
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.spawn().map_err(|e| {
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
    f
}

/// Writes `input` to the agent and reads what it prints, until it exits (then a grace for
/// what is still in the pipe), prints too much, or `timeout` passes: how it ended, stdout,
/// and the end of stderr.
async fn talk(
    child: &mut tokio::process::Child,
    input: &[u8],
    timeout: Duration,
) -> (Ended, Vec<u8>, Vec<u8>) {
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut out = Vec::new();
    let mut err = Vec::new();
    let ended = {
        let write = async {
            if let Some(mut s) = stdin {
                // An agent that exits without reading its input is not our failure.
                let _ = s.write_all(input).await;
                let _ = s.shutdown().await;
            }
        };
        let read_out = read_capped(stdout, &mut out, super::MAX_REPLY_BYTES);
        let read_err = read_tail(stderr, &mut err, STDERR_KEPT);
        tokio::pin!(write, read_out, read_err);
        let (mut wrote, mut out_done, mut err_done) = (false, false, false);
        let deadline = Instant::now() + timeout;
        let ended = loop {
            tokio::select! {
                () = &mut write, if !wrote => wrote = true,
                r = &mut read_out, if !out_done => {
                    out_done = true;
                    if r.is_err() {
                        break Ended::TooLarge;
                    }
                }
                () = &mut read_err, if !err_done => err_done = true,
                status = child.wait() => break Ended::Exited(status),
                () = tokio::time::sleep_until(deadline) => break Ended::TimedOut,
            }
        };
        if let Ended::Exited(_) = ended {
            // Output still in the pipe; a background process left holding it open must not
            // turn a finished agent into a timeout.
            let grace = deadline.min(Instant::now() + EXIT_GRACE);
            loop {
                tokio::select! {
                    r = &mut read_out, if !out_done => {
                        out_done = true;
                        if r.is_err() {
                            break;
                        }
                    }
                    () = &mut read_err, if !err_done => err_done = true,
                    () = tokio::time::sleep_until(grace) => break,
                    else => break,
                }
            }
        }
        ended
    };
    (ended, out, err)
}

/// How the agent's process ended, as far as waiting for it goes.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    TooLarge,
}

/// Reads `pipe` into `buf` up to `limit` bytes: `Err` as soon as it holds more. Data read
/// stays in `buf` if the future is dropped.
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ()> {
    let Some(pipe) = pipe else { return Ok(()) };
    let mut pipe = pipe.take(limit as u64 + 1);
    let _ = pipe.read_to_end(buf).await;
    if buf.len() > limit { Err(()) } else { Ok(()) }
}

/// Reads `pipe` to its end, keeping about the last `keep` bytes in `buf`.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, buf: &mut Vec<u8>, keep: usize) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * keep {
                    buf.drain(..buf.len() - keep);
                }
            }
        }
    }
}

/// The last lines of stderr, for a failure's message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(10);
    let joined = lines[start..].join(" | ");
    let cut = joined.ceil_char_boundary(joined.len().saturating_sub(1500));
    if cut > 0 {
        format!("…{}", &joined[cut..])
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

    #[test]
    fn a_left_group_is_killed_only_if_it_is_still_ours() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let ours = AgentGroup::of(pid).expect("a group");
        assert!(ours.started.is_some());
        let other_boot = AgentGroup {
            boot_id: Some("another-boot".into()),
            ..ours.clone()
        };
        let reused = AgentGroup {
            started: ours.started.map(|t| t + 1),
            ..ours.clone()
        };
        let gone = AgentGroup {
            pgid: i32::MAX - 7,
            ..ours.clone()
        };
        assert!(!other_boot.kill_if_left(), "a group from another boot");
        assert!(!reused.kill_if_left(), "a leader started at another time");
        assert!(!gone.kill_if_left(), "a group that does not exist");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "still running"
        );
        assert!(ours.kill_if_left(), "our own group");
        let status = child.wait().expect("reaped");
        assert!(!status.success(), "killed: {status}");
    }
}
