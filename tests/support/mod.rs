//! Test support: a temporary build laid out on disk, the real binary run against it, and
//! (in `fake_llm`) an in-process fake LLM server on 127.0.0.1 that replays scripted replies
//! and faults per request.

#![allow(dead_code)]

pub mod fake_llm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root (where the bundled build is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orchestrator"))
}

/// A build in a temporary folder: `config.toml`, `prompts/`, `checkpoints/`.
pub struct Build {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Build {
    pub fn new() -> Build {
        Build {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// A copy of the bundled MAP4 build (config and 40 prompts).
    pub fn bundled() -> Build {
        let b = Build::new();
        copy_dir(&repo().join("prompts"), &b.path().join("prompts"));
        std::fs::copy(repo().join("config.toml"), b.path().join("config.toml"))
            .expect("copy config");
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
        self
    }

    pub fn config(&self, text: &str) -> &Self {
        self.file("config.toml", text)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary in the build's folder.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run orchestrator"))
    }

    /// Runs with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("wait"))
    }
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self.no_panic()
    }

    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "the binary panicked:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A seed-style prompt file with a checkpoint block declaring `outputs`.
pub fn prompt(stem: &str, body: &str, outputs: &[&str]) -> String {
    let outs: Vec<String> = outputs
        .iter()
        .map(|o| format!("    \"{o}\": \"example {o}\""))
        .collect();
    format!(
        "# {stem}\n\n## Objective\n{body}\n\n## Checkpoint\n```json\n{{\n  \"prompt\": \"{stem}\",\n  \"success\": true,\n  \"outputs\": {{\n{}\n  }}\n}}\n```\n\n---\n*Tokens: ~1000 | Time: 2 min | Checkpoint: Required*\n",
        outs.join(",\n")
    )
}

// ---- Reading state -----------------------------------------------------------------------

/// Every journal line, parsed (a line that is not JSON is a test failure).
pub fn journal(b: &Build) -> Vec<serde_json::Value> {
    b.read("checkpoints/journal.jsonl")
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("journal line {} is not JSON ({e}): {l}", i + 1))
        })
        .collect()
}

/// The journal events of one kind (`attempt_finished`, `retry`...), in order.
pub fn events(b: &Build, kind: &str) -> Vec<serde_json::Value> {
    journal(b)
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// The `attempt_finished` events of prompt `id`, in order.
pub fn attempts(b: &Build, id: &str) -> Vec<serde_json::Value> {
    events(b, "attempt_finished")
        .into_iter()
        .filter(|e| e["id"] == id)
        .collect()
}

pub fn status_json(b: &Build) -> serde_json::Value {
    serde_json::from_str(&b.read("checkpoints/status.json")).expect("status.json parses")
}

// ---- Config ------------------------------------------------------------------------------

/// `base` (TOML) with `sets` applied: each `("section.key", value)` sets a key, creating
/// the section if needed. A config is edited as a table, not as text.
pub fn config_with(base: &str, sets: &[(&str, toml::Value)]) -> String {
    let mut table: toml::Table = base.parse().expect("base config parses");
    for (path, value) in sets {
        let (section, key) = path.split_once('.').expect("section.key");
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        entry
            .as_table_mut()
            .unwrap_or_else(|| panic!("{section} is not a table"))
            .insert(key.to_string(), value.clone());
    }
    toml::to_string(&table).expect("config serializes")
}

// ---- Processes ---------------------------------------------------------------------------

/// A spawned run, killed (SIGKILL) if the test ends before it does.
pub struct Running(Option<std::process::Child>);

impl Running {
    pub fn spawn(b: &Build, args: &[&str]) -> Running {
        let child = b
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orchestrator");
        Running(Some(child))
    }

    /// Output not read (for runs that are only killed).
    pub fn spawn_quiet(b: &Build, args: &[&str]) -> Running {
        let child = b
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn orchestrator");
        Running(Some(child))
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("running")
    }

    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// Sends a signal by name (`INT`, `TERM`, `HUP`) with kill(1).
    pub fn signal(&mut self, name: &str) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill(1)")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(mut self) {
        let mut child = self.0.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    pub fn wait(mut self) -> Run {
        let child = self.0.take().expect("running");
        Run::from(child.wait_with_output().expect("wait"))
    }

    /// Whether it exited on its own (reaped if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes an executable `#!/bin/sh` script into the build; its absolute path.
pub fn agent_script(b: &Build, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = b.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write agent");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Whether process `pid` is alive (a zombie is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // pid (comm) STATE ...; comm may hold spaces, so read after the last ')'.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
    }
}

/// Polls `condition` until it holds (true) or `limit` passes (false): for moments that
/// another process brings about (a file written, a process gone), never for a fixed wait.
pub fn eventually(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    condition()
}

/// Kills `pid` (SIGKILL) if it is still alive: cleanup after a test that found it alive.
pub fn kill_pid(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// A pid an agent script wrote into a file.
pub fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: not a pid: {e}", path.display()))
}
