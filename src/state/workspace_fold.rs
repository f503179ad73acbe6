//! The journal's account of an agent build's workspace: the session's baseline and
//! branch, what git does not keep of each commit the runner made ([`Extras`]), and what the
//! workspace should hold now ([`Expected`]), against which anything else is the user's.

use std::collections::HashMap;

use super::journal::Event;
use crate::workspace::{Extras, Head};

/// What the workspace holds, as far as the runner knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Expected {
    /// An attempt ran and left no account (the runner died, or was interrupted): whatever
    /// the workspace holds is that attempt's.
    #[default]
    Unknown,
    /// Exactly this commit (made, restored or taken in by the runner) and its extras.
    At(String),
    /// What an attempt left: its tree as this commit (on no branch), and its extras.
    Left { commit: String, extras: Extras },
    /// Being moved from one commit to another (a parallel agent build's merge, journaled
    /// before it moves the workspace): either, or a crash's mix of both.
    Moving { from: String, to: String },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct WorkspaceFold {
    pub(crate) baseline: Option<String>,
    /// The session's branch or its detached HEAD; `None` in a journal from before they
    /// were recorded.
    pub(crate) head: Option<Head>,
    /// What git does not keep of each commit the runner made or took in.
    pub(crate) extras: HashMap<String, Extras>,
    pub(crate) expected: Expected,
}

impl WorkspaceFold {
    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::AttemptStarted { worktree: None, .. } => self.expected = Expected::Unknown,
            Event::WorkspaceCommitted {
                id,
                commit,
                head,
                detached,
                extras,
                ..
            } => {
                if id.is_none() {
                    self.baseline = Some(commit.clone());
                    self.head = match (head, detached) {
                        (Some(b), _) => Some(Head::Branch(b.clone())),
                        (None, true) => Some(Head::Detached),
                        (None, false) => None,
                    };
                }
                self.at(commit, extras.as_ref());
            }
            Event::Completed {
                commit: Some(commit),
                extras,
                ..
            }
            | Event::Iterated {
                commit: Some(commit),
                extras,
                ..
            } => self.at(commit, extras.as_ref()),
            Event::WorkspaceRestored { commit, .. } => self.expected = Expected::At(commit.clone()),
            Event::Merging {
                from,
                to,
                from_extras,
                to_extras,
                ..
            } => {
                self.extras.insert(from.clone(), from_extras.clone());
                self.extras.insert(to.clone(), to_extras.clone());
                self.expected = Expected::Moving {
                    from: from.clone(),
                    to: to.clone(),
                };
            }
            Event::WorkspaceLeft { commit, extras, .. } => {
                self.expected = Expected::Left {
                    commit: commit.clone(),
                    extras: extras.clone(),
                };
            }
            _ => {}
        }
    }

    /// What the runner last left in the workspace: the commits it may hold (two while a
    /// merge moves it), each with its extras where known; `None` when an attempt left it
    /// without an account.
    pub(crate) fn left(&self) -> Option<Vec<(String, Option<Extras>)>> {
        let known = |c: &String| (c.clone(), self.extras.get(c).cloned());
        match &self.expected {
            Expected::Unknown => None,
            Expected::At(c) => Some(vec![known(c)]),
            Expected::Left { commit, extras } => Some(vec![(commit.clone(), Some(extras.clone()))]),
            Expected::Moving { from, to } => Some(vec![known(to), known(from)]),
        }
    }

    fn at(&mut self, commit: &str, extras: Option<&Extras>) {
        if let Some(extras) = extras {
            self.extras.insert(commit.to_string(), extras.clone());
        }
        self.expected = Expected::At(commit.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(commit: &str, ignored: &[&str]) -> Event {
        Event::WorkspaceCommitted {
            id: None,
            commit: commit.into(),
            message: "orchestrator: baseline".into(),
            head: None,
            detached: true,
            extras: Some(Extras {
                ignored: ignored.iter().map(|s| (*s).to_string()).collect(),
                empty_dirs: Vec::new(),
            }),
        }
    }

    fn started(id: &str, worktree: Option<&str>) -> Event {
        Event::AttemptStarted {
            id: id.into(),
            file: format!("{id}-x.md"),
            attempt: 1,
            input_tokens: 1,
            max_tokens: 1,
            tokenizer_tokens: None,
            by: None,
            mark: None,
            worktree: worktree.map(str::to_string),
        }
    }

    #[test]
    fn what_the_workspace_may_hold_is_both_ends_of_a_merge_until_it_is_completed() {
        let mut f = WorkspaceFold::default();
        assert_eq!(f.left(), None, "nothing known yet");
        f.apply(&committed("c1", &[".env"]));
        let c1 = ("c1".to_string(), Some(f.extras["c1"].clone()));
        assert_eq!(f.left(), Some(vec![c1.clone()]));
        // A parallel attempt leaves the workspace itself alone.
        f.apply(&started("01.2", Some("/w/01.2")));
        assert_eq!(f.left(), Some(vec![c1.clone()]));
        // A crash between the journaled move and the completion: either end is the runner's.
        let m2 = Extras {
            ignored: vec![".env".into(), ".venv/".into()],
            empty_dirs: Vec::new(),
        };
        f.apply(&Event::Merging {
            id: "01.2".into(),
            attempt: 1,
            from: "c1".into(),
            to: "m2".into(),
            from_extras: f.extras["c1"].clone(),
            to_extras: m2.clone(),
        });
        assert_eq!(f.left(), Some(vec![("m2".to_string(), Some(m2)), c1]));
        // A sequential attempt leaves it unaccounted for until it ends.
        f.apply(&started("01.3", None));
        assert_eq!(f.left(), None);
    }
}
