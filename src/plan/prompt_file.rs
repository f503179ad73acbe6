//! One prompt file read on its own: UTF-8, front matter (TOML between `+++` lines, with the
//! line of each value for errors), the seed's footer (`*Tokens: ~2000 | Time: 5 min |
//! Checkpoint: Required*`), the `## Checkpoint` section's block (the outputs the prompt
//! declares, with example values), and where its code blocks are. Placeholders are judged
//! against the rest of the plan in [`super::checks`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{self, Checkpoint};
use crate::config::Send;
use crate::error::{PlanError, line_of};
use crate::template::is_identifier;

/// Where a prompt's text is in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// From this byte on (front matter removed): the whole file.
    File { offset: usize },
    /// These byte ranges, joined by newlines: a plan file's section block, or a file's
    /// prose blocks (`[prompts] send = "fenced"`).
    Parts(Vec<Range<usize>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckpointMode {
    Required,
    Optional,
}

/// TOML front matter between `+++` lines at the top of a prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FrontMatter {
    pub(crate) max_tokens: Option<u32>,
    pub(crate) model: Option<String>,
    /// Ids of earlier prompts, each with the line it is written on.
    pub(crate) depends_on: Vec<(String, usize)>,
    pub(crate) checkpoint: Option<CheckpointMode>,
    /// Checks after this prompt (docs, "Agent builds").
    pub(crate) verify: Vec<String>,
    /// A shell check the prompt is sent again until it passes, each time building on the
    /// last (the ralph loop), at most `max_iterations` times.
    pub(crate) until: Option<String>,
    pub(crate) max_iterations: u32,
}

/// `max_iterations` when front matter has `until` but says no more.
pub(crate) const MAX_ITERATIONS: u32 = 5;

/// The front matter as written, with where each value is (for errors with lines).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenFront {
    max_tokens: Option<toml::Spanned<u32>>,
    model: Option<toml::Spanned<String>>,
    #[serde(default)]
    depends_on: Vec<toml::Spanned<String>>,
    checkpoint: Option<CheckpointMode>,
    #[serde(default)]
    verify: Vec<String>,
    until: Option<toml::Spanned<String>>,
    max_iterations: Option<toml::Spanned<u32>>,
}

impl WrittenFront {
    /// Checks the values; `line(offset)` is the file line of a byte in the TOML text.
    fn check(
        self,
        line: impl Fn(usize) -> usize,
    ) -> std::result::Result<FrontMatter, (usize, String)> {
        if let Some(m) = &self.max_tokens
            && *m.get_ref() == 0
        {
            return Err((
                line(m.span().start),
                "front matter: max_tokens = 0 asks for no reply; give at least 1 (or leave it out for llm.max_tokens)".into(),
            ));
        }
        if let Some(m) = &self.model
            && m.get_ref().trim().is_empty()
        {
            return Err((
                line(m.span().start),
                "front matter: model is empty; name a model (or leave it out for llm.model)".into(),
            ));
        }
        if let Some(u) = &self.until
            && u.get_ref().trim().is_empty()
        {
            return Err((
                line(u.span().start),
                "front matter: until is empty; give the shell check that says the prompt is done"
                    .into(),
            ));
        }
        if let Some(m) = &self.max_iterations
            && (*m.get_ref() == 0 || self.until.is_none())
        {
            return Err((
                line(m.span().start),
                "front matter: max_iterations needs an `until` check and at least 1".into(),
            ));
        }
        Ok(FrontMatter {
            until: self.until.map(toml::Spanned::into_inner),
            max_iterations: self
                .max_iterations
                .map_or(MAX_ITERATIONS, toml::Spanned::into_inner),
            max_tokens: self.max_tokens.map(toml::Spanned::into_inner),
            model: self.model.map(toml::Spanned::into_inner),
            depends_on: self
                .depends_on
                .into_iter()
                .map(|d| (line(d.span().start), d.into_inner()))
                .map(|(l, d)| (d, l))
                .collect(),
            checkpoint: self.checkpoint,
            verify: self.verify,
        })
    }
}

/// The seed's footer: `*Tokens: ~2000 | Time: 5 min | Checkpoint: Required*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Footer {
    pub(crate) tokens: Option<u64>,
    pub(crate) minutes: Option<f64>,
    pub(crate) checkpoint: Option<CheckpointMode>,
}

impl Footer {
    /// Reads the footer from the last few non-empty lines of a prompt.
    pub(crate) fn parse(text: &str) -> Option<Footer> {
        text.lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .find_map(Footer::parse_line)
    }

    fn parse_line(line: &str) -> Option<Footer> {
        let inner = line.trim().trim_matches(|c| c == '*' || c == '_').trim();
        let mut footer = Footer::default();
        let mut found = false;
        for field in inner.split('|') {
            let Some((key, value)) = field.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "tokens" => {
                    found = true;
                    footer.tokens = parse_token_hint(value);
                }
                "time" => {
                    found = true;
                    footer.minutes = parse_minutes(value);
                }
                "checkpoint" => {
                    found = true;
                    footer.checkpoint = match value.to_ascii_lowercase().as_str() {
                        "optional" | "no" | "none" | "disabled" => Some(CheckpointMode::Optional),
                        _ => Some(CheckpointMode::Required),
                    };
                }
                _ => {}
            }
        }
        found.then_some(footer)
    }
}

fn parse_token_hint(value: &str) -> Option<u64> {
    let v: String = value
        .trim_start_matches(['~', '≈', '<'])
        .chars()
        .filter(|c| *c != ',' && *c != '_' && !c.is_whitespace())
        .collect();
    let v = v.to_ascii_lowercase();
    match v.strip_suffix('k') {
        Some(k) => k.parse::<f64>().ok().map(|n| (n * 1000.0).round() as u64),
        None => v.parse().ok(),
    }
}

fn parse_minutes(value: &str) -> Option<f64> {
    let v = value.trim_start_matches(['~', '≈']).trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let n: f64 = v[..split].parse().ok()?;
    let unit = v[split..].trim().to_ascii_lowercase();
    let factor = match unit.as_str() {
        "" | "m" | "min" | "mins" | "minute" | "minutes" => 1.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 60.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0 / 60.0,
        _ => return None,
    };
    Some(n * factor)
}

/// What one file says, before placeholders are resolved against the plan.
pub(crate) struct RawPrompt {
    pub(super) front: FrontMatter,
    pub(super) footer: Option<Footer>,
    pub(super) produces: BTreeMap<String, Value>,
    /// The file has a `## Checkpoint` section (even one that declares nothing).
    pub(super) has_checkpoint: bool,
    /// The text to send.
    pub(super) body: String,
    /// Where that text is in the file.
    pub(super) source: Source,
    /// The pieces of `body` that came from the file, for the placeholder scan.
    pub(super) parts: Vec<Part>,
    /// sha256 of the file's bytes (the whole file is sent) or of the text sent.
    pub(super) hash: String,
    pub(super) notes: Vec<String>,
    /// The shell blocks of the `## Validation` section, as written.
    pub(super) validation: Vec<String>,
}

/// A piece of a prompt's text as it stands in its file.
pub(super) struct Part {
    /// Where it is in the text to send.
    pub(super) range: Range<usize>,
    /// The file line it starts on.
    pub(super) first_line: usize,
    /// Code blocks in it (relative to the piece), where an unknown placeholder stays text.
    pub(super) code: Vec<Range<usize>>,
}

impl RawPrompt {
    pub(super) fn read(path: &Path, send: Send) -> std::result::Result<RawPrompt, PlanError> {
        let bytes = std::fs::read(path).map_err(|e| PlanError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut raw = RawPrompt::parse(path, &bytes)?;
        if send == Send::Fenced {
            raw.fenced_only(path, &bytes)?;
        }
        Ok(raw)
    }

    /// One `Prompt N` section of a plan file: its block, alone.
    pub(super) fn section(
        path: &Path,
        block: Range<usize>,
        first_line: usize,
    ) -> std::result::Result<RawPrompt, PlanError> {
        let bytes = std::fs::read(path).map_err(|e| PlanError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let body = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.get(block.clone()))
            .ok_or_else(|| PlanError {
                path: path.to_path_buf(),
                line: Some(first_line),
                message: "the plan file changed while it was read; run the command again".into(),
            })?
            .to_string();
        if body.trim().is_empty() {
            return Err(PlanError {
                path: path.to_path_buf(),
                line: Some(first_line),
                message: "the prompt's block is empty: there is nothing to send".into(),
            });
        }
        Ok(RawPrompt {
            front: FrontMatter::default(),
            footer: None,
            produces: BTreeMap::new(),
            has_checkpoint: false,
            hash: sha256_hex(body.as_bytes()),
            parts: vec![Part {
                range: 0..body.len(),
                first_line,
                code: Vec::new(),
            }],
            body,
            source: Source::Parts(vec![block]),
            notes: Vec::new(),
            validation: Vec::new(),
        })
    }

    /// `[prompts] send = "fenced"`: the text to send is the file's prose blocks (untagged,
    /// or `text`, `markdown`, `prompt`), joined; the rest of the file is notes for a human.
    fn fenced_only(&mut self, path: &Path, bytes: &[u8]) -> std::result::Result<(), PlanError> {
        let Source::File { offset } = self.source else {
            return Ok(());
        };
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let (blocks, _) = checkpoint::outline(&text[offset..]);
        let ranges: Vec<Range<usize>> = blocks
            .iter()
            .filter(|b| b.is_prose() && !b.content.trim().is_empty())
            .map(|b| offset + b.content_range.start..offset + b.content_range.end)
            .collect();
        if ranges.is_empty() {
            return Err(PlanError {
                path: path.to_path_buf(),
                line: None,
                message: "[prompts] send = \"fenced\", but the file has no untagged (or text, markdown, prompt) fenced block to send; put the prompt between ``` lines, or send the whole file (send = \"file\")".into(),
            });
        }
        let (body, parts) = joined(text, &ranges);
        self.hash = sha256_hex(body.as_bytes());
        self.body = body;
        self.parts = parts;
        self.source = Source::Parts(ranges);
        Ok(())
    }

    pub(super) fn parse(path: &Path, bytes: &[u8]) -> std::result::Result<RawPrompt, PlanError> {
        let err = |line: Option<usize>, message: String| PlanError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let hash = sha256_hex(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            err(
                Some(line),
                format!(
                    "not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
                    e.valid_up_to()
                ),
            )
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);

        let (front, body, body_first_line) =
            split_front_matter(text).map_err(|(l, m)| err(Some(l), m))?;
        if body.trim().is_empty() {
            return Err(err(
                Some(body_first_line),
                "the prompt is empty: there is nothing to send; write the task below the front matter, or delete the file".into(),
            ));
        }
        let footer = Footer::parse(body);
        let (blocks, headings) = checkpoint::outline(body);
        let code_blocks = blocks.iter().map(|b| b.range.clone()).collect();

        let mut notes = Vec::new();
        let mut produces = BTreeMap::new();
        let checkpoint_heading = headings
            .iter()
            .position(|h| h.text.trim().to_ascii_lowercase().starts_with("checkpoint"));
        if let Some(h) = checkpoint_heading {
            let heading = &headings[h];
            let section_end = headings[h + 1..]
                .iter()
                .find(|n| n.level <= heading.level)
                .map_or(body.len(), |n| n.start);
            if let Some(block) = blocks.iter().find(|b| {
                b.range.start > heading.start && b.range.start < section_end && b.is_json()
            }) {
                let line = body_first_line + line_of(body, block.range.start) - 1;
                match serde_json::from_str::<Value>(&block.content) {
                    Ok(value) => match Checkpoint::from_value(&value) {
                        Some(cp) => produces = cp.variables.into_iter().collect(),
                        None => notes.push(format!(
                            "line {line}: the checkpoint block has neither a \"prompt\" nor a \"checkpoint\" key; it declares no outputs"
                        )),
                    },
                    Err(e) => notes.push(format!(
                        "line {}: the checkpoint block is not valid JSON ({e}); it declares no outputs",
                        line + e.line()
                    )),
                }
            }
        }
        for name in produces.keys() {
            if !is_identifier(name) {
                return Err(err(
                    None,
                    format!(
                        "the checkpoint block declares {name:?}, which is not a variable name (letters, digits, `_`, `.`)"
                    ),
                ));
            }
        }
        Ok(RawPrompt {
            front,
            footer,
            produces,
            has_checkpoint: checkpoint_heading.is_some(),
            validation: checkpoint::shell_blocks(body, "validation"),
            source: Source::File {
                offset: bytes.len() - body.len(),
            },
            parts: vec![Part {
                range: 0..body.len(),
                first_line: body_first_line,
                code: code_blocks,
            }],
            body: body.to_string(),
            hash,
            notes,
        })
    }
}

/// Splits `+++` TOML front matter off the top of `text`: (front matter, body, body's first line).
fn split_front_matter(
    text: &str,
) -> std::result::Result<(FrontMatter, &str, usize), (usize, String)> {
    let Some(rest) = text
        .strip_prefix("+++\n")
        .or_else(|| text.strip_prefix("+++\r\n"))
    else {
        return Ok((FrontMatter::default(), text, 1));
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "+++" {
            let toml_text = &rest[..offset];
            let body = &rest[offset + line.len()..];
            let written: WrittenFront = toml::from_str(toml_text).map_err(|e| {
                let line = 1 + e.span().map_or(1, |s| line_of(toml_text, s.start));
                (line, format!("front matter: {}", e.message().trim_end()))
            })?;
            let front = written.check(|offset| 1 + line_of(toml_text, offset))?;
            let body_first_line = line_of(text, text.len() - body.len());
            return Ok((front, body, body_first_line));
        }
        offset += line.len();
    }
    Err((
        1,
        "front matter opened with +++ is never closed; end it with a line of +++".into(),
    ))
}

/// `ranges` of `text` joined by newlines, and where each is in the result.
pub(super) fn joined(text: &str, ranges: &[Range<usize>]) -> (String, Vec<Part>) {
    let mut body = String::new();
    let mut parts = Vec::new();
    for r in ranges {
        if !body.is_empty() {
            body.push('\n');
        }
        let start = body.len();
        body.push_str(text.get(r.clone()).unwrap_or_default());
        parts.push(Part {
            range: start..body.len(),
            first_line: line_of(text, r.start),
            code: Vec::new(),
        });
    }
    (body, parts)
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Parses one prompt file's bytes as `plan` would (front matter, footer, checkpoint
/// section, placeholders), with no other prompt declaring anything: for fuzzing and
/// property tests. Returns the placeholder names found, or the file's error.
pub(crate) fn parse_prompt_bytes(bytes: &[u8]) -> std::result::Result<Vec<String>, PlanError> {
    let raw = RawPrompt::parse(Path::new("fuzz.md"), bytes)?;
    let known = |name: &str| raw.produces.contains_key(crate::template::root_name(name));
    let part = &raw.parts[0];
    let (template, unknown) =
        crate::template::Template::parse(&raw.body, &known, &part.code, part.first_line);
    let _ = template.render(&raw.body, &BTreeMap::new());
    Ok(unknown.into_iter().map(|u| u.name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footers() {
        let f = Footer::parse("body\n---\n*Tokens: ~2000 | Time: 5 min | Checkpoint: Required*\n")
            .expect("footer");
        assert_eq!(f.tokens, Some(2000));
        assert_eq!(f.minutes, Some(5.0));
        assert_eq!(f.checkpoint, Some(CheckpointMode::Required));
        let f =
            Footer::parse("*Tokens: ~2.5k | Time: 1 h | Checkpoint: Optional*").expect("footer");
        assert_eq!(
            (f.tokens, f.minutes, f.checkpoint),
            (Some(2500), Some(60.0), Some(CheckpointMode::Optional))
        );
        assert!(Footer::parse("*just emphasis*").is_none());
    }

    #[test]
    fn front_matter_is_removed_and_lines_kept() {
        let text = "+++\nmax_tokens = 500\ndepends_on = [\"01.1\"]\n+++\n# Title\n";
        let (front, body, first) = split_front_matter(text).expect("front matter");
        assert_eq!(front.max_tokens, Some(500));
        assert_eq!(front.depends_on, vec![("01.1".to_string(), 3)]);
        assert_eq!(body, "# Title\n");
        assert_eq!(first, 5);
        let (line, msg) =
            split_front_matter("+++\nmax_tokens = 1\nbogus = 2\n+++\n").expect_err("unknown key");
        assert_eq!(line, 3);
        assert!(msg.contains("bogus"), "{msg}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_prompt_bytes(&bytes);
            }

            #[test]
            fn any_text_parses_without_panic(text in "(\\PC|\n|\\{|\\}|\\+\\+\\+|```|#|\\*|\\|)*") {
                let _ = parse_prompt_bytes(text.as_bytes());
                let _ = Footer::parse(&text);
            }

        }
    }
}
