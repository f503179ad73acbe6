//! How config values are read and shown: durations (`"90s"`, `"8h"`) and money.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Money as messages show it: four decimals, or "more than $1,000,000,000" for an amount
/// past that (a reported `1e308` never prints 309 digits or `inf`).
pub(crate) fn show_usd(usd: f64) -> String {
    if usd.is_finite() && usd.abs() < 1e9 {
        format!("${usd:.4}")
    } else {
        "more than $1,000,000,000".into()
    }
}

/// A duration as messages show it: to the millisecond under ten seconds, to the second
/// above (`300ms`, `5s 90ms`, `1m 30s`), "ever" past a century (a server asking to wait
/// `1e20` seconds).
pub(crate) fn show_duration(d: Duration) -> String {
    if d > Duration::from_secs(100 * 365 * 24 * 3600) {
        return "more than a century".into();
    }
    let rounded = if d < Duration::from_secs(10) {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}

/// Durations are strings such as `"90s"`, `"8h"`, `"1h 30m"` (humantime's syntax).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e}; write a number and a unit, such as \"90s\", \"10m\" or \"8h\""
        ))
    })
}
