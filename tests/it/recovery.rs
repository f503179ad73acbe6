//! Recovery (spec, "Recovery rules", "State in checkpoints/"; issue 5): faults retried as
//! scripted, hard budgets, a failed prompt and `rerun`, crashes at random moments, the lock,
//! signals, damaged state, changed prompts, `run --json`, `on_failure = "skip"`,
//! `run --restart` and `run.max_duration`, each against the fake server.
//!
//! The build is the bundled one with the repository's `config.toml` and fast clocks
//! ([`fast_bundled`]), changed key by key where a test needs it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orchestrator::documents::RunEventDoc;
use serde_json::{Value, json};

use crate::support::fake_llm::{
    Action, FakeLlm, Piece, Seen, checkpoint_text, openai_events, openai_sse, requested_outputs,
    sse, sse_bytes, status,
};
use crate::support::{
    Build, Running, attempts, await_requests, bundled_against, error_of, events, eventually,
    fast_bundled, fast_bundled_config, journal, outcomes, per_prompt, plan_prompts, requests_of,
    status_json, strings,
};

/// A reply's SSE events with content only: no finish_reason, no usage, no `[DONE]`.
fn content_events() -> Vec<String> {
    let mut events = openai_events(
        "Working on it. Here is the first part of a reply that never gets to its end",
        "stop",
        None,
    );
    events.truncate(events.len() - 2);
    events
}

/// The `kind` events of prompt `id`, in order.
fn events_of(b: &Build, kind: &str, id: &str) -> Vec<Value> {
    events(b, kind)
        .into_iter()
        .filter(|e| e["id"] == id)
        .collect()
}

// ---- 1. Faults ---------------------------------------------------------------------------
//
// Each test scripts one kind of fault on one prompt of the bundled build and runs it
// `--until` the prompt after that one: the faulted prompt is retried exactly as scripted,
// and every other prompt is sent once and accepted at its first attempt.

/// The bundled build with `faults` scripted for prompt `name` (`01.2-dependencies`), run
/// `--until` the prompt after it. Asserts that the run completed every prompt up to there,
/// that `name` was sent once per fault and once more, and every other prompt once and
/// accepted at once.
fn run_with_faults(name: &str, faults: Vec<Action>) -> (FakeLlm, Build) {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    let retries = faults.len();
    server.script_prompt(name, faults);
    let plan = plan_prompts(&b);
    let at = plan
        .iter()
        .position(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no prompt {name} in the bundled build"));
    let ran = &plan[..=at + 1];
    let field = |p: &Value, key: &str| p[key].as_str().expect(key).to_string();
    let until = field(&ran[at + 1], "id");
    b.run(&["run", "--until", &until]).code(0);

    let expected: BTreeMap<String, usize> = ran
        .iter()
        .map(|p| {
            let n = if p["name"] == name { 1 + retries } else { 1 };
            (field(p, "name"), n)
        })
        .collect();
    assert_eq!(per_prompt(&server.seen()), expected, "requests per prompt");
    assert_eq!(server.count(), ran.len() + retries);
    let ids: Vec<String> = ran.iter().map(|p| field(p, "id")).collect();
    assert_eq!(strings(&status_json(&b)["completed"]), ids);
    for p in ran.iter().filter(|p| p["name"] != name) {
        let id = field(p, "id");
        assert_eq!(outcomes(&b, &id), ["ok"], "outcomes of {id}");
        assert!(events_of(&b, "retry", &id).is_empty(), "{id} was retried");
    }
    (server, b)
}

/// Prompt `id`'s attempts ended as `outs`, with one `retry` event before each attempt
/// after the first.
#[track_caller]
fn assert_outcomes(b: &Build, id: &str, outs: &[&str]) {
    assert_eq!(outcomes(b, id), outs, "outcomes of {id}");
    assert_eq!(
        events_of(b, "retry", id).len(),
        outs.len() - 1,
        "retry events of {id}"
    );
}

/// The error of attempt `n` of prompt `id`.
fn error_of_attempt(b: &Build, id: &str, n: u64) -> String {
    attempts(b, id)
        .iter()
        .find(|e| e["attempt"] == n)
        .map(error_of)
        .unwrap_or_default()
}

/// The retry of `name` after a content failure is its prompt again with a note that says
/// why the last attempt failed (in one of the words `why`).
#[track_caller]
fn assert_retry_note(server: &FakeLlm, name: &str, why: &[&str]) {
    let reqs = requests_of(&server.seen(), name);
    let first = reqs[0].user();
    let second = reqs[1].user();
    assert!(
        second.starts_with(first.trim_end()) && second.len() > first.len(),
        "the retry of {name} does not add a note to the prompt:\n{second}"
    );
    let note = second[first.trim_end().len()..].to_lowercase();
    assert!(
        why.iter().any(|w| note.contains(w)),
        "the note on {name}'s retry does not say why ({why:?}): {note}"
    );
}

#[test]
fn a_429_then_a_500_are_retried_and_the_third_attempt_is_accepted() {
    let (_server, b) = run_with_faults(
        "01.1-python-setup",
        vec![
            status(429, "Rate limit reached for requests", &[]),
            status(500, "The server had an error", &[]),
        ],
    );
    assert_outcomes(&b, "01.1", &["transient", "transient", "ok"]);
    let first = error_of_attempt(&b, "01.1", 1);
    assert!(first.contains("429"), "{first}");
    let second = error_of_attempt(&b, "01.1", 2);
    assert!(second.contains("500"), "{second}");
    assert_eq!(status_json(&b)["prompts"]["01.1"]["attempts"], 3);
}

#[test]
fn a_stream_that_stops_before_its_end_is_retried() {
    // No finish_reason, no [DONE]: the connection closes after the content.
    let partial = content_events();
    let (_server, b) = run_with_faults(
        "01.2-dependencies",
        vec![sse(vec![
            Piece::Data(sse_bytes(&partial[..2])),
            Piece::Data(sse_bytes(&partial[2..])),
        ])],
    );
    assert_outcomes(&b, "01.2", &["transient", "ok"]);
}

#[test]
fn an_sse_event_that_is_not_json_is_retried() {
    // One bad event in an otherwise complete stream.
    let mut bad = openai_events("Some text before the bad event.", "stop", Some((100, 50)));
    bad.insert(
        2,
        "{\"choices\": [{\"delta\": {\"content\": oops".to_string(),
    );
    let (_server, b) = run_with_faults(
        "01.4-database",
        vec![sse(vec![Piece::Data(sse_bytes(&bad))])],
    );
    assert_outcomes(&b, "01.4", &["transient", "ok"]);
}

#[test]
fn a_checkpoint_that_reports_failure_then_a_stall_are_retried_and_the_third_attempt_is_accepted() {
    // "success": false, then keep-alives only, past idle_timeout (400 ms).
    let partial = content_events();
    let mut stall = vec![Piece::Data(sse_bytes(&partial[..2]))];
    for _ in 0..7 {
        stall.push(Piece::Wait(Duration::from_millis(100)));
        stall.push(Piece::Data(b": keep-alive\n\n".to_vec()));
    }
    let (server, b) = run_with_faults(
        "02.1-hamms-vector",
        vec![
            openai_sse(
                "I could not finish.\n\n```json\n{\"prompt\": \"02.1-hamms-vector\", \"success\": false, \"outputs\": {\"error\": \"numpy failed to build\"}}\n```\n",
                "stop",
                Some((100, 50)),
            ),
            sse(stall),
        ],
    );
    assert_outcomes(&b, "02.1", &["content", "transient", "ok"]);
    let second = error_of_attempt(&b, "02.1", 2);
    assert!(second.contains("idle_timeout"), "{second}");
    assert_retry_note(&server, "02.1-hamms-vector", &["numpy failed to build"]);
    assert_eq!(status_json(&b)["prompts"]["02.1"]["attempts"], 3);
}

#[test]
fn a_checkpoint_without_the_outputs_later_prompts_need_is_retried_with_a_note_naming_them() {
    let (server, b) = run_with_faults(
        "02.2-audio-loader",
        vec![openai_sse(
            "Done.\n\n```json\n{\"prompt\": \"02.2-audio-loader\", \"success\": true, \"outputs\": {}}\n```\n",
            "stop",
            Some((100, 50)),
        )],
    );
    assert_outcomes(&b, "02.2", &["content", "ok"]);
    assert_retry_note(&server, "02.2-audio-loader", &["audio_loader_module"]);
}

#[test]
fn a_reply_without_a_checkpoint_block_is_retried_with_a_note_that_says_so() {
    let (server, b) = run_with_faults(
        "02.3-feature-extraction",
        vec![openai_sse(
            "I wrote the feature extractor.",
            "stop",
            Some((100, 50)),
        )],
    );
    assert_outcomes(&b, "02.3", &["content", "ok"]);
    assert_retry_note(&server, "02.3-feature-extraction", &["checkpoint"]);
}

#[test]
fn an_error_event_after_http_200_is_retried() {
    let mut errored = content_events();
    errored.push(
        json!({"error": {"message": "The model is overloaded", "type": "server_error"}})
            .to_string(),
    );
    let (_server, b) = run_with_faults(
        "02.4-camelot-keys",
        vec![sse(vec![Piece::Data(sse_bytes(&errored))])],
    );
    assert_outcomes(&b, "02.4", &["transient", "ok"]);
    let first = error_of_attempt(&b, "02.4", 1);
    assert!(first.contains("overloaded"), "{first}");
}

// A TCP reset mid-stream, a connection closed after the headers and a reply cut at the
// token limit are tested once, in providers.rs (`a_connection_reset_mid_stream_is_transient`,
// `a_server_that_closes_after_the_headers_is_transient`,
// `finish_reason_length_is_a_content_failure_retried_with_a_note`).

// ---- 2. A permanent failure ----------------------------------------------------------------
//
// A 401 that names the key variable is tested in providers.rs
// (`a_401_is_not_retried_and_names_the_key_variable`).

// ---- 3. Budgets ----------------------------------------------------------------------------

#[test]
fn no_request_asks_for_more_than_the_phase_has_left_and_the_run_halts_with_3() {
    let server = FakeLlm::start();
    // The bundled Foundation's five inputs count 4,744 (so `run` does not refuse it at the
    // start); each reply reports 950 in and up to 800 out (never past its cap), so the
    // budget runs out mid-phase: a later request is capped, and one does not fit.
    server.responder(|seen| {
        let text = checkpoint_text(&seen.prompt_name(), &requested_outputs(seen));
        openai_sse(&text, "stop", Some((950, seen.max_tokens().min(800))))
    });
    const FOUNDATION: u64 = 5000;
    const TOTAL: u64 = 1_000_000;
    let b = fast_bundled(
        &server,
        &[
            ("phases.Foundation.budget", 5000.into()),
            ("phases.Core.budget", 1_000_000.into()),
            ("phases.Features.budget", 1_000_000.into()),
            ("budget.total", 1_000_000.into()),
        ],
    );
    let run = b.run(&["run"]);
    run.code(3);
    let seen = server.seen();
    assert!(!seen.is_empty(), "at least one request fits");
    assert!(
        seen.iter().all(|s| s.prompt_name().starts_with("01.")),
        "a request of the next phase was sent: {:?}",
        per_prompt(&seen)
    );

    let j = journal(&b);
    let started = events(&b, "attempt_started");
    assert_eq!(
        started.len(),
        seen.len(),
        "one journaled attempt per request"
    );
    let mut spent_phase = 0u64;
    let mut spent_total = 0u64;
    let mut capped = 0;
    for e in &j {
        match e["event"].as_str() {
            Some("attempt_started") => {
                let input = e["input_tokens"].as_u64().expect("input_tokens");
                let max = e["max_tokens"].as_u64().expect("max_tokens");
                let left_phase = FOUNDATION - spent_phase;
                let left_total = TOTAL - spent_total;
                assert!(
                    input + 256 <= left_phase,
                    "sent although input {input} + min_output does not fit {left_phase}: {e}"
                );
                let want = 2000.min(left_phase - input).min(left_total - input);
                assert_eq!(max, want, "max_tokens of {e} (phase has {left_phase} left)");
                if want < 2000 {
                    capped += 1;
                }
            }
            Some("attempt_finished") => {
                let used = e["input_tokens"].as_u64().expect("in")
                    + e["output_tokens"].as_u64().expect("out");
                spent_phase += used;
                spent_total += used;
            }
            _ => {}
        }
    }
    assert!(capped >= 1, "no request was capped");
    // The requests as sent carry the journaled max_tokens, in order.
    let sent: Vec<u64> = seen.iter().map(Seen::max_tokens).collect();
    let journaled: Vec<u64> = started
        .iter()
        .map(|e| e["max_tokens"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(sent, journaled);
    // Halted with 3; the next prompt is current and nothing spent past the budget.
    let halted = events(&b, "halted");
    assert_eq!(halted.last().expect("halted event")["code"], 3);
    let status = status_json(&b);
    assert!(
        status["current_prompt"]
            .as_str()
            .is_some_and(|p| p.starts_with("01.")),
        "{}",
        status["current_prompt"]
    );
    let foundation = status["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "Foundation")
        .expect("Foundation")
        .clone();
    assert!(
        foundation["used"].as_u64().expect("used") <= FOUNDATION,
        "{foundation}"
    );
    // Raising the budget lets `run` go on from there.
    let sent = server.count();
    b.config(&fast_bundled_config(&[]));
    b.run(&["run"]).code(0);
    assert_eq!(server.count(), sent + (40 - completed_before_halt(&status)));
    assert_eq!(strings(&status_json(&b)["completed"]).len(), 40);
}

/// The issue's own figure: a Foundation budget of 600. A bundled prompt is ~800 tokens in,
/// so not even the first request fits: nothing is sent, the run halts with 3, and it says
/// what it needed and what was left.
#[test]
fn a_phase_budget_of_600_sends_nothing_that_does_not_fit_and_halts_with_3() {
    let server = FakeLlm::start();
    let b = fast_bundled(
        &server,
        &[
            ("phases.Foundation.budget", 600.into()),
            ("phases.Core.budget", 1_000_000.into()),
            ("phases.Features.budget", 1_000_000.into()),
            ("budget.total", 1_000_000.into()),
        ],
    );
    let run = b.run(&["run"]);
    run.code(3)
        .stderr_has("the inputs of phase Foundation alone count")
        .stderr_has("nothing was sent");
    assert_eq!(server.count(), 0, "no request asked for more than remains");
    assert!(events(&b, "attempt_started").is_empty());
    let halted = events(&b, "halted");
    assert_eq!(halted.last().expect("halted")["code"], 3);
    let status = status_json(&b);
    assert_eq!(status["current_prompt"], "01.1-python-setup.md");
}

fn completed_before_halt(status: &Value) -> usize {
    status["completed"].as_array().map_or(0, Vec::len)
}

// ---- 4. A prompt that fails, then rerun ----------------------------------------------------

#[test]
fn a_prompt_that_fails_every_attempt_halts_then_rerun_and_run_finish_the_build() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    server.script_prompt(
        "01.3-structure",
        (0..3).map(|_| status(500, "The server had an error", &[])),
    );
    let run = b.run(&["run"]);
    run.code(1).stderr_has("01.3");
    assert_eq!(server.count(), 2 + 3);
    assert_eq!(per_prompt(&server.seen())["01.3-structure"], 3);
    let status = status_json(&b);
    assert_eq!(
        status["failed"].as_array().expect("failed").last(),
        Some(&json!("01.3"))
    );
    assert_eq!(status["current_prompt"], "01.3-structure.md");
    assert_eq!(strings(&status["completed"]), ["01.1", "01.2"]);
    assert_eq!(
        outcomes(&b, "01.3"),
        ["transient", "transient", "transient"]
    );

    let rerun = b.run(&["rerun", "01.3"]);
    rerun.code(0);
    assert_eq!(server.count(), 6, "rerun sends exactly one request");
    assert_eq!(server.seen()[5].prompt_name(), "01.3-structure");
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]), ["01.1", "01.2", "01.3"]);
    assert!(
        strings(&status["failed"]).is_empty(),
        "{}",
        status["failed"]
    );
    assert_eq!(status["current_prompt"], "01.4-database.md");

    let rest = b.run(&["run"]);
    rest.code(0);
    assert_eq!(server.count(), 6 + 37);
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]).len(), 40);
    assert!(strings(&status["failed"]).is_empty());
    assert_eq!(status["current_prompt"], Value::Null);
    let counts = per_prompt(&server.seen());
    assert_eq!(counts["01.3-structure"], 4);
    assert_eq!(
        counts["01.1-python-setup"], 1,
        "completed prompts are not sent again"
    );
}

// ---- 5. The seed's recovery snippets -------------------------------------------------------

#[test]
fn the_seeds_recovery_snippets_work_on_the_state_files() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    server.script_prompt(
        "01.3-structure",
        (0..3).map(|_| status(503, "Overloaded", &[])),
    );
    b.run(&["run"]).code(1);
    // The seed's "If prompt fails" and "If context lost" snippets, as written.
    let script = r#"import json

# Check last successful checkpoint
with open('checkpoints/status.json', 'r') as f:
    status = json.load(f)
    print(f"Last success: {status['completed'][-1]}")
    print(f"Failed at: {status['failed'][-1]}")

# Resume from last good state
next_prompt = status['current_prompt']
print(f"Next: {next_prompt}")

# Load memory context
with open('checkpoints/memory.json', 'r') as f:
    memory = json.load(f)
    print("Available context:", memory.keys())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .current_dir(b.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Last success: 01.2\n"), "{stdout}");
    assert!(stdout.contains("Failed at: 01.3\n"), "{stdout}");
    assert!(stdout.contains("Next: 01.3-structure.md\n"), "{stdout}");
    assert!(
        stdout.contains("Available context: dict_keys([") && stdout.contains("'variables'"),
        "{stdout}"
    );
    // The memory carries what a lost conversation needs: the variables so far.
    let memory: Value = serde_json::from_str(&b.read("checkpoints/memory.json")).expect("memory");
    assert_eq!(memory["variables"]["venv_path"], "venv_path-value");
    assert_eq!(memory["variables"]["project_root"], "~/MAP4");
}

// ---- 6. Crashes at random moments ----------------------------------------------------------

/// Every state file parses; the journal may end in one torn line.
#[track_caller]
fn assert_state_readable(b: &Build, when: &str) {
    let dir = b.path().join("checkpoints");
    for name in ["status.json", "memory.json"] {
        let path = dir.join(name);
        if path.exists() {
            let bytes = std::fs::read(&path).expect("read state");
            if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
                panic!(
                    "{when}: {name} does not parse ({e}):\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
    let bytes = std::fs::read(dir.join("journal.jsonl")).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let complete = text.ends_with('\n') || text.is_empty();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let torn_tail = i + 1 == lines.len() && !complete;
        if let Err(e) = serde_json::from_str::<Value>(line)
            && !torn_tail
        {
            panic!(
                "{when}: journal line {} does not parse ({e}): {line}",
                i + 1
            );
        }
    }
}

#[test]
fn twenty_sigkills_at_random_moments_lose_nothing() {
    const KILLS: usize = 24;
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    eprintln!("kill test seed {seed} (KILL_SEED={seed} replays the choices)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = FakeLlm::start();
    server.latency(Duration::from_millis(20));
    // Budgets out of the way: each kill mid-request counts its worst case (possibly billed).
    let b = fast_bundled(
        &server,
        &[
            ("phases.Foundation.budget", 10_000_000.into()),
            ("phases.Core.budget", 10_000_000.into()),
            ("phases.Features.budget", 10_000_000.into()),
            ("budget.total", 100_000_000.into()),
        ],
    );
    let total = 40;
    let mut kills = 0;
    let mut moments = Vec::new();
    while kills < KILLS {
        let done = if b.path().join("checkpoints/status.json").exists() {
            status_json(&b)["completed"].as_array().map_or(0, Vec::len)
        } else {
            0
        };
        if done == total {
            break;
        }
        // Random moments, but keep enough prompts left for the kills still to come: near
        // the end, kill as soon as a request arrives (mid-request, so nothing completes).
        let (k, extra) = if total - done <= KILLS - kills + 1 {
            (1, 0)
        } else {
            (rng.usize(1..=3), rng.u64(0..30))
        };
        let before = server.count();
        let mut child = Running::spawn_quiet(&b, &["run"]);
        let mut finished = false;
        while !server.wait_for(before + k, Duration::from_millis(50)) {
            if child.exited().is_some() {
                finished = true;
                break;
            }
        }
        if finished {
            break;
        }
        if extra > 0 {
            // Not synchronisation: a random offset of the kill moment after the request.
            std::thread::sleep(Duration::from_millis(extra));
        }
        child.kill();
        kills += 1;
        assert_state_readable(&b, &format!("after kill {kills} (k={k}, +{extra}ms)"));
        moments.push(format!("k={k}+{extra}ms:{}", server.count() - before));
    }
    eprintln!("kills: {moments:?}");
    assert!(kills >= 20, "only {kills} kills happened");
    let last = b.run(&["run"]);
    last.code(0);
    assert_state_readable(&b, "at the end");
    let status = status_json(&b);
    let completed = strings(&status["completed"]);
    let unique: BTreeSet<&String> = completed.iter().collect();
    assert_eq!(completed.len(), total, "{completed:?}");
    assert_eq!(
        unique.len(),
        total,
        "a prompt completed twice: {completed:?}"
    );
    let plan: Vec<String> = plan_prompts(&b)
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(completed, plan, "completed in plan order");
    assert!(
        server.count() <= total + kills,
        "{} requests for {total} prompts and {kills} kills",
        server.count()
    );
    assert_eq!(status["current_prompt"], Value::Null);
    // Each completed prompt's accepted reply is saved as outputs/<id>.md.
    for id in &completed {
        let output = b.read(&format!("checkpoints/outputs/{id}.md"));
        assert!(output.contains("```json"), "outputs/{id}.md: {output}");
    }
    // Every attempt cut by a kill is settled as possibly billed, never left open.
    let started = events(&b, "attempt_started");
    let finished = events(&b, "attempt_finished");
    assert_eq!(started.len(), finished.len(), "attempts left open");
    assert!(
        finished
            .iter()
            .filter(|e| e["outcome"] == "unknown")
            .count()
            <= kills
    );
}

// ---- 7. The lock ---------------------------------------------------------------------------

#[test]
fn a_second_runner_is_refused_with_the_first_ones_pid_and_a_dead_lock_does_not_block() {
    let server = FakeLlm::start();
    // The bundled config (idle_timeout 120s): the hung request stays in flight.
    let b = bundled_against(&server);
    server.script([Action::Hang]);
    let mut first = Running::spawn_quiet(&b, &["run"]);
    let pid = first.pid();
    await_requests(&server, 1);
    // The attempt in flight was journaled before it was sent.
    let j = journal(&b);
    let open = j
        .iter()
        .find(|e| e["event"] == "attempt_started" && e["id"] == "01.1")
        .expect("01.1's attempt is journaled while in flight")
        .clone();
    assert!(
        !j.iter().any(|e| e["event"] == "attempt_finished"),
        "no attempt finished while 01.1 is in flight"
    );

    let second = b.run(&["run"]);
    second
        .code(2)
        .stderr_has(&format!("pid {pid}"))
        .stderr_has("checkpoints");
    assert_eq!(server.count(), 1, "the second runner sent nothing");
    let rerun = b.run(&["rerun", "01.1"]);
    rerun.code(2).stderr_has(&pid.to_string());

    first.kill();
    let third = b.run(&["run"]);
    third.code(0).stderr_has("possibly billed");
    assert_eq!(server.count(), 1 + 40);
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]).len(), 40);
    // The lost attempt is counted at its worst case.
    let lost = attempts(&b, "01.1")
        .into_iter()
        .find(|e| e["attempt"] == open["attempt"])
        .expect("the lost attempt is settled");
    assert_eq!(lost["outcome"], "unknown");
    let worst =
        open["input_tokens"].as_u64().unwrap_or(0) + open["max_tokens"].as_u64().unwrap_or(0);
    assert_eq!(
        lost["input_tokens"].as_u64().unwrap_or(0) + lost["output_tokens"].as_u64().unwrap_or(0),
        worst,
        "{lost}"
    );
    assert_eq!(status["prompts"]["01.1"]["possibly_billed"], 1);
    assert!(
        status["prompts"]["01.1"]["tokens_in"].as_u64().unwrap_or(0)
            + status["prompts"]["01.1"]["tokens_out"]
                .as_u64()
                .unwrap_or(0)
            >= worst + 150
    );
}

// ---- 8. Signals ----------------------------------------------------------------------------

#[test]
fn sigint_sigterm_and_sighup_mid_request_exit_130_and_the_next_run_resumes() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[("llm.idle_timeout", "60s".into())]);
    let hung = ["01.2-dependencies", "01.3-structure", "01.4-database"];
    for name in hung {
        server.script_prompt(name, [Action::Hang]);
    }
    let mut expected_requests = 0;
    for (i, (signal, name)) in ["INT", "TERM", "HUP"].iter().zip(hung).enumerate() {
        let mut child = Running::spawn(&b, &["run"]);
        // The previous hung prompt is sent again (now answered), then this one hangs.
        expected_requests += 2;
        await_requests(&server, expected_requests);
        assert_eq!(server.seen()[expected_requests - 1].prompt_name(), name);
        child.signal(signal);
        let run = child.wait();
        run.code(130);
        let status = status_json(&b);
        let id = &name[..4];
        let completed = strings(&status["completed"]);
        assert_eq!(completed.len(), i + 1, "SIG{signal}: {completed:?}");
        assert!(
            !completed.iter().any(|c| c == id),
            "SIG{signal}: {id} completed"
        );
        assert_eq!(status["current_prompt"], format!("{name}.md"));
        serde_json::from_str::<Value>(&b.read("checkpoints/memory.json")).expect("memory.json");
        assert_eq!(
            outcomes(&b, id).last().map(String::as_str),
            Some("interrupted"),
            "SIG{signal}"
        );
        assert_eq!(
            events(&b, "halted").last().map(|h| h["code"].clone()),
            Some(json!(130))
        );
    }
    let last = b.run(&["run"]);
    last.code(0);
    assert_eq!(server.count(), expected_requests + 37);
    let counts = per_prompt(&server.seen());
    for name in hung {
        assert_eq!(counts[name], 2, "{name} sent again once");
    }
    assert_eq!(strings(&status_json(&b)["completed"]).len(), 40);
}

// ---- 9. Damaged state ----------------------------------------------------------------------

#[test]
fn a_corrupt_status_json_is_an_error_that_names_it_and_is_left_untouched() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    b.run(&["run", "--until", "01.1"]).code(0);
    let garbage: &[u8] =
        b"{\"session_id\": \"20260101_000000\", \"completed\": [\"01.1\" \x00garbage";
    b.file("checkpoints/status.json", garbage);
    for args in [
        &["run"][..],
        &["status"][..],
        &["status", "--json"][..],
        &["rerun", "01.1"][..],
    ] {
        let run = b.run(args);
        run.code(2).stderr_has("checkpoints/status.json");
        let now = std::fs::read(b.path().join("checkpoints/status.json")).expect("status.json");
        assert_eq!(now, garbage, "{args:?} changed status.json");
    }
    assert_eq!(server.count(), 1, "nothing was sent");
}

// ---- 10. Changed prompts -------------------------------------------------------------------

#[test]
fn a_prompt_edited_after_it_ran_is_shown_as_changed_and_warned_about() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    b.run(&["run", "--until", "01.2"]).code(0);
    let before = b.run(&["status", "--json"]);
    before.code(0);
    assert_eq!(before.json()["changed"], json!([]));

    let rel = "prompts/01-foundation/01.1-python-setup.md";
    let text = b.read(rel);
    let edited = text.replacen(
        "## Objective\n",
        "## Objective\nUse Python 3.12 if it is there.\n",
        1,
    );
    assert_ne!(edited, text);
    b.file(rel, edited);

    let st = b.run(&["status"]);
    st.code(0).stdout_has("01.1");
    let line = st
        .stdout
        .lines()
        .find(|l| l.to_lowercase().contains("changed"))
        .unwrap_or_else(|| panic!("status does not list changed prompts:\n{}", st.stdout));
    assert!(line.contains("01.1") && !line.contains("01.2"), "{line}");
    let js = b.run(&["status", "--json"]);
    js.code(0);
    assert_eq!(js.json()["changed"], json!(["01.1"]));

    let run = b.run(&["run", "--until", "01.3"]);
    run.code(0);
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("01.1") && l.contains("changed"))
        .unwrap_or_else(|| panic!("run does not warn about 01.1:\n{}", run.stderr));
    assert!(!warning.contains("01.2"), "{warning}");
    assert_eq!(
        server.count(),
        3,
        "a changed prompt is not sent again by run"
    );
}

// ---- 11. run --json ------------------------------------------------------------------------

#[test]
fn run_json_prints_one_event_per_line() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    server.script_prompt(
        "01.2-dependencies",
        [status(503, "Service unavailable", &[])],
    );
    let run = b.run(&["run", "--json", "--until", "01.3"]);
    run.code(0);
    // Each line reads into the type the binary writes it from (unknown keys refused).
    let events = run.events();
    let kind = |e: &RunEventDoc| match e {
        RunEventDoc::Started { .. } => "started",
        RunEventDoc::Attempt { .. } => "attempt",
        RunEventDoc::Retry { .. } => "retry",
        RunEventDoc::Completed { .. } => "completed",
        RunEventDoc::Failed { .. } => "failed",
        RunEventDoc::Skipped { .. } => "skipped",
        RunEventDoc::Halted { .. } => "halted",
        RunEventDoc::Finished { .. } => "finished",
    };
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "attempt",
            "completed",
            "attempt",
            "retry",
            "attempt",
            "completed",
            "attempt",
            "completed",
            "finished"
        ]
    );
    let done: Vec<(&str, u32, u64, u64, bool)> = events
        .iter()
        .filter_map(|e| match e {
            RunEventDoc::Completed {
                id,
                attempt,
                input_tokens,
                output_tokens,
                estimated,
                ..
            } => Some((
                id.as_str(),
                *attempt,
                *input_tokens,
                *output_tokens,
                *estimated,
            )),
            _ => None,
        })
        .collect();
    // Usage as the server reported it.
    assert_eq!(
        done,
        [
            ("01.1", 1, 100, 50, false),
            ("01.2", 2, 100, 50, false),
            ("01.3", 1, 100, 50, false)
        ]
    );
    let RunEventDoc::Retry {
        id, input_tokens, ..
    } = &events[4]
    else {
        panic!("{:?}", events[4]);
    };
    assert_eq!(
        (id.as_str(), *input_tokens),
        ("01.2", 0),
        "a 503 spent nothing"
    );
}

// ---- 12. on_failure = "skip" ---------------------------------------------------------------

#[test]
fn skip_goes_on_without_the_failed_prompt_and_its_dependents_and_exits_1() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[("run.on_failure", "skip".into())]);
    let failing = "02.14";
    server.script_prompt(
        "02.14-unit-tests",
        (0..3).map(|_| status(500, "The server had an error", &[])),
    );
    // What depends on 02.14, directly or not (depends_on includes the producers of needs).
    let prompts = plan_prompts(&b);
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    for p in &prompts {
        let deps = strings(&p["depends_on"]);
        if deps.iter().any(|d| d == failing || blocked.contains(d)) {
            blocked.insert(p["id"].as_str().expect("id").to_string());
        }
    }
    assert_eq!(
        blocked,
        ["02.15", "03.20"].map(String::from).into_iter().collect(),
        "the bundled build's dependents of 02.14"
    );

    let run = b.run(&["run"]);
    run.code(1).stderr_has("02.14");
    let status = status_json(&b);
    assert_eq!(strings(&status["failed"]), [failing]);
    let skipped: BTreeSet<String> = strings(&status["skipped"]).into_iter().collect();
    assert_eq!(skipped, blocked);
    let completed = strings(&status["completed"]);
    assert_eq!(completed.len(), 40 - 1 - blocked.len(), "{completed:?}");
    for id in &completed {
        assert!(id != failing && !blocked.contains(id), "{id} completed");
    }
    // The others ran, in order, after the failure too.
    assert!(completed.iter().any(|c| c == "03.19"));
    let counts = per_prompt(&server.seen());
    assert_eq!(counts["02.14-unit-tests"], 3);
    assert!(!counts.contains_key("02.15-integration-ci"));
    assert!(!counts.contains_key("03.20-release-check"));
    assert_eq!(server.count(), completed.len() + 3);
    let skipped_events: BTreeSet<String> = events(&b, "skipped")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(skipped_events, blocked);

    // The next run takes on the failed prompt and what it blocked.
    let sent = server.count();
    b.run(&["run"]).code(0);
    assert_eq!(server.count(), sent + 1 + blocked.len());
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]).len(), 40);
    assert!(strings(&status["failed"]).is_empty());
    assert!(
        strings(&status["skipped"]).is_empty(),
        "{}",
        status["skipped"]
    );
}

// ---- 13. run --restart ---------------------------------------------------------------------

#[test]
fn restart_archives_the_old_session_and_starts_a_new_one() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    b.run(&["run", "--until", "01.2"]).code(0);
    let old = status_json(&b);
    let old_id = old["session_id"].as_str().expect("session_id").to_string();
    let old_journal = b.read("checkpoints/journal.jsonl");

    let run = b.run(&["run", "--restart", "--until", "01.1"]);
    run.code(0);
    assert_eq!(server.count(), 3, "the new session runs 01.1 again");

    let archive = format!("checkpoints/archive/{old_id}");
    assert!(b.path().join(&archive).is_dir(), "no {archive}");
    assert_eq!(b.read(&format!("{archive}/journal.jsonl")), old_journal);
    let archived: Value =
        serde_json::from_str(&b.read(&format!("{archive}/status.json"))).expect("archived status");
    assert_eq!(strings(&archived["completed"]), ["01.1", "01.2"]);
    assert!(
        b.path()
            .join(format!("{archive}/outputs/01.2.md"))
            .is_file()
    );
    assert!(b.path().join(format!("{archive}/memory.json")).is_file());

    let new = status_json(&b);
    assert_eq!(strings(&new["completed"]), ["01.1"]);
    assert_ne!(new["started"], old["started"], "a new session");
    assert_eq!(journal(&b)[0]["event"], "session_started");
    assert_eq!(events(&b, "session_started").len(), 1);
    assert_eq!(events(&b, "completed").len(), 1);
    assert!(!b.path().join("checkpoints/outputs/01.2.md").exists());
}

#[test]
fn restart_gives_the_new_session_an_id_of_its_own() {
    // Session ids have the seed's one-second resolution: a session started in a second an
    // archived session already has must get an id of its own. Every second from just
    // before now to two minutes on is made taken (as archives), so the restart always
    // meets the collision, whatever the clock says.
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    b.run(&["run", "--until", "01.1"]).code(0);
    let archive = b.path().join("checkpoints/archive");
    let now = std::time::SystemTime::now();
    for s in 0..124u64 {
        let at = now - Duration::from_secs(2) + Duration::from_secs(s);
        let digits: String = humantime::format_rfc3339_seconds(at)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let id = format!("{}_{}", &digits[..8], &digits[8..14]);
        std::fs::create_dir_all(archive.join(id)).expect("mkdir");
    }
    let taken: BTreeSet<String> = std::fs::read_dir(&archive)
        .expect("archive")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    b.run(&["run", "--restart", "--until", "01.1"]).code(0);
    let id = status_json(&b)["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    assert!(!taken.contains(&id), "{id} is an archived session's id");
    assert!(id.contains('-'), "{id}: the second's id with a suffix");
}

// ---- 14. run.max_duration ------------------------------------------------------------------

#[test]
fn max_duration_halts_between_prompts_with_4() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[("run.max_duration", "1ms".into())]);
    let run = b.run(&["run"]);
    run.code(4).stderr_has("max_duration");
    assert!(server.count() <= 1, "{} requests", server.count());
    assert_eq!(
        events(&b, "attempt_started").len(),
        events(&b, "attempt_finished").len(),
        "halted mid-request"
    );
    assert_eq!(
        events(&b, "halted").last().map(|h| h["code"].clone()),
        Some(json!(4))
    );
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]).len(), server.count());

    b.config(&fast_bundled_config(&[]));
    b.run(&["run"]).code(0);
    assert_eq!(server.count(), 40);
}

// ---- More recovery rules -------------------------------------------------------------------

#[test]
fn a_torn_last_journal_line_is_dropped_and_a_damaged_one_is_an_error() {
    let server = FakeLlm::start();
    let b = fast_bundled(&server, &[]);
    b.run(&["run", "--until", "01.1"]).code(0);
    let path = b.path().join("checkpoints/journal.jsonl");
    let good = std::fs::read(&path).expect("journal");
    // A crash mid-append leaves a line without its newline.
    let mut torn = good.clone();
    torn.extend_from_slice(b"{\"v\":1,\"at\":\"2026-01-01T00:00:00.000Z\",\"event\":\"attempt_sta");
    std::fs::write(&path, &torn).expect("write");
    b.run(&["status"]).code(0);
    let run = b.run(&["run", "--until", "01.2"]);
    run.code(0).stderr_has("journal.jsonl");
    assert_eq!(outcomes(&b, "01.2"), ["ok"]);
    assert_eq!(strings(&status_json(&b)["completed"]), ["01.1", "01.2"]);
    assert_eq!(server.count(), 2);

    // A damaged line that is not the last: an error naming the file, which is left as it is.
    let mut damaged = b"not json at all\n".to_vec();
    damaged.extend_from_slice(&std::fs::read(&path).expect("journal"));
    std::fs::write(&path, &damaged).expect("write");
    for args in [&["run"][..], &["status"][..]] {
        b.run(args).code(2).stderr_has("journal.jsonl");
        assert_eq!(std::fs::read(&path).expect("journal"), damaged, "{args:?}");
    }
    assert_eq!(server.count(), 2);
}

#[test]
fn sigint_during_a_retry_wait_exits_130_and_the_prompt_is_sent_again() {
    let server = FakeLlm::start();
    let b = fast_bundled(
        &server,
        &[
            ("retry.initial_delay", "20s".into()),
            ("retry.max_delay", "30s".into()),
        ],
    );
    server.script_prompt(
        "01.1-python-setup",
        [status(503, "Service unavailable", &[("retry-after", "20")])],
    );
    let mut child = Running::spawn(&b, &["run"]);
    await_requests(&server, 1);
    // Until the retry is journaled the runner is not yet waiting; the journal says when.
    let journal_path = b.path().join("checkpoints/journal.jsonl");
    assert!(
        eventually(Duration::from_secs(20), || {
            std::fs::read_to_string(&journal_path)
                .is_ok_and(|text| text.contains("\"event\":\"retry\""))
        }),
        "no retry journaled"
    );
    child.signal("INT");
    let run = child.wait();
    run.code(130);
    // The wait was for 20 s and was cut short: no second attempt was started or sent.
    let retry = events_of(&b, "retry", "01.1");
    assert_eq!(retry.len(), 1, "{retry:#?}");
    let delay = retry[0]["delay_ms"].as_u64().expect("delay_ms");
    assert!(delay >= 20_000, "the retry was to wait 20 s: {}", retry[0]);
    assert_eq!(events_of(&b, "attempt_started", "01.1").len(), 1);
    assert_eq!(
        events(&b, "halted").last().map(|h| h["code"].clone()),
        Some(json!(130))
    );
    assert_eq!(server.count(), 1);
    assert!(strings(&status_json(&b)["completed"]).is_empty());
    b.config(&fast_bundled_config(&[]));
    b.run(&["run", "--until", "01.1"]).code(0);
    assert_eq!(server.count(), 2);
}

#[test]
fn on_exceed_warn_sends_with_the_configured_max_tokens_and_records_a_warning() {
    let server = FakeLlm::start();
    let b = fast_bundled(
        &server,
        &[
            ("phases.Foundation.budget", 1300.into()),
            ("budget.on_exceed", "warn".into()),
        ],
    );
    let run = b.run(&["run", "--until", "01.3"]);
    run.code(0).stderr_has("warning");
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    // 01.1 and 01.2 fit (capped); 01.3 does not, and goes with llm.max_tokens.
    assert!(seen[0].max_tokens() < 2000, "{}", seen[0].max_tokens());
    assert_eq!(seen[2].prompt_name(), "01.3-structure");
    assert_eq!(seen[2].max_tokens(), 2000);
    let status = status_json(&b);
    let warnings = strings(&status["warnings"]);
    assert!(
        warnings.iter().any(|w| w.starts_with("01.3")),
        "{warnings:?}"
    );
    assert_eq!(events(&b, "warning").len(), warnings.len());
}

/// The bundled build at $1000 per million tokens with `budget.max_cost_usd` $3.13: a
/// request's worst case (~900 in + 2000 out) is ~$2.9 (01.1 $2.842, 01.2 $2.945, 01.3
/// $2.863), and each reply (100 in, 50 out) costs $0.15, so two fit: 0.15 + 2.945 <= 3.13
/// < 0.30 + 2.863.
fn bundled_at_three_dollars(server: &FakeLlm) -> Build {
    fast_bundled(
        server,
        &[
            ("pricing.input_per_mtok", 1000.0.into()),
            ("pricing.output_per_mtok", 1000.0.into()),
            ("budget.max_cost_usd", 3.13.into()),
        ],
    )
}

#[test]
fn max_cost_usd_halts_like_a_budget() {
    let server = FakeLlm::start();
    let b = bundled_at_three_dollars(&server);
    let run = b.run(&["run"]);
    run.code(3).stderr_has("max_cost_usd");
    assert_eq!(server.count(), 2);
    let status = status_json(&b);
    assert_eq!(strings(&status["completed"]), ["01.1", "01.2"]);
    let cost = status["total"]["cost_usd"].as_f64().expect("cost_usd");
    assert!((cost - 0.30).abs() < 1e-9, "{cost}");
}

#[test]
fn a_rerun_refused_by_a_budget_advises_the_rerun_not_a_run_that_would_find_nothing() {
    let server = FakeLlm::start();
    // 01.1 and 01.2 fit in $3.13, then $0.30 is spent and 01.1's worst case ($2.842) no
    // longer fits beside it.
    let b = bundled_at_three_dollars(&server);
    b.run(&["run"]).code(3);
    let rerun = b.run(&["rerun", "01.1"]);
    rerun
        .code(3)
        .stderr_has("then `orchestrator rerun 01.1` goes on");
    assert!(
        !rerun.stderr.contains("`orchestrator run` continues"),
        "{}",
        rerun.stderr
    );
    assert_eq!(server.count(), 2);
}
