//! `tokens FILE...`: counts as Python tiktoken's `encode_ordinary` does (special-token text
//! is ordinary text), with `--encoding`, else config's, else the model's.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::tables;
use crate::tokens::Encoding;

pub(crate) fn tokens(settings: &Settings, files: &[PathBuf], encoding: Option<&str>) -> Result<()> {
    let encoding = match encoding {
        Some(name) => Encoding::from_name(name).ok_or_else(|| {
            Error::Usage(format!(
                "--encoding {name:?} is not an encoding; use one of {}",
                Encoding::ALL.map(Encoding::name).join(", ")
            ))
        })?,
        None => settings
            .config
            .tokenizer
            .encoding
            .unwrap_or_else(|| Encoding::for_model(settings.config.llm.model())),
    };
    let stdin = PathBuf::from("-");
    let files: Vec<&PathBuf> = if files.is_empty() {
        vec![&stdin]
    } else {
        files.iter().collect()
    };
    let mut counts = Vec::new();
    for file in files {
        let (name, bytes) = if file.as_path() == Path::new("-") {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("<stdin>", e))?;
            ("<stdin>".to_string(), buf)
        } else {
            let bytes = std::fs::read(file).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory => Error::Usage(
                    format!("{}: {e}; give `tokens` files to count", file.display()),
                ),
                _ => Error::io(file, e),
            })?;
            (file.display().to_string(), bytes)
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::Usage(format!(
                "{name}: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        counts.push((name, encoding.count(&text)));
    }
    if settings.printer.json {
        let v: Vec<_> = counts
            .iter()
            .map(|(f, t)| serde_json::json!({"file": f, "tokens": t}))
            .collect();
        settings.printer.json(&v)?;
    } else {
        let total: u64 = counts.iter().map(|c| c.1).sum();
        let many = counts.len() > 1;
        let mut rows: Vec<Vec<String>> = counts
            .into_iter()
            .map(|(f, t)| vec![f, crate::text::thousands(t)])
            .collect();
        if many {
            rows.push(vec!["Total".into(), crate::text::thousands(total)]);
        }
        settings.printer.data(&tables::table(
            &["File", &format!("Tokens ({encoding})")],
            rows,
            &[1],
        ))?;
    }
    Ok(())
}
