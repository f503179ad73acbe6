//! Journal bytes: records, or an error that names the file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = orchestrator::fuzzing::journal(data) {
        assert!(e.contains("journal.jsonl"));
    }
});
