//! The dry run (docs, "What is estimated, and what is exact"): every request counted exactly as `run` builds it, per
//! prompt, phase and total, against the budgets, with what an earlier run actually spent.
//! Sends nothing. The structs serialize as `estimate --json` (stable keys).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::request::{BuildError, RequestBuilder};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PromptEstimate {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) phase: String,
    pub(crate) input_tokens: u64,
    pub(crate) max_tokens: u32,
    pub(crate) worst_case_tokens: u64,
    pub(crate) over_per_prompt: bool,
    /// Tokens an earlier run actually spent on this prompt (in and out).
    pub(crate) actual_tokens: Option<u64>,
    /// Of `actual_tokens`: attempts a crash left without a result, at their worst case.
    pub(crate) possibly_billed_tokens: u64,
    pub(crate) tokens_hint: Option<u64>,
    pub(crate) minutes_hint: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseEstimate {
    pub(crate) name: String,
    pub(crate) dir: String,
    pub(crate) budget: Option<u64>,
    pub(crate) input_tokens: u64,
    pub(crate) worst_case_tokens: u64,
    pub(crate) actual_tokens: Option<u64>,
    pub(crate) possibly_billed_tokens: u64,
    /// Inputs alone exceed the budget.
    pub(crate) over_budget: bool,
    /// Inputs fit but the worst case does not.
    pub(crate) worst_case_over: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TotalEstimate {
    pub(crate) budget: u64,
    /// `budget.per_prompt`: no request may count more.
    pub(crate) per_prompt: u64,
    pub(crate) input_tokens: u64,
    pub(crate) worst_case_tokens: u64,
    pub(crate) actual_tokens: Option<u64>,
    pub(crate) possibly_billed_tokens: u64,
    pub(crate) cost_usd_max: Option<f64>,
    pub(crate) minutes: f64,
    pub(crate) over_budget: bool,
    pub(crate) worst_case_over: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Estimate {
    pub(crate) encoding: String,
    pub(crate) prompts: Vec<PromptEstimate>,
    pub(crate) phases: Vec<PhaseEstimate>,
    pub(crate) total: TotalEstimate,
    pub(crate) over_budget: bool,
}

/// Counts every request of the plan. Variables come from `actual(i)` where an earlier run
/// produced them, else from the examples in each prompt's `## Checkpoint` block; the
/// tokens a run actually spent per prompt come from `spent(i)`.
pub(crate) fn estimate(
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
            // As a turn of a later prompt's history: its text, and its reply at the most
            // it may be (its max_tokens).
            let turn = builder.turn_tokens(&crate::request::Turn {
                user: request.user.clone(),
                assistant: String::new(),
            }) + u64::from(request.max_tokens);
            out.push(Counted {
                input: builder.input_tokens(&request),
                turn,
                max_tokens: request.max_tokens,
            });
            vars.extend(outputs[i].iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(out)
    })?;
    let counted = with_history(plan, config, builder, counted);

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

    let phases = phase_estimates(plan, &prompts);
    let total = total_estimate(config, &prompts);
    let over_budget = total.over_budget
        || phases.iter().any(|p| p.over_budget)
        || prompts.iter().any(|p| p.over_per_prompt);
    Ok(Estimate {
        encoding: builder.encoding.to_string(),
        prompts,
        phases,
        total,
        over_budget,
    })
}

/// One prompt's request, counted.
#[derive(Debug, Clone, Copy)]
struct Counted {
    input: u64,
    /// What it adds to a later prompt's history at the most.
    turn: u64,
    max_tokens: u32,
}

/// Each prompt's input with the history it would carry (`[context] history`): earlier
/// turns, newest first, within `[context] max_tokens` (the newest always), each reply at
/// its worst case; and within `budget.per_prompt`, as a run trims it.
fn with_history(
    plan: &Plan,
    config: &Config,
    builder: &RequestBuilder<'_>,
    counted: Vec<Counted>,
) -> Vec<(u64, u32)> {
    (0..plan.prompts.len())
        .map(|i| {
            let c = counted[i];
            let mut history = 0;
            for (turns, j) in builder.history_sources(i).into_iter().enumerate() {
                let cost = counted[j].turn;
                let fits_context = history + cost <= config.context.max_tokens;
                let fits_prompt = c.input + history + cost <= config.budget.per_prompt;
                if turns > 0 && !(fits_context && fits_prompt) {
                    break;
                }
                history += cost;
            }
            (c.input + history, c.max_tokens)
        })
        .collect()
}

/// Tokens an earlier run spent on `prompts`, if it spent any.
fn sum_actual(prompts: &[PromptEstimate]) -> Option<u64> {
    let spent: Vec<u64> = prompts.iter().filter_map(|p| p.actual_tokens).collect();
    (!spent.is_empty()).then(|| spent.iter().sum())
}

fn phase_estimates(plan: &Plan, prompts: &[PromptEstimate]) -> Vec<PhaseEstimate> {
    plan.phases
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
                actual_tokens: sum_actual(slice),
                possibly_billed_tokens: slice.iter().map(|p| p.possibly_billed_tokens).sum(),
                over_budget: ph.budget.is_some_and(|b| input > b),
                worst_case_over: ph.budget.is_some_and(|b| worst > b),
            }
        })
        .collect()
}

fn total_estimate(config: &Config, prompts: &[PromptEstimate]) -> TotalEstimate {
    let input: u64 = prompts.iter().map(|p| p.input_tokens).sum();
    let worst: u64 = prompts.iter().map(|p| p.worst_case_tokens).sum();
    let max_out: u64 = prompts.iter().map(|p| u64::from(p.max_tokens)).sum();
    TotalEstimate {
        budget: config.budget.total,
        per_prompt: config.budget.per_prompt,
        input_tokens: input,
        worst_case_tokens: worst,
        actual_tokens: sum_actual(prompts),
        possibly_billed_tokens: prompts.iter().map(|p| p.possibly_billed_tokens).sum(),
        cost_usd_max: config.pricing.map(|p| p.cost(input, max_out, 0, 0)),
        minutes: prompts.iter().filter_map(|p| p.minutes_hint).sum(),
        over_budget: input > config.budget.total,
        worst_case_over: worst > config.budget.total,
    }
}

/// Runs `work` over `0..n` split into one contiguous range per core and joins the results
/// in order: counting is the whole cost of an estimate once the encoding is loaded.
fn count_in_parallel(
    n: usize,
    work: &(dyn Fn(std::ops::Range<usize>) -> Result<Vec<Counted>> + Sync),
) -> Result<Vec<Counted>> {
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
