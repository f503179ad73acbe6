//! How a run looks as it goes: `indicatif` bars on a terminal (prompts done of total with
//! the phase, the current prompt's streamed tokens and elapsed time), one plain line per
//! event elsewhere, or with `--json` one JSON event per line on stdout. Warnings and errors
//! go to stderr in every mode. This is the runner's [`Observer`]; the runner knows none of
//! it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::budget::Ledger;
use crate::documents::RunEventDoc;
use crate::plan::Prompt;
use crate::printer::{Paint, Printer, clean, clean_json, paint, stderr};
use crate::runner::{Observer, RunEvent};
use crate::text::duration as show_duration;
use crate::text::{plural, thousands};

enum Mode {
    Json,
    Terminal(Bars),
    Plain,
}

struct Bars {
    multi: MultiProgress,
    main: ProgressBar,
    /// A line per prompt in flight (`run --jobs`), above the overall bar.
    lanes: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Bars {
    /// `prompt`'s line, made when its first attempt starts.
    fn lane(&self, prompt: &Prompt, f: impl FnOnce(&ProgressBar)) {
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        let bar = lanes.entry(prompt.id.to_string()).or_insert_with(|| {
            let bar = self
                .multi
                .insert_before(&self.main, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        f(bar);
    }

    /// `prompt` is over: its line goes.
    fn end_lane(&self, prompt: &Prompt) {
        if let Some(bar) = self
            .lanes
            .lock()
            .ok()
            .and_then(|mut l| l.remove(prompt.id.as_str()))
        {
            bar.finish_and_clear();
        }
    }

    fn clear(&self) {
        if let Ok(mut lanes) = self.lanes.lock() {
            for (_, bar) in std::mem::take(&mut *lanes) {
                bar.finish_and_clear();
            }
        }
        self.main.finish_and_clear();
        let _ = self.multi.clear();
    }
}

pub(crate) struct Progress {
    mode: Mode,
    color: bool,
    quiet: bool,
    verbose: u8,
    total: usize,
}

impl Progress {
    pub(crate) fn new(output: Printer, total: usize) -> Progress {
        let mode = if output.json {
            Mode::Json
        } else if output.terminal && !output.quiet {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let main = multi.add(ProgressBar::new(total as u64));
            main.set_style(
                ProgressStyle::with_template(if output.color {
                    "{prefix:>12.bold} [{bar:30.cyan}] {pos}/{len} prompts {msg}"
                } else {
                    "{prefix:>12} [{bar:30}] {pos}/{len} prompts {msg}"
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            Mode::Terminal(Bars {
                multi,
                main,
                lanes: Mutex::new(BTreeMap::new()),
            })
        } else {
            Mode::Plain
        };
        Progress {
            mode,
            color: output.color,
            quiet: output.quiet,
            verbose: output.verbose,
            total,
        }
    }

    fn emit(&self, event: &RunEventDoc) {
        let line = serde_json::to_string(event).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", clean_json(&line));
        let _ = out.flush();
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let text = &*clean(text);
        match &self.mode {
            Mode::Terminal(bars) => {
                let _ = bars.multi.println(text);
            }
            Mode::Plain => stderr(text),
            Mode::Json => {}
        }
    }

    fn stderr(&self, text: &str) {
        match &self.mode {
            Mode::Terminal(bars) => bars.multi.suspend(|| stderr(text)),
            _ => stderr(text),
        }
    }

    fn warn(&self, message: &str) {
        if !self.quiet {
            let word = paint("warning:", Paint::Warning, self.color);
            self.stderr(&format!("{word} {}", clean(message)));
        }
    }

    /// Detail for `-v`: what is sent and what came back (never the key).
    fn detail(&self, message: &str) {
        if self.verbose > 0 && !self.quiet {
            self.stderr(&format!("  {}", clean(message)));
        }
    }

    fn note(&self, message: &str) {
        if !self.quiet {
            let word = paint("note:", Paint::Note, self.color);
            self.stderr(&format!("{word} {}", clean(message)));
        }
    }

    fn started(&self, session_id: &str, todo: usize, done: usize) {
        match &self.mode {
            Mode::Json => self.emit(&RunEventDoc::Started {
                session_id: session_id.to_string(),
                prompts: self.total,
                to_run: todo,
                done,
            }),
            Mode::Terminal(bars) => bars.main.set_position(done as u64),
            Mode::Plain => {}
        }
        self.line(&format!(
            "session {session_id}: {done}/{} prompts completed, {todo} to run",
            self.total
        ));
    }

    fn attempt(&self, prompt: &Prompt, attempt: u32, input: u64, max_tokens: u32) {
        match &self.mode {
            Mode::Json => self.emit(&RunEventDoc::Attempt {
                id: prompt.id.to_string(),
                name: prompt.name.clone(),
                attempt,
                input_tokens: input,
                output_tokens: 0,
                estimated: true,
                max_tokens,
            }),
            Mode::Terminal(bars) => bars.lane(prompt, |bar| {
                bar.set_prefix(format!("{} (attempt {attempt})", clean(&prompt.name)));
                bar.set_message(format!("sending {} tokens", thousands(input)));
                bar.reset_elapsed();
            }),
            Mode::Plain => {}
        }
    }

    /// A reply streaming in: its prompt's line shows how much.
    fn streamed(&self, prompt: &Prompt, n: u64) {
        if let Mode::Terminal(bars) = &self.mode {
            bars.lane(prompt, |bar| {
                bar.set_message(format!("~{n} tokens streamed"))
            });
        }
    }

    /// Attempt `next` follows in `delay`; `last` is what the failed attempt counted as
    /// (input, output, estimated).
    fn retry(
        &self,
        prompt: &Prompt,
        next: u32,
        delay: Duration,
        reason: &str,
        last: (u64, u64, bool),
    ) {
        if let Mode::Json = self.mode {
            self.emit(&RunEventDoc::Retry {
                id: prompt.id.to_string(),
                attempt: next,
                delay_ms: crate::text::millis(delay),
                reason: reason.to_string(),
                input_tokens: last.0,
                output_tokens: last.1,
                estimated: last.2,
            });
        }
        self.line(&format!(
            "{}: retry {next} in {}: {reason}",
            prompt.name,
            show_duration(delay)
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn completed(
        &self,
        prompt: &Prompt,
        attempt: u32,
        input: u64,
        output: u64,
        estimated: bool,
        ms: u64,
        done: usize,
    ) {
        match &self.mode {
            Mode::Json => self.emit(&RunEventDoc::Completed {
                id: prompt.id.to_string(),
                name: prompt.name.clone(),
                attempt,
                input_tokens: input,
                output_tokens: output,
                estimated,
                duration_ms: ms,
            }),
            Mode::Terminal(bars) => {
                bars.end_lane(prompt);
                bars.main.set_position(done as u64);
            }
            Mode::Plain => {}
        }
        self.line(&format!(
            "[{done}/{}] {}: completed (in {}, out {}{}) in {:.1}s",
            self.total,
            prompt.name,
            thousands(input),
            thousands(output),
            if estimated { ", estimated" } else { "" },
            ms as f64 / 1000.0
        ));
    }

    fn phase(&self, name: &str) {
        if let Mode::Terminal(bars) = &self.mode {
            bars.main.set_prefix(clean(name).into_owned());
        }
    }

    /// The prompt failed: `attempt` was its last, `tokens` (in, out) what it spent in all.
    fn failed(
        &self,
        prompt: &Prompt,
        reason: &str,
        attempt: u32,
        tokens: (u64, u64),
        estimated: bool,
    ) {
        if let Mode::Json = self.mode {
            self.emit(&RunEventDoc::Failed {
                id: prompt.id.to_string(),
                name: prompt.name.clone(),
                attempt,
                error: reason.to_string(),
                input_tokens: tokens.0,
                output_tokens: tokens.1,
                estimated,
            });
        }
        if let Mode::Terminal(bars) = &self.mode {
            bars.end_lane(prompt);
        }
        // In halt mode the run's final error says it again; here it is one line of the log.
        self.line(&format!("{}: failed: {reason}", prompt.name));
    }

    fn skipped(&self, prompt: &Prompt, reason: &str) {
        if let Mode::Json = self.mode {
            self.emit(&RunEventDoc::Skipped {
                id: prompt.id.to_string(),
                name: prompt.name.clone(),
                reason: reason.to_string(),
            });
        }
        self.line(&format!("{}: skipped: {reason}", prompt.name));
    }

    fn halted(&self, reason: &str, code: i32) {
        if let Mode::Json = self.mode {
            self.emit(&RunEventDoc::Halted {
                reason: reason.to_string(),
                code,
            });
        }
        self.clear_bars();
    }

    /// The bars are taken off the screen before the last words, so that nothing is drawn
    /// below them.
    fn clear_bars(&self) {
        if let Mode::Terminal(bars) = &self.mode {
            bars.clear();
        }
    }

    fn finished(&self, done: usize, ledger: &Ledger, failed: &[String], skipped: &[String]) {
        if let Mode::Json = self.mode {
            self.emit(&RunEventDoc::Finished {
                done,
                prompts: self.total,
                failed: failed.to_vec(),
                skipped: skipped.to_vec(),
                used: ledger.total.used,
                remaining: ledger.total.remaining,
                possibly_billed: ledger.total.possibly_billed,
                estimated: ledger.total.estimated,
            });
        }
        self.clear_bars();
        if !self.quiet && !matches!(self.mode, Mode::Json) {
            stderr(&format!(
                "{done}/{} {} completed; {} tokens used, {} left of the total budget",
                self.total,
                plural(self.total, "prompt"),
                thousands(ledger.total.used),
                thousands(ledger.total.remaining)
            ));
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: RunEvent<'_>) {
        match event {
            RunEvent::Warning(m) => self.warn(m),
            RunEvent::Note(m) => self.note(m),
            RunEvent::Detail(m) => self.detail(m),
            RunEvent::Started {
                session_id,
                to_run,
                completed,
            } => self.started(session_id, to_run, completed),
            RunEvent::Attempt {
                prompt,
                phase,
                attempt,
                input_tokens,
                max_tokens,
            } => {
                self.phase(phase);
                self.attempt(prompt, attempt, input_tokens, max_tokens);
            }
            RunEvent::Streamed { prompt, chunks } => self.streamed(prompt, chunks),
            RunEvent::Retry {
                prompt,
                attempt,
                delay,
                reason,
                input_tokens,
                output_tokens,
                estimated,
            } => self.retry(
                prompt,
                attempt,
                delay,
                reason,
                (input_tokens, output_tokens, estimated),
            ),
            RunEvent::Completed {
                prompt,
                attempt,
                input_tokens,
                output_tokens,
                estimated,
                duration_ms,
                completed,
            } => self.completed(
                prompt,
                attempt,
                input_tokens,
                output_tokens,
                estimated,
                duration_ms,
                completed,
            ),
            RunEvent::Failed {
                prompt,
                reason,
                attempt,
                input_tokens,
                output_tokens,
                estimated,
            } => self.failed(
                prompt,
                reason,
                attempt,
                (input_tokens, output_tokens),
                estimated,
            ),
            RunEvent::Skipped { prompt, reason } => self.skipped(prompt, reason),
            RunEvent::Halted { reason, code } => self.halted(reason, code),
            RunEvent::Finished {
                completed,
                ledger,
                failed,
                skipped,
            } => self.finished(completed, ledger, failed, skipped),
        }
    }
}
