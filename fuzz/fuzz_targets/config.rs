//! `config.toml` text: a config, or an error that names the file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("config.toml");
        if let Err(e) = orchestrator::config::Config::parse(text, path) {
            assert!(e.to_string().starts_with("config.toml"));
        }
    }
});
