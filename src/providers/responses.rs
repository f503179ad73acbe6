//! OpenAI's Responses API, for the models that speak nothing else (gpt-5-codex, the pro
//! models answer chat completions with a 404): `POST {base_url}/responses` with
//! `instructions` (the system message), `input` (the user message), `max_output_tokens`,
//! `stream` and `store: false` (stateless: no `previous_response_id`, nothing kept by the
//! server). Its events: `response.output_text.delta` (the text), reasoning deltas (alive,
//! not the reply), `response.completed` and `response.incomplete` (with the usage: input
//! including cached tokens, output including reasoning), `response.failed` and `error`
//! (classified by their code). A whole JSON body is read too (`stream = false`, or a
//! server that ignored `stream`). Same clocks and classification as chat completions.

use serde_json::{Value, json};

use super::call::{Failure, Finish, Reply, Sent, Usage, UsageKeys};
use super::http::body_failure;
use super::stream::{self, Decoder};
use crate::request::Request;

/// The cap's one name here.
pub(crate) const CAP: &str = "max_output_tokens";

/// A Responses API request: stateless, the system message as `instructions`; earlier
/// turns, when there are any, as input messages before the prompt.
pub(crate) fn body(request: &Request, max_tokens: u32, effort: Option<&str>) -> Value {
    let input = if request.history.is_empty() {
        json!(request.user)
    } else {
        Value::Array(
            request
                .messages()
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        )
    };
    let mut body = json!({
        "model": request.model,
        "instructions": request.system,
        "input": input,
        CAP: max_tokens,
        "stream": request.stream,
        "store": false,
    });
    if let Some(effort) = effort {
        body["reasoning"] = json!({ "effort": effort });
    }
    body
}

/// Parses an SSE body given as the reads it arrived in, without a network (fuzzing).
pub(crate) fn replay_sse(reads: Vec<Vec<u8>>) -> Sent {
    stream::replay(reads, ResponseStream::new(None))
}

/// What a stream has said so far.
pub(crate) struct ResponseStream {
    text: String,
    refusal: String,
    /// The finished response (`response.completed` / `response.incomplete`).
    done: Option<Value>,
    id: Option<String>,
    chunks: u64,
}

impl ResponseStream {
    pub(crate) fn new(id: Option<String>) -> ResponseStream {
        ResponseStream {
            text: String::new(),
            refusal: String::new(),
            done: None,
            id,
            chunks: 0,
        }
    }
}

impl Decoder for ResponseStream {
    fn event(&mut self, name: Option<&str>, data: &str) -> Result<bool, Failure> {
        let v = super::call::event_json(data, &self.text, self.id.as_deref())?;
        let kind = v.get("type").and_then(Value::as_str).or(name).unwrap_or("");
        let delta = || v.get("delta").and_then(Value::as_str).unwrap_or("");
        if self.id.is_none() {
            self.id = v
                .pointer("/response/id")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let content = match kind {
            "response.output_text.delta" => {
                self.text.push_str(delta());
                !delta().is_empty()
            }
            "response.refusal.delta" => {
                self.refusal.push_str(delta());
                !delta().is_empty()
            }
            k if k.starts_with("response.reasoning") && k.ends_with(".delta") => {
                !delta().is_empty()
            }
            "response.completed" | "response.incomplete" => {
                self.done = Some(v.get("response").cloned().unwrap_or(Value::Null));
                false
            }
            "response.failed" => {
                let error = v.pointer("/response/error").cloned().unwrap_or(Value::Null);
                return Err(body_failure(&error, &self.text).with_request_id(self.id.clone()));
            }
            "error" => {
                let error = v.get("error").cloned().unwrap_or_else(|| v.clone());
                return Err(body_failure(&error, &self.text).with_request_id(self.id.clone()));
            }
            _ => false,
        };
        if content {
            self.chunks += 1;
        }
        Ok(content)
    }

    fn ended(&self) -> bool {
        self.done.is_some()
    }

    fn partial(&self) -> (&str, Option<&str>) {
        (&self.text, self.id.as_deref())
    }

    fn chunks(&self) -> u64 {
        self.chunks
    }

    fn finish(self) -> Sent {
        let Some(response) = self.done else {
            return Err(Failure::transient(
                "the stream ended before response.completed; the reply is incomplete",
            )
            .with_partial(&self.text)
            .with_request_id(self.id));
        };
        // The stream and the response it ends with must agree: a `response.completed`
        // whose response says failed, cancelled (or anything but completed or incomplete)
        // is that failure.
        if let Err(f) = finished(&response, self.id.clone()) {
            return Err(f.with_partial(&self.text));
        }
        let (mut text, mut refusal) = (self.text, self.refusal);
        if text.is_empty() && refusal.is_empty() {
            (text, refusal) = output_text(&response);
        }
        Ok(reply(&response, text, refusal, self.id))
    }
}

/// The text and refusal of a response's `output` messages.
fn output_text(response: &Value) -> (String, String) {
    let (mut text, mut refusal) = (String::new(), String::new());
    let items = response.get("output").and_then(Value::as_array);
    for item in items.into_iter().flatten() {
        if item.get("type").and_then(Value::as_str) != Some("message") {
            continue;
        }
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match part.get("type").and_then(Value::as_str) {
                Some("output_text") => {
                    text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                }
                Some("refusal") => {
                    refusal.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or(""));
                }
                _ => {}
            }
        }
    }
    (text, refusal)
}

/// The reply a finished response makes.
fn reply(response: &Value, mut text: String, refusal: String, id: Option<String>) -> Reply {
    let status = response.get("status").and_then(Value::as_str);
    let reason = response
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str);
    let mut finish = match (status, reason) {
        (Some("incomplete"), Some("content_filter")) => Finish::ContentFilter,
        (Some("incomplete"), _) => Finish::Length,
        (Some("completed") | None, _) => Finish::Stop,
        (Some(other), _) => Finish::Other(other.to_string()),
    };
    if !refusal.is_empty() {
        finish = Finish::Refusal;
        if text.is_empty() {
            text = refusal;
        }
    }
    Reply {
        text,
        finish,
        usage: usage(response),
        request_id: id.or_else(|| {
            response
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        cost_usd: None,
        agent_errors: Vec::new(),
    }
}

/// `usage`: `input_tokens` includes the cached part, `output_tokens` the reasoning.
fn usage(response: &Value) -> Option<Usage> {
    super::call::openai_usage(
        response,
        &UsageKeys {
            input: "input_tokens",
            output: "output_tokens",
            input_details: "input_tokens_details",
            output_details: "output_tokens_details",
        },
    )
}

/// A whole JSON response.
pub(crate) fn parse_json_reply(bytes: &[u8], request_id: Option<String>) -> Sent {
    let v = super::call::body_json(bytes, request_id.as_deref())?;
    let id = request_id.or_else(|| v.get("id").and_then(Value::as_str).map(str::to_string));
    finished(&v, id.clone())?;
    if v.get("status").is_none() && v.get("output").is_none() {
        return Err(
            Failure::transient("the reply is not a response (no status, no output)")
                .with_request_id(id),
        );
    }
    let (text, refusal) = output_text(&v);
    Ok(reply(&v, text, refusal, id))
}

/// A finished response's own word on how it ended: its `error`, or a status other than
/// completed or incomplete, is a failure.
fn finished(response: &Value, id: Option<String>) -> Result<(), Failure> {
    if let Some(error) = response.get("error").filter(|e| !e.is_null()) {
        return Err(body_failure(error, "").with_request_id(id));
    }
    match response.get("status").and_then(Value::as_str) {
        Some("completed" | "incomplete") | None => Ok(()),
        Some(other) => Err(
            Failure::transient(format!("the response is {other}, not completed"))
                .with_request_id(id),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(events: &[Value]) -> Vec<u8> {
        let mut out = String::new();
        for e in events {
            out.push_str(&format!(
                "event: {}\ndata: {e}\n\n",
                e["type"].as_str().unwrap_or("")
            ));
        }
        out.into_bytes()
    }

    fn completed(status: &str, reason: Option<&str>) -> Value {
        json!({"type": format!("response.{status}"), "response": {
            "id": "resp_1", "status": status,
            "incomplete_details": reason.map(|r| json!({"reason": r})),
            "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 6},
                      "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 40}}}})
    }

    #[test]
    fn a_stream_of_deltas_and_its_usage() {
        let r = replay_sse(vec![sse(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
            json!({"type": "response.reasoning_summary_text.delta", "delta": "thinking"}),
            json!({"type": "response.output_text.delta", "delta": "Hel"}),
            json!({"type": "response.output_text.delta", "delta": "lo"}),
            completed("completed", None),
        ])])
        .expect("reply");
        assert_eq!((r.text.as_str(), &r.finish), ("Hello", &Finish::Stop));
        let u = r.usage.expect("usage");
        assert_eq!(
            (u.input, u.output, u.cache_read, u.reasoning),
            (36, 87, 6, 40)
        );
        assert_eq!(r.request_id.as_deref(), Some("resp_1"));
    }

    #[test]
    fn how_a_stream_ends() {
        type Case = (&'static str, Vec<Value>, Result<Finish, &'static str>);
        let cases: Vec<Case> = vec![
            (
                "incomplete at the cap",
                vec![completed("incomplete", Some("max_output_tokens"))],
                Ok(Finish::Length),
            ),
            (
                "filtered",
                vec![completed("incomplete", Some("content_filter"))],
                Ok(Finish::ContentFilter),
            ),
            (
                "failed",
                vec![
                    json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "The model failed to generate a response."}}}),
                ],
                Err("The model failed to generate a response."),
            ),
            (
                "an error event",
                vec![
                    json!({"type": "error", "code": "rate_limit_exceeded", "message": "Slow down", "param": null}),
                ],
                Err("Slow down"),
            ),
            (
                "cut short",
                vec![json!({"type": "response.output_text.delta", "delta": "par"})],
                Err("before response.completed"),
            ),
            (
                "completed, but the response says failed",
                vec![
                    json!({"type": "response.output_text.delta", "delta": "par"}),
                    json!({"type": "response.completed", "response": {"id": "r", "status": "failed"}}),
                ],
                Err("the response is failed"),
            ),
            (
                "completed, but the response says cancelled",
                vec![
                    json!({"type": "response.completed", "response": {"id": "r", "status": "cancelled"}}),
                ],
                Err("the response is cancelled"),
            ),
            (
                "completed, with an error in the response",
                vec![
                    json!({"type": "response.completed", "response": {"id": "r", "status": "failed", "error": {"code": "server_error", "message": "It broke."}}}),
                ],
                Err("It broke."),
            ),
        ];
        for (name, events, want) in cases {
            match (replay_sse(vec![sse(&events)]), want) {
                (Ok(r), Ok(finish)) => assert_eq!(r.finish, finish, "{name}"),
                (Err(f), Err(words)) => {
                    assert!(f.message.contains(words), "{name}: {}", f.message);
                    assert_eq!(f.kind, super::super::FailureKind::Transient, "{name}");
                }
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn whole_json_responses() {
        let body = json!({"id": "resp_2", "status": "completed", "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}],
            "usage": {"input_tokens": 3, "output_tokens": 1}});
        let r = parse_json_reply(body.to_string().as_bytes(), None).expect("reply");
        assert_eq!(
            (r.text.as_str(), r.request_id.as_deref()),
            ("hi", Some("resp_2"))
        );
        let quota = json!({"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}});
        let f = parse_json_reply(quota.to_string().as_bytes(), None).expect_err("quota");
        assert_eq!(f.kind, super::super::FailureKind::Quota);
        for bad in [&b"{not json"[..], b"{}", br#"{"status": "queued"}"#] {
            assert!(parse_json_reply(bad, None).is_err());
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_bytes_give_a_reply_or_a_failure(reads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
                let _ = replay_sse(reads);
            }

            #[test]
            fn any_json_body_gives_a_reply_or_a_failure(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_json_reply(&bytes, None);
            }
        }
    }
}
