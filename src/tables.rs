//! What users see: human tables and `--json` documents (docs, "What you see").
//!
//! Functions here turn data into text and never print; `cli` writes the text to stdout
//! (data) or stderr (warnings), so `--json` output can be piped safely.

use comfy_table::{CellAlignment, Table, presets};
use serde_json::{Value, json};

use crate::budget::Ledger;
use crate::documents::StatusDoc;
use crate::estimate::Estimate;
use crate::plan::{CheckpointMode, Graph, Plan};
use crate::state::Fold;
use crate::text::{minutes, plural, thousands};
use crate::verify::Check;

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_string(), thousands)
}

/// A markdown-style table (the seed's tables are markdown), numbers right-aligned.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut t = Table::new();
    t.load_style(presets::ASCII_MARKDOWN);
    t.set_header(header.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    for &c in right {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

/// The line `plan` and `estimate` end with, after a blank line (nothing for a plan of no
/// prompts): the graph's longest chain (the least wall time any number of jobs can give)
/// and what `--jobs` would give. `minutes(i)` is prompt `i`'s time where a footer or a
/// past run gives one; without one for every prompt, lengths are counted in prompts.
pub(crate) fn critical_path_line(
    plan: &Plan,
    graph: &Graph,
    minutes: &dyn Fn(usize) -> Option<f64>,
    jobs: u32,
    by: &str,
) -> String {
    let n = plan.prompts.len();
    if n == 0 {
        return String::new();
    }
    let timed = (0..n).all(|i| minutes(i).is_some());
    let weight = |i: usize| {
        if timed {
            minutes(i).unwrap_or(1.0)
        } else {
            1.0
        }
    };
    let path = graph.critical_path(weight);
    let ids: Vec<String> = path
        .prompts
        .iter()
        .map(|&i| plan.prompts[i].id.to_string())
        .collect();
    let chain = if ids.len() > 6 {
        format!(
            "{} → … → {}",
            ids[..3].join(" → "),
            ids[ids.len() - 2..].join(" → ")
        )
    } else {
        ids.join(" → ")
    };
    let length = |x: f64| {
        if timed {
            format!("{} min", x.round() as u64)
        } else {
            format!(
                "{} {}",
                x.round() as u64,
                plural(x.round() as usize, "prompt")
            )
        }
    };
    let sequential = graph.makespan(1, weight);
    let mut counts: Vec<u32> = if jobs > 1 { vec![jobs] } else { vec![2, 4, 8] };
    counts.retain(|&j| (j as usize) <= n.max(1));
    let with: Vec<String> = counts
        .iter()
        .map(|&j| format!("--jobs {j} {}", length(graph.makespan(j as usize, weight))))
        .collect();
    let mut line = format!(
        "\ncritical path: {} of {n} {} ({chain})",
        path.prompts.len(),
        plural(n, "prompt"),
    );
    if timed {
        line.push_str(&format!(", {} by {by}", length(path.length)));
    }
    line.push_str(&format!("; in sequence {}", length(sequential)));
    if !with.is_empty() {
        line.push_str(&format!(", {}", with.join(", ")));
    }
    line
}

/// `plan --json`; `checks[i]` are prompt `i`'s checks.
pub(crate) fn plan_json(plan: &Plan, checks: &[Vec<Check>], graph: &Graph) -> Value {
    let ids = |list: &[usize]| -> Vec<String> {
        list.iter()
            .map(|&d| plan.prompts[d].id.to_string())
            .collect()
    };
    let phases: Vec<Value> = plan
        .phases
        .iter()
        .map(|ph| {
            let prompts: Vec<Value> = ph
                .prompts
                .clone()
                .map(|i| {
                    let (p, checks) = (&plan.prompts[i], &checks[i]);
                    json!({
                        "id": p.id.to_string(),
                        "name": p.name,
                        "file": p.path.display().to_string(),
                        "checkpoint": p.checkpoint,
                        "checkpoint_why": p.checkpoint_why,
                        "tokens_hint": p.footer.as_ref().and_then(|f| f.tokens),
                        "minutes_hint": p.footer.as_ref().and_then(|f| f.minutes),
                        "max_tokens": p.front.max_tokens,
                        "model": p.front.model,
                        "depends_on": p.depends_on.iter().map(|&d| plan.prompts[d].id.to_string()).collect::<Vec<_>>(),
                        "waits_for": ids(&graph.deps[i]),
                        "produces": p.produces.keys().collect::<Vec<_>>(),
                        "needs": p.needs,
                        "checks": checks,
                    })
                })
                .collect();
            json!({
                "dir": ph.dir,
                "name": ph.name,
                "budget": ph.budget,
                "configured": ph.configured,
                "prompts": prompts,
            })
        })
        .collect();
    json!({
        "phases": phases,
        "critical_path": ids(&graph.critical_path(|_| 1.0).prompts),
        "ignored": plan.ignored.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "notes": plan.notes,
        "warnings": plan.warnings,
    })
}

/// `plan`; `checks[i]` are prompt `i`'s checks; `excludes`, what an agent build's
/// snapshots leave out, if it has snapshots.
pub(crate) fn plan_text(plan: &Plan, checks: &[Vec<Check>], excludes: Option<&[String]>) -> String {
    let mut out = String::new();
    // Hint columns only where some prompt has a footer to fill them.
    let hints = plan.prompts.iter().any(|p| {
        p.footer
            .as_ref()
            .is_some_and(|f| f.tokens.is_some() || f.minutes.is_some())
    });
    for ph in &plan.phases {
        let budget = ph.budget.map_or_else(
            || "no phase budget".to_string(),
            |b| format!("budget {}", thousands(b)),
        );
        out.push_str(&format!(
            "{} ({}/): {} {}, {budget}\n",
            ph.name,
            ph.dir,
            ph.prompts.len(),
            plural(ph.prompts.len(), "prompt")
        ));
        let rows = plan.prompts[ph.prompts.clone()]
            .iter()
            .map(|p| {
                let mut row = vec![p.id.to_string(), p.name.clone()];
                if hints {
                    row.push(opt(p.footer.as_ref().and_then(|f| f.tokens)));
                    row.push(
                        p.footer
                            .as_ref()
                            .and_then(|f| f.minutes)
                            .map_or_else(|| "-".into(), minutes),
                    );
                }
                row.push(format!(
                    "{} ({})",
                    match p.checkpoint {
                        CheckpointMode::Required => "required",
                        CheckpointMode::Optional => "optional",
                    },
                    p.checkpoint_why
                ));
                row.push(p.needs.join(", "));
                row.push(p.produces.keys().cloned().collect::<Vec<_>>().join(", "));
                row
            })
            .collect();
        let mut header = vec!["Id", "Prompt"];
        if hints {
            header.extend(["Tokens~", "Time~"]);
        }
        header.extend(["Checkpoint", "Needs", "Produces"]);
        out.push_str(&table(&header, rows, if hints { &[2, 3] } else { &[] }));
        out.push_str("\n\n");
    }
    if plan.prompts.iter().any(|p| p.checkpoint_why == "auto") {
        out.push_str("A checkpoint block is required from a prompt with a ## Checkpoint section or whose outputs a later prompt uses; \"optional (auto)\" prompts may answer in prose ([run] checkpoint = \"required\" asks it of all).\n\n");
    }
    out.push_str(&checks_text(plan, checks));
    if let Some(excludes) = excludes {
        out.push_str(&format!(
            "Snapshots leave out, and restores keep ([workspace] exclude): {}\n\n",
            if excludes.is_empty() {
                "nothing".to_string()
            } else {
                excludes.join(" ")
            }
        ));
    }
    out.push_str(&format!(
        "{} {} in {} {}",
        plan.prompts.len(),
        plural(plan.prompts.len(), "prompt"),
        plan.phases.len(),
        plural(plan.phases.len(), "phase")
    ));
    if !plan.ignored.is_empty() {
        out.push_str(&format!(
            "; ignored (not prompts): {}",
            plan.ignored
                .iter()
                .map(|p| p
                    .strip_prefix(&plan.root)
                    .unwrap_or(p)
                    .display()
                    .to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push('\n');
    out
}

/// The checks each prompt runs after its reply, if any prompt has one.
fn checks_text(plan: &Plan, checks: &[Vec<Check>]) -> String {
    let rows: Vec<Vec<String>> = plan
        .prompts
        .iter()
        .zip(checks)
        .flat_map(|(p, checks)| {
            checks.iter().map(|c| {
                // Every line: nothing runs that `plan` did not show.
                vec![
                    p.id.to_string(),
                    c.from.as_str().to_string(),
                    c.script.trim_end().to_string(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "Checks, run in the workspace after each reply (a failure is a content failure):\n{}\n\n",
        table(&["Id", "From", "Check"], rows, &[])
    )
}

pub(crate) fn estimate_text(e: &Estimate) -> String {
    let mut out = String::new();
    let rows = e
        .prompts
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.name.clone(),
                p.phase.clone(),
                thousands(p.input_tokens),
                thousands(u64::from(p.max_tokens)),
                thousands(p.worst_case_tokens),
                opt(p.actual_tokens),
                if p.over_per_prompt {
                    format!("OVER per_prompt {}", thousands(e.total.per_prompt))
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Id",
            "Prompt",
            "Phase",
            "Input",
            "Max out",
            "Worst case",
            "Actual",
            "Note",
        ],
        rows,
        &[3, 4, 5, 6],
    ));
    out.push_str("\n\n");
    out.push_str(&estimate_phases(e));
    out.push('\n');
    out.push_str(&format!(
        "\n{} {}, encoding {}",
        e.prompts.len(),
        plural(e.prompts.len(), "prompt"),
        e.encoding,
    ));
    if e.prompts.iter().any(|p| p.minutes_hint.is_some()) {
        out.push_str(&format!("; time (footers): {}", minutes(e.total.minutes)));
    }
    if let Some(cost) = e.total.cost_usd_max {
        out.push_str(&format!("; cost at most {}", crate::text::usd(cost)));
    }
    out.push('\n');
    if e.total.possibly_billed_tokens > 0 {
        out.push_str(&possibly_billed_line(e.total.possibly_billed_tokens));
    }
    out
}

/// The line that explains possibly-billed spend, shown wherever spend is.
fn possibly_billed_line(tokens: u64) -> String {
    format!(
        "Of the actual spend, {} tokens are possibly billed: attempts a crash left without a result, counted at their worst case (input + max_tokens).\n",
        thousands(tokens)
    )
}

/// `estimate`'s second table: phases and the total against their budgets.
fn estimate_phases(e: &Estimate) -> String {
    let mut rows: Vec<Vec<String>> = e
        .phases
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                opt(p.budget),
                thousands(p.input_tokens),
                p.budget
                    .map_or_else(|| "-".into(), |b| signed(b, p.input_tokens)),
                thousands(p.worst_case_tokens),
                opt(p.actual_tokens),
                if p.over_budget {
                    "OVER budget".into()
                } else if p.worst_case_over {
                    "worst case over budget".into()
                } else {
                    "ok".into()
                },
            ]
        })
        .collect();
    rows.push(vec![
        "Total".into(),
        thousands(e.total.budget),
        thousands(e.total.input_tokens),
        signed(e.total.budget, e.total.input_tokens),
        thousands(e.total.worst_case_tokens),
        opt(e.total.actual_tokens),
        if e.total.over_budget {
            "OVER budget".into()
        } else if e.total.worst_case_over {
            "worst case over budget".into()
        } else {
            "ok".into()
        },
    ]);
    table(
        &[
            "Phase",
            "Budget",
            "Input",
            "Remaining",
            "Worst case",
            "Actual",
            "Status",
        ],
        rows,
        &[1, 2, 3, 4, 5],
    )
}

/// `budget - used`, negative when over.
fn signed(budget: u64, used: u64) -> String {
    if used > budget {
        format!("-{}", thousands(used - budget))
    } else {
        thousands(budget - used)
    }
}

/// The seed's budget table (Phase, Budget, Actual, Remaining), with a column for a budget
/// spent past (always flagged) and one for possibly-billed spend when there is any.
fn budget_table(l: &Ledger) -> String {
    let billed = l.total.possibly_billed > 0;
    let cached = l.total.cache_read > 0;
    let flag = |over: bool| if over { "OVER budget" } else { "ok" }.to_string();
    let row = |name: &str, budget: String, used, remaining: String, over, pb, cr| {
        let mut row = vec![
            name.to_string(),
            budget,
            thousands(used),
            remaining,
            flag(over),
        ];
        if billed {
            row.push(thousands(pb));
        }
        if cached {
            row.push(thousands(cr));
        }
        row
    };
    let mut rows: Vec<Vec<String>> = l
        .phases
        .iter()
        .map(|p| {
            let (budget, remaining) = (opt(p.budget), opt(p.remaining));
            row(
                &p.name,
                budget,
                p.used,
                remaining,
                p.over_budget,
                p.possibly_billed,
                p.cache_read,
            )
        })
        .collect();
    let t = &l.total;
    rows.push(row(
        "Total",
        thousands(t.budget),
        t.used,
        thousands(t.remaining),
        t.over_budget,
        t.possibly_billed,
        t.cache_read,
    ));
    let mut header = vec!["Phase", "Budget", "Actual", "Remaining", "Status"];
    if billed {
        header.push("Possibly billed");
    }
    if cached {
        header.push("Cache reads (apart)");
    }
    let right: Vec<usize> = [1, 2, 3].into_iter().chain(5..header.len()).collect();
    table(&header, rows, &right)
}

/// Each prompt's workspace commit and checks, for an agent build.
fn prompts_table(fold: &crate::state::Fold, plan: &Plan) -> String {
    // A column for what the agent reported failing, when it reported anything.
    let reported = fold.prompts.values().any(|s| !s.agent_errors.is_empty());
    let rows: Vec<Vec<String>> = plan
        .prompts
        .iter()
        .filter_map(|p| fold.prompts.get(p.id.as_str()).map(|s| (p, s)))
        .filter(|(_, s)| s.commit.is_some() || !s.checks.is_empty())
        .map(|(p, s)| {
            let commit = s.commit.as_deref().unwrap_or("-");
            let mut row = vec![
                p.id.to_string(),
                commit[..commit.len().min(10)].to_string(),
                s.checks_summary(),
            ];
            row.extend(reported.then(|| s.agent_errors_summary()));
            row
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut headers = vec!["Id", "Commit", "Checks"];
    if reported {
        headers.push("Agent reported failing");
    }
    format!("{}\n\n", table(&headers, rows, &[]))
}

/// What `status` shows: the session in `doc`, with its prompts' commits and checks from
/// `fold` and the budget table from `ledger`.
pub(crate) fn status_text(doc: &StatusDoc, fold: &Fold, plan: &Plan, ledger: &Ledger) -> String {
    let l = ledger;
    let f = fold;
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    let mut out = format!(
        "Session {} (started {})\nCompleted {}/{} {}; failed: {}; skipped: {}; current prompt: {}\n",
        f.session_id,
        f.started,
        f.completed.len(),
        plan.prompts.len(),
        plural(plan.prompts.len(), "prompt"),
        list(&f.failed),
        list(&f.skipped),
        doc.current_prompt.as_deref().unwrap_or("none (all done)")
    );
    if f.mock {
        out.push_str("A mock session: every answer is the prompt's own checkpoint example; nothing was sent to a model (a real `run` starts a new session)\n");
    }
    if let Some((reason, code)) = &f.halted {
        out.push_str(&format!("Halted (exit {code}): {reason}\n"));
    }
    if let Some((id, until_ms, reason)) = &f.paused {
        let now = crate::text::now_ms();
        if *until_ms > now {
            out.push_str(&format!(
                "Paused until {} for a limit ({id}: {reason}); nothing is sent before then, and a `run` started now waits for it\n",
                crate::text::until(*until_ms, now)
            ));
        }
    }
    out.push('\n');
    out.push_str(&budget_table(ledger));
    out.push_str("\n\n");
    out.push_str(&prompts_table(fold, plan));
    if l.total.possibly_billed > 0 {
        out.push_str(&possibly_billed_line(l.total.possibly_billed));
        out.push('\n');
    }
    for c in &doc.criteria {
        out.push_str(&format!(
            "- [{}] {}: {}\n",
            if c.passed { "x" } else { " " },
            c.name,
            c.value
        ));
    }
    out.push_str(&format!(
        "\nCost: {}{}\n",
        crate::text::cost(doc.total.cost_usd, doc.total.unpriced),
        if l.total.estimated {
            " (some token counts estimated)"
        } else {
            ""
        }
    ));
    let (reasoning, output) = (doc.total.reasoning, doc.total.output_tokens);
    if reasoning > 0 {
        out.push_str(&format!(
            "Reasoning: {} of the {} output tokens (billed as output and counted against the budgets)\n",
            thousands(reasoning),
            thousands(output)
        ));
    }
    if !doc.changed.is_empty() {
        out.push_str(&format!(
            "Changed since they ran: {} (`orchestrator rerun ID` runs one again)\n",
            doc.changed.join(", ")
        ));
    }
    if !f.failed.is_empty() {
        for id in &f.failed {
            if let Some(p) = f.prompts.get(id) {
                out.push_str(&format!(
                    "Failed {id}: {}\n",
                    p.last_error.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_remaining() {
        assert_eq!(signed(10, 4), "6");
        assert_eq!(signed(10, 14), "-4");
    }
}
