//! Finding a build's prompts, as people lay them out:
//! - a folder of phase folders: any folder that holds prompt files (`NN-name.md`,
//!   `NN.M-name.md`) is a phase, whatever its name (`01-foundation`, `phase-0`,
//!   `Phase 2 - Core`), in the order of the first number in its name;
//! - a flat folder of prompt files (one phase, the folder itself; [`FLAT`]);
//! - a single plan file whose `Prompt N` sections each hold the prompt in a fenced block
//!   (`### Prompt 1: Project Setup`).
//!
//! Prompts run by id within their phase. When the files' own numbers repeat across phases
//! (each phase folder numbering from `01`), every id is qualified by its phase's number
//! (`2.01`), so that ids stay unique; `plan` shows the ids in use. What is not a prompt is
//! listed as ignored; two files with one id are an error.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::id::PromptId;
use super::prompt::Phase;
use crate::checkpoint;
use crate::config::Config;
use crate::error::{Error, PlanError, Result, line_of};

/// A prompt found, not yet read.
pub(super) struct Found {
    pub(crate) id: PromptId,
    pub(crate) path: PathBuf,
    /// Index into the phases.
    pub(crate) phase: usize,
    /// A plan file's section: its name and the prompt's block.
    pub(crate) section: Option<Section>,
}

/// One `Prompt N` section of a plan file.
pub(super) struct Section {
    /// `prompt-1-project-setup`, from its heading.
    pub(crate) name: String,
    /// The block's content, as a byte range of the file.
    pub(crate) block: Range<usize>,
    /// The line the content starts on.
    pub(crate) first_line: usize,
}

/// What a prompts folder (or plan file) holds.
pub(super) struct Discovered {
    pub(crate) phases: Vec<Phase>,
    /// In run order: phases in order, prompts by id within their phase.
    pub(crate) found: Vec<Found>,
    pub(crate) ignored: Vec<PathBuf>,
    pub(crate) notes: Vec<String>,
    pub(crate) errors: Vec<PlanError>,
}

impl Discovered {
    fn new() -> Discovered {
        Discovered {
            phases: Vec::new(),
            found: Vec::new(),
            ignored: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Walks `root`: a plan file, or a folder of phase folders or of prompt files.
pub(super) fn discover(root: &Path, config: &Config) -> Result<Discovered> {
    if root.is_file() {
        return plan_file(root, config);
    }
    let entries = read_dir_sorted(root).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => "the prompts folder does not exist; create it (prompts/NN-phase/NN.M-name.md), pass --prompts DIR, or set project.prompts in config.toml",
            _ => return Error::io(root, e),
        };
        Error::Plan(vec![PlanError {
            path: root.to_path_buf(),
            line: None,
            message: message.into(),
        }])
    })?;
    let mut d = Discovered::new();
    let mut phase_dirs: Vec<(String, PathBuf)> = Vec::new();
    let mut loose: Vec<(PromptId, PathBuf)> = Vec::new();
    for path in entries {
        let name = file_name(&path);
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if holds_prompts(&path) {
                phase_dirs.push((name, path));
            } else {
                d.ignored.push(path);
            }
        } else if let Some(id) = prompt_id(&path) {
            loose.push((id, path));
        } else if is_markdown(&path) {
            d.ignored.push(path);
        }
    }
    phase_dirs.sort_by_key(|a| folder_order(&a.0));
    if !loose.is_empty() {
        if phase_dirs.is_empty() || config.phase(FLAT).is_some() {
            d.phases.push(phase(FLAT, config, &mut d.notes, root));
            d.found.extend(loose.into_iter().map(|(id, path)| Found {
                id,
                path,
                phase: 0,
                section: None,
            }));
        } else {
            for (_, path) in loose {
                d.errors.push(PlanError {
                    path,
                    line: None,
                    message: "a prompt beside phase folders; move it into a phase folder such as prompts/01-foundation/, or list the folder itself as a phase: [[phases]] dir = \".\"".into(),
                });
            }
        }
    }
    for (dir, path) in phase_dirs {
        let phase_index = d.phases.len();
        d.phases.push(phase(&dir, config, &mut d.notes, root));
        for entry in read_dir_sorted(&path).map_err(|e| Error::io(&path, e))? {
            if file_name(&entry).starts_with('.') {
                continue;
            }
            match prompt_id(&entry) {
                Some(id) => d.found.push(Found {
                    id,
                    path: entry,
                    phase: phase_index,
                    section: None,
                }),
                None if entry.is_dir() || is_markdown(&entry) => d.ignored.push(entry),
                None => {}
            }
        }
    }
    for listed in &config.phases {
        if !d.phases.iter().any(|p| p.dir == listed.dir) {
            d.notes.push(format!(
                "config lists phase folder {:?}, which is not in {}",
                listed.dir,
                root.display()
            ));
        }
    }
    d.found
        .sort_by(|a, b| a.phase.cmp(&b.phase).then_with(|| a.id.cmp(&b.id)));
    qualify_repeated_ids(&mut d);
    duplicate_ids(&d.found, &mut d.errors);
    Ok(d)
}

/// When the files' own numbers repeat across phases (each phase folder numbering from
/// `01`), every id gets its phase's number in front (`phase-2/01-x.md` is `2.01`): the
/// phase's first number, or its place (from 1) if its name has none.
fn qualify_repeated_ids(d: &mut Discovered) {
    let mut phase_of: BTreeMap<&PromptId, usize> = BTreeMap::new();
    let repeats = d.found.iter().any(|f| {
        phase_of
            .insert(&f.id, f.phase)
            .is_some_and(|other| other != f.phase)
    });
    if !repeats {
        return;
    }
    let numbers: Vec<String> = d
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| first_number(&p.dir).map_or_else(|| (i + 1).to_string(), |n| n.to_string()))
        .collect();
    for f in &mut d.found {
        if let Some(id) = PromptId::parse(&format!("{}.{}", numbers[f.phase], f.id)) {
            f.id = id;
        }
    }
    d.notes.push(
        "prompt numbers repeat across phase folders: each id is qualified by its phase's number (`orchestrator plan` lists them)".into(),
    );
}

/// A single plan file: each `Prompt N` section's fenced block is a prompt (the block's
/// heading its name); the rest of the file is not sent.
fn plan_file(path: &Path, config: &Config) -> Result<Discovered> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(Error::Plan(vec![PlanError {
            path: path.to_path_buf(),
            line: None,
            message: "not UTF-8 text; save the plan as UTF-8".into(),
        }]));
    };
    let mut d = Discovered::new();
    d.phases.push(phase(FLAT, config, &mut d.notes, path));
    let (blocks, headings) = checkpoint::outline(text);
    for (i, heading) in headings.iter().enumerate() {
        let Some((number, title)) = prompt_heading(&heading.text) else {
            continue;
        };
        let end = headings[i + 1..]
            .iter()
            .find(|h| h.level <= heading.level)
            .map_or(text.len(), |h| h.start);
        let in_section: Vec<&checkpoint::CodeBlock> = blocks
            .iter()
            .filter(|b| b.range.start > heading.start && b.range.start < end)
            .collect();
        let line = line_of(text, heading.start);
        let Some(block) = in_section
            .iter()
            .find(|b| b.is_prose())
            .or(in_section.first())
        else {
            d.errors.push(PlanError {
                path: path.to_path_buf(),
                line: Some(line),
                message: format!(
                    "\"{}\" has no fenced block: a plan file's prompt is the fenced block of its section; put the prompt between ``` lines",
                    heading.text.trim()
                ),
            });
            continue;
        };
        let Some(id) = PromptId::parse(&number) else {
            continue;
        };
        d.found.push(Found {
            id,
            path: path.to_path_buf(),
            phase: 0,
            section: Some(Section {
                name: slug(&format!("prompt {number} {title}")),
                block: block.content_range.clone(),
                first_line: line_of(text, block.content_range.start),
            }),
        });
    }
    if d.found.is_empty() && d.errors.is_empty() {
        d.errors.push(PlanError {
            path: path.to_path_buf(),
            line: None,
            message: "a plan file, but no `Prompt N` section in it: write each prompt as a heading such as `### Prompt 1: Setup` followed by a fenced block, or give a folder of prompt files".into(),
        });
    }
    duplicate_ids(&d.found, &mut d.errors);
    Ok(d)
}

/// `Prompt 3: Data model` (any case; `:`, `-`, `—` or `.` after the number): its number
/// and title.
fn prompt_heading(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let rest = text.get(..6).filter(|p| p.eq_ignore_ascii_case("prompt"))?;
    let rest = text[rest.len()..].trim_start();
    let digits = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let number = rest[..digits].trim_end_matches('.');
    if number.is_empty() {
        return None;
    }
    let title = rest[digits..]
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '-' | '—' | '–' | '.'))
        .trim();
    Some((number.to_string(), title.to_string()))
}

/// A name from a title: letters and digits kept (any script), lowercased, the rest as
/// single hyphens.
pub(crate) fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A phase folder as config describes it (or as its name does, with a note).
fn phase(dir: &str, config: &Config, notes: &mut Vec<String>, root: &Path) -> Phase {
    let configured = config.phase(dir);
    let shown = if dir == FLAT {
        root.file_stem()
            .map_or_else(|| dir.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        dir.to_string()
    };
    if configured.is_none() {
        notes.push(format!(
            "phase {shown:?} is not in config's [[phases]]: it runs as {:?} with no phase budget of its own",
            phase_name_from_dir(&shown)
        ));
    }
    Phase {
        name: configured
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| phase_name_from_dir(&shown)),
        budget: configured.and_then(|p| p.budget),
        configured: configured.is_some(),
        dir: dir.to_string(),
        prompts: 0..0,
    }
}

/// Two files with one id (`1.1` and `01.1` are one id).
fn duplicate_ids(found: &[Found], errors: &mut Vec<PlanError>) {
    let mut seen: BTreeMap<&PromptId, &Path> = BTreeMap::new();
    for f in found {
        if let Some(first) = seen.get(&f.id) {
            errors.push(PlanError {
                path: f.path.clone(),
                line: f.section.as_ref().map(|s| s.first_line),
                message: format!(
                    "id {} is also the id of {}; give each prompt its own number",
                    f.id,
                    first.display()
                ),
            });
        } else {
            seen.insert(&f.id, &f.path);
        }
    }
}

fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn stem(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

fn is_markdown(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

/// The id of a prompt file: a `.md` file whose name starts with one.
fn prompt_id(path: &Path) -> Option<PromptId> {
    if !is_markdown(path) {
        return None;
    }
    PromptId::split_prefix(stem(path)).map(|(id, _)| id)
}

/// Whether a folder holds prompt files.
fn holds_prompts(dir: &Path) -> bool {
    read_dir_sorted(dir).is_ok_and(|entries| entries.iter().any(|e| prompt_id(e).is_some()))
}

/// The first number in a folder's name (`phase-10` is 10), if any.
fn first_number(name: &str) -> Option<u64> {
    let start = name.find(|c: char| c.is_ascii_digit())?;
    let digits: String = name[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Folders in natural order: by their first number, those without one last, then by name.
fn folder_order(name: &str) -> (bool, u64, String) {
    let n = first_number(name);
    (n.is_none(), n.unwrap_or(0), name.to_string())
}

/// The phase folders `root` holds, in run order, as `init` proposes them: folders with
/// prompt files in them, and [`FLAT`] when prompt files lie in `root` itself and there
/// are no phase folders (or they come first: the folder as a phase of its own).
pub(crate) fn phase_folders(root: &Path) -> std::io::Result<Vec<String>> {
    let mut dirs = Vec::new();
    let mut flat = false;
    for path in read_dir_sorted(root)? {
        let name = file_name(&path);
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() && holds_prompts(&path) {
            dirs.push(name);
        } else if prompt_id(&path).is_some() {
            flat = true;
        }
    }
    dirs.sort_by_key(|a| folder_order(a));
    if flat {
        dirs.insert(0, FLAT.to_string());
    }
    Ok(dirs)
}

/// The phase folder that is the prompts folder itself (a flat build), or a plan file.
pub(crate) const FLAT: &str = ".";

/// `04-extra-tools` runs as "extra tools"; `Phase 2 - Core` as "Phase 2 Core".
pub(crate) fn phase_name_from_dir(dir: &str) -> String {
    let rest = PromptId::split_prefix(dir).map_or(dir, |(_, rest)| rest);
    let name = rest
        .replace(['-', '_'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        dir.to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_from_folders() {
        for (dir, name) in [
            ("04-extra-tools", "extra tools"),
            ("05", "05"),
            ("phase-0", "phase 0"),
            ("Phase 2 - Core", "Phase 2 Core"),
        ] {
            assert_eq!(phase_name_from_dir(dir), name, "{dir}");
        }
    }

    #[test]
    fn folders_run_in_the_order_of_their_first_number() {
        let mut dirs = vec![
            "phase-10",
            "Phase 2 - Core",
            "extras",
            "phase-0",
            "01-foundation",
        ];
        dirs.sort_by_key(|a| folder_order(a));
        assert_eq!(
            dirs,
            [
                "phase-0",
                "01-foundation",
                "Phase 2 - Core",
                "phase-10",
                "extras"
            ]
        );
    }

    #[test]
    fn prompt_headings_and_slugs() {
        let cases = [
            ("Prompt 1: Project Setup", Some(("1", "Project Setup"))),
            ("prompt 12 - Wire it", Some(("12", "Wire it"))),
            ("PROMPT 3", Some(("3", ""))),
            ("Prompt 2.5 — Later", Some(("2.5", "Later"))),
            ("Prompts overview", None),
            ("Prompt engineering", None),
        ];
        for (text, want) in cases {
            let got = prompt_heading(text);
            assert_eq!(
                got.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
                want,
                "{text}"
            );
        }
        assert_eq!(slug("Prompt 1: Project Setup!"), "prompt-1-project-setup");
        assert_eq!(slug("Prompt 2 タイトル"), "prompt-2-タイトル");
    }
}
