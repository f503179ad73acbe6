//! What an endpoint taught the runner during a call, and what the user must hear of it:
//! settings it refused (journaled, so that a resumed run starts with them), a reply
//! longer than the cap sent, no input counted, and, for `-v`, what came back.

use super::{Session, accounting};
use crate::error::Result;
use crate::providers::Reply;
use crate::state::Event;

impl Session<'_> {
    /// Journals the settings the endpoint refused during the last call, as changed, each
    /// with a warning.
    pub(super) fn journal_learned(&mut self, id: &str) -> Result<()> {
        for learned in self.provider.learned() {
            self.warn(&format!(
                "{id}: the endpoint refused a setting, so {} is now {} for this session (it said: {})",
                learned.setting, learned.value, learned.reason
            ));
            self.book.journal(vec![Event::Learned {
                setting: learned.setting,
                value: learned.value,
                reason: learned.reason,
            }])?;
        }
        Ok(())
    }

    /// The warnings one reply's counts call for, shown and to be journaled with it.
    pub(super) fn counts_told(
        &mut self,
        id: &str,
        counted: &accounting::Counted,
        sent: u64,
        max_tokens: u32,
    ) -> Vec<Event> {
        let cap = self.provider.caps_output().then_some(max_tokens);
        let said = accounting::warnings(counted, sent, cap, self.zero_input_told);
        self.zero_input_told |= counted.input == 0 && !counted.estimated;
        said.into_iter()
            .map(|message| {
                self.warn(&format!("{id}: {message}"));
                Event::Warning {
                    id: Some(id.to_string()),
                    message,
                }
            })
            .collect()
    }
}

/// For `-v`: what came back.
pub(super) fn reply_detail(
    id: &str,
    attempt: u32,
    reply: &Reply,
    counted: &accounting::Counted,
    duration_ms: u64,
) -> String {
    format!(
        "{id} attempt {attempt}: {} after {duration_ms} ms, finish {}, {} in / {} out{}{}{}",
        if reply.usage.is_some() {
            "reply"
        } else {
            "reply without usage"
        },
        reply.finish.as_str(),
        counted.input,
        counted.output,
        if counted.reasoning > 0 {
            format!(" ({} reasoning)", counted.reasoning)
        } else {
            String::new()
        },
        if counted.estimated {
            " (estimated)"
        } else {
            ""
        },
        reply
            .request_id
            .as_deref()
            .map(|r| format!(", request id {r}"))
            .unwrap_or_default(),
    )
}
