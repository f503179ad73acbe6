//! `retry-after-ms` and `Retry-After` values as a server may send them: a wait or none,
//! never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ms, secs) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = orchestrator::fuzzing::retry_after(Some(ms), Some(secs));
    let _ = orchestrator::fuzzing::retry_after(None, Some(ms));
});
