//! The unattended run against the fake server.

use crate::support::fake_llm::FakeLlm;
use crate::support::{Run, bundled_against, status_json};

#[test]
fn the_whole_bundled_build_completes() {
    let server = FakeLlm::start();
    let b = bundled_against(&server);
    let run: Run = b.run(&["run"]);
    run.code(0);
    assert_eq!(server.count(), 40, "one request per prompt");
    let status = status_json(&b);
    assert_eq!(status["completed"].as_array().expect("completed").len(), 40);
    assert_eq!(status["current_prompt"], serde_json::Value::Null);
    assert_eq!(status["failed"].as_array().expect("failed").len(), 0);
    assert_eq!(status["completed"][0], "01.1");
    assert_eq!(status["completed"][39], "03.20");
    assert_eq!(status["variables"]["01.1"]["venv_path"], "venv_path-value");
    let outputs = std::fs::read_dir(b.path().join("checkpoints/outputs"))
        .expect("outputs")
        .count();
    assert_eq!(outputs, 40);
    // Later prompts got earlier prompts' values through their placeholders.
    let seen = server.seen();
    let p12 = seen
        .iter()
        .find(|s| s.prompt_name() == "01.2-dependencies")
        .expect("01.2 sent");
    assert!(p12.user().contains("venv_path-value"), "{}", p12.user());
    let memory: serde_json::Value =
        serde_json::from_str(&b.read("checkpoints/memory.json")).expect("memory");
    assert!(memory["variables"]["venv_path"].is_string());
    let st = b.run(&["status"]);
    st.code(0)
        .stdout_has("| Phase ")
        .stdout_has("| Foundation |")
        .stdout_has("Remaining");
    st.stdout_has("[x] All checkpoints passed");
}

#[test]
fn after_a_mock_run_the_critical_path_still_goes_by_the_footers() {
    // The embedded model answers at once: its times say nothing of a real run's.
    let server = FakeLlm::start();
    let b = bundled_against(&server);
    b.run(&["run", "--mock"]).code(0);
    b.run(&["estimate"])
        .stdout_has("critical path: 22 of 40 prompts")
        .stdout_has("159 min by the footers");
}
