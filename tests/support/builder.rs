//! A test build said in one expression, in the spirit of just's `Test`:
//!
//! ```ignore
//! let b = TestBuild::against(&server)
//!     .phase("01-a", "A", Some(50_000))
//!     .prompt("01.1-first", "Say hello.", &["greeting"])
//!     .prompt("01.2-second", "Use {{greeting}} here.", &[])
//!     .set("retry.max_attempts", 2)
//!     .build();
//! ```

use super::fake_llm::FakeLlm;
use super::{Build, config_with, prompt};

pub struct TestBuild {
    config: toml::Table,
    sets: Vec<(String, toml::Value)>,
    files: Vec<(String, String)>,
    /// Where `prompt` puts its files, under `prompts/`.
    dir: String,
}

impl TestBuild {
    /// No config keys at all (every default), no prompts.
    pub fn new() -> TestBuild {
        TestBuild {
            config: toml::Table::new(),
            sets: Vec::new(),
            files: Vec::new(),
            dir: String::new(),
        }
    }

    /// Against the fake server, with clocks for tests: 2 s to connect, 20 s a request,
    /// 2 s of silence, retries after 10 ms to 100 ms.
    pub fn against(server: &FakeLlm) -> TestBuild {
        TestBuild::new()
            .set("llm.base_url", server.base_url())
            .set("llm.connect_timeout", "2s")
            .set("llm.timeout", "20s")
            .set("llm.idle_timeout", "2s")
            .set("retry.initial_delay", "10ms")
            .set("retry.max_delay", "100ms")
    }

    /// `key` (dotted: `retry.max_attempts`) set to `value` (see [`config_with`]).
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> TestBuild {
        self.sets.push((key.to_string(), value.into()));
        self
    }

    /// TOML `text` laid over the config so far (tables merged, keys replaced).
    pub fn config_text(mut self, text: &str) -> TestBuild {
        let over: toml::Table = text.parse().expect("config text parses");
        merge(&mut self.config, over);
        self
    }

    /// Prompts go to `prompts/dir/` from now on (a folder no `[[phases]]` entry names).
    pub fn folder(mut self, dir: &str) -> TestBuild {
        self.dir = format!("{dir}/");
        self
    }

    /// A `[[phases]]` entry for folder `dir` (its prompts go there from now on).
    pub fn phase(mut self, dir: &str, name: &str, budget: Option<i64>) -> TestBuild {
        let mut phase = toml::Table::new();
        phase.insert("dir".into(), dir.into());
        phase.insert("name".into(), name.into());
        if let Some(b) = budget {
            phase.insert("budget".into(), b.into());
        }
        let phases = self
            .config
            .entry("phases")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(list) = phases {
            list.push(toml::Value::Table(phase));
        }
        self.dir = format!("{dir}/");
        self
    }

    /// Prompt `stem` (`01.1-first`) of the current phase: `body` as its objective, `outputs`
    /// declared in its checkpoint (see [`prompt`]).
    pub fn prompt(self, stem: &str, body: &str, outputs: &[&str]) -> TestBuild {
        let rel = format!("prompts/{}{stem}.md", self.dir);
        self.file(&rel, &prompt(stem, body, outputs))
    }

    /// Any file, relative to the build's root.
    pub fn file(mut self, rel: &str, contents: &str) -> TestBuild {
        self.files.push((rel.to_string(), contents.to_string()));
        self
    }

    pub fn build(self) -> Build {
        let b = Build::new();
        let base = toml::to_string(&self.config).expect("config serializes");
        let sets: Vec<(&str, toml::Value)> = self
            .sets
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        b.config(&config_with(&base, &sets));
        for (rel, contents) in &self.files {
            b.file(rel, contents);
        }
        b
    }
}

fn merge(into: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
