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
