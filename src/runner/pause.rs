//! The wait before a prompt's next attempt (docs, "Recovery rules"): backoff, at least
//! what the server asked; a server asking for longer than `retry.max_delay` fails the
//! prompt, unless it is a rate or usage limit: then the run **pauses** until the reset
//! (and a margin), journaled (`paused`) so that `status` shows it and a run started during
//! it (after a kill) waits for what is left first; the attempt it ended is not counted. A
//! reset past `retry.max_wait` halts the run, with the reset's time.

use std::time::Duration;

use std::cell::RefCell;

use super::context::Context;
use super::endpoint::Endpoint;
use super::events::{Observer, RunEvent, Said};
use super::interrupt::{Interrupt, Wait};
use super::notify::{self, Notice};
use super::retry;
use super::steps::{Retrying, Step};
use super::tally::Book;
use crate::error::{Error, Result};
use crate::state::Event;
use crate::text::{duration as show_duration, millis, now_ms, until as show_until};

/// The time past a limit's reset the run waits on top (clocks differ): a twentieth of
/// the wait, at most 30 s.
fn margin(wait: Duration) -> Duration {
    (wait / 20).min(Duration::from_secs(30))
}

/// What waiting before a prompt's next attempt needs of the run.
pub(crate) struct Waiter<'r, 'a> {
    pub(crate) ctx: Context<'a>,
    pub(crate) endpoint: &'r Endpoint<'a>,
    pub(crate) book: &'r RefCell<Book>,
    pub(crate) observer: &'a dyn Observer,
    pub(crate) interrupt: &'r Interrupt,
    pub(crate) index: usize,
}

impl Waiter<'_, '_> {
    fn wait(&self) -> Wait<'_> {
        Wait {
            interrupt: self.interrupt,
            observer: self.observer,
        }
    }

    /// Waits before the next attempt, journaled; `Some` when the prompt ends instead.
    pub(crate) async fn before_retry(
        &self,
        next: Retrying,
        backoff: &mut impl Iterator<Item = Duration>,
    ) -> Result<Option<Step>> {
        let config = self.ctx.config;
        let prompt = &self.ctx.plan.prompts[self.index];
        let id = prompt.id.to_string();
        let Retrying {
            attempt, reason, ..
        } = &next;
        let max_delay = config.retry.max_delay;
        let wait = if !next.backoff {
            Duration::ZERO
        } else {
            let exponential = backoff.next().unwrap_or(max_delay);
            match retry::wait(exponential, fastrand::f64(), next.asked, max_delay) {
                retry::Wait::Sleep(d) => d,
                retry::Wait::TooLong { asked } if next.limit.is_some() => {
                    let by = next.limit.unwrap_or(0);
                    return self.limited(&id, by, asked, reason).await;
                }
                retry::Wait::TooLong { asked } => {
                    let reason = format!(
                        "{reason}; the server asks to wait {}, longer than retry.max_delay ({}), so the prompt fails rather than sleeping",
                        show_duration(asked),
                        show_duration(max_delay)
                    );
                    return Ok(Some(Step::Failed { reason, stop: None }));
                }
            }
        };
        self.book.borrow_mut().record(
            Said::event(Event::Retry {
                id: id.clone(),
                attempt: attempt + 1,
                delay_ms: millis(wait),
                reason: reason.clone(),
            }),
            self.observer,
        )?;
        self.observer.event(RunEvent::Retry {
            prompt,
            attempt: attempt + 1,
            delay: wait,
            reason,
            input_tokens: next.tokens.0,
            output_tokens: next.tokens.1,
            estimated: next.tokens.2,
        });
        self.interrupt
            .unless(tokio::time::sleep(wait))
            .await
            .map(|()| None)
    }

    /// Provider `by` is at a limit that resets in `asked`: a fallback answers meanwhile if
    /// one is free (at once, journaled as a warning), else the run pauses.
    async fn limited(
        &self,
        id: &str,
        by: usize,
        asked: Duration,
        reason: &str,
    ) -> Result<Option<Step>> {
        let now = now_ms();
        let until = now.saturating_add(millis(asked));
        if !self.endpoint.limited_until(by, until, now) {
            return self.pause(id, asked, reason).await;
        }
        let next = self.endpoint.pick(now);
        let name = |i: usize| self.endpoint.at(i).1.unwrap_or("[llm]").to_string();
        self.book.borrow_mut().record(
            Said::warning(format!(
                "{id}: {} is at a limit until {} ({reason}); {} answers meanwhile",
                name(by),
                show_until(until, now),
                name(next)
            )),
            self.observer,
        )?;
        Ok(None)
    }

    /// A limit that resets in `asked`: the run paused until then, or halted past
    /// `retry.max_wait`.
    async fn pause(&self, id: &str, asked: Duration, reason: &str) -> Result<Option<Step>> {
        let max_wait = self.ctx.config.retry.max_wait;
        let now = now_ms();
        let wait = asked.saturating_add(margin(asked));
        let until_ms = now.saturating_add(millis(wait));
        if asked > max_wait {
            let why = format!(
                "{id}: {reason}; the limit resets at {}, past retry.max_wait ({}): the run stops rather than waiting. Run `orchestrator run` again after the reset, or raise retry.max_wait",
                show_until(now.saturating_add(millis(asked)), now),
                show_duration(max_wait)
            );
            return Ok(Some(Step::Failed {
                reason: why.clone(),
                stop: Some(Error::PromptFailed(why)),
            }));
        }
        let mut said = Said::event(Event::Paused {
            id: id.to_string(),
            until_ms,
            reason: reason.to_string(),
        });
        said.warnings.push(format!(
            "{id}: paused until {} for a limit ({reason}); nothing is sent before then, and the attempt it ended is not counted",
            show_until(until_ms, now)
        ));
        self.book.borrow_mut().record(said, self.observer)?;
        let config = self.ctx.config;
        if !config.notify.command.is_empty() {
            let notice = Notice {
                event: "paused",
                exit_code: 0,
                reason: Some(reason.to_string()),
                paused: Some((id, until_ms)),
            };
            let doc = notify::document(&self.book.borrow(), self.ctx.plan, config, &notice);
            if let Some(warning) = notify::tell(config, self.ctx.config_dir, &doc).await {
                self.observer.event(RunEvent::Warning(&warning));
            }
        }
        wait_until(until_ms, self.wait()).await.map(|()| None)
    }
}

/// Sleeps until `until_ms` (Unix milliseconds), or stops at an interrupt.
pub(crate) async fn wait_until(until_ms: u64, wait: Wait<'_>) -> Result<()> {
    let left = Duration::from_millis(until_ms.saturating_sub(now_ms()));
    wait.interrupt.unless(tokio::time::sleep(left)).await
}

/// At the start of a run: the pause a killed run was in, if it has not ended, as a note
/// and the time to wait until.
pub(crate) fn left_over(paused: Option<&(String, u64, String)>) -> Option<(String, u64)> {
    let (id, until_ms, reason) = paused?;
    let now = now_ms();
    (*until_ms > now).then(|| {
        (
            format!(
                "paused until {} for a limit, as the last run was ({id}: {reason}); nothing is sent before then",
                show_until(*until_ms, now)
            ),
            *until_ms,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_twentieth_of_the_wait_and_at_most_thirty_seconds() {
        for (wait, want) in [(20, 1), (600, 30), (36_000, 30), (0, 0)] {
            assert_eq!(
                margin(Duration::from_secs(wait)),
                Duration::from_secs(want),
                "{wait}"
            );
        }
    }
}
