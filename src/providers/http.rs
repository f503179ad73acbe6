//! What the HTTP providers share: one `reqwest::Client` per process (rustls with ring,
//! HTTP/1.1 and HTTP/2, no retries of its own), the three clocks, status classification,
//! `Retry-After`, and a byte limit on replies.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::call::{Failure, FailureKind, redact};
use super::limits::{Throttle, retry_after, spent};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::text::duration as show_duration;

/// A reply (or a stream of events) larger than this is refused: memory stays bounded
/// whatever a server sends.
pub(crate) const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The process's one client. Built on first use; `connect_timeout` is the first caller's.
fn client(connect_timeout: Duration) -> Result<reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    // reqwest is built without a crypto provider (ring builds faster than aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let built = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .retry(reqwest::retry::never())
        .user_agent(concat!("orchestrator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal("cannot set up the HTTP client", e))?;
    Ok(CLIENT.get_or_init(|| built).clone())
}

/// An HTTP endpoint's settings and key.
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// Checked by `config::values::check_url`: http(s), a host, no credentials.
    pub(crate) base_url: reqwest::Url,
    pub(crate) timeout: Duration,
    pub(crate) idle_timeout: Duration,
    key_env: String,
    key: Option<String>,
    /// `llm.api_key_header`: the header the key goes in as it is.
    key_header: Option<String>,
    /// `llm.query`: added to every URL.
    query: Vec<(String, String)>,
    /// What the last answer's `x-ratelimit-*` headers ask the next request to wait.
    throttle: Throttle,
    /// `retry.max_delay`: a longer rate-limit wait is not waited for (the 429 decides).
    max_wait: Duration,
}

impl Http {
    pub(crate) fn new(config: &Config, key_env: String) -> Result<Http> {
        let key = std::env::var(&key_env)
            .ok()
            .filter(|k| !k.trim().is_empty());
        Ok(Http {
            client: client(config.llm.connect_timeout)?,
            base_url: config.llm.base_url().map_err(Error::Usage)?,
            timeout: config.llm.timeout,
            idle_timeout: config.llm.idle_timeout,
            key_env,
            key,
            key_header: config.llm.api_key_header.clone(),
            query: config
                .llm
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            throttle: Throttle::default(),
            max_wait: config.retry.max_delay,
        })
    }

    /// The key on `builder`: in `llm.api_key_header` as it is when set, else in the
    /// provider's `default` header, else as `Authorization: Bearer`.
    pub(crate) fn authorize(
        &self,
        builder: reqwest::RequestBuilder,
        default: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let Some(key) = self.key() else {
            return builder;
        };
        match self.key_header.as_deref().or(default) {
            Some(h) if !h.eq_ignore_ascii_case("authorization") => builder.header(h, key),
            _ => builder.bearer_auth(key),
        }
    }

    /// Waits, before a request, for an allowance the last answer said was spent (up to
    /// `retry.max_delay`; past that the request goes, and a 429 decides).
    pub(crate) async fn pace(&self, progress: super::call::OnUpdate<'_>) {
        if let Some((wait, why)) = self.throttle.pending()
            && wait <= self.max_wait
        {
            progress(super::call::Update::Waiting(format!(
                "waiting {}: {why}",
                show_duration(wait)
            )));
            tokio::time::sleep(wait).await;
        }
    }

    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The URL of `path` under the base URL (with `strip` taken off the base's path first,
    /// e.g. Anthropic's `/v1`); a query string in the base URL stays where it belongs.
    pub(crate) fn endpoint(&self, strip: &str, path: &str) -> String {
        let mut url = self.base_url.clone();
        let base = url.path().trim_end_matches('/');
        let base = if strip.is_empty() {
            base
        } else {
            base.strip_suffix(strip).unwrap_or(base)
        };
        let joined = format!("{base}/{}", path.trim_start_matches('/'));
        url.set_path(&joined);
        let present: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        for (k, v) in &self.query {
            if !present.contains(k) {
                url.query_pairs_mut().append_pair(k, v);
            }
        }
        url.to_string()
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        redact(text, self.key())
    }

    /// Sends `body` to `url` and waits for the response headers, within the attempt's
    /// deadline (and, for a stream, the idle clock). A non-2xx status is classified.
    pub(crate) async fn post(
        &self,
        url: &str,
        builder: reqwest::RequestBuilder,
        deadline: Instant,
        streaming: bool,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let wait_until = if streaming {
            deadline.min(Instant::now() + self.idle_timeout)
        } else {
            deadline
        };
        let response = match tokio::time::timeout_at(wait_until, builder.send()).await {
            Err(_) => {
                let clock = if wait_until < deadline {
                    "llm.idle_timeout"
                } else {
                    "llm.timeout"
                };
                return Err(Failure::transient(format!(
                    "no response from {url} within {} ({clock})",
                    show_duration(wait_until - (deadline - self.timeout))
                )));
            }
            Ok(Err(e)) => return Err(self.transport_failure(url, &e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        self.throttle.observe(response.headers());
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let request_id = request_id(&headers);
        let body = read_capped(response.bytes_stream(), deadline, 64 * 1024)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        Err(self
            .status_failure(status.as_u16(), &headers, &body)
            .with_request_id(request_id))
    }

    fn transport_failure(&self, url: &str, e: &reqwest::Error) -> Failure {
        let what = if e.is_connect() {
            "cannot connect to"
        } else if e.is_timeout() {
            "timed out talking to"
        } else {
            "connection failed to"
        };
        let f = Failure::transient(self.redact(&format!("{what} {url}: {}", error_chain(e))));
        if e.is_connect() { f.not_billed() } else { f }
    }

    /// Classifies an HTTP error status (docs, "Recovery rules").
    pub(crate) fn status_failure(&self, status: u16, headers: &HeaderMap, body: &str) -> Failure {
        let message = provider_message(body);
        let (kind, hint) = classify(Some(status), &message, &self.key_env);
        let mut failure = Failure::new(
            kind,
            self.redact(&format!("HTTP {status}: {message}{hint}")),
        );
        failure.status = Some(status);
        failure.retry_after = retry_after(headers);
        failure.limit = status == 429 && kind == FailureKind::Transient;
        if failure.limit && failure.retry_after.is_none() {
            // No Retry-After: the spent allowance's reset (`x-ratelimit-reset-*`).
            let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            failure.retry_after = spent(text).map(|(wait, _)| wait);
        }
        failure.not_billed()
    }

    /// The body as a stream of bytes, cut with an error past [`MAX_REPLY_BYTES`].
    pub(crate) fn body_stream(
        response: reqwest::Response,
    ) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Unpin {
        let mut total = 0usize;
        response.bytes_stream().map(move |chunk| match chunk {
            Ok(bytes) => {
                total += bytes.len();
                if total > MAX_REPLY_BYTES {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::FileTooLarge,
                        format!(
                            "the reply is larger than {} MiB",
                            MAX_REPLY_BYTES / (1024 * 1024)
                        ),
                    ))
                } else {
                    Ok(bytes)
                }
            }
            Err(e) => Err(std::io::Error::other(error_chain(&e))),
        })
    }

    /// A whole (non-streamed) body, within the deadline and the byte limit.
    pub(crate) async fn read_body(
        &self,
        response: reqwest::Response,
        deadline: Instant,
    ) -> std::result::Result<Vec<u8>, Failure> {
        let id = request_id(response.headers());
        read_capped(response.bytes_stream(), deadline, MAX_REPLY_BYTES)
            .await
            .map_err(|f| f.with_request_id(id))
    }

    /// The failure for a stream error (the SSE parser wraps the body's errors).
    pub(crate) fn stream_failure(&self, e: &sse_stream::Error, partial: &str) -> Failure {
        if let sse_stream::Error::Body(inner) = e
            && let Some(io) = inner
                .source()
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .or_else(|| inner.downcast_ref::<std::io::Error>())
            && io.kind() == std::io::ErrorKind::FileTooLarge
        {
            return Failure::permanent(format!("{io}; the server is misbehaving"))
                .with_partial(partial);
        }
        match e {
            sse_stream::Error::Body(inner) => {
                Failure::transient(self.redact(&format!("the stream broke: {inner}")))
            }
            other => Failure::transient(format!("the event stream is malformed: {other}")),
        }
        .with_partial(partial)
    }
}

/// An error inside a 200 answer (an event of a stream, or the body: OpenRouter, LM
/// Studio, LiteLLM send them so), classified by its code as its status would be
/// (OpenRouter's `code` is an HTTP status), else by its words; unknown ones are
/// transient.
pub(crate) fn body_failure(error: &serde_json::Value, partial: &str) -> Failure {
    let body = serde_json::json!({ "error": error }).to_string();
    let message = provider_message(&body);
    let status = error
        .get("code")
        .and_then(super::call::tokens)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let (kind, hint) = classify(status, &message, "llm.api_key_env");
    Failure::new(
        kind,
        format!("the server answered 200 with an error: {message}{hint}"),
    )
    .with_partial(partial)
}

/// What a failure with this status (or none: an error inside a 200) and message is,
/// and what to tell the user.
fn classify(status: Option<u16>, message: &str, key_env: &str) -> (FailureKind, String) {
    let lower = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let quota = matches!(status, None | Some(402 | 403 | 429))
        && has(&[
            "insufficient_quota",
            "quota",
            "credit balance",
            "insufficient credits",
            "more credits",
            "billing",
            "exceeded your current",
        ]);
    let context = has(&[
        "context_length_exceeded",
        "maximum context length",
        "prompt is too long",
        "too many tokens",
    ]);
    let kind = if quota {
        FailureKind::Quota
    } else if context {
        FailureKind::Permanent
    } else {
        match status {
            Some(408 | 409 | 429 | 500..=599) => FailureKind::Transient,
            Some(_) => FailureKind::Permanent,
            None if has(&[
                "invalid_request",
                "invalid_prompt",
                "unsupported",
                "content_filter",
                "authentication",
                "permission",
                "not_found",
                "unexpected endpoint",
            ]) =>
            {
                FailureKind::Permanent
            }
            None => FailureKind::Transient,
        }
    };
    let hint = match (status, kind) {
        (_, FailureKind::Quota) => {
            " — the account's quota or credit is exhausted; add credit or change the key"
                .to_string()
        }
        (Some(401), _) => format!(" — check the API key in the environment variable {key_env}"),
        (Some(403), _) => {
            format!(" — the key in {key_env} is not allowed to use this model or endpoint")
        }
        _ if lower.contains("only supported in v1/responses") => {
            " — this model speaks only the Responses API: set llm.provider = \"openai-responses\""
                .to_string()
        }
        _ if lower.contains("processing stream")
            || lower.contains("streaming is not supported") =>
        {
            " — the server could not stream this request; with llm.stream = false it may answer"
                .to_string()
        }
        _ if lower.contains("unexpected endpoint") => {
            " — the server does not know this path: check llm.base_url".to_string()
        }
        (Some(404), _) => " — check llm.base_url and llm.model".to_string(),
        _ if context => " — the request is too long for the model's context".to_string(),
        _ => String::new(),
    };
    (kind, hint)
}

async fn read_capped(
    mut stream: impl Stream<Item = reqwest::Result<Bytes>> + Unpin,
    deadline: Instant,
    limit: usize,
) -> std::result::Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Failure::transient(
                    "the reply did not finish within llm.timeout",
                ));
            }
            Ok(None) => return Ok(body),
            Ok(Some(Err(e))) => {
                return Err(Failure::transient(format!(
                    "the reply broke off: {}",
                    error_chain(&e)
                )));
            }
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::permanent(format!(
                        "the reply is larger than {} MiB; the server is misbehaving",
                        limit / (1024 * 1024)
                    )));
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-request-id", "request-id", "openai-request-id", "cf-ray"]
        .iter()
        .find_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
}

/// The provider's own words from an error body: `error.message`, `message`, or the text.
pub(crate) fn provider_message(body: &str) -> String {
    // An error sent as an event (`data: {"error": …}`) with an error status (LiteLLM).
    let json_text = body
        .trim_start()
        .strip_prefix("data:")
        .map_or(body, |rest| rest.lines().next().unwrap_or_default());
    let parsed: Option<serde_json::Value> = serde_json::from_str(json_text.trim()).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        let err = v.get("error").unwrap_or(v);
        let msg = err
            .get("message")
            .and_then(|m| m.as_str())
            .or_else(|| err.as_str());
        let code = err
            .get("code")
            .and_then(|c| c.as_str())
            .or_else(|| err.get("type").and_then(|t| t.as_str()));
        match (msg, code) {
            (Some(m), Some(c)) => Some(format!("{m} ({c})")),
            (Some(m), None) => Some(m.to_string()),
            (None, Some(c)) => Some(c.to_string()),
            (None, None) => None,
        }
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    let text = if text.is_empty() {
        "(no message)".to_string()
    } else {
        text
    };
    truncate(&text, 500)
}

use crate::text::truncate;

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Whether a response is an event stream (a streamed request may get one JSON body).
pub(crate) fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// A response body as SSE events (bounded by [`MAX_REPLY_BYTES`]).
pub(crate) fn events(
    response: reqwest::Response,
) -> impl Stream<Item = std::result::Result<sse_stream::Sse, sse_stream::Error>> + Unpin {
    sse_stream::SseStream::from_bytes_stream(Http::body_stream(response))
}

/// A response to read: one whole body, or a stream of events (by content type: a streamed
/// request may be answered with one JSON body).
pub(crate) enum Body<S> {
    Whole {
        bytes: Vec<u8>,
        request_id: Option<String>,
    },
    Events {
        events: S,
        request_id: Option<String>,
    },
}

impl Http {
    /// Sends, and sorts the response into a [`Body`], within the attempt's `deadline` (a
    /// stream also within `llm.idle_timeout` until its headers come). A non-2xx status is a
    /// classified failure.
    pub(crate) async fn exchange(
        &self,
        url: &str,
        builder: reqwest::RequestBuilder,
        streaming: bool,
        deadline: Instant,
    ) -> std::result::Result<
        Body<impl Stream<Item = std::result::Result<sse_stream::Sse, sse_stream::Error>> + Unpin>,
        Failure,
    > {
        let response = self.post(url, builder, deadline, streaming).await?;
        let request_id = request_id(response.headers());
        if !is_event_stream(&response) {
            let bytes = self.read_body(response, deadline).await?;
            return Ok(Body::Whole { bytes, request_id });
        }
        Ok(Body::Events {
            events: events(response),
            request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages() {
        assert_eq!(
            provider_message(
                r#"{"error": {"message": "Rate limit", "type": "requests", "code": "rate_limit_exceeded"}}"#
            ),
            "Rate limit (rate_limit_exceeded)"
        );
        assert_eq!(
            provider_message(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded (overloaded_error)"
        );
        assert_eq!(provider_message("plain text"), "plain text");
        assert_eq!(
            provider_message(
                "data: {\"error\": {\"message\": \"Error processing stream start\", \"code\": \"500\"}}\n\ndata: [DONE]\n\n"
            ),
            "Error processing stream start (500)"
        );
        assert_eq!(provider_message(""), "(no message)");
    }
}
