//! A prompt file's bytes: front matter, footer, checkpoint section, placeholders.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = orchestrator::fuzzing::prompt_file(data);
});
