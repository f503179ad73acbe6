//! What a run tells the world, and nothing of how: the runner reports through
//! [`Observer`]; how events look on a terminal (bars), in a log (a line per prompt) or as
//! JSON lines lives above it (`commands/progress.rs`).

use std::time::Duration;

use crate::budget::Ledger;
use crate::plan::Prompt;
use crate::state::Event;

/// One thing that happened in a run.
#[derive(Debug)]
pub(crate) enum RunEvent<'a> {
    Warning(&'a str),
    Note(&'a str),
    /// For `-v`: what is sent and what came back (never the key).
    Detail(&'a str),
    Started {
        session_id: &'a str,
        to_run: usize,
        completed: usize,
    },
    Attempt {
        prompt: &'a Prompt,
        phase: &'a str,
        attempt: u32,
        input_tokens: u64,
        max_tokens: u32,
    },
    /// Content chunks streamed so far in `prompt`'s attempt under way (about one token
    /// each).
    Streamed {
        prompt: &'a Prompt,
        chunks: u64,
    },
    Retry {
        prompt: &'a Prompt,
        /// The attempt to come.
        attempt: u32,
        delay: Duration,
        reason: &'a str,
        /// What the failed attempt was counted as.
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
    },
    Completed {
        prompt: &'a Prompt,
        attempt: u32,
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
        duration_ms: u64,
        /// Prompts completed in the session so far.
        completed: usize,
    },
    Failed {
        prompt: &'a Prompt,
        reason: &'a str,
        /// Its last attempt, and what it spent in all.
        attempt: u32,
        input_tokens: u64,
        output_tokens: u64,
        estimated: bool,
    },
    Skipped {
        prompt: &'a Prompt,
        reason: &'a str,
    },
    Halted {
        reason: &'a str,
        code: i32,
    },
    Finished {
        completed: usize,
        ledger: &'a Ledger,
        failed: &'a [String],
        skipped: &'a [String],
    },
}

/// Whoever shows a run. `Sync`: streamed events come from inside a provider's call.
pub(crate) trait Observer: Sync {
    fn event(&self, event: RunEvent<'_>);
}

/// What a step did, as a value: the events to journal and what to tell the user. The
/// steps (reserve, snapshot, verification, endpoint) return it; the run and the attempt
/// record it, in one place (`Book::record`).
#[derive(Debug, Default)]
#[must_use = "what a step did counts only once it is recorded"]
pub(crate) struct Said {
    pub(crate) events: Vec<Event>,
    pub(crate) warnings: Vec<String>,
    pub(crate) notes: Vec<String>,
    /// For `-v`.
    pub(crate) details: Vec<String>,
}

impl Said {
    pub(crate) fn event(event: Event) -> Said {
        Said {
            events: vec![event],
            ..Said::default()
        }
    }

    pub(crate) fn warning(message: String) -> Said {
        Said {
            warnings: vec![message],
            ..Said::default()
        }
    }

    /// This, then `more`.
    pub(crate) fn and(mut self, more: Said) -> Said {
        self.events.extend(more.events);
        self.warnings.extend(more.warnings);
        self.notes.extend(more.notes);
        self.details.extend(more.details);
        self
    }

    /// Tells `observer` what is to be told.
    pub(crate) fn tell(&self, observer: &dyn Observer) {
        for w in &self.warnings {
            observer.event(RunEvent::Warning(w));
        }
        for n in &self.notes {
            observer.event(RunEvent::Note(n));
        }
        for d in &self.details {
            observer.event(RunEvent::Detail(d));
        }
    }
}
