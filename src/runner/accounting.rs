//! What an attempt is counted as (docs, "Running a build"): the usage the endpoint
//! reported where it is given and believable, else the tokenizer's count, marked estimated.
//!
//! A report is not believed when it cannot be true: a count that is not a whole number of
//! tokens, input above any model's context, input far above what was sent, output far
//! above the text that came back. Such a report is kept (for the journal) but counted as
//! the tokenizer's estimate and never used to calibrate later counts, so one absurd number
//! cannot make every later prompt "need" a quadrillion tokens. An agent's report is judged
//! more loosely: its own prompts and tools make its input far larger than ours.

use serde_json::Value;

use crate::config::Pricing;
use crate::documents::AttemptOutcome;
use crate::providers::{Failure, FailureKind, Usage};
use crate::state::AttemptResult;

/// The most one call can cost: a report above it is a server's mistake.
const MAX_CALL_USD: f64 = 100_000.0;

/// No model reads more than this many tokens in one request.
const MAX_CONTEXT: u64 = 10_000_000;
/// An agent's call over many turns may read more, but not this much.
const MAX_AGENT_CALL: u64 = 1_000_000_000;

/// What an attempt is counted as.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Counted {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
    /// Of `output`: reasoning (reported, or the tokenizer's count of inline `<think>`).
    pub(crate) reasoning: u64,
    /// The tokenizer's counts, not the endpoint's.
    pub(crate) estimated: bool,
    /// Why the report was not believed (for a warning), with the report as sent.
    pub(crate) distrusted: Option<(String, Option<Value>)>,
}

/// `usage` as reported, judged against what was sent: `sent` tokens of input by the
/// tokenizer's count, `text` tokens of reply text.
pub(crate) fn count(usage: Option<&Usage>, sent: u64, text: u64, agent: bool) -> Counted {
    let estimate = |distrusted| Counted {
        input: sent,
        output: text,
        cache_read: 0,
        cache_write: 0,
        reasoning: 0,
        estimated: true,
        distrusted,
    };
    let Some(u) = usage else {
        return estimate(None);
    };
    let why = if let Some(m) = &u.malformed {
        Some(format!("counts that are not whole numbers of tokens ({m})"))
    } else if agent {
        (u.input > MAX_AGENT_CALL || u.output > MAX_AGENT_CALL).then(|| {
            format!(
                "{} in / {} out, more than any agent call",
                u.input, u.output
            )
        })
    } else if u.input > MAX_CONTEXT {
        Some(format!(
            "{} input tokens, above any model's context",
            u.input
        ))
    } else if u.input > sent.saturating_mul(8).saturating_add(1000) {
        Some(format!(
            "{} input tokens for a request the tokenizer counts as {sent}",
            u.input
        ))
    } else if u.reasoning > u.output {
        Some(format!(
            "{} reasoning tokens of {} output tokens",
            u.reasoning, u.output
        ))
    } else if u.output - u.reasoning > text.saturating_mul(8).saturating_add(1000) {
        // Reasoning is output that comes back as no text.
        Some(format!(
            "{} output tokens ({} of them reasoning) for a reply the tokenizer counts as {text}",
            u.output, u.reasoning
        ))
    } else {
        None
    };
    match why {
        Some(why) => estimate(Some((why, u.reported.clone()))),
        None => Counted {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read.min(u.input),
            cache_write: u.cache_write.min(u.input),
            reasoning: u.reasoning,
            estimated: false,
            distrusted: None,
        },
    }
}

/// What a user must hear about one reply's counts: an output past the cap sent (the cap
/// did not hold: the endpoint ignores the name it was sent under, and the budget may be
/// spent past it), and no input at all for a request that had some (Ollama on a cached
/// prompt: counted as reported; said once a run, `zero_input_told`).
pub(crate) fn warnings(
    counted: &Counted,
    sent: u64,
    cap: Option<u32>,
    zero_input_told: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if counted.estimated {
        return out;
    }
    if let Some(cap) = cap
        && counted.output > u64::from(cap)
    {
        out.push(format!(
            "the endpoint reported {} output tokens where the cap sent was {cap}: the cap did not hold, and the budget may be spent past it; if the server ignores `max_completion_tokens`, set llm.max_tokens_param = \"max_tokens\"",
            counted.output
        ));
    }
    if counted.input == 0 && sent > 0 && !zero_input_told {
        out.push(format!(
            "the endpoint reported 0 input tokens for a request of {sent} (Ollama does so when the prompt was cached); counted as reported, so the budget counts less than was read"
        ));
    }
    out
}

/// What an attempt cost: the provider's report when it has one that can be true (a number
/// from 0 to [`MAX_CALL_USD`]), else `pricing`'s figure (0 without one); an impossible
/// report is not counted, and said (the warning).
pub(crate) fn cost(
    reported: Option<f64>,
    counted: &Counted,
    pricing: Option<Pricing>,
) -> (f64, Option<String>) {
    let priced = || {
        pricing.map_or(0.0, |p| {
            p.cost(
                counted.input,
                counted.output,
                counted.cache_read,
                counted.cache_write,
            )
        })
    };
    match reported {
        Some(usd) if usd.is_finite() && (0.0..=MAX_CALL_USD).contains(&usd) => (usd, None),
        Some(usd) => (
            priced(),
            Some(format!(
                "the reported cost of the call ({usd:e} USD) cannot be true; [pricing]'s figure is counted instead"
            )),
        ),
        None => (priced(), None),
    }
}

/// Whether an attempt's cost is unknown: it may have been billed (`billed`), reported no
/// cost, and there is no `[pricing]`.
pub(crate) fn unpriced(reported: Option<f64>, pricing: Option<Pricing>, billed: bool) -> bool {
    billed && reported.is_none() && pricing.is_none()
}

/// The journal's record of an attempt dropped by an interrupt after `counted` input
/// tokens were sent and `took` passed.
pub(crate) fn interrupted(
    id: String,
    attempt: u32,
    counted: u64,
    took: std::time::Duration,
    by_agent: bool,
) -> AttemptResult {
    AttemptResult {
        id,
        attempt,
        outcome: AttemptOutcome::Interrupted,
        input_tokens: counted,
        estimated: true,
        error: Some("interrupted: the request was dropped".into()),
        duration_ms: crate::text::millis(took),
        by_agent,
        ..AttemptResult::default()
    }
}

/// The journal's record of attempt `attempt` of prompt `id` that ended in `failure` after
/// `duration_ms`, `sent` input tokens and a partial reply of `streamed`, and a warning
/// when the cost it reported cannot be true. An error status (the request refused) costs
/// nothing: that is exact, not an estimate. A failure after the request was accepted costs
/// its input and what streamed, unless the failed call reported its own usage.
pub(crate) fn failed(
    (id, attempt, duration_ms): (String, u32, u64),
    failure: &Failure,
    (sent, streamed): (u64, u64),
    pricing: Option<Pricing>,
    by_agent: bool,
) -> (AttemptResult, Option<String>) {
    let counted = if failure.reached_model {
        count(failure.usage.as_deref(), sent, streamed, by_agent)
    } else {
        count(Some(&Usage::default()), 0, 0, by_agent)
    };
    let (cost_usd, impossible) = cost(failure.cost_usd, &counted, pricing);
    let outcome = match failure.kind {
        FailureKind::Transient => AttemptOutcome::Transient,
        _ => AttemptOutcome::Permanent,
    };
    let result = AttemptResult {
        reasoning_tokens: 0,
        unpriced: unpriced(failure.cost_usd, pricing, failure.reached_model),
        request_id: failure.request_id.clone(),
        error: Some(failure.to_string()),
        duration_ms,
        cost_usd,
        ..recorded(id, attempt, outcome, &counted, by_agent)
    };
    (result, impossible)
}

/// The journal's record of attempt `attempt` of prompt `id`, ended as `outcome` and
/// counted as `counted` (the rest of it is the caller's to fill).
pub(crate) fn recorded(
    id: String,
    attempt: u32,
    outcome: AttemptOutcome,
    counted: &Counted,
    by_agent: bool,
) -> AttemptResult {
    AttemptResult {
        id,
        attempt,
        outcome,
        input_tokens: counted.input,
        output_tokens: counted.output,
        cache_read_tokens: counted.cache_read,
        cache_write_tokens: counted.cache_write,
        reasoning_tokens: counted.reasoning,
        estimated: counted.estimated,
        by_agent,
        ..AttemptResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            ..Usage::default()
        }
    }

    #[test]
    fn reports_and_whether_they_are_believed() {
        let malformed = Usage {
            malformed: Some("usage.prompt_tokens = -5".into()),
            ..usage(0, 5)
        };
        /// (input, output, estimated, distrusted)
        type Want = (u64, u64, bool, bool);
        /// (name, usage, sent, text, agent) -> want
        type Case = (&'static str, Option<Usage>, u64, u64, bool, Want);
        let cases: Vec<Case> = vec![
            ("no report", None, 800, 50, false, (800, 50, true, false)),
            (
                "a plain report",
                Some(usage(820, 60)),
                800,
                50,
                false,
                (820, 60, false, false),
            ),
            (
                "another tokenizer counts 2.6 times more",
                Some(usage(2095, 503)),
                800,
                500,
                false,
                (2095, 503, false, false),
            ),
            (
                "a quadrillion in",
                Some(usage(1_000_000_000_000_000, 50)),
                800,
                50,
                false,
                (800, 50, true, true),
            ),
            (
                "above any context",
                Some(usage(20_000_000, 50)),
                3_000_000,
                50,
                false,
                (3_000_000, 50, true, true),
            ),
            (
                "far above what was sent",
                Some(usage(50_000, 50)),
                800,
                50,
                false,
                (800, 50, true, true),
            ),
            (
                "a billion out for 50 tokens of text",
                Some(usage(100, 1_000_000_000)),
                800,
                50,
                false,
                (800, 50, true, true),
            ),
            (
                "a reasoning model: 1,900 of 2,000 output tokens thought, 100 shown",
                Some(Usage {
                    reasoning: 1900,
                    ..usage(820, 2000)
                }),
                800,
                100,
                false,
                (820, 2000, false, false),
            ),
            (
                "more reasoning than output",
                Some(Usage {
                    reasoning: 3000,
                    ..usage(820, 2000)
                }),
                800,
                100,
                false,
                (800, 100, true, true),
            ),
            (
                "counts that are not whole numbers",
                Some(malformed.clone()),
                800,
                50,
                false,
                (800, 50, true, true),
            ),
            (
                "an agent reads 18k cached tokens for a 1k prompt",
                Some(usage(19_000, 400)),
                1000,
                50,
                true,
                (19_000, 400, false, false),
            ),
            (
                "an agent's malformed report",
                Some(malformed),
                1000,
                50,
                true,
                (1000, 50, true, true),
            ),
            (
                "an agent's impossible report",
                Some(usage(u64::MAX, 1)),
                1000,
                50,
                true,
                (1000, 50, true, true),
            ),
        ];
        for (name, u, sent, text, agent, want) in cases {
            let c = count(u.as_ref(), sent, text, agent);
            assert_eq!(
                (c.input, c.output, c.estimated, c.distrusted.is_some()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn what_a_user_is_told_about_counts() {
        let counted = |input, output, estimated| Counted {
            input,
            output,
            cache_read: 0,
            cache_write: 0,
            reasoning: 0,
            estimated,
            distrusted: None,
        };
        /// (name, counted, sent, cap, told before) -> the words of each warning
        type Case = (
            &'static str,
            Counted,
            u64,
            Option<u32>,
            bool,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "within the cap",
                counted(800, 500, false),
                800,
                Some(500),
                false,
                vec![],
            ),
            (
                "past the cap",
                counted(800, 4000, false),
                800,
                Some(500),
                false,
                vec!["the cap did not hold"],
            ),
            (
                "an agent has no cap",
                counted(800, 4000, false),
                800,
                None,
                false,
                vec![],
            ),
            (
                "estimated counts",
                counted(800, 4000, true),
                800,
                Some(500),
                false,
                vec![],
            ),
            (
                "no input on a cached prompt",
                counted(0, 50, false),
                800,
                Some(500),
                false,
                vec!["0 input tokens"],
            ),
            (
                "said once a run",
                counted(0, 50, false),
                800,
                Some(500),
                true,
                vec![],
            ),
        ];
        for (name, c, sent, cap, told, want) in cases {
            let got = warnings(&c, sent, cap, told);
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.contains(w), "{name}: {g}");
            }
        }
    }
}
