//! What a request may spend (the budgets' word before it is sent): the input to reserve,
//! exact where it can be, and the `max_tokens` that keeps every budget hard, or a halt
//! that says why (and how much of the spend so far is possibly billed).

use super::Session;
use crate::budget::{self, Allowance};
use crate::config::OnExceed;
use crate::error::{Error, Result};
use crate::providers::Count;
use crate::request::Request;
use crate::state::Event;
use crate::text::usd as show_usd;

/// Before an endpoint whose tokenizer is not tiktoken's has reported any usage (and where
/// it cannot count for free), requests are counted at this multiple of tiktoken's count:
/// other tokenizers count up to a third more for English and code (Claude's, Gemma's,
/// Mistral's); the first reported usage then calibrates the count.
const UNCALIBRATED_MARGIN: f64 = 1.5;

impl Session<'_> {
    /// Before the first request: every prompt of `todo` counted as `estimate` counts it
    /// (variables so far, else the declared examples), and what no run could send refused
    /// now rather than after paid prompts: a prompt over `budget.per_prompt`, or the inputs
    /// alone over what remains of a phase's budget or the total (exit 3, nothing sent).
    pub(super) fn preflight(&mut self, todo: &[usize]) -> Result<()> {
        if todo.is_empty() {
            return Ok(());
        }
        let fold = &self.book.fold;
        let plan = self.plan;
        let e = crate::estimate::estimate(
            plan,
            self.config(),
            &self.builder,
            &|i| fold.variables.get(plan.prompts[i].id.as_str()).cloned(),
            &|_| None,
        )?;
        let per_prompt = self.config().budget.per_prompt;
        if let Some(&i) = todo.iter().find(|&&i| e.prompts[i].over_per_prompt) {
            return Err(Error::Budget(format!(
                "{} counts {} input tokens, over budget.per_prompt ({per_prompt}); nothing was sent. Shorten the prompt or raise budget.per_prompt (`orchestrator estimate` shows every prompt)",
                plan.prompts[i].path.display(),
                e.prompts[i].input_tokens
            )));
        }
        // `on_exceed = "warn"`: budgets are not hard; the run says so as it goes.
        if self.config().budget.on_exceed == OnExceed::Warn {
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
            let remaining = self.book.tally.remaining(phase_index, plan, self.config());
            if let Some((which, left)) = remaining.phase
                && inputs > left
            {
                return Err(Error::Budget(format!(
                    "the inputs of phase {} alone count {inputs} tokens, over what remains of its budget ({left}, {which}); nothing was sent. Raise [[phases]] budget for {:?} (`orchestrator estimate` shows every prompt)",
                    phase.name, phase.dir
                )));
            }
        }
        let left = self.book.tally.remaining(0, plan, self.config()).total;
        if total > left {
            return Err(Error::Budget(format!(
                "the prompts left count {total} input tokens before any output, over what remains of budget.total ({left}); nothing was sent. Raise budget.total (`orchestrator estimate` shows every prompt)"
            )));
        }
        Ok(())
    }

    /// The input to reserve for `request`: exact where the tokenizer is the model's or the
    /// endpoint counts for free; scaled by calibration once the endpoint has reported
    /// usage; else scaled by a margin.
    pub(super) async fn reserved_input(&mut self, request: &Request, counted: u64) -> u64 {
        if let Some(c) = self.book.fold.calibrated(counted) {
            return c;
        }
        if self.tokenizer_exact {
            return counted;
        }
        if self.endpoint_counts {
            match self.provider.count(request).await {
                Count::Exact(n) => return n,
                Count::Unsupported => self.endpoint_counts = false,
                Count::Failed(why) => {
                    self.warn(&format!(
                        "the endpoint could not count the request ({why}); counting it with a margin"
                    ));
                }
            }
        }
        (counted as f64 * UNCALIBRATED_MARGIN).ceil() as u64
    }

    /// The budgets' word on a request: the `max_tokens` to send with, or a halt.
    pub(super) fn allowance(&mut self, index: usize, input: u64, asked: u32) -> Result<u32> {
        let config = self.config();
        let prompt = &self.plan.prompts[index];
        let remaining = self.book.tally.remaining(prompt.phase, self.plan, config);
        let agent = !self.provider.caps_output();
        let allowance = if agent {
            // An agent cannot be capped mid-call: its worst case must fit, and that is at
            // least the most one agent call has spent so far (its own prompts and tools).
            let worst = (input + u64::from(asked)).max(self.book.fold.largest_agent_call);
            budget::allow(worst, asked, 0, &remaining)
        } else {
            budget::allow(input, asked, config.budget.min_output, &remaining)
        };
        let priced = config
            .pricing
            .map_or(0.0, |p| p.cost(input, u64::from(asked), 0, 0));
        let reserve_usd = if agent {
            priced.max(self.book.fold.largest_agent_cost)
        } else {
            priced
        };
        for (which, limit, spent) in self.usd_limits(prompt.phase) {
            if spent + reserve_usd > limit || spent >= limit {
                let reason = format!(
                    "{which} ({}) would be exceeded: {} spent, this {} may cost {}; nothing was sent. Raise it in config.toml, then `orchestrator run` continues",
                    show_usd(limit),
                    show_usd(spent),
                    if agent { "agent call" } else { "request" },
                    show_usd(reserve_usd)
                );
                return self.budget_exceeded(index, reason, asked);
            }
        }
        match allowance {
            Allowance::Send { max_tokens } if agent => Ok(max_tokens.max(asked)),
            Allowance::Send { max_tokens } => Ok(max_tokens),
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
                    "{} needs {what} but {which} has {remaining} left; nothing was sent{}. Raise the budget in config.toml, then `orchestrator run` continues",
                    prompt.id,
                    self.possibly_billed_note(&which, prompt.phase)
                );
                self.budget_exceeded(index, reason, asked)
            }
        }
    }

    /// The USD limits on a call in `phase`: (which, limit, spent so far).
    fn usd_limits(&self, phase: usize) -> Vec<(String, f64, f64)> {
        let config = self.config();
        let mut limits = Vec::new();
        if let Some(max) = config.budget.max_cost_usd {
            limits.push((
                "budget.max_cost_usd".to_string(),
                max,
                self.book.fold.cost_usd,
            ));
        }
        let ph = &self.plan.phases[phase];
        if let Some(usd) = config.phase(&ph.dir).and_then(|p| p.budget_usd) {
            limits.push((
                format!("phase {}'s budget_usd", ph.name),
                usd,
                self.book.tally.phase_cost(phase),
            ));
        }
        limits
    }

    /// What remains of the tightest USD limit on a call in `phase` (`{{budget_usd_left}}`).
    pub(super) fn usd_left(&self, phase: usize) -> Option<f64> {
        self.usd_limits(phase)
            .into_iter()
            .map(|(_, limit, spent)| (limit - spent).max(0.0))
            .min_by(f64::total_cmp)
    }

    /// For a budget halt: how much of what was spent is possibly billed.
    fn possibly_billed_note(&self, which: &str, phase: usize) -> String {
        let fold = &self.book.fold;
        let prompts: Vec<&str> = if which == "total" {
            fold.prompts.keys().map(String::as_str).collect()
        } else {
            self.plan.prompts[self.plan.phases[phase].prompts.clone()]
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

    fn budget_exceeded(&mut self, index: usize, reason: String, asked: u32) -> Result<u32> {
        match self.config().budget.on_exceed {
            OnExceed::Halt => self.halt(Error::Budget(reason)),
            OnExceed::Warn => {
                let id = self.plan.prompts[index].id.to_string();
                self.warn(&format!(
                    "{id}: {reason} (budget.on_exceed = \"warn\": sending anyway)"
                ));
                self.book.journal(vec![Event::Warning {
                    id: Some(id),
                    message: reason,
                }])?;
                Ok(asked)
            }
        }
    }
}
