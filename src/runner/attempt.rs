//! One prompt's attempts, each in four steps: prepare (the request, counted, and what the
//! budgets allow), send (journaled first; an agent's process group journaled as it starts),
//! judge and settle (journal the result; save the outputs, or say when to try again).

use std::time::Duration;

use tokio::time::Instant;

use super::{Session, Step, accounting, endpoint, retry, verdict};
use crate::checkpoint::split_thinking;
use crate::documents::AttemptOutcome;
use crate::error::{Error, Result};
use crate::process::Mark;
use crate::providers::{Call, Failure, FailureKind, Reply, Update};
use crate::request::{BuildError, Request};
use crate::runner::RunEvent;
use crate::state::{self, AttemptResult, Event};
use crate::text::duration as show_duration;

/// A request ready to send.
struct Prepared {
    request: Request,
    /// The tokenizer's count of its input.
    counted: u64,
    /// The input the budgets reserve (the endpoint's count, or a scaled count).
    reserved: u64,
    max_tokens: u32,
}

/// The most one call can cost: a report above it is a server's mistake.
const MAX_CALL_USD: f64 = 100_000.0;

/// An accepted attempt, for [`Session::complete`].
struct Done {
    attempt: u32,
    accepted: verdict::Accepted,
    reply: Reply,
    /// Its workspace commit and what git does not keep of it.
    commit: Option<(String, crate::workspace::Extras)>,
    duration_ms: u64,
}

/// What became of one attempt.
enum Attempted {
    Completed,
    /// Worth another attempt: at once after a content failure (its note says why), after
    /// backoff and at least what the server `asked` after a transient one.
    Retry {
        reason: String,
        backoff: bool,
        asked: Option<Duration>,
        /// What the attempt was counted as: input, output, estimated.
        tokens: (u64, u64, bool),
    },
    /// The prompt fails now (a permanent failure).
    Fail(String),
}

impl Session<'_> {
    /// One prompt: attempts until one is accepted or `retry.max_attempts` are used (per
    /// prompt across the session: a run resumed after a crash goes on counting).
    pub(super) async fn run_prompt(&mut self, index: usize) -> Result<Step> {
        let prompt = &self.plan.prompts[index];
        let id = prompt.id.to_string();
        self.book
            .tally
            .variables_up_to(index, &self.book.fold, self.plan, self.ctx.config);
        let max_attempts = self.config().retry.max_attempts;
        let mut backoff = retry::schedule(
            self.config().retry.initial_delay,
            self.config().retry.max_delay,
        );
        loop {
            let state = self.book.fold.prompts.get(&id);
            let used = state.map_or(0, |p| p.attempts_used);
            if used >= max_attempts {
                let last = state
                    .and_then(|p| p.last_error.clone())
                    .unwrap_or_else(|| "none recorded".into());
                return self.fail(
                    index,
                    format!("all {max_attempts} attempts failed; the last: {last}"),
                );
            }
            let attempt = state.map_or(0, |p| p.last_attempt) + 1;
            let note = state.and_then(|p| p.retry_note.as_deref()).map(retry_note);
            let prepared = self.prepare(index, note.as_deref()).await?;
            match self.attempt(index, attempt, &prepared).await? {
                Attempted::Completed => return Ok(Step::Completed),
                Attempted::Fail(reason) => return self.fail(index, reason),
                Attempted::Retry {
                    reason,
                    backoff: with_backoff,
                    asked,
                    tokens,
                } => {
                    let used = self
                        .book
                        .fold
                        .prompts
                        .get(&id)
                        .map_or(0, |p| p.attempts_used);
                    if used >= max_attempts {
                        continue;
                    }
                    let max_delay = self.config().retry.max_delay;
                    let wait = if !with_backoff {
                        Duration::ZERO
                    } else {
                        let exponential = backoff.next().unwrap_or(max_delay);
                        match retry::wait(exponential, fastrand::f64(), asked, max_delay) {
                            retry::Wait::Sleep(d) => d,
                            retry::Wait::TooLong { asked } => {
                                return self.fail(index, format!(
                                    "{reason}; the server asks to wait {}, longer than retry.max_delay ({}), so the prompt fails rather than sleeping",
                                    show_duration(asked),
                                    show_duration(max_delay)
                                ));
                            }
                        }
                    };
                    self.book.journal(vec![Event::Retry {
                        id: id.clone(),
                        attempt: attempt + 1,
                        delay_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        reason: reason.clone(),
                    }])?;
                    self.tell(RunEvent::Retry {
                        prompt,
                        attempt: attempt + 1,
                        delay: wait,
                        reason: &reason,
                        input_tokens: tokens.0,
                        output_tokens: tokens.1,
                        estimated: tokens.2,
                    });
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.interrupt.wait() => return self.interrupted(),
                    }
                }
            }
        }
    }

    /// Step 1: the request, counted, and what the budgets allow it.
    async fn prepare(&mut self, index: usize, note: Option<&str>) -> Result<Prepared> {
        let prompt = &self.plan.prompts[index];
        let request = match self.builder.build(index, &self.book.tally.vars, note) {
            Ok(r) => r,
            Err(BuildError::Prompt(e)) => return self.halt(e),
            Err(BuildError::Missing(missing)) => {
                let reason = self.missing_reason(&missing);
                self.fail(index, reason.clone())?;
                return self.halt(Error::PromptFailed(format!(
                    "{} cannot run: {reason}",
                    prompt.file
                )));
            }
        };
        let mut request = request;
        self.add_history(index, &mut request);
        let per_prompt = self.config().budget.per_prompt;
        // History gives way first: its oldest turns go until the request fits.
        let counted = self.builder.fit_history(&mut request, per_prompt);
        if counted > per_prompt {
            return self.halt(Error::Budget(format!(
                "{} counts {counted} tokens as sent, over budget.per_prompt ({per_prompt}); nothing was sent. Shorten the prompt or raise budget.per_prompt",
                prompt.file
            )));
        }
        let reserved = self.reserved_input(&request, counted).await;
        let max_tokens = self.allowance(index, reserved, request.max_tokens)?;
        Ok(Prepared {
            request,
            counted,
            reserved,
            max_tokens,
        })
    }

    /// Why placeholders could not be filled.
    fn missing_reason(&self, missing: &[String]) -> String {
        let vars = &self.book.tally.vars;
        let (present, absent): (Vec<&String>, Vec<&String>) = missing
            .iter()
            .partition(|m| vars.contains_key(crate::template::root_name(m)));
        let mut parts = Vec::new();
        if !absent.is_empty() {
            parts.push(format!(
                "it needs {} but no completed prompt produced {}; run the prompts that declare them first",
                absent.iter().map(|m| format!("{{{{{m}}}}}")).collect::<Vec<_>>().join(", "),
                if absent.len() == 1 { "it" } else { "them" },
            ));
        }
        for m in present {
            let root = crate::template::root_name(m);
            parts.push(format!(
                "{{{{{m}}}}}: `{root}` has no such key (its value: {}); rerun the prompt that produces `{root}`",
                crate::text::head(&vars[root].to_string(), 200)
            ));
        }
        parts.join("; ")
    }

    /// Steps 2–4 for one attempt: journal, send, judge, settle.
    async fn attempt(&mut self, index: usize, attempt: u32, p: &Prepared) -> Result<Attempted> {
        self.restore_for(index, attempt).await?;
        let prompt = &self.plan.prompts[index];
        let id = prompt.id.to_string();
        let mark = Mark::new();
        self.book.journal(vec![Event::AttemptStarted {
            id: id.clone(),
            file: prompt.file.clone(),
            attempt,
            input_tokens: p.reserved,
            max_tokens: p.max_tokens,
            tokenizer_tokens: (p.reserved != p.counted).then_some(p.counted),
            mark: Some(mark.0.clone()),
        }])?;
        self.tell(RunEvent::Attempt {
            prompt,
            phase: &self.plan.phases[prompt.phase].name,
            attempt,
            input_tokens: p.reserved,
            max_tokens: p.max_tokens,
        });
        self.detail(&format!(
            "{id} attempt {attempt}: sending to {}: model {}, {} input tokens (tokenizer {}), max_tokens {}",
            self.provider.describe(),
            p.request.model,
            p.reserved,
            p.counted,
            p.max_tokens
        ));
        let t0 = Instant::now();
        let sent = self.send(&id, attempt, p, &mark).await;
        self.end_processes(&mark, &id, attempt);
        self.own_files_intact()?;
        let Some(outcome) = sent? else {
            self.book
                .journal(vec![Event::AttemptFinished(AttemptResult {
                    id,
                    attempt,
                    outcome: AttemptOutcome::Interrupted,
                    input_tokens: p.counted,
                    estimated: true,
                    error: Some("interrupted: the request was dropped".into()),
                    duration_ms: millis(t0.elapsed()),
                    by_agent: !self.provider.caps_output(),
                    ..AttemptResult::default()
                })])?;
            return self.interrupted();
        };
        let duration_ms = millis(t0.elapsed());
        let attempted = match outcome {
            Ok(reply) => {
                self.settle_reply(index, attempt, p, reply, duration_ms, &mark)
                    .await
            }
            Err(failure) => self.settle_failure(index, attempt, p, failure, duration_ms),
        };
        self.end_processes(&mark, &id, attempt);
        self.own_files_intact()?;
        let attempted = attempted?;
        if !matches!(attempted, Attempted::Completed) {
            self.record_left(index, attempt).await?;
        }
        Ok(attempted)
    }

    /// Sends, journaling an agent's process group as soon as it exists; `None` when
    /// interrupted.
    async fn send(
        &mut self,
        id: &str,
        attempt: u32,
        p: &Prepared,
        mark: &Mark,
    ) -> Result<Option<std::result::Result<Reply, Failure>>> {
        let (groups_tx, mut groups) = tokio::sync::mpsc::unbounded_channel();
        let observer = self.observer;
        let progress = move |update: Update| match update {
            Update::Streamed(n) => observer.event(RunEvent::Streamed(n)),
            Update::AgentStarted(group) => {
                let _ = groups_tx.send(group);
            }
            Update::Waiting(why) => observer.event(RunEvent::Note(&why)),
        };
        let call = Call {
            workdir: self.workspace.as_ref().map(|ws| ws.dir()),
            budget_usd_left: self.usd_left(self.plan.prompts[p.request.prompt].phase),
            mark: Some(mark),
        };
        let outcome = {
            let send = self
                .provider
                .send(&p.request, p.max_tokens, &call, &progress);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    outcome = &mut send => break Some(outcome),
                    Some(group) = groups.recv() => {
                        self.book.journal(vec![Event::AgentStarted {
                            id: id.to_string(),
                            attempt,
                            group,
                        }])?;
                    }
                    () = self.interrupt.wait() => break None,
                }
            }
        };
        self.journal_learned(id)?;
        Ok(outcome)
    }

    /// Step 4 for a reply: counted, judged, journaled.
    async fn settle_reply(
        &mut self,
        index: usize,
        attempt: u32,
        p: &Prepared,
        reply: Reply,
        duration_ms: u64,
        mark: &Mark,
    ) -> Result<Attempted> {
        let prompt = &self.plan.prompts[index];
        let agent = !self.provider.caps_output();
        let text_tokens = self.builder.encoding.count(&reply.text);
        let mut counted = accounting::count(reply.usage.as_ref(), p.counted, text_tokens, agent);
        if let (0, Some(thinking)) = (counted.reasoning, split_thinking(&reply.text).0) {
            counted.reasoning = self.builder.encoding.count(thinking).min(counted.output);
        }
        let id = prompt.id.to_string();
        let mut events = self.counts_told(&id, &counted, p.counted, p.max_tokens);
        if let Some((why, _)) = &counted.distrusted {
            let message = format!(
                "attempt {attempt}: the endpoint's usage report cannot be true ({why}); it is kept in the journal and the tokenizer's count is used"
            );
            self.warn(&format!("{}: {message}", prompt.id));
            events.push(Event::Warning {
                id: Some(prompt.id.to_string()),
                message,
            });
        }
        let prompt = &self.plan.prompts[index];
        let mut verdict =
            verdict::judge(self.plan, index, &reply.text, &reply.finish, p.max_tokens);
        if verdict.is_ok()
            && let Some(failed) = self
                .verify(index, attempt, p.request.prompt_text(), mark)
                .await?
        {
            verdict = Err(failed);
        }
        let mut commit = None;
        if verdict.is_ok() {
            self.end_processes(mark, &id, attempt);
            match self.commit_for(index).await? {
                Ok(c) => commit = c,
                Err(why) => verdict = Err(why),
            }
        }
        self.detail(&endpoint::reply_detail(
            &prompt.id.to_string(),
            attempt,
            &reply,
            &counted,
            duration_ms,
        ));
        let result = AttemptResult {
            id: prompt.id.to_string(),
            attempt,
            outcome: if verdict.is_ok() {
                AttemptOutcome::Ok
            } else {
                AttemptOutcome::Content
            },
            input_tokens: counted.input,
            output_tokens: counted.output,
            cache_read_tokens: counted.cache_read,
            cache_write_tokens: counted.cache_write,
            reasoning_tokens: counted.reasoning,
            estimated: counted.estimated,
            reported_usage: counted.distrusted.as_ref().and_then(|d| d.1.clone()),
            finish_reason: Some(reply.finish.as_str().to_string()),
            request_id: reply.request_id.clone(),
            error: verdict.as_ref().err().cloned(),
            duration_ms,
            cost_usd: self.cost(reply.cost_usd, &counted, &id),
            by_agent: agent,
        };
        events.insert(0, Event::AttemptFinished(result));
        match verdict {
            Ok(accepted) => self.complete(
                index,
                Done {
                    attempt,
                    accepted,
                    reply,
                    commit,
                    duration_ms,
                },
                events,
                &counted,
            ),
            Err(reason) => {
                self.book.journal(events)?;
                Ok(Attempted::Retry {
                    reason,
                    backoff: false,
                    asked: None,
                    tokens: (counted.input, counted.output, counted.estimated),
                })
            }
        }
    }

    /// An accepted reply: `events` (its attempt's) with the completion, journaled; the
    /// output saved.
    fn complete(
        &mut self,
        index: usize,
        done: Done,
        mut events: Vec<Event>,
        counted: &accounting::Counted,
    ) -> Result<Attempted> {
        let Done {
            attempt,
            accepted,
            reply,
            commit,
            duration_ms,
        } = done;
        let (commit, extras) = match commit {
            Some((c, e)) => (Some(c), Some(e)),
            None => (None, None),
        };
        let prompt = &self.plan.prompts[index];
        if let Some(warning) = &accepted.warning {
            events.push(Event::Warning {
                id: Some(prompt.id.to_string()),
                message: warning.clone(),
            });
            self.warn(&format!("{}: {warning}", prompt.id));
        }
        let output = format!("{}/{}.md", state::OUTPUTS, prompt.id);
        events.push(Event::Completed {
            id: prompt.id.to_string(),
            name: prompt.name.clone(),
            file: prompt.file.clone(),
            hash: prompt.hash.clone(),
            variables: accepted.checkpoint.variables,
            files_created: accepted.checkpoint.files_created,
            output: output.clone(),
            reply: reply.text.clone(),
            commit,
            extras,
        });
        self.book.journal(events)?;
        self.reopen_after(index)?;
        self.book.store.write_copy(&output, reply.text.as_bytes())?;
        self.write_views(false)?;
        self.tell(RunEvent::Completed {
            prompt,
            attempt,
            input_tokens: counted.input,
            output_tokens: counted.output,
            estimated: counted.estimated,
            duration_ms,
            completed: self.book.tally.done,
        });
        Ok(Attempted::Completed)
    }

    /// Step 4 for a failure: journaled with what it may have cost, then retried or not.
    fn settle_failure(
        &mut self,
        index: usize,
        attempt: u32,
        p: &Prepared,
        failure: Failure,
        duration_ms: u64,
    ) -> Result<Attempted> {
        let prompt = &self.plan.prompts[index];
        let agent = !self.provider.caps_output();
        // An error status (the request refused) costs nothing: that is exact, not an
        // estimate. A failure after the request was accepted costs its input and what
        // streamed, unless the failed call reported its own usage.
        let counted = if failure.reached_model {
            let text = self.builder.encoding.count(&failure.partial);
            accounting::count(failure.usage.as_deref(), p.counted, text, agent)
        } else {
            accounting::count(Some(&crate::providers::Usage::default()), 0, 0, agent)
        };
        let cost_usd = self.cost(failure.cost_usd, &counted, &prompt.id.to_string());
        self.book
            .journal(vec![Event::AttemptFinished(AttemptResult {
                id: prompt.id.to_string(),
                attempt,
                outcome: match failure.kind {
                    FailureKind::Transient => AttemptOutcome::Transient,
                    _ => AttemptOutcome::Permanent,
                },
                input_tokens: counted.input,
                output_tokens: counted.output,
                cache_read_tokens: counted.cache_read,
                cache_write_tokens: counted.cache_write,
                estimated: counted.estimated,
                request_id: failure.request_id.clone(),
                error: Some(failure.to_string()),
                duration_ms,
                cost_usd,
                by_agent: agent,
                ..AttemptResult::default()
            })])?;
        let reason = describe_failure(&failure);
        match failure.kind {
            FailureKind::Transient => {}
            FailureKind::Budget => {
                return self.halt(Error::Budget(format!("{}: {reason}", prompt.id)));
            }
            FailureKind::Permanent | FailureKind::Quota => return Ok(Attempted::Fail(reason)),
        }
        Ok(Attempted::Retry {
            reason,
            backoff: true,
            asked: failure.retry_after,
            tokens: (counted.input, counted.output, counted.estimated),
        })
    }

    /// What an attempt cost: the provider's report when it has one that can be true (a
    /// number from 0 to [`MAX_CALL_USD`]), else `[pricing]`'s figure; an impossible report
    /// is warned about and not counted.
    fn cost(&self, reported: Option<f64>, counted: &accounting::Counted, id: &str) -> f64 {
        match reported {
            Some(usd) if usd.is_finite() && (0.0..=MAX_CALL_USD).contains(&usd) => usd,
            Some(usd) => {
                self.warn(&format!(
                    "{id}: the reported cost of the call ({usd:e} USD) cannot be true; [pricing]'s figure is counted instead"
                ));
                self.priced(counted)
            }
            None => self.priced(counted),
        }
    }

    /// Cost from `[pricing]` when the provider did not report one.
    fn priced(&self, counted: &accounting::Counted) -> f64 {
        self.config().pricing.map_or(0.0, |p| {
            p.cost(
                counted.input,
                counted.output,
                counted.cache_read,
                counted.cache_write,
            )
        })
    }
}

/// The note a retry after a content failure carries, in the spirit of the seed's
/// recovery: what to do, then why the last attempt failed, last (a failed check's command,
/// output and the prompt's `## If Failed` advice end the message).
fn retry_note(reason: &str) -> String {
    format!(
        "Note: your previous attempt at this prompt was not accepted. Do the whole task again and end your reply with the checkpoint block. Why it was not accepted: {reason}"
    )
}

fn describe_failure(f: &Failure) -> String {
    let label = match f.kind {
        FailureKind::Quota => "quota exhausted: ",
        _ => "",
    };
    format!("{label}{f}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
