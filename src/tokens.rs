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

    /// Tokens in `text`, special-token text counted as ordinary text. A long text is
    /// counted a piece of at most [`PIECE`] bytes at a time, cut where every encoding
    /// starts a new token anyway (so the count is the same): BPE on one run of megabytes
    /// without a space (a misbehaving server's reply) would take time and memory
    /// quadratic in its length.
    pub(crate) fn count(self, text: &str) -> u64 {
        let bpe = self.bpe();
        let mut total = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let cut = cut_point(rest, PIECE);
            total += bpe.encode_ordinary(&rest[..cut]).len() as u64;
            rest = &rest[cut..];
        }
        total
    }
}

/// The most bytes BPE is run on at once.
const PIECE: usize = 64 * 1024;

/// Where to cut `text` so that the first part is at most `max` bytes: all of it if it
/// fits; else before the last single space between two non-space characters in the second
/// half (every encoding's pre-tokenizer starts a piece there, so the count does not
/// change); else, for a run that long with no such space (no language, a server's
/// garbage), at a character boundary, the count then an estimate.
fn cut_point(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let end = text.floor_char_boundary(max);
    let half = text.floor_char_boundary(end / 2);
    let word_start = text[half..end]
        .char_indices()
        .rev()
        .map(|(i, c)| (i + half, c))
        .find(|&(i, c)| {
            c == ' '
                && text[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|p| !p.is_whitespace())
                && text[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| !n.is_whitespace())
        })
        .map(|(i, _)| i);
    match word_start {
        Some(i) if i > 0 => i,
        _ if end > 0 => end,
        // `max` is inside the first character.
        _ => text.ceil_char_boundary(1),
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
    fn a_long_text_counts_the_same_cut_into_pieces() {
        // Words, double spaces, newlines, tabs, numbers, punctuation and Japanese, well
        // past a piece: the same count as BPE on the whole.
        let paragraph = "The quick brown fox  jumps over 1234567 lazy dogs.\n\n\tIt's fine: x = y  + 2; 日本語のテキスト、そして English.  \n";
        let text = paragraph.repeat(3 * PIECE / paragraph.len());
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let whole = enc.bpe().encode_ordinary(&text).len() as u64;
            assert_eq!(enc.count(&text), whole, "{enc}");
        }
    }

    #[test]
    fn a_run_of_megabytes_without_a_space_is_counted_a_piece_at_a_time() {
        let run = "x".repeat(4 * PIECE + 3);
        let count = Encoding::O200kBase.count(&run);
        assert!(count > 0 && count <= run.len() as u64, "{count}");
        // Cut at character boundaries, never inside one.
        let wide = "語".repeat(PIECE);
        assert!(Encoding::O200kBase.count(&wide) > 0);
    }

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
