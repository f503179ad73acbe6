//! The real Claude Code (`npm install @anthropic-ai/claude-code`) builds the example agent
//! build against the fake server, which answers as the model behind it: a `Bash` tool call
//! running each prompt's `## Execute` steps, then the checkpoint. Ignored unless asked for
//! (`cargo test -- --include-ignored`, as `.ci/run` does after installing Claude Code): it
//! needs `claude` on PATH, and fails when asked for without it.

use serde_json::Value;

use crate::support::fake_llm::{FakeLlm, claude_code_model};
use crate::support::{
    Build, config_with, events, example_agent_build, git, journal, on_path, status_json,
};

/// The example agent build in a temporary folder, its agent the real Claude Code (from
/// PATH) against `server`, with `sets` on top of its config.
fn with_claude(server: &FakeLlm, sets: &[(&str, toml::Value)]) -> Build {
    let claude = on_path("claude").expect(
        "`claude` is not on PATH: npm install @anthropic-ai/claude-code, then put node_modules/.bin on PATH",
    );
    server.responder(claude_code_model());
    let (mut b, base) = example_agent_build();
    let s = |v: &str| toml::Value::String(v.to_string());
    let argv = [
        claude.display().to_string().as_str(),
        "-p",
        "--output-format",
        "json",
        "--allowedTools",
        "Bash",
        "--max-budget-usd",
        "{{budget_usd_left}}",
    ]
    .map(s)
    .to_vec();
    let env = [
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "CLAUDE_CODE_MAX_RETRIES",
        "DISABLE_AUTOUPDATER",
    ]
    .map(s)
    .to_vec();
    let mut all = vec![
        ("llm.command", toml::Value::Array(argv)),
        ("llm.env", toml::Value::Array(env)),
        ("llm.timeout", s("120s")),
        ("budget.max_cost_usd", toml::Value::Float(5.0)),
    ];
    all.extend(sets.iter().cloned());
    b.config(&config_with(&base, &all));
    let home = b.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    b.env("HOME", &home.display().to_string());
    b.env("ANTHROPIC_BASE_URL", &server.root_url());
    b.env("ANTHROPIC_API_KEY", "sk-ant-fake-for-the-test");
    b.env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    b.env("CLAUDE_CODE_MAX_RETRIES", "0");
    b.env("DISABLE_AUTOUPDATER", "1");
    b
}

/// Every prompt of the example completed, with a commit, its checks passed and Claude
/// Code's cost.
fn all_six_built(b: &Build) {
    let status = status_json(b);
    assert_eq!(
        status["completed"].as_array().map(Vec::len),
        Some(6),
        "{status}"
    );
    for p in status["prompts"].as_object().expect("prompts").values() {
        assert!(p["commit"].is_string(), "{p}");
        assert!(
            p["checks"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["passed"] == Value::Bool(true))),
            "{p}"
        );
        assert!(
            p["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
            "Claude Code's cost: {p}"
        );
    }
    assert!(b.path().join("build/wordfreq/core.py").is_file());
}

#[test]
#[ignore = "needs claude on PATH (npm install @anthropic-ai/claude-code); .ci/run installs it and runs it"]
fn the_real_claude_code_builds_the_example_agent_build_against_the_fake_server() {
    let server = FakeLlm::start();
    let b = with_claude(&server, &[]);
    b.run(&["run"]).code(0);
    all_six_built(&b);
    assert!(
        server.count() >= 12,
        "two model turns per prompt: {}",
        server.count()
    );
    eprintln!("{}", b.run(&["status"]).stdout);
}

#[test]
#[ignore = "needs claude on PATH (npm install @anthropic-ai/claude-code); .ci/run installs it and runs it"]
fn the_real_claude_code_builds_the_example_agent_build_in_worktrees_at_once() {
    let server = FakeLlm::start();
    let b = with_claude(&server, &[("run.jobs", toml::Value::Integer(3))]);
    b.run(&["run"]).code(0);
    all_six_built(&b);
    let ws = b.path().join("build");
    let subjects = git(&ws, &["log", "--format=%s", "HEAD"]);
    let ids: Vec<&str> = subjects
        .lines()
        .filter_map(|l| l.split(' ').next())
        .filter(|id| id.starts_with("01."))
        .collect();
    assert_eq!(
        ids,
        ["01.6", "01.5", "01.4", "01.3", "01.2", "01.1"],
        "one commit per prompt, in plan order:\n{subjects}"
    );
    // Some prompts ran in worktrees at the same time.
    let started = events(&b, "attempt_started");
    let worktrees: std::collections::BTreeSet<&str> = started
        .iter()
        .filter_map(|e| e["worktree"].as_str())
        .collect();
    assert_eq!(worktrees.len(), 6, "{started:#?}");
    let mut in_flight = 0_usize;
    let mut most = 0;
    for e in journal(&b) {
        match e["event"].as_str() {
            Some("attempt_started") => in_flight += 1,
            Some("attempt_finished") => in_flight = in_flight.saturating_sub(1),
            _ => {}
        }
        most = most.max(in_flight);
    }
    assert!(
        most >= 2,
        "no two Claude Code attempts were in flight at once"
    );
    eprintln!("most attempts in flight at once: {most}");
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    eprintln!("{}", b.run(&["status"]).stdout);
}
