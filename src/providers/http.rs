//! What the HTTP providers share: one `reqwest::Client` per process (rustls with ring,
//! HTTP/1.1 and HTTP/2, no retries of its own), the three clocks, status classification,
//! `Retry-After`, and a byte limit on replies.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::{Failure, FailureKind, redact};
use crate::config::{Config, show_duration};
use crate::error::{Error, Result};

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
        .map_err(|e| Error::Usage(format!("cannot set up the HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| built).clone())
}

/// An HTTP endpoint's settings and key.
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// Checked by [`crate::config::check_url`]: http(s), a host, no credentials.
    pub(crate) base_url: reqwest::Url,
    pub(crate) timeout: Duration,
    pub(crate) idle_timeout: Duration,
    key_env: String,
    key: Option<String>,
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
        })
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

    /// Classifies an HTTP error status (README, "Recovery rules").
    pub(crate) fn status_failure(&self, status: u16, headers: &HeaderMap, body: &str) -> Failure {
        let message = provider_message(body);
        let lower = message.to_ascii_lowercase();
        let quota = (status == 429 || status == 402 || status == 403)
            && [
                "insufficient_quota",
                "quota",
                "credit balance",
                "billing",
                "exceeded your current",
            ]
            .iter()
            .any(|w| lower.contains(w));
        let context = [
            "context_length_exceeded",
            "maximum context length",
            "prompt is too long",
            "too many tokens",
        ]
        .iter()
        .any(|w| lower.contains(w));
        let kind = if quota {
            FailureKind::Quota
        } else if context {
            FailureKind::Permanent
        } else {
            match status {
                408 | 409 | 429 | 500..=599 => FailureKind::Transient,
                _ => FailureKind::Permanent,
            }
        };
        let hint = match (status, kind) {
            (_, FailureKind::Quota) => {
                " — the account's quota or credit is exhausted; add credit or change the key"
                    .to_string()
            }
            (401, _) => format!(
                " — check the API key in the environment variable {}",
                self.key_env
            ),
            (403, _) => format!(
                " — the key in {} is not allowed to use this model or endpoint",
                self.key_env
            ),
            (404, _) => " — check llm.base_url and llm.model".to_string(),
            (413, _) | (_, FailureKind::Permanent) if context => {
                " — the request is too long for the model's context".to_string()
            }
            _ => String::new(),
        };
        let mut failure = Failure::new(
            kind,
            self.redact(&format!("HTTP {status}: {message}{hint}")),
        );
        failure.status = Some(status);
        failure.retry_after = retry_after(headers);
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

/// `retry-after-ms` (milliseconds), else `Retry-After` (seconds or an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    parse_retry_after(
        text("retry-after-ms"),
        text("retry-after"),
        std::time::SystemTime::now(),
    )
}

/// What a server asks to wait, from the values of `retry-after-ms` and `Retry-After`.
/// Numbers are read with saturation: `1e20` seconds is [`Duration::MAX`], which is longer
/// than any `retry.max_delay` (the prompt then fails); a negative or unreadable value is
/// no request to wait.
pub(crate) fn parse_retry_after(
    ms: Option<&str>,
    secs: Option<&str>,
    now: std::time::SystemTime,
) -> Option<Duration> {
    if let Some(ms) = ms
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| !ms.is_nan() && *ms >= 0.0)
    {
        return Some(saturating_secs(ms / 1000.0));
    }
    let value = secs?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (!secs.is_nan() && secs >= 0.0).then(|| saturating_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

fn saturating_secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
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
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
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

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}…", &text[..text.floor_char_boundary(max)])
}

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
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn huge_and_odd_waits_saturate() {
        let now = std::time::SystemTime::now();
        for (ms, secs, want) in [
            (None, Some("1e20"), Some(Duration::MAX)),
            (None, Some("18446744073709551615"), Some(Duration::MAX)),
            (Some("1e300"), None, Some(Duration::MAX)),
            (None, Some("inf"), Some(Duration::MAX)),
            (None, Some("-1"), None),
            (None, Some("NaN"), None),
            (Some("-5"), Some("3"), Some(Duration::from_secs(3))),
            (Some("250"), Some("3"), Some(Duration::from_millis(250))),
            (None, Some(" 2.5 "), Some(Duration::from_millis(2500))),
        ] {
            assert_eq!(parse_retry_after(ms, secs, now), want, "{ms:?} {secs:?}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_header_values_give_a_wait_or_none_without_panic(
                ms in proptest::option::of("\\PC{0,40}"),
                secs in proptest::option::of("(\\PC{0,40}|[0-9eE+.-]{0,30})"),
                offset in any::<u32>(),
            ) {
                let now = std::time::UNIX_EPOCH + Duration::from_secs(u64::from(offset));
                let _ = parse_retry_after(ms.as_deref(), secs.as_deref(), now);
            }

            #[test]
            fn numeric_seconds_are_never_shorter_than_asked(secs in 0f64..1e30) {
                let got = parse_retry_after(None, Some(&secs.to_string()), std::time::UNIX_EPOCH)
                    .expect("a number is a wait");
                prop_assert!(got == Duration::MAX || got.as_secs_f64() >= secs * (1.0 - 1e-12));
            }
        }
    }

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
        assert_eq!(provider_message(""), "(no message)");
    }
}
