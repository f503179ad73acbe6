//! The tests' fake LLM server as a program, for benchmarks and for trying orchestrator
//! by hand without a model: `cargo run --release --example fake_llm -- [PORT]`.
//! It prints its base URL and answers every prompt like a well-behaved model, with no
//! latency, until it is killed.

#[path = "../tests/support/fake_llm.rs"]
#[allow(dead_code, clippy::all)]
mod fake_llm;

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let server = fake_llm::FakeLlm::start_on(port);
    println!("{}", server.base_url());
    loop {
        std::thread::park();
    }
}
