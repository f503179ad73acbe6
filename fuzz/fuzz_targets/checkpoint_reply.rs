//! A model's reply: the checkpoint block, if any.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = orchestrator::fuzzing::checkpoint_reply(text);
    }
});
