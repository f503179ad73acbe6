//! The house as `lib.rs` draws it, checked from the source: each module uses only the
//! layers below it, no two modules (nor two files of one module) use each other, no file
//! is over 600 lines and no function over 100 (tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo;

/// The layers, lowest first. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &[
        "tokens",
        "template",
        "checkpoint",
        "process",
        "lockfile",
        "text",
        "documents",
    ],
    &["config"],
    &["plan", "workspace"],
    &["request", "verify"],
    &["providers"],
    &["state"],
    &["budget", "estimate"],
    &["views", "history"],
    &["runner"],
    &["tables", "printer"],
    &["report"],
    &["settings"],
    &["commands"],
    &["cli", "fuzzing"],
];

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

/// Every `.rs` file under `src/`, with its text up to its tests.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = repo().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            (
                path.strip_prefix(&src).expect("under src").to_path_buf(),
                code,
            )
        })
        .collect()
}

/// The top-level module a file belongs to (`state` for `state/fold.rs`), `None` for the
/// crate root and `main.rs`.
fn module_of(path: &Path) -> Option<String> {
    let first = path.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Code with comments, strings and character literals blanked out (lines kept), so that
/// neither a `crate::` in a doc comment nor a `{` in a format string counts.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
            continue;
        }
        let raw = rest
            .strip_prefix('r')
            .map(|r| r.len() - r.trim_start_matches('#').len())
            .filter(|&hashes| rest[1 + hashes..].starts_with('"'));
        if let Some(hashes) = raw {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            let end = text[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            out.extend(text[i..end].chars().filter(|&c| c == '\n'));
            i = end;
            continue;
        }
        if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.extend(text[i..j.min(b.len())].chars().filter(|&c| c == '\n'));
            i = j + 1;
            continue;
        }
        if b[i] == b'\'' {
            // A char literal ('{', '\n', '\''), not a lifetime ('a).
            let lit = if let Some(escaped) = rest.strip_prefix("'\\") {
                escaped.find('\'').map(|n| n + 3)
            } else {
                rest.char_indices()
                    .nth(2)
                    .filter(|&(_, c)| c == '\'')
                    .map(|(n, _)| n + 1)
            };
            if let Some(len) = lit {
                i += len;
                continue;
            }
        }
        let c = rest.chars().next().expect("a char");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a file's code names with `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // `crate::x`, not `some_crate::x`.
            *at == 0
                || !code.as_bytes()[at - 1].is_ascii_alphanumeric()
                    && code.as_bytes()[at - 1] != b'_'
        })
        .filter_map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources() {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let Some(mine) = rank(&module) else {
            problems.push(format!(
                "{}: module `{module}` is in no layer of LAYERS",
                path.display()
            ));
            continue;
        };
        for used in uses(&code_only(&text)) {
            if used == module {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .insert(used.clone());
            match rank(&used) {
                None => problems.push(format!("{}: uses `{used}`, in no layer", path.display())),
                Some(theirs) if theirs >= mine => problems.push(format!(
                    "{}: `{module}` (layer {}) uses `{used}` (layer {}), which is not below it",
                    path.display(),
                    mine + 1,
                    theirs + 1
                )),
                Some(_) => {}
            }
        }
    }
    for (a, used) in &graph {
        for b in used {
            if graph.get(b).is_some_and(|back| back.contains(a)) {
                problems.push(format!("`{a}` and `{b}` use each other"));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn no_two_files_of_a_module_use_each_other() {
    // Within `state/`, `runner/`...: which sibling files each file names (`super::x`,
    // `crate::state::x`; `mod.rs` is named by `super::Item` for an item of its own, and
    // names a sibling by `x::`), and no pair both ways.
    let files = sources();
    let mut by_dir: BTreeMap<PathBuf, Vec<(String, String)>> = BTreeMap::new();
    for (path, text) in &files {
        if let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let stem = stem.to_string_lossy().to_string();
            by_dir
                .entry(dir.to_path_buf())
                .or_default()
                .push((stem, code_only(text)));
        }
    }
    let mut problems = Vec::new();
    for (dir, members) in &by_dir {
        let names: BTreeSet<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        let module = dir.to_string_lossy().replace('/', "::");
        let graph: BTreeMap<&str, BTreeSet<String>> = members
            .iter()
            .map(|(n, code)| (n.as_str(), sibling_uses(n, code, &module, &names)))
            .collect();
        for (a, used) in &graph {
            for b in used {
                if b.as_str() != *a
                    && graph.get(b.as_str()).is_some_and(|back| back.contains(*a))
                    && a < &b.as_str()
                {
                    problems.push(format!(
                        "{}/{a}.rs and {}/{b}.rs use each other",
                        dir.display(),
                        dir.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The sibling files (of `names`, in `module`) that file `me` names.
fn sibling_uses(me: &str, code: &str, module: &str, names: &BTreeSet<&str>) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Each path `super::x` or `crate::module::x` in the file: its `x`.
    let mut named = BTreeSet::new();
    for prefix in ["super::".to_string(), format!("crate::{module}::")] {
        for (at, m) in code.match_indices(prefix.as_str()) {
            if at > 0
                && (ident(code[..at].chars().last().unwrap_or(' ')) || code[..at].ends_with("::"))
            {
                continue;
            }
            let x: String = code[at + m.len()..]
                .chars()
                .take_while(|&c| ident(c))
                .collect();
            if x.is_empty() {
                // `use super::{a, b}`: each name in the braces.
                if let Some(list) = code[at + m.len()..].strip_prefix('{') {
                    let list = &list[..list.find('}').unwrap_or(0)];
                    named.extend(list.split(',').filter_map(|item| {
                        let item = item.trim();
                        let x: String = item.chars().take_while(|&c| ident(c)).collect();
                        (!x.is_empty()).then_some(x)
                    }));
                }
                continue;
            }
            named.insert(x);
        }
    }
    let mut used: BTreeSet<String> = named
        .iter()
        .map(|x| {
            if names.contains(x.as_str()) && x != "mod" {
                x.clone()
            } else if me == "mod" {
                // `super::x` in mod.rs names the parent's module.
                String::new()
            } else {
                // An item of mod.rs (`super::Session`, `super::tell`).
                "mod".to_string()
            }
        })
        .filter(|x| !x.is_empty() && x != me)
        .collect();
    if me == "mod" {
        // mod.rs names a sibling by a path through it (`use events::Observer`).
        for n in names.iter().filter(|n| **n != "mod") {
            let pattern = format!("{n}::");
            if code.match_indices(pattern.as_str()).any(|(at, _)| {
                at == 0 || {
                    let before = &code[..at];
                    !before.ends_with(|c: char| ident(c) || c == ':')
                }
            }) {
                used.insert(n.to_string());
            }
        }
    }
    used
}

#[test]
fn every_inherent_impl_is_in_the_file_that_defines_its_type() {
    let mut problems = Vec::new();
    for (path, text) in sources() {
        let code = code_only(&text);
        for (name, line) in inherent_impls(&code) {
            if !defines(&code, &name) {
                problems.push(format!(
                    "{}:{line}: `impl {name}` for a type defined elsewhere",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Each inherent `impl` block (not `impl Trait for`): (its type's name, line).
fn inherent_impls(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !(t.starts_with("impl ") || t.starts_with("impl<")) {
            continue;
        }
        // The header, up to the body's `{` (it may run over lines).
        let mut header = String::new();
        for l in &lines[i..] {
            match l.find('{') {
                Some(at) => {
                    header.push_str(&l[..at]);
                    break;
                }
                None => {
                    header.push_str(l);
                    header.push(' ');
                }
            }
        }
        let mut rest = header.trim_start()["impl".len()..].trim_start();
        if rest.starts_with('<') {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '<' => 1,
                        '>' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(at, _)| at + 1);
            rest = rest[end..].trim_start();
        }
        if rest.contains(" for ") {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let name = path.rsplit("::").next().unwrap_or("").to_string();
        if !name.is_empty() {
            found.push((name, i + 1));
        }
    }
    found
}

/// Whether `code` defines a struct, enum or union called `name`.
fn defines(code: &str, name: &str) -> bool {
    code.lines().any(|l| {
        let mut t = l.trim_start();
        if let Some(rest) = t.strip_prefix("pub") {
            t = rest.trim_start();
            if t.starts_with('(') {
                t = t[t.find(')').map_or(t.len(), |at| at + 1)..].trim_start();
            }
        }
        ["struct ", "enum ", "union "].iter().any(|kw| {
            t.strip_prefix(kw).is_some_and(|r| {
                r.starts_with(name)
                    && !r[name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        })
    })
}

#[test]
fn no_file_is_over_600_lines_and_no_function_over_100() {
    let mut problems = Vec::new();
    for (path, text) in sources() {
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!("{}: {lines} lines (tests aside)", path.display()));
        }
        for (name, start, len) in functions(&code_only(&text)) {
            if len > MAX_FN_LINES {
                problems.push(format!(
                    "{}:{start}: fn {name} is {len} lines",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Each function with a body: (name, first line, lines from signature to closing brace).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = find_fn(line) else { continue };
        let name: String = line[at + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // From the signature, the body opens at the first `{` at depth 0 (a `;` first means
        // no body), and ends where the depth comes back to 0.
        let mut depth = 0i32;
        let mut opened = false;
        let mut end = None;
        'scan: for (j, l) in lines.iter().enumerate().skip(i) {
            let from = if j == i { at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            end = Some(j);
                            break 'scan;
                        }
                    }
                    ';' if !opened && depth == 0 => break 'scan,
                    _ => {}
                }
            }
        }
        if let Some(end) = end {
            found.push((name, i + 1, end - i + 1));
        }
    }
    found
}

/// Where `fn name` starts in a line of code, if it declares a function.
fn find_fn(line: &str) -> Option<usize> {
    line.match_indices("fn ").map(|(at, _)| at).find(|&at| {
        (at == 0 || line.as_bytes()[at - 1] == b' ')
            && line[at + 3..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    })
}

#[test]
fn the_checks_see_what_they_are_meant_to() {
    // The scanner itself: comments and strings do not count, functions are measured.
    let code = code_only(
        "// crate::cli in a comment\nlet s = \"crate::cli {\";\nuse crate::config::Config;\nfn a() {\n    let c = '{';\n    x();\n}\n",
    );
    assert_eq!(uses(&code), BTreeSet::from(["config".to_string()]));
    assert_eq!(functions(&code), vec![("a".to_string(), 4, 4)]);
    assert_eq!(
        module_of(Path::new("state/fold.rs")).as_deref(),
        Some("state")
    );
    assert_eq!(module_of(Path::new("lib.rs")), None);
}
