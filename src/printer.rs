//! All output goes through here: data to stdout, notes, warnings and errors to stderr, and
//! nothing but errors and the data asked for with `-q`. A script can pipe `--json` safely.
//! A closed pipe or a full log (`orchestrator run 2>&1 | head`) is not an error and never a
//! panic: what cannot be written is dropped, and a build goes on, unattended, as it would
//! had nobody been reading.
//!
//! Text that comes from outside (a model's reply or error, a prompt file, a check's
//! command) is [`clean`]ed before it reaches a terminal: control characters, escape
//! sequences and bidirectional overrides are shown as escapes, so that nothing printed can
//! clear the screen, set the title, write the clipboard (OSC 52) or hide what a check runs.
//! JSON keeps them as JSON escapes.

use std::borrow::Cow;
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

/// Whether stderr is to be coloured, once `--color` is the global choice: `always` and
/// `never` win over `NO_COLOR` (no-color.org: a flag the user gave overrides the
/// environment); `auto` colours a terminal unless `NO_COLOR` (or `CLICOLOR=0`) says not
/// (anstream's rules, which clap's own help follows).
pub(crate) fn color(choice: clap::ColorChoice) -> bool {
    let choice = match choice {
        clap::ColorChoice::Always => anstream::ColorChoice::Always,
        clap::ColorChoice::Never => anstream::ColorChoice::Never,
        clap::ColorChoice::Auto => anstream::ColorChoice::Auto,
    };
    choice.write_global();
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

/// `word` in its colour (bold), when `on`.
pub(crate) fn paint(word: &str, paint: Paint, on: bool) -> String {
    if !on {
        return word.to_string();
    }
    let colour = match paint {
        Paint::Warning => anstyle::AnsiColor::Yellow,
        Paint::Error => anstyle::AnsiColor::Red,
        Paint::Note => anstyle::AnsiColor::Cyan,
    };
    let style = anstyle::Style::new().bold().fg_color(Some(colour.into()));
    format!("{style}{word}{style:#}")
}

/// Characters that must not reach a terminal as they are: C0 controls but newline and tab,
/// DEL, C1 controls, and the invisible marks that reorder or hide text (bidirectional
/// embeddings, overrides and isolates, the directional marks).
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`hidden`] character shown as an escape (`\x1b`, `\u{202e}`).
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !hidden(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// JSON text with the [`hidden`] characters serde leaves raw (DEL, C1 controls, the
/// bidirectional marks) written as JSON escapes: the same document, safe on a terminal.
pub(crate) fn clean_json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl Printer {
    /// A warning, on stderr, unless quiet.
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            stderr(&format!(
                "{} {}",
                paint("warning:", Paint::Warning, self.color),
                clean(message)
            ));
        }
    }

    pub(crate) fn note(&self, message: &str) {
        if !self.quiet {
            stderr(&format!(
                "{} {}",
                paint("note:", Paint::Note, self.color),
                clean(message)
            ));
        }
    }

    /// Data on stdout, ending with a newline.
    pub(crate) fn data(&self, text: &str) -> Result<()> {
        self.write_out(&clean(text))
    }

    fn write_out(&self, text: &str) -> Result<()> {
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
            .map_err(|e| Error::internal("cannot encode the output as JSON", e))?;
        self.write_out(&clean_json(&text))
    }
}

/// One line on stderr; a stderr that cannot be written (a closed pipe, a full disk) drops it
/// (`eprintln!` would panic). The caller has [`clean`]ed what came from outside.
pub(crate) fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_could_drive_a_terminal_is_shown_as_escapes() {
        let cases = [
            ("plain text\n\tindented", "plain text\n\tindented"),
            ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
            ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),
            (
                "rm -rf x\r\x1b[2Kecho safe",
                "rm -rf x\\x0d\\x1b[2Kecho safe",
            ),
            ("abc\u{202e}txt.exe", "abc\\u{202e}txt.exe"),
            ("\u{9b}31m\u{7f}", "\\u{9b}31m\\x7f"),
            ("é 字 🙂", "é 字 🙂"),
        ];
        for (raw, shown) in cases {
            assert_eq!(clean(raw), shown, "{raw:?}");
        }
        let json =
            serde_json::to_string(&serde_json::json!({"e": "a\u{202e}b\u{9b}\x1b"})).expect("json");
        let cleaned = clean_json(&json);
        assert!(!cleaned.chars().any(hidden), "{cleaned}");
        let back: serde_json::Value = serde_json::from_str(&cleaned).expect("still JSON");
        assert_eq!(back["e"], "a\u{202e}b\u{9b}\x1b");
    }
}
