//! The tests' fake LLM server as a program, for benchmarks and for trying orchestrator
//! by hand without a model:
//! `cargo run --release --example fake_llm -- [PORT] [--claude-code | --huge-reply MB]`.
//! It prints its base URL and answers every prompt like a well-behaved model, with no
//! latency, until it is killed. With `--claude-code` it answers as the model behind Claude
//! Code instead (`ANTHROPIC_BASE_URL` pointed at it): a `Bash` tool call running each
//! prompt's `## Execute` steps, then the checkpoint. With `--huge-reply MB` every reply is
//! one streamed event of that many megabytes (the harness measures memory against it).
//! With `--latency MS` every default answer waits that long (a model that takes time).

#[path = "../tests/support/fake_llm.rs"]
#[allow(dead_code, clippy::all)]
mod fake_llm;
#[path = "../tests/support/hosts.rs"]
#[allow(dead_code, clippy::all)]
mod hosts;

fn main() {
    let (mut port, mut huge, mut claude_code, mut latency) = (0u16, None, false, 0u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--claude-code" => claude_code = true,
            "--huge-reply" => huge = args.next().and_then(|mb| mb.parse::<usize>().ok()),
            "--latency" => latency = args.next().and_then(|ms| ms.parse().ok()).unwrap_or(0),
            other => port = other.parse().unwrap_or(0),
        }
    }
    let server = fake_llm::FakeLlm::start_on(port);
    server.latency(std::time::Duration::from_millis(latency));
    if claude_code {
        server.responder(fake_llm::claude_code_model());
    }
    if let Some(mb) = huge {
        // As the tests' 50 MB reply: events of 1,000 characters each.
        let event = format!(
            "data: {{\"choices\": [{{\"delta\": {{\"content\": \"{}\"}}}}]}}\n\n",
            "x".repeat(1000)
        );
        let body = event.repeat(mb * 1024 * 1024 / event.len()).into_bytes();
        server.responder(move |_| fake_llm::sse(vec![fake_llm::Piece::Data(body.clone())]));
    }
    println!("{}", server.base_url());
    loop {
        std::thread::park();
    }
}
