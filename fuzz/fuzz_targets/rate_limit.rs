//! `x-ratelimit-remaining-tokens` and `x-ratelimit-reset-tokens` as a server may send
//! them: a wait or none, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (remaining, reset) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = orchestrator::fuzzing::rate_limit(remaining, reset);
});
