//! `[context] history` in a run: the turns a prompt carries are the earlier prompts'
//! text and their accepted replies (as `outputs/<id>.md` holds them), newest first within
//! `[context] max_tokens`.

use super::Session;
use crate::request::Request;

impl Session<'_> {
    /// `[context] history`: the earlier prompts' turns (their text and accepted reply),
    /// newest first within `[context] max_tokens`, on `request`.
    pub(super) fn add_history(&self, index: usize, request: &mut Request) {
        let sources = self.builder.history_sources(index);
        if sources.is_empty() {
            return;
        }
        let fold = &self.book.fold;
        let dir = &self.book.store.dir;
        let vars = &self.book.tally.vars;
        let turns = sources.into_iter().filter_map(|j| {
            let id = self.plan.prompts[j].id.as_str();
            if !fold.done.contains(id) {
                return None;
            }
            let output = fold.prompts.get(id)?.output.as_deref()?;
            let reply = std::fs::read_to_string(dir.join(output)).ok()?;
            self.builder.turn(j, vars, reply)
        });
        self.builder
            .add_history(request, turns, self.config().context.max_tokens);
    }
}
