//! `report.html`: a session at a glance, one self-contained file (inline CSS and SVG, no
//! script, no network, readable when printed): the success criteria, the budget burned per
//! phase against its budget (possibly-billed spend apart), a timeline of every attempt of
//! every prompt (retries and waits, failures, checks, commits), and per prompt what it was
//! sent, what came back, the variables it produced and why any attempt failed; and
//! `report --json`, the same session as one document ([`ReportDoc`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::budget::Ledger;
use crate::config::Config;
use crate::documents::{AttemptHistory, PhaseHistory, PromptHistory, PromptStatus, ReportDoc};
use crate::error::Result;
use crate::history::REPLY_SHOWN;
use crate::plan::Plan;
use crate::state::{self, Fold};
use crate::text::thousands;
use crate::views;

/// Where the page goes, in the checkpoints folder.
pub(crate) const REPORT: &str = "report.html";

/// Writes `report.html` for the session in `checkpoints`; its path, or `None` when there
/// is no session.
pub(crate) fn write(checkpoints: &Path, plan: &Plan, config: &Config) -> Result<Option<PathBuf>> {
    let Some(doc) = document(checkpoints, plan, config)? else {
        return Ok(None);
    };
    let path = checkpoints.join(REPORT);
    state::write_atomic(&path, |w| render(&doc, w))?;
    Ok(Some(path))
}

/// The history of the session in `checkpoints` (`report --json`), its journal read a
/// record at a time; `None` when there is no session.
pub(crate) fn document(
    checkpoints: &Path,
    plan: &Plan,
    config: &Config,
) -> Result<Option<ReportDoc>> {
    let mut fold = Fold::default();
    let mut walk = crate::history::walk(plan);
    state::each_record(&checkpoints.join(state::JOURNAL), |r| {
        fold.apply(&r);
        walk.apply(&r);
    })?;
    if fold.session_id.is_empty() {
        return Ok(None);
    }
    let ledger = Ledger::new(&fold, plan, config);
    let saved = views::outputs_saved(&fold, checkpoints);
    let criteria = views::criteria(&fold, plan, &ledger, config, saved);
    Ok(Some(walk.finish(&fold, config, criteria)))
}

/// The page, written to `w` a section at a time.
fn render(h: &ReportDoc, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("{} — session {}", h.project, h.session_id);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    header(&mut out, h);
    let _ = write!(out, "<h2>Success criteria</h2><ul class=\"criteria\">");
    for c in &h.criteria {
        let _ = write!(
            out,
            "<li class=\"{}\">{} {}: {}</li>",
            if c.passed { "pass" } else { "fail" },
            if c.passed { "✓" } else { "✗" },
            esc(&c.name),
            esc(&c.value)
        );
    }
    out.push_str("</ul>\n<h2>Budgets</h2>\n<div class=\"budgets\">");
    for phase in h.phases.iter().chain(std::iter::once(&h.total)) {
        budget(&mut out, phase);
    }
    out.push_str("</div>\n<h2>Timeline</h2>\n");
    in_time(&mut out, h);
    timeline(&mut out, h);
    out.push_str("<h2>Prompts</h2>\n");
    for p in &h.prompts {
        prompt(&mut out, p);
        if out.len() > 48 * 1024 {
            w.write_all(out.as_bytes())?;
            out.clear();
        }
    }
    out.push_str("</body></html>\n");
    w.write_all(out.as_bytes())
}

fn header(out: &mut String, h: &ReportDoc) {
    let _ = write!(
        out,
        "<h1>{}</h1><p class=\"meta\">Session {} · started {} · last event {}</p>",
        esc(&h.project),
        esc(&h.session_id),
        esc(&h.started),
        esc(&h.last_event)
    );
    if h.mock {
        out.push_str("<p class=\"mock\">A mock session: every answer is the prompt's own checkpoint example; nothing was sent to a model.</p>");
    }
    let _ = write!(
        out,
        "<p class=\"summary\">{} of {} prompts completed · failed: {} · skipped: {} · {} tokens used of {} · cost {}</p>",
        h.completed.len(),
        h.prompts.len(),
        esc(&list(&h.failed)),
        esc(&list(&h.skipped)),
        thousands(h.total.used),
        h.total.budget.map_or_else(|| "no budget".into(), thousands),
        crate::text::cost(h.cost_usd, h.unpriced)
    );
    if let Some(halted) = &h.halted {
        let _ = write!(
            out,
            "<p class=\"halted\">Halted: {}</p>",
            esc(&halted.reason)
        );
    }
    if let Some(p) = &h.paused {
        let _ = write!(
            out,
            "<p class=\"halted\">Paused for a limit until {} ({}: {})</p>",
            esc(&p.until),
            esc(&p.prompt),
            esc(&p.reason)
        );
    }
}

/// A phase's bar (used, of it possibly billed, against the budget) and its burn-down.
fn budget(out: &mut String, p: &PhaseHistory) {
    const W: f64 = 320.0;
    let scale = p.budget.unwrap_or(p.used).max(p.used).max(1) as f64;
    if p.budget.is_none() {
        // Nothing to burn down to: a bar against no budget would read as one used up.
        let _ = write!(
            out,
            "<figure class=\"phase\"><figcaption>{}: {} used; no budget (the phase is not limited)</figcaption>",
            esc(&p.name),
            thousands(p.used)
        );
        burn_down(out, p, scale);
        out.push_str("</figure>");
        return;
    }
    let used = W * p.used as f64 / scale;
    let billed = W * p.possibly_billed as f64 / scale;
    let limit = p.budget.map_or(W, |b| W * b as f64 / scale);
    let over = p.budget.is_some_and(|b| p.used > b);
    let _ = write!(
        out,
        "<figure class=\"phase\"><figcaption>{}: {} of {}{}{}</figcaption><svg class=\"bar\" width=\"{W}\" height=\"18\" role=\"img\"><title>{} tokens used</title><rect class=\"room\" x=\"0\" y=\"2\" width=\"{limit:.1}\" height=\"14\"/><rect class=\"{}\" x=\"0\" y=\"2\" width=\"{:.1}\" height=\"14\"/><rect class=\"billed\" x=\"{:.1}\" y=\"2\" width=\"{billed:.1}\" height=\"14\"/><line class=\"limit\" x1=\"{limit:.1}\" x2=\"{limit:.1}\" y1=\"0\" y2=\"18\"/></svg>",
        esc(&p.name),
        thousands(p.used),
        p.budget.map_or_else(|| "no budget".into(), thousands),
        if p.possibly_billed > 0 {
            format!(" ({} possibly billed)", thousands(p.possibly_billed))
        } else {
            String::new()
        },
        if over { " — OVER budget" } else { "" },
        thousands(p.used),
        if over { "used over" } else { "used" },
        (used - billed).max(0.0),
        (used - billed).max(0.0),
    );
    burn_down(out, p, scale);
    out.push_str("</figure>");
}

/// Spend after each attempt, against the budget line.
fn burn_down(out: &mut String, p: &PhaseHistory, scale: f64) {
    const W: f64 = 320.0;
    const H: f64 = 60.0;
    if p.burn.is_empty() {
        return;
    }
    let step = W / p.burn.len().max(1) as f64;
    let mut points = String::from("0,60");
    for (i, v) in p.burn.iter().enumerate() {
        let _ = write!(
            points,
            " {:.1},{:.1}",
            step * (i + 1) as f64,
            H - H * (*v as f64 / scale).min(1.0)
        );
    }
    let limit = p.budget.map_or_else(String::new, |b| {
        let y = H - H * (b as f64 / scale).min(1.0);
        format!("<line class=\"limit\" x1=\"0\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>")
    });
    let _ = write!(
        out,
        "<svg class=\"burn\" width=\"{W}\" height=\"{H}\" role=\"img\"><title>spent after each of {} attempts</title><rect class=\"frame\" x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\"/>{limit}<polyline class=\"spent\" points=\"{points}\"/></svg>",
        p.burn.len()
    );
}

/// Every attempt on a time axis, one lane per attempt in flight at once (`run --jobs`):
/// how parallel the run was, and where the time went.
fn in_time(out: &mut String, h: &ReportDoc) {
    const WIDTH: f64 = 860.0;
    const LANE: usize = 16;
    let at = |a: &AttemptHistory| {
        humantime::parse_rfc3339_weak(&a.started)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
    };
    let mut items: Vec<(u64, u64, &str, &AttemptHistory)> = h
        .prompts
        .iter()
        .flat_map(|p| p.attempts.iter().map(move |a| (p, a)))
        .filter_map(|(p, a)| Some((at(a)?, a.duration_ms.max(1), p.id.as_str(), a)))
        .collect();
    let Some(t0) = items.iter().map(|i| i.0).min() else {
        return;
    };
    items.sort_by_key(|i| i.0);
    // Each attempt in the first lane free when it started.
    let mut lanes: Vec<u64> = Vec::new();
    let mut placed = Vec::with_capacity(items.len());
    for (start, dur, id, a) in items {
        let (start, end) = (start - t0, start - t0 + dur);
        let lane = match lanes.iter().position(|&e| e <= start) {
            Some(l) => l,
            None => {
                lanes.push(0);
                lanes.len() - 1
            }
        };
        lanes[lane] = end;
        placed.push((lane, start, end, id, a));
    }
    let span = placed.iter().map(|p| p.2).max().unwrap_or(1).max(1) as f64;
    let x = |ms: u64| 10.0 + WIDTH * ms as f64 / span;
    let height = lanes.len() * LANE + 24;
    let _ = write!(
        out,
        "<p class=\"legend\">At most {} {} in flight at once; {} from the first attempt to the end of the last.</p><svg class=\"lanes\" width=\"{}\" height=\"{height}\" role=\"img\">",
        lanes.len(),
        crate::text::plural(lanes.len(), "attempt"),
        crate::text::duration(std::time::Duration::from_millis(span as u64)),
        WIDTH as usize + 20
    );
    for k in 0..=4u64 {
        let ms = span as u64 * k / 4;
        let _ = write!(
            out,
            "<line class=\"limit\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{1}\"></line><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"{4}\">{3}</text>",
            x(ms),
            lanes.len() * LANE,
            height - 6,
            crate::text::duration(std::time::Duration::from_millis(ms)),
            // The last label ends at its tick, inside the chart.
            if k == 4 { "end" } else { "start" }
        );
    }
    for (lane, start, end, id, a) in placed {
        let _ = write!(
            out,
            "<rect class=\"{}\" x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"12\" rx=\"2\"><title>{} attempt {}: {} · {}</title></rect>",
            a.outcome.as_str(),
            x(start),
            lane * LANE + 2,
            (x(end) - x(start)).max(1.5),
            esc(id),
            a.attempt,
            a.outcome.as_str(),
            crate::text::duration(std::time::Duration::from_millis(end - start))
        );
    }
    out.push_str("</svg>\n");
}

/// One row per prompt, one box per attempt, coloured by outcome; a wait before a retry is
/// a gap with a mark, a check a dot under its attempt, a commit a diamond.
fn timeline(out: &mut String, h: &ReportDoc) {
    const ROW: usize = 18;
    const LABEL: usize = 230;
    // An attempt's box is as long as it took, against the longest of the session.
    let longest = (h.prompts.iter())
        .flat_map(|p| &p.attempts)
        .map(|a| a.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let width_of = |a: &AttemptHistory| box_width(a.duration_ms, longest);
    let row_width = |p: &PromptHistory| -> usize {
        (p.attempts.iter())
            .map(|a| width_of(a) + 2 + if a.retry_after_ms.is_some() { 8 } else { 0 })
            .sum()
    };
    let widest = h.prompts.iter().map(row_width).max().unwrap_or(0);
    let width = LABEL + widest + 60;
    let height = h.prompts.len() * ROW + 8;
    let _ = write!(
        out,
        "<p class=\"legend\"><span class=\"ok\">■ accepted</span> <span class=\"content\">■ content failure</span> <span class=\"conflict\">■ merge conflict</span> <span class=\"transient\">■ transient</span> <span class=\"permanent\">■ permanent</span> <span class=\"unknown\">■ cut by a crash (possibly billed)</span> <span class=\"interrupted\">■ interrupted</span> · ◆ commit · ● check</p><svg class=\"timeline\" width=\"{width}\" height=\"{height}\" role=\"img\">"
    );
    for (row, p) in h.prompts.iter().enumerate() {
        let y = row * ROW + 4;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\" class=\"label {}\">{}</text>",
            y + 12,
            css_status(p.status),
            esc(&crate::text::truncate_chars(&p.name, 30))
        );
        let mut x = LABEL;
        for a in &p.attempts {
            attempt_box(out, a, (x, width_of(a)), y);
            x += width_of(a) + 2;
            if a.retry_after_ms.is_some() {
                let _ = write!(
                    out,
                    "<line class=\"wait\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"><title>waited {} ms</title></line>",
                    x,
                    x + 6,
                    y + 7,
                    y + 7,
                    a.retry_after_ms.unwrap_or(0)
                );
                x += 8;
            }
        }
        if let Some(commit) = &p.commit {
            let (cx, cy) = (x + 8, y + 7);
            let _ = write!(
                out,
                "<polygon class=\"commit\" points=\"{},{} {},{} {},{} {},{}\"><title>commit {}</title></polygon>",
                cx,
                cy - 6,
                cx + 6,
                cy,
                cx,
                cy + 6,
                cx - 6,
                cy,
                esc(commit)
            );
        }
    }
    out.push_str("</svg>\n");
}

/// An attempt's box length for `duration_ms`, to scale against the session's `longest`:
/// 8 to 80 pixels.
fn box_width(duration_ms: u64, longest: u64) -> usize {
    let longest = longest.max(duration_ms).max(1);
    let share = duration_ms as f64 / longest as f64;
    8 + (72.0 * share).round() as usize
}

fn attempt_box(out: &mut String, a: &AttemptHistory, (x, w): (usize, usize), y: usize) {
    let mut tip = format!(
        "attempt {}: {} · {} in / {} out{} · {} ms",
        a.attempt,
        a.outcome.as_str(),
        thousands(a.input_tokens),
        thousands(a.output_tokens),
        if a.estimated { " (estimated)" } else { "" },
        a.duration_ms
    );
    if let Some(e) = &a.error {
        let _ = write!(tip, " · {}", crate::text::truncate_chars(e, 300));
    }
    let _ = write!(
        out,
        "<rect class=\"{}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"13\" rx=\"2\"><title>{}</title></rect>",
        a.outcome.as_str(),
        esc(&tip)
    );
    for (n, c) in a.checks.iter().enumerate() {
        let _ = write!(
            out,
            "<circle class=\"{}\" cx=\"{}\" cy=\"{}\" r=\"2\"><title>check ({}) {}: {}</title></circle>",
            if c.passed { "pass" } else { "fail" },
            x + 3 + n * 5,
            y + 16,
            c.from.as_str(),
            if c.passed { "passed" } else { "failed" },
            esc(&c.check)
        );
    }
}

/// One attempt in a prompt's table: input without the cache reads (as the budgets count
/// it) and the cache reads apart, its cost, checks, what the agent reported failing, and
/// why it failed or what it waited for.
fn attempt_row(out: &mut String, a: &AttemptHistory) {
    let checks = a
        .checks
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                if c.passed { "✓" } else { "✗" },
                c.check.lines().next().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut why = a.error.clone().unwrap_or_default();
    if let Some(until) = &a.paused_until {
        let _ = write!(why, " · paused for a limit until {until}");
    }
    if let Some(by) = &a.by {
        let _ = write!(why, " · answered by {by}");
    }
    let _ = write!(
        out,
        "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        a.attempt,
        a.outcome.as_str(),
        a.outcome.as_str(),
        thousands(a.input_tokens.saturating_sub(a.cache_read_tokens)),
        thousands(a.cache_read_tokens),
        thousands(a.output_tokens),
        if a.estimated { "~" } else { "" },
        thousands(a.reasoning_tokens),
        crate::text::usd(a.cost_usd),
        crate::text::duration(std::time::Duration::from_millis(a.duration_ms)),
        esc(&checks),
        esc(&a.agent_errors.join("; ")),
        esc(why.trim_start_matches(" · "))
    );
}

fn prompt(out: &mut String, p: &PromptHistory) {
    let _ = write!(
        out,
        "<details class=\"prompt\"><summary><span class=\"{}\">{}</span> {} — {} · {} {} · request {} tokens</summary>",
        css_status(p.status),
        esc(&p.id),
        esc(&p.name),
        status_label(p.status),
        p.attempts.len(),
        if p.attempts.len() == 1 {
            "attempt"
        } else {
            "attempts"
        },
        thousands(p.request_tokens)
    );
    if let Some(reason) = &p.reason {
        let _ = write!(out, "<p class=\"reason\">{}</p>", esc(reason));
    }
    if !p.attempts.is_empty() {
        out.push_str("<table><tr><th>#</th><th>outcome</th><th>in</th><th>cache reads</th><th>out</th><th>reasoning</th><th>cost</th><th>time</th><th>checks</th><th>agent reported failing</th><th>why it failed</th></tr>");
        for a in &p.attempts {
            attempt_row(out, a);
        }
        out.push_str("</table>");
        if let Some(commit) = &p.commit {
            let _ = write!(out, "<p>Commit: <code>{}</code></p>", esc(commit));
        }
    }
    if !p.variables.is_empty() {
        let vars = serde_json::to_string_pretty(&p.variables).unwrap_or_default();
        let _ = write!(out, "<p>Variables produced:</p><pre>{}</pre>", esc(&vars));
    }
    if let Some(reply) = &p.reply {
        let cut = if p.reply_bytes > REPLY_SHOWN {
            format!(
                " (the first {} of {} bytes; all of it in outputs/{}.md)",
                thousands(reply.len() as u64),
                thousands(p.reply_bytes as u64),
                p.id
            )
        } else {
            String::new()
        };
        let _ = write!(out, "<p>Reply{}:</p><pre>{}</pre>", esc(&cut), esc(reply));
    }
    out.push_str("</details>\n");
}

fn css_status(status: PromptStatus) -> &'static str {
    match status {
        PromptStatus::Completed => "ok",
        PromptStatus::Failed => "permanent",
        PromptStatus::Skipped => "skipped",
        PromptStatus::Running => "unknown",
        PromptStatus::Pending => "pending",
    }
}

fn status_label(status: PromptStatus) -> &'static str {
    match status {
        PromptStatus::Running => "cut by a crash",
        PromptStatus::Pending => "not run",
        s => s.as_str(),
    }
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

/// Text as HTML (element content and attribute values).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:75em}\
h1{margin:0}.meta{color:#666}.mock{background:#fff4d6;padding:.4em .8em;border-left:4px solid #e0a000}\
.halted{color:#b00020}.criteria{list-style:none;padding:0}.criteria .pass{color:#1b7f3a}.criteria .fail{color:#b00020}\
.budgets{display:flex;flex-wrap:wrap;gap:1.5em}.phase{margin:0}figcaption{font-weight:600;margin-bottom:.2em}\
svg .room{fill:#eef}svg .used{fill:#3b6fd8}svg .over{fill:#b00020}svg .billed{fill:#e0a000}svg .limit{stroke:#222;stroke-dasharray:3 2}\
svg .frame{fill:#fafafa;stroke:#ccc}svg .spent{fill:none;stroke:#3b6fd8;stroke-width:1.5}\
svg text{font:12px ui-monospace,monospace}svg .ok,.ok{fill:#1b7f3a;color:#1b7f3a}svg .content,.content{fill:#e07000;color:#e07000}svg .conflict,.conflict{fill:#8a4fd6;color:#8a4fd6}\
svg .transient,.transient{fill:#d8b800;color:#a08800}svg .permanent,.permanent{fill:#b00020;color:#b00020}\
svg .unknown,.unknown{fill:#888;color:#666}svg .interrupted,.interrupted{fill:#bbb;color:#888}\
.skipped{fill:#777;color:#777}.pending{fill:#aaa;color:#999}svg .wait{stroke:#999;stroke-width:2;stroke-dasharray:2 1}\
svg .commit{fill:#5a3fc0}svg circle.pass{fill:#1b7f3a}svg circle.fail{fill:#b00020}\
.prompt{border-top:1px solid #eee;padding:.3em 0}summary{cursor:pointer}table{border-collapse:collapse;margin:.4em 0}\
td,th{border:1px solid #ddd;padding:.15em .5em;text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;max-height:30em;overflow:auto}\
@media print{details::details-content{content-visibility:visible;display:block}pre{max-height:none;overflow:visible}}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempts_box_is_as_long_as_it_took_against_the_longest() {
        for (ms, longest, want) in [
            (0, 1000, 8),
            (1000, 1000, 80),
            (500, 1000, 44),
            (27_000, 27_000, 80),
            (3_000, 27_000, 16),
            (5, 0, 80),
        ] {
            assert_eq!(box_width(ms, longest), want, "{ms} of {longest}");
        }
    }
}
