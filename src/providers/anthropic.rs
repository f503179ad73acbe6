//! Anthropic's Messages API: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version`. Events `message_start`, `content_block_delta`, `message_delta`,
//! `message_stop`, `ping` (which does not reset the idle clock) and `error`. Input usage
//! is `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens`. A
//! streamed request answered with one JSON body (by content type) is accepted too.
//!
//! `POST {base_url}/v1/messages/count_tokens` counts a request's input with Claude's own
//! tokenizer, for free: the runner asks it before sending, so that a budget stays hard on
//! the first request, before any reported usage could calibrate tiktoken's count.

use serde_json::{Value, json};

use super::call::{Count, Failure, Finish, OnUpdate, Reply, Sent, anthropic_usage};
use super::http::{Body, Http, provider_message};
use super::stream::{self, Decoder};
use crate::config::Config;
use crate::request::Request;

pub(crate) const VERSION: &str = "2023-06-01";

pub(crate) struct Anthropic {
    pub(crate) http: Http,
}

impl Anthropic {
    pub(crate) fn new(http: Http, _config: &Config) -> Anthropic {
        Anthropic { http }
    }

    pub(crate) fn url(&self) -> String {
        self.http.endpoint("/v1", "v1/messages")
    }

    /// A request to `url` with `body`, the API version and the key.
    fn post(&self, url: &str, body: &Value) -> reqwest::RequestBuilder {
        let builder = (self.http.client.post(url))
            .header("anthropic-version", VERSION)
            .json(body);
        self.http.authorize(builder, Some("x-api-key"))
    }

    /// Counts the request's input with `count_tokens`.
    pub(crate) async fn count(&self, request: &Request) -> Count {
        let url = self.http.endpoint("/v1", "v1/messages/count_tokens");
        let body = json!({
            "model": request.model,
            "system": request.system,
            "messages": messages(request),
        });
        let builder = self.post(&url, &body);
        let deadline = tokio::time::Instant::now() + self.http.timeout;
        let bytes = match self.http.exchange(&url, builder, false, deadline).await {
            Ok(Body::Whole { bytes, .. }) => bytes,
            Ok(Body::Events { .. }) => {
                return Count::Failed("count_tokens answered with an event stream".into());
            }
            Err(f) if matches!(f.status, Some(404 | 405 | 501)) => return Count::Unsupported,
            Err(f) => return Count::Failed(f.message),
        };
        let counted = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("input_tokens").and_then(super::call::tokens));
        match counted {
            Some(n) => Count::Exact(n),
            None => Count::Failed("count_tokens gave no input_tokens".into()),
        }
    }

    pub(crate) async fn send(
        &self,
        request: &Request,
        max_tokens: u32,
        progress: OnUpdate<'_>,
    ) -> Sent {
        let url = self.url();
        // Temperature only, never with `top_p`: newer models refuse the two together.
        let mut body = json!({
            "model": request.model,
            "max_tokens": max_tokens,
            "system": request.system,
            "messages": messages(request),
            "stream": request.stream,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t.min(1.0));
        }
        self.http.pace(progress).await;
        let builder = self.post(&url, &body);
        let decoder = |id| MessageStream {
            id,
            ..MessageStream::default()
        };
        stream::exchange(
            &self.http,
            &url,
            builder,
            request.stream,
            false,
            parse_message,
            decoder,
            progress,
        )
        .await
    }
}

#[derive(Default)]
struct MessageStream {
    text: String,
    id: Option<String>,
    /// Usage fields as reported so far: `message_start`'s, then `message_delta`'s on top.
    usage: serde_json::Map<String, Value>,
    stop_reason: Option<String>,
    chunks: u64,
    stopped: bool,
}

impl Decoder for MessageStream {
    fn event(&mut self, name: Option<&str>, data: &str) -> Result<bool, Failure> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Failure::transient(format!("a stream event is not JSON ({e})"))
                .with_partial(&self.text)
                .with_request_id(self.id.clone())
        })?;
        let kind = name
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("")
            .to_string();
        self.apply(&kind, &v)
    }

    fn ended(&self) -> bool {
        self.stopped
    }

    fn partial(&self) -> (&str, Option<&str>) {
        (&self.text, self.id.as_deref())
    }

    fn chunks(&self) -> u64 {
        self.chunks
    }

    fn finish(self) -> Sent {
        MessageStream::finish(self)
    }
}

impl MessageStream {
    fn apply(&mut self, kind: &str, v: &Value) -> Result<bool, Failure> {
        match kind {
            "message_start" => {
                let m = &v["message"];
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    self.id = Some(id.to_string());
                }
                if let Some(u) = m.get("usage").and_then(Value::as_object) {
                    self.usage.extend(u.clone());
                }
                Ok(false)
            }
            "content_block_delta" => {
                let text = v["delta"].get("text").and_then(Value::as_str).unwrap_or("");
                if text.is_empty() {
                    return Ok(false);
                }
                self.text.push_str(text);
                self.chunks += 1;
                Ok(true)
            }
            "message_delta" => {
                if let Some(r) = v["delta"].get("stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_string());
                }
                if let Some(u) = v.get("usage").and_then(Value::as_object) {
                    self.usage.extend(
                        u.iter()
                            .filter(|(_, v)| !v.is_null())
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
                Ok(false)
            }
            "message_stop" => {
                self.stopped = true;
                Ok(false)
            }
            "error" => {
                let message = provider_message(&v.to_string());
                let overloaded = message.contains("overloaded") || message.contains("api_error");
                let f = if overloaded || !message.contains("invalid_request") {
                    Failure::transient(format!(
                        "the server reported an error inside the stream: {message}"
                    ))
                } else {
                    Failure::permanent(format!(
                        "the server reported an error inside the stream: {message}"
                    ))
                };
                Err(f.with_partial(&self.text).with_request_id(self.id.clone()))
            }
            // ping, content_block_start/stop and anything new: not content.
            _ => Ok(false),
        }
    }

    fn finish(self) -> Sent {
        if !self.stopped && self.stop_reason.is_none() {
            return Err(Failure::transient(
                "the stream ended before message_stop; the reply is incomplete",
            )
            .with_partial(&self.text)
            .with_request_id(self.id));
        }
        let usage = anthropic_usage(&Value::Object(self.usage));
        Ok(Reply {
            text: self.text,
            finish: stop(self.stop_reason.as_deref()),
            usage,
            request_id: self.id,
            cost_usd: None,
            agent_errors: Vec::new(),
        })
    }
}

fn stop(reason: Option<&str>) -> Finish {
    match reason {
        Some("end_turn" | "stop_sequence" | "tool_use" | "pause_turn") => Finish::Stop,
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some("refusal") => Finish::Refusal,
        Some(other) => Finish::Other(other.to_string()),
        None => Finish::Unknown,
    }
}

/// A whole Messages API reply.
fn parse_message(bytes: &[u8], request_id: Option<String>) -> Sent {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        Failure::transient(format!("the reply is not JSON ({e})"))
            .with_request_id(request_id.clone())
    })?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(Failure::transient(format!(
            "the server reported an error: {}",
            provider_message(&v.to_string())
        ))
        .with_request_id(request_id));
    }
    let text: String = v
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let usage = v.get("usage").and_then(anthropic_usage);
    Ok(Reply {
        text,
        finish: stop(v.get("stop_reason").and_then(Value::as_str)),
        usage,
        request_id: v
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(request_id),
        cost_usd: None,
        agent_errors: Vec::new(),
    })
}

/// The conversation as Anthropic's `messages`: earlier turns, then the prompt.
fn messages(request: &Request) -> Vec<serde_json::Value> {
    request
        .messages()
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_cache_usage() {
        let mut s = MessageStream::default();
        s.apply("message_start", &json!({"message": {"id": "msg_1", "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}})).expect("start");
        assert!(!s.apply("ping", &json!({"type": "ping"})).expect("ping"));
        assert!(
            s.apply(
                "content_block_delta",
                &json!({"delta": {"type": "text_delta", "text": "Hi"}})
            )
            .expect("delta")
        );
        s.apply(
            "message_delta",
            &json!({"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 7}}),
        )
        .expect("delta");
        s.apply("message_stop", &json!({})).expect("stop");
        let r = s.finish().expect("reply");
        assert_eq!(r.text, "Hi");
        let u = r.usage.expect("usage");
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (17, 7, 2, 5)
        );
        assert_eq!(r.finish, Finish::Length);
        assert_eq!(r.request_id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn error_events_fail() {
        let mut s = MessageStream::default();
        let f = s
            .apply("error", &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
            .expect_err("error");
        assert_eq!(f.kind, super::super::FailureKind::Transient);
    }

    #[test]
    fn json_message() {
        let r = parse_message(br#"{"id":"m","type":"message","content":[{"type":"text","text":"ok"}],"stop_reason":"refusal","usage":{"input_tokens":4,"output_tokens":1}}"#, None).expect("reply");
        assert_eq!((r.text.as_str(), r.finish), ("ok", Finish::Refusal));
        let u = r.usage.expect("usage");
        assert_eq!((u.input, u.output), (4, 1));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_json_body_gives_a_reply_or_a_failure(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_message(&bytes, None);
            }

            #[test]
            fn any_event_applies_without_panic(kind in "[a-z_]{0,20}", data in "\\PC{0,64}") {
                let mut s = MessageStream::default();
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    let _ = s.apply(&kind, &v);
                }
            }
        }
    }
}
