//! Children the runner starts (an agent, a check): each in its own process group, which
//! is ours for exactly as long as its work. The kernel kills it if the runner dies (Linux's
//! parent-death signal, so even `kill -9` of the runner takes it along); its whole group is
//! killed when its work ends for any reason (done, a timeout, a signal); and the group is
//! described well enough ([`ProcessGroup`]) for a run resumed after a crash to find a group
//! that outlived its child and kill it. Output is read while the child runs, bounded, and
//! taken when it exits even if a background process it left holds the pipe open.
//!
//! A process group is not enough to contain an agent: Claude Code's Bash tool and Codex's
//! exec start commands in sessions of their own. So every process an attempt starts carries
//! a [`Mark`] in its environment, which its descendants inherit however they detach; when
//! the attempt ends (and when a run resumes after a crash) every process that carries it is
//! killed. A process that clears its whole environment escapes the mark: the docs say so.
//!
//! Children that must not see the runner's secrets (checks, git, notifications) get a
//! [`scrubbed_env`]: PATH, HOME, the locale and the names the user passes on.

use std::cell::Cell;
use std::ffi::OsString;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long output still in the pipe is waited for once the child has exited.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How much of stderr is kept (the end) for messages.
const STDERR_KEPT: usize = 64 * 1024;

/// A child's process group as the journal keeps it: enough to tell, after a crash,
/// whether a live group is still the one we started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProcessGroup {
    pub(crate) pgid: i32,
    /// `/proc/sys/kernel/random/boot_id`: a group id from another boot is someone else's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) boot_id: Option<String>,
    /// The leader's start time (clock ticks since boot, `/proc/PID/stat` field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started: Option<u64>,
}

impl ProcessGroup {
    pub(crate) fn of(pid: u32) -> Option<ProcessGroup> {
        Some(ProcessGroup {
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

/// The environment variable that marks the processes of one attempt.
pub(crate) const MARK_VAR: &str = "ORCHESTRATOR_ATTEMPT";

/// A random value put in the environment of every process an attempt starts, so that its
/// descendants can be found and killed however they detach (`setsid`, a double fork).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark(pub(crate) String);

impl Mark {
    pub(crate) fn new() -> Mark {
        Mark(
            std::iter::repeat_with(fastrand::alphanumeric)
                .take(20)
                .collect(),
        )
    }

    /// Sets the mark in `cmd`'s environment.
    pub(crate) fn put(&self, cmd: &mut tokio::process::Command) {
        cmd.env(MARK_VAR, &self.0);
    }

    /// Kills every process that carries the mark (but this one), again until none is
    /// left (a process may fork while its siblings are killed); how many were killed.
    pub(crate) fn kill_all(&self) -> usize {
        let needle = format!("{MARK_VAR}={}", self.0).into_bytes();
        let me = std::process::id();
        let mut killed = 0;
        for _ in 0..50 {
            let found: Vec<i32> = marked(&needle)
                .into_iter()
                .filter(|&pid| u32::try_from(pid).is_ok_and(|p| p != me))
                .collect();
            if found.is_empty() {
                break;
            }
            for pid in found {
                if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
        killed
    }
}

/// The live processes whose environment holds `needle` as a whole entry (Linux's
/// `/proc/PID/environ`; none elsewhere). A zombie's environment cannot be read: it is dead.
fn marked(needle: &[u8]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == needle))
        })
        .collect()
}

/// What a child that must not see the runner's secrets gets of its environment: PATH,
/// HOME, the locale (`LANG`, `LANGUAGE`, `LC_*`, `TZ`), and the variables `pass` names,
/// but never those `hidden` names (an API key, even when a list names it).
pub(crate) fn scrubbed_env(pass: &[String], hidden: &[&str]) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            let Some(name) = name.to_str() else {
                return false;
            };
            let wanted = matches!(name, "PATH" | "HOME" | "LANG" | "LANGUAGE" | "TZ")
                || name.starts_with("LC_")
                || pass.iter().any(|p| p == name);
            wanted && !hidden.contains(&name)
        })
        .collect()
}

/// Starts `cmd` in a process group of its own that dies with the runner ([`die_with_parent`])
/// and is killed, whole, when the returned guard is dropped (the child ended, however):
/// how the runner starts every agent, check, notifier and git.
pub(crate) fn spawn_in_group(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, GroupGuard)> {
    cmd.process_group(0).kill_on_drop(true);
    die_with_parent(cmd);
    let child = cmd.spawn()?;
    let group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    Ok((child, group))
}

/// Kills the child's whole process group when dropped (the attempt ended, however).
pub(crate) struct GroupGuard(pub(crate) Option<i32>);

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

/// What to keep of a child's stdout.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keep {
    /// All of it, up to this many bytes: more ends the child ([`Ended::TooLarge`]).
    All(usize),
    /// About the last this many bytes (a check's output, whatever its length).
    Tail(usize),
    /// All of it, as [`Keep::All`], its lines watched: once the child has printed a line
    /// that shows progress, printing none for the idle time ends it ([`Ended::Idle`]).
    Watched(usize, Idle),
}

/// How long a child may go without showing progress, and how a line of its output is
/// read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Idle {
    pub(crate) after: Duration,
    pub(crate) read: fn(&[u8]) -> Progress,
}

/// What a line a child printed says of its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Work done: the idle clock starts again.
    Done,
    /// Work started that may take long with nothing printed (a command, a tool): the
    /// idle clock stops until the next line.
    Busy,
    /// Nothing (a reconnect notice, an error it retries): the clock runs on.
    Noise,
}

/// Writes `input` to the child and reads what it prints, until it exits (then a grace for
/// what is still in the pipe), prints more than it may keep, or `timeout` passes: how it
/// ended, stdout, and the end of stderr.
pub(crate) async fn talk(
    child: &mut tokio::process::Child,
    input: &[u8],
    timeout: Duration,
    keep: Keep,
) -> (Ended, Vec<u8>, Vec<u8>) {
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut out = Vec::new();
    let mut err = Vec::new();
    let ended = {
        let write = async {
            if let Some(mut s) = stdin {
                // A child that exits without reading its input is not a failure.
                let _ = s.write_all(input).await;
                let _ = s.shutdown().await;
            }
        };
        // The idle clock: when the last line showing progress came, `None` while busy or
        // before any.
        let last_progress: Cell<Option<Instant>> = Cell::new(None);
        let read_out = async {
            match keep {
                Keep::All(limit) => read_capped(stdout, &mut out, limit).await,
                Keep::Watched(limit, idle) => {
                    read_watched(stdout, &mut out, limit, idle.read, &last_progress).await
                }
                Keep::Tail(last) => {
                    read_tail(stdout, &mut out, last).await;
                    Ok(())
                }
            }
        };
        let idle_after = match keep {
            Keep::Watched(_, idle) => Some(idle.after),
            _ => None,
        };
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
                () = idle_until(idle_after, &last_progress) => {
                    if idle_after.zip(last_progress.get()).is_some_and(|(a, t)| t.elapsed() >= a) {
                        break Ended::Idle;
                    }
                }
            }
        };
        if let Ended::Exited(_) = ended {
            // Output still in the pipe; a background process left holding it open must not
            // turn a finished agent into a timeout.
            let grace = deadline.min(Instant::now() + EXIT_GRACE);
            while !(out_done && err_done) {
                tokio::select! {
                    r = &mut read_out, if !out_done => {
                        out_done = true;
                        if r.is_err() {
                            break;
                        }
                    }
                    () = &mut read_err, if !err_done => err_done = true,
                    () = tokio::time::sleep_until(grace) => break,
                }
            }
        }
        ended
    };
    if let Keep::Tail(last) = keep {
        out.drain(..out.len().saturating_sub(last));
    }
    (ended, out, err)
}

/// How a child ended, as far as waiting for it goes.
pub(crate) enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    TooLarge,
    /// It showed no progress for the idle time ([`Keep::Watched`]).
    Idle,
}

/// Waits until the idle time after the last progress, as it is now; forever when there is
/// no idle time or no clock running (the select loop looks again when anything else
/// happens, and this wakes it at the deadline to look whether progress came meanwhile).
async fn idle_until(after: Option<Duration>, last: &Cell<Option<Instant>>) {
    let Some(after) = after else {
        return std::future::pending().await;
    };
    match last.get() {
        Some(t) => tokio::time::sleep_until(t + after).await,
        // No clock running yet (or busy): look again within the idle time.
        None => tokio::time::sleep(after.min(Duration::from_secs(1))).await,
    }
}

/// Reads `pipe` into `buf` as [`read_capped`] does, each complete line read by `read`:
/// progress sets `last` to now, work started clears it, noise leaves it.
async fn read_watched(
    pipe: Option<impl AsyncRead + Unpin>,
    buf: &mut Vec<u8>,
    limit: usize,
    read: fn(&[u8]) -> Progress,
    last: &Cell<Option<Instant>>,
) -> Result<(), ()> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut chunk = [0u8; 8192];
    let mut line_start = 0;
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => {
                // Only the new bytes are searched for line ends: a long line costs once.
                let mut from = buf.len();
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > limit {
                    return Err(());
                }
                while let Some(end) = buf[from..].iter().position(|&b| b == b'\n') {
                    let line_end = from + end;
                    match read(&buf[line_start..line_end]) {
                        Progress::Done => last.set(Some(Instant::now())),
                        Progress::Busy => last.set(None),
                        Progress::Noise => {}
                    }
                    line_start = line_end + 1;
                    from = line_start;
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_group_is_killed_only_if_it_is_still_ours() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let ours = ProcessGroup::of(pid).expect("a group");
        assert!(ours.started.is_some());
        let other_boot = ProcessGroup {
            boot_id: Some("another-boot".into()),
            ..ours.clone()
        };
        let reused = ProcessGroup {
            started: ours.started.map(|t| t + 1),
            ..ours.clone()
        };
        let gone = ProcessGroup {
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
