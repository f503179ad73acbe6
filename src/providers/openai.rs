//! OpenAI-compatible chat completions: `POST {base_url}/chat/completions`, JSON or SSE.
//!
//! Real servers differ, and all of these are handled: `data:` lines split across reads and
//! UTF-8 split across chunks (the SSE parser buffers bytes per line), CRLF line ends,
//! comments and keep-alives (they never reset the idle clock), a final usage chunk with
//! empty or null `choices`, no usage at all (Ollama, LM Studio), `finish_reason` `length`
//! and `content_filter`, a `refusal` field, an `error` object inside a 200 stream, a
//! streamed request answered with one JSON body, and a stream that ends without `[DONE]`
//! (complete if a `finish_reason` came, else cut short and transient).
//!
//! Today's hosts add: reasoning models that take the cap only as `max_completion_tokens`
//! and no temperature but their default (see `adapt.rs`), `reasoning_effort`, reasoning
//! tokens in `completion_tokens_details`, reasoning streamed apart from the text
//! (`reasoning`, `reasoning_content`: it keeps the stream alive but is not the reply),
//! OpenRouter's `usage.cost`, and errors inside a 200 answer (OpenRouter, LM Studio),
//! classified by their code.

use serde_json::{Value, json};

use super::adapt::{self, Adapt};
use super::call::{Failure, Finish, OnUpdate, Reply, Sent, Usage, UsageKeys};
use super::http::{Http, body_failure};
use super::responses;
use super::stream::{self, Decoder};
use crate::config::Config;
use crate::request::Request;

/// OpenAI's API in either shape: chat completions, or the Responses API
/// (`provider = "openai-responses"`, its body and events in `responses.rs`).
pub(crate) struct OpenAi {
    pub(crate) http: Http,
    pub(crate) adapt: Adapt,
    effort: Option<String>,
    responses: bool,
}

impl OpenAi {
    pub(crate) fn new(http: Http, config: &Config, responses: bool) -> OpenAi {
        OpenAi {
            http,
            adapt: Adapt::new(config.llm.max_tokens_param),
            effort: config.llm.reasoning_effort.clone(),
            responses,
        }
    }

    /// The Responses API rather than chat completions.
    pub(crate) fn speaks_responses(&self) -> bool {
        self.responses
    }

    pub(crate) fn url(&self) -> String {
        let path = if self.responses {
            "responses"
        } else {
            "chat/completions"
        };
        self.http.endpoint("", path)
    }

    /// Sends; a 400 refusing the cap's name or the temperature is learned and the request
    /// sent again (once per setting).
    pub(crate) async fn send(
        &self,
        request: &Request,
        max_tokens: u32,
        progress: OnUpdate<'_>,
    ) -> Sent {
        let host = self
            .http
            .base_url
            .host_str()
            .unwrap_or_default()
            .to_string();
        let mut resent = 0;
        loop {
            let cap = if self.responses {
                responses::CAP
            } else {
                self.adapt.cap_name(&host, &request.model)
            };
            let temperature = self.adapt.temperature(request.temperature);
            match self
                .once(request, max_tokens, cap, temperature, progress)
                .await
            {
                Err(f)
                    if resent < 2
                        && f.status == Some(400)
                        && self
                            .adapt
                            .learn_from(&f.message, cap, temperature.is_some()) =>
                {
                    resent += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn once(
        &self,
        request: &Request,
        max_tokens: u32,
        cap: &str,
        temperature: Option<f64>,
        progress: OnUpdate<'_>,
    ) -> Sent {
        self.http.pace(progress).await;
        let url = self.url();
        let mut body = if self.responses {
            responses::body(request, max_tokens, self.effort.as_deref())
        } else {
            chat_body(request, max_tokens, cap, self.effort.as_deref())
        };
        if let Some(t) = temperature {
            body["temperature"] = json!(t);
        }
        let builder = self.http.client.post(&url).json(&body);
        let builder = self.http.authorize(builder, None);
        let thinks = self.effort.is_some() || adapt::reasons(&request.model);
        let (http, stream) = (&self.http, request.stream);
        if self.responses {
            let (whole, decoder) = (responses::parse_json_reply, responses::ResponseStream::new);
            stream::exchange(
                http, &url, builder, stream, thinks, whole, decoder, progress,
            )
            .await
        } else {
            let decoder = StreamState::new;
            stream::exchange(
                http,
                &url,
                builder,
                stream,
                thinks,
                parse_json_reply,
                decoder,
                progress,
            )
            .await
        }
    }
}

/// A chat completions request: the system message, any earlier turns, the prompt; the cap
/// under its name `cap`.
fn chat_body(request: &Request, max_tokens: u32, cap: &str, effort: Option<&str>) -> Value {
    let messages: Vec<Value> =
        std::iter::once(json!({"role": "system", "content": request.system}))
            .chain(
                request
                    .messages()
                    .into_iter()
                    .map(|(role, content)| json!({"role": role, "content": content})),
            )
            .collect();
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": request.stream,
    });
    body[cap] = json!(max_tokens);
    if let Some(effort) = effort {
        body["reasoning_effort"] = json!(effort);
    }
    if request.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Parses an SSE body given as the reads it arrived in, without a network: what `send`
/// does with a stream, minus the clocks. For property tests and fuzzing.
pub(crate) fn replay_sse(reads: Vec<Vec<u8>>) -> Sent {
    stream::replay(reads, StreamState::new(None))
}

/// What a stream has said so far.
struct StreamState {
    text: String,
    refusal: String,
    finish: Option<Finish>,
    usage: Option<Usage>,
    /// OpenRouter's `usage.cost` (USD).
    cost: Option<f64>,
    id: Option<String>,
    chunks: u64,
    done: bool,
}

impl Decoder for StreamState {
    fn event(&mut self, _name: Option<&str>, data: &str) -> Result<bool, Failure> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(false);
        }
        let chunk = super::call::event_json(data, &self.text, self.id.as_deref())?;
        self.apply(&chunk)
    }

    fn ended(&self) -> bool {
        self.done
    }

    fn partial(&self) -> (&str, Option<&str>) {
        (&self.text, self.id.as_deref())
    }

    fn chunks(&self) -> u64 {
        self.chunks
    }

    fn finish(self) -> Sent {
        StreamState::finish(self)
    }
}

impl StreamState {
    fn new(id: Option<String>) -> StreamState {
        StreamState {
            text: String::new(),
            refusal: String::new(),
            finish: None,
            usage: None,
            cost: None,
            id,
            chunks: 0,
            done: false,
        }
    }

    /// Applies one chunk; `true` if it carried content (which resets the idle clock).
    fn apply(&mut self, chunk: &Value) -> Result<bool, Failure> {
        let choices = chunk.get("choices").and_then(Value::as_array);
        let first = choices.and_then(|c| c.first());
        // At the top (OpenRouter, LM Studio, LiteLLM) or in the choice (older OpenRouter).
        if let Some(error) = chunk
            .get("error")
            .or_else(|| first.and_then(|c| c.get("error")))
            .filter(|e| !e.is_null())
        {
            return Err(body_failure(error, &self.text).with_request_id(self.id.clone()));
        }
        if self.id.is_none() {
            self.id = chunk.get("id").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(u) = usage(chunk) {
            self.usage = Some(u);
        }
        if let Some(cost) = chunk.pointer("/usage/cost").and_then(Value::as_f64) {
            self.cost = Some(cost).filter(|c| c.is_finite() && *c >= 0.0);
        }
        let mut content = false;
        if let Some(choice) = first {
            let delta = choice.get("delta").or_else(|| choice.get("message"));
            // Reasoning streamed apart from the text: alive, but not the reply.
            for key in ["reasoning", "reasoning_content"] {
                if delta
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.is_empty())
                {
                    content = true;
                }
            }
            if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str)
                && !text.is_empty()
            {
                self.text.push_str(text);
                content = true;
            }
            if let Some(text) = delta.and_then(|d| d.get("refusal")).and_then(Value::as_str)
                && !text.is_empty()
            {
                self.refusal.push_str(text);
                content = true;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(finish(reason));
            }
        }
        if content {
            self.chunks += 1;
        }
        Ok(content)
    }

    fn finish(self) -> Sent {
        if !self.done && self.finish.is_none() {
            return Err(Failure::transient(
                "the stream ended before its end (no finish_reason and no [DONE]); the reply is incomplete",
            )
            .with_partial(&self.text)
            .with_request_id(self.id));
        }
        let mut finish = self.finish.unwrap_or(Finish::Unknown);
        let mut text = self.text;
        if !self.refusal.is_empty() {
            finish = Finish::Refusal;
            if text.is_empty() {
                text = self.refusal;
            }
        }
        Ok(Reply {
            text,
            finish,
            usage: self.usage,
            request_id: self.id,
            cost_usd: self.cost,
            agent_errors: Vec::new(),
        })
    }
}

fn finish(reason: &str) -> Finish {
    match reason {
        "stop" | "eos" | "end_turn" | "stop_sequence" | "tool_calls" | "function_call" => {
            Finish::Stop
        }
        "length" | "max_tokens" => Finish::Length,
        "content_filter" => Finish::ContentFilter,
        "refusal" => Finish::Refusal,
        other => Finish::Other(other.to_string()),
    }
}

/// `usage` of a chunk or body: `prompt_tokens` includes the cached part
/// (`prompt_tokens_details.cached_tokens`).
fn usage(v: &Value) -> Option<Usage> {
    super::call::openai_usage(
        v,
        &UsageKeys {
            input: "prompt_tokens",
            output: "completion_tokens",
            input_details: "prompt_tokens_details",
            output_details: "completion_tokens_details",
        },
    )
}

/// A whole JSON reply (`stream: false`, or a server that ignored `stream: true`).
fn parse_json_reply(bytes: &[u8], request_id: Option<String>) -> Sent {
    let v = super::call::body_json(bytes, request_id.as_deref())?;
    let mut state = StreamState::new(request_id);
    state.apply(&v)?;
    if state.finish.is_none() {
        state.finish = Some(Finish::Unknown);
    }
    if v.get("choices")
        .and_then(Value::as_array)
        .is_none_or(|c| c.is_empty())
    {
        return Err(Failure::transient("the reply has no choices").with_request_id(state.id));
    }
    state.done = true;
    state.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[Value]) -> Sent {
        let mut s = StreamState::new(None);
        for c in chunks {
            s.apply(c)?;
        }
        s.done = true;
        s.finish()
    }

    #[test]
    fn deltas_usage_and_finish() {
        let r = run(&[
            json!({"id": "c1", "choices": [{"delta": {"role": "assistant"}}]}),
            json!({"choices": [{"delta": {"content": "Hel"}}]}),
            json!({"choices": [{"delta": {"content": "lo"}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "length"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
        ])
        .expect("reply");
        assert_eq!(r.text, "Hello");
        assert_eq!(r.finish, Finish::Length);
        let u = r.usage.expect("usage");
        assert_eq!((u.input, u.output, u.malformed), (9, 2, None));
        assert_eq!(r.request_id.as_deref(), Some("c1"));
    }

    #[test]
    fn null_choices_and_no_usage() {
        let r = run(&[
            json!({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]}),
            json!({"choices": null, "usage": null}),
        ])
        .expect("reply");
        assert_eq!(r.usage, None);
        assert_eq!(r.finish, Finish::Stop);
    }

    #[test]
    fn refusal_and_content_filter() {
        let r = run(&[
            json!({"choices": [{"delta": {"refusal": "I can't"}, "finish_reason": "stop"}]}),
        ])
        .expect("reply");
        assert_eq!((r.finish, r.text.as_str()), (Finish::Refusal, "I can't"));
        let r = run(&[
            json!({"choices": [{"delta": {"content": "a"}, "finish_reason": "content_filter"}]}),
        ])
        .expect("reply");
        assert_eq!(r.finish, Finish::ContentFilter);
    }

    #[test]
    fn an_error_object_in_the_stream_fails() {
        let f = run(&[json!({"error": {"message": "overloaded", "type": "server_error"}})])
            .expect_err("error");
        assert!(f.message.contains("overloaded"), "{}", f.message);
    }

    #[test]
    fn a_stream_without_end_or_finish_is_cut_short() {
        let mut s = StreamState::new(None);
        s.apply(&json!({"choices": [{"delta": {"content": "part"}}]}))
            .expect("chunk");
        let f = s.finish().expect_err("incomplete");
        assert_eq!(f.partial, "part");
        assert_eq!(f.kind, super::super::FailureKind::Transient);
    }

    #[test]
    fn usage_counts_are_read_with_saturation() {
        for (usage, input, malformed) in [
            (
                json!({"prompt_tokens": 5, "completion_tokens": 1}),
                5,
                false,
            ),
            (
                json!({"prompt_tokens": 5.0, "completion_tokens": 1}),
                5,
                false,
            ),
            (
                json!({"prompt_tokens": 1e300, "completion_tokens": 1}),
                u64::MAX,
                false,
            ),
            (
                json!({"prompt_tokens": -5, "completion_tokens": 1}),
                0,
                true,
            ),
            (
                json!({"prompt_tokens": 5.5, "completion_tokens": 1}),
                0,
                true,
            ),
            (
                json!({"prompt_tokens": "5", "completion_tokens": 1}),
                0,
                true,
            ),
            (
                json!({"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}}),
                9,
                false,
            ),
        ] {
            let u = super::usage(&json!({ "usage": usage })).expect("usage");
            assert_eq!(u.input, input, "{usage}");
            assert_eq!(u.malformed.is_some(), malformed, "{usage}");
        }
    }

    #[test]
    fn json_replies() {
        let body = br#"{"id":"r","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let r = parse_json_reply(body, None).expect("reply");
        assert_eq!(r.text, "hi");
        let u = r.usage.expect("usage");
        assert_eq!((u.input, u.output), (3, 1));
        assert!(parse_json_reply(b"{not json", None).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// An SSE body for `parts`, with comments, CRLF or LF line ends.
        fn body(parts: &[String], crlf: bool) -> Vec<u8> {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut out = format!(": keep-alive{nl}{nl}");
            for p in parts {
                let chunk = json!({"choices": [{"delta": {"content": p}}]});
                out.push_str(&format!("data: {chunk}{nl}{nl}: ping{nl}{nl}"));
            }
            let end = json!({"choices": [{"delta": {}, "finish_reason": "stop"}]});
            out.push_str(&format!("data: {end}{nl}{nl}"));
            out.push_str(&format!(
                "data: {}{nl}{nl}",
                json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
            ));
            out.push_str(&format!("data: [DONE]{nl}{nl}"));
            out.into_bytes()
        }

        proptest! {
            #[test]
            fn any_split_of_the_bytes_gives_the_same_reply(
                parts in proptest::collection::vec("\\PC{0,8}", 0..8),
                crlf in any::<bool>(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            ) {
                let bytes = body(&parts, crlf);
                let whole = replay_sse(vec![bytes.clone()]).expect("whole body");
                prop_assert_eq!(&whole.text, &parts.concat());
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
                points.sort_unstable();
                points.dedup();
                let mut reads = Vec::new();
                let mut last = 0;
                for p in points {
                    reads.push(bytes[last..p].to_vec());
                    last = p;
                }
                reads.push(bytes[last..].to_vec());
                let split = replay_sse(reads).expect("split body");
                prop_assert_eq!(split, whole);
            }

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
