//! The unattended run: for each prompt left, attempts until one is accepted or they are
//! used up, each attempt in four steps (in [`attempt`]): **prepare** (build and count the
//! request, reserve what the budgets allow), **send** (journal the attempt, then send it),
//! **judge** (what the reply means: [`verdict`], [`accounting`]) and **settle** (journal the
//! result, save the outputs, or schedule the retry: [`retry`]). Every state change is a
//! journal event, appended and fsynced before it counts; the views (`status.json`,
//! `memory.json`) are rebuilt from the folded journal at most once a second between
//! prompts and always at a failure, a halt and the end.
//!
//! The runner knows nothing of the command line: it takes a [`Context`] and [`Options`] and
//! tells an [`Observer`] what happens ([`events`]). The single-threaded runtime only ever
//! has one request in flight; state is written between requests (and, for an agent's
//! process group, while it runs), in small fsynced appends.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::budget::Ledger;
use crate::config::{Config, OnFailure};
use crate::documents::AttemptOutcome;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::providers::Provider;
use crate::request::RequestBuilder;
use crate::state::{self, AttemptResult, Event, Fold, Store};
use crate::text::duration as show_duration;
use crate::views::{self, changed, current_prompt};
use crate::workspace::Workspace;

mod accounting;
mod attempt;
mod checks;
mod endpoint;
mod events;
mod interrupt;
mod opening;
mod reserve;
mod retry;
mod snapshot;
mod tally;
mod turns;
mod verdict;

pub(crate) use events::{Observer, RunEvent};
use interrupt::Interrupt;
use opening::{Retire, apart, mock_failures, restore_outputs, session_id};
use tally::{Book, Tally};

/// What a run works on.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) config: &'a Config,
    /// The config file (a workspace holding it never snapshots it).
    pub(crate) config_file: &'a Path,
    /// Where `config.toml` is: a relative `llm.system_template` is found from here.
    pub(crate) config_dir: &'a Path,
    pub(crate) plan: &'a Plan,
    pub(crate) checkpoints: &'a Path,
}

/// Which prompts a run takes on (indices into the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// What is left, from/until a prompt.
    Resume { from: usize, until: usize },
    /// One prompt (if not completed).
    Only(usize),
    /// Prompts run again whatever their state (`rerun`).
    Again { from: usize, until: usize },
}

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) selection: Selection,
    /// Archive the session (as it is) and start a new one.
    pub(crate) restart: bool,
    /// Take changes found in the workspace at start into a commit rather than refuse.
    pub(crate) allow_dirty: bool,
    /// `run` or `rerun`, for the journal.
    pub(crate) command: &'static str,
}

/// Runs `options.selection` of the plan. `Ok` when every prompt taken on completed.
pub(crate) fn run(ctx: Context<'_>, options: Options, observer: &dyn Observer) -> Result<()> {
    let builder = RequestBuilder::new(ctx.config, ctx.plan, ctx.config_dir)?;
    // Everything a user can get wrong is found before the state is touched.
    let mut provider = Provider::from_config(ctx.config)?;
    let prompts = &ctx.plan.root;
    // The workspace's lock first: a second session on it is refused before anything.
    let holder = format!(
        "pid {}, checkpoints {}",
        std::process::id(),
        std::path::absolute(ctx.checkpoints)
            .unwrap_or_else(|_| ctx.checkpoints.to_path_buf())
            .display()
    );
    let workspace = Workspace::open(
        ctx.config,
        &[ctx.config_file, prompts, ctx.checkpoints],
        &holder,
    )?;
    let run_started = std::time::SystemTime::now();
    let mut store = Store::open(ctx.checkpoints)?;
    let (mut records, warning) = match store.load() {
        Ok(loaded) => loaded,
        // A session that cannot be read is archived as it is, unread.
        Err(_) if options.restart => {
            if let Some(archived) = store.archive()? {
                observer.event(RunEvent::Note(&format!(
                    "the previous session is archived as it was in {}",
                    archived.display()
                )));
            }
            store.load()?
        }
        Err(e) => return Err(e),
    };
    if let Some(w) = warning {
        observer.event(RunEvent::Warning(&w));
    }
    let mut fold = Fold::default();
    for r in &records {
        fold.apply(r);
    }
    // A session set aside is archived only once this run is sure to start (a workspace
    // holding the user's changes refuses it first).
    let mut retiring = None;
    if options.restart && (!fold.session_id.is_empty() || !records.is_empty()) {
        retiring = Some((std::mem::take(&mut fold), Retire::Restart));
        records.clear();
    } else if apart(&fold, &provider)? {
        retiring = Some((std::mem::take(&mut fold), Retire::Mock));
        records.clear();
    }
    if provider.is_mock() {
        provider.mock_failures(mock_failures(ctx, &fold)?);
    }
    restore_outputs(&store, &fold, &records, observer)?;
    drop(records);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let interrupt = Interrupt::install()?;
        let tally = Tally::new(&fold, ctx.plan, ctx.config);
        let tokenizer_exact = provider.counts_exactly(ctx.config.llm.model());
        for (setting, value) in &fold.learned {
            provider.adopt(setting, value);
        }
        let mut session = Session {
            workspace,
            views_written: None,
            book: Book { store, fold, tally },
            ctx,
            plan: ctx.plan,
            builder,
            provider,
            observer,
            started: Instant::now(),
            interrupt,
            tokenizer_exact,
            endpoint_counts: true,
            zero_input_told: false,
            run_started,
            halted: false,
        };
        if let Some((old, why)) = retiring {
            session.retire(old, options.allow_dirty, why).await?;
        }
        let todo = session.todo(options.selection);
        session.run(todo, options).await
    })
}

/// How a prompt ended.
enum Step {
    Completed,
    /// Its attempts are used up, or it failed permanently.
    Failed(String),
}

/// How often the views are rewritten between prompts (see `Session::write_views`).
const VIEWS_EVERY: Duration = Duration::from_secs(1);

struct Session<'a> {
    /// Where an agent builds (and checks run), if config has one.
    workspace: Option<Workspace>,
    views_written: Option<Instant>,
    book: Book,
    ctx: Context<'a>,
    plan: &'a Plan,
    builder: RequestBuilder<'a>,
    provider: Provider,
    observer: &'a dyn Observer,
    started: Instant,
    interrupt: Interrupt,
    /// The tokenizer is the model's own (tiktoken for an OpenAI model): counts are exact.
    tokenizer_exact: bool,
    /// Whether to ask the endpoint to count (until it says it cannot).
    endpoint_counts: bool,
    /// A report of no input was warned about (once a run).
    zero_input_told: bool,
    /// When this run began: git's lock files older than this that nothing holds are stale.
    run_started: std::time::SystemTime,
    /// The run stopped with its reason journaled ([`Session::halt`]).
    halted: bool,
}

impl<'a> Session<'a> {
    fn tell(&self, event: RunEvent<'_>) {
        self.observer.event(event);
    }

    fn warn(&self, message: &str) {
        self.tell(RunEvent::Warning(message));
    }

    fn detail(&self, message: &str) {
        self.tell(RunEvent::Detail(message));
    }

    fn todo(&self, selection: Selection) -> Vec<usize> {
        let done = |i: usize| self.is_completed(i);
        match selection {
            Selection::Resume { from, until } => (from..=until).filter(|&i| !done(i)).collect(),
            Selection::Only(i) => {
                if done(i) {
                    self.tell(RunEvent::Note(&format!(
                        "{} is already completed; `orchestrator rerun {}` runs it again",
                        self.plan.prompts[i].id, self.plan.prompts[i].id
                    )));
                    Vec::new()
                } else {
                    vec![i]
                }
            }
            Selection::Again { from, until } => (from..=until).collect(),
        }
    }

    fn is_completed(&self, i: usize) -> bool {
        self.book
            .fold
            .done
            .contains(self.plan.prompts[i].id.as_str())
    }

    fn config(&self) -> &crate::config::Config {
        self.ctx.config
    }

    async fn run(&mut self, todo: Vec<usize>, options: Options) -> Result<()> {
        let result = self.run_todo(todo, options).await;
        match result {
            // What stopped the run is journaled, whatever it was (a workspace that could
            // not be restored, a git failure), so that `status` can say.
            Err(e) if !self.halted && !self.book.fold.session_id.is_empty() => self.halt(e),
            other => other,
        }
    }

    async fn run_todo(&mut self, todo: Vec<usize>, options: Options) -> Result<()> {
        if self.book.fold.session_id.is_empty() {
            self.start_session()?;
            self.tell_checks();
        }
        self.book.journal(vec![Event::RunStarted {
            pid: std::process::id(),
            command: options.command.to_string(),
        }])?;
        self.settle_open_attempts()?;
        if let Selection::Again { .. } = options.selection {
            self.reopen_for_rerun(&todo)?;
        }
        self.preflight(&todo)?;
        self.start_workspace(options.allow_dirty, &todo).await?;
        for id in changed(&self.book.fold, self.plan) {
            self.warn(&format!(
                "prompt {id} changed since it ran; `orchestrator rerun {id}` runs it again"
            ));
        }
        self.write_views(true)?;
        self.tell(RunEvent::Started {
            session_id: &self.book.fold.session_id,
            to_run: todo.len(),
            completed: self.book.tally.done,
        });

        let (mut failed, mut skipped) = (Vec::new(), Vec::new());
        for index in todo {
            if self.interrupt.is_set() {
                return self.interrupted();
            }
            let max_duration = self.config().run.max_duration;
            if self.started.elapsed() >= max_duration {
                return self.halt(Error::TimeLimit(format!(
                    "run.max_duration ({}) reached; `orchestrator run` continues",
                    show_duration(max_duration)
                )));
            }
            let prompt = &self.plan.prompts[index];
            if let Some(reason) = self.blocked(index) {
                if self.config().run.on_failure == OnFailure::Halt {
                    return self.halt(Error::PromptFailed(format!(
                        "{} cannot run: {reason}",
                        prompt.file
                    )));
                }
                self.book.journal(vec![Event::Skipped {
                    id: prompt.id.to_string(),
                    reason: reason.clone(),
                }])?;
                self.tell(RunEvent::Skipped {
                    prompt,
                    reason: &reason,
                });
                skipped.push(prompt.id.to_string());
                continue;
            }
            if let Step::Failed(reason) = self.run_prompt(index).await? {
                if self.config().run.on_failure == OnFailure::Halt {
                    return self.halt(Error::PromptFailed(format!(
                        "{} failed: {reason}. Fix the cause, then `orchestrator rerun {}` (or `orchestrator run`) to go on",
                        prompt.file, prompt.id
                    )));
                }
                failed.push(prompt.id.to_string());
            }
        }
        if current_prompt(&self.book.fold, self.plan).is_none() {
            self.book.journal(vec![Event::Finished {}])?;
        }
        self.write_views(true)?;
        let ledger = Ledger::new(&self.book.fold, self.plan, self.config());
        self.tell(RunEvent::Finished {
            completed: self.book.tally.done,
            ledger: &ledger,
            failed: &failed,
            skipped: &skipped,
        });
        if failed.is_empty() && skipped.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        if !failed.is_empty() {
            parts.push(format!("failed: {}", failed.join(", ")));
        }
        if !skipped.is_empty() {
            parts.push(format!("skipped: {}", skipped.join(", ")));
        }
        Err(Error::PromptFailed(format!(
            "{}; `orchestrator status` shows why",
            parts.join("; ")
        )))
    }

    fn start_session(&mut self) -> Result<()> {
        let started = state::now();
        // The seed's id has one-second resolution: a session restarted within the second
        // it was archived gets a suffix, so that no two sessions share an id.
        let base = session_id(&started);
        let archive = self.book.store.dir.join(state::ARCHIVE);
        let mut session_id = base.clone();
        let mut n = 1;
        while archive.join(&session_id).exists() {
            n += 1;
            session_id = format!("{base}-{n}");
        }
        self.book.journal(vec![Event::SessionStarted {
            session_id,
            started,
            mock: self.provider.is_mock(),
        }])
    }

    /// Sets the session in `checkpoints/` aside (archived as it is) once its workspace is
    /// known to hold nothing of the user's: what its last attempt left is discarded (kept
    /// under `refs/orchestrator/`); the user's changes refuse the new session, or with
    /// `allow_dirty` go into its baseline.
    async fn retire(&mut self, old: Fold, allow_dirty: bool, why: Retire) -> Result<()> {
        self.retire_workspace(&old, allow_dirty).await?;
        if let Some(archived) = self.book.store.archive()? {
            self.tell(RunEvent::Note(&match why {
                Retire::Restart => format!(
                    "the previous session is archived as it was in {}",
                    archived.display()
                ),
                Retire::Mock => format!(
                    "the session in checkpoints/ was a mock one; it is archived in {} and a new one starts",
                    archived.display()
                ),
            }));
        }
        Ok(())
    }

    /// `rerun`: its prompts reopened first, journaled, so that a rerun cut short (even by
    /// `kill -9`) is finished by the next `run` rather than forgotten.
    fn reopen_for_rerun(&mut self, todo: &[usize]) -> Result<()> {
        let ids: Vec<String> = todo
            .iter()
            .filter(|&&i| self.is_completed(i))
            .map(|&i| self.plan.prompts[i].id.to_string())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.book.journal(vec![Event::Reopened {
            ids,
            reason:
                "`orchestrator rerun` runs it again; `orchestrator run` finishes a rerun cut short"
                    .into(),
        }])
    }

    /// An attempt journaled as started with no result: the runner died mid-request. It may
    /// have been billed, so it is counted at its worst case, and its prompt is sent again;
    /// an agent's process group that outlived the runner, and every process the attempt
    /// started that still carries its mark, are killed first.
    fn settle_open_attempts(&mut self) -> Result<()> {
        let open = self.book.fold.open.clone();
        for o in open {
            if let Some(group) = &o.group
                && group.kill_if_left()
            {
                self.warn(&format!(
                    "{} attempt {}: the agent's process group {} was still running after the runner stopped; it was killed",
                    o.id, o.attempt, group.pgid
                ));
            }
            if let Some(mark) = &o.mark {
                let killed = crate::process::Mark(mark.clone()).kill_all();
                if killed > 0 {
                    self.warn(&format!(
                        "{} attempt {}: {killed} process{} it started outlived the runner; killed",
                        o.id,
                        o.attempt,
                        if killed == 1 { "" } else { "es" }
                    ));
                }
            }
            let worst = o.input_tokens.saturating_add(u64::from(o.max_tokens));
            self.warn(&format!(
                "{} attempt {}: no result was recorded (the runner stopped mid-request); it is possibly billed and counted at its worst case ({worst} tokens)",
                o.id, o.attempt
            ));
            self.book
                .journal(vec![Event::AttemptFinished(AttemptResult {
                    id: o.id.clone(),
                    attempt: o.attempt,
                    outcome: AttemptOutcome::Unknown,
                    input_tokens: o.input_tokens,
                    output_tokens: u64::from(o.max_tokens),
                    estimated: true,
                    error: Some("possibly billed: no result was recorded".into()),
                    ..AttemptResult::default()
                })])?;
        }
        Ok(())
    }

    /// `on_failure = "skip"`: a prompt whose dependency did not complete is skipped.
    fn blocked(&self, index: usize) -> Option<String> {
        let prompt = &self.plan.prompts[index];
        let fold = &self.book.fold;
        prompt
            .depends_on
            .iter()
            .find(|&&d| !self.is_completed(d))
            .map(|&d| {
                let dep = &self.plan.prompts[d];
                let how = if fold.failed.iter().any(|f| f == dep.id.as_str()) {
                    "failed"
                } else if fold.skipped.iter().any(|f| f == dep.id.as_str()) {
                    "was skipped"
                } else {
                    "has not completed"
                };
                format!("it depends on {} ({}), which {how}", dep.id, dep.name)
            })
    }

    fn fail(&mut self, index: usize, reason: String) -> Result<Step> {
        let prompt = &self.plan.prompts[index];
        self.book.journal(vec![Event::Failed {
            id: prompt.id.to_string(),
            file: prompt.file.clone(),
            error: reason.clone(),
        }])?;
        self.write_views(true)?;
        let state = self.book.fold.prompts.get(prompt.id.as_str());
        self.tell(RunEvent::Failed {
            prompt,
            reason: &reason,
            attempt: state.map_or(0, |p| p.last_attempt),
            input_tokens: state.map_or(0, |p| p.tokens_in),
            output_tokens: state.map_or(0, |p| p.tokens_out),
            estimated: state.is_some_and(|p| p.estimated),
        });
        Ok(Step::Failed(reason))
    }

    /// Stops the run: journaled, views written; the error sets the exit code.
    fn halt<T>(&mut self, error: Error) -> Result<T> {
        self.halted = true;
        let reason = error.to_string();
        self.book.journal(vec![Event::Halted {
            reason: reason.clone(),
            code: error.exit_code(),
        }])?;
        self.write_views(true)?;
        self.tell(RunEvent::Halted {
            reason: &reason,
            code: error.exit_code(),
        });
        Err(error)
    }

    fn interrupted<T>(&mut self) -> Result<T> {
        self.halt(Error::Interrupted)
    }

    /// Rebuilds `status.json` and `memory.json`. They grow with the run, so between
    /// prompts they are written at most once a second (`force` writes now: at the start, a
    /// failure, a halt and the end); the journal, appended per event, is the truth.
    fn write_views(&mut self, force: bool) -> Result<()> {
        if !force
            && self
                .views_written
                .is_some_and(|t| t.elapsed() < VIEWS_EVERY)
        {
            return Ok(());
        }
        self.views_written = Some(Instant::now());
        let fold = &self.book.fold;
        let ledger = Ledger::new(fold, self.plan, self.config());
        let saved = fold.completed.len();
        let status = views::status_doc(fold, self.plan, &ledger, self.config(), saved);
        let memory = views::MemoryView::new(fold, self.plan, &self.ctx.config.variables);
        self.book.store.write_json(state::STATUS, &status)?;
        self.book.store.write_json(state::MEMORY, &memory)
    }
}
