//! The fake server itself answers as scripted (a check of the test tool).

use crate::support::fake_llm::{Action, FakeLlm, Piece, status};

fn post(url: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("addr")
        .to_string();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

#[test]
fn the_fake_answers_as_scripted_then_as_a_well_behaved_model() {
    let server = FakeLlm::start();
    server.script([
        status(429, "slow down", &[("retry-after", "1")]),
        Action::Respond {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: vec![Piece::Data(b"data: {}\n\n".to_vec())],
        },
    ]);
    let body = r#"{"stream": false, "messages": [{"role": "system", "content": "Prompt: 01.1-x\n{\"prompt\": \"01.1-x\", \"success\": true, \"outputs\": {\"a\":\"...\"}}"}]}"#;
    let (code, text) = post(&server.base_url(), body);
    assert_eq!(code, 429);
    assert!(text.contains("retry-after: 1"));
    let (code, text) = post(&server.base_url(), body);
    assert_eq!(code, 200);
    assert!(text.contains("data: {}"));
    let (code, text) = post(&server.base_url(), body);
    assert_eq!(code, 200);
    assert!(text.contains("a-value"), "{text}");
    assert_eq!(server.count(), 3);
    assert_eq!(server.seen()[2].prompt_name(), "01.1-x");
}
