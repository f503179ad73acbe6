//! All output goes through here: data to stdout, notes, warnings and errors to stderr, and
//! nothing but errors and the data asked for with `-q`. A script can pipe `--json` safely.
//! A closed pipe or a full log (`orchestrator run 2>&1 | head`) is not an error and never a
//! panic: what cannot be written is dropped, and a build goes on, unattended, as it would
//! had nobody been reading.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};

/// How to talk to the user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    /// `--json`: one JSON document on stdout (`run`: one event per line).
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    pub(crate) verbose: u8,
    /// stderr is a terminal (progress bars) rather than a log.
    pub(crate) terminal: bool,
    /// Colour on stderr: `--color`, else a terminal without `NO_COLOR`.
    pub(crate) color: bool,
}

/// What a word is painted as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Paint {
    Warning,
    Error,
    Note,
}

/// `--color`: `always` and `never` win over `NO_COLOR` (no-color.org: a flag the user gave
/// overrides the environment); `auto` colours a terminal unless `NO_COLOR` is set.
pub(crate) fn color(choice: &str, terminal: bool) -> bool {
    match choice {
        "always" => true,
        "never" => false,
        _ => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// `word` in its colour (bold), when `on`.
pub(crate) fn paint(word: &str, paint: Paint, on: bool) -> String {
    if !on {
        return word.to_string();
    }
    let code = match paint {
        Paint::Warning => "1;33",
        Paint::Error => "1;31",
        Paint::Note => "1;36",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

impl Printer {
    /// A warning, on stderr, unless quiet.
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            stderr(&format!(
                "{} {message}",
                paint("warning:", Paint::Warning, self.color)
            ));
        }
    }

    pub(crate) fn note(&self, message: &str) {
        if !self.quiet {
            stderr(&format!(
                "{} {message}",
                paint("note:", Paint::Note, self.color)
            ));
        }
    }

    /// Data on stdout, ending with a newline.
    pub(crate) fn data(&self, text: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        let result = out
            .write_all(text.as_bytes())
            .and_then(|()| {
                if text.ends_with('\n') {
                    Ok(())
                } else {
                    out.write_all(b"\n")
                }
            })
            .and_then(|()| out.flush());
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::io("<stdout>", e)),
            Ok(()) => Ok(()),
        }
    }

    /// A document as pretty JSON on stdout.
    pub(crate) fn json(&self, value: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Usage(format!("cannot encode the output as JSON: {e}")))?;
        self.data(&text)
    }
}

/// One line on stderr; a stderr that cannot be written (a closed pipe, a full disk) drops it
/// (`eprintln!` would panic).
pub(crate) fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}
