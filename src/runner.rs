//! The unattended run (spec, "Recovery rules", "State in checkpoints/", "Commands").
//!
//! One loop, readable top to bottom: plan → for each prompt left: budget check → journal
//! the attempt → send → classify → journal the result → save outputs and variables. Every
//! state change is a journal event, appended and fsynced before it counts; the views
//! (`status.json`, `memory.json`) are rebuilt from the folded journal once per prompt.
//!
//! The single-threaded runtime only ever has one request in flight, and state is written
//! between requests, never during one: the blocking fsyncs cannot stall a stream.

use std::time::Duration;

use backon::BackoffBuilder;
use serde_json::Value;
use tokio::time::Instant;

use crate::budget::{self, Allowance, Ledger};
use crate::checkpoint::{self, Checkpoint};
use crate::cli::{RunArgs, Settings};
use crate::config::{OnExceed, OnFailure};
use crate::error::{Error, Result, exit};
use crate::plan::{CheckpointMode, Plan, PromptId};
use crate::providers::{Failure, FailureKind, Finish, Provider, Reply};
use crate::request::{BuildError, RequestBuilder};
use crate::state::{self, Event, Fold, Outcome, Store};

mod output;
mod status;
use output::Reporter;
pub use status::status_command;
use status::{changed, current_prompt};

/// Which prompts a run takes on.
enum Selection {
    /// What is left, optionally from/until a prompt.
    Resume { from: usize, until: usize },
    /// One prompt (if not completed).
    Only(usize),
    /// Prompts run again whatever their state (`rerun`).
    Again { from: usize, until: usize },
}

pub fn run_command(settings: &Settings, args: &RunArgs) -> Result<i32> {
    let plan = settings.load_plan()?;
    let last = plan.prompts.len() - 1;
    let selection = match &args.only {
        Some(id) => Selection::Only(plan.resolve(id)?),
        None => Selection::Resume {
            from: args
                .from
                .as_deref()
                .map(|id| plan.resolve(id))
                .transpose()?
                .unwrap_or(0),
            until: args
                .until
                .as_deref()
                .map(|id| plan.resolve(id))
                .transpose()?
                .unwrap_or(last),
        },
    };
    execute(settings, &plan, selection, args.restart, "run")
}

pub fn rerun_command(settings: &Settings, id: &str, and_after: bool) -> Result<i32> {
    let plan = settings.load_plan()?;
    let start = plan.resolve(id)?;
    let until = if and_after {
        plan.prompts.len() - 1
    } else {
        start
    };
    execute(
        settings,
        &plan,
        Selection::Again { from: start, until },
        false,
        "rerun",
    )
}

fn execute(
    settings: &Settings,
    plan: &Plan,
    selection: Selection,
    restart: bool,
    command: &str,
) -> Result<i32> {
    let builder = RequestBuilder::new(&settings.config, plan, &settings.config_dir)?;
    let mut store = Store::open(&settings.checkpoints)?;
    let (records, warning) = store.load()?;
    let out = Reporter::new(settings.output, plan.prompts.len());
    if let Some(w) = warning {
        out.warn(&w);
    }
    let mut fold = Fold::default();
    for r in &records {
        fold.apply(r);
    }
    restore_outputs(&store, &fold, &records, &out)?;
    drop(records);
    if restart && !fold.session_id.is_empty() {
        let archived = store.archive(&fold.session_id)?;
        out.note(&format!(
            "the previous session is archived in {}",
            archived.display()
        ));
        fold = Fold::default();
    }
    let provider = Provider::from_config(&settings.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let interrupt = Interrupt::install()?;
        let tally = Tally::new(&fold, plan, &settings.config);
        let mut session = Session {
            views_written: None,
            tally,
            settings,
            plan,
            builder,
            provider,
            store,
            fold,
            out,
            started: Instant::now(),
            interrupt,
        };
        let todo = session.todo(&selection);
        session.run(todo, command).await
    })
}

/// Rewrites, from the journal, the output of any completed prompt whose file is missing
/// (outputs are written without fsync; a crash can lose one, never its journal record).
fn restore_outputs(
    store: &Store,
    fold: &Fold,
    records: &[state::Record],
    out: &Reporter,
) -> Result<()> {
    for id in &fold.completed {
        let Some(output) = fold.prompts.get(id).and_then(|p| p.output.as_deref()) else {
            continue;
        };
        if store.dir.join(output).is_file() {
            continue;
        }
        let reply = records.iter().rev().find_map(|r| match &r.event {
            Event::Completed { id: rid, reply, .. } if rid == id => Some(reply),
            _ => None,
        });
        if let Some(reply) = reply {
            store.write_copy(output, reply.as_bytes())?;
            out.note(&format!("{output} was missing; rewritten from the journal"));
        }
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP, as a flag that futures can wait on.
#[derive(Clone)]
struct Interrupt {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Interrupt {
    fn install() -> Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut streams = Vec::new();
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ] {
            streams.push(
                signal(kind).map_err(|e| Error::Usage(format!("cannot handle signals: {e}")))?,
            );
        }
        tokio::spawn(async move {
            let [mut a, mut b, mut c]: [_; 3] = match streams.try_into() {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
            }
            let _ = tx.send(true);
        });
        Ok(Interrupt { rx })
    }

    fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|set| *set).await;
    }
}

/// How a prompt ended.
enum Step {
    Completed,
    /// Its attempts are used up, or it failed permanently.
    Failed(String),
}

/// What the loop asks of the fold on every prompt, kept up to date event by event rather
/// than recomputed over the whole plan: tokens spent per phase and in all, prompts done,
/// and the variables known before the next prompt.
struct Tally {
    phase_of: std::collections::HashMap<String, usize>,
    phase_spent: Vec<u64>,
    total_spent: u64,
    done: usize,
    /// Config's constants and the outputs of prompts `0..vars_upto`, later ones winning.
    vars: std::collections::BTreeMap<String, Value>,
    vars_upto: usize,
}

impl Tally {
    fn new(fold: &Fold, plan: &Plan, config: &crate::config::Config) -> Tally {
        let ledger = Ledger::new(fold, plan, config);
        Tally {
            phase_of: plan
                .prompts
                .iter()
                .map(|p| (p.id.to_string(), p.phase))
                .collect(),
            phase_spent: ledger.phases.iter().map(|p| p.used).collect(),
            total_spent: ledger.total.used,
            done: plan
                .prompts
                .iter()
                .filter(|p| fold.done.contains(p.id.as_str()))
                .count(),
            vars: config.variables.clone(),
            vars_upto: 0,
        }
    }

    /// Applies a journaled record to the fold and to the tallies.
    fn apply(&mut self, fold: &mut Fold, record: &state::Record) {
        let id = match &record.event {
            Event::AttemptStarted { id, .. } | Event::AttemptFinished { id, .. } => {
                Some(id.clone())
            }
            _ => None,
        };
        let before = id.as_deref().map_or(0, |id| fold.spent(id));
        let was_done = match &record.event {
            Event::Completed { id, .. } | Event::Failed { id, .. } => fold.done.contains(id),
            _ => false,
        };
        fold.apply(record);
        if let Some(id) = id {
            let after = fold.spent(&id);
            let delta = |n: u64| n.saturating_add(after).saturating_sub(before);
            self.total_spent = delta(self.total_spent);
            if let Some(&p) = self.phase_of.get(&id) {
                self.phase_spent[p] = delta(self.phase_spent[p]);
            }
        }
        match &record.event {
            Event::Completed { id, .. } if !was_done && self.phase_of.contains_key(id) => {
                self.done += 1
            }
            Event::Failed { id, .. } if was_done && self.phase_of.contains_key(id) => {
                self.done = self.done.saturating_sub(1);
            }
            _ => {}
        }
    }

    fn remaining(
        &self,
        phase: usize,
        plan: &Plan,
        config: &crate::config::Config,
    ) -> budget::Remaining {
        let ph = &plan.phases[phase];
        budget::Remaining {
            phase: ph.budget.map(|b| {
                (
                    format!("phase {}", ph.name),
                    b.saturating_sub(self.phase_spent[phase]),
                )
            }),
            total: config.budget.total.saturating_sub(self.total_spent),
        }
    }

    /// Brings `vars` to the variables known before prompt `index`: extended forward as the
    /// run moves on, rebuilt when it goes back (a rerun).
    fn variables_up_to(
        &mut self,
        index: usize,
        fold: &Fold,
        plan: &Plan,
        config: &crate::config::Config,
    ) {
        if index < self.vars_upto {
            self.vars = config.variables.clone();
            self.vars_upto = 0;
        }
        for p in &plan.prompts[self.vars_upto..index] {
            if let Some(out) = fold.variables.get(p.id.as_str()) {
                self.vars
                    .extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        self.vars_upto = index;
    }
}

/// How often the views are rewritten between prompts (see `Session::write_views`).
const VIEWS_EVERY: Duration = Duration::from_secs(1);

struct Session<'a> {
    views_written: Option<Instant>,
    /// Incremental views of the fold, so that each prompt costs the same on long runs.
    tally: Tally,
    settings: &'a Settings,
    plan: &'a Plan,
    builder: RequestBuilder<'a>,
    provider: Provider,
    store: Store,
    fold: Fold,
    out: Reporter,
    started: Instant,
    interrupt: Interrupt,
}

impl Session<'_> {
    fn todo(&self, selection: &Selection) -> Vec<usize> {
        let done = |i: usize| self.is_completed(i);
        match *selection {
            Selection::Resume { from, until } => (from..=until).filter(|&i| !done(i)).collect(),
            Selection::Only(i) => {
                if done(i) {
                    self.out.note(&format!(
                        "{} is already completed; `orchestrator rerun {}` runs it again",
                        self.plan.prompts[i].id, self.plan.prompts[i].id
                    ));
                    Vec::new()
                } else {
                    vec![i]
                }
            }
            Selection::Again { from, until } => (from..=until).collect(),
        }
    }

    fn is_completed(&self, i: usize) -> bool {
        self.fold.done.contains(self.plan.prompts[i].id.as_str())
    }

    async fn run(&mut self, todo: Vec<usize>, command: &str) -> Result<i32> {
        if self.fold.session_id.is_empty() {
            let started = state::now();
            // The seed's id has one-second resolution: a session restarted within the
            // second it was archived gets a suffix, so that no two sessions share an id.
            let base = session_id(&started);
            let archive = self.store.dir.join(state::ARCHIVE);
            let mut session_id = base.clone();
            let mut n = 1;
            while archive.join(&session_id).exists() {
                n += 1;
                session_id = format!("{base}-{n}");
            }
            self.journal(vec![Event::SessionStarted {
                session_id,
                started,
            }])?;
        }
        self.journal(vec![Event::RunStarted {
            pid: std::process::id(),
            command: command.to_string(),
        }])?;
        self.settle_open_attempts()?;
        for id in changed(&self.fold, self.plan) {
            self.out.warn(&format!(
                "prompt {id} changed since it ran; `orchestrator rerun {id}` runs it again"
            ));
        }
        self.write_views(true)?;
        self.out
            .started(&self.fold.session_id, todo.len(), self.done_count());

        let mut failed = Vec::new();
        for index in todo {
            if self.interrupt.is_set() {
                return self.interrupted();
            }
            if self.started.elapsed() >= self.settings.config.run.max_duration {
                let reason = format!(
                    "run.max_duration ({}) reached; `orchestrator run` continues",
                    humantime::format_duration(self.settings.config.run.max_duration)
                );
                return self.halt(exit::TIME_LIMIT, reason);
            }
            if let Some(reason) = self.blocked(index) {
                let prompt = &self.plan.prompts[index];
                if self.settings.config.run.on_failure == OnFailure::Halt {
                    let message = format!("{} cannot run: {reason}", prompt.file);
                    return self.halt(exit::PROMPT_FAILED, message);
                }
                let id = prompt.id.to_string();
                self.journal(vec![Event::Skipped {
                    id: id.clone(),
                    reason: reason.clone(),
                }])?;
                self.out.skipped(&self.plan.prompts[index], &reason);
                failed.push(id);
                continue;
            }
            match self.run_prompt(index).await? {
                Step::Completed => {}
                Step::Failed(reason) => {
                    let prompt = &self.plan.prompts[index];
                    if self.settings.config.run.on_failure == OnFailure::Halt {
                        let message = format!(
                            "{} failed: {reason}. Fix the cause, then `orchestrator rerun {}` (or `orchestrator run`) to go on",
                            prompt.file, prompt.id
                        );
                        return self.halt(exit::PROMPT_FAILED, message);
                    }
                    failed.push(prompt.id.to_string());
                }
            }
        }
        if current_prompt(&self.fold, self.plan).is_none() {
            self.journal(vec![Event::Finished {}])?;
        }
        self.write_views(true)?;
        let ledger = Ledger::new(&self.fold, self.plan, &self.settings.config);
        self.out.finished(self.done_count(), &ledger, &failed);
        if failed.is_empty() {
            Ok(exit::OK)
        } else {
            Err(Error::PromptFailed(format!(
                "{} prompt(s) failed or were skipped: {}; `orchestrator status` shows why",
                failed.len(),
                failed.join(", ")
            )))
        }
    }

    fn done_count(&self) -> usize {
        self.tally.done
    }

    /// An attempt journaled as started with no result: the runner died mid-request. It may
    /// have been billed, so it is counted at its worst case, and its prompt is sent again.
    fn settle_open_attempts(&mut self) -> Result<()> {
        let open = self.fold.open.clone();
        for o in open {
            self.out.warn(&format!(
                "{} attempt {}: no result was recorded (the runner stopped mid-request); it is possibly billed and counted at its worst case ({} tokens)",
                o.id,
                o.attempt,
                o.input_tokens + u64::from(o.max_tokens)
            ));
            self.journal(vec![Event::AttemptFinished {
                id: o.id.clone(),
                attempt: o.attempt,
                outcome: Outcome::Unknown,
                input_tokens: o.input_tokens,
                output_tokens: u64::from(o.max_tokens),
                estimated: true,
                finish_reason: None,
                request_id: None,
                error: Some("possibly billed: no result was recorded".into()),
                duration_ms: 0,
                cost_usd: 0.0,
            }])?;
        }
        Ok(())
    }

    /// `on_failure = "skip"`: a prompt whose dependency did not complete is skipped.
    fn blocked(&self, index: usize) -> Option<String> {
        let prompt = &self.plan.prompts[index];
        prompt
            .depends_on
            .iter()
            .find(|&&d| !self.is_completed(d))
            .map(|&d| {
                let dep = &self.plan.prompts[d];
                let how = if self.fold.failed.iter().any(|f| f == dep.id.as_str()) {
                    "failed"
                } else if self.fold.skipped.iter().any(|f| f == dep.id.as_str()) {
                    "was skipped"
                } else {
                    "has not completed"
                };
                format!("it depends on {} ({}), which {how}", dep.id, dep.name)
            })
    }

    /// One prompt, with its retries.
    async fn run_prompt(&mut self, index: usize) -> Result<Step> {
        let config = &self.settings.config;
        let prompt = &self.plan.prompts[index];
        self.tally
            .variables_up_to(index, &self.fold, self.plan, &self.settings.config);
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(config.retry.initial_delay)
            .with_max_delay(config.retry.max_delay)
            .without_max_times()
            .build();
        let mut note: Option<String> = None;
        let mut last_reason = String::new();
        for attempt in 1..=config.retry.max_attempts {
            let request = match self.builder.build(index, &self.tally.vars, note.as_deref()) {
                Ok(r) => r,
                Err(BuildError::Prompt(e)) => return self.halt(exit::USAGE, e.to_string()),
                Err(BuildError::Missing(missing)) => {
                    let reason = format!(
                        "it needs {} but no completed prompt produced {}; run the prompts that declare {} first",
                        missing
                            .iter()
                            .map(|m| format!("{{{{{m}}}}}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if missing.len() == 1 { "it" } else { "them" },
                        if missing.len() == 1 { "it" } else { "them" },
                    );
                    return self.fail(index, reason);
                }
            };
            let input = self.builder.input_tokens(&request);
            if input > config.budget.per_prompt {
                let reason = format!(
                    "{} counts {input} tokens as sent, over budget.per_prompt ({}); nothing was sent. Shorten the prompt or raise budget.per_prompt",
                    prompt.file, config.budget.per_prompt
                );
                return self.halt(exit::BUDGET, reason);
            }
            let max_tokens = match self.allowance(index, input, request.max_tokens)? {
                Some(m) => m,
                None => unreachable!("allowance halts when nothing fits"),
            };

            self.journal(vec![Event::AttemptStarted {
                id: prompt.id.to_string(),
                file: prompt.file.clone(),
                attempt,
                input_tokens: input,
                max_tokens,
            }])?;
            self.out.phase(&self.plan.phases[prompt.phase].name);
            self.out.attempt(prompt, attempt, input, max_tokens);
            self.out.detail(&format!(
                "{} attempt {attempt}: sending to {}: model {}, {input} input tokens, max_tokens {max_tokens}",
                prompt.id,
                self.provider.describe(),
                request.model
            ));
            let t0 = Instant::now();
            let progress_bar = self.out.progress_handle();
            let progress = move |n: u64| progress_bar(n);
            let outcome = tokio::select! {
                o = self.provider.send(&request, max_tokens, &progress) => Some(o),
                _ = self.interrupt.wait() => None,
            };
            let duration_ms = t0.elapsed().as_millis() as u64;
            let Some(outcome) = outcome else {
                self.journal(vec![Event::AttemptFinished {
                    id: prompt.id.to_string(),
                    attempt,
                    outcome: Outcome::Interrupted,
                    input_tokens: input,
                    output_tokens: 0,
                    estimated: true,
                    finish_reason: None,
                    request_id: None,
                    error: Some("interrupted: the request was dropped".into()),
                    duration_ms,
                    cost_usd: 0.0,
                }])?;
                return self.interrupted();
            };
            match outcome {
                Ok(reply) => {
                    let (input_tokens, output_tokens, estimated) = match reply.usage {
                        Some(u) => (u.input, u.output, false),
                        None => (input, self.builder.encoding.count(&reply.text), true),
                    };
                    let cost_usd = reply.cost_usd.unwrap_or_else(|| {
                        config
                            .pricing
                            .map_or(0.0, |p| p.cost(input_tokens, output_tokens))
                    });
                    let finished = |outcome, error: Option<String>| Event::AttemptFinished {
                        id: prompt.id.to_string(),
                        attempt,
                        outcome,
                        input_tokens,
                        output_tokens,
                        estimated,
                        finish_reason: Some(reply.finish.as_str().to_string()),
                        request_id: reply.request_id.clone(),
                        error,
                        duration_ms,
                        cost_usd,
                    };
                    self.out.detail(&format!(
                        "{} attempt {attempt}: {} after {duration_ms} ms, finish {}, {input_tokens} in / {output_tokens} out{}{}",
                        prompt.id,
                        if reply.usage.is_some() { "reply" } else { "reply without usage" },
                        reply.finish.as_str(),
                        if estimated { " (estimated)" } else { "" },
                        reply.request_id.as_deref().map(|r| format!(", request id {r}")).unwrap_or_default(),
                    ));
                    match self.check_reply(index, &reply, max_tokens) {
                        Ok(cp) => {
                            let output = format!("{}/{}.md", state::OUTPUTS, prompt.id);
                            let mut events = vec![finished(Outcome::Ok, None)];
                            if let Some(warning) = self.names_other_prompt(index, &cp) {
                                events.push(Event::Warning {
                                    id: Some(prompt.id.to_string()),
                                    message: warning.clone(),
                                });
                                self.out.warn(&format!("{}: {warning}", prompt.id));
                            }
                            events.push(Event::Completed {
                                id: prompt.id.to_string(),
                                name: prompt.name.clone(),
                                file: prompt.file.clone(),
                                hash: prompt.hash.clone(),
                                variables: cp.variables,
                                files_created: cp.files_created,
                                output: output.clone(),
                                reply: reply.text.clone(),
                            });
                            self.journal(events)?;
                            self.store.write_copy(&output, reply.text.as_bytes())?;
                            self.write_views(false)?;
                            self.out.completed(
                                prompt,
                                attempt,
                                input_tokens,
                                output_tokens,
                                estimated,
                                duration_ms,
                                self.done_count(),
                            );
                            return Ok(Step::Completed);
                        }
                        Err(reason) => {
                            self.journal(vec![finished(Outcome::Content, Some(reason.clone()))])?;
                            last_reason = reason.clone();
                            if attempt < config.retry.max_attempts {
                                self.journal(vec![Event::Retry {
                                    id: prompt.id.to_string(),
                                    attempt: attempt + 1,
                                    delay_ms: 0,
                                    reason: reason.clone(),
                                }])?;
                                self.out.retry(
                                    prompt,
                                    attempt + 1,
                                    Duration::ZERO,
                                    &reason,
                                    input_tokens,
                                    output_tokens,
                                    estimated,
                                );
                                note = Some(retry_note(&reason));
                            }
                        }
                    }
                }
                Err(failure) => {
                    let (input_tokens, output_tokens) = if failure.reached_model {
                        (input, self.builder.encoding.count(&failure.partial))
                    } else {
                        (0, 0)
                    };
                    let outcome = match failure.kind {
                        FailureKind::Transient => Outcome::Transient,
                        FailureKind::Permanent | FailureKind::Quota => Outcome::Permanent,
                    };
                    self.journal(vec![Event::AttemptFinished {
                        id: prompt.id.to_string(),
                        attempt,
                        outcome,
                        input_tokens,
                        output_tokens,
                        estimated: true,
                        finish_reason: None,
                        request_id: failure.request_id.clone(),
                        error: Some(failure.to_string()),
                        duration_ms,
                        cost_usd: config
                            .pricing
                            .map_or(0.0, |p| p.cost(input_tokens, output_tokens)),
                    }])?;
                    last_reason = describe_failure(&failure);
                    if failure.kind != FailureKind::Transient {
                        return self.fail(index, last_reason);
                    }
                    if attempt == config.retry.max_attempts {
                        break;
                    }
                    if let Some(wait) = failure.retry_after
                        && wait > config.retry.max_delay
                    {
                        let reason = format!(
                            "{last_reason}; the server asks to wait {}, longer than retry.max_delay ({}), so the prompt fails rather than sleeping",
                            humantime::format_duration(round(wait)),
                            humantime::format_duration(config.retry.max_delay)
                        );
                        return self.fail(index, reason);
                    }
                    let exponential = backoff.next().unwrap_or(config.retry.max_delay);
                    // Full jitter: anywhere between no wait and the exponential delay, but
                    // never less than what the server asked for.
                    let jittered = exponential.mul_f64(fastrand::f64());
                    let delay = jittered
                        .max(failure.retry_after.unwrap_or_default())
                        .min(config.retry.max_delay);
                    self.journal(vec![Event::Retry {
                        id: prompt.id.to_string(),
                        attempt: attempt + 1,
                        delay_ms: delay.as_millis() as u64,
                        reason: last_reason.clone(),
                    }])?;
                    self.out.retry(
                        prompt,
                        attempt + 1,
                        delay,
                        &last_reason,
                        input_tokens,
                        output_tokens,
                        true,
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.interrupt.wait() => return self.interrupted(),
                    }
                }
            }
        }
        let reason = format!(
            "all {} attempts failed; the last: {last_reason}",
            config.retry.max_attempts
        );
        self.fail(index, reason)
    }

    /// The budgets' word on a request: the `max_tokens` to send with, or a halt.
    fn allowance(&mut self, index: usize, input: u64, asked: u32) -> Result<Option<u32>> {
        let config = &self.settings.config;
        let prompt = &self.plan.prompts[index];
        let remaining = self.tally.remaining(prompt.phase, self.plan, config);
        let spent_usd = self.fold.cost_usd;
        let input = self.fold.calibrated(input);
        let allowance = if self.provider.caps_output() {
            budget::allow(input, asked, config.budget.min_output, &remaining)
        } else {
            // An agent CLI cannot be capped mid-call: its worst case must fit.
            budget::allow(input, asked, u64::from(asked), &remaining)
        };
        if let (Some(max_cost), Some(pricing)) = (config.budget.max_cost_usd, config.pricing) {
            let worst = pricing.cost(input, u64::from(asked));
            if spent_usd + worst > max_cost {
                let reason = format!(
                    "budget.max_cost_usd (${max_cost:.2}) would be exceeded: ${spent_usd:.4} spent, this request may cost ${worst:.4}; nothing was sent"
                );
                return self.budget_exceeded(index, reason, asked);
            }
        } else if let Some(max_cost) = config.budget.max_cost_usd
            && spent_usd >= max_cost
        {
            let reason = format!(
                "budget.max_cost_usd (${max_cost:.2}) is spent (${spent_usd:.4}); nothing was sent"
            );
            return self.budget_exceeded(index, reason, asked);
        }
        match allowance {
            Allowance::Send { max_tokens } => Ok(Some(max_tokens)),
            Allowance::DoesNotFit {
                which,
                remaining,
                needed,
            } => {
                let reason = format!(
                    "{} needs {needed} tokens (input {input} + {} output) but {which} has {remaining} left; nothing was sent. Raise the budget in config.toml, then `orchestrator run` continues",
                    prompt.id,
                    needed - input
                );
                self.budget_exceeded(index, reason, asked)
            }
        }
    }

    fn budget_exceeded(&mut self, index: usize, reason: String, asked: u32) -> Result<Option<u32>> {
        match self.settings.config.budget.on_exceed {
            OnExceed::Halt => self.halt(exit::BUDGET, reason),
            OnExceed::Warn => {
                let id = self.plan.prompts[index].id.to_string();
                self.out.warn(&format!(
                    "{id}: {reason} (budget.on_exceed = \"warn\": sending anyway)"
                ));
                self.journal(vec![Event::Warning {
                    id: Some(id),
                    message: reason,
                }])?;
                Ok(Some(asked))
            }
        }
    }

    /// Whether a reply passes the checkpoint protocol; the reason it does not, if not.
    fn check_reply(
        &self,
        index: usize,
        reply: &Reply,
        max_tokens: u32,
    ) -> std::result::Result<Checkpoint, String> {
        let prompt = &self.plan.prompts[index];
        match reply.finish {
            Finish::Length => {
                return Err(format!(
                    "the reply was cut at the token limit (max_tokens {max_tokens}); answer more briefly so that the checkpoint block fits"
                ));
            }
            Finish::Refusal => {
                return Err(format!("the model refused: {}", short(&reply.text)));
            }
            Finish::ContentFilter => {
                return Err("the provider's content filter stopped the reply".into());
            }
            _ => {}
        }
        let Some(cp) = checkpoint::from_reply(&reply.text) else {
            return match prompt.checkpoint {
                CheckpointMode::Optional => Ok(Checkpoint {
                    success: true,
                    ..Checkpoint::default()
                }),
                CheckpointMode::Required => Err(format!(
                    "the reply has no checkpoint block; end it with a fenced json block {{\"prompt\": \"{}\", \"success\": true, \"outputs\": {{...}}}}",
                    prompt.name
                )),
            };
        };
        if !cp.success {
            let why = cp
                .variables
                .get("error")
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(format!("the checkpoint says \"success\": false{why}"));
        }
        let needed: Vec<&str> = prompt
            .needed_later
            .iter()
            .map(String::as_str)
            .filter(|name| !cp.variables.contains_key(*name))
            .collect();
        if !needed.is_empty() {
            return Err(format!(
                "the checkpoint lacks outputs that later prompts need: {}",
                needed.join(", ")
            ));
        }
        Ok(cp)
    }

    /// A block that names another prompt is accepted, with a warning.
    fn names_other_prompt(&self, index: usize, cp: &Checkpoint) -> Option<String> {
        let prompt = &self.plan.prompts[index];
        let named = cp.names.as_deref()?.trim();
        let named = named.strip_suffix(".md").unwrap_or(named);
        let same = named == prompt.name
            || PromptId::split_prefix(named).is_some_and(|(id, _)| id == prompt.id);
        (!same).then(|| {
            format!(
                "the checkpoint block names {named:?}, not {}; accepted",
                prompt.name
            )
        })
    }

    fn fail(&mut self, index: usize, reason: String) -> Result<Step> {
        let prompt = &self.plan.prompts[index];
        self.journal(vec![Event::Failed {
            id: prompt.id.to_string(),
            file: prompt.file.clone(),
            error: reason.clone(),
        }])?;
        self.write_views(true)?;
        self.out.failed(prompt, &reason);
        Ok(Step::Failed(reason))
    }

    /// Stops the run: journaled, views written, the error that sets the exit code.
    fn halt<T>(&mut self, code: i32, reason: String) -> Result<T> {
        self.journal(vec![Event::Halted {
            reason: reason.clone(),
            code,
        }])?;
        self.write_views(true)?;
        self.out.halted(&reason, code);
        Err(match code {
            exit::BUDGET => Error::Budget(reason),
            exit::USAGE => Error::Usage(reason),
            exit::TIME_LIMIT => Error::TimeLimit(reason),
            _ => Error::PromptFailed(reason),
        })
    }

    fn interrupted<T>(&mut self) -> Result<T> {
        self.journal(vec![Event::Halted {
            reason: "interrupted".into(),
            code: exit::INTERRUPTED,
        }])?;
        self.write_views(true)?;
        self.out.halted(
            "interrupted; state is saved, `orchestrator run` resumes",
            exit::INTERRUPTED,
        );
        Err(Error::Interrupted)
    }

    fn journal(&mut self, events: Vec<Event>) -> Result<()> {
        let records = self.store.append(&events)?;
        for r in &records {
            self.tally.apply(&mut self.fold, r);
        }
        Ok(())
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
        let ledger = Ledger::new(&self.fold, self.plan, &self.settings.config);
        let current = current_prompt(&self.fold, self.plan);
        let status = state::StatusView::new(&self.fold, self.plan, &ledger, current.as_deref());
        let memory = state::MemoryView::new(&self.fold, self.plan, &self.settings.config.variables);
        self.store.write_file(state::STATUS, &pretty(&status))?;
        self.store.write_file(state::MEMORY, &pretty(&memory))
    }
}

fn pretty(v: &impl serde::Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The seed's session id format, `%Y%m%d_%H%M%S`, from an RFC 3339 time.
fn session_id(rfc3339: &str) -> String {
    let digits: String = rfc3339
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    if digits.len() == 14 {
        format!("{}_{}", &digits[..8], &digits[8..])
    } else {
        digits
    }
}

/// The note a retry after a content failure carries, in the spirit of the seed's recovery.
fn retry_note(reason: &str) -> String {
    format!(
        "Note: your previous attempt at this prompt failed: {reason}. Do the whole task again and end your reply with the checkpoint block."
    )
}

fn describe_failure(f: &Failure) -> String {
    let label = match f.kind {
        FailureKind::Quota => "quota exhausted: ",
        _ => "",
    };
    format!("{label}{f}")
}

fn short(text: &str) -> String {
    let t = text.trim();
    let mut end = t.len().min(200);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].to_string()
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_use_the_seed_format() {
        assert_eq!(session_id("2026-11-25T08:44:09.123Z"), "20261125_084409");
    }
}
