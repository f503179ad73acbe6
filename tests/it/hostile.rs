//! Hostile conditions: a huge reply, a full disk, file permissions, symbolic links, and
//! model output that tries to expand placeholders.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use crate::support::builder::TestBuild;
use crate::support::fake_llm::{self, FakeLlm, Piece};
use crate::support::{
    Build, Running, await_requests, bundled_against, plan_prompts, prompt, status_json, strings,
};

fn two_prompt_build(server: &FakeLlm) -> Build {
    TestBuild::against(server)
        .set("retry.max_attempts", 2)
        .set("retry.max_delay", "50ms")
        .folder("01-a")
        .prompt("01.1-first", "Say hello.", &["greeting"])
        .prompt("01.2-second", "Use {{greeting}} here.", &[])
        .build()
}

#[test]
fn a_50_mb_reply_is_refused_with_a_clear_error_and_not_retried() {
    // What it costs in memory is measured by the benchmark harness (benches/harness.py,
    // "a 50 MB reply refused"), not here.
    let server = FakeLlm::start();
    let chunk = format!(
        "data: {}\n\n",
        serde_json::json!({"choices": [{"delta": {"content": "x".repeat(1000)}}]})
    );
    let body = chunk.repeat(50 * 1024 * 1024 / chunk.len());
    server.script([fake_llm::sse(vec![Piece::Data(body.into_bytes())])]);
    let b = two_prompt_build(&server);
    let run = b.run(&["run"]);
    // A server that sends 50 MB is misbehaving: permanent, not retried.
    run.code(1).stderr_has("larger than 16 MiB");
    assert_eq!(server.count(), 1);
}

#[test]
fn state_files_are_private() {
    let server = FakeLlm::start();
    let b = two_prompt_build(&server);
    b.run(&["run"]).code(0);
    let mode = |rel: &str| {
        std::fs::metadata(b.path().join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("checkpoints"), 0o700);
    for f in [
        "status.json",
        "memory.json",
        "journal.jsonl",
        ".lock",
        "outputs/01.1.md",
    ] {
        assert_eq!(mode(&format!("checkpoints/{f}")), 0o600, "{f}");
    }
}

#[test]
fn an_existing_checkpoints_folder_is_made_private() {
    let server = FakeLlm::start();
    let b = two_prompt_build(&server);
    std::fs::create_dir(b.path().join("checkpoints")).expect("mkdir");
    std::fs::set_permissions(
        b.path().join("checkpoints"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    b.run(&["run"]).code(0);
    let mode = std::fs::metadata(b.path().join("checkpoints"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn model_output_is_not_expanded_again() {
    let server = FakeLlm::start();
    // 01.1 returns a value that itself looks like a placeholder of another variable.
    server.script_prompt(
        "01.1-first",
        [fake_llm::openai_sse(
            &fake_llm::checkpoint_text(
                "01.1-first",
                &serde_json::json!({"greeting": "{{project_root}} and {{greeting}}"}),
            ),
            "stop",
            Some((10, 5)),
        )],
    );
    let b = two_prompt_build(&server);
    let mut cfg = b.read("config.toml");
    cfg.push_str("[variables]\nproject_root = \"/secret/root\"\n");
    b.config(&cfg);
    b.run(&["run"]).code(0);
    let seen = server.seen();
    let second = seen
        .iter()
        .find(|s| s.prompt_name() == "01.2-second")
        .expect("02 sent");
    assert!(
        second
            .user()
            .contains("Use {{project_root}} and {{greeting}} here."),
        "{}",
        second.user()
    );
    assert!(!second.user().contains("/secret/root"));
}

#[test]
fn a_symlinked_status_file_is_refused() {
    let server = FakeLlm::start();
    let b = two_prompt_build(&server);
    let outside = tempfile::tempdir().expect("outside");
    let target = outside.path().join("elsewhere.json");
    std::fs::write(&target, "{}").expect("write");
    std::fs::create_dir(b.path().join("checkpoints")).expect("mkdir");
    std::os::unix::fs::symlink(&target, b.path().join("checkpoints/status.json")).expect("symlink");
    let run = b.run(&["run"]);
    run.code(2)
        .stderr_has("status.json")
        .stderr_has("symbolic link");
    assert_eq!(server.count(), 0, "nothing is sent");
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "{}",
        "the outside file is untouched"
    );
}

/// Checkpoints on a small tmpfs (root and `mount` needed: ignored unless asked for): the
/// run stops saying the disk is full, the last status.json still parses, and once space is
/// freed `run` resumes with nothing lost.
#[test]
#[ignore = "needs root to mount a tmpfs; .ci/run (as root) runs it"]
fn a_full_disk_stops_the_run_and_loses_nothing() {
    let server = FakeLlm::start();
    let b = bundled_against(&server);
    let ck = b.path().join("checkpoints");
    std::fs::create_dir(&ck).expect("mkdir");
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&ck)
        .output();
    let why_not = match &mount {
        Err(e) => Some(format!("mount: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "mount: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    };
    if let Some(why_not) = why_not {
        panic!("cannot mount a tmpfs here (needs root and mount): {why_not}");
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(ck.clone());
    // Leave ~40 KiB free: enough to start, not enough for the whole build.
    let filler = ck.join("filler");
    std::fs::write(&filler, vec![0u8; 2048 * 1024 - 40 * 1024]).expect("filler");
    let run = b.run(&["run"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    run.no_panic().stderr_has("disk is full");
    if ck.join("status.json").exists() {
        // The last status.json parses.
        let status = status_json(&b);
        assert!(status["completed"].as_array().expect("completed").len() < 40);
    }
    let sent_before = server.count();
    std::fs::remove_file(&filler).expect("free space");
    b.run(&["run"]).code(0);
    let completed = strings(&status_json(&b)["completed"]);
    assert_eq!(completed.len(), 40, "{completed:?}");
    // Each prompt of the plan completed, and only once.
    let once: BTreeSet<&String> = completed.iter().collect();
    assert_eq!(
        once.len(),
        completed.len(),
        "a prompt completed twice: {completed:?}"
    );
    let plan: BTreeSet<String> = plan_prompts(&b)
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(once, plan.iter().collect(), "completed: {completed:?}");
    // Nothing finished was lost: at most the prompt in flight when the disk filled is sent again.
    assert!(
        server.count() <= 40 + 1,
        "{} requests for 40 prompts ({sent_before} before the disk filled)",
        server.count()
    );
}

#[test]
fn temporaries_left_by_a_killed_write_are_removed() {
    let server = FakeLlm::start();
    let b = two_prompt_build(&server);
    b.file("checkpoints/.status.json.Ab12Cd", "{partial");
    b.file("checkpoints/outputs/.01.1.md.Zz9Yy8", "partial");
    b.file("checkpoints/.gitkeep", "");
    b.run(&["run"]).code(0);
    assert!(!b.path().join("checkpoints/.status.json.Ab12Cd").exists());
    assert!(
        !b.path()
            .join("checkpoints/outputs/.01.1.md.Zz9Yy8")
            .exists()
    );
    assert!(
        b.path().join("checkpoints/.gitkeep").exists(),
        "other files are left alone"
    );
}

#[test]
fn a_prompt_edited_during_the_run_stops_it_before_that_prompt_is_sent() {
    let server = FakeLlm::start();
    let reply = fake_llm::checkpoint_text("01.1-first", &serde_json::json!({"greeting": "hi"}));
    let gate = fake_llm::Gate::new();
    server.script_prompt(
        "01.1-first",
        [fake_llm::sse(vec![
            // The first reply is held back while the test edits the next prompt.
            Piece::Gate(gate.clone()),
            Piece::Data(fake_llm::sse_bytes(&fake_llm::openai_events(
                &reply,
                "stop",
                Some((10, 5)),
            ))),
        ])],
    );
    let b = two_prompt_build(&server);
    let child = Running::spawn(&b, &["run"]);
    // 01.1 was sent.
    await_requests(&server, 1);
    b.file(
        "prompts/01-a/01.2-second.md",
        prompt("01.2-second", "Use {{greeting}} differently.", &[]),
    );
    gate.open();
    let run = child.wait();
    run.code(2)
        .stderr_has("01.2-second.md: the file changed while orchestrator was running");
    assert_eq!(server.count(), 1, "the edited prompt was not sent");
    // Run again: the plan is read anew and the edited prompt runs.
    b.run(&["run"]).code(0);
    let seen = server.seen();
    assert!(
        seen[1].user().contains("Use hi differently."),
        "{}",
        seen[1].user()
    );
}
