//! The fuzz surface: every parser of outside data, reachable from `fuzz/` (a crate of its
//! own) through this one module, while the rest of the library stays `pub(crate)`. Each
//! function takes bytes or text as a fuzzer gives them and must return, never panic.

use std::path::Path;

/// A prompt file: front matter, footer, checkpoint section, placeholders. The placeholder
/// names found, or the file's error (as `plan` would report it).
pub fn prompt_file(bytes: &[u8]) -> Result<Vec<String>, String> {
    crate::plan::parse_prompt_bytes(bytes).map_err(|e| e.to_string())
}

/// `config.toml` text: `Ok` or the error message, which names the file.
pub fn config(text: &str) -> Result<(), String> {
    crate::config::parse(text, Path::new("config.toml"))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A model's reply: whether it has a checkpoint block.
pub fn checkpoint_reply(text: &str) -> bool {
    crate::checkpoint::from_reply(text).is_some()
}

/// An OpenAI-style SSE body given as the reads it arrived in: the reply text, or the
/// failure's message.
pub fn openai_sse(reads: Vec<Vec<u8>>) -> Result<String, String> {
    crate::providers::replay_openai_sse(reads)
        .map(|r| r.text)
        .map_err(|f| f.message)
}

/// A Responses API SSE body given as the reads it arrived in: the reply text, or the
/// failure's message.
pub fn responses_sse(reads: Vec<Vec<u8>>) -> Result<String, String> {
    crate::providers::replay_responses_sse(reads)
        .map(|r| r.text)
        .map_err(|f| f.message)
}

/// `x-ratelimit-*` header values (remaining, reset) for tokens: the wait they ask for.
pub fn rate_limit(remaining: &str, reset: &str) -> Option<std::time::Duration> {
    crate::providers::rate_limit_wait(remaining, reset)
}

/// Journal bytes: how many records, or the error message, which names the file.
pub fn journal(bytes: &[u8]) -> Result<usize, String> {
    crate::state::parse_journal(bytes, Path::new("journal.jsonl"))
        .map(|(records, _)| records.len())
        .map_err(|e| e.to_string())
}

/// `retry-after-ms` and `Retry-After` values as a server sent them: the wait, if any.
pub fn retry_after(ms: Option<&str>, secs: Option<&str>) -> Option<std::time::Duration> {
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    crate::providers::parse_retry_after(ms, secs, now)
}
