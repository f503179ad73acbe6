//! Journal bytes: records, or an error that names the file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("journal.jsonl");
    if let Err(e) = orchestrator::state::parse_journal(data, path) {
        assert!(e.to_string().contains("journal.jsonl"));
    }
});
