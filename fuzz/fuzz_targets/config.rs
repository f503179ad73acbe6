//! `config.toml` text: a config, or an error that names the file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = orchestrator::fuzzing::config(text)
    {
        assert!(e.starts_with("config.toml"));
    }
});
