//! `[context] history` in a run: the turns a prompt carries are the earlier prompts'
//! text and their accepted replies (as `outputs/<id>.md` holds them), newest first within
//! `[context] max_tokens`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::tally::Book;
use crate::plan::Plan;
use crate::request::{Request, RequestBuilder};

/// The earlier prompts' turns (their text and accepted reply) of prompt `index`, newest
/// first within `max_tokens`, on `request`.
pub(crate) fn add_history(
    builder: &RequestBuilder<'_>,
    book: &Book,
    plan: &Plan,
    (vars, max_tokens): (&BTreeMap<String, Value>, u64),
    index: usize,
    request: &mut Request,
) {
    let sources = builder.history_sources(index);
    if sources.is_empty() {
        return;
    }
    let fold = &book.fold;
    let dir = &book.store.dir;
    let turns = sources.into_iter().filter_map(|j| {
        let id = plan.prompts[j].id.as_str();
        if !fold.done.contains(id) {
            return None;
        }
        let output = fold.prompts.get(id)?.output.as_deref()?;
        let reply = std::fs::read_to_string(dir.join(output)).ok()?;
        builder.turn(j, vars, reply)
    });
    builder.add_history(request, turns, max_tokens);
}
