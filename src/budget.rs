//! Budgets (spec, "Budgets and tokens"): what a request may spend, and the dry-run estimate.
//!
//! Phase and total budgets are hard: before each request the runner caps `max_tokens` to
//! what remains, so no request can spend past a budget; when not even `min_output` fits,
//! nothing is sent. The estimate counts every request exactly as `run` would build it.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::request::{BuildError, RequestBuilder};

/// What the budgets allow for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowance {
    /// Send, asking for at most this many output tokens.
    Send { max_tokens: u32 },
    /// `input + min_output` does not fit what remains of `which` (a phase name or "total").
    DoesNotFit {
        which: String,
        remaining: u64,
        needed: u64,
    },
}

/// Remaining tokens of the prompt's phase (if it has a budget) and of the total.
#[derive(Debug, Clone)]
pub struct Remaining {
    pub phase: Option<(String, u64)>,
    pub total: u64,
}

/// `max_tokens = min(max_tokens, remaining - input)` over the phase and the total.
pub fn allow(input: u64, max_tokens: u32, min_output: u64, remaining: &Remaining) -> Allowance {
    let mut limits = vec![("total".to_string(), remaining.total)];
    if let Some((name, left)) = &remaining.phase {
        limits.push((name.clone(), *left));
    }
    let mut cap = u64::from(max_tokens);
    for (which, left) in limits {
        let needed = input + min_output.min(u64::from(max_tokens));
        if left < needed {
            return Allowance::DoesNotFit {
                which,
                remaining: left,
                needed,
            };
        }
        cap = cap.min(left - input);
    }
    Allowance::Send {
        max_tokens: u32::try_from(cap).unwrap_or(u32::MAX),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptEstimate {
    pub id: String,
    pub name: String,
    pub phase: String,
    pub input_tokens: u64,
    pub max_tokens: u32,
    pub worst_case_tokens: u64,
    pub over_per_prompt: bool,
    /// Tokens an earlier run actually spent on this prompt (in and out).
    pub actual_tokens: Option<u64>,
    /// Of `actual_tokens`: attempts a crash left without a result, at their worst case.
    pub possibly_billed_tokens: u64,
    pub tokens_hint: Option<u64>,
    pub minutes_hint: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseEstimate {
    pub name: String,
    pub dir: String,
    pub budget: Option<u64>,
    pub input_tokens: u64,
    pub worst_case_tokens: u64,
    pub actual_tokens: Option<u64>,
    pub possibly_billed_tokens: u64,
    /// Inputs alone exceed the budget.
    pub over_budget: bool,
    /// Inputs fit but the worst case does not.
    pub worst_case_over: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TotalEstimate {
    pub budget: u64,
    pub input_tokens: u64,
    pub worst_case_tokens: u64,
    pub actual_tokens: Option<u64>,
    pub possibly_billed_tokens: u64,
    pub cost_usd_max: Option<f64>,
    pub minutes: f64,
    pub over_budget: bool,
    pub worst_case_over: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub encoding: String,
    pub per_prompt: u64,
    pub prompts: Vec<PromptEstimate>,
    pub phases: Vec<PhaseEstimate>,
    pub total: TotalEstimate,
    pub over_budget: bool,
}

/// Counts every request of the plan. Variables come from `actual(i)` where an earlier run
/// produced them, else from the examples in each prompt's `## Checkpoint` block; the
/// tokens a run actually spent per prompt come from `spent(i)`.
pub fn estimate(
    plan: &Plan,
    config: &Config,
    builder: &RequestBuilder<'_>,
    actual: &dyn Fn(usize) -> Option<Map<String, Value>>,
    spent: &dyn Fn(usize) -> Option<(u64, u64)>,
) -> Result<Estimate> {
    let outputs: Vec<Map<String, Value>> = (0..plan.prompts.len())
        .map(|i| {
            actual(i).unwrap_or_else(|| {
                plan.prompts[i]
                    .produces
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
        })
        .collect();
    let counted = count_in_parallel(plan.prompts.len(), &|range: std::ops::Range<usize>| {
        // Each worker builds its requests in order, extending the variables as it goes,
        // and keeps only the counts: memory stays flat however long the plan.
        let mut vars = builder.variables_before(range.start, |j| outputs.get(j));
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let request = builder.build(i, &vars, None).map_err(|e| match e {
                BuildError::Prompt(e) => e,
                BuildError::Missing(missing) => Error::Usage(format!(
                    "{}: no value for {}",
                    plan.prompts[i].path.display(),
                    missing.join(", ")
                )),
            })?;
            out.push((builder.input_tokens(&request), request.max_tokens));
            vars.extend(outputs[i].iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(out)
    })?;

    let prompts: Vec<PromptEstimate> = plan
        .prompts
        .iter()
        .zip(&counted)
        .enumerate()
        .map(|(i, (p, &(input, max_tokens)))| PromptEstimate {
            id: p.id.to_string(),
            name: p.name.clone(),
            phase: plan.phases[p.phase].name.clone(),
            input_tokens: input,
            max_tokens,
            worst_case_tokens: input + u64::from(max_tokens),
            over_per_prompt: input > config.budget.per_prompt,
            actual_tokens: spent(i).map(|s| s.0),
            possibly_billed_tokens: spent(i).map_or(0, |s| s.1),
            tokens_hint: p.footer.as_ref().and_then(|f| f.tokens),
            minutes_hint: p.footer.as_ref().and_then(|f| f.minutes),
        })
        .collect();

    let sum_actual = |range: std::ops::Range<usize>| {
        let spent: Vec<u64> = prompts[range]
            .iter()
            .filter_map(|p| p.actual_tokens)
            .collect();
        (!spent.is_empty()).then(|| spent.iter().sum())
    };
    let phases: Vec<PhaseEstimate> = plan
        .phases
        .iter()
        .map(|ph| {
            let slice = &prompts[ph.prompts.clone()];
            let input: u64 = slice.iter().map(|p| p.input_tokens).sum();
            let worst: u64 = slice.iter().map(|p| p.worst_case_tokens).sum();
            PhaseEstimate {
                name: ph.name.clone(),
                dir: ph.dir.clone(),
                budget: ph.budget,
                input_tokens: input,
                worst_case_tokens: worst,
                actual_tokens: sum_actual(ph.prompts.clone()),
                possibly_billed_tokens: slice.iter().map(|p| p.possibly_billed_tokens).sum(),
                over_budget: ph.budget.is_some_and(|b| input > b),
                worst_case_over: ph.budget.is_some_and(|b| worst > b),
            }
        })
        .collect();
    let input: u64 = prompts.iter().map(|p| p.input_tokens).sum();
    let worst: u64 = prompts.iter().map(|p| p.worst_case_tokens).sum();
    let max_out: u64 = prompts.iter().map(|p| u64::from(p.max_tokens)).sum();
    let total = TotalEstimate {
        budget: config.budget.total,
        input_tokens: input,
        worst_case_tokens: worst,
        actual_tokens: sum_actual(0..prompts.len()),
        possibly_billed_tokens: prompts.iter().map(|p| p.possibly_billed_tokens).sum(),
        cost_usd_max: config.pricing.map(|p| p.cost(input, max_out)),
        minutes: prompts.iter().filter_map(|p| p.minutes_hint).sum(),
        over_budget: input > config.budget.total,
        worst_case_over: worst > config.budget.total,
    };
    let over_budget = total.over_budget
        || phases.iter().any(|p| p.over_budget)
        || prompts.iter().any(|p| p.over_per_prompt);
    Ok(Estimate {
        encoding: builder.encoding.to_string(),
        per_prompt: config.budget.per_prompt,
        prompts,
        phases,
        total,
        over_budget,
    })
}

/// Runs `work` over `0..n` split into one contiguous range per core and joins the results
/// in order: counting is the whole cost of an estimate once the encoding is loaded.
fn count_in_parallel(
    n: usize,
    work: &(dyn Fn(std::ops::Range<usize>) -> Result<Vec<(u64, u32)>> + Sync),
) -> Result<Vec<(u64, u32)>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(8);
    if threads < 2 || n < 8 {
        return work(0..n);
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| s.spawn(move || work(start..(start + chunk).min(n))))
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            );
        }
        Ok(all)
    })
}

/// What has been spent, per phase and in all, from the folded journal.
#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub phases: Vec<PhaseSpend>,
    pub total: TotalSpend,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSpend {
    pub name: String,
    pub dir: String,
    pub budget: Option<u64>,
    pub used: u64,
    pub remaining: Option<u64>,
    /// Spent past the budget: an endpoint counted more than was reserved. Always shown.
    pub over_budget: bool,
    /// Of `used`: attempts a crash left without a result, at their worst case.
    pub possibly_billed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TotalSpend {
    pub budget: u64,
    pub used: u64,
    pub remaining: u64,
    pub over_budget: bool,
    /// Of `used`: attempts a crash left without a result, at their worst case.
    pub possibly_billed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Some counts came from the tokenizer rather than the endpoint.
    pub estimated: bool,
    pub cost_usd: f64,
}

impl Ledger {
    pub fn new(fold: &crate::state::Fold, plan: &Plan, config: &Config) -> Ledger {
        let phases = plan
            .phases
            .iter()
            .map(|ph| {
                let prompts = &plan.prompts[ph.prompts.clone()];
                let used: u64 = prompts.iter().map(|p| fold.spent(p.id.as_str())).sum();
                PhaseSpend {
                    name: ph.name.clone(),
                    dir: ph.dir.clone(),
                    budget: ph.budget,
                    used,
                    remaining: ph.budget.map(|b| b.saturating_sub(used)),
                    over_budget: ph.budget.is_some_and(|b| used > b),
                    possibly_billed: prompts
                        .iter()
                        .map(|p| fold.possibly_billed(p.id.as_str()))
                        .sum(),
                }
            })
            .collect();
        let used: u64 = fold.prompts.keys().map(|id| fold.spent(id)).sum();
        let possibly_billed: u64 = fold.prompts.keys().map(|id| fold.possibly_billed(id)).sum();
        let input: u64 = fold.prompts.values().map(|p| p.tokens_in).sum();
        let output: u64 = fold.prompts.values().map(|p| p.tokens_out).sum();
        let open: u64 = fold
            .open
            .iter()
            .map(|o| o.input_tokens + u64::from(o.max_tokens))
            .sum();
        // Each attempt records its cost: the agent's own figure, else `[pricing]`'s.
        let cost_usd = fold.cost_usd;
        Ledger {
            phases,
            total: TotalSpend {
                budget: config.budget.total,
                used,
                remaining: config.budget.total.saturating_sub(used),
                over_budget: used > config.budget.total,
                possibly_billed,
                input_tokens: input + open,
                output_tokens: output,
                estimated: open > 0 || fold.prompts.values().any(|p| p.estimated),
                cost_usd,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining(phase: Option<u64>, total: u64) -> Remaining {
        Remaining {
            phase: phase.map(|p| ("Core".to_string(), p)),
            total,
        }
    }

    #[test]
    fn max_tokens_is_capped_by_what_remains() {
        assert_eq!(
            allow(1000, 2000, 256, &remaining(Some(10_000), 100_000)),
            Allowance::Send { max_tokens: 2000 }
        );
        assert_eq!(
            allow(1000, 2000, 256, &remaining(Some(1500), 100_000)),
            Allowance::Send { max_tokens: 500 }
        );
        assert_eq!(
            allow(1000, 2000, 256, &remaining(Some(5000), 1300)),
            Allowance::Send { max_tokens: 300 }
        );
        assert_eq!(
            allow(1000, 2000, 256, &remaining(None, 1300)),
            Allowance::Send { max_tokens: 300 }
        );
    }

    #[test]
    fn min_output_must_fit() {
        assert_eq!(
            allow(1000, 2000, 256, &remaining(Some(1200), 100_000)),
            Allowance::DoesNotFit {
                which: "Core".into(),
                remaining: 1200,
                needed: 1256
            }
        );
        assert_eq!(
            allow(1000, 2000, 256, &remaining(Some(5000), 1255)),
            Allowance::DoesNotFit {
                which: "total".into(),
                remaining: 1255,
                needed: 1256
            }
        );
    }

    #[test]
    fn a_request_asking_less_than_min_output_needs_only_that() {
        assert_eq!(
            allow(100, 50, 256, &remaining(None, 150)),
            Allowance::Send { max_tokens: 50 }
        );
    }
}
