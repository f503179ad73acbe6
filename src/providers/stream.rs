//! One decoder loop for every provider's event stream (OpenAI's chat completions,
//! Anthropic's messages): the attempt's three clocks, the events read one by one within
//! them, each handed to the provider's [`Decoder`], the idle clock reset only by content
//! (keep-alive comments and `ping` events do not reset it), and the reply when the stream
//! says it is over. A provider writes only what its events mean.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::call::{Failure, OnUpdate, Sent, Update};
use super::http::{Body, Http};
use crate::text::duration as show_duration;

/// What a provider's stream means, event by event.
pub(super) trait Decoder {
    /// Takes one event: its SSE name, if any, and its data. `Ok(true)` when it carried
    /// content (only content resets the idle clock).
    fn event(&mut self, name: Option<&str>, data: &str) -> Result<bool, Failure>;
    /// The stream said it is over (`[DONE]`, `message_stop`).
    fn ended(&self) -> bool;
    /// The text so far (what a failure may have cost) and the request id.
    fn partial(&self) -> (&str, Option<&str>);
    /// Content chunks so far (about one token each), for the progress display.
    fn chunks(&self) -> u64;
    /// The reply, or why the stream was not a whole one.
    fn finish(self) -> Sent;
}

/// An SSE body's events, as the parser gives them.
pub(super) type Events<'a> =
    dyn Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Unpin + 'a;

/// Reads `events` into `decoder` within `clocks`.
pub(super) async fn decode<D: Decoder>(
    http: &Http,
    events: &mut Events<'_>,
    mut clocks: Clocks,
    mut decoder: D,
    progress: OnUpdate<'_>,
) -> Sent {
    loop {
        let event = match tokio::time::timeout_at(clocks.next_deadline(), events.next()).await {
            Err(_) => {
                let (partial, id) = decoder.partial();
                return Err(clocks
                    .expired(http.timeout, partial)
                    .with_request_id(id.map(str::to_string)));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let (partial, id) = decoder.partial();
                return Err(http
                    .stream_failure(&e, partial)
                    .with_request_id(id.map(str::to_string)));
            }
            Ok(Some(Ok(event))) => event,
        };
        let Some(data) = event.data else { continue };
        match decoder.event(event.event.as_deref(), &data) {
            Err(mut f) => {
                f.message = http.redact(&f.message);
                return Err(f);
            }
            Ok(true) => {
                clocks.content();
                progress(Update::Streamed(decoder.chunks()));
            }
            Ok(false) => {}
        }
        if decoder.ended() {
            break;
        }
    }
    decoder.finish()
}

/// One exchange of an HTTP provider: `builder` (the request, its key on it) sent to `url`,
/// and the answer read within the attempt's clocks: a whole JSON body by `whole`, an event
/// stream by the decoder `decoder` makes (given the response's request id). A model that
/// `thinks` first gets the idle clock only from its first content. Failures are redacted.
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<D: Decoder>(
    http: &Http,
    url: &str,
    builder: reqwest::RequestBuilder,
    streaming: bool,
    thinks: bool,
    whole: fn(&[u8], Option<String>) -> Sent,
    decoder: impl FnOnce(Option<String>) -> D,
    progress: OnUpdate<'_>,
) -> Sent {
    let mut clocks = Clocks::start(http.timeout, http.idle_timeout);
    if thinks {
        clocks.idle_deadline = clocks.deadline;
    }
    match http
        .exchange(url, builder, streaming, clocks.deadline)
        .await?
    {
        Body::Whole { bytes, request_id } => whole(&bytes, request_id).map_err(|mut f| {
            f.message = http.redact(&f.message);
            f
        }),
        Body::Events {
            mut events,
            request_id,
        } => decode(http, &mut events, clocks, decoder(request_id), progress).await,
    }
}

/// What [`decode`] does with a body given as the reads it arrived in, without a network or
/// clocks: for property tests and fuzzing.
pub(super) fn replay<D: Decoder>(reads: Vec<Vec<u8>>, mut decoder: D) -> Sent {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Failure::permanent(e.to_string()))?;
    runtime.block_on(async {
        let body = futures_util::stream::iter(
            reads
                .into_iter()
                .map(|r| Ok::<_, std::io::Error>(bytes::Bytes::from(r))),
        );
        let mut events = sse_stream::SseStream::from_bytes_stream(body);
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| Failure::transient(format!("malformed: {e}")))?;
            let Some(data) = event.data else { continue };
            decoder.event(event.event.as_deref(), &data)?;
            if decoder.ended() {
                break;
            }
        }
        decoder.finish()
    })
}

/// The attempt's three clocks, for the stream loops.
pub(crate) struct Clocks {
    pub(crate) deadline: Instant,
    pub(crate) idle: Duration,
    pub(crate) idle_deadline: Instant,
}

impl Clocks {
    pub(crate) fn start(timeout: Duration, idle: Duration) -> Clocks {
        let now = Instant::now();
        Clocks {
            deadline: now + timeout,
            idle,
            idle_deadline: now + idle,
        }
    }

    /// Content arrived: the idle clock starts again.
    pub(crate) fn content(&mut self) {
        self.idle_deadline = Instant::now() + self.idle;
    }

    pub(crate) fn next_deadline(&self) -> Instant {
        self.deadline.min(self.idle_deadline)
    }

    /// The failure when a clock ran out.
    pub(crate) fn expired(&self, timeout: Duration, partial: &str) -> Failure {
        if Instant::now() >= self.deadline {
            Failure::transient(format!(
                "the attempt took longer than llm.timeout ({})",
                show_duration(timeout)
            ))
        } else {
            Failure::transient(format!(
                "no content for {} (llm.idle_timeout); the stream stalled",
                show_duration(self.idle)
            ))
        }
        .with_partial(partial)
    }
}
