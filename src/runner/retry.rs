//! The retry schedule (docs, "Recovery rules"): exponential backoff from
//! `retry.initial_delay` with full jitter, never less than what the server asked for
//! (`retry-after-ms`, `Retry-After`), and never a sleep longer than `retry.max_delay`: a
//! server asking for more fails the prompt instead; and what a retry says of the last
//! attempt. Pure, so that the rules have a table.

use std::time::Duration;

use crate::providers::{Failure, FailureKind};

/// What to do before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Sleep this long, then send again.
    Sleep(Duration),
    /// The server asks for longer than `retry.max_delay`: fail rather than sleep.
    TooLong { asked: Duration },
}

/// The wait before the next attempt: `exponential` is backoff's delay for this retry,
/// `jitter` a random fraction in [0, 1), `asked` the server's request.
pub(crate) fn wait(
    exponential: Duration,
    jitter: f64,
    asked: Option<Duration>,
    max_delay: Duration,
) -> Wait {
    if let Some(asked) = asked
        && asked > max_delay
    {
        return Wait::TooLong { asked };
    }
    // Full jitter: anywhere between no wait and the exponential delay.
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jittered = exponential.min(max_delay).mul_f64(jitter);
    Wait::Sleep(jittered.max(asked.unwrap_or_default()).min(max_delay))
}

/// Backoff's exponential delays (`backon`), from `initial` doubling up to `max`.
pub(crate) fn schedule(initial: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

/// The note a retry after a content failure carries, in the spirit of the seed's
/// recovery: what to do, then why the last attempt failed, last (a failed check's command,
/// output and the prompt's `## If Failed` advice end the message).
pub(crate) fn note(reason: &str) -> String {
    format!(
        "Note: your previous attempt at this prompt was not accepted. Do the whole task again and end your reply with the checkpoint block. Why it was not accepted: {reason}"
    )
}

/// The note an `until` loop's next iteration carries: its work so far is in the
/// workspace, and why the prompt is not done.
pub(crate) fn again(why: &str) -> String {
    format!(
        "Note: your work on this prompt so far is in the workspace, committed, but it is not done yet: {why}\nGo on from where it is, then end your reply with the checkpoint block."
    )
}

/// A failure as the retry and the journal say it.
pub(crate) fn describe(f: &Failure) -> String {
    let label = match f.kind {
        FailureKind::Quota => "quota exhausted: ",
        _ => "",
    };
    format!("{label}{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn waits() {
        // (exponential, jitter, server asked, max_delay) -> wait
        let cases = [
            (
                "no jitter is no wait",
                S(4),
                0.0,
                None,
                S(60),
                Wait::Sleep(S(0)),
            ),
            (
                "half jitter halves",
                S(4),
                0.5,
                None,
                S(60),
                Wait::Sleep(S(2)),
            ),
            (
                "capped by max_delay",
                S(400),
                0.5,
                None,
                S(60),
                Wait::Sleep(S(30)),
            ),
            (
                "at least what the server asked",
                S(4),
                0.1,
                Some(S(7)),
                S(60),
                Wait::Sleep(S(7)),
            ),
            (
                "the server asked for less than backoff",
                S(4),
                0.5,
                Some(MS(10)),
                S(60),
                Wait::Sleep(S(2)),
            ),
            (
                "exactly max_delay is waited",
                S(4),
                0.0,
                Some(S(60)),
                S(60),
                Wait::Sleep(S(60)),
            ),
            (
                "longer than max_delay fails",
                S(4),
                0.0,
                Some(S(61)),
                S(60),
                Wait::TooLong { asked: S(61) },
            ),
            (
                "a saturated Retry-After fails",
                S(4),
                0.0,
                Some(Duration::MAX),
                S(60),
                Wait::TooLong {
                    asked: Duration::MAX,
                },
            ),
            (
                "odd jitter is no jitter",
                S(4),
                f64::NAN,
                None,
                S(60),
                Wait::Sleep(S(0)),
            ),
        ];
        for (name, exponential, jitter, asked, max, want) in cases {
            assert_eq!(wait(exponential, jitter, asked, max), want, "{name}");
        }
    }

    #[test]
    fn the_schedule_doubles_up_to_the_cap() {
        let delays: Vec<u128> = schedule(MS(100), MS(500))
            .take(5)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }
}
