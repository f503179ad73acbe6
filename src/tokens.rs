//! Token counting with tiktoken's encodings (the `tiktoken-rs` crate).
//!
//! Counts are `encode_ordinary` lengths, as Python's `tiktoken` gives them: text such as
//! `<|endoftext|>` is counted as ordinary text, never as a special token. Each encoding is
//! loaded once per process (the crate's singletons); loading cl100k takes tens of
//! milliseconds, so it is done lazily, only by commands that count.

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Encoding {
    #[serde(rename = "cl100k_base")]
    Cl100kBase,
    #[serde(rename = "o200k_base")]
    O200kBase,
    #[serde(rename = "o200k_harmony")]
    O200kHarmony,
    #[serde(rename = "p50k_base")]
    P50kBase,
    #[serde(rename = "p50k_edit")]
    P50kEdit,
    #[serde(rename = "r50k_base")]
    R50kBase,
}

impl Encoding {
    pub(crate) const ALL: [Encoding; 6] = [
        Encoding::Cl100kBase,
        Encoding::O200kBase,
        Encoding::O200kHarmony,
        Encoding::P50kBase,
        Encoding::P50kEdit,
        Encoding::R50kBase,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
            Encoding::O200kHarmony => "o200k_harmony",
            Encoding::P50kBase => "p50k_base",
            Encoding::P50kEdit => "p50k_edit",
            Encoding::R50kBase => "r50k_base",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The encoding tiktoken uses for `model`, `cl100k_base` when the model is unknown
    /// (Claude, Llama and other non-OpenAI models: the count is then an approximation).
    pub(crate) fn for_model(model: &str) -> Encoding {
        use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
        match get_tokenizer(model) {
            Some(Tokenizer::O200kBase) => Encoding::O200kBase,
            Some(Tokenizer::O200kHarmony) => Encoding::O200kHarmony,
            Some(Tokenizer::P50kBase) => Encoding::P50kBase,
            Some(Tokenizer::P50kEdit) => Encoding::P50kEdit,
            Some(Tokenizer::R50kBase) | Some(Tokenizer::Gpt2) => Encoding::R50kBase,
            Some(Tokenizer::Cl100kBase) | None => Encoding::Cl100kBase,
        }
    }

    /// Whether tiktoken knows `model`: then its count is the model's own, not an
    /// approximation of another tokenizer.
    pub(crate) fn knows(model: &str) -> bool {
        tiktoken_rs::tokenizer::get_tokenizer(model).is_some()
    }

    fn bpe(self) -> &'static CoreBPE {
        use tiktoken_rs::*;
        match self {
            Encoding::Cl100kBase => cl100k_base_singleton(),
            Encoding::O200kBase => o200k_base_singleton(),
            Encoding::O200kHarmony => o200k_harmony_singleton(),
            Encoding::P50kBase => p50k_base_singleton(),
            Encoding::P50kEdit => p50k_edit_singleton(),
            Encoding::R50kBase => r50k_base_singleton(),
        }
    }

    /// Tokens in `text`, special-token text counted as ordinary text.
    pub(crate) fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe().encode_ordinary(text).len() as u64
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Tokens a chat request adds around its messages: 3 per message and 3 to prime the reply,
/// as in OpenAI's `num_tokens_from_messages` recipe. Endpoints that report usage are exact;
/// this only makes the estimate of a two-message request match what they report.
pub(crate) const CHAT_OVERHEAD_PER_MESSAGE: u64 = 3;
pub(crate) const CHAT_OVERHEAD_REPLY: u64 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_token_text_counts_as_text() {
        // As Python: len(enc.encode_ordinary("<|endoftext|>")) == 7 for cl100k_base.
        assert_eq!(Encoding::Cl100kBase.count("<|endoftext|>"), 7);
    }

    #[test]
    fn known_counts() {
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count(""), 0);
    }

    #[test]
    fn model_names_choose_encodings() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4"), Encoding::Cl100kBase);
        assert_eq!(
            Encoding::for_model("claude-3-5-haiku"),
            Encoding::Cl100kBase
        );
        assert_eq!(Encoding::for_model("llama3"), Encoding::Cl100kBase);
    }
}
