//! An agent's usage limit, and when it resets, read from the text the agent reports it
//! with (docs, "Agent builds", "Usage limits"). A limit is not the prompt's fault: the run
//! pauses until the reset rather than failing the prompt.
//!
//! - Claude Code, older: `Claude AI usage limit reached|1762952400` (epoch seconds).
//! - Claude Code, newer: `You've hit your limit · resets 7pm (America/Los_Angeles)`,
//!   `… · resets Apr 23 at 4pm (Europe/Berlin)`, `5-hour limit reached ∙ resets 12pm`,
//!   `You've hit your session limit · resets 3:50pm (Asia/Tokyo)`: a clock time in the
//!   zone named (else this machine's), the next such time from now.
//! - Codex: `You've hit your usage limit. … try again at 12:16 PM.` or `… try again at
//!   Apr 5th, 2026 12:16 PM.` (this machine's time zone, where Codex runs), and the
//!   server's `usage_limit_reached`.
//!
//! Text that names a limit but no time it resets is a limit with no known reset: the
//! failure is retried as any other.

use std::sync::LazyLock;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use regex::Regex;

/// Whether `text` is an agent's report of a usage (subscription) limit.
pub(crate) fn is_limit(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.contains("usage limit")
        || lower.contains("usage_limit_reached")
        || (lower.contains("hit your") && lower.contains("limit"))
        || lower.contains("limit reached")
}

/// When the limit `text` reports resets, as seen at `now` in `local` (the zone a time with
/// none is in); `None` when it is no limit or names no time.
pub(crate) fn resets_at(text: &str, now: Timestamp, local: &TimeZone) -> Option<Timestamp> {
    if !is_limit(text) {
        return None;
    }
    static EPOCH: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)limit reached\|(\d{9,11})\b").expect("a valid regex"));
    static RESETS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\bresets\s+(?:(?P<mon>[a-z]{3})[a-z]*\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?:at\s+)?)?(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>am|pm)(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)*)\))?",
        )
        .expect("a valid regex")
    });
    static TRY_AGAIN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)try again at\s+(?:(?P<mon>[a-z]{3})[a-z]*\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})\s+)?(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>am|pm)",
        )
        .expect("a valid regex")
    });
    if let Some(c) = EPOCH.captures(text) {
        let secs: i64 = c[1].parse().ok()?;
        return Timestamp::from_second(secs).ok();
    }
    let c = RESETS.captures(text).or_else(|| TRY_AGAIN.captures(text))?;
    let zone = match c.name("tz") {
        Some(name) => TimeZone::get(name.as_str()).ok()?,
        None => local.clone(),
    };
    let hour: i8 = c["h"].parse().ok()?;
    let minute: i8 = c.name("m").map_or(Some(0), |m| m.as_str().parse().ok())?;
    if !(1..=12).contains(&hour) {
        return None;
    }
    let pm = c["ap"].eq_ignore_ascii_case("pm");
    let hour = match (hour, pm) {
        (12, false) => 0,
        (12, true) => 12,
        (h, false) => h,
        (h, true) => h + 12,
    };
    let time = Time::new(hour, minute, 0, 0).ok()?;
    let today = now.to_zoned_datetime(zone.clone()).date();
    let date = match (c.name("mon"), c.name("day")) {
        (Some(mon), Some(day)) => {
            let month = month(mon.as_str())?;
            let day: i8 = day.as_str().parse().ok()?;
            let year = match c.name("year") {
                Some(y) => y.as_str().parse().ok()?,
                None => today.year(),
            };
            Date::new(year, month, day).ok()?
        }
        _ => today,
    };
    let mut at = date
        .to_datetime(time)
        .to_zoned_datetime(zone.clone())
        .ok()?;
    // A clock time is to the minute: one that has just passed (within the hour) is a
    // reset that is due, a minute from now at most.
    let due = at.timestamp() <= now
        && now.duration_since(at.timestamp()) < jiff::SignedDuration::from_hours(1);
    if due {
        return now.checked_add(jiff::SignedDuration::from_mins(1)).ok();
    }
    // A time with no date, or a date with no year, is the next one from now.
    if at.timestamp() <= now && c.name("year").is_none() {
        let step = if c.name("mon").is_some() {
            1.year()
        } else {
            1.day()
        };
        let later = date.checked_add(step).ok()?;
        at = later.to_datetime(time).to_zoned_datetime(zone).ok()?;
    }
    Some(at.timestamp())
}

fn month(name: &str) -> Option<i8> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.to_ascii_lowercase();
    let i = MONTHS.iter().position(|m| *m == lower)?;
    i8::try_from(i + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    #[test]
    fn limits_and_their_resets() {
        // 2026-12-04T23:00:00Z is 15:00 in Los Angeles, 00:00 (Dec 5) in Berlin.
        let now = at("2026-12-04T23:00:00Z");
        let utc = TimeZone::UTC;
        let cases: [(&str, &str, Option<&str>); 13] = [
            (
                "Claude Code, older: epoch seconds",
                "Claude AI usage limit reached|1762952400",
                Some("2025-11-12T13:00:00Z"),
            ),
            (
                "Claude Code, newer, with its zone",
                "You've hit your limit · resets 7pm (America/Los_Angeles)",
                Some("2026-12-05T03:00:00Z"),
            ),
            (
                "Claude Code, a date and a zone",
                "You've hit your limit · resets Apr 23 at 4pm (Europe/Berlin)",
                Some("2027-04-23T14:00:00Z"),
            ),
            (
                "Claude Code, minutes, a zone, progress saved",
                "You've hit your session limit · resets 3:50pm (Asia/Tokyo) · progress saved",
                Some("2026-12-05T06:50:00Z"),
            ),
            (
                "Claude Code, no zone: this machine's, tomorrow when past",
                "5-hour limit reached ∙ resets 12pm",
                Some("2026-12-05T12:00:00Z"),
            ),
            (
                "Claude Code, a date with a comma",
                "You've hit your weekly limit · resets Dec 9, 4pm",
                Some("2026-12-09T16:00:00Z"),
            ),
            (
                "Codex, a time today",
                "You've hit your usage limit. Upgrade to Pro, or try again at 11:16 PM.",
                Some("2026-12-04T23:16:00Z"),
            ),
            (
                "Codex, a date and a year",
                "You've hit your usage limit. Try again at Dec 5th, 2026 2:05 AM.",
                Some("2026-12-05T02:05:00Z"),
            ),
            (
                "a clock time just passed is due: a minute from now",
                "You've hit your limit · resets 10:59pm (UTC)",
                Some("2026-12-04T23:01:00Z"),
            ),
            (
                "Codex, no time",
                "You've hit your usage limit. Try again later.",
                None,
            ),
            (
                "an unknown zone is no time",
                "You've hit your limit · resets 7pm (Mars/Olympus)",
                None,
            ),
            ("not a limit", "API Error: 500 resets 7pm", None),
            (
                "an hour that cannot be",
                "You've hit your limit · resets 13pm",
                None,
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(resets_at(text, now, &utc), want.map(at), "{name}");
        }
    }

    #[test]
    fn limits_are_told_from_other_errors() {
        for (text, want) in [
            ("Claude AI usage limit reached|1762952400", true),
            ("You've hit your limit · resets 7pm", true),
            ("usage_limit_reached", true),
            ("API Error: 529 overloaded", false),
            ("rate limit exceeded, retry in 2s", false),
        ] {
            assert_eq!(is_limit(text), want, "{text}");
        }
    }
}
