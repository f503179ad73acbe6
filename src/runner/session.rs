//! A run over a session: opened (the workspace's lock, the journal read, a session set
//! aside or carried on), then the prompts taken on one after another, and the one place
//! a run stops: whatever ends it is journaled as its halt, with the views written, so that
//! `status` can say why.

use std::cell::{Cell, RefCell};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::attempt::PromptRun;
use super::context::{Context, Options, Selection};
use super::endpoint::Endpoint;
use super::events::{Observer, RunEvent, Said};
use super::gate::Gate;
use super::interrupt::{Interrupt, Wait};
use super::lanes::{self, Lanes};
use super::opening::{self, Retire, apart, mock_failures, restore_outputs};
use super::queue::{Next, Queue};
use super::snapshot::Snapshots;
use super::steps::Step;
use super::tally::{Book, Tally};
use super::{notify, pause, reserve, verification};
use crate::budget::Ledger;
use crate::config::OnFailure;
use crate::error::{Error, Result};
use crate::providers::Provider;
use crate::request::RequestBuilder;
use crate::state::{self, Event, Fold, Store};
use crate::text::duration as show_duration;
use crate::views::{self, changed, current_prompt};
use crate::workspace::Workspace;

/// How often the views are rewritten between prompts (see [`Session::write_views`]).
const VIEWS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `options.selection` of the plan. `Ok` when every prompt taken on completed.
pub(crate) fn run(ctx: Context<'_>, options: Options, observer: &dyn Observer) -> Result<()> {
    let builder = RequestBuilder::new(ctx.config, ctx.plan, ctx.config_dir)?;
    // Everything a user can get wrong is found before the state is touched.
    let mut provider = Provider::from_config(ctx.config)?;
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
        &[ctx.config_file, &ctx.plan.root, ctx.checkpoints],
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
        .map_err(|e| Error::internal("cannot start the async runtime", e))?;
    runtime.block_on(async {
        let interrupt = Interrupt::install()?;
        let tally = Tally::new(&fold, ctx.plan, ctx.config);
        for (setting, value) in &fold.learned {
            if let Some(change) = crate::providers::Change::read(setting, value) {
                provider.adopt(change);
            }
        }
        let (jobs, at_once, lanes) = jobs(ctx, workspace.as_ref(), observer);
        let mut session = Session {
            ctx,
            book: RefCell::new(Book { store, fold, tally }),
            endpoint: Endpoint::new(provider, builder, ctx.config.llm.model())
                .with_fallbacks(fallbacks(ctx)?),
            snapshots: Snapshots {
                workspace,
                run_started,
            },
            lanes,
            observer,
            interrupt,
            started: Instant::now(),
            views_written: Cell::new(None),
            gate: Gate::new(at_once),
            held_usd: Cell::new(0.0),
            jobs,
        };
        if let Some((old, why)) = retiring {
            session.retire(old, options.allow_dirty, why).await?;
        }
        let (todo, note) = opening::todo(&session.book.get_mut().fold, ctx.plan, options.selection);
        if let Some(note) = note {
            observer.event(RunEvent::Note(&note));
        }
        session.run(todo, options).await
    })
}

/// A run's parts: what it works on, its book, where it sends, where an agent builds; the
/// book is shared with the prompts in flight (borrowed for a step that does not wait).
struct Session<'a> {
    ctx: Context<'a>,
    book: RefCell<Book>,
    endpoint: Endpoint<'a>,
    snapshots: Snapshots,
    observer: &'a dyn Observer,
    interrupt: Interrupt,
    started: Instant,
    views_written: Cell<Option<Instant>>,
    /// The requests in flight, and how many may be.
    gate: Gate,
    /// US dollars held by the attempts in flight.
    held_usd: Cell<f64>,
    /// Prompts in flight at once (`run.jobs`).
    jobs: usize,
    /// A parallel agent build's worktrees.
    lanes: Option<Lanes>,
}

impl<'a> Session<'a> {
    fn record(&self, said: Said) -> Result<()> {
        self.book.borrow_mut().record(said, self.observer)
    }

    fn tell(&self, event: RunEvent<'_>) {
        self.observer.event(event);
    }

    /// The run, and the one place it stops: any error after the session exists is
    /// journaled as the halt (what stopped it, whatever it was), so that `status` can say.
    async fn run(&mut self, todo: Vec<usize>, options: Options) -> Result<()> {
        let result = self.run_todo(todo, options).await;
        let result = match result {
            Err(e) if !self.book.get_mut().fold.session_id.is_empty() => self.halt(e),
            other => other,
        };
        if !self.ctx.config.notify.command.is_empty() {
            let notice = notify::Notice::of_end(&result);
            let doc =
                notify::document(self.book.get_mut(), self.ctx.plan, self.ctx.config, &notice);
            if let Some(warning) = notify::tell(self.ctx.config, self.ctx.config_dir, &doc).await {
                self.tell(RunEvent::Warning(&warning));
            }
        }
        result
    }

    async fn run_todo(&mut self, todo: Vec<usize>, options: Options) -> Result<()> {
        let plan = self.ctx.plan;
        if self.book.get_mut().fold.session_id.is_empty() {
            let started = opening::new_session(
                &self.book.get_mut().store.dir,
                self.endpoint.provider.is_mock(),
            );
            let mut said = Said::event(started);
            said.notes.extend(verification::planned_note(self.ctx));
            self.record(said)?;
        }
        let mut said = Said::event(Event::RunStarted {
            pid: std::process::id(),
            command: options.command.to_string(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
        });
        said = said.and(opening::settle_open_attempts(
            &self.book.get_mut().fold,
            self.ctx.config.pricing,
            self.endpoint.is_agent(),
        ));
        self.record(said)?;
        if let Selection::Again { .. } = options.selection
            && let Some(reopened) =
                opening::reopen_for_rerun(&self.book.get_mut().fold, plan, &todo)
        {
            self.record(Said::event(reopened))?;
        }
        let book = self.book.get_mut();
        reserve::preflight(book, plan, self.ctx.config, &self.endpoint.builder, &todo)?;
        let wait = Wait {
            interrupt: &self.interrupt,
            observer: self.observer,
        };
        let mut started = self
            .snapshots
            .start(book, plan, options.allow_dirty, &todo, wait)
            .await?;
        if let Some(ws) = self.snapshots.snapshots() {
            let root = lanes::root(self.ctx.checkpoints);
            started = started.and(lanes::clear(&root, ws, &book.fold.session_id).await?);
            if let Some(lanes) = &self.lanes {
                lanes.start(ws).await?;
                started.notes.push(format!(
                    "up to {} prompts at once, each attempt in a git worktree of its own under {}; accepted work is merged onto the session's branch in plan order",
                    self.jobs,
                    root.display()
                ));
            }
        }
        self.record(started)?;
        let mut said = Said::default();
        for id in changed(&self.book.get_mut().fold, plan) {
            said.warnings.push(format!(
                "prompt {id} changed since it ran; `orchestrator rerun {id}` runs it again"
            ));
        }
        self.record(said)?;
        self.write_views(true)?;
        if let Some((note, until_ms)) = pause::left_over(self.book.get_mut().fold.paused.as_ref()) {
            self.observer.event(RunEvent::Note(&note));
            pause::wait_until(until_ms, wait).await?;
        }
        let book = self.book.get_mut();
        self.observer.event(RunEvent::Started {
            session_id: &book.fold.session_id,
            to_run: todo.len(),
            completed: book.tally.done,
        });
        let (failed, skipped) = self.schedule(todo).await?;
        self.finish(&failed, &skipped)
    }

    /// The prompts of `todo`, each started once its dependencies are accepted (see
    /// [`Queue`]), at most `jobs` at once; what failed and what was skipped. Once
    /// something stops the run, nothing more starts, the prompts in flight finish, and
    /// the first reason is the run's.
    async fn schedule(&self, todo: Vec<usize>) -> Result<(Vec<String>, Vec<String>)> {
        let (plan, config) = (self.ctx.plan, self.ctx.config);
        let history = config.context.history;
        let mut queue = Queue::new(todo);
        if self.lanes.is_some() {
            queue = queue.in_worktrees();
        }
        let mut running = FuturesUnordered::new();
        let (mut failed, mut skipped) = (Vec::new(), Vec::new());
        let mut stop: Option<Error> = None;
        let lanes = self.lanes.as_ref();
        if let Some(lanes) = lanes {
            lanes.begin(&queue.todo());
        }
        loop {
            if stop.is_none() {
                stop = self.may_go_on().err();
            }
            if let (Some(lanes), Some(_)) = (lanes, &stop) {
                // What will not start in this run no longer holds back a merge.
                queue.waiting().for_each(|i| lanes.settled(i));
            }
            while stop.is_none() && running.len() < self.jobs {
                let next = queue.next(&self.book.borrow().fold, plan, history);
                match next {
                    Next::Start(i) => {
                        queue.started(i);
                        let run = self.prompt_run(i);
                        running.push(async move { (i, run.run().await) });
                    }
                    Next::Blocked(i, reason) => {
                        queue.settled(i);
                        lanes.inspect(|l| l.settled(i));
                        match self.skip(i, &reason) {
                            Ok(()) => skipped.push(plan.prompts[i].id.to_string()),
                            Err(e) => stop = Some(e),
                        }
                    }
                    Next::Wait | Next::Done => break,
                }
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            queue.settled(i);
            lanes.inspect(|l| l.settled(i));
            let prompt = &plan.prompts[i];
            match result {
                Err(e) => {
                    stop.get_or_insert(e);
                }
                Ok(Step::Completed) => self.write_views(false)?,
                Ok(Step::Failed { reason, stop: now }) => {
                    self.fail(i, &reason)?;
                    if let Some(now) = now {
                        stop.get_or_insert(now);
                    } else if config.run.on_failure == OnFailure::Halt {
                        stop.get_or_insert(Error::PromptFailed(format!(
                            "{} failed: {reason}. Fix the cause, then `orchestrator rerun {}` (or `orchestrator run`) to go on",
                            prompt.file, prompt.id
                        )));
                    } else {
                        failed.push(prompt.id.to_string());
                    }
                }
            }
        }
        match stop {
            Some(e) => Err(e),
            None => Ok((failed, skipped)),
        }
    }

    /// Prompt `index` cannot run (`reason`): skipped, or with `on_failure = "halt"` the
    /// run stops.
    fn skip(&self, index: usize, reason: &str) -> Result<()> {
        let prompt = &self.ctx.plan.prompts[index];
        if self.ctx.config.run.on_failure == OnFailure::Halt {
            return Err(Error::PromptFailed(format!(
                "{} cannot run: {reason}",
                prompt.file
            )));
        }
        self.record(Said::event(Event::Skipped {
            id: prompt.id.to_string(),
            reason: reason.to_string(),
        }))?;
        self.tell(RunEvent::Skipped { prompt, reason });
        Ok(())
    }

    fn prompt_run(&self, index: usize) -> PromptRun<'_, 'a> {
        let (plan, config) = (self.ctx.plan, self.ctx.config);
        let mut vars = Tally::variables_before(index, &self.book.borrow().fold, plan, config);
        // In a parallel agent build the prompt and its checks name its own worktree.
        if let Some(lanes) = &self.lanes {
            let here = lanes.dir(plan.prompts[index].id.as_str(), false);
            crate::config::workspace_at(&mut vars, &here);
        }
        PromptRun {
            ctx: self.ctx,
            book: &self.book,
            endpoint: &self.endpoint,
            snapshots: &self.snapshots,
            lanes: self.lanes.as_ref(),
            interrupt: &self.interrupt,
            observer: self.observer,
            gate: &self.gate,
            held_usd: &self.held_usd,
            index,
            vars,
        }
    }

    /// Whether the run may take on another prompt: not when interrupted or out of time.
    fn may_go_on(&self) -> Result<()> {
        if self.interrupt.is_set() {
            return Err(Error::Interrupted);
        }
        let max_duration = self.ctx.config.run.max_duration;
        if self.started.elapsed() >= max_duration {
            return Err(Error::TimeLimit(format!(
                "run.max_duration ({}) reached; `orchestrator run` continues",
                show_duration(max_duration)
            )));
        }
        Ok(())
    }

    /// The end of the prompts taken on: the session finished if none is left, and what
    /// failed or was skipped said.
    fn finish(&mut self, failed: &[String], skipped: &[String]) -> Result<()> {
        if current_prompt(&self.book.get_mut().fold, self.ctx.plan).is_none() {
            self.record(Said::event(Event::Finished {}))?;
        }
        self.write_views(true)?;
        let book = self.book.get_mut();
        let ledger = Ledger::new(&book.fold, self.ctx.plan, self.ctx.config);
        self.observer.event(RunEvent::Finished {
            completed: book.tally.done,
            ledger: &ledger,
            failed,
            skipped,
        });
        let mut parts = Vec::new();
        if !failed.is_empty() {
            parts.push(format!("failed: {}", failed.join(", ")));
        }
        if !skipped.is_empty() {
            parts.push(format!("skipped: {}", skipped.join(", ")));
        }
        if parts.is_empty() {
            return Ok(());
        }
        Err(Error::PromptFailed(format!(
            "{}; `orchestrator status` shows why",
            parts.join("; ")
        )))
    }

    /// Sets the session in `checkpoints/` aside (archived as it is) once its workspace is
    /// known to hold nothing of the user's: what its last attempt left is discarded (kept
    /// under `refs/orchestrator/`); the user's changes refuse the new session, or with
    /// `allow_dirty` go into its baseline.
    async fn retire(&mut self, old: Fold, allow_dirty: bool, why: Retire) -> Result<()> {
        let said = self
            .snapshots
            .retire(&old, self.ctx.plan, allow_dirty)
            .await?;
        said.tell(self.observer);
        if let Some(archived) = self.book.get_mut().store.archive()? {
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

    /// The prompt failed for good: journaled, the views written, told.
    fn fail(&self, index: usize, reason: &str) -> Result<()> {
        let prompt = &self.ctx.plan.prompts[index];
        self.record(Said::event(Event::Failed {
            id: prompt.id.to_string(),
            file: prompt.file.clone(),
            error: reason.to_string(),
        }))?;
        self.write_views(true)?;
        let book = self.book.borrow();
        let state = book.fold.prompts.get(prompt.id.as_str());
        self.tell(RunEvent::Failed {
            prompt,
            reason,
            attempt: state.map_or(0, |p| p.last_attempt),
            input_tokens: state.map_or(0, |p| p.tokens_in),
            output_tokens: state.map_or(0, |p| p.tokens_out),
            estimated: state.is_some_and(|p| p.estimated),
        });
        Ok(())
    }

    /// Stops the run: journaled, views written; the error sets the exit code.
    fn halt(&self, error: Error) -> Result<()> {
        let reason = error.to_string();
        self.record(Said::event(Event::Halted {
            reason: reason.clone(),
            code: error.exit_code(),
        }))?;
        self.write_views(true)?;
        self.tell(RunEvent::Halted {
            reason: &reason,
            code: error.exit_code(),
        });
        Err(error)
    }

    /// Rebuilds `status.json` and `memory.json`. They grow with the run, so between
    /// prompts they are written at most once a second (`force` writes now: at the start, a
    /// failure, a halt and the end); the journal, appended per event, is the truth.
    fn write_views(&self, force: bool) -> Result<()> {
        if !force
            && self
                .views_written
                .get()
                .is_some_and(|t| t.elapsed() < VIEWS_EVERY)
        {
            return Ok(());
        }
        self.views_written.set(Some(Instant::now()));
        let book = self.book.borrow();
        let (fold, plan, config) = (&book.fold, self.ctx.plan, self.ctx.config);
        let ledger = Ledger::new(fold, plan, config);
        let saved = fold.completed.len();
        let status = views::status_doc(fold, plan, &ledger, config, saved);
        let memory = views::MemoryView::new(fold, plan, &config.variables);
        book.store.write_json(state::STATUS, &status)?;
        book.store.write_json(state::MEMORY, &memory)
    }
}

/// `[[llm.fallback]]`'s providers, each named for the journal as its place and what it is.
fn fallbacks(ctx: Context<'_>) -> Result<Vec<(String, Provider)>> {
    let mut out = Vec::new();
    for (i, f) in ctx.config.llm.fallback.iter().enumerate() {
        let mut alone = ctx.config.clone();
        alone.llm = f.clone();
        let provider = Provider::from_config(&alone)?;
        out.push((
            format!("llm.fallback[{i}] ({})", provider.describe()),
            provider,
        ));
    }
    Ok(out)
}

/// Prompts in flight at once (`run.jobs`), requests (at most `llm.max_concurrency`), and
/// for an agent build with more than one job, the worktrees its attempts work in.
fn jobs(
    ctx: Context<'_>,
    workspace: Option<&Workspace>,
    observer: &dyn Observer,
) -> (usize, usize, Option<Lanes>) {
    let mut jobs = ctx.config.run.jobs.max(1) as usize;
    let looping = ctx.plan.prompts.iter().any(|p| p.front.until.is_some());
    let continuing = !ctx.config.llm.continue_session.is_empty();
    if jobs > 1 && workspace.is_some_and(Workspace::snapshots) && (looping || continuing) {
        // An `until` loop builds on its own last iteration, and an agent's session is
        // kept per folder: both need the one workspace.
        let why = if looping {
            "a prompt has an `until` loop"
        } else {
            "llm.continue_session is set"
        };
        observer.event(RunEvent::Warning(&format!(
            "run.jobs > 1, but {why}, which needs the workspace itself rather than a worktree per attempt: this agent build runs one prompt at a time"
        )));
        jobs = 1;
    }
    let at_once = ctx
        .config
        .llm
        .max_concurrency
        .map_or(jobs, |m| jobs.min(m as usize));
    let lanes = (jobs > 1 && workspace.is_some_and(Workspace::snapshots))
        .then(|| Lanes::new(lanes::root(ctx.checkpoints)));
    (jobs, at_once, lanes)
}
