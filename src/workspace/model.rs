//! What the workspace's operations take and give: the extras git does not keep of a tree,
//! where the session keeps HEAD, a scan of the work tree, a commit, the user's changes.

use serde::{Deserialize, Serialize};

/// How many files a message lists.
const LISTED: usize = 20;

/// What a tree holds that git does not keep: its ignored entries (folders with a trailing
/// `/`) and its empty folders, relative to the work tree. Recorded with each commit, so
/// that a restore keeps exactly these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extras {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ignored: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) empty_dirs: Vec<String>,
}

impl Extras {
    /// These and `more`, without repeats.
    pub(crate) fn with(&self, more: &Extras) -> Extras {
        let join = |a: &[String], b: &[String]| {
            let mut v: Vec<String> = a.iter().chain(b).cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        Extras {
            ignored: join(&self.ignored, &more.ignored),
            empty_dirs: join(&self.empty_dirs, &more.empty_dirs),
        }
    }
}

/// Where the session keeps HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// On this branch (`refs/heads/main`).
    Branch(String),
    /// A detached HEAD, the runner's.
    Detached,
}

impl Head {
    pub(crate) fn shown(&self) -> String {
        match self {
            Head::Branch(b) => format!("branch {}", b.trim_start_matches("refs/heads/")),
            Head::Detached => "a detached HEAD".into(),
        }
    }
}

/// The session's hold on the repository, from its journal.
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    pub(crate) baseline: String,
    /// `None` for a journal written before branches were recorded: the HEAD found at start.
    pub(crate) head: Option<Head>,
}

/// The workspace as it is, as a commit on no branch (what `git add -A` would take, the
/// excludes and the runner's files left out), and its extras.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    pub(crate) commit: String,
    pub(crate) extras: Extras,
    /// The commit HEAD was on, and whether the tree is HEAD's (nothing was changed).
    pub(crate) head: Option<String>,
    pub(crate) unchanged: bool,
}

/// A commit and its extras.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub(crate) commit: String,
    pub(crate) extras: Extras,
}

/// What differs between what the runner left and what the workspace holds now.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Changes {
    /// Files added, changed or deleted.
    pub(crate) files: Vec<String>,
    /// Ignored entries and empty folders that were not there.
    pub(crate) extras: Extras,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.extras.ignored.is_empty() && self.extras.empty_dirs.is_empty()
    }

    /// The paths, as a message lists them (the first [`LISTED`]).
    pub(crate) fn listed(&self) -> String {
        let all: Vec<&String> = self
            .files
            .iter()
            .chain(&self.extras.ignored)
            .chain(&self.extras.empty_dirs)
            .collect();
        listed(&all)
    }
}

/// `paths` joined, the first [`LISTED`], then how many more.
pub(crate) fn listed(paths: &[&String]) -> String {
    let shown: Vec<&str> = paths.iter().take(LISTED).map(|s| s.as_str()).collect();
    let more = paths.len().saturating_sub(LISTED);
    let mut text = shown.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}
