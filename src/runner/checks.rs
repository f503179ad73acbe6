//! An agent build's checks (docs, "Agent builds"), after a reply passed the protocol: the
//! prompt's `## Validation` blocks, front matter, phase and config checks, run in the
//! workspace one by one, each journaled; the first that fails is the attempt's content
//! failure, and its note (command, exit status, output, the prompt's `## If Failed`) goes
//! to the next attempt.

use super::{RunEvent, Session};
use crate::documents::CheckSource;
use crate::error::Result;
use crate::process::Mark;
use crate::state::Event;
use crate::verify;

impl Session<'_> {
    /// The prompt's checks, after its reply passed the protocol: each journaled; the first
    /// that fails is the attempt's content failure (`Some`: the note for the next attempt).
    pub(super) async fn verify(
        &mut self,
        index: usize,
        attempt: u32,
        sent: &str,
        mark: &Mark,
    ) -> Result<Option<String>> {
        let checks = match verify::checks(self.ctx.config, self.plan, index, &self.book.tally.vars)
        {
            Ok(checks) => checks,
            Err(why) => return Ok(Some(why)),
        };
        let dir = match self.workspace.as_ref().map(|ws| ws.dir()) {
            Some(ws) => ws.to_path_buf(),
            // Without a workspace, checks run beside the config ("" is the current folder).
            None if self.ctx.config_dir.as_os_str().is_empty() => std::path::PathBuf::from("."),
            None => self.ctx.config_dir.to_path_buf(),
        };
        let timeout = self.ctx.config.verify.timeout;
        let mut env = verify::CheckEnv::of(self.ctx.config);
        env.mark = Some(mark);
        for bound in checks {
            let checked = tokio::select! {
                checked = verify::run(&bound, &dir, timeout, &env) => checked,
                () = self.interrupt.wait() => return self.interrupted(),
            };
            let check = &bound.check;
            let id = self.plan.prompts[index].id.to_string();
            self.detail(&format!(
                "{id} attempt {attempt}: check ({}) {}: {}",
                check.from.as_str(),
                if checked.passed { "passed" } else { "failed" },
                check.script.lines().next().unwrap_or("")
            ));
            self.book.journal(vec![Event::Verified {
                id,
                attempt,
                from: check.from,
                check: check.script.clone(),
                passed: checked.passed,
                exit_code: checked.exit_code,
                duration_ms: checked.duration_ms,
                output: checked.output.clone(),
            }])?;
            if !checked.passed {
                let advice = crate::checkpoint::section(sent, "if failed").map(|r| &sent[r]);
                return Ok(Some(verify::failure_note(&bound, &checked, advice)));
            }
        }
        Ok(None)
    }

    /// A new session's first run: how many shell checks will run, from which files, so
    /// that nothing runs that the user has not been told of (`plan` shows them all).
    pub(super) fn tell_checks(&self) {
        let mut count = 0;
        let mut files: Vec<String> = Vec::new();
        for (i, p) in self.plan.prompts.iter().enumerate() {
            for check in verify::planned(self.config(), self.plan, i) {
                count += 1;
                let file = match check.from {
                    CheckSource::Validation | CheckSource::FrontMatter => {
                        p.path.display().to_string()
                    }
                    CheckSource::Phase | CheckSource::Config => {
                        self.ctx.config_file.display().to_string()
                    }
                };
                if !files.contains(&file) {
                    files.push(file);
                }
            }
        }
        if count > 0 {
            let shown: Vec<&str> = files.iter().take(5).map(String::as_str).collect();
            let more = files.len().saturating_sub(5);
            self.tell(RunEvent::Note(&format!(
                "{count} shell {} will run after the replies, from {}{}; `orchestrator plan` shows every line",
                if count == 1 { "check" } else { "checks" },
                shown.join(", "),
                if more > 0 { format!(" and {more} more files") } else { String::new() }
            )));
        }
    }
}
