//! The real Claude Code (`npm install @anthropic-ai/claude-code`) builds the example agent
//! build against the fake server, which answers as the model behind it: a `Bash` tool call
//! running each prompt's `## Execute` steps, then the checkpoint. Ignored unless asked for
//! (`cargo test -- --include-ignored`, as `.ci/run` does after installing Claude Code): it
//! needs `claude` on PATH, and fails when asked for without it.

use serde_json::Value;

use crate::support::fake_llm::{FakeLlm, claude_code_model};
use crate::support::{config_with, example_agent_build, on_path, status_json};

#[test]
#[ignore = "needs claude on PATH (npm install @anthropic-ai/claude-code); .ci/run installs it and runs it"]
fn the_real_claude_code_builds_the_example_agent_build_against_the_fake_server() {
    let claude = on_path("claude").expect(
        "`claude` is not on PATH: npm install @anthropic-ai/claude-code, then put node_modules/.bin on PATH",
    );
    let server = FakeLlm::start();
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
    b.config(&config_with(
        &base,
        &[
            ("llm.command", toml::Value::Array(argv)),
            ("llm.env", toml::Value::Array(env)),
            ("llm.timeout", s("120s")),
            ("budget.max_cost_usd", toml::Value::Float(5.0)),
        ],
    ));
    let home = b.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    b.env("HOME", &home.display().to_string());
    b.env("ANTHROPIC_BASE_URL", &server.root_url());
    b.env("ANTHROPIC_API_KEY", "sk-ant-fake-for-the-test");
    b.env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    b.env("CLAUDE_CODE_MAX_RETRIES", "0");
    b.env("DISABLE_AUTOUPDATER", "1");
    let run = b.run(&["run"]);
    run.code(0);
    let status = status_json(&b);
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
    assert!(
        server.count() >= 12,
        "two model turns per prompt: {}",
        server.count()
    );
    eprintln!("{}", b.run(&["status"]).stdout);
}
