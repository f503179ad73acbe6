//! What a request may spend (the budgets' word before it is sent): the `max_tokens` that
//! keeps every budget hard, or why nothing may be sent (and how much of the spend so far
//! is possibly billed); and, before a run's first request, what no run could send.

use super::accounting;
use super::context::Context;
use super::events::Said;
use super::tally::Book;
use crate::budget::{self, Allowance, Limit};
use crate::config::{Config, OnExceed};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::providers::Sent;
use crate::request::RequestBuilder;
use crate::state::Event;
use crate::text::usd as show_usd;

/// The budgets' word on a request.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Allowed {
    /// Send, asking for at most this many output tokens.
    Send(u32),
    /// A budget would be exceeded: why (nothing was sent).
    Over(String),
}

/// Before the first request: every prompt of `todo` counted as `estimate` counts it
/// (variables so far, else the declared examples), and what no run could send refused now
/// rather than after paid prompts: a prompt over `budget.per_prompt`, or the inputs alone
/// over what remains of a phase's budget or the total (exit 3, nothing sent).
pub(super) fn preflight(
    book: &Book,
    plan: &Plan,
    config: &Config,
    builder: &RequestBuilder<'_>,
    todo: &[usize],
) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let fold = &book.fold;
    let e = crate::estimate::estimate(
        plan,
        config,
        builder,
        &|i| fold.variables.get(plan.prompts[i].id.as_str()).cloned(),
        &|_| None,
    )?;
    let per_prompt = config.budget.per_prompt;
    if let Some(&i) = todo.iter().find(|&&i| e.prompts[i].over_per_prompt) {
        return Err(Error::Budget(format!(
            "{} counts {} input tokens, over budget.per_prompt ({per_prompt}); nothing was sent. Shorten the prompt or raise budget.per_prompt (`orchestrator estimate` shows every prompt)",
            plan.prompts[i].path.display(),
            e.prompts[i].input_tokens
        )));
    }
    // `on_exceed = "warn"`: budgets are not hard; the run says so as it goes.
    if config.budget.on_exceed == OnExceed::Warn {
        return Ok(());
    }
    let mut total = 0;
    for (phase_index, phase) in plan.phases.iter().enumerate() {
        let inputs: u64 = todo
            .iter()
            .filter(|&&i| plan.prompts[i].phase == phase_index)
            .map(|&i| e.prompts[i].input_tokens)
            .sum();
        total += inputs;
        let remaining = book.tally.remaining(phase_index, plan, config);
        if let Some((_, left)) = remaining.phase
            && inputs > left
        {
            return Err(Error::Budget(format!(
                "the inputs of phase {} alone count {inputs} tokens, over what remains of its budget ({left}, phase {}); nothing was sent. Raise [[phases]] budget for {:?} (`orchestrator estimate` shows every prompt)",
                phase.name, phase.name, phase.dir
            )));
        }
    }
    let left = book.tally.remaining(0, plan, config).total;
    if total > left {
        return Err(Error::Budget(format!(
            "the prompts left count {total} input tokens before any output, over what remains of budget.total ({left}); nothing was sent. Raise budget.total (`orchestrator estimate` shows every prompt)"
        )));
    }
    Ok(())
}

/// The budgets' word on a request for prompt `index` of `input` tokens asking for `asked`
/// (an `agent` call cannot be capped mid-call), with `held_usd` held by the attempts in
/// flight (their tokens are in the fold already, at their worst case); and the US dollars
/// it holds itself while in flight.
pub(super) fn allowance(
    book: &Book,
    ctx: Context<'_>,
    (index, input, asked, agent): (usize, u64, u32, bool),
    held_usd: f64,
) -> (Allowed, f64) {
    let (plan, config) = (ctx.plan, ctx.config);
    let prompt = &plan.prompts[index];
    let remaining = book.tally.remaining(prompt.phase, plan, config);
    let allowance = if agent {
        // An agent cannot be capped mid-call: its worst case must fit, and that is at
        // least the most one agent call has spent so far (its own prompts and tools).
        let worst = (input + u64::from(asked)).max(book.fold.largest_agent_call);
        budget::allow(worst, asked, 0, &remaining)
    } else {
        budget::allow(input, asked, config.budget.min_output, &remaining)
    };
    let priced = config
        .pricing
        .map_or(0.0, |p| p.cost(input, u64::from(asked), 0, 0));
    let reserve_usd = if agent {
        priced.max(book.fold.largest_agent_cost)
    } else {
        priced
    };
    for (which, limit, spent) in usd_limits(book, plan, config, prompt.phase) {
        let spent = spent + held_usd;
        if spent + reserve_usd > limit || spent >= limit {
            let held = if held_usd > 0.0 {
                format!(
                    " (of it {} held by the requests in flight)",
                    show_usd(held_usd)
                )
            } else {
                String::new()
            };
            let reason = format!(
                "{which} ({}) would be exceeded: {} spent{held}, this {} may cost {}; nothing was sent. Raise it in config.toml, then {}",
                show_usd(limit),
                show_usd(spent),
                if agent { "agent call" } else { "request" },
                show_usd(reserve_usd),
                ctx.go_on
            );
            return (Allowed::Over(reason), reserve_usd);
        }
    }
    let allowed = match allowance {
        Allowance::Send { max_tokens } if agent => Allowed::Send(max_tokens.max(asked)),
        Allowance::Send { max_tokens } => Allowed::Send(max_tokens),
        Allowance::DoesNotFit {
            which,
            remaining,
            needed,
        } => {
            let what = if agent {
                format!("at least {needed} tokens (an agent call's worst case)")
            } else {
                format!(
                    "{needed} tokens (input {input} + {} output)",
                    needed.saturating_sub(input)
                )
            };
            let reason = format!(
                "{} needs {what} but {which} has {remaining} left; nothing was sent{}. Raise the budget in config.toml, then {}",
                prompt.id,
                possibly_billed_note(book, plan, &which, prompt.phase),
                ctx.go_on
            );
            Allowed::Over(reason)
        }
    };
    (allowed, reserve_usd)
}

/// What the budgets' word means for prompt `id`'s request asking for `asked`: the
/// `max_tokens` to send with, or (a budget would be exceeded) a halt, or with
/// `on_exceed = "warn"` the request as asked and a warning.
pub(super) fn decide(
    allowed: Allowed,
    on_exceed: OnExceed,
    id: &str,
    asked: u32,
) -> Result<(u32, Said)> {
    match allowed {
        Allowed::Send(n) => Ok((n, Said::default())),
        Allowed::Over(reason) if on_exceed == OnExceed::Halt => Err(Error::Budget(reason)),
        Allowed::Over(reason) => {
            let mut said = Said::warning(format!(
                "{id}: {reason} (budget.on_exceed = \"warn\": sending anyway)"
            ));
            said.events.push(Event::Warning {
                id: Some(id.to_string()),
                message: reason,
            });
            Ok((asked, said))
        }
    }
}

/// The USD limits on a call in `phase`: (which, limit, spent so far).
fn usd_limits(book: &Book, plan: &Plan, config: &Config, phase: usize) -> Vec<(String, f64, f64)> {
    let mut limits = Vec::new();
    if let Some(max) = config.budget.max_cost_usd {
        limits.push(("budget.max_cost_usd".to_string(), max, book.fold.cost_usd));
    }
    let ph = &plan.phases[phase];
    if let Some(usd) = config.phase(&ph.dir).and_then(|p| p.budget_usd) {
        limits.push((
            format!("phase {}'s budget_usd", ph.name),
            usd,
            book.tally.phase_cost(phase),
        ));
    }
    limits
}

/// A USD limit nothing can enforce: the call may have been billed, reported no cost, and
/// `[pricing]` is not set, so what the build spends cannot be counted. The run stops
/// (the call's tokens are counted) rather than pass the limit silently.
pub(super) fn unpriced(ctx: Context<'_>, outcome: &Sent) -> Option<Error> {
    let config = ctx.config;
    let usd_limit = config.budget.max_cost_usd.is_some()
        || config.phases.iter().any(|p| p.budget_usd.is_some());
    let (reported, billed) = match outcome {
        Ok(reply) => (reply.cost_usd, true),
        Err(failure) => (failure.cost_usd, failure.reached_model),
    };
    if !usd_limit || !accounting::unpriced(reported, config.pricing, billed) {
        return None;
    }
    Some(Error::Config {
        path: ctx.config_file.to_path_buf(),
        line: None,
        message: "a USD limit is set (budget.max_cost_usd or a phase's budget_usd) but the endpoint reported no cost for a call and [pricing] is not set, so what the build spends cannot be counted against it. Set [pricing] input_per_mtok and output_per_mtok for the model (the call's tokens are counted), or remove the USD limit; then `orchestrator run` goes on".into(),
    })
}

/// What remains of the tightest USD limit on a call in `phase`, and at most
/// `llm.max_call_usd` (`{{budget_usd_left}}`).
pub(super) fn usd_left(book: &Book, plan: &Plan, config: &Config, phase: usize) -> Option<f64> {
    usd_limits(book, plan, config, phase)
        .into_iter()
        .map(|(_, limit, spent)| (limit - spent).max(0.0))
        .chain(config.llm.max_call_usd)
        .min_by(f64::total_cmp)
}

/// For a budget halt: how much of what was spent is possibly billed.
fn possibly_billed_note(book: &Book, plan: &Plan, which: &Limit, phase: usize) -> String {
    let fold = &book.fold;
    let prompts: Vec<&str> = if *which == Limit::Total {
        fold.prompts.keys().map(String::as_str).collect()
    } else {
        plan.prompts[plan.phases[phase].prompts.clone()]
            .iter()
            .map(|p| p.id.as_str())
            .collect()
    };
    let billed: u64 = prompts.iter().map(|id| fold.possibly_billed(id)).sum();
    if billed == 0 {
        return String::new();
    }
    format!(
        " (of what {which} has spent, {billed} tokens are possibly billed: attempts a crash left without a result, counted at their worst case, input + max_tokens; `orchestrator status` shows them apart, so that the budget can be raised knowingly)"
    )
}

/// US dollars an attempt holds while it is in flight (see [`allowance`]): from before it
/// is sent until its result is journaled, however it ends.
pub(crate) struct HeldUsd<'h> {
    held: &'h std::cell::Cell<f64>,
    usd: f64,
}

/// `usd` held in `held` until the returned hold is dropped.
pub(crate) fn hold(held: &std::cell::Cell<f64>, usd: f64) -> HeldUsd<'_> {
    held.set(held.get() + usd);
    HeldUsd { held, usd }
}

impl Drop for HeldUsd<'_> {
    fn drop(&mut self) {
        self.held.set((self.held.get() - self.usd).max(0.0));
    }
}
