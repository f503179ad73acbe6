//! The fake server answering as today's hosts do, with their exact bodies (each from a
//! source in the README's provider table): OpenAI's reasoning models and Responses API,
//! Azure, OpenRouter, Groq's rate-limit headers, LM Studio, Ollama, DeepSeek-style
//! `<think>`.

use serde_json::{Value, json};

use super::fake_llm::{
    Action, Piece, Seen, checkpoint_text, json_body, requested_outputs, sse, sse_bytes,
};

/// OpenAI's 400 for `max_tokens` sent to an o-series or gpt-5 model.
pub fn refused_max_tokens() -> Value {
    json!({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
}

/// OpenAI's 400 for a temperature other than 1 sent to those models.
pub fn refused_temperature(value: &Value) -> Value {
    json!({"error": {"message": format!("Unsupported value: 'temperature' does not support {value} with this model. Only the default (1) value is supported."), "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}})
}

/// OpenAI's 404 for a Responses-only model on chat completions.
pub fn responses_only() -> Value {
    json!({"error": {"message": "This model is only supported in v1/responses and not in v1/chat/completions.", "type": "invalid_request_error", "param": "model", "code": null}})
}

/// Usage with reasoning: (prompt, completion, of which reasoning).
pub fn usage_with_reasoning(i: u64, o: u64, r: u64) -> Value {
    json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o,
           "prompt_tokens_details": {"cached_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": r}})
}

/// A chat completion of `text` with `usage`, streamed or not.
pub fn chat_reply(text: &str, finish: &str, usage: Value, stream: bool) -> Action {
    if !stream {
        return json_body(
            200,
            json!({"id": "chatcmpl-r", "object": "chat.completion",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                   "usage": usage}),
        );
    }
    let mut events = vec![json!({"id": "chatcmpl-r", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}).to_string()];
    if !text.is_empty() {
        events.push(
            json!({"id": "chatcmpl-r", "choices": [{"index": 0, "delta": {"content": text}}]})
                .to_string(),
        );
    }
    events.push(json!({"id": "chatcmpl-r", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}).to_string());
    events.push(json!({"id": "chatcmpl-r", "choices": [], "usage": usage}).to_string());
    events.push("[DONE]".into());
    sse(vec![Piece::Data(sse_bytes(&events))])
}

/// An o-series model on chat completions: refuses `max_tokens` and any temperature but 1
/// (one at a time, as OpenAI validates), else answers with 30 of 50 output tokens spent
/// on reasoning.
pub fn reasoning_model() -> impl Fn(&Seen) -> Action + Send + Sync + 'static {
    |seen: &Seen| {
        if seen.body.get("max_tokens").is_some() {
            return json_body(400, refused_max_tokens());
        }
        if let Some(t) = seen
            .body
            .get("temperature")
            .filter(|t| t.as_f64() != Some(1.0))
        {
            return json_body(400, refused_temperature(t));
        }
        let stream = seen.body["stream"].as_bool().unwrap_or(false);
        let text = checkpoint_text(&seen.prompt_name(), &requested_outputs(seen));
        chat_reply(&text, "stop", usage_with_reasoning(100, 50, 30), stream)
    }
}

/// A finished Responses API response of `text` with usage (input, output, reasoning).
pub fn response_object(text: &str, status: &str, usage: (u64, u64, u64)) -> Value {
    let (i, o, r) = usage;
    json!({"id": "resp_fake", "object": "response", "status": status,
           "error": null,
           "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
           "output": [
               {"type": "reasoning", "id": "rs_1", "summary": []},
               {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
           "usage": {"input_tokens": i, "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": o, "output_tokens_details": {"reasoning_tokens": r},
                     "total_tokens": i + o}})
}

/// The Responses API's events for `text`: created, deltas, completed.
pub fn responses_events(text: &str, usage: (u64, u64, u64)) -> Vec<(String, Value)> {
    let mut events = vec![(
        "response.created".to_string(),
        json!({"type": "response.created", "response": {"id": "resp_fake", "status": "in_progress", "output": [], "usage": null}, "sequence_number": 0}),
    )];
    let chars: Vec<char> = text.chars().collect();
    for (n, part) in chars.chunks(16).enumerate() {
        let delta: String = part.iter().collect();
        events.push((
            "response.output_text.delta".into(),
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": delta, "logprobs": [], "sequence_number": n + 1}),
        ));
    }
    events.push((
        "response.completed".into(),
        json!({"type": "response.completed", "response": response_object(text, "completed", usage), "sequence_number": chars.len() + 1}),
    ));
    events
}

/// SSE bytes of named events (`event:` then `data:`), as the Responses API sends them.
pub fn named_sse(events: &[(String, Value)]) -> Vec<u8> {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect::<String>()
        .into_bytes()
}

/// `text` as the Responses API answers, streamed or not.
pub fn responses_reply(text: &str, stream: bool, usage: (u64, u64, u64)) -> Action {
    if stream {
        sse(vec![Piece::Data(named_sse(&responses_events(text, usage)))])
    } else {
        json_body(200, response_object(text, "completed", usage))
    }
}

/// `action` with extra response headers.
pub fn with_headers(action: Action, extra: &[(&str, &str)]) -> Action {
    match action {
        Action::Respond {
            status,
            mut headers,
            body,
        } => {
            headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Action::Respond {
                status,
                headers,
                body,
            }
        }
        other => other,
    }
}

/// OpenRouter's 402 when the credits are gone.
pub fn openrouter_no_credits() -> Value {
    json!({"error": {"message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits", "code": 402, "metadata": {"limit_source": "openrouter_credits"}}})
}

/// OpenRouter's error after HTTP 200: in the body, or as a stream's chunk.
pub fn openrouter_error_in_200(code: u64, message: &str, stream: bool) -> Action {
    let chunk = json!({"id": "gen-1", "object": "chat.completion.chunk", "provider": "P",
                       "error": {"code": code, "message": message, "metadata": {"error_type": "provider_unavailable"}},
                       "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}]});
    if stream {
        let mut bytes = b": OPENROUTER PROCESSING\n\n".to_vec();
        bytes.extend(sse_bytes(&[chunk.to_string()]));
        sse(vec![Piece::Data(bytes)])
    } else {
        json_body(200, chunk)
    }
}

/// LM Studio's answer to a path it does not know: 200, an error as a string.
pub fn lm_studio_wrong_path(path: &str) -> Action {
    json_body(
        200,
        json!({"error": format!("Unexpected endpoint or method. (POST {path})")}),
    )
}
