//! An agent build's checks (README, "Agent builds"), after a reply passed the protocol: the
//! prompt's `## Validation` blocks, front matter, phase and config checks, run in the
//! workspace one by one, each journaled; the first that fails is the attempt's content
//! failure, and its note (command, exit status, output, the prompt's `## If Failed`) goes
//! to the next attempt.

use super::Session;
use crate::error::Result;
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
    ) -> Result<Option<String>> {
        let checks = match verify::checks(
            self.ctx.config,
            self.plan,
            index,
            sent,
            &self.book.tally.vars,
        ) {
            Ok(checks) => checks,
            Err(why) => return Ok(Some(why)),
        };
        let dir = self
            .workspace
            .as_ref()
            .map_or(self.ctx.config_dir, |ws| ws.dir())
            .to_path_buf();
        let key_env = self.ctx.config.llm.api_key_env().to_string();
        let timeout = self.ctx.config.verify.timeout;
        let hidden = [key_env.as_str()];
        for check in checks {
            let checked = tokio::select! {
                checked = verify::run(&check, &dir, timeout, &hidden) => checked,
                () = self.interrupt.wait() => return self.interrupted(),
            };
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
                from: check.from.as_str().to_string(),
                check: check.script.clone(),
                passed: checked.passed,
                exit_code: checked.exit_code,
                duration_ms: checked.duration_ms,
                output: checked.output.clone(),
            }])?;
            if !checked.passed {
                let advice = crate::checkpoint::section(sent, "if failed").map(|r| &sent[r]);
                return Ok(Some(verify::failure_note(&check, &checked, advice)));
            }
        }
        Ok(None)
    }
}
