//! Finding a build's prompt files: phase folders by their number, prompt files by their id
//! within their phase, what is not a prompt (listed as ignored), and the errors of layout:
//! a prompt outside any phase folder, two files with one id. A flat folder of prompts is
//! one phase when config lists it as `[[phases]] dir = "."`; it runs first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Phase, PromptId};
use crate::config::Config;
use crate::error::{Error, PlanError, Result};

/// A prompt file found, not yet read.
pub(super) struct Found {
    pub(crate) id: PromptId,
    pub(crate) path: PathBuf,
    /// Index into the phases.
    pub(crate) phase: usize,
}

/// What a prompts folder holds.
pub(super) struct Discovered {
    pub(crate) phases: Vec<Phase>,
    /// In run order: phases by number, prompts by id within their phase.
    pub(crate) found: Vec<Found>,
    pub(crate) ignored: Vec<PathBuf>,
    pub(crate) notes: Vec<String>,
    pub(crate) errors: Vec<PlanError>,
}

/// Walks `root`: phase folders, then each one's prompt files.
pub(super) fn discover(root: &Path, config: &Config) -> Result<Discovered> {
    let mut d = Discovered {
        phases: Vec::new(),
        found: Vec::new(),
        ignored: Vec::new(),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    let entries = read_dir_sorted(root).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => "the prompts folder does not exist; create it (prompts/NN-phase/NN.M-name.md) or pass --prompts DIR",
            std::io::ErrorKind::NotADirectory => "is a file, not a folder of prompts; pass --prompts the folder that holds the phase folders",
            _ => return Error::io(root, e),
        };
        Error::Plan(vec![PlanError {
            path: root.to_path_buf(),
            line: None,
            message: message.into(),
        }])
    })?;
    let mut phase_dirs: Vec<(PromptId, String, PathBuf)> = Vec::new();
    let flat = config.phase(FLAT).is_some();
    let mut loose: Vec<(PromptId, PathBuf)> = Vec::new();
    for path in entries {
        let name = file_name(&path);
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            match PromptId::split_prefix(&name) {
                Some((num, _)) => phase_dirs.push((num, name, path)),
                None => d.ignored.push(path),
            }
        } else if is_markdown(&path) {
            if let Some((id, _)) = PromptId::split_prefix(stem(&path)).filter(|_| flat) {
                loose.push((id, path));
            } else if PromptId::split_prefix(stem(&path)).is_some() {
                d.errors.push(PlanError {
                    path: path.clone(),
                    line: None,
                    message: "a prompt outside any phase folder; move it into a phase folder such as prompts/01-foundation/, or list the folder itself as a phase: [[phases]] dir = \".\"".into(),
                });
            } else {
                d.ignored.push(path);
            }
        }
    }
    phase_dirs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    if !loose.is_empty() {
        d.phases.push(phase(FLAT, config, &mut d.notes));
        d.found.extend(
            loose
                .into_iter()
                .map(|(id, path)| Found { id, path, phase: 0 }),
        );
    }
    let first = d.phases.len();
    for (n, (_, dir, path)) in phase_dirs.into_iter().enumerate() {
        let phase_index = first + n;
        d.phases.push(phase(&dir, config, &mut d.notes));
        for entry in read_dir_sorted(&path).map_err(|e| Error::io(&path, e))? {
            if file_name(&entry).starts_with('.') {
                continue;
            }
            if entry.is_dir() {
                d.ignored.push(entry);
                continue;
            }
            if !is_markdown(&entry) {
                continue;
            }
            match PromptId::split_prefix(stem(&entry)) {
                Some((id, _)) => d.found.push(Found {
                    id,
                    path: entry,
                    phase: phase_index,
                }),
                None => d.ignored.push(entry),
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
    duplicate_ids(&d.found, &mut d.errors);
    Ok(d)
}

/// A phase folder as config describes it (or as its name does, with a note).
fn phase(dir: &str, config: &Config, notes: &mut Vec<String>) -> Phase {
    let configured = config.phase(dir);
    if configured.is_none() {
        notes.push(format!(
            "phase folder {dir}/ is not in config's [[phases]]: it runs as {:?} with no phase budget of its own",
            phase_name_from_dir(dir)
        ));
    }
    Phase {
        name: configured
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| phase_name_from_dir(dir)),
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
                line: None,
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
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

/// The phase folders `root` holds, in run order, as `init` proposes them: numbered folders
/// with prompt files in them, and [`FLAT`] first when prompt files lie in `root` itself.
pub(crate) fn phase_folders(root: &Path) -> std::io::Result<Vec<String>> {
    let mut dirs = Vec::new();
    let mut flat = false;
    for path in read_dir_sorted(root)? {
        let name = file_name(&path);
        if name.starts_with('.') || PromptId::split_prefix(&name).is_none() {
            continue;
        }
        if path.is_dir() {
            let holds_prompts = read_dir_sorted(&path)
                .is_ok_and(|entries| entries.iter().any(|e| is_prompt_file(e)));
            if holds_prompts {
                dirs.push(name);
            }
        } else if is_markdown(&path) {
            flat = true;
        }
    }
    if flat {
        dirs.insert(0, FLAT.to_string());
    }
    Ok(dirs)
}

/// A `.md` file whose name starts with an id.
fn is_prompt_file(path: &Path) -> bool {
    is_markdown(path) && PromptId::split_prefix(stem(path)).is_some()
}

/// The phase folder that is the prompts folder itself (a flat build).
pub(crate) const FLAT: &str = ".";

/// `04-extra-tools` runs as "extra tools".
pub(crate) fn phase_name_from_dir(dir: &str) -> String {
    let rest = PromptId::split_prefix(dir).map_or(dir, |(_, rest)| rest);
    let name = rest
        .trim_start_matches(['-', '_', ' '])
        .replace(['-', '_'], " ");
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
        assert_eq!(phase_name_from_dir("04-extra-tools"), "extra tools");
        assert_eq!(phase_name_from_dir("05"), "05");
    }
}
