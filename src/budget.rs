//! Budgets: what a request may spend, and what has been spent.
//!
//! Phase and total budgets are hard: before each request the runner caps `max_tokens` to
//! what remains, so no request can spend past a budget; when not even `min_output` fits,
//! nothing is sent. The ledger adds up the folded journal per phase and in all, with what
//! is possibly billed (attempts a crash left without a result) apart.

use crate::config::Config;
use crate::documents::{PhaseSpend, TotalSpend};
use crate::plan::Plan;
use crate::state::Fold;

/// A token budget a request is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `budget.total`.
    Total,
    /// A phase's budget, by the phase's name.
    Phase(String),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Total => f.write_str("total"),
            Limit::Phase(name) => write!(f, "phase {name}"),
        }
    }
}

/// What the budgets allow for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allowance {
    /// Send, asking for at most this many output tokens.
    Send { max_tokens: u32 },
    /// `input + min_output` does not fit what remains of `which`.
    DoesNotFit {
        which: Limit,
        remaining: u64,
        needed: u64,
    },
}

/// Remaining tokens of the prompt's phase (if it has a budget: the phase's name) and of
/// the total.
#[derive(Debug, Clone)]
pub(crate) struct Remaining {
    pub(crate) phase: Option<(String, u64)>,
    pub(crate) total: u64,
}

/// `max_tokens = min(max_tokens, remaining - input)` over the phase and the total.
pub(crate) fn allow(
    input: u64,
    max_tokens: u32,
    min_output: u64,
    remaining: &Remaining,
) -> Allowance {
    let mut limits = vec![(Limit::Total, remaining.total)];
    if let Some((name, left)) = &remaining.phase {
        limits.push((Limit::Phase(name.clone()), *left));
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

/// What has been spent, per phase and in all, from the folded journal.
#[derive(Debug, Clone)]
pub(crate) struct Ledger {
    pub(crate) phases: Vec<PhaseSpend>,
    pub(crate) total: TotalSpend,
}

impl Ledger {
    pub(crate) fn new(fold: &Fold, plan: &Plan, config: &Config) -> Ledger {
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
                    cache_read: prompts
                        .iter()
                        .filter_map(|p| fold.prompts.get(p.id.as_str()))
                        .map(|p| p.cache_read)
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
                cache_read: fold.prompts.values().map(|p| p.cache_read).sum(),
                input_tokens: input + open,
                output_tokens: output,
                reasoning: fold.prompts.values().map(|p| p.reasoning).sum(),
                estimated: open > 0 || fold.prompts.values().any(|p| p.estimated),
                cost_usd,
                unpriced: fold.unpriced,
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
                which: Limit::Phase("Core".into()),
                remaining: 1200,
                needed: 1256
            }
        );
        assert_eq!(
            allow(1000, 2000, 256, &remaining(Some(5000), 1255)),
            Allowance::DoesNotFit {
                which: Limit::Total,
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
