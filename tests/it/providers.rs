//! Providers against the fake server (and a fake agent CLI): what each reply, quirk and
//! fault is classified as, the text and usage recorded, and that the key never leaks.
//!
//! Every test reads the outcome from `checkpoints/journal.jsonl` (`attempt_finished`
//! events) and `status.json`, never from timing. Clocks are fast: a 400 ms idle timeout,
//! 10–100 ms backoff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::builder::TestBuild;
use crate::support::fake_llm::{
    Action, FakeLlm, Piece, anthropic_events, anthropic_json, anthropic_sse, checkpoint_text,
    echo_key, openai_events, openai_json, openai_sse, sse, sse_bytes, status,
};
use crate::support::{
    AGENT_REPLY, Build, Run, agent_reply_with_usage, agent_script, attempts, dies_within, error_of,
    events, kill_pid, outcomes, read_pid, status_json, strings,
};

// ---- Builds and configs -----------------------------------------------------------------

const NAME: &str = "01.1-first";
const CLOCKS: &str = "connect_timeout = \"2s\"\ntimeout = \"5s\"\nidle_timeout = \"400ms\"\n";

fn retry(max_attempts: u32, max_delay: &str) -> String {
    format!(
        "[retry]\nmax_attempts = {max_attempts}\ninitial_delay = \"10ms\"\nmax_delay = \"{max_delay}\"\n"
    )
}

fn openai_config(server: &FakeLlm, stream: bool) -> String {
    format!(
        "[llm]\nprovider = \"openai\"\nbase_url = \"{}\"\nstream = {stream}\n{CLOCKS}\n{}",
        server.base_url(),
        retry(3, "100ms")
    )
}

fn anthropic_config(server: &FakeLlm, stream: bool) -> String {
    format!(
        "[llm]\nprovider = \"anthropic\"\nbase_url = \"{}\"\nstream = {stream}\n{CLOCKS}\n{}",
        server.root_url(),
        retry(3, "100ms")
    )
}

/// A build of the prompts `(stem, outputs)` in one phase folder.
fn build_with(config: &str, prompts: &[(&str, &[&str])]) -> Build {
    let t = TestBuild::new()
        .config_text(config)
        .phase("01-a", "A", Some(50_000));
    prompts
        .iter()
        .enumerate()
        .fold(t, |t, (i, (stem, outputs))| {
            let body = if i == 0 {
                "Write the first part."
            } else {
                "Build on {{title}}."
            };
            t.prompt(stem, body, outputs)
        })
        .build()
}

/// The usual build: one prompt, `01.1-first`, producing `title`.
fn one_prompt(config: &str) -> Build {
    build_with(config, &[(NAME, &["title"])])
}

/// What the default responder answers for `01.1-first`.
fn default_text() -> String {
    checkpoint_text(NAME, &json!({"title": "title-value"}))
}

// ---- Reading the journal ----------------------------------------------------------------

/// The input tokens the runner counted for attempt `n` of `id` (from `attempt_started`).
fn counted_input(b: &Build, id: &str, n: u64) -> u64 {
    events(b, "attempt_started")
        .iter()
        .find(|e| e["id"] == id && e["attempt"] == n)
        .and_then(|e| e["input_tokens"].as_u64())
        .unwrap_or_else(|| panic!("no attempt_started {id} #{n}"))
}

/// Tokens of a file as the build's tokenizer counts them.
fn tokens_of(b: &Build, rel: &str) -> u64 {
    let run = b.run(&["tokens", "--json", rel]);
    run.code(0);
    run.json()[0]["tokens"].as_u64().expect("tokens")
}

/// One accepted attempt with the fake's usage and the reply saved.
#[track_caller]
fn assert_accepted(b: &Build, attempt: &Value, text: &str) {
    assert_eq!(attempt["outcome"], "ok", "{attempt}");
    assert_eq!(attempt["input_tokens"], 100, "{attempt}");
    assert_eq!(attempt["output_tokens"], 50, "{attempt}");
    assert_eq!(attempt["estimated"], false, "{attempt}");
    assert_eq!(attempt["finish_reason"], "stop", "{attempt}");
    assert_eq!(b.read("checkpoints/outputs/01.1.md"), text);
    let status = status_json(b);
    assert_eq!(status["completed"], json!(["01.1"]), "{status}");
    assert_eq!(status["failed"], json!([]), "{status}");
}

/// The script's fault on attempt 1 was classified `outcome`, retried once, and the default
/// reply of attempt 2 completed the run. Returns attempt 1's journal event.
#[track_caller]
fn assert_fault_then_ok(b: &Build, server: &FakeLlm, run: &Run, outcome: &str) -> Value {
    run.code(0);
    assert_eq!(server.count(), 2, "one fault, one retry");
    let a = attempts(b, "01.1");
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(a[0]["outcome"], outcome, "{:#}", a[0]);
    assert_eq!(events(b, "retry").len(), 1);
    assert_accepted(b, &a[1], &default_text());
    a[0].clone()
}

/// The prompt failed for good: exit 1, in `failed`, after `requests` requests.
#[track_caller]
fn assert_failed(b: &Build, server: &FakeLlm, run: &Run, requests: usize) -> Vec<Value> {
    run.code(1);
    assert_eq!(server.count(), requests, "requests sent");
    let status = status_json(b);
    let failed = status["failed"].as_array().expect("failed");
    assert_eq!(failed.last(), Some(&json!("01.1")), "{status}");
    assert!(!b.path().join("checkpoints/outputs/01.1.md").exists());
    attempts(b, "01.1")
}

// ---- OpenAI: replies --------------------------------------------------------------------

#[test]
fn openai_json_reply_is_accepted_with_reported_usage() {
    let server = FakeLlm::start();
    let mut b = one_prompt(&openai_config(&server, false));
    b.env("OPENAI_API_KEY", "sk-test-json");
    b.run(&["run"]).code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["stream"], false);
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-json"));
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1);
    assert_accepted(&b, &a[0], &default_text());
    let status = status_json(&b);
    let p = &status["prompts"]["01.1"];
    assert_eq!(
        (p["tokens_in"].as_u64(), p["tokens_out"].as_u64()),
        (Some(100), Some(50))
    );
    assert_eq!(p["estimated"], false);
    assert_eq!(status["variables"]["01.1"]["title"], "title-value");
}

#[test]
fn openai_sse_reply_is_accepted_with_reported_usage() {
    let server = FakeLlm::start();
    let b = one_prompt(&openai_config(&server, true));
    b.run(&["run"]).code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["stream"], true);
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
    assert_eq!(seen[0].header("authorization"), None, "no key, no header");
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1);
    assert_accepted(&b, &a[0], &default_text());
    let p = &status_json(&b)["prompts"]["01.1"];
    assert_eq!(
        (p["tokens_in"].as_u64(), p["tokens_out"].as_u64()),
        (Some(100), Some(50))
    );
}

/// `bytes` cut into pieces at `cuts` (byte offsets), with a short pause between pieces so
/// that the client reads them separately.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Piece> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < bytes.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
        out.push(Piece::Data(bytes[start..c].to_vec()));
        out.push(Piece::Wait(Duration::from_millis(3)));
        start = c;
    }
    out
}

#[test]
fn sse_split_mid_line_and_mid_utf8_is_reassembled() {
    let server = FakeLlm::start();
    let title = "café 🎉 naïve — 完成";
    let text = checkpoint_text(NAME, &json!({"title": title}));
    let bytes = sse_bytes(&openai_events(&text, "stop", Some((100, 50))));
    // Cut inside the emoji's 4 bytes, inside "é", inside a `data:` prefix, and every
    // 37 bytes (mid-line, mid-JSON) elsewhere.
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("needle")
    };
    let mut cuts = vec![
        find("🎉".as_bytes()) + 2,
        find("é".as_bytes()) + 1,
        find("完".as_bytes()) + 1,
        find(b"data: ") + 3,
    ];
    cuts.extend((1..bytes.len() / 37).map(|i| i * 37));
    server.script([sse(pieces(&bytes, &cuts))]);
    let b = one_prompt(&openai_config(&server, true));
    b.run(&["run"]).code(0);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &text);
    assert_eq!(status_json(&b)["variables"]["01.1"]["title"], title);
}

#[test]
fn sse_with_crlf_line_ends_and_keep_alive_comments_is_accepted() {
    let server = FakeLlm::start();
    let text = default_text();
    let mut body = String::from(": keep-alive\r\n\r\n");
    for e in openai_events(&text, "stop", Some((100, 50))) {
        body.push_str(&format!("data: {e}\r\n\r\n: keep-alive\r\n\r\n"));
    }
    server.script([sse(vec![Piece::Data(body.into_bytes())])]);
    let b = one_prompt(&openai_config(&server, true));
    b.run(&["run"]).code(0);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &text);
}

/// Events for `text` without usage, then `usage_chunk`, then `[DONE]`.
fn events_with_usage_chunk(text: &str, usage_chunk: Value) -> Vec<String> {
    let mut events = openai_events(text, "stop", None);
    let done = events.pop().expect("[DONE]");
    events.push(usage_chunk.to_string());
    events.push(done);
    events
}

#[test]
fn a_final_usage_chunk_with_empty_or_null_choices_is_read() {
    for choices in [json!([]), Value::Null] {
        let server = FakeLlm::start();
        let text = default_text();
        let chunk = json!({"id": "chatcmpl-fake", "choices": choices.clone(), "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}});
        server.script([sse(vec![Piece::Data(sse_bytes(&events_with_usage_chunk(
            &text, chunk,
        )))])]);
        let b = one_prompt(&openai_config(&server, true));
        b.run(&["run"]).code(0);
        let a = attempts(&b, "01.1");
        assert_eq!(a.len(), 1, "choices {choices}: {a:#?}");
        assert_accepted(&b, &a[0], &text);
    }
}

#[test]
fn no_usage_is_counted_by_the_tokenizer_and_marked_estimated() {
    let server = FakeLlm::start();
    let text = default_text();
    server.script([openai_sse(&text, "stop", None)]);
    let b = one_prompt(&openai_config(&server, true));
    b.run(&["run"]).code(0);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["outcome"], "ok");
    assert_eq!(a[0]["estimated"], true, "{}", a[0]);
    assert_eq!(b.read("checkpoints/outputs/01.1.md"), text);
    let input = counted_input(&b, "01.1", 1);
    let output = tokens_of(&b, "checkpoints/outputs/01.1.md");
    assert!(input > 0 && output > 0, "missing usage is never zero");
    assert_eq!(a[0]["input_tokens"].as_u64(), Some(input));
    assert_eq!(a[0]["output_tokens"].as_u64(), Some(output));
    let p = &status_json(&b)["prompts"]["01.1"];
    assert_eq!(p["estimated"], true, "{p}");
    assert_eq!(p["tokens_in"].as_u64(), Some(input));
    assert_eq!(p["tokens_out"].as_u64(), Some(output));
}

#[test]
fn finish_reason_length_is_a_content_failure_retried_with_a_note() {
    let server = FakeLlm::start();
    server.script([openai_sse(&default_text(), "length", Some((100, 50)))]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "content");
    assert_eq!(first["finish_reason"], "length");
    assert_eq!(
        (
            first["input_tokens"].as_u64(),
            first["output_tokens"].as_u64()
        ),
        (Some(100), Some(50)),
        "a cut reply's usage is recorded"
    );
    let seen = server.seen();
    assert!(!seen[0].user().contains("token limit"));
    let retry_user = seen[1].user();
    assert!(
        retry_user.contains("token limit"),
        "the retry says why: {retry_user}"
    );
    // Both attempts were paid for.
    let p = &status_json(&b)["prompts"]["01.1"];
    assert_eq!(
        (p["tokens_in"].as_u64(), p["tokens_out"].as_u64()),
        (Some(200), Some(100))
    );
}

#[test]
fn content_filter_and_refusal_are_recorded_as_such() {
    let refusal_events = {
        let mut e = vec![
            json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"role": "assistant", "content": null}}]}).to_string(),
            json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"refusal": "I can't help with that."}, "finish_reason": null}]}).to_string(),
            json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
            json!({"id": "chatcmpl-fake", "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 50}}).to_string(),
        ];
        e.push("[DONE]".into());
        e
    };
    let cases = [
        (
            "content_filter",
            openai_sse("Partial answ", "content_filter", Some((100, 50))),
        ),
        (
            "refusal",
            sse(vec![Piece::Data(sse_bytes(&refusal_events))]),
        ),
    ];
    for (reason, action) in cases {
        let server = FakeLlm::start();
        server.script([action]);
        let b = one_prompt(&openai_config(&server, true));
        let run = b.run(&["run"]);
        let first = assert_fault_then_ok(&b, &server, &run, "content");
        assert_eq!(first["finish_reason"], reason, "{first}");
        assert_eq!(first["output_tokens"], 50, "{first}");
        let status = status_json(&b);
        let p = &status["prompts"]["01.1"];
        assert_eq!(p["attempts"], 2, "{p}");
    }
}

#[test]
fn an_error_object_inside_a_200_stream_is_transient() {
    let server = FakeLlm::start();
    let events = vec![
        json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            .to_string(),
        json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"content": "Working on"}}]})
            .to_string(),
        json!({"error": {"message": "The server had an error while processing your request", "type": "server_error"}})
            .to_string(),
    ];
    server.script([sse(vec![Piece::Data(sse_bytes(&events))])]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    assert!(error_of(&first).contains("server had an error"), "{first}");
    assert_eq!(first["estimated"], true);
    assert_eq!(
        first["input_tokens"].as_u64(),
        Some(counted_input(&b, "01.1", 1)),
        "a request that reached the model counts its input"
    );
}

#[test]
fn a_stream_without_done_but_with_a_finish_reason_is_accepted() {
    let server = FakeLlm::start();
    let text = default_text();
    let mut events = openai_events(&text, "stop", Some((100, 50)));
    assert_eq!(events.pop().as_deref(), Some("[DONE]"));
    server.script([sse(vec![Piece::Data(sse_bytes(&events))])]);
    let b = one_prompt(&openai_config(&server, true));
    b.run(&["run"]).code(0);
    assert_eq!(server.count(), 1);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &text);
}

#[test]
fn a_stream_with_neither_done_nor_finish_reason_is_transient() {
    let server = FakeLlm::start();
    let text = default_text();
    // Content only: no finish_reason, no usage, no [DONE].
    let events: Vec<String> = openai_events(&text, "stop", None)
        .into_iter()
        .filter(|e| !e.contains("finish_reason\":\"stop") && e != "[DONE]")
        .collect();
    assert!(events.iter().all(|e| !e.contains("\"stop\"")));
    server.script([sse(vec![Piece::Data(sse_bytes(&events))])]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    assert!(error_of(&first).contains("ended"), "{first}");
    assert_eq!(first["estimated"], true);
    assert!(
        first["output_tokens"].as_u64().unwrap_or(0) > 0,
        "the partial text counts"
    );
}

#[test]
fn a_streamed_request_answered_with_one_json_body_is_accepted() {
    let server = FakeLlm::start();
    let text = default_text();
    server.script([openai_json(&text, "stop", Some((100, 50)))]);
    let b = one_prompt(&openai_config(&server, true));
    b.run(&["run"]).code(0);
    assert_eq!(server.seen()[0].body["stream"], true);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &text);
}

// ---- OpenAI: statuses -------------------------------------------------------------------

#[test]
fn transient_statuses_are_retried() {
    for (code, headers) in [
        (408, vec![]),
        (409, vec![]),
        (429, vec![]),
        (429, vec![("retry-after", "0")]),
        (500, vec![]),
        (502, vec![]),
        (503, vec![("retry-after-ms", "20")]),
        (504, vec![]),
        (529, vec![]),
    ] {
        let server = FakeLlm::start();
        server.script([status(code, "try again later", &headers)]);
        let b = one_prompt(&openai_config(&server, true));
        let run = b.run(&["run"]);
        let first = assert_fault_then_ok(&b, &server, &run, "transient");
        let error = error_of(&first);
        assert!(error.contains(&format!("HTTP {code}")), "{code}: {error}");
        assert!(error.contains("try again later"), "{code}: {error}");
        assert_eq!(
            (
                first["input_tokens"].as_u64(),
                first["output_tokens"].as_u64()
            ),
            (Some(0), Some(0)),
            "{code}: an error status is not billed"
        );
    }
}

#[test]
fn transient_statuses_use_up_the_attempts_then_fail() {
    let server = FakeLlm::start();
    server.script((0..3).map(|_| status(503, "overloaded", &[])));
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let a = assert_failed(&b, &server, &run, 3);
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|e| e["outcome"] == "transient"), "{a:#?}");
    assert_eq!(events(&b, "retry").len(), 2);
    let failed = events(&b, "failed");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 503"),
        "{failed:#?}"
    );
}

#[test]
fn permanent_statuses_are_not_retried() {
    for (code, message) in [
        (400, "Invalid value for 'temperature'"),
        (
            400,
            "This model's maximum context length is 8192 tokens (context_length_exceeded)",
        ),
        (401, "Incorrect API key provided"),
        (402, "Payment required"),
        (403, "Project does not have access to model"),
        (404, "The model `gpt-9` does not exist"),
        (413, "Request too large"),
        (422, "Unprocessable"),
    ] {
        let server = FakeLlm::start();
        server.script([status(
            code,
            message,
            &[("x-request-id", "req_perm123"), ("retry-after", "0")],
        )]);
        let b = one_prompt(&openai_config(&server, true));
        let run = b.run(&["run"]);
        let a = assert_failed(&b, &server, &run, 1);
        assert_eq!(a.len(), 1, "{code}: {a:#?}");
        assert_eq!(a[0]["outcome"], "permanent", "{code}: {}", a[0]);
        assert_eq!(a[0]["request_id"], "req_perm123", "{code}");
        assert!(events(&b, "retry").is_empty(), "{code}: not retried");
        assert_eq!(events(&b, "halted").len(), 1, "{code}");
        run.stderr_has(&format!("HTTP {code}"))
            .stderr_has("req_perm123");
    }
}

#[test]
fn a_401_is_not_retried_and_names_the_key_variable() {
    let server = FakeLlm::start();
    let secret = "sk-test-never-log-me-4242";
    // The server echoes the key, as OpenAI's message does.
    server.script([status(
        401,
        &format!("Incorrect API key provided: {secret}"),
        &[("x-request-id", "req_401_abc")],
    )]);
    let mut b = one_prompt(&openai_config(&server, true));
    b.env("OPENAI_API_KEY", secret);
    let run = b.run(&["run"]);
    let a = assert_failed(&b, &server, &run, 1);
    run.stderr_has("OPENAI_API_KEY").stderr_has("401");
    assert!(
        server.seen()[0]
            .header("authorization")
            .is_some_and(|a| a.contains(secret)),
        "the key is sent"
    );
    assert!(
        !run.stderr.contains(secret),
        "the key leaked to stderr:\n{}",
        run.stderr
    );
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(outcomes(&b, "01.1"), ["permanent"]);
    assert!(events(&b, "retry").is_empty(), "a 401 is not retried");
    let failed = events(&b, "failed");
    assert!(
        error_of(&failed[0]).contains("OPENAI_API_KEY"),
        "{failed:#?}"
    );
    assert_eq!(strings(&status_json(&b)["failed"]), ["01.1"]);
    for file in ["journal.jsonl", "status.json", "memory.json"] {
        let text = b.read(&format!("checkpoints/{file}"));
        assert!(!text.contains(secret), "the key leaked into {file}");
    }
}

#[test]
fn a_quota_429_is_not_retried_and_reported_as_quota() {
    let server = FakeLlm::start();
    server.script([Action::Respond {
        status: 429,
        headers: vec![("x-request-id".into(), "req_quota_1".into())],
        body: vec![Piece::Data(
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "code": "insufficient_quota"}})
                .to_string()
                .into_bytes(),
        )],
    }]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let a = assert_failed(&b, &server, &run, 1);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["outcome"], "permanent", "{}", a[0]);
    assert!(events(&b, "retry").is_empty());
    run.stderr_has("quota").stderr_has("req_quota_1");
    let failed = events(&b, "failed");
    assert!(error_of(&failed[0]).contains("quota"), "{failed:#?}");
}

#[test]
fn retry_after_is_waited_at_least_as_long_as_the_server_asks() {
    // retry-after-ms (milliseconds) and Retry-After (seconds), both under retry.max_delay.
    // The retry came no sooner than asked, as the server saw it (a lower bound that a
    // sleep cannot break: it never wakes early), and the journal says so.
    for (header, value, at_least_ms) in [("retry-after-ms", "80", 80), ("retry-after", "1", 1000)] {
        let server = FakeLlm::start();
        server.script([status(429, "rate limited", &[(header, value)])]);
        let config = openai_config(&server, true).replace(&retry(3, "100ms"), &retry(3, "2s"));
        let b = one_prompt(&config);
        let run = b.run(&["run"]);
        assert_fault_then_ok(&b, &server, &run, "transient");
        let seen = server.seen();
        let gap = seen[1].at.duration_since(seen[0].at);
        assert!(
            gap >= Duration::from_millis(at_least_ms),
            "{header}: {value}: the retry came {gap:?} after the refused request"
        );
        let retry = &events(&b, "retry")[0];
        let delay = retry["delay_ms"].as_u64().expect("delay_ms");
        assert!(
            (at_least_ms..=2000).contains(&delay),
            "{header}: {value}: journaled a wait of {delay} ms"
        );
    }
}

#[test]
fn a_wait_past_max_delay_fails_the_prompt_and_a_rate_limit_past_max_wait_stops_the_run() {
    // A 503 asking for longer than retry.max_delay fails the prompt; a 429 (a rate
    // limit) asking for longer pauses the run, up to retry.max_wait (30 min here): an hour
    // is past it, so the run stops at once, saying when the limit resets.
    let in_an_hour =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    for (code, header, value, key) in [
        (429, "retry-after", "3600".to_string(), "retry.max_wait"),
        (
            429,
            "retry-after-ms",
            "3600000".to_string(),
            "retry.max_wait",
        ),
        (429, "retry-after", in_an_hour, "retry.max_wait"),
        (503, "retry-after", "30".to_string(), "retry.max_delay"),
    ] {
        let row = format!("{code} {header}: {value}");
        let server = FakeLlm::start();
        server.script([status(code, "rate limited", &[(header, value.as_str())])]);
        let config = format!("{}max_wait = \"30m\"\n", openai_config(&server, true));
        let b = one_prompt(&config);
        let run = b.run(&["run"]);
        let a = assert_failed(&b, &server, &run, 1);
        assert!(run.stderr.contains("01.1"), "{row}: {}", run.stderr);
        assert!(run.stderr.contains(key), "{row}: {}", run.stderr);
        assert_eq!(a.len(), 1, "{row}: {a:#?}");
        assert_eq!(a[0]["outcome"], "transient", "{row}");
        // Not waited: a wait is journaled (`retry`, `paused`) before it starts.
        assert!(events(&b, "retry").is_empty(), "{row}: no wait");
        assert!(events(&b, "paused").is_empty(), "{row}: no pause");
        let failed = events(&b, "failed");
        let error = error_of(&failed[0]);
        assert!(error.contains(key), "{row}: {error}");
        let status = status_json(&b);
        assert_eq!(strings(&status["failed"]), ["01.1"], "{row}");
    }
}

#[test]
fn a_rate_limit_past_max_delay_pauses_the_run_until_its_reset_and_uses_no_attempt() {
    // One attempt allowed, a 429 asking for a second with max_delay at 100ms: the run
    // pauses (journaled with its end), then the prompt is sent again and accepted.
    let server = FakeLlm::start();
    server.script([status(429, "rate limited", &[("retry-after", "1")])]);
    let config = openai_config(&server, true).replace(&retry(3, "100ms"), &retry(1, "100ms"));
    let b = one_prompt(&config);
    let run = b.run(&["run"]);
    run.code(0).stderr_has("paused until");
    assert_eq!(server.count(), 2);
    let paused = events(&b, "paused");
    assert_eq!(paused.len(), 1, "{paused:#?}");
    assert_eq!(paused[0]["id"], "01.1");
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(
        a[0]["throttled"], true,
        "the refused attempt is not counted: {:#}",
        a[0]
    );
    let seen = server.seen();
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_secs(1), "sent again after {gap:?}");
    assert_eq!(strings(&status_json(&b)["completed"]), ["01.1"]);
}

// ---- OpenAI: broken connections ---------------------------------------------------------

#[test]
fn a_connection_reset_mid_stream_is_transient() {
    let server = FakeLlm::start();
    let bytes = sse_bytes(&openai_events(&default_text(), "stop", Some((100, 50))));
    server.script([sse(vec![
        Piece::Data(bytes[..bytes.len() / 2].to_vec()),
        Piece::Wait(Duration::from_millis(20)),
        Piece::Reset,
    ])]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    assert_eq!(first["estimated"], true);
    assert!(first["output_tokens"].as_u64().unwrap_or(0) > 0, "{first}");
}

#[test]
fn a_stall_with_keep_alives_is_cut_by_the_idle_timeout() {
    // Comments (which the SSE parser drops) and empty deltas (events without content):
    // neither is content, so neither resets the idle clock.
    let empty_delta = format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": null}]})
    );
    for keep_alive in [": ping\n\n".to_string(), empty_delta] {
        let server = FakeLlm::start();
        let events = openai_events(&default_text(), "stop", Some((100, 50)));
        let mut body = vec![Piece::Data(sse_bytes(&events[..3]))];
        // Keep-alives every 100 ms for 2 s: past idle_timeout (400 ms), within timeout.
        for _ in 0..20 {
            body.push(Piece::Data(keep_alive.clone().into_bytes()));
            body.push(Piece::Wait(Duration::from_millis(100)));
        }
        body.push(Piece::Data(sse_bytes(&events[3..])));
        server.script([sse(body)]);
        let b = one_prompt(&openai_config(&server, true));
        let run = b.run(&["run"]);
        let first = assert_fault_then_ok(&b, &server, &run, "transient");
        // Cut by the idle timeout, before the end of the stream: the usage the stream ends
        // with was never read, so the attempt's tokens are estimated.
        assert!(error_of(&first).contains("idle"), "{keep_alive:?}: {first}");
        assert_eq!(first["estimated"], true, "{keep_alive:?}: {first}");
    }
}

#[test]
fn anthropic_pings_do_not_reset_the_idle_clock() {
    let server = FakeLlm::start();
    let events = anthropic_events(&default_text(), "end_turn", Some((100, 50)));
    let frame = |(e, d): &(String, String)| format!("event: {e}\ndata: {d}\n\n");
    let mut body = vec![Piece::Data(
        events[..4]
            .iter()
            .map(frame)
            .collect::<String>()
            .into_bytes(),
    )];
    for _ in 0..20 {
        body.push(Piece::Data(
            frame(&("ping".to_string(), json!({"type": "ping"}).to_string())).into_bytes(),
        ));
        body.push(Piece::Wait(Duration::from_millis(100)));
    }
    body.push(Piece::Data(
        events[4..]
            .iter()
            .map(frame)
            .collect::<String>()
            .into_bytes(),
    ));
    server.script([sse(body)]);
    let b = one_prompt(&anthropic_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    assert!(error_of(&first).contains("idle"), "{first}");
    assert!(
        first["output_tokens"].as_u64().unwrap_or(0) > 0,
        "the partial text counts: {first}"
    );
}

#[test]
fn a_server_that_never_answers_a_stream_is_cut_by_the_idle_timeout() {
    let server = FakeLlm::start();
    server.script([Action::Hang]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    let error = error_of(&first);
    // Cut by idle_timeout, not by timeout.
    assert!(
        error.contains("400ms") && error.contains("llm.idle_timeout"),
        "{first}"
    );
}

#[test]
fn a_server_that_never_answers_a_plain_request_is_cut_by_the_timeout() {
    let server = FakeLlm::start();
    server.script([Action::Hang]);
    let config = openai_config(&server, false).replace("timeout = \"5s\"", "timeout = \"1s\"");
    assert!(config.contains("\ntimeout = \"1s\""));
    let b = one_prompt(&config);
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    assert!(error_of(&first).contains("(llm.timeout)"), "{first}");
}

#[test]
fn a_server_that_closes_after_the_headers_is_transient() {
    let server = FakeLlm::start();
    server.script([Action::CloseAfterHeaders]);
    let b = one_prompt(&openai_config(&server, true));
    let run = b.run(&["run"]);
    assert_fault_then_ok(&b, &server, &run, "transient");
}

#[test]
fn a_refused_connection_is_transient() {
    // A port with nothing listening: bind, note the port, drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let b = one_prompt(&format!(
        "[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n{CLOCKS}\n{}",
        retry(2, "20ms")
    ));
    let run = b.run(&["run"]);
    run.code(1);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 2, "retried: {a:#?}");
    assert!(a.iter().all(|e| e["outcome"] == "transient"), "{a:#?}");
    assert!(error_of(&a[0]).contains("connect"), "{}", a[0]);
}

// ---- Anthropic ----------------------------------------------------------------------------

#[test]
fn anthropic_sse_sends_its_headers_and_records_usage() {
    let server = FakeLlm::start();
    let mut b = one_prompt(&anthropic_config(&server, true));
    b.env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("OPENAI_API_KEY", "sk-openai-other");
    b.run(&["run"]).code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[0].body["stream"], true);
    assert!(seen[0].body["system"].as_str().unwrap_or("").contains(NAME));
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &default_text());
    assert_eq!(a[0]["request_id"], "msg_fake");
}

#[test]
fn anthropic_json_reply_is_accepted() {
    let server = FakeLlm::start();
    let b = one_prompt(&anthropic_config(&server, false));
    b.run(&["run"]).code(0);
    assert_eq!(server.seen()[0].body["stream"], false);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &default_text());
}

#[test]
fn anthropic_cache_usage_is_summed_into_input() {
    let cache_usage = json!({"input_tokens": 10, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30, "output_tokens": 1});
    let text = default_text();
    // Streamed: usage in message_start.
    let mut events = anthropic_events(&text, "end_turn", Some((10, 50)));
    events[0].1 = json!({"type": "message_start", "message": {"id": "msg_cache", "type": "message", "role": "assistant", "content": [], "usage": cache_usage.clone()}}).to_string();
    let streamed = sse(vec![Piece::Data(
        events
            .iter()
            .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
            .collect::<String>()
            .into_bytes(),
    )]);
    // Whole: usage in the message.
    let mut whole = json!({"id": "msg_cache", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "usage": cache_usage});
    whole["usage"]["output_tokens"] = json!(50);
    let whole = Action::Respond {
        status: 200,
        headers: vec![],
        body: vec![Piece::Data(whole.to_string().into_bytes())],
    };
    for (stream, action) in [(true, streamed), (false, whole)] {
        let server = FakeLlm::start();
        server.script([action]);
        let b = one_prompt(&anthropic_config(&server, stream));
        b.run(&["run"]).code(0);
        let a = attempts(&b, "01.1");
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(a[0]["outcome"], "ok");
        assert_eq!(a[0]["input_tokens"], 60, "stream {stream}: 10 + 20 + 30");
        assert_eq!(a[0]["output_tokens"], 50, "stream {stream}");
        assert_eq!(a[0]["estimated"], false);
        assert_eq!(b.read("checkpoints/outputs/01.1.md"), text);
    }
}

#[test]
fn anthropic_max_tokens_is_a_content_failure() {
    let server = FakeLlm::start();
    server.script([anthropic_sse(
        &default_text(),
        "max_tokens",
        Some((100, 50)),
    )]);
    let b = one_prompt(&anthropic_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "content");
    assert_eq!(first["finish_reason"], "length", "{first}");
    assert!(server.seen()[1].user().contains("token limit"));
}

#[test]
fn anthropic_error_event_is_transient() {
    let server = FakeLlm::start();
    let events = anthropic_events("Working on it", "end_turn", Some((100, 50)));
    let mut body: String = events[..4]
        .iter()
        .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
        .collect();
    body.push_str(&format!(
        "event: error\ndata: {}\n\n",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ));
    server.script([sse(vec![Piece::Data(body.into_bytes())])]);
    let b = one_prompt(&anthropic_config(&server, true));
    let run = b.run(&["run"]);
    let first = assert_fault_then_ok(&b, &server, &run, "transient");
    assert!(error_of(&first).contains("Overloaded"), "{first}");
}

#[test]
fn anthropic_streamed_request_answered_with_json_is_accepted() {
    let server = FakeLlm::start();
    let text = default_text();
    server.script([anthropic_json(&text, "end_turn", (100, 50))]);
    let b = one_prompt(&anthropic_config(&server, true));
    b.run(&["run"]).code(0);
    assert_eq!(server.seen()[0].body["stream"], true);
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_accepted(&b, &a[0], &text);
}

#[test]
fn anthropic_statuses_are_classified() {
    // 529 overloaded: transient; 401: permanent, naming ANTHROPIC_API_KEY.
    let server = FakeLlm::start();
    server.script([status(529, "Overloaded", &[])]);
    let b = one_prompt(&anthropic_config(&server, true));
    let run = b.run(&["run"]);
    assert_fault_then_ok(&b, &server, &run, "transient");

    let server = FakeLlm::start();
    server.script([status(401, "invalid x-api-key", &[])]);
    let b = one_prompt(&anthropic_config(&server, true));
    let run = b.run(&["run"]);
    let a = assert_failed(&b, &server, &run, 1);
    assert_eq!(a[0]["outcome"], "permanent");
    run.stderr_has("ANTHROPIC_API_KEY");
}

// ---- Command (agent CLI) ------------------------------------------------------------------

fn command_config(script: &Path, timeout: &str, max_attempts: u32, extra: &str) -> String {
    format!(
        "[llm]\nprovider = \"command\"\ncommand = [\"{}\"]\ntimeout = \"{timeout}\"\n{extra}\n{}",
        script.display(),
        retry(max_attempts, "50ms")
    )
}

/// A build whose config names a script written into it (the script path is known only
/// once the build's folder exists).
fn command_build(
    script_body: &str,
    timeout: &str,
    max_attempts: u32,
    extra: &str,
    prompts: &[(&str, &[&str])],
) -> Build {
    let b = build_with("", prompts);
    let script = agent_script(&b, "agent.sh", script_body);
    b.config(&format!(
        "{}\n[[phases]]\ndir = \"01-a\"\nname = \"A\"\nbudget = 50000\n",
        command_config(&script, timeout, max_attempts, extra)
    ));
    b
}

#[test]
fn command_agent_completes_the_build_with_reported_usage() {
    // Claude Code's usage with cached input, which counts as input.
    let reply = agent_reply_with_usage(
        r#"{"input_tokens":11,"cache_read_input_tokens":4,"output_tokens":7}"#,
    );
    let b = command_build(
        &reply,
        "10s",
        1,
        "",
        &[(NAME, &["title"]), ("01.2-second", &["summary"])],
    );
    b.run(&["run"]).code(0);
    let status = status_json(&b);
    assert_eq!(status["completed"], json!(["01.1", "01.2"]), "{status}");
    assert_eq!(status["variables"]["01.1"]["title"], "cmd-value");
    assert_eq!(status["variables"]["01.2"]["summary"], "cmd-value");
    for id in ["01.1", "01.2"] {
        let p = &status["prompts"][id];
        assert_eq!(p["tokens_in"], 15, "{id}: 11 + 4 cached: {p}");
        assert_eq!(p["tokens_out"], 7, "{id}: {p}");
        assert_eq!(p["estimated"], false, "{id}: {p}");
        let a = attempts(&b, id);
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(a[0]["outcome"], "ok");
        assert_eq!(a[0]["request_id"], "s");
    }
    let out = b.read("checkpoints/outputs/01.2.md");
    assert!(out.starts_with("Done with 01.2-second.\n"), "{out}");
    assert!(out.contains("\"summary\":\"cmd-value\""), "{out}");
}

#[test]
fn command_is_error_fails_with_its_message() {
    let b = command_build(
        "cat >/dev/null\necho '{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"is_error\":true,\"result\":\"the agent hit a wall\",\"session_id\":\"s\"}'\n",
        "10s",
        2,
        "",
        &[(NAME, &["title"])],
    );
    let run = b.run(&["run"]);
    run.code(1).stderr_has("the agent hit a wall");
    let a = attempts(&b, "01.1");
    assert!(!a.is_empty());
    for e in &a {
        assert_ne!(e["outcome"], "ok", "{e}");
        assert!(error_of(e).contains("the agent hit a wall"), "{e}");
    }
    assert_eq!(status_json(&b)["failed"], json!(["01.1"]));
}

#[test]
fn command_nonzero_exit_fails_with_the_tail_of_stderr() {
    let b = command_build(
        "cat >/dev/null\ni=0\nwhile [ $i -lt 30 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done\necho 'fatal: the agent crashed at the end' >&2\nexit 3\n",
        "10s",
        2,
        "",
        &[(NAME, &["title"])],
    );
    let run = b.run(&["run"]);
    run.code(1)
        .stderr_has("fatal: the agent crashed at the end");
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 2, "{a:#?}");
    let error = error_of(&a[0]);
    assert!(
        error.contains("fatal: the agent crashed at the end"),
        "{error}"
    );
    assert!(error.contains('3'), "the exit status: {error}");
    assert!(error.contains("noise line 29"), "{error}");
    assert!(!error.contains("noise line 3 "), "only the tail: {error}");
    assert!(error.len() < 2500, "{error}");
    assert_eq!(status_json(&b)["failed"], json!(["01.1"]));
}

#[test]
fn command_timeout_kills_the_whole_process_group() {
    let b = build_with("", &[(NAME, &["title"])]);
    let child_pid = b.path().join("child.pid");
    let self_pid = b.path().join("self.pid");
    let script = agent_script(
        &b,
        "agent.sh",
        &format!(
            "sleep 600 &\necho $! > '{}'\necho $$ > '{}'\nsleep 600\n",
            child_pid.display(),
            self_pid.display()
        ),
    );
    b.config(&command_config(&script, "1s", 1, ""));
    let run = b.run(&["run"]);
    run.code(1).stderr_has("llm.timeout");
    let pids: Vec<u32> = [&child_pid, &self_pid]
        .iter()
        .map(|p| read_pid(p))
        .collect();
    let survivors: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&pid| !dies_within(pid, Duration::from_secs(2)))
        .collect();
    for &pid in &survivors {
        kill_pid(pid);
    }
    assert!(
        survivors.is_empty(),
        "still running after the timeout: {survivors:?}"
    );
    let a = attempts(&b, "01.1");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_ne!(a[0]["outcome"], "ok");
    assert!(error_of(&a[0]).contains("llm.timeout"), "{}", a[0]);
    assert_eq!(status_json(&b)["failed"], json!(["01.1"]));
}

#[test]
fn command_environment_is_scrubbed() {
    let mut b = build_with("", &[(NAME, &["title"])]);
    let dump = b.path().join("env.txt");
    let script = agent_script(
        &b,
        "agent.sh",
        &format!("env > '{}'\n{AGENT_REPLY}", dump.display()),
    );
    b.config(&command_config(
        &script,
        "10s",
        1,
        "env = [\"AGENT_BASE_URL\", \"NOT_SET_ANYWHERE\"]",
    ));
    b.env("SECRET_OTHER", "x")
        .env("OPENAI_API_KEY", "sk-openai-not-for-the-agent")
        .env("ANTHROPIC_API_KEY", "sk-ant-for-the-agent")
        .env("AGENT_BASE_URL", "http://127.0.0.1:9/")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1");
    b.run(&["run"]).code(0);
    let env = std::fs::read_to_string(&dump).expect("the agent dumped its env");
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    let allowed = [
        "PATH",
        "HOME",
        "ANTHROPIC_API_KEY",
        "AGENT_BASE_URL",
        // The attempt's mark, which every process it starts inherits.
        "ORCHESTRATOR_ATTEMPT",
        // Set by the shell itself.
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
    ];
    let extra: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !allowed.contains(n))
        .collect();
    assert!(
        extra.is_empty(),
        "leaked into the agent's env: {extra:?}\n{env}"
    );
    for (k, v) in [
        ("ANTHROPIC_API_KEY", "sk-ant-for-the-agent"),
        ("AGENT_BASE_URL", "http://127.0.0.1:9/"),
    ] {
        assert!(vars.contains(&(k, v)), "{k} passed: {env}");
    }
    assert!(names.contains(&"PATH"), "{env}");
    assert!(!env.contains("sk-openai-not-for-the-agent"));
}

// ---- The key never leaks ------------------------------------------------------------------

fn canary(prefix: &str) -> String {
    format!("{prefix}-CANARY-{:016x}", fastrand::u64(..))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[track_caller]
fn assert_no_canary(b: &Build, runs: &[&Run], canary: &str) {
    for run in runs {
        assert!(
            !run.stdout.contains(canary),
            "the key is in stdout:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(canary),
            "the key is in stderr:\n{}",
            run.stderr
        );
    }
    let files = files_under(&b.path().join("checkpoints"));
    assert!(
        files.iter().any(|f| f.ends_with("journal.jsonl")),
        "checkpoints were written: {files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(canary),
            "the key is in {}",
            f.display()
        );
    }
}

/// Runs `run` three ways (plain, `-v`, `--json -v`), each on a fresh session.
fn runs_three_ways(b: &Build) -> Vec<Run> {
    let mut runs = Vec::new();
    for args in [
        &["run"][..],
        &["run", "--restart", "-v"][..],
        &["run", "--restart", "--json", "-v"][..],
    ] {
        runs.push(b.run(args));
        runs.push(b.run(&["status", "-v"]));
    }
    runs
}

#[test]
fn the_key_never_leaks_from_an_openai_run() {
    let key = canary("sk");
    let server = FakeLlm::start();
    // A success, a transient fault, a content failure: every path writes state.
    server.script([
        status(500, "oops", &[]),
        openai_sse("no checkpoint here", "stop", Some((100, 50))),
    ]);
    let mut b = one_prompt(&openai_config(&server, true));
    b.env("OPENAI_API_KEY", &key);
    let runs = runs_three_ways(&b);
    runs[0].code(0);
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some(format!("Bearer {key}").as_str()),
        "the key was sent"
    );
    assert_no_canary(&b, &runs.iter().collect::<Vec<_>>(), &key);
}

#[test]
fn the_key_never_leaks_from_an_error_that_echoes_it() {
    for provider in ["openai", "anthropic"] {
        let key = canary("sk");
        let server = FakeLlm::start();
        server.responder(echo_key(401));
        let (config, var) = if provider == "openai" {
            (openai_config(&server, true), "OPENAI_API_KEY")
        } else {
            (anthropic_config(&server, true), "ANTHROPIC_API_KEY")
        };
        let mut b = one_prompt(&config);
        b.env(var, &key);
        let runs = runs_three_ways(&b);
        runs[0]
            .code(1)
            .stderr_has(var)
            .stderr_has("Incorrect API key provided");
        assert_eq!(server.count(), 3, "{provider}: one request per run");
        assert!(
            server.seen().iter().all(|s| {
                s.header("authorization")
                    .or_else(|| s.header("x-api-key"))
                    .is_some_and(|v| v.contains(&key))
            }),
            "{provider}: the key was sent (and echoed)"
        );
        assert_no_canary(&b, &runs.iter().collect::<Vec<_>>(), &key);
    }
}

#[test]
fn the_key_never_leaks_from_an_anthropic_stream() {
    let key = canary("sk-ant");
    let server = FakeLlm::start();
    server.script([status(529, "Overloaded", &[])]);
    let mut b = one_prompt(&anthropic_config(&server, true));
    b.env("ANTHROPIC_API_KEY", &key);
    let runs = runs_three_ways(&b);
    runs[0].code(0);
    assert_eq!(server.seen()[0].header("x-api-key"), Some(key.as_str()));
    assert_no_canary(&b, &runs.iter().collect::<Vec<_>>(), &key);
}

#[test]
fn the_key_never_leaks_from_an_agent_that_prints_it() {
    let key = canary("sk-ant");
    let mut b = command_build(
        "cat >/dev/null\necho \"auth failed for key $ANTHROPIC_API_KEY\" >&2\necho \"{\\\"type\\\":\\\"result\\\",\\\"is_error\\\":true,\\\"result\\\":\\\"bad key $ANTHROPIC_API_KEY\\\"}\"\nexit 1\n",
        "10s",
        2,
        "",
        &[(NAME, &["title"])],
    );
    b.env("ANTHROPIC_API_KEY", &key);
    let runs = runs_three_ways(&b);
    runs[0].code(1).stderr_has("auth failed for key");
    assert_no_canary(&b, &runs.iter().collect::<Vec<_>>(), &key);
}
