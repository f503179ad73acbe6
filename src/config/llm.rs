//! `[llm]`: the endpoint or agent, the model, and how requests go.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::check_url;
use super::values::duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProviderKind {
    Openai,
    /// OpenAI's Responses API (`POST /responses`), for models that speak nothing else.
    #[serde(rename = "openai-responses")]
    OpenaiResponses,
    Anthropic,
    Command,
    /// The embedded model: answers with each prompt's own checkpoint example, offline.
    Mock,
}

impl ProviderKind {
    /// OpenAI's API, either shape: `OPENAI_BASE_URL` applies, and OpenAI's defaults.
    pub(crate) fn is_openai(self) -> bool {
        matches!(self, ProviderKind::Openai | ProviderKind::OpenaiResponses)
    }
}

/// Which name the output cap goes under in a chat completions request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MaxTokensParam {
    /// `max_completion_tokens` to OpenAI and Azure hosts for the models that need it (the
    /// o-series, gpt-5), `max_tokens` elsewhere; switched once if the endpoint says so.
    Auto,
    MaxTokens,
    MaxCompletionTokens,
}

/// The variables in the context recall: those the prompt's placeholders use (the default:
/// by the end of the bundled build "all" is ~90 variables, ~1,000 tokens on every request,
/// which leaves the Features phase no room for output), or every variable known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ContextVariables {
    Used,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Llm {
    pub(crate) provider: ProviderKind,
    /// Defaults per provider; `OPENAI_BASE_URL` overrides it for `openai`.
    pub(crate) base_url: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) api_key_env: Option<String>,
    pub(crate) max_tokens: u32,
    /// The name `max_tokens` is sent under (chat completions).
    pub(crate) max_tokens_param: MaxTokensParam,
    /// Unset: not sent (the model's default; reasoning models accept no other).
    pub(crate) temperature: Option<f64>,
    /// Passed through when set (`reasoning_effort`; the Responses API's `reasoning.effort`).
    pub(crate) reasoning_effort: Option<String>,
    pub(crate) stream: bool,
    /// Query parameters added to every request's URL (Azure's `api-version`).
    pub(crate) query: BTreeMap<String, String>,
    /// The header the key goes in, as it is (`api-key` for Azure); unset, the provider's
    /// own (`Authorization: Bearer`, Anthropic's `x-api-key`).
    pub(crate) api_key_header: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(crate) connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) idle_timeout: Duration,
    pub(crate) system_template: Option<PathBuf>,
    /// Which variables the context recall lists as JSON.
    pub(crate) context_variables: ContextVariables,
    pub(crate) command: Vec<String>,
    pub(crate) env: Vec<String>,
    /// The most requests in flight to this endpoint at once, whatever `run.jobs` says
    /// (a server that takes two at a time); the run lowers it further on a 429.
    pub(crate) max_concurrency: Option<u32>,
    /// The most one agent call may spend (US dollars): `{{budget_usd_left}}` is never
    /// more, so that one runaway call cannot take the whole remaining budget.
    pub(crate) max_call_usd: Option<f64>,
    /// Arguments added to the agent's command when the last accepted prompt's call
    /// reported a session (`["--resume", "{{agent_session}}"]`): the agent goes on in it.
    pub(crate) continue_session: Vec<String>,
    /// `[[llm.fallback]]`: endpoints or agents used, in order, while the ones before them
    /// are at a usage or rate limit (each a whole `[llm]` table of its own).
    pub(crate) fallback: Vec<Llm>,
}

impl Default for Llm {
    fn default() -> Self {
        Llm {
            provider: ProviderKind::Openai,
            base_url: None,
            model: None,
            api_key_env: None,
            max_tokens: 2000,
            max_tokens_param: MaxTokensParam::Auto,
            temperature: None,
            reasoning_effort: None,
            stream: true,
            query: BTreeMap::new(),
            api_key_header: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(120),
            system_template: None,
            context_variables: ContextVariables::Used,
            command: vec![
                "claude".into(),
                "-p".into(),
                "--output-format".into(),
                "json".into(),
            ],
            env: Vec::new(),
            max_concurrency: None,
            max_call_usd: None,
            continue_session: Vec::new(),
            fallback: Vec::new(),
        }
    }
}

impl Llm {
    pub(crate) fn model(&self) -> &str {
        match (&self.model, self.provider) {
            (Some(m), _) => m,
            (None, ProviderKind::Anthropic) => "claude-3-5-haiku-latest",
            (None, _) => "gpt-4o-mini",
        }
    }

    pub(crate) fn api_key_env(&self) -> &str {
        match (&self.api_key_env, self.provider) {
            (Some(k), _) => k,
            (None, ProviderKind::Anthropic) => "ANTHROPIC_API_KEY",
            (None, ProviderKind::Command) => "ANTHROPIC_API_KEY",
            (None, _) => "OPENAI_API_KEY",
        }
    }

    /// The base URL: `OPENAI_BASE_URL` (openai and openai-responses), then config, then the provider's
    /// default; checked as [`check_url`] does, the error naming where it came from.
    pub(crate) fn base_url(&self) -> std::result::Result<reqwest::Url, String> {
        if self.provider.is_openai()
            && let Ok(url) = std::env::var("OPENAI_BASE_URL")
            && !url.trim().is_empty()
        {
            return check_url(url.trim()).map_err(|e| format!("OPENAI_BASE_URL: {e}"));
        }
        let text = match (&self.base_url, self.provider) {
            (Some(u), _) => u.as_str(),
            (None, ProviderKind::Anthropic) => "https://api.anthropic.com",
            (None, _) => "https://api.openai.com/v1",
        };
        check_url(text).map_err(|e| format!("`llm.base_url`: {e}"))
    }
}
