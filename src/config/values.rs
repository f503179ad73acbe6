//! How config values are read: durations (`"90s"`, `"8h"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Durations are strings such as `"90s"`, `"8h"`, `"1h 30m"` (humantime's syntax).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e}; write a number and a unit, such as \"90s\", \"10m\" or \"8h\""
        ))
    })
}
