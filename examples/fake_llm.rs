//! The tests' fake LLM server as a program, for benchmarks and for trying orchestrator
//! by hand without a model: `cargo run --release --example fake_llm -- [PORT] [--claude-code]`.
//! It prints its base URL and answers every prompt like a well-behaved model, with no
//! latency, until it is killed. With `--claude-code` it answers as the model behind Claude
//! Code instead (`ANTHROPIC_BASE_URL` pointed at it): a `Bash` tool call running each
//! prompt's `## Execute` steps, then the checkpoint.

#[path = "../tests/support/fake_llm.rs"]
#[allow(dead_code, clippy::all)]
mod fake_llm;
#[path = "../tests/support/hosts.rs"]
#[allow(dead_code, clippy::all)]
mod hosts;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = args.iter().find_map(|a| a.parse().ok()).unwrap_or(0);
    let server = fake_llm::FakeLlm::start_on(port);
    if args.iter().any(|a| a == "--claude-code") {
        server.responder(fake_llm::claude_code_model());
    }
    println!("{}", server.base_url());
    loop {
        std::thread::park();
    }
}
