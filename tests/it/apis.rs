//! Today's APIs (issue 13): each host's quirk against the fake server answering with the
//! host's exact bodies (`support/hosts.rs`), streamed and not. Outcomes are read from the
//! journal and `status.json`, never from timing.

use serde_json::{Value, json};

use crate::support::builder::TestBuild;
use crate::support::fake_llm::{
    Action, FakeLlm, Piece, Seen, checkpoint_text, json_body, reply_for, requested_outputs, sse,
    sse_bytes,
};
use crate::support::hosts::{
    chat_reply, lm_studio_wrong_path, named_sse, openrouter_error_in_200, openrouter_no_credits,
    reasoning_model, response_object, responses_events, responses_only, responses_reply,
    usage_with_reasoning, with_headers,
};
use crate::support::{Build, attempts, events, status_json};

// ---- Builds -------------------------------------------------------------------------------

/// Two prompts in one phase (01.2 reads 01.1's `title`), with `llm` lines under `[llm]`.
/// Two prompts against `server`, `llm` (TOML lines of `[llm]`) on top.
fn build(server: &FakeLlm, llm: &str, retry_attempts: u32) -> Build {
    TestBuild::against(server)
        .set("llm.timeout", "10s")
        .set("retry.max_attempts", i64::from(retry_attempts))
        .set("retry.max_delay", "2s")
        .config_text(&format!("[llm]\n{llm}\n"))
        .phase("01-a", "A", Some(50_000))
        .prompt("01.1-first", "Write the first part.", &["title"])
        .prompt("01.2-second", "Build on {{title}}.", &["second"])
        .build()
}

fn streamed(stream: bool) -> String {
    format!("stream = {stream}")
}

/// A seen request's body as the test saw it.
fn bodies(server: &FakeLlm) -> Vec<Value> {
    server.seen().into_iter().map(|s| s.body).collect()
}

fn the_reply(seen: &Seen) -> String {
    checkpoint_text(&seen.prompt_name(), &requested_outputs(seen))
}

// ---- 1, 2. OpenAI's reasoning models --------------------------------------------------------

#[test]
fn a_reasoning_model_that_refuses_max_tokens_and_the_temperature_is_learned_once_per_session() {
    for stream in [true, false] {
        let server = FakeLlm::start();
        server.responder(reasoning_model());
        let llm = format!(
            "model = \"o3-mini\"\ntemperature = 0.2\n{}",
            streamed(stream)
        );
        let b = build(&server, &llm, 3);
        let run = b.run(&["run", "--until", "01.1"]);
        run.code(0).stderr_has("max_completion_tokens");
        // 400 on max_tokens, 400 on the temperature, then the answer: one attempt.
        let sent = bodies(&server);
        assert_eq!(sent.len(), 3, "stream {stream}: {sent:#?}");
        assert!(sent[0].get("max_tokens").is_some());
        assert!(sent[1].get("max_completion_tokens").is_some() && sent[1]["temperature"] == 0.2);
        assert!(
            sent[2].get("max_completion_tokens").is_some() && sent[2].get("temperature").is_none()
        );
        assert_eq!(attempts(&b, "01.1").len(), 1);
        let learned = events(&b, "learned");
        let settings: Vec<(&str, &str)> = learned
            .iter()
            .map(|e| {
                (
                    e["setting"].as_str().unwrap_or(""),
                    e["value"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            settings,
            [
                ("llm.max_tokens_param", "max_completion_tokens"),
                ("llm.temperature", "not sent")
            ]
        );
        assert!(
            learned[0]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("Unsupported parameter")
        );
        // A resumed run starts with what was learned: one request for 01.2.
        b.run(&["run"]).code(0);
        let sent = bodies(&server);
        assert_eq!(sent.len(), 4, "stream {stream}");
        assert!(
            sent[3].get("max_completion_tokens").is_some() && sent[3].get("temperature").is_none()
        );
        assert_eq!(events(&b, "learned").len(), 2, "nothing learned twice");
    }
}

#[test]
fn a_fixed_max_tokens_param_is_sent_as_written_and_never_switched() {
    let server = FakeLlm::start();
    server.responder(reasoning_model());
    let b = build(
        &server,
        "model = \"o3\"\nmax_tokens_param = \"max_tokens\"",
        1,
    );
    let run = b.run(&["run"]);
    run.code(1)
        .stderr_has("Unsupported parameter: 'max_tokens'");
    assert_eq!(
        server.count(),
        1,
        "a 400 is permanent and nothing is switched"
    );
    let server = FakeLlm::start();
    server.responder(reasoning_model());
    let b = build(
        &server,
        "model = \"o3\"\nmax_tokens_param = \"max_completion_tokens\"",
        1,
    );
    b.run(&["run"]).code(0);
    assert!(
        bodies(&server)
            .iter()
            .all(|s| s.get("max_completion_tokens").is_some())
    );
    assert!(events(&b, "learned").is_empty());
}

#[test]
fn an_unset_temperature_is_not_sent_and_a_reasoning_effort_is_passed_through() {
    let server = FakeLlm::start();
    let b = build(&server, "reasoning_effort = \"low\"", 1);
    b.run(&["run"]).code(0);
    for body in bodies(&server) {
        assert!(body.get("temperature").is_none(), "{body}");
        assert_eq!(body["reasoning_effort"], "low", "{body}");
    }
}

#[test]
fn a_reply_longer_than_the_cap_sent_is_a_budget_warning() {
    let server = FakeLlm::start();
    // A server that ignores the cap: 600 output tokens against a cap of 300.
    server.responder(|seen: &Seen| {
        chat_reply(
            &the_reply(seen),
            "stop",
            usage_with_reasoning(100, 600, 0),
            false,
        )
    });
    let b = build(&server, "max_tokens = 300\nstream = false", 1);
    let run = b.run(&["run", "--until", "01.1"]);
    run.code(0).stderr_has("the cap did not hold");
    let warnings: Vec<Value> = events(&b, "warning");
    assert!(
        warnings.iter().any(|w| w["message"]
            .as_str()
            .unwrap_or("")
            .contains("where the cap sent was 300")),
        "{warnings:#?}"
    );
    assert_eq!(
        attempts(&b, "01.1")[0]["output_tokens"],
        600,
        "counted as reported"
    );
}

// ---- 3. Reasoning tokens -------------------------------------------------------------------

#[test]
fn reasoning_tokens_are_recorded_counted_as_output_and_shown() {
    for stream in [true, false] {
        let server = FakeLlm::start();
        server.responder(move |seen: &Seen| {
            chat_reply(
                &the_reply(seen),
                "stop",
                usage_with_reasoning(100, 450, 400),
                stream,
            )
        });
        let b = build(&server, &streamed(stream), 1);
        b.run(&["run"]).code(0);
        let a = &attempts(&b, "01.1")[0];
        assert_eq!(
            (a["output_tokens"].as_u64(), a["reasoning_tokens"].as_u64()),
            (Some(450), Some(400))
        );
        let status = status_json(&b);
        assert_eq!(status["prompts"]["01.1"]["reasoning"], 400);
        assert_eq!(
            status["phases"][0]["used"],
            2 * (100 + 450),
            "reasoning is spent output"
        );
        b.run(&["status"])
            .code(0)
            .stdout_has("Reasoning: 800 of the 900 output tokens");
    }
}

#[test]
fn a_reply_whose_whole_output_went_to_reasoning_fails_and_status_says_to_raise_max_tokens() {
    for stream in [true, false] {
        let server = FakeLlm::start();
        server.responder(move |_: &Seen| {
            chat_reply("", "length", usage_with_reasoning(100, 2000, 2000), stream)
        });
        let b = build(&server, &streamed(stream), 2);
        b.run(&["run"]).code(1).stderr_has("went to reasoning");
        let a = attempts(&b, "01.1");
        assert_eq!(a.len(), 2, "a content failure is retried");
        assert_eq!(a[0]["outcome"], "content");
        b.run(&["status"])
            .code(0)
            .stdout_has("raise llm.max_tokens");
    }
}

// ---- 4. The Responses API ------------------------------------------------------------------

#[test]
fn a_responses_only_model_on_chat_completions_names_the_openai_responses_provider() {
    let server = FakeLlm::start();
    server.script([json_body(404, responses_only())]);
    let b = build(&server, "model = \"gpt-5-codex\"", 3);
    b.run(&["run"])
        .code(1)
        .stderr_has("only supported in v1/responses")
        .stderr_has("llm.provider = \"openai-responses\"");
    assert_eq!(server.count(), 1, "not retried");
}

#[test]
fn the_openai_responses_provider_runs_the_build_statelessly_streamed_and_not() {
    for stream in [true, false] {
        let server = FakeLlm::start();
        server
            .responder(move |seen: &Seen| responses_reply(&the_reply(seen), stream, (120, 80, 30)));
        let llm = format!(
            "provider = \"openai-responses\"\nmodel = \"gpt-5-codex\"\n{}",
            streamed(stream)
        );
        let b = build(&server, &llm, 1);
        b.run(&["run"]).code(0);
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        for s in &seen {
            assert_eq!(s.route(), "/v1/responses");
            assert_eq!(s.body["store"], false);
            assert!(s.body.get("previous_response_id").is_none());
            assert!(
                s.body["instructions"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Prompt: ")
            );
            assert!(s.body["input"].is_string());
            assert!(s.body["max_output_tokens"].as_u64().is_some_and(|n| n > 0));
            assert_eq!(s.body["stream"], stream);
        }
        assert!(
            seen[1].body["input"]
                .as_str()
                .unwrap_or("")
                .contains("title-value"),
            "01.1's variable reached 01.2"
        );
        let a = &attempts(&b, "01.1")[0];
        assert_eq!(
            (
                a["input_tokens"].as_u64(),
                a["output_tokens"].as_u64(),
                a["reasoning_tokens"].as_u64()
            ),
            (Some(120), Some(80), Some(30)),
            "stream {stream}"
        );
    }
}

#[test]
fn responses_api_failures_are_classified_as_the_spec_says() {
    let failed = |code: &str, message: &str| json!({"type": "response.failed", "response": {"id": "resp_f", "status": "failed", "error": {"code": code, "message": message}}});
    let sse_of = |events: Vec<(String, Value)>| sse(vec![Piece::Data(named_sse(&events))]);
    let mut cut = responses_events("Done: half a rep", (1, 1, 0));
    cut.pop();
    type Case = (&'static str, Action, &'static str, usize);
    let cases: Vec<Case> = vec![
        (
            "response.failed with server_error: retried",
            sse_of(vec![(
                "response.failed".into(),
                failed("server_error", "The model failed to generate a response."),
            )]),
            "transient",
            2,
        ),
        (
            "an error event for the quota: not retried",
            sse_of(vec![(
                "error".into(),
                json!({"type": "error", "code": "insufficient_quota", "message": "You exceeded your current quota", "param": null}),
            )]),
            "permanent",
            1,
        ),
        (
            "a stream cut before response.completed: retried",
            sse_of(cut),
            "transient",
            2,
        ),
        (
            "incomplete at max_output_tokens: a content failure",
            json_body(200, response_object("Done: half", "incomplete", (1, 1, 0))),
            "content",
            2,
        ),
    ];
    for (name, fault, outcome, requests) in cases {
        let server = FakeLlm::start();
        server.script([fault]);
        let b = build(&server, "provider = \"openai-responses\"", 3);
        let run = b.run(&["run", "--until", "01.1"]);
        let a = attempts(&b, "01.1");
        assert_eq!(a[0]["outcome"], outcome, "{name}: {:#}", a[0]);
        assert_eq!(server.count(), requests, "{name}");
        assert_eq!(
            run.code,
            if requests == 1 { 1 } else { 0 },
            "{name}: {}",
            run.stderr
        );
    }
}

#[test]
fn litellms_streamed_responses_error_is_transient_and_says_to_try_without_streaming() {
    // LiteLLM 1.108.7 with a mock model, streamed `/v1/responses` (README, the trial).
    let body = "data: {\"error\": {\"message\": \"Error processing stream start\", \"type\": \"internal_server_error\", \"param\": null, \"code\": \"500\"}}\n\ndata: [DONE]\n\n";
    let server = FakeLlm::start();
    server.responder(move |_: &Seen| Action::Respond {
        status: 500,
        headers: vec![(
            "content-type".into(),
            "text/event-stream; charset=utf-8".into(),
        )],
        body: vec![Piece::Data(body.as_bytes().to_vec())],
    });
    let b = build(&server, "provider = \"openai-responses\"", 2);
    b.run(&["run"])
        .code(1)
        .stderr_has("HTTP 500: Error processing stream start")
        .stderr_has("llm.stream = false");
    let a = attempts(&b, "01.1");
    assert_eq!((a.len(), a[0]["outcome"].as_str()), (2, Some("transient")));
}

// ---- 5. Azure ------------------------------------------------------------------------------

#[test]
fn azure_deployments_get_the_api_version_and_the_key_in_the_api_key_header() {
    for (base, path) in [
        (
            "openai/deployments/gpt-4o",
            "/openai/deployments/gpt-4o/chat/completions",
        ),
        ("openai/v1", "/openai/v1/chat/completions"),
    ] {
        let server = FakeLlm::start();
        let mut b = build(&server, "", 1);
        let config = b.read("config.toml").replace(
            &format!("base_url = \"{}\"", server.base_url()),
            &format!(
                "base_url = \"{}/{base}\"\napi_key_header = \"api-key\"\napi_key_env = \"AZURE_OPENAI_API_KEY\"\nquery = {{ \"api-version\" = \"2024-10-21\" }}",
                server.root_url()
            ),
        );
        b.config(&config);
        b.env("AZURE_OPENAI_API_KEY", "azure-test-key-123");
        b.run(&["run"]).code(0);
        for s in server.seen() {
            assert_eq!(s.path, format!("{path}?api-version=2024-10-21"));
            assert_eq!(s.header("api-key"), Some("azure-test-key-123"));
            assert_eq!(s.header("authorization"), None);
        }
    }
}

// ---- 6. OpenRouter -------------------------------------------------------------------------

#[test]
fn openrouters_reported_cost_is_the_attempts_cost_over_pricing() {
    for stream in [true, false] {
        let server = FakeLlm::start();
        server.responder(move |seen: &Seen| {
            let mut usage = usage_with_reasoning(100, 50, 0);
            usage["cost"] = json!(0.0125);
            usage["cost_details"] = json!({"upstream_inference_cost": null});
            chat_reply(&the_reply(seen), "stop", usage, stream)
        });
        let b = build(&server, &streamed(stream), 1);
        let config =
            b.read("config.toml") + "\n[pricing]\ninput_per_mtok = 1000\noutput_per_mtok = 1000\n";
        b.config(&config);
        b.run(&["run"]).code(0);
        let cost = status_json(&b)["total"]["cost_usd"].as_f64().unwrap_or(0.0);
        assert!((cost - 0.025).abs() < 1e-9, "stream {stream}: {cost}");
    }
}

#[test]
fn openrouters_402_for_credits_is_quota_and_not_retried() {
    let server = FakeLlm::start();
    server.script([json_body(402, openrouter_no_credits())]);
    let b = build(&server, "", 3);
    b.run(&["run"])
        .code(1)
        .stderr_has("quota exhausted")
        .stderr_has("Insufficient credits");
    assert_eq!(server.count(), 1);
}

#[test]
fn openrouters_errors_inside_a_200_fail_the_attempt_by_their_code() {
    type Case = (&'static str, u64, bool, &'static str, usize);
    let cases: &[Case] = &[
        (
            "a provider down, streamed: retried",
            502,
            true,
            "transient",
            2,
        ),
        (
            "a provider down, in the body: retried",
            502,
            false,
            "transient",
            2,
        ),
        ("rate limited, streamed: retried", 429, true, "transient", 2),
        (
            "a bad request, in the body: not retried",
            400,
            false,
            "permanent",
            1,
        ),
    ];
    for (name, code, stream, outcome, requests) in cases {
        let server = FakeLlm::start();
        server.script([openrouter_error_in_200(
            *code,
            "Provider disconnected",
            *stream,
        )]);
        let b = build(&server, &streamed(*stream), 3);
        b.run(&["run", "--until", "01.1"]);
        let a = attempts(&b, "01.1");
        assert_eq!(a[0]["outcome"], *outcome, "{name}: {:#}", a[0]);
        assert!(
            a[0]["error"]
                .as_str()
                .unwrap_or("")
                .contains("answered 200 with an error"),
            "{name}"
        );
        assert_eq!(server.count(), *requests, "{name}");
    }
}

// ---- 7. Groq, LM Studio, Ollama, <think> ---------------------------------------------------

#[test]
fn a_spent_token_allowance_waits_for_its_reset_instead_of_taking_a_429() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| {
        with_headers(
            reply_for(seen, &the_reply(seen)),
            &[
                ("x-ratelimit-limit-tokens", "18000"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "1s"),
            ],
        )
    });
    let b = build(&server, "", 1);
    // The wait is what is left of the second (the first reply's run took a little).
    b.run(&["run"])
        .code(0)
        .stderr_has("note: waiting ")
        .stderr_has("the endpoint's tokens allowance is spent (x-ratelimit-remaining-tokens: 0) until it resets in 1s");
    assert_eq!(server.count(), 2, "no 429, no retry");
}

#[test]
fn a_rate_limit_reset_past_max_delay_is_not_waited_for() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| {
        with_headers(
            reply_for(seen, &the_reply(seen)),
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "2m59.56s"),
            ],
        )
    });
    let b = build(&server, "", 1);
    let run = b.run(&["run"]);
    run.code(0);
    assert!(!run.stderr.contains("waiting"), "{}", run.stderr);
}

#[test]
fn lm_studios_200_with_an_error_for_a_wrong_path_fails_at_once_naming_the_base_url() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| lm_studio_wrong_path(seen.route()));
    let b = build(&server, "stream = false", 3);
    b.run(&["run"])
        .code(1)
        .stderr_has("Unexpected endpoint or method")
        .stderr_has("check llm.base_url");
    assert_eq!(server.count(), 1);
}

#[test]
fn ollamas_zero_prompt_tokens_on_a_cached_prompt_is_counted_as_reported_and_warned_once() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| {
        chat_reply(
            &the_reply(seen),
            "stop",
            json!({"prompt_tokens": 0, "completion_tokens": 50, "total_tokens": 50}),
            false,
        )
    });
    let b = build(&server, "stream = false", 1);
    b.run(&["run"]).code(0).stderr_has("0 input tokens");
    for id in ["01.1", "01.2"] {
        let a = &attempts(&b, id)[0];
        assert_eq!(
            (a["input_tokens"].as_u64(), a["estimated"].as_bool()),
            (Some(0), Some(false)),
            "{id}"
        );
    }
    let told = events(&b, "warning")
        .into_iter()
        .filter(|w| {
            w["message"]
                .as_str()
                .unwrap_or("")
                .contains("0 input tokens")
        })
        .count();
    assert_eq!(told, 1, "once a run");
}

#[test]
fn a_leading_think_block_is_kept_in_the_output_but_not_parsed_and_counts_as_reasoning() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| {
        // The thinking holds a block for another prompt; the answer's block comes after.
        let thought = checkpoint_text("01.2-second", &json!({"second": "a thought"}));
        let text = format!(
            "<think>\nLet me plan this.\n{thought}</think>\n\n{}",
            the_reply(seen)
        );
        chat_reply(
            &text,
            "stop",
            json!({"prompt_tokens": 100, "completion_tokens": 200}),
            false,
        )
    });
    let b = build(&server, "stream = false", 1);
    b.run(&["run", "--until", "01.1"]).code(0);
    assert!(b.read("checkpoints/outputs/01.1.md").starts_with("<think>"));
    let a = &attempts(&b, "01.1")[0];
    assert!(
        a["reasoning_tokens"]
            .as_u64()
            .is_some_and(|r| r > 10 && r < 200),
        "{a}"
    );
    assert_eq!(status_json(&b)["variables"]["01.1"]["title"], "title-value");
}

#[test]
fn reasoning_streamed_apart_from_the_text_is_not_the_reply() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| {
        let mut events = vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "thinking about it"}}]}).to_string()];
        events.push(json!({"choices": [{"index": 0, "delta": {"reasoning": " still thinking"}}]}).to_string());
        events.push(json!({"choices": [{"index": 0, "delta": {"content": the_reply(seen)}, "finish_reason": "stop"}]}).to_string());
        events.push("[DONE]".into());
        sse(vec![Piece::Data(sse_bytes(&events))])
    });
    let b = build(&server, "", 1);
    b.run(&["run", "--until", "01.1"]).code(0);
    let output = b.read("checkpoints/outputs/01.1.md");
    assert!(!output.contains("thinking"), "{output}");
}

// ---- 8. Anthropic --------------------------------------------------------------------------

#[test]
fn anthropic_gets_a_temperature_when_one_is_set_and_never_top_p() {
    for (temperature, stream) in [(Some(0.5), true), (Some(0.5), false), (None, true)] {
        let server = FakeLlm::start();
        let mut llm = format!("provider = \"anthropic\"\n{}", streamed(stream));
        if let Some(t) = temperature {
            llm.push_str(&format!("\ntemperature = {t}"));
        }
        let b = build(&server, &llm, 1);
        let config = b
            .read("config.toml")
            .replace(&server.base_url(), &server.root_url());
        b.config(&config);
        b.run(&["run"]).code(0);
        for body in bodies(&server) {
            assert_eq!(
                body.get("temperature").and_then(Value::as_f64),
                temperature,
                "{body}"
            );
            assert!(body.get("top_p").is_none(), "{body}");
        }
    }
}
