//! The floor of orchestrator's memory, for the benchmark: a program that only loads a
//! tiktoken encoding with `tiktoken-rs` (the design card's tokenizer) and counts one
//! string. `tokenizer_floor cl100k_base|o200k_base` prints the count; its peak RSS is what
//! any program using that encoding pays before doing anything else.

fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cl100k_base".into());
    let bpe = match name.as_str() {
        "o200k_base" => tiktoken_rs::o200k_base_singleton(),
        _ => tiktoken_rs::cl100k_base_singleton(),
    };
    println!("{}", bpe.encode_ordinary("hello world").len());
}
