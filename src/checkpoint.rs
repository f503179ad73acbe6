//! The checkpoint protocol (docs, "What is sent"): the fenced ```json block a reply ends with,
//! and the same block in a prompt's `## Checkpoint` section, which declares its outputs.
//!
//! Markdown is parsed with `pulldown-cmark`, so fences are found as CommonMark finds them
//! (backticks or tildes, any length, indented, unclosed at the end of a reply).

use std::collections::BTreeMap;
use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A code block: where it is in the text, its info string (empty for indented blocks) and
/// the text between its fences.
#[derive(Debug, Clone)]
pub(crate) struct CodeBlock {
    pub(crate) range: Range<usize>,
    pub(crate) info: String,
    pub(crate) content: String,
    /// Where the content is in the text (between the fences; empty at the block's end
    /// when there is none).
    pub(crate) content_range: Range<usize>,
}

impl CodeBlock {
    /// A block that holds prose for a model rather than code: untagged, or tagged
    /// `text`, `markdown`, `md`, `prompt` or `txt` (what `[prompts] send = "fenced"` sends).
    pub(crate) fn is_prose(&self) -> bool {
        let lang = self.info.split_whitespace().next().unwrap_or("");
        lang.is_empty()
            || ["text", "txt", "markdown", "md", "prompt", "plaintext"]
                .iter()
                .any(|l| lang.eq_ignore_ascii_case(l))
    }

    pub(crate) fn is_json(&self) -> bool {
        let lang = self.info.split_whitespace().next().unwrap_or("");
        lang.eq_ignore_ascii_case("json") || lang.eq_ignore_ascii_case("jsonc")
    }
}

/// A heading: level 1–6, its text, where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Heading {
    pub(crate) level: u8,
    pub(crate) text: String,
    pub(crate) start: usize,
}

/// The code blocks and headings of a markdown text, in order.
pub(crate) fn outline(markdown: &str) -> (Vec<CodeBlock>, Vec<Heading>) {
    let mut blocks = Vec::new();
    let mut headings = Vec::new();
    let mut open_block: Option<CodeBlock> = None;
    let mut open_heading: Option<Heading> = None;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                open_block = Some(CodeBlock {
                    content_range: range.end..range.end,
                    range,
                    info,
                    content: String::new(),
                });
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(open_block.take()),
            Event::Start(Tag::Heading { level, .. }) => {
                open_heading = Some(Heading {
                    level: heading_level(level),
                    text: String::new(),
                    start: range.start,
                });
            }
            Event::End(TagEnd::Heading(_)) => headings.extend(open_heading.take()),
            Event::Text(text) | Event::Code(text) => {
                if let Some(block) = open_block.as_mut() {
                    if block.content.is_empty() {
                        block.content_range = range.clone();
                    }
                    block.content_range.end = range.end;
                    block.content.push_str(&text);
                } else if let Some(heading) = open_heading.as_mut() {
                    heading.text.push_str(&text);
                }
            }
            _ => {}
        }
    }
    (blocks, headings)
}

/// The byte range of the first section whose heading is `title` (any level and case,
/// emphasis and trailing punctuation aside: `## Validation:` is one, `### Validation rules
/// of the app` is not): from its heading to the next heading of the same or a higher level.
pub(crate) fn section(markdown: &str, title: &str) -> Option<Range<usize>> {
    let (_, headings) = outline(markdown);
    section_of(markdown, &headings, title)
}

fn section_of(markdown: &str, headings: &[Heading], title: &str) -> Option<Range<usize>> {
    let at = headings.iter().position(|h| is_titled(&h.text, title))?;
    let heading = &headings[at];
    let end = headings[at + 1..]
        .iter()
        .find(|n| n.level <= heading.level)
        .map_or(markdown.len(), |n| n.start);
    Some(heading.start..end)
}

/// Whether a heading's text is `title`: case aside, and emphasis, whitespace and
/// punctuation at its end.
fn is_titled(text: &str, title: &str) -> bool {
    let text = text
        .trim()
        .trim_start_matches(['*', '_', '`'])
        .trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || c == '…');
    text.eq_ignore_ascii_case(title)
}

/// The shell blocks (`bash`, `sh`, `shell`) of the section headed `title`: a prompt's
/// `## Validation` checks or its `## Execute` steps.
pub(crate) fn shell_blocks(markdown: &str, title: &str) -> Vec<String> {
    let (blocks, headings) = outline(markdown);
    let Some(range) = section_of(markdown, &headings, title) else {
        return Vec::new();
    };
    blocks
        .into_iter()
        .filter(|b| range.contains(&b.range.start))
        .filter(|b| {
            let lang = b.info.split_whitespace().next().unwrap_or("");
            ["bash", "sh", "shell"]
                .iter()
                .any(|l| lang.eq_ignore_ascii_case(l))
        })
        .map(|b| b.content)
        .collect()
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// A checkpoint block, as a reply returns it or a prompt shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Checkpoint {
    /// The prompt the block names (`"prompt"` or `"checkpoint"`), if it names one.
    pub(crate) names: Option<String>,
    /// The `"success"` key as written (the seed's save block has none: absent means
    /// success). Kept raw so that `"success": "false"` can be told apart from `false`.
    pub(crate) success: Option<Value>,
    /// `outputs`, or `data.variables`.
    pub(crate) variables: Map<String, Value>,
    pub(crate) files_created: Vec<String>,
}

impl Checkpoint {
    /// Reads a JSON object in either seed shape; `None` if it is neither.
    pub(crate) fn from_value(value: &Value) -> Option<Checkpoint> {
        let object = value.as_object()?;
        if !object.contains_key("prompt") && !object.contains_key("checkpoint") {
            return None;
        }
        let names = object
            .get("prompt")
            .or_else(|| object.get("checkpoint"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        let data = object.get("data").and_then(Value::as_object);
        let variables = object
            .get("outputs")
            .or_else(|| data.and_then(|d| d.get("variables")))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let files_created = data
            .and_then(|d| d.get("files_created"))
            .or_else(|| object.get("files_created"))
            .and_then(Value::as_array)
            .map(|files| {
                files
                    .iter()
                    .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Some(Checkpoint {
            names,
            success: object.get("success").cloned(),
            variables,
            files_created,
        })
    }

    /// Whether the block reports success: `true`, `false`, or why it says neither.
    pub(crate) fn succeeded(&self) -> Result<bool, String> {
        match &self.success {
            None | Some(Value::Bool(true)) => Ok(true),
            Some(Value::Bool(false)) => Ok(false),
            Some(other) => Err(format!(
                "the checkpoint's \"success\" is {other}, not true or false; write it as a JSON boolean"
            )),
        }
    }
}

/// How deep a value nests: 0 for a scalar, 1 for a flat array or object.
pub(crate) fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A reply's leading `<think>…</think>` (DeepSeek-R1 style, as LM Studio, Ollama and
/// vLLM without a reasoning parser send it): the reasoning, and the answer after it. A
/// reply without one is all answer; an unclosed one is all reasoning.
pub(crate) fn split_thinking(reply: &str) -> (Option<&str>, &str) {
    let trimmed = reply.trim_start();
    let Some(rest) = trimmed.strip_prefix("<think>") else {
        return (None, reply);
    };
    match rest.find("</think>") {
        Some(end) => (Some(&rest[..end]), &rest[end + "</think>".len()..]),
        None => (Some(rest), ""),
    }
}

/// The checkpoint block of a reply: the last fenced block that parses as a JSON object with
/// a `checkpoint` or `prompt` key. Blocks marked `json` are tried, then unmarked ones.
pub(crate) fn from_reply(reply: &str) -> Option<Checkpoint> {
    let (blocks, _) = outline(reply);
    blocks
        .iter()
        .rev()
        .filter(|b| b.is_json() || b.info.trim().is_empty())
        .find_map(|b| {
            let value = parse_exact(b.content.trim()).ok()?;
            Checkpoint::from_value(&value)
        })
}

/// Blocks larger than this are parsed with doubles only (re-parsing for exact numbers
/// costs a pass per level of nesting).
const EXACT_LIMIT: usize = 256 * 1024;

/// Parses JSON, keeping a number that a double cannot hold (an integer beyond 64 bits, a
/// decimal of more than 17 significant digits) as the string of its digits, so that it is
/// substituted exactly as written rather than as `1.2345678901234568e+29`.
pub(crate) fn parse_exact(text: &str) -> serde_json::Result<Value> {
    let value: Value = serde_json::from_str(text)?;
    if text.len() > EXACT_LIMIT || !has_long_number(text) {
        return Ok(value);
    }
    let raw: Box<RawValue> = serde_json::from_str(text)?;
    Ok(exact(&raw))
}

/// Whether `text` holds a run of more than 15 digits (a number a double may not hold).
fn has_long_number(text: &str) -> bool {
    let mut run = 0;
    text.bytes().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run > 15
    })
}

fn exact(raw: &RawValue) -> Value {
    let text = raw.get().trim();
    let parsed = match text.as_bytes().first() {
        Some(b'{') => serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(text)
            .ok()
            .map(|m| Value::Object(m.iter().map(|(k, v)| (k.clone(), exact(v))).collect())),
        Some(b'[') => serde_json::from_str::<Vec<Box<RawValue>>>(text)
            .ok()
            .map(|items| Value::Array(items.iter().map(|v| exact(v)).collect())),
        Some(b'-' | b'0'..=b'9') if lossy(text) => Some(Value::String(text.to_string())),
        _ => None,
    };
    parsed.unwrap_or_else(|| serde_json::from_str(text).unwrap_or(Value::Null))
}

/// Whether a JSON number lexeme loses digits as a double (or a 64-bit integer).
fn lossy(lexeme: &str) -> bool {
    let digits = lexeme.trim_start_matches('-');
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        return lexeme.parse::<i64>().is_err() && lexeme.parse::<u64>().is_err();
    }
    let mantissa = digits.split(['e', 'E']).next().unwrap_or("");
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    significant > 17
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_before_the_answer_is_set_apart() {
        for (reply, thinking, answer) in [
            (
                "<think>\nhmm {\"prompt\": 1}\n</think>\n\nDone.",
                Some("\nhmm {\"prompt\": 1}\n"),
                "\n\nDone.",
            ),
            ("  <think>a</think>b", Some("a"), "b"),
            ("<think>never closed", Some("never closed"), ""),
            (
                "No thinking. <think>late</think>",
                None,
                "No thinking. <think>late</think>",
            ),
            ("", None, ""),
        ] {
            assert_eq!(split_thinking(reply), (thinking, answer), "{reply:?}");
        }
    }
    use serde_json::json;

    #[test]
    fn both_seed_shapes_are_read() {
        let a = "done\n```json\n{\"checkpoint\": \"01.2\", \"action\": \"save\", \"data\": {\"files_created\": [\"requirements.txt\"], \"variables\": {\"venv_path\": \"/v\"}}}\n```\n";
        let cp = from_reply(a).expect("seed save shape");
        assert_eq!(cp.names.as_deref(), Some("01.2"));
        assert_eq!(cp.succeeded(), Ok(true));
        assert_eq!(cp.variables["venv_path"], "/v");
        assert_eq!(cp.files_created, vec!["requirements.txt"]);

        let b = "```json\n{\"prompt\": \"01.1-python-setup\", \"success\": false, \"outputs\": {\"x\": 1}}\n```";
        let cp = from_reply(b).expect("prompt shape");
        assert_eq!(cp.succeeded(), Ok(false));
        assert_eq!(cp.variables["x"], 1);
    }

    #[test]
    fn the_last_parsing_block_wins() {
        let reply = "```json\n{\"prompt\": \"a\", \"outputs\": {\"v\": 1}}\n```\ntext\n```json\n{\"prompt\": \"a\", \"outputs\": {\"v\": 2}}\n```\n```json\n{not json\n```\n```json\n{\"other\": true}\n```";
        assert_eq!(from_reply(reply).expect("block").variables["v"], 2);
    }

    #[test]
    fn no_block_is_none() {
        assert!(from_reply("no block here").is_none());
        assert!(from_reply("```python\nprint(1)\n```").is_none());
    }

    #[test]
    fn unclosed_fence_at_the_end_still_counts() {
        let reply = "text\n```json\n{\"prompt\": \"a\", \"outputs\": {\"v\": 3}}\n";
        assert_eq!(from_reply(reply).expect("block").variables["v"], 3);
    }

    #[test]
    fn tildes_and_long_fences() {
        let reply = "~~~~json\n{\"prompt\": \"a\", \"outputs\": {\"v\": 4}}\n~~~~\n";
        assert_eq!(from_reply(reply).expect("block").variables["v"], 4);
    }

    #[test]
    fn success_must_be_a_boolean() {
        let read = |v: &str| {
            from_reply(&format!(
                "```json\n{{\"prompt\": \"a\", \"success\": {v}}}\n```"
            ))
            .expect("block")
            .succeeded()
        };
        assert_eq!(read("true"), Ok(true));
        assert_eq!(read("false"), Ok(false));
        assert!(read("\"false\"").is_err());
        assert!(read("null").is_err());
        assert_eq!(
            from_reply("```json\n{\"checkpoint\": \"a\"}\n```")
                .expect("block")
                .succeeded(),
            Ok(true),
            "the seed's save block has no success key"
        );
    }

    #[test]
    fn numbers_a_double_cannot_hold_are_kept_as_written() {
        for (written, kept) in [
            (
                "123456789012345678901234567890",
                json!("123456789012345678901234567890"),
            ),
            (
                "-123456789012345678901234567890",
                json!("-123456789012345678901234567890"),
            ),
            (
                "0.12345678901234567890123",
                json!("0.12345678901234567890123"),
            ),
            ("18446744073709551615", json!(18446744073709551615u64)),
            ("-9223372036854775808", json!(-9223372036854775808i64)),
            ("1.5", json!(1.5)),
            ("1e300", json!(1e300)),
        ] {
            let v = parse_exact(&format!(
                "{{\"a\": [{{\"b\": {written}}}], \"c\": 1234567890123456789}}"
            ))
            .expect("parses");
            assert_eq!(v["a"][0]["b"], kept, "{written}");
            assert_eq!(v["c"], json!(1234567890123456789u64), "{written}");
        }
    }

    #[test]
    fn sections_and_their_shell_blocks() {
        let md = "# P\n\n## Execute\n```bash\nmake\n```\n\n## Validation\n- [ ] a checklist\n```bash\ntest -f a\n```\n```python\nprint(1)\n```\n### Sub\n```sh\ntest -f b\n```\n## If Failed\nTry again.\n";
        assert_eq!(
            shell_blocks(md, "validation"),
            ["test -f a\n", "test -f b\n"]
        );
        assert_eq!(shell_blocks(md, "execute"), ["make\n"]);
        assert!(shell_blocks(md, "nothing").is_empty());
        let failed = section(md, "if failed").expect("section");
        assert_eq!(md[failed].trim(), "## If Failed\nTry again.");
    }

    #[test]
    fn only_a_heading_that_is_the_title_opens_its_section() {
        let cases = [
            ("## Validation\n```bash\na\n```\n", vec!["a\n"]),
            ("### validation:\n```bash\na\n```\n", vec!["a\n"]),
            ("## **Validation**\n```bash\na\n```\n", vec!["a\n"]),
            ("# VALIDATION.\n```sh\na\n```\n", vec!["a\n"]),
            ("### Validation rules of the app\n```bash\nx\n```\n", vec![]),
            ("## Validations\n```bash\nx\n```\n", vec![]),
            (
                "### Validation rules\n```bash\nx\n```\n## Validation\n```bash\na\n```\n## Validation\n```bash\nb\n```\n",
                vec!["a\n"],
            ),
        ];
        for (md, want) in cases {
            assert_eq!(shell_blocks(md, "validation"), want, "{md:?}");
        }
    }

    #[test]
    fn a_blocks_content_is_where_the_text_says() {
        let md = "Copy this:\n\n```\nWrite a poem\nabout {{topic}}\n```\n\n~~~text\nSecond\n~~~\n```bash\nls\n```\n";
        let (blocks, _) = outline(md);
        let prose: Vec<&str> = blocks
            .iter()
            .filter(|b| b.is_prose())
            .map(|b| &md[b.content_range.clone()])
            .collect();
        assert_eq!(prose, ["Write a poem\nabout {{topic}}\n", "Second\n"]);
    }

    #[test]
    fn depth_counts_levels_of_nesting() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}]})), 4);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_reply_parses_without_panic(text in "(\\PC|\n|```|~~~|\\{|\\})*") {
                let _ = from_reply(&text);
            }

            #[test]
            fn a_block_at_the_end_is_found(
                prefix in "[a-zA-Z0-9 .,\n]{0,200}",
                outputs in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,12}", 0..5),
            ) {
                let block = serde_json::json!({"prompt": "p", "success": true, "outputs": outputs});
                let reply = format!("{prefix}\n\n```json\n{block}\n```\n");
                let cp = from_reply(&reply).expect("the block is found");
                let got: std::collections::BTreeMap<String, String> = cp
                    .variables
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                    .collect();
                prop_assert_eq!(got, outputs);
            }
        }
    }
}
