//! A call to an endpoint, as every provider speaks of it: what it needs besides the request
//! ([`Call`]), what it says while under way ([`Update`]), what comes back ([`Reply`] or
//! [`Failure`], with [`Usage`] and [`Finish`]), and the readers of usage and JSON bodies
//! that the providers share.

use std::time::Duration;

use serde_json::Value;

use crate::process::ProcessGroup;

/// Why a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// A natural end (`stop`, `end_turn`, `stop_sequence`).
    Stop,
    /// Cut at the token limit (`length`, `max_tokens`).
    Length,
    /// Stopped by the provider's content filter.
    ContentFilter,
    /// The model refused (OpenAI's `refusal`, Anthropic's `stop_reason: refusal`).
    Refusal,
    /// Something else the provider said.
    Other(String),
    /// The provider did not say.
    Unknown,
}

impl Finish {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ContentFilter => "content_filter",
            Finish::Refusal => "refusal",
            Finish::Other(s) => s,
            Finish::Unknown => "unknown",
        }
    }
}

/// Token usage as the provider reported it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Usage {
    /// All input tokens, cache reads and writes included.
    pub(crate) input: u64,
    pub(crate) output: u64,
    /// Of `input`: read from the provider's prompt cache.
    pub(crate) cache_read: u64,
    /// Of `input`: written to the prompt cache.
    pub(crate) cache_write: u64,
    /// Of `output`: spent on reasoning (billed as output, never seen).
    pub(crate) reasoning: u64,
    /// A count that was not a whole number of tokens (negative, fractional, not a
    /// number), named: such a report cannot be trusted.
    pub(crate) malformed: Option<String>,
    /// The usage as reported, for the journal when it cannot be trusted.
    pub(crate) reported: Option<Value>,
}

/// Reads token counts from a usage object sent by a server or an agent, with saturation:
/// a count that is not a whole number of tokens is recorded as malformed, never trusted,
/// never a panic.
pub(crate) struct UsageReader {
    usage: Usage,
    problems: Vec<String>,
}

impl UsageReader {
    pub(crate) fn new(reported: Option<Value>) -> UsageReader {
        UsageReader {
            usage: Usage {
                reported,
                ..Usage::default()
            },
            problems: Vec::new(),
        }
    }

    /// `obj[key]` as a count (0 if absent); `label` names it in the problem list.
    pub(crate) fn count(&mut self, obj: &Value, key: &str, label: &str) -> u64 {
        match obj.get(key) {
            None | Some(Value::Null) => 0,
            Some(v) => match tokens(v) {
                Some(n) => n,
                None => {
                    self.problems.push(format!("{label} = {v}"));
                    0
                }
            },
        }
    }

    /// Adds one report whose input does not include the cache figures (Anthropic's shape).
    pub(crate) fn add(&mut self, input: u64, output: u64, cache_read: u64, cache_write: u64) {
        self.add_total(
            input.saturating_add(cache_read).saturating_add(cache_write),
            output,
            cache_read,
            cache_write,
        );
    }

    /// Adds one report whose input includes the cache figures (OpenAI's shape).
    pub(crate) fn add_total(&mut self, input: u64, output: u64, cache_read: u64, cache_write: u64) {
        let u = &mut self.usage;
        u.input = u.input.saturating_add(input);
        u.output = u.output.saturating_add(output);
        u.cache_read = u.cache_read.saturating_add(cache_read);
        u.cache_write = u.cache_write.saturating_add(cache_write);
    }

    /// Of the output: `n` tokens of reasoning.
    pub(crate) fn reasoning(&mut self, n: u64) {
        self.usage.reasoning = self.usage.reasoning.saturating_add(n);
    }

    /// Keeps `v` as the report (when none was given at the start).
    pub(crate) fn keep(&mut self, v: &Value) {
        if self.usage.reported.is_none() {
            self.usage.reported = Some(v.clone());
        }
    }

    pub(crate) fn finish(mut self) -> Usage {
        if !self.problems.is_empty() {
            self.usage.malformed = Some(self.problems.join(", "));
        }
        self.usage
    }
}

/// The key names of an OpenAI-shaped usage object: chat completions' (`prompt_tokens`,
/// `completion_tokens`, their `_details`) or the Responses API's (`input_tokens`, …).
pub(crate) struct UsageKeys {
    pub(crate) input: &'static str,
    pub(crate) output: &'static str,
    pub(crate) input_details: &'static str,
    pub(crate) output_details: &'static str,
}

/// `v.usage` read with `keys`: the input includes its cached part, the output its reasoning.
pub(crate) fn openai_usage(v: &Value, keys: &UsageKeys) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    u.get(keys.input)?;
    let mut r = UsageReader::new(Some(u.clone()));
    let input = r.count(u, keys.input, &format!("usage.{}", keys.input));
    let output = r.count(u, keys.output, &format!("usage.{}", keys.output));
    let mut detail = |details: &str, key: &str| {
        u.get(details)
            .map_or(0, |d| r.count(d, key, &format!("usage.{details}.{key}")))
    };
    let cached = detail(keys.input_details, "cached_tokens");
    let reasoning = detail(keys.output_details, "reasoning_tokens");
    r.add_total(input, output, cached, 0);
    r.reasoning(reasoning);
    Some(r.finish())
}

/// A usage object in Anthropic's shape (the Messages API's, and Claude Code's `usage`):
/// input is `input_tokens` plus both cache fields.
pub(crate) fn anthropic_usage(u: &Value) -> Option<Usage> {
    u.get("input_tokens")?;
    let mut r = UsageReader::new(Some(u.clone()));
    let input = r.count(u, "input_tokens", "usage.input_tokens");
    let cache_write = r.count(
        u,
        "cache_creation_input_tokens",
        "usage.cache_creation_input_tokens",
    );
    let cache_read = r.count(
        u,
        "cache_read_input_tokens",
        "usage.cache_read_input_tokens",
    );
    let output = r.count(u, "output_tokens", "usage.output_tokens");
    r.add(input, output, cache_read, cache_write);
    Some(r.finish())
}

/// One stream event's data as JSON, or the transient failure it is.
pub(crate) fn event_json(data: &str, partial: &str, id: Option<&str>) -> Result<Value, Failure> {
    serde_json::from_str(data).map_err(|e| {
        Failure::transient(format!(
            "a stream event is not JSON ({e}): {}",
            crate::text::head(data, 200)
        ))
        .with_partial(partial)
        .with_request_id(id.map(str::to_string))
    })
}

/// A whole reply body as JSON, or the transient failure it is.
pub(crate) fn body_json(bytes: &[u8], request_id: Option<&str>) -> Result<Value, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::transient(format!(
            "the reply is not JSON ({e}): {}",
            crate::text::truncate(&String::from_utf8_lossy(bytes), 200)
        ))
        .with_request_id(request_id.map(str::to_string))
    })
}

/// A count of tokens from outside: a whole number, 0 or more (`100` or `100.0`); `None`
/// for anything else. Saturates at `u64::MAX`.
pub(crate) fn tokens(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // `as` saturates for floats out of range.
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0).then_some(f as u64)
}

/// A reply: the text, why it ended, usage if reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) text: String,
    pub(crate) finish: Finish,
    pub(crate) usage: Option<Usage>,
    pub(crate) request_id: Option<String>,
    /// Cost the provider reported (agent CLIs' `total_cost_usd`).
    pub(crate) cost_usd: Option<f64>,
    /// What the agent itself reported failing on its way (its commands' exit codes, tool
    /// results marked as errors), one line each.
    pub(crate) agent_errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Worth retrying: connection, timeout, 408/409/429/5xx, a stream cut short.
    Transient,
    /// Not worth retrying: 4xx, a context-length error, an agent that cannot start.
    Permanent,
    /// The account's quota or credit is exhausted (a 429 or 402 that says so): permanent.
    Quota,
    /// The agent stopped at a spending limit it was given (Claude Code's
    /// `error_max_budget_usd`): a budget halt.
    Budget,
}

/// A failed attempt, classified.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// What happened and, where useful, what to do. Never contains the API key.
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
    /// What the server asked us to wait (`retry-after-ms`, `Retry-After`), or until an
    /// agent's usage limit resets.
    pub(crate) retry_after: Option<Duration>,
    /// A rate limit (a 429) or an agent's usage limit: a wait for it longer than
    /// `retry.max_delay` pauses the run, up to `retry.max_wait`, rather than failing.
    pub(crate) limit: bool,
    pub(crate) request_id: Option<String>,
    /// Text streamed before the failure, for counting the tokens it cost.
    pub(crate) partial: String,
    /// Whether the request may have reached the model (and been billed): false for a
    /// refused connection or an error status, true once a request was in flight.
    pub(crate) reached_model: bool,
    /// What the failed call reported spending (an agent that failed after working).
    pub(crate) usage: Option<Box<Usage>>,
    pub(crate) cost_usd: Option<f64>,
}

impl Failure {
    pub(crate) fn transient(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Transient, message)
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Permanent, message)
    }

    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
            limit: false,
            request_id: None,
            partial: String::new(),
            reached_model: true,
            usage: None,
            cost_usd: None,
        }
    }

    pub(crate) fn not_billed(mut self) -> Failure {
        self.reached_model = false;
        self
    }

    pub(crate) fn with_partial(mut self, partial: &str) -> Failure {
        self.partial = partial.to_string();
        self
    }

    pub(crate) fn with_request_id(mut self, id: Option<String>) -> Failure {
        if self.request_id.is_none() {
            self.request_id = id;
        }
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

pub(crate) type Sent = std::result::Result<Reply, Failure>;

/// What a call needs besides the request (an agent's): where it works and what it may
/// spend.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Call<'a> {
    /// The agent's working directory (`[workspace].dir`).
    pub(crate) workdir: Option<&'a std::path::Path>,
    /// What remains of the tightest USD limit, for `{{budget_usd_left}}`.
    pub(crate) budget_usd_left: Option<f64>,
    /// The attempt's mark, put in the agent's environment.
    pub(crate) mark: Option<&'a crate::process::Mark>,
    /// The agent session to go on in (`llm.continue_session`), if any.
    pub(crate) agent_session: Option<&'a str>,
}

/// What a provider tells the runner while an attempt is under way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Update {
    /// Content chunks streamed so far (about one token each).
    Streamed(u64),
    /// An agent's process group exists: the runner journals it so that a run resumed after
    /// a crash can kill it if it outlived the runner.
    AgentStarted(ProcessGroup),
    /// The request waits for the endpoint's rate limit (what for, and how long).
    Waiting(String),
}

pub(crate) type OnUpdate<'a> = &'a (dyn Fn(Update) + Send + Sync);

/// What an endpoint said when asked to count a request's input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Count {
    /// Counted by the endpoint's own tokenizer.
    Exact(u64),
    /// The endpoint has no counting route (remembered for the session).
    Unsupported,
    /// The count failed this time (the request is still sent, with a margin).
    Failed(String),
}

/// Removes `secret` from `text` (a server may echo a key back in an error).
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 => text.replace(s, "[redacted]"),
        _ => text.to_string(),
    }
}
