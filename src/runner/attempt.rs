//! One prompt's attempts, each read top to bottom as four steps: **prepare** (the request,
//! counted, and what the budgets allow), **send** (journaled first; an agent's process
//! group journaled as it starts), **judge** (what the reply means, its checks, its commit)
//! and **settle** (journal the result; save the outputs, or say when to try again). The
//! steps below it return what happened; this file records it (`Book::record`) and says
//! how the prompt ended ([`Step`]): the run decides what that means for the run.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tokio::time::Instant;

use super::context::Context;
use super::endpoint::{Endpoint, reply_detail};
use super::events::{Observer, RunEvent, Said};
use super::gate::Gate;
use super::interrupt::{Interrupt, Wait};
use super::lanes::{Checking, Lanes, Refused};
use super::pause::Waiter;
use super::reserve;
use super::snapshot::{Point, Snapshots};
use super::steps::{Attempted, Prepared, Retrying, Step};
use super::tally::Book;
use super::{accounting, retry, turns, verdict, verification};
use crate::documents::AttemptOutcome;
use crate::error::{Error, Result};
use crate::process::Mark;
use crate::providers::{Call, Failure, FailureKind, Reply, Update};
use crate::request::BuildError;
use crate::state::{self, AttemptResult, Event};
use crate::workspace::Extras;
use crate::workspace::worktree::Worktree;

/// One prompt run to its end, over the run's parts (shared with the prompts in flight
/// beside it: the book is borrowed for a step that does not wait, never across a wait).
pub(crate) struct PromptRun<'r, 'a> {
    pub(crate) ctx: Context<'a>,
    pub(crate) book: &'r RefCell<Book>,
    pub(crate) endpoint: &'r Endpoint<'a>,
    pub(crate) snapshots: &'r Snapshots,
    /// A parallel agent build's worktrees.
    pub(crate) lanes: Option<&'r Lanes>,
    pub(crate) interrupt: &'r Interrupt,
    pub(crate) observer: &'a dyn Observer,
    /// The requests in flight, and how many may be.
    pub(crate) gate: &'r Gate,
    /// US dollars held by the attempts in flight.
    pub(crate) held_usd: &'r Cell<f64>,
    pub(crate) index: usize,
    /// The variables known before the prompt (config's and its predecessors' outputs).
    pub(crate) vars: BTreeMap<String, Value>,
}

impl<'r, 'a: 'r> PromptRun<'r, 'a> {
    fn record(&self, said: Said) -> Result<()> {
        self.book.borrow_mut().record(said, self.observer)
    }

    /// Where a workspace step for this prompt starts, read now.
    fn point(&self) -> Result<Option<Point>> {
        self.snapshots
            .point(&self.book.borrow(), self.ctx.plan, self.index)
    }

    fn id(&self) -> String {
        self.ctx.plan.prompts[self.index].id.to_string()
    }

    fn wait(&self) -> Wait<'r> {
        Wait {
            interrupt: self.interrupt,
            observer: self.observer,
        }
    }

    /// Attempts until one is accepted or `retry.max_attempts` are used (per prompt across
    /// the session: a run resumed after a crash goes on counting).
    pub(crate) async fn run(self) -> Result<Step> {
        let config = self.ctx.config;
        let id = self.id();
        let max_attempts = config.retry.max_attempts;
        let mut backoff = retry::schedule(config.retry.initial_delay, config.retry.max_delay);
        loop {
            let (used, last_error, last_attempt, note) = self.book.borrow().so_far(&id);
            if used >= max_attempts {
                let last = last_error.unwrap_or_else(|| "none recorded".into());
                let reason = format!("all {max_attempts} attempts failed; the last: {last}");
                return Ok(Step::Failed { reason, stop: None });
            }
            let attempt = last_attempt + 1;
            let (reason, with_backoff, asked, tokens, limit) =
                match self.attempt(attempt, note).await? {
                    Attempted::Completed => return Ok(Step::Completed),
                    Attempted::Fail(reason) => return Ok(Step::Failed { reason, stop: None }),
                    Attempted::Blocked { reason, stop } => {
                        return Ok(Step::Failed {
                            reason,
                            stop: Some(stop),
                        });
                    }
                    Attempted::Retry {
                        reason,
                        backoff,
                        asked,
                        tokens,
                        limit,
                    } => (reason, backoff, asked, tokens, limit),
                };
            let used = self
                .book
                .borrow()
                .fold
                .prompts
                .get(&id)
                .map_or(0, |p| p.attempts_used);
            if used >= max_attempts {
                continue;
            }
            let next = Retrying {
                attempt,
                reason,
                backoff: with_backoff,
                asked,
                tokens,
                limit,
            };
            let waiter = Waiter {
                ctx: self.ctx,
                endpoint: self.endpoint,
                book: self.book,
                observer: self.observer,
                interrupt: self.interrupt,
                index: self.index,
            };
            if let Some(step) = waiter.before_retry(next, &mut backoff).await? {
                return Ok(step);
            }
        }
    }

    /// One attempt: prepare, send, judge, settle.
    async fn attempt(&self, attempt: u32, note: Option<String>) -> Result<Attempted> {
        let mut p = match self.prepare(note.as_deref()).await? {
            Ok(p) => p,
            Err(cannot) => return Ok(cannot),
        };
        let mut lane_at = None;
        if let Some(at) = self.point()? {
            if attempt == 1 {
                let (snapshots, vars) = (self.snapshots, &self.vars);
                p.passing_before = verification::passing_before(
                    self.ctx,
                    snapshots,
                    (&at, self.index),
                    vars,
                    self.interrupt,
                )
                .await?;
            }
            if self.lanes.is_some() {
                lane_at = Some(at);
            } else {
                let restored = self.snapshots.restore_for(at, attempt, self.wait()).await?;
                self.record(restored)?;
            }
        }
        let dir = (self.lanes.zip(lane_at.as_ref())).map(|(l, at)| l.dir(&at.id, false));
        let pass = self.gate.pass().await;
        let mark = Mark::new();
        // What the budgets allow and the journaled start, with no wait between: the
        // attempt's reservation is in the fold before another prompt weighs its own.
        (p.max_tokens, p.usd) = self.allow(&p)?;
        p.by = self.endpoint.pick(crate::text::now_ms());
        self.started(attempt, &p, &mark, dir.as_deref())?;
        // Held until the attempt's result (and cost) is journaled, however it ends.
        let held = reserve::hold(self.held_usd, p.usd);
        let lane = match (self.lanes, lane_at, self.snapshots.snapshots()) {
            (Some(lanes), Some(at), Some(main)) => Some((lanes.open(main, &at).await?, at)),
            _ => None,
        };
        let t0 = Instant::now();
        let sent = self.send(attempt, &p, &mark, dir.as_deref().or(self.snapshots.dir()));
        let sent = sent.await;
        let crowded = self.gate.in_use() > 1;
        drop(pass);
        self.after_processes(&mark, attempt)?;
        let Some(outcome) = sent? else {
            let agent = self.endpoint.is_agent();
            let cut = accounting::interrupted(self.id(), attempt, p.counted, t0.elapsed(), agent);
            self.record(Said::event(Event::AttemptFinished(cut)))?;
            return Err(Error::Interrupted);
        };
        let duration_ms = crate::text::millis(t0.elapsed());
        let unpriced = reserve::unpriced(self.ctx, &outcome);
        let settled = match outcome {
            Ok(reply) => {
                self.gate.answered();
                let at = (&mark, lane.as_ref());
                self.judge(attempt, &p, reply, duration_ms, at).await
            }
            Err(failure) => self.settle_failure(attempt, &p, failure, duration_ms, crowded),
        };
        // The result, its cost with it, is journaled: the hold goes.
        drop(held);
        let ended = self.after_processes(&mark, attempt);
        let accepted = matches!(settled, Ok(Attempted::Completed));
        if let (Some((worktree, at)), Some(lanes), Some(main)) =
            (lane, self.lanes, self.snapshots.snapshots())
        {
            let closed = lanes.close(main, worktree, (&at, attempt), accepted);
            self.record(closed.await?)?;
        }
        ended?;
        let attempted = settled?;
        if !accepted
            && self.lanes.is_none()
            && let Some(at) = self.point()?
        {
            let left = self.snapshots.record_left(at, attempt, self.wait()).await?;
            self.record(left)?;
        }
        unpriced.map_or(Ok(attempted), Err)
    }

    /// Step 1: the request, counted, and the input the budgets will reserve for it; `Err`
    /// inside: why nothing can be sent.
    async fn prepare(
        &self,
        note: Option<&str>,
    ) -> Result<std::result::Result<Prepared, Attempted>> {
        let (plan, config, index) = (self.ctx.plan, self.ctx.config, self.index);
        let prompt = &plan.prompts[index];
        let builder = &self.endpoint.builder;
        let mut request = match builder.build(index, &self.vars, note) {
            Ok(r) => r,
            Err(BuildError::Prompt(e)) => return Err(e),
            Err(BuildError::Missing(missing)) => {
                let reason = crate::request::missing_reason(&self.vars, &missing);
                let stop = Error::PromptFailed(format!("{} cannot run: {reason}", prompt.file));
                return Ok(Err(Attempted::Blocked { reason, stop }));
            }
        };
        let history = (&self.vars, config.context.max_tokens);
        turns::add_history(
            builder,
            &self.book.borrow(),
            plan,
            history,
            index,
            &mut request,
        );
        let per_prompt = config.budget.per_prompt;
        // History gives way first: its oldest turns go until the request fits.
        let counted = builder.fit_history(&mut request, per_prompt);
        if counted > per_prompt {
            return Err(Error::Budget(format!(
                "{} counts {counted} tokens as sent, over budget.per_prompt ({per_prompt}); nothing was sent. Shorten the prompt or raise budget.per_prompt",
                prompt.file
            )));
        }
        let calibrated = self.book.borrow().fold.calibrated(counted);
        let (reserved, said) = self
            .endpoint
            .reserved_input(calibrated, &request, counted)
            .await;
        self.record(said)?;
        Ok(Ok(Prepared {
            max_tokens: request.max_tokens,
            request,
            counted,
            reserved,
            usd: 0.0,
            by: 0,
            passing_before: Vec::new(),
        }))
    }

    /// The budgets' word on `p` as things stand (the attempts in flight held at their
    /// worst case): the `max_tokens` to send with and the US dollars it holds, or a halt.
    fn allow(&self, p: &Prepared) -> Result<(u32, f64)> {
        let (plan, config, index) = (self.ctx.plan, self.ctx.config, self.index);
        let agent = self.endpoint.is_agent();
        let asked = p.request.max_tokens;
        let book = self.book.borrow();
        let (allowed, usd) = reserve::allowance(
            &book,
            self.ctx,
            (index, p.reserved, asked, agent),
            self.held_usd.get(),
        );
        drop(book);
        let id = plan.prompts[index].id.to_string();
        let (max_tokens, said) = reserve::decide(allowed, config.budget.on_exceed, &id, asked)?;
        self.record(said)?;
        Ok((max_tokens, usd))
    }

    /// The attempt journaled as started (before anything is sent), and told.
    fn started(&self, attempt: u32, p: &Prepared, mark: &Mark, lane: Option<&Path>) -> Result<()> {
        let prompt = &self.ctx.plan.prompts[self.index];
        let at = (prompt.id.as_str(), prompt.file.as_str(), attempt);
        self.record(self.endpoint.started(at, p, mark, lane))?;
        self.observer.event(RunEvent::Attempt {
            prompt,
            phase: &self.ctx.plan.phases[prompt.phase].name,
            attempt,
            input_tokens: p.reserved,
            max_tokens: p.max_tokens,
        });
        Ok(())
    }

    /// Step 2: sends, journaling an agent's process group as soon as it exists; `None`
    /// when interrupted.
    async fn send(
        &self,
        attempt: u32,
        p: &Prepared,
        mark: &Mark,
        workdir: Option<&Path>,
    ) -> Result<Option<std::result::Result<Reply, Failure>>> {
        let id = self.id();
        let (groups_tx, mut groups) = tokio::sync::mpsc::unbounded_channel();
        let observer = self.observer;
        let prompt = &self.ctx.plan.prompts[self.index];
        let progress = move |update: Update| match update {
            Update::Streamed(n) => observer.event(RunEvent::Streamed { prompt, chunks: n }),
            Update::AgentStarted(group) => {
                let _ = groups_tx.send(group);
            }
            Update::Waiting(why) => observer.event(RunEvent::Note(&why)),
        };
        let (plan, config) = (self.ctx.plan, self.ctx.config);
        let phase = plan.prompts[p.request.prompt].phase;
        let session = (!config.llm.continue_session.is_empty())
            .then(|| {
                self.book
                    .borrow()
                    .agent_session_for(plan, self.index, attempt)
            })
            .flatten();
        let call = Call {
            workdir,
            budget_usd_left: reserve::usd_left(&self.book.borrow(), plan, config, phase),
            mark: Some(mark),
            agent_session: session.as_deref(),
        };
        let outcome = {
            let provider = self.endpoint.at(p.by).0;
            let send = provider.send(&p.request, p.max_tokens, &call, &progress);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    outcome = &mut send => break Some(outcome),
                    Some(group) = groups.recv() => {
                        let started = Event::AgentStarted { id: id.clone(), attempt, group };
                        self.record(Said::event(started))?;
                    }
                    () = self.interrupt.wait() => break None,
                }
            }
        };
        let learned = self.endpoint.learned(&id);
        self.record(learned)?;
        Ok(outcome)
    }

    /// Steps 3 and 4 for a reply: counted, judged (the protocol, the checks, the commit),
    /// journaled; completed, or to be tried again.
    async fn judge(
        &self,
        attempt: u32,
        p: &Prepared,
        reply: Reply,
        duration_ms: u64,
        (mark, lane): (&Mark, Option<&(Worktree, Point)>),
    ) -> Result<Attempted> {
        let (plan, index, id) = (self.ctx.plan, self.index, self.id());
        let agent = self.endpoint.is_agent();
        let (counted, mut said) =
            self.endpoint
                .count_reply(&id, attempt, &reply, p.counted, p.max_tokens);
        let mut verdict = verdict::judge(plan, index, &reply.text, &reply.finish, p.max_tokens);
        let (refused, warned) =
            verification::agent_errors(self.ctx.config, &id, &reply.agent_errors);
        if let (Some(why), Ok(_)) = (refused, &verdict) {
            verdict = Err(why);
        }
        said.warnings.extend(warned);
        let mut checks = Said::default();
        if verdict.is_ok() {
            let place = lane.map(|(w, _)| w.dir()).or(self.snapshots.dir());
            let dir = verification::check_dir(place, self.ctx.config_dir);
            let (ctx, vars, sent) = (self.ctx, &self.vars, p.request.prompt_text());
            let at = (index, attempt, p.passing_before.as_slice());
            let on = (dir.as_path(), false);
            let verified =
                verification::verify(ctx, at, vars, on, sent, mark, self.interrupt).await?;
            checks = verified.said;
            if let Some(failed) = verified.failure {
                verdict = Err(failed);
            }
        }
        self.record(checks)?;
        let (mut commit, mut conflict, mut stopped) = (None, false, None);
        if verdict.is_ok() {
            self.record(verification::end_processes(mark, &id, attempt))?;
            match self.commit(attempt, mark, lane).await {
                Ok(Ok(c)) => commit = c,
                Ok(Err(refused)) => (verdict, conflict) = (Err(refused.why), refused.conflict),
                // The run stops, with this attempt's account journaled first.
                Err(e) => (verdict, stopped) = (Err(e.to_string()), Some(e)),
            }
        }
        said.details
            .push(reply_detail(&id, attempt, &reply, &counted, duration_ms));
        let (cost_usd, impossible) =
            accounting::cost(reply.cost_usd, &counted, self.ctx.config.pricing);
        said.warnings
            .extend(impossible.map(|w| format!("{id}: {w}")));
        let outcome = match (&verdict, conflict, &stopped) {
            (Ok(_), ..) => AttemptOutcome::Ok,
            (Err(_), true, _) => AttemptOutcome::Conflict,
            (Err(_), _, Some(Error::Interrupted)) => AttemptOutcome::Interrupted,
            (Err(_), ..) => AttemptOutcome::Content,
        };
        let result = AttemptResult {
            reported_usage: counted.distrusted.as_ref().and_then(|d| d.1.clone()),
            finish_reason: Some(reply.finish.as_str().to_string()),
            request_id: reply.request_id.clone(),
            agent_errors: reply.agent_errors.clone(),
            unpriced: accounting::unpriced(reply.cost_usd, self.ctx.config.pricing, true),
            error: verdict.as_ref().err().cloned(),
            duration_ms,
            cost_usd,
            ..accounting::recorded(id, attempt, outcome, &counted, agent)
        };
        said.events.insert(0, Event::AttemptFinished(result));
        let tokens = (counted.input, counted.output, counted.estimated);
        let until = match (&verdict, self.snapshots.dir(), &commit) {
            (Ok(_), Some(dir), Some(c)) => {
                let (ctx, book, vars) = (self.ctx, self.book, &self.vars);
                verification::until(ctx, book, index, vars, dir, self.interrupt, (c, tokens))
                    .await?
            }
            _ => None,
        };
        if let (Ok(a), Some((w, _)), Some(to)) = (&mut verdict, lane, self.snapshots.dir()) {
            verdict::relocate(a, w.dir(), to);
        }
        match (verdict, until) {
            (Ok(accepted), None) => {
                self.complete(attempt, accepted, reply, commit, said, tokens, duration_ms)
            }
            (Ok(_), Some((iterated, next))) => {
                said.events.push(iterated);
                self.record(said)?;
                Ok(next)
            }
            (Err(reason), _) => {
                self.record(said)?;
                stopped.map_or(Ok(Attempted::again(reason, tokens)), Err)
            }
        }
    }

    /// Step 3's commit of the accepted work: on the session's branch, or in the attempt's
    /// worktree and then merged at its turn; `Err` inside: why it cannot be taken.
    async fn commit(
        &self,
        attempt: u32,
        mark: &Mark,
        lane: Option<&(Worktree, Point)>,
    ) -> Result<std::result::Result<Option<(String, Extras)>, Refused>> {
        let Some(at) = self.point()? else {
            return Ok(Ok(None));
        };
        let parts = (lane, &self.lanes, self.snapshots.snapshots());
        let (Some((worktree, start)), Some(lanes), Some(main)) = parts else {
            let (accepted, locks) = self.snapshots.commit_for(at, self.wait()).await?;
            self.record(locks)?;
            return Ok(accepted.map_err(Refused::content));
        };
        let checking = Checking::new(self.ctx, &self.vars, mark, self.interrupt);
        let (at, now) = ((start, self.index, attempt), || self.point());
        let steps = (now, |said| self.record(said));
        let (accepted, said) = lanes.accept((main, worktree), at, steps, checking).await?;
        self.record(said)?;
        Ok(accepted.map(Some))
    }

    /// Step 4 for an accepted reply: `said` (its attempt's) with the completion, journaled;
    /// the output saved.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        attempt: u32,
        accepted: verdict::Accepted,
        reply: Reply,
        commit: Option<(String, Extras)>,
        mut said: Said,
        tokens: (u64, u64, bool),
        duration_ms: u64,
    ) -> Result<Attempted> {
        let (plan, index) = (self.ctx.plan, self.index);
        let prompt = &plan.prompts[index];
        let output = format!("{}/{}.md", state::OUTPUTS, prompt.id);
        said = said.and(verdict::completed(
            prompt,
            accepted,
            &reply.text,
            &output,
            commit,
        ));
        self.record(said)?;
        let reopened = self
            .snapshots
            .reopen_after(&self.book.borrow(), plan, index);
        self.record(reopened)?;
        self.book
            .borrow()
            .store
            .write_copy(&output, reply.text.as_bytes())?;
        self.observer.event(RunEvent::Completed {
            prompt,
            attempt,
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            estimated: tokens.2,
            duration_ms,
            completed: self.book.borrow().tally.done,
        });
        Ok(Attempted::Completed)
    }

    /// Steps 3 and 4 for a failure: journaled with what it may have cost, then retried or
    /// not.
    fn settle_failure(
        &self,
        attempt: u32,
        p: &Prepared,
        failure: Failure,
        duration_ms: u64,
        crowded: bool,
    ) -> Result<Attempted> {
        let id = self.id();
        let agent = self.endpoint.is_agent();
        let streamed = if failure.reached_model {
            self.endpoint.builder.encoding.count(&failure.partial)
        } else {
            0
        };
        let pricing = self.ctx.config.pricing;
        let at = (id.clone(), attempt, duration_ms);
        let (mut result, impossible) =
            accounting::failed(at, &failure, (p.counted, streamed), pricing, agent);
        // A rate-limit refusal lowers how many go at once; while others were in flight,
        // it was the run's doing and does not count against the prompt's attempts.
        let rate_limited = failure.kind == FailureKind::Transient && failure.status == Some(429);
        let note = self.gate.settled(rate_limited);
        // A limit the run pauses for is the account's, not the prompt's.
        let pauses = failure.limit
            && failure
                .retry_after
                .is_some_and(|d| d > self.ctx.config.retry.max_delay);
        result.throttled = (rate_limited && crowded) || pauses;
        let tokens = (result.input_tokens, result.output_tokens, result.estimated);
        let mut said = Said::event(Event::AttemptFinished(result));
        said.warnings
            .extend(impossible.map(|w| format!("{id}: {w}")));
        said.notes.extend(note);
        self.record(said)?;
        let reason = retry::describe(&failure);
        match failure.kind {
            FailureKind::Transient => Ok(Attempted::Retry {
                reason,
                backoff: true,
                asked: failure.retry_after,
                tokens,
                limit: failure.limit.then_some(p.by),
            }),
            FailureKind::Budget => Err(Error::Budget(format!("{id}: {reason}"))),
            FailureKind::Permanent | FailureKind::Quota => Ok(Attempted::Fail(reason)),
        }
    }

    /// After a step that ran the agent or checks: every process the attempt started killed,
    /// and the runner's own files found intact.
    fn after_processes(&self, mark: &Mark, attempt: u32) -> Result<()> {
        let id = self.id();
        self.record(verification::end_processes(mark, &id, attempt))?;
        self.snapshots
            .own_files_intact(&mut self.book.borrow_mut().store, self.ctx)
    }
}
