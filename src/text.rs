//! How numbers, durations, money and long text are written for people, in one place:
//! `12,345`, "1 prompt" and "2 prompts", "1m 30s", "$0.0120", and text cut to fit a line
//! or a message (at a character boundary, never inside a character).

use std::time::Duration;

/// `12345` as `12,345`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `noun` for one, `nouns` otherwise (the nouns here take an s).
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}

/// Minutes as a table shows them: `45 min`, `1h 05m`.
pub(crate) fn minutes(m: f64) -> String {
    let m = m.round() as u64;
    if m >= 60 {
        format!("{}h {:02}m", m / 60, m % 60)
    } else {
        format!("{m} min")
    }
}

/// A duration as messages show it: to the millisecond under ten seconds, to the second
/// above (`300ms`, `5s 90ms`, `1m 30s`), "more than a century" past that (a server asking
/// to wait `1e20` seconds).
pub(crate) fn duration(d: Duration) -> String {
    if d > Duration::from_secs(100 * 365 * 24 * 3600) {
        return "more than a century".into();
    }
    let rounded = if d < Duration::from_secs(10) {
        Duration::from_millis(millis(d))
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}

/// Unix milliseconds as a time people read: `19:00 UTC` today (UTC), `Dec 5 19:00 UTC`
/// another day, and how long from `now_ms` (`19:00 UTC, in 1h 32m`; `…, passed` once it
/// has).
pub(crate) fn until(until_ms: u64, now_ms: u64) -> String {
    let at = timestamp(until_ms).to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let today = timestamp(now_ms)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let clock = if at.date() == today {
        at.strftime("%H:%M UTC").to_string()
    } else {
        at.strftime("%b %-d %H:%M UTC").to_string()
    };
    if until_ms > now_ms {
        let left = Duration::from_secs((until_ms - now_ms).div_ceil(60_000) * 60);
        format!("{clock}, in {}", duration(left))
    } else {
        format!("{clock}, passed")
    }
}

/// Unix milliseconds as RFC 3339, UTC (`2026-12-05T03:00:30Z`).
pub(crate) fn rfc3339(ms: u64) -> String {
    timestamp(ms).to_string()
}

/// Unix milliseconds as a timestamp, saturated at jiff's range.
fn timestamp(ms: u64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::MAX)
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

/// A duration in whole milliseconds, saturated (as the journal keeps durations).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Money as messages show it: four decimals, or "more than $1,000,000,000" for an amount
/// past that (a reported `1e308` never prints 309 digits or `inf`).
pub(crate) fn usd(usd: f64) -> String {
    if usd.is_finite() && usd.abs() < 1e9 {
        format!("${usd:.4}")
    } else {
        "more than $1,000,000,000".into()
    }
}

/// A total cost with the attempts it leaves out: `$0.0120`; `$0.0120 and 3 attempts of
/// unknown cost …`; `unknown (…)` when no attempt had a price.
pub(crate) fn cost(usd_total: f64, unpriced: u32) -> String {
    const WHY: &str = "no [pricing], and the endpoint reported none";
    match unpriced {
        0 => usd(usd_total),
        n if usd_total == 0.0 => format!("unknown ({n} {}: {WHY})", plural(n as usize, "attempt")),
        n => format!(
            "{} and {n} {} of unknown cost ({WHY})",
            usd(usd_total),
            plural(n as usize, "attempt")
        ),
    }
}

/// The first `max` bytes of `text` (fewer, at a character boundary).
pub(crate) fn head(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// The last `max` bytes of `text` (fewer, at a character boundary).
pub(crate) fn tail(text: &str, max: usize) -> &str {
    &text[text.ceil_char_boundary(text.len().saturating_sub(max))..]
}

/// `text` cut to `max` bytes with `…` when it is longer.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}…", head(text, max))
}

/// `text` cut to `max` characters with `…` when it is longer (for a table cell).
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_nouns_and_times() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(plural(1, "prompt"), "prompt");
        assert_eq!(plural(0, "prompt"), "prompts");
        assert_eq!(minutes(65.0), "1h 05m");
        assert_eq!(minutes(0.4), "0 min");
        assert_eq!(duration(Duration::from_millis(5090)), "5s 90ms");
        assert_eq!(duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(duration(Duration::MAX), "more than a century");
        assert_eq!(usd(0.012), "$0.0120");
        assert_eq!(usd(1e308), "more than $1,000,000,000");
        assert_eq!(usd(f64::INFINITY), "more than $1,000,000,000");
    }

    #[test]
    fn durations_show_rounded() {
        for (d, shown) in [
            (Duration::from_millis(300), "300ms"),
            (Duration::new(5, 90), "5s"),
            (Duration::new(5, 90_000_000), "5s 90ms"),
            (Duration::new(90, 123_456_789), "1m 30s"),
            (Duration::MAX, "more than a century"),
        ] {
            assert_eq!(duration(d), shown, "{d:?}");
        }
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "ab€cd";
        for (max, head_want, tail_want) in [
            (0, "", ""),
            (3, "ab", "cd"),
            (4, "ab", "cd"),
            (5, "ab€", "€cd"),
            (9, "ab€cd", "ab€cd"),
        ] {
            assert_eq!(head(text, max), head_want, "head {max}");
            assert_eq!(tail(text, max), tail_want, "tail {max}");
        }
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate_chars("ééé", 2), "éé…");
    }
}
