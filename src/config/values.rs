//! How config values are read: durations (`"90s"`, `"8h"`) and base URLs.

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

/// A base URL as config may give it: http(s), with a host, and no credentials.
pub(crate) fn check_url(text: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        format!("{e}; write a full URL such as \"http://127.0.0.1:4000/v1\" or \"https://api.openai.com/v1\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is {:?}; use http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are refused (they would be written to logs and state); put the key in the environment variable llm.api_key_env names".into());
    }
    Ok(url)
}
