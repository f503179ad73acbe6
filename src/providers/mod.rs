//! Providers (docs, "Providers"): one interface, `send(request) -> outcome`, over an
//! OpenAI-compatible endpoint, Anthropic's Messages API, and an agent CLI.
//!
//! A provider sends exactly once: it never retries (the runner owns the one retry layer)
//! and never decides whether a reply is good enough (the runner checks the checkpoint).
//! It classifies what went wrong — transient, permanent, quota — with what a user needs:
//! the status, the provider's message, `Retry-After`, the request id. Nothing provider-
//! specific leaks out of this module.

mod adapt;
mod agent_output;
mod anthropic;
mod call;
mod command;
mod http;
mod limits;
mod mock;
mod openai;
mod responses;
mod stream;
mod usage_limit;

use std::time::Duration;

use crate::config::{Config, ProviderKind};
use crate::error::Result;
use crate::request::Request;

pub(crate) use adapt::{Change, Learned};
pub(crate) use call::*;
pub(crate) use limits::parse_retry_after;
pub(crate) use openai::replay_sse as replay_openai_sse;
pub(crate) use responses::replay_sse as replay_responses_sse;

/// What `x-ratelimit-remaining-tokens` and `x-ratelimit-reset-tokens` ask a request to
/// wait (fuzzing).
pub(crate) fn rate_limit_wait(remaining: &str, reset: &str) -> Option<Duration> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in [
        ("x-ratelimit-remaining-tokens", remaining),
        ("x-ratelimit-reset-tokens", reset),
    ] {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    // Through the throttle, as an answer's headers go: the wait it holds.
    let throttle = limits::Throttle::default();
    throttle.observe(&headers);
    throttle.pending().map(|(wait, _)| wait)
}

/// The configured provider.
pub(crate) enum Provider {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Command(command::Command),
    Mock(mock::Mock),
}

impl Provider {
    pub(crate) fn from_config(config: &Config) -> Result<Provider> {
        let key_env = config.llm.api_key_env().to_string();
        Ok(match config.llm.provider {
            ProviderKind::Openai | ProviderKind::OpenaiResponses => {
                Provider::OpenAi(openai::OpenAi::new(
                    http::Http::new(config, key_env)?,
                    config,
                    config.llm.provider == ProviderKind::OpenaiResponses,
                ))
            }
            ProviderKind::Anthropic => Provider::Anthropic(anthropic::Anthropic::new(
                http::Http::new(config, key_env)?,
                config,
            )),
            ProviderKind::Command => Provider::Command(command::Command::new(config, key_env)),
            ProviderKind::Mock => Provider::Mock(mock::Mock::new(config.mock.latency)),
        })
    }

    /// Sends one request asking for at most `max_tokens` output tokens.
    pub(crate) async fn send(
        &self,
        request: &Request,
        max_tokens: u32,
        call: &Call<'_>,
        progress: OnUpdate<'_>,
    ) -> Sent {
        match self {
            Provider::OpenAi(p) => p.send(request, max_tokens, progress).await,
            Provider::Anthropic(p) => p.send(request, max_tokens, progress).await,
            Provider::Command(p) => p.send(request, max_tokens, call, progress).await,
            Provider::Mock(p) => p.send(request, progress).await,
        }
    }

    /// The embedded mock model: its sessions are kept apart from real ones.
    pub(crate) fn is_mock(&self) -> bool {
        matches!(self, Provider::Mock(_))
    }

    /// The prompts (plan indices) the mock answers with a failure.
    pub(crate) fn mock_failures(&mut self, prompts: std::collections::HashSet<usize>) {
        if let Provider::Mock(m) = self {
            m.fail(prompts);
        }
    }

    /// Whether `max_tokens` is honoured: an agent CLI cannot be capped mid-call.
    pub(crate) fn caps_output(&self) -> bool {
        !matches!(self, Provider::Command(_))
    }

    /// Asks the endpoint to count `request`'s input with its own tokenizer, where it can
    /// for free (Anthropic's `count_tokens`).
    pub(crate) async fn count(&self, request: &Request) -> Count {
        match self {
            Provider::Anthropic(p) => p.count(request).await,
            Provider::OpenAi(_) | Provider::Command(_) | Provider::Mock(_) => Count::Unsupported,
        }
    }

    /// The settings the endpoint refused since the last call, as changed (for the journal).
    pub(crate) fn learned(&self) -> Vec<Learned> {
        match self {
            Provider::OpenAi(p) => p.adapt.take(),
            Provider::Anthropic(_) | Provider::Command(_) | Provider::Mock(_) => Vec::new(),
        }
    }

    /// A setting an earlier run of the session learned (from the journal).
    pub(crate) fn adopt(&self, change: Change) {
        match self {
            Provider::OpenAi(p) => p.adapt.adopt(change),
            Provider::Anthropic(_) | Provider::Command(_) | Provider::Mock(_) => {}
        }
    }

    /// Whether the tokenizer counts the input exactly as the endpoint does: tiktoken for
    /// a model of OpenAI's on chat completions (the Responses API's framing is not
    /// published, so it is calibrated like any other endpoint).
    pub(crate) fn counts_exactly(&self, model: &str) -> bool {
        matches!(self, Provider::OpenAi(p) if !p.speaks_responses())
            && crate::tokens::Encoding::knows(model)
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Provider::OpenAi(p) if p.speaks_responses() => {
                format!("openai-responses at {}", p.url())
            }
            Provider::OpenAi(p) => format!("openai at {}", p.url()),
            Provider::Anthropic(p) => format!("anthropic at {}", p.url()),
            Provider::Command(p) => format!("command {}", p.program()),
            Provider::Mock(_) => "the mock model (nothing is sent)".to_string(),
        }
    }
}
