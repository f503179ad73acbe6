//! `retry-after-ms` and `Retry-After` values as a server may send them: a wait or none,
//! never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ms, secs) = text.split_once('\n').unwrap_or((&text, ""));
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let _ = orchestrator::providers::parse_retry_after(Some(ms), Some(secs), now);
    let _ = orchestrator::providers::parse_retry_after(None, Some(ms), now);
});
