//! What the steps of an attempt hand each other: a request ready to send, what became of
//! an attempt, and how a prompt ended (for the session).

use std::time::Duration;

use crate::error::Error;
use crate::request::Request;

impl Attempted {
    /// Another attempt at once (a content failure, an `until` loop's next iteration).
    pub(crate) fn again(reason: String, tokens: (u64, u64, bool)) -> Attempted {
        Attempted::Retry {
            reason,
            backoff: false,
            asked: None,
            tokens,
            limit: None,
        }
    }
}

/// How a prompt ended.
pub(crate) enum Step {
    Completed,
    /// Its attempts are used up, or it failed permanently; `stop`: the run cannot go on
    /// whatever `on_failure` says (its request cannot even be built).
    Failed {
        reason: String,
        stop: Option<Error>,
    },
}

/// A request ready to send.
pub(crate) struct Prepared {
    pub(crate) request: Request,
    /// The tokenizer's count of its input.
    pub(crate) counted: u64,
    /// The input the budgets reserve (the endpoint's count, or a scaled count).
    pub(crate) reserved: u64,
    /// The output cap the budgets allow (set as the attempt starts).
    pub(crate) max_tokens: u32,
    /// US dollars held for it while it is in flight.
    pub(crate) usd: f64,
    /// Which provider answers it (0 the primary, then `[[llm.fallback]]`).
    pub(crate) by: usize,
    /// Its own checks that passed on the workspace before the agent ran (first attempts of
    /// agent builds).
    pub(crate) passing_before: Vec<String>,
}

/// What the last attempt said about the next one.
pub(crate) struct Retrying {
    pub(crate) attempt: u32,
    pub(crate) reason: String,
    /// After backoff (a transient failure) or at once (a content failure).
    pub(crate) backoff: bool,
    pub(crate) asked: Option<Duration>,
    pub(crate) tokens: (u64, u64, bool),
    /// A rate or usage limit of the provider that answered (0 the primary, then the
    /// fallbacks).
    pub(crate) limit: Option<usize>,
}

/// What became of one attempt.
pub(crate) enum Attempted {
    Completed,
    /// Worth another attempt: at once after a content failure (its note says why), after
    /// backoff and at least what the server `asked` after a transient one.
    Retry {
        reason: String,
        backoff: bool,
        asked: Option<Duration>,
        /// What the attempt was counted as: input, output, estimated.
        tokens: (u64, u64, bool),
        /// A rate or usage limit of the provider that answered (0 the primary, then the
        /// fallbacks): a wait past `retry.max_delay` goes to a fallback, or pauses the run.
        limit: Option<usize>,
    },
    /// The prompt fails now (a permanent failure).
    Fail(String),
    /// Nothing could be sent: the prompt fails, and the run stops.
    Blocked {
        reason: String,
        stop: Error,
    },
}
