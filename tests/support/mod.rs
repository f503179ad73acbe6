//! Test support: a temporary build laid out on disk, the real binary run against it, and
//! (in `fake_llm`) an in-process fake LLM server on 127.0.0.1 that replays scripted replies
//! and faults per request.

#![allow(dead_code)]

pub mod builder;
pub mod fake_llm;
pub mod hosts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fake_llm::{FakeLlm, Seen};
use orchestrator::documents::{ReportDoc, RunEventDoc, StatusDoc};

/// The repository root (where the bundled build is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: this build's, or another one's named by `ORCHESTRATOR_TEST_BIN`
/// (to show that a new test fails against an older build).
pub fn bin() -> PathBuf {
    std::env::var_os("ORCHESTRATOR_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_orchestrator")))
}

/// A program on PATH, if it is there (tests that need a real client skip without it).
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The example agent build's prompts in a temporary build, and its `config.toml` text (for
/// a test to set its agent on).
pub fn example_agent_build() -> (Build, String) {
    let b = Build::new();
    copy_dir(
        &repo().join("examples/agent-build/prompts"),
        &b.path().join("prompts"),
    );
    let config = std::fs::read_to_string(repo().join("examples/agent-build/config.toml"))
        .expect("example config");
    (b, config)
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

    /// `status --json`, read into the type the binary writes it from.
    #[track_caller]
    pub fn status_doc(&self) -> StatusDoc<'static> {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not a StatusDoc ({e}):\n{}", self.stdout))
    }

    /// `report --json`, read into the type the binary writes it from.
    #[track_caller]
    pub fn report_doc(&self) -> ReportDoc {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not a ReportDoc ({e}):\n{}", self.stdout))
    }

    /// `run --json`: one event per line, each read into the type the binary writes it from.
    #[track_caller]
    pub fn events(&self) -> Vec<RunEventDoc> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not one RunEventDoc per line ({e}): {l}"))
            })
            .collect()
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

/// Every journal line, parsed (a line that is not JSON, an empty or a torn one included,
/// is a test failure).
pub fn journal(b: &Build) -> Vec<serde_json::Value> {
    b.read("checkpoints/journal.jsonl")
        .lines()
        .enumerate()
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

/// The outcomes of prompt `id`'s attempts (`ok`, `transient`, `content`...), in order.
pub fn outcomes(b: &Build, id: &str) -> Vec<String> {
    attempts(b, id)
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// An attempt's `error` text ("" if it has none).
pub fn error_of(attempt: &serde_json::Value) -> String {
    attempt["error"].as_str().unwrap_or("").to_string()
}

/// `status.json` as JSON, after checking that it reads into [`StatusDoc`] (so every test
/// that looks at it also holds it to the one model of it).
#[track_caller]
pub fn status_json(b: &Build) -> serde_json::Value {
    let text = b.read("checkpoints/status.json");
    if let Err(e) = serde_json::from_str::<StatusDoc>(&text) {
        panic!("status.json is not a StatusDoc ({e}):\n{text}");
    }
    serde_json::from_str(&text).expect("status.json parses")
}

/// `status.json`, read into the type the runner writes it from.
#[track_caller]
pub fn status_doc(b: &Build) -> StatusDoc<'static> {
    let text = b.read("checkpoints/status.json");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status.json is not a StatusDoc ({e}):\n{text}"))
}

/// A JSON array of strings (`completed`, `failed`...) as strings; anything else fails.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The build's prompts in plan order, as `plan --json` lists them.
pub fn plan_prompts(b: &Build) -> Vec<serde_json::Value> {
    let plan = b.run(&["plan", "--json"]);
    plan.code(0);
    plan.json()["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|ph| ph["prompts"].as_array().expect("prompts").clone())
        .collect()
}

// ---- Against the fake server -------------------------------------------------------------

/// The bundled build (config as shipped) pointed at `server` through `OPENAI_BASE_URL`.
pub fn bundled_against(server: &FakeLlm) -> Build {
    let mut b = Build::bundled();
    b.env("OPENAI_BASE_URL", &server.base_url());
    b
}

/// Requests per prompt name.
pub fn per_prompt(seen: &[Seen]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in seen {
        *m.entry(s.prompt_name()).or_insert(0) += 1;
    }
    m
}

/// The requests of prompt `name` (`01.1-python-setup`), in order.
pub fn requests_of(seen: &[Seen], name: &str) -> Vec<Seen> {
    seen.iter()
        .filter(|s| s.prompt_name() == name)
        .cloned()
        .collect()
}

/// Blocks until `n` requests arrived (the moment a test waits for), failing after 20 s.
#[track_caller]
pub fn await_requests(server: &FakeLlm, n: usize) {
    assert!(
        server.wait_for(n, std::time::Duration::from_secs(20)),
        "expected {n} requests, the server saw {}",
        server.count()
    );
}

// ---- Config ------------------------------------------------------------------------------

/// `base` (TOML) with `sets` applied. A config is edited as a table, not as text: each
/// `("a.b.key", value)` sets `key` under the dotted path, creating tables as needed; a part
/// of the path that meets an array of tables (`[[phases]]`) picks the element whose `name`
/// is that part, so `("phases.Foundation.budget", 600.into())` sets one phase's budget.
pub fn config_with(base: &str, sets: &[(&str, toml::Value)]) -> String {
    let mut table: toml::Table = base.parse().expect("base config parses");
    for (path, value) in sets {
        let parts: Vec<&str> = path.split('.').collect();
        let (key, sections) = parts.split_last().expect("a key");
        assert!(!sections.is_empty(), "{path}: not section.key");
        let mut at = &mut table;
        let mut parts = sections.iter();
        while let Some(part) = parts.next() {
            let entry = at
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(t) => t,
                toml::Value::Array(items) => {
                    let name = parts
                        .next()
                        .unwrap_or_else(|| panic!("{path}: which element of {part}?"));
                    items
                        .iter_mut()
                        .filter_map(toml::Value::as_table_mut)
                        .find(|t| t.get("name").and_then(toml::Value::as_str) == Some(name))
                        .unwrap_or_else(|| panic!("{path}: no {part} named {name}"))
                }
                _ => panic!("{path}: {part} is not a table"),
            };
        }
        at.insert(key.to_string(), value.clone());
    }
    toml::to_string(&table).expect("config serializes")
}

/// Clocks for runs against the fake server: 2 s to connect, 30 s a request, 400 ms of
/// silence, retries after 10 ms to 100 ms; and a `base_url` where nothing listens (the
/// fake's address comes in through `OPENAI_BASE_URL`).
pub fn fast_clocks() -> Vec<(&'static str, toml::Value)> {
    vec![
        ("llm.base_url", "http://127.0.0.1:9/v1".into()),
        ("llm.connect_timeout", "2s".into()),
        ("llm.timeout", "30s".into()),
        ("llm.idle_timeout", "400ms".into()),
        ("retry.initial_delay", "10ms".into()),
        ("retry.max_delay", "100ms".into()),
    ]
}

/// The repository's `config.toml` with [`fast_clocks`], then `sets`, applied.
pub fn fast_bundled_config(sets: &[(&str, toml::Value)]) -> String {
    let base = std::fs::read_to_string(repo().join("config.toml")).expect("config.toml");
    let mut all = fast_clocks();
    all.extend(sets.iter().cloned());
    config_with(&base, &all)
}

/// The bundled build against `server`, with [`fast_bundled_config`]`(sets)`.
pub fn fast_bundled(server: &FakeLlm, sets: &[(&str, toml::Value)]) -> Build {
    let b = bundled_against(server);
    b.config(&fast_bundled_config(sets));
    b
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

    /// `cmd` (a [`Build::command`], with what the test adds) in a process group of its
    /// own, as a terminal runs a foreground job; its output read.
    pub fn foreground(mut cmd: Command) -> Running {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn orchestrator");
        Running(Some(child))
    }

    /// As a terminal's Ctrl-C does: SIGINT to the whole foreground process group.
    pub fn ctrl_c(&mut self) {
        let group = format!("-{}", self.pid());
        let ok = Command::new("kill")
            .args(["-s", "INT", "--", &group])
            .status()
            .expect("kill(1)")
            .success();
        assert!(ok, "kill -s INT -- {group}");
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

/// An agent's reply in Claude Code's JSON shape (a `#!/bin/sh` body for [`agent_script`]):
/// the checkpoint block for the prompt named in its input, every requested output set to
/// `cmd-value`, and usage of 11 tokens in and 7 out.
pub const AGENT_REPLY: &str = r##"input=$(cat)
name=$(printf '%s\n' "$input" | sed -n 's/^Prompt: //p' | head -n 1)
block=$(printf '%s\n' "$input" | grep '"outputs": {' | head -n 1 | sed 's/"\.\.\."/"cmd-value"/g; s/\\/\\\\/g; s/"/\\"/g')
printf '{"type":"result","subtype":"success","is_error":false,"result":"Done with %s.\\n\\n```json\\n%s\\n```\\n","session_id":"s","total_cost_usd":0.001,"usage":{"input_tokens":11,"output_tokens":7}}\n' "$name" "$block"
"##;

/// [`AGENT_REPLY`] with `usage` (a JSON object) as its usage.
pub fn agent_reply_with_usage(usage: &str) -> String {
    let plain = r#""usage":{"input_tokens":11,"output_tokens":7}"#;
    assert!(AGENT_REPLY.contains(plain), "AGENT_REPLY's usage changed");
    AGENT_REPLY.replace(plain, &format!("\"usage\":{usage}"))
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

/// Waits up to `limit` for `pid` to die (a kill is asynchronous).
pub fn dies_within(pid: u32, limit: std::time::Duration) -> bool {
    eventually(limit, || !alive(pid))
}

/// Kills `pid` (SIGKILL) if it is still alive: cleanup after a test that found it alive.
pub fn kill_pid(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// A pid an agent script wrote into a file (`echo $! > file` creates the file before it
/// writes the number: the number is waited for).
pub fn read_pid(path: &Path) -> u32 {
    let read = || {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
    };
    eventually(std::time::Duration::from_secs(10), || read().is_some());
    read().unwrap_or_else(|| panic!("{}: no pid was written", path.display()))
}

/// Writes `text` to `path` as an executable file.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

// ---- Git ---------------------------------------------------------------------------------

/// git in `dir`, with no `GIT_*` variable of the test's environment; its stdout (a failure
/// fails the test).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository in `dir` with one commit of `file` on `main`, as a user's would be.
pub fn user_repo(dir: &Path, file: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.email", "user@example.com"]);
    git(dir, &["config", "user.name", "User"]);
    std::fs::write(dir.join(file), "the user's\n").expect("write");
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", "the user's work"]);
}

/// The calls the scripted agent logged into `log`, in order.
pub fn logged_calls(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a logged call"))
        .collect()
}
