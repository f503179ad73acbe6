//! The library's error type and the exit codes README.md lists to each kind of failure.
//!
//! Every error a user can cause carries the file, line or key it is about and says what
//! to do; `main` prints it once and turns [`Error::exit_code`] into the process status.

use std::path::PathBuf;

/// Process exit codes (docs, "Exit codes").
pub(crate) mod exit {
    pub(crate) const OK: i32 = 0;
    pub(crate) const PROMPT_FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const BUDGET: i32 = 3;
    pub(crate) const TIME_LIMIT: i32 = 4;
    pub(crate) const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The disk (or the checkpoints filesystem) is full: finished work is kept, nothing more
    /// can be saved until space is freed.
    #[error(
        "{}: the disk is full ({source}); free some space and run `orchestrator run` again: \
         everything recorded before this point is kept",
        path.display()
    )]
    DiskFull {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.toml` is missing, unreadable, or has a bad key or value.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// The prompts folder cannot be turned into a plan.
    #[error("{}", plan_errors(.0))]
    Plan(Vec<PlanError>),
    /// A state file in `checkpoints/` cannot be read, or another runner holds the lock.
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
    /// The workspace cannot be used as it is (changes the runner did not make, a runner's
    /// file tracked by its repository, no `git`): the message says what to do.
    #[error("{}: {message}", dir.display())]
    Workspace { dir: PathBuf, message: String },
    /// A `git` command in the workspace failed while the run was going.
    #[error("{}: {message}", dir.display())]
    Git { dir: PathBuf, message: String },
    /// Bad command-line usage that clap cannot catch (an unknown prompt id, say).
    #[error("{0}")]
    Usage(String),
    /// A budget does not allow what was asked.
    #[error("{0}")]
    Budget(String),
    /// A prompt failed all its attempts (or failed permanently).
    #[error("{0}")]
    PromptFailed(String),
    /// `run.max_duration` was reached.
    #[error("{0}")]
    TimeLimit(String),
    /// SIGINT, SIGTERM or SIGHUP.
    #[error("interrupted; state is saved, `orchestrator run` resumes")]
    Interrupted,
    /// Something the runner needs from the system failed (the HTTP client, the async
    /// runtime, signal handlers, encoding its own output): not the user's doing.
    #[error("{what}: {source}")]
    Internal {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One problem found while building the plan, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanError {
    pub(crate) path: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn plan_errors(errors: &[PlanError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&e.to_string());
    }
    out
}

impl Error {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. }
            | Error::DiskFull { .. }
            | Error::Git { .. }
            | Error::Internal { .. } => exit::PROMPT_FAILED,
            Error::Config { .. }
            | Error::Plan(_)
            | Error::State { .. }
            | Error::Workspace { .. }
            | Error::Usage(_) => exit::USAGE,
            Error::Budget(_) => exit::BUDGET,
            Error::PromptFailed(_) => exit::PROMPT_FAILED,
            Error::TimeLimit(_) => exit::TIME_LIMIT,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }

    /// An internal failure: `what` could not be done, for `source`.
    pub(crate) fn internal(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Internal {
            what,
            source: Box::new(source),
        }
    }

    /// An I/O error on `path`, told apart when it means the disk is full.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        // ENOSPC and EDQUOT.
        if matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) {
            Error::DiskFull { path, source }
        } else {
            Error::Io { path, source }
        }
    }

    pub(crate) fn state(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::State {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// 1-based line number of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
