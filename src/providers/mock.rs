//! `provider = "mock"` (or `run --mock`): an embedded model for a first run with no server,
//! after promptfoo's `echo` and LiteLLM's `mock_response`. It answers every prompt with the
//! prompt's own `## Checkpoint` example block (as sent, placeholders rendered), so that
//! variables flow and a whole build runs offline; `[mock] latency` paces it (streamed in
//! pieces, to watch the bars) and `[mock] fail` lists prompts it answers with
//! `"success": false`, to see a failure and a `rerun`. It sends nothing and reports no
//! usage: the tokenizer counts, marked estimated.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::call::{Finish, OnUpdate, Reply, Sent, Update};
use crate::checkpoint;
use crate::request::Request;

pub(crate) struct Mock {
    latency: Duration,
    /// Prompts (plan indices) answered with a failure.
    fail: HashSet<usize>,
}

impl Mock {
    pub(crate) fn new(latency: Duration) -> Mock {
        Mock {
            latency,
            fail: HashSet::new(),
        }
    }

    /// The prompts to answer with a failure (the runner resolves `[mock] fail`).
    pub(crate) fn fail(&mut self, prompts: HashSet<usize>) {
        self.fail = prompts;
    }

    pub(crate) async fn send(&self, request: &Request, progress: OnUpdate<'_>) -> Sent {
        let text = if self.fail.contains(&request.prompt) {
            failing_reply(request)
        } else {
            reply(request)
        };
        // About twenty pieces over the latency, so that a progress bar moves.
        let pieces = 20u64;
        for n in 1..=pieces {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency / 20).await;
            }
            progress(Update::Streamed(n));
        }
        Ok(Reply {
            text,
            finish: Finish::Stop,
            usage: None,
            request_id: Some("mock".into()),
            cost_usd: Some(0.0),
            agent_errors: Vec::new(),
        })
    }
}

/// The prompt's `## Checkpoint` example, marked a success for this prompt; a block with
/// every declared output when the prompt shows none.
pub(crate) fn reply(request: &Request) -> String {
    let sent = request.prompt_text();
    let example = checkpoint::section(sent, "checkpoint").and_then(|range| {
        let (blocks, _) = checkpoint::outline(&sent[range]);
        blocks
            .iter()
            .filter(|b| b.is_json())
            .find_map(|b| serde_json::from_str::<Value>(b.content.trim()).ok())
            .filter(Value::is_object)
    });
    let block = match example {
        Some(mut v) => {
            if v.get("checkpoint").is_none() {
                v["prompt"] = json!(request.name);
                v["success"] = json!(true);
            }
            v
        }
        None => {
            let outputs: Map<String, Value> = request
                .outputs
                .iter()
                .map(|k| (k.clone(), json!("mock")))
                .collect();
            json!({"prompt": request.name, "success": true, "outputs": outputs})
        }
    };
    format!(
        "Mock reply for {}: the prompt's own checkpoint example (nothing was sent to a model).\n\n```json\n{}\n```\n",
        request.name,
        serde_json::to_string_pretty(&block).unwrap_or_else(|_| block.to_string())
    )
}

fn failing_reply(request: &Request) -> String {
    let block = json!({"prompt": request.name, "success": false, "outputs": {
        "error": "the mock fails this prompt ([mock] fail lists it); the next run or rerun of it succeeds"
    }});
    format!(
        "Mock failure for {}.\n\n```json\n{block}\n```\n",
        request.name
    )
}
