//! What a server says about waiting: `retry-after-ms` and `Retry-After` on a refusal, and
//! the `x-ratelimit-*` headers (OpenAI, Groq, Azure) on every answer. An allowance that is
//! spent (`x-ratelimit-remaining-tokens: 0`) makes the next request wait for its reset
//! (`x-ratelimit-reset-tokens: 7.66s`) instead of taking a 429. Every number is read with
//! saturation: nothing a server sends can panic.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

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

/// The wait the last answer's `x-ratelimit-*` headers asked for, before the next request.
#[derive(Debug, Default)]
pub(crate) struct Throttle(Mutex<Option<(Instant, String)>>);

impl Throttle {
    /// After an answer: a spent allowance (tokens or requests) holds the next request until
    /// it resets; an allowance left, or no headers, holds nothing.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let hold = spent(text).map(|(wait, why)| (after(wait), why));
        if let Ok(mut held) = self.0.lock() {
            *held = hold;
        }
    }

    /// What is left of the wait, and why; `None` when the next request may go.
    pub(crate) fn pending(&self) -> Option<(Duration, String)> {
        let held = self.0.lock().ok()?.clone()?;
        let left = held.0.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some((left, held.1))
    }
}

/// The instant `wait` from now, saturated at a century (`inf`, `1e20` or `i64::MAX`
/// seconds would overflow an `Instant`).
fn after(wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(wait.min(CENTURY)).unwrap_or(now)
}

/// The longest reset among the allowances the headers say are spent, and why.
pub(crate) fn spent<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<(Duration, String)> {
    ["tokens", "requests"]
        .into_iter()
        .filter_map(|what| {
            let remaining = header(&format!("x-ratelimit-remaining-{what}"))?;
            let reset = header(&format!("x-ratelimit-reset-{what}"))?;
            let left = remaining.trim().parse::<f64>().ok()?;
            if left.is_nan() || left >= 1.0 {
                return None;
            }
            let wait = go_duration(reset)?;
            Some((
                wait,
                format!(
                    "the endpoint's {what} allowance is spent (x-ratelimit-remaining-{what}: {}) until it resets in {} (x-ratelimit-reset-{what})",
                    remaining.trim(),
                    reset.trim()
                ),
            ))
        })
        .max_by_key(|(wait, _)| *wait)
}

/// A duration as Go prints it, as OpenAI and Groq send it (`7.66s`, `2m59.56s`, `6m0s`,
/// `12ms`, `1h2m3s`), or a bare number of seconds; saturating.
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (!secs.is_nan() && secs >= 0.0).then(|| saturating_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit..];
        total = total.saturating_add(saturating_secs(number * scale));
    }
    (!text.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_spent_allowance_whose_reset_is_absurd_holds_saturated_without_panic() {
        for reset in [
            "inf",
            "1e20",
            "9223372036854775807s",
            "1e308",
            "99999999999999999999h",
        ] {
            let wait = crate::providers::rate_limit_wait("0", reset).expect("held");
            assert!(
                wait > Duration::from_secs(50 * 365 * 24 * 3600),
                "{reset}: {wait:?}"
            );
        }
        assert_eq!(
            crate::providers::rate_limit_wait("5", "inf"),
            None,
            "allowance left"
        );
    }

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
            fn any_rate_limit_headers_are_observed_without_panic(
                remaining in "(\\PC{0,20}|0|0.0)",
                reset in "(\\PC{0,40}|[0-9eE+.-]{0,30}s?|inf|NaN|9223372036854775807s)",
            ) {
                let _ = crate::providers::rate_limit_wait(&remaining, &reset);
            }

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
    fn go_durations() {
        for (text, want) in [
            ("7.66s", Some(Duration::from_millis(7660))),
            ("2m59.56s", Some(Duration::from_millis(179_560))),
            ("6m0s", Some(Duration::from_secs(360))),
            ("12ms", Some(Duration::from_millis(12))),
            ("1h2m3s", Some(Duration::from_secs(3723))),
            ("0s", Some(Duration::ZERO)),
            ("3", Some(Duration::from_secs(3))),
            ("99999999999999999999999h", Some(Duration::MAX)),
            ("1e300h", None),
            ("", None),
            ("soon", None),
            ("5x", None),
            ("s", None),
            ("-1s", None),
        ] {
            assert_eq!(go_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn a_spent_allowance_waits_for_its_reset() {
        type Case = (
            &'static str,
            &'static [(&'static str, &'static str)],
            Option<u64>,
        );
        let cases: &[Case] = &[
            (
                "Groq, tokens left",
                &[
                    ("x-ratelimit-remaining-tokens", "17997"),
                    ("x-ratelimit-reset-tokens", "7.66s"),
                ],
                None,
            ),
            (
                "tokens spent",
                &[
                    ("x-ratelimit-remaining-tokens", "0"),
                    ("x-ratelimit-reset-tokens", "7.66s"),
                ],
                Some(7660),
            ),
            (
                "both spent: the longer wait",
                &[
                    ("x-ratelimit-remaining-tokens", "0"),
                    ("x-ratelimit-reset-tokens", "2s"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "2m59.56s"),
                ],
                Some(179_560),
            ),
            (
                "no reset given",
                &[("x-ratelimit-remaining-tokens", "0")],
                None,
            ),
            (
                "nonsense",
                &[
                    ("x-ratelimit-remaining-tokens", "none"),
                    ("x-ratelimit-reset-tokens", "1e999s"),
                ],
                None,
            ),
        ];
        for (name, headers, want) in cases {
            let header = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
            let got = spent(header).map(|(d, _)| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn a_throttle_holds_until_the_reset() {
        let t = Throttle::default();
        assert_eq!(t.pending(), None);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("0"),
        );
        h.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("1h"));
        t.observe(&h);
        let (left, why) = t.pending().expect("held");
        assert!(left > Duration::from_secs(3500), "{left:?}");
        assert!(why.contains("x-ratelimit-reset-tokens"), "{why}");
        t.observe(&HeaderMap::new());
        assert_eq!(
            t.pending(),
            None,
            "a later answer without the headers frees it"
        );
    }
}
