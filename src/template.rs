//! The placeholder engine (docs, "Prompt files"): where `{{name}}` is in a text, and the text
//! with values filled in.
//!
//! Placeholders: `{{name}}` where `name` is an identifier (letters, digits, `_`; `.` between
//! keys; spaces around it allowed). Not a placeholder: `${{ … }}` (GitHub Actions), `{{{…`
//! (a run of three braces, as in Python's `f"{{{x}}}"`), anything that is not a name
//! (`QMainWindow {{`), and `\{{name}}`, which is sent as `{{name}}`. A name nothing defines,
//! or a malformed one (`{{a.}}`), is returned to the caller, who decides: inside a code block
//! it stays text (Jinja's `{{ track.title }}`), outside it is an error.
//!
//! A leaf: it knows nothing of prompts or config. A template holds ranges, not text, so
//! that a plan of a thousand prompts does not keep their text in memory.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::Value;

use crate::error::line_of;

/// `true` for a variable name: letters (any script: `タイトル`, `título`), digits and `_`,
/// not starting with a digit, with `.` between keys (`paths.src`; not `a.` or `a..b`).
pub(crate) fn is_identifier(name: &str) -> bool {
    matches!(name.chars().next(), Some(c) if c.is_alphabetic() || c == '_')
        && name
            .split('.')
            .all(|key| !key.is_empty() && key.chars().all(is_name_char))
}

/// A letter or digit of any script, or `_`.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Letters, digits, `_` and `.`, starting with a letter or `_`: what a placeholder's name
/// is made of, well formed or not (`{{a.}}` is a malformed placeholder, not text).
fn is_name_like(name: &str) -> bool {
    matches!(name.chars().next(), Some(c) if c.is_alphabetic() || c == '_')
        && name.chars().all(|c| is_name_char(c) || c == '.')
}

/// A piece of a prompt: a range of its text, sent as written, or a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Text(Range<usize>),
    Var { name: String, line: usize },
}

/// Where the placeholders are in a text, ready to render it with variable values. It
/// holds ranges, not the text: a plan of a thousand prompts does not keep their text in
/// memory; the text is read again when the request is built (see [`Prompt::read_body`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
}

/// Something the placeholder scan found that is not a plain known placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unknown {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) in_code: bool,
    /// Not a variable name at all (`{{a.}}`), rather than a name nothing defines.
    pub(crate) malformed: bool,
}

impl Template {
    /// Splits `text` into segments. `known` says whether a placeholder name is defined;
    /// `code` holds the byte ranges of code blocks; `first_line` is the line of `text`'s
    /// first byte in its file. Unknown names are returned beside the template: outside
    /// code they are errors for the caller to report, inside code they stay text.
    pub(crate) fn parse(
        text: &str,
        known: &dyn Fn(&str) -> bool,
        code: &[Range<usize>],
        first_line: usize,
    ) -> (Template, Vec<Unknown>) {
        let mut segments = Vec::new();
        let mut unknown = Vec::new();
        let mut text_start = 0; // start of the text not yet pushed
        let mut from = 0;
        let bytes = text.as_bytes();
        while let Some(found) = text[from..].find("{{") {
            let at = from + found;
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before == Some(b'$') || before == Some(b'{') {
                from = at + 2;
                continue;
            }
            let Some((name, end)) = placeholder_at(text, at) else {
                from = at + 1;
                continue;
            };
            if before == Some(b'\\') {
                // `\{{name}}`: the backslash is dropped, the rest is sent as written.
                push_text(&mut segments, text_start..at - 1);
                text_start = at;
                from = end;
                continue;
            }
            let line = first_line + line_of(text, at) - 1;
            if is_identifier(name) && known(name) {
                push_text(&mut segments, text_start..at);
                segments.push(Segment::Var {
                    name: name.to_string(),
                    line,
                });
                text_start = end;
            } else {
                unknown.push(Unknown {
                    name: name.to_string(),
                    line,
                    in_code: code.iter().any(|r| r.contains(&at)),
                    malformed: !is_identifier(name),
                });
            }
            from = end;
        }
        push_text(&mut segments, text_start..text.len());
        (Template { segments }, unknown)
    }

    /// The placeholder names, in order of first use.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var { name, .. } => Some(name.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Fills in every placeholder of `text` (the text it was parsed from); the error lists
    /// the names with no value.
    pub(crate) fn render(
        &self,
        text: &str,
        vars: &BTreeMap<String, Value>,
    ) -> std::result::Result<String, Vec<String>> {
        let mut out = String::with_capacity(text.len());
        let mut missing = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(r) => out.push_str(text.get(r.clone()).unwrap_or_default()),
                Segment::Var { name, .. } => match lookup(|n| vars.get(n), name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => missing.push(name.clone()),
                },
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(missing)
        }
    }
}

fn push_text(segments: &mut Vec<Segment>, range: Range<usize>) {
    if !range.is_empty() {
        segments.push(Segment::Text(range));
    }
}

/// If `{{ name }}` starts at `at`, its name and the offset just past its `}}`.
fn placeholder_at(text: &str, at: usize) -> Option<(&str, usize)> {
    let rest = &text[at + 2..];
    let inner_start = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let after_spaces = &rest[inner_start..];
    let name_len = after_spaces
        .find(|c: char| !(is_name_char(c) || c == '.'))
        .unwrap_or(after_spaces.len());
    let name = &after_spaces[..name_len];
    if !is_name_like(name) {
        return None;
    }
    let tail = after_spaces[name_len..].trim_start_matches([' ', '\t']);
    if !tail.starts_with("}}") {
        return None;
    }
    let end = text.len() - tail.len() + 2;
    Some((name, end))
}

/// A variable's value, `get` giving variables by name: the whole dotted name first, else a
/// path into an object variable (`{{paths.src}}` reads key `src` of variable `paths`;
/// arrays are not indexed).
pub(crate) fn lookup<'a>(get: impl Fn(&str) -> Option<&'a Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut value = get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// The root name a placeholder depends on (`paths` for `paths.src`).
pub(crate) fn root_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str, known: &[&str]) -> (Template, Vec<Unknown>) {
        // Fenced code: from a line of ``` to the next.
        let mut code = Vec::new();
        let mut open = None;
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            if line.starts_with("```") {
                match open.take() {
                    None => open = Some(at),
                    Some(start) => code.push(start..at + line.len()),
                }
            }
            at += line.len();
        }
        Template::parse(text, &|n: &str| known.contains(&root_name(n)), &code, 1)
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    #[test]
    fn placeholders_and_what_is_not_one() {
        let text = "Root {{project_root}} and {{ venv_path }}.\n\
                    f\"QMainWindow {{ background: {bg}; }}\"\n\
                    ${{ github.ref }} and {{{x}}} and \\{{project_root}}\n";
        let (t, unknown) = scan(text, &["project_root", "venv_path"]);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(t.names().collect::<Vec<_>>(), ["project_root", "venv_path"]);
        let out = t
            .render(text, &vars(&[("project_root", "/p"), ("venv_path", "/v")]))
            .expect("render");
        assert_eq!(
            out,
            "Root /p and /v.\nf\"QMainWindow {{ background: {bg}; }}\"\n${{ github.ref }} and {{{x}}} and {{project_root}}\n"
        );
    }

    #[test]
    fn unknown_names_outside_and_inside_code() {
        let text = "Use {{nope}} here.\n\n```jinja\n<h1>{{ track.title }}</h1>\n```\n";
        let (t, unknown) = scan(text, &[]);
        assert_eq!(
            unknown,
            vec![
                Unknown {
                    name: "nope".into(),
                    line: 1,
                    in_code: false,
                    malformed: false,
                },
                Unknown {
                    name: "track.title".into(),
                    line: 4,
                    in_code: true,
                    malformed: false,
                },
            ]
        );
        // Unknown names stay in the text as written.
        assert_eq!(t.render(text, &BTreeMap::new()).expect("no vars"), text);
    }

    #[test]
    fn dotted_names_read_into_objects() {
        let mut v = BTreeMap::new();
        v.insert("paths".to_string(), serde_json::json!({"src": "/s"}));
        let (t, _) = scan("{{paths.src}}", &["paths"]);
        assert_eq!(t.render("{{paths.src}}", &v).expect("render"), "/s");
        assert_eq!(
            t.render("{{paths.src}}", &BTreeMap::new()),
            Err(vec!["paths.src".to_string()])
        );
    }

    #[test]
    fn malformed_names_are_reported_not_sent_as_text() {
        let (_, unknown) = scan("{{a.}} and {{a..b}} and {{ok}}", &["a", "ok"]);
        let malformed: Vec<_> = unknown
            .iter()
            .filter(|u| u.malformed)
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(malformed, ["a.", "a..b"]);
    }

    #[test]
    fn identifiers() {
        for (name, ok) in [
            ("a", true),
            ("_a1", true),
            ("paths.src", true),
            ("a.b.c", true),
            ("1a", false),
            ("a.", false),
            (".a", false),
            ("a..b", false),
            ("", false),
            ("a-b", false),
            ("タイトル", true),
            ("título_do_produto", true),
            ("PRODUCT_NAME", true),
            ("١a", false),
            ("a b", false),
        ] {
            assert_eq!(is_identifier(name), ok, "{name:?}");
        }
        let (template, unknown) = scan("# {{タイトル}} and {{ título }}", &["タイトル", "título"]);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(template.names().collect::<Vec<_>>(), ["タイトル", "título"]);
    }

    #[test]
    fn arrays_are_not_indexed() {
        let mut v = BTreeMap::new();
        v.insert("arr".to_string(), serde_json::json!([1, 2]));
        assert_eq!(lookup(|n| v.get(n), "arr.0"), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn text_without_placeholders_is_sent_as_written(text in "[^{]*(\\{[^{][^{]*)*") {
                let (t, unknown) = Template::parse(&text, &|_: &str| true, &[], 1);
                prop_assert!(unknown.is_empty());
                prop_assert_eq!(t.render(&text, &BTreeMap::new()).expect("no placeholders"), text);
            }

            #[test]
            fn placeholders_are_replaced_once(
                before in "[a-z ]{0,20}",
                name in "[a-z_][a-z0-9_]{0,10}",
                value in "[a-z{} ]{0,20}",
                after in "[a-z ]{0,20}",
            ) {
                let text = format!("{before}{{{{{name}}}}}{after}");
                let (t, unknown) = Template::parse(&text, &|n: &str| n == name, &[], 1);
                prop_assert!(unknown.is_empty());
                let mut vars = BTreeMap::new();
                vars.insert(name.clone(), Value::from(value.clone()));
                // The value is inserted as text: braces in it are not expanded again.
                prop_assert_eq!(t.render(&text, &vars).expect("render"), format!("{before}{value}{after}"));
            }
        }
    }
}
