//! An in-process fake LLM server on 127.0.0.1, for tests and benchmarks.
//!
//! It speaks raw HTTP/1.1 over tokio's TCP, so that it can misbehave exactly as scripted:
//! each request takes the next [`Action`] from the script (a status with headers, a JSON
//! body, an SSE stream written in pieces with pauses, a reset mid-stream, a connection that
//! never answers or closes after the headers). When the script is empty, a default
//! responder answers like a well-behaved model: a reply ending with a valid checkpoint
//! block for the prompt named in the system message, in OpenAI or Anthropic format by the
//! request's path, streamed or not as asked, with usage.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One piece of a response body.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Bytes, written (and flushed) as one write.
    Data(Vec<u8>),
    /// Wait before the next piece (a slow or stalling server).
    Wait(Duration),
    /// Abort the connection with a TCP reset.
    Reset,
    /// Stop writing and never close (a hung stream).
    Hang,
    /// Wait until the test opens the gate (a reply held back at a known moment).
    Gate(Gate),
}

/// A gate a test opens to let a held-back reply go on.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<tokio::sync::Notify>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets the reply waiting at this gate (or the next one to arrive) go on.
    pub fn open(&self) {
        self.0.notify_one();
    }
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// A response: status, extra headers, body pieces. A body of pieces is sent without a
    /// length and ends by closing the connection.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<Piece>,
    },
    /// Accept the request and never answer.
    Hang,
    /// Send the status line and headers, then close.
    CloseAfterHeaders,
    /// Answer as the default responder would.
    Default,
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// When the whole request had arrived.
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The system message (OpenAI's, Anthropic's or the Responses API's shape).
    pub fn system(&self) -> String {
        for key in ["system", "instructions"] {
            if let Some(s) = self.body.get(key).and_then(Value::as_str) {
                return s.to_string();
            }
        }
        message(&self.body, "system")
    }

    pub fn user(&self) -> String {
        if let Some(s) = self.body.get("input").and_then(Value::as_str) {
            return s.to_string();
        }
        message(&self.body, "user")
    }

    /// The prompt name the context recall gives (`Prompt: 01.1-python-setup`).
    pub fn prompt_name(&self) -> String {
        let system = self.system();
        system
            .lines()
            .find_map(|l| l.strip_prefix("Prompt: "))
            .unwrap_or("")
            .trim()
            .to_string()
    }

    /// The path without its query (`/v1/messages?beta=true` is `/v1/messages`).
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }

    /// Every text of the request's messages, in order (content as a string or as blocks).
    pub fn texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            match &m["content"] {
                Value::String(s) => out.push(s.clone()),
                Value::Array(blocks) => {
                    for b in blocks {
                        if let Some(s) = b["text"].as_str() {
                            out.push(s.to_string());
                        }
                        if let Some(s) = b["content"].as_str() {
                            out.push(s.to_string());
                        }
                        for inner in b["content"].as_array().into_iter().flatten() {
                            if let Some(s) = inner["text"].as_str() {
                                out.push(s.to_string());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub fn max_tokens(&self) -> u64 {
        self.body["max_tokens"].as_u64().unwrap_or(0)
    }

    /// The output cap under whichever name it was sent (`max_tokens`,
    /// `max_completion_tokens`, `max_output_tokens`), with the name.
    pub fn cap(&self) -> Option<(&'static str, u64)> {
        ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .into_iter()
            .find_map(|k| self.body[k].as_u64().map(|v| (k, v)))
    }
}

fn message(body: &Value, role: &str) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == role)
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

type Responder = dyn Fn(&Seen) -> Action + Send + Sync;

/// How the fake answers Anthropic's `count_tokens` (apart from the script: a count is not a
/// model request, and is not in [`FakeLlm::seen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountTokens {
    /// `{"input_tokens": N}`.
    Answer(u64),
    /// 404, as an endpoint without the route.
    NotFound,
}

struct Shared {
    count_tokens: CountTokens,
    /// `count_tokens` requests, in order.
    counted: Vec<Seen>,
    script: VecDeque<Action>,
    /// Scripts per prompt name, used before the general script.
    per_prompt: Vec<(String, VecDeque<Action>)>,
    seen: Vec<Seen>,
    responder: Option<Arc<Responder>>,
    latency: Duration,
    /// A server that takes this many requests at once, and refuses more with a 429.
    at_once: Option<usize>,
    in_flight: usize,
    peak_in_flight: usize,
    /// Requests refused for being over `at_once`.
    refused: usize,
}

/// The server. It runs on its own thread until dropped.
pub struct FakeLlm {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<std::sync::Condvar>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeLlm {
    pub fn start() -> FakeLlm {
        FakeLlm::start_on(0)
    }

    pub fn start_on(port: u16) -> FakeLlm {
        let shared = Arc::new(Mutex::new(Shared {
            // What the default reply reports as input.
            count_tokens: CountTokens::Answer(100),
            counted: Vec::new(),
            script: VecDeque::new(),
            per_prompt: Vec::new(),
            seen: Vec::new(),
            responder: None,
            latency: Duration::ZERO,
            at_once: None,
            in_flight: 0,
            peak_in_flight: 0,
            refused: 0,
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let for_thread = shared.clone();
        let arrived = Arc::new(std::sync::Condvar::new());
        let arrived_thread = arrived.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let serve = async {
                    loop {
                        let Ok((socket, _)) = listener.accept().await else {
                            continue;
                        };
                        // Replies go out as soon as they are written (no Nagle delay).
                        let _ = socket.set_nodelay(true);
                        tokio::spawn(connection(
                            socket,
                            for_thread.clone(),
                            arrived_thread.clone(),
                        ));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("server address");
        FakeLlm {
            addr,
            shared,
            arrived,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, for `base_url` or `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for Anthropic's base URL.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends actions for the next requests, in order.
    pub fn script(&self, actions: impl IntoIterator<Item = Action>) -> &Self {
        self.lock().script.extend(actions);
        self
    }

    /// Actions for the next requests of one prompt (by name, `02.3-name`).
    pub fn script_prompt(&self, name: &str, actions: impl IntoIterator<Item = Action>) -> &Self {
        let mut s = self.lock();
        let actions: VecDeque<Action> = actions.into_iter().collect();
        match s.per_prompt.iter_mut().find(|(n, _)| n == name) {
            Some((_, q)) => q.extend(actions),
            None => s.per_prompt.push((name.to_string(), actions)),
        }
        drop(s);
        self
    }

    /// Replaces the default responder.
    pub fn responder(&self, f: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> &Self {
        self.lock().responder = Some(Arc::new(f));
        self
    }

    /// Delay before every default answer (a model that takes time).
    pub fn latency(&self, d: Duration) -> &Self {
        self.lock().latency = d;
        self
    }

    /// A server that takes `n` requests at once: one more gets a 429 ("too many requests in
    /// flight", retry after 20 ms), as a concurrency-limited endpoint answers.
    pub fn at_once(&self, n: usize) -> &Self {
        self.lock().at_once = Some(n);
        self
    }

    /// The most requests it was answering at once.
    pub fn peak_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    /// How many requests it refused for being over [`FakeLlm::at_once`].
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    /// How `count_tokens` is answered from now on.
    pub fn count_tokens(&self, answer: CountTokens) -> &Self {
        self.lock().count_tokens = answer;
        self
    }

    /// The `count_tokens` requests seen so far.
    pub fn counted(&self) -> Vec<Seen> {
        self.lock().counted.clone()
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn count(&self) -> usize {
        self.lock().seen.len()
    }

    /// Blocks until at least `n` requests have arrived (true), or `timeout` passes (false).
    /// This is how a test waits for a moment in a run, without sleeping.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let guard = self.lock();
        let (guard, result) = self
            .arrived
            .wait_timeout_while(guard, timeout, |s| s.seen.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        drop(guard);
        !result.timed_out()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn connection(
    mut socket: TcpStream,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<std::sync::Condvar>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(seen) = read_request(&mut socket, &mut buf).await else {
            return;
        };
        if seen.method == "HEAD" {
            // A client's preconnect (Claude Code sends one): headers only, no body, which
            // would otherwise be read as the start of the next response.
            if socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        if seen.path.ends_with("/count_tokens") {
            let answer = {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                s.counted.push(seen.clone());
                s.count_tokens
            };
            let (code, body) = match answer {
                CountTokens::Answer(n) => (200, json!({"input_tokens": n})),
                CountTokens::NotFound => (
                    404,
                    json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}),
                ),
            };
            let body = vec![Piece::Data(body.to_string().into_bytes())];
            if !write_response(&mut socket, code, &[], body).await {
                return;
            }
            continue;
        }
        let (action, latency) = {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            s.seen.push(seen.clone());
            arrived.notify_all();
            let seen = &seen;
            let name = seen.prompt_name();
            let scripted = s
                .per_prompt
                .iter_mut()
                .find(|(n, _)| *n == name)
                .and_then(|(_, q)| q.pop_front())
                .or_else(|| s.script.pop_front());
            let action = match scripted {
                Some(Action::Default) | None => match &s.responder {
                    Some(r) => r(seen),
                    None => default_reply(seen),
                },
                Some(a) => a,
            };
            if s.at_once.is_some_and(|n| s.in_flight >= n) {
                s.refused += 1;
                (None, Duration::ZERO)
            } else {
                s.in_flight += 1;
                s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
                (Some(action), s.latency)
            }
        };
        let Some(action) = action else {
            let body = json!({"error": {"message": "Rate limit reached: too many requests in flight", "type": "requests", "code": "rate_limit_exceeded"}});
            let headers = [("retry-after-ms".to_string(), "20".to_string())];
            if !write_response(
                &mut socket,
                429,
                &headers,
                vec![Piece::Data(body.to_string().into_bytes())],
            )
            .await
            {
                return;
            }
            continue;
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let keep_alive = match action {
            Action::Hang => {
                std::future::pending::<()>().await;
                false
            }
            Action::CloseAfterHeaders => {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                    .await;
                false
            }
            Action::Default => unreachable!("resolved above"),
            Action::Respond {
                status,
                headers,
                body,
            } => write_response(&mut socket, status, &headers, body).await,
        };
        {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        let client_closes = seen
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !keep_alive || client_closes {
            return;
        }
    }
}

async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = req.parse(buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let method = req.method.unwrap_or("").to_string();
            let path = req.path.unwrap_or("").to_string();
            while buf.len() < head_len + len {
                let mut chunk = [0u8; 8192];
                let n = socket.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body =
                serde_json::from_slice(&buf[head_len..head_len + len]).unwrap_or(Value::Null);
            buf.drain(..head_len + len);
            return Some(Seen {
                method,
                path,
                headers,
                body,
                at: std::time::Instant::now(),
            });
        }
        let mut chunk = [0u8; 8192];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes a response; `true` if the connection can take another request.
async fn write_response(
    socket: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: Vec<Piece>,
) -> bool {
    let whole: Option<Vec<u8>> = match body.as_slice() {
        [] => Some(Vec::new()),
        [Piece::Data(d)] => Some(d.clone()),
        _ => None,
    };
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        head.push_str("content-type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &whole {
        Some(b) => head.push_str(&format!("content-length: {}\r\n\r\n", b.len())),
        None => head.push_str("connection: close\r\n\r\n"),
    }
    if let Some(b) = whole {
        // Head and body in one write, as a real server's buffered writer sends them.
        let mut all = head.into_bytes();
        all.extend_from_slice(&b);
        return socket.write_all(&all).await.is_ok() && socket.flush().await.is_ok();
    }
    if socket.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for piece in body {
        match piece {
            Piece::Data(d) => {
                if socket.write_all(&d).await.is_err() || socket.flush().await.is_err() {
                    return false;
                }
            }
            Piece::Wait(d) => tokio::time::sleep(d).await,
            Piece::Reset => {
                let _ = socket.set_zero_linger();
                return false;
            }
            Piece::Hang => std::future::pending::<()>().await,
            Piece::Gate(gate) => gate.0.notified().await,
        }
    }
    let _ = socket.shutdown().await;
    false
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

// ---- Building replies -------------------------------------------------------------------

/// A reply text that ends with a valid checkpoint block for `name` with `outputs`.
pub fn checkpoint_text(name: &str, outputs: &Value) -> String {
    format!(
        "Done: the task for {name} is complete.\n\n```json\n{}\n```\n",
        json!({"prompt": name, "success": true, "outputs": outputs})
    )
}

/// The outputs a request asks for (from the recall's `"outputs": {...}` line), each given
/// the value `<name>-value`.
pub fn requested_outputs(seen: &Seen) -> Value {
    let system = seen.system();
    let mut outputs = serde_json::Map::new();
    if let Some(line) = system.lines().find(|l| l.contains("\"outputs\": {"))
        && let Ok(v) = serde_json::from_str::<Value>(line.trim())
        && let Some(map) = v.get("outputs").and_then(Value::as_object)
    {
        for k in map.keys() {
            outputs.insert(k.clone(), Value::from(format!("{k}-value")));
        }
    }
    Value::Object(outputs)
}

/// What a well-behaved model answers: a checkpoint with every requested output.
pub fn default_reply(seen: &Seen) -> Action {
    let text = checkpoint_text(&seen.prompt_name(), &requested_outputs(seen));
    reply_for(seen, &text)
}

/// `text` as the request's API would carry it (OpenAI or Anthropic, streamed or not),
/// with usage of 100 tokens in and 50 out.
pub fn reply_for(seen: &Seen, text: &str) -> Action {
    let stream = seen.body["stream"].as_bool().unwrap_or(false);
    if seen.route().ends_with("/responses") {
        return super::hosts::responses_reply(text, stream, (100, 50, 0));
    }
    let anthropic = seen.route().ends_with("/messages");
    match (anthropic, stream) {
        (false, true) => openai_sse(text, "stop", Some((100, 50))),
        (false, false) => openai_json(text, "stop", Some((100, 50))),
        (true, true) => anthropic_sse(text, "end_turn", Some((100, 50))),
        (true, false) => anthropic_json(text, "end_turn", (100, 50)),
    }
}

pub fn json_body(status: u16, body: Value) -> Action {
    Action::Respond {
        status,
        headers: vec![],
        body: vec![Piece::Data(body.to_string().into_bytes())],
    }
}

/// An error status with an OpenAI-style error body and extra headers.
pub fn status(code: u16, message: &str, headers: &[(&str, &str)]) -> Action {
    Action::Respond {
        status: code,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: vec![Piece::Data(
            json!({"error": {"message": message, "type": "error", "code": null}})
                .to_string()
                .into_bytes(),
        )],
    }
}

/// A responder answering every request with error `code` whose message echoes the key the
/// request carried (`Authorization` or `x-api-key`), as some servers do: for checking that
/// the key never reaches a log or a file.
pub fn echo_key(code: u16) -> impl Fn(&Seen) -> Action + Send + Sync + 'static {
    move |seen: &Seen| {
        let key = seen
            .header("authorization")
            .or_else(|| seen.header("x-api-key"))
            .unwrap_or("(none)");
        status(
            code,
            &format!("Incorrect API key provided: {key}. You can find your API key at ..."),
            &[],
        )
    }
}

pub fn openai_json(text: &str, finish: &str, usage: Option<(u64, u64)>) -> Action {
    let mut body = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
    });
    if let Some((i, o)) = usage {
        body["usage"] = json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o});
    }
    json_body(200, body)
}

/// SSE `data:` events for `text` in chunks of a few characters, a finish, usage, `[DONE]`.
pub fn openai_events(text: &str, finish: &str, usage: Option<(u64, u64)>) -> Vec<String> {
    let mut events = vec![
        json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            .to_string(),
    ];
    for part in split_text(text, 16) {
        events.push(json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": null}]}).to_string());
    }
    events.push(json!({"id": "chatcmpl-fake", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}).to_string());
    if let Some((i, o)) = usage {
        events.push(json!({"id": "chatcmpl-fake", "choices": [], "usage": {"prompt_tokens": i, "completion_tokens": o}}).to_string());
    }
    events.push("[DONE]".to_string());
    events
}

pub fn sse_bytes(events: &[String]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect::<String>()
        .into_bytes()
}

pub fn sse(body: Vec<Piece>) -> Action {
    Action::Respond {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body,
    }
}

pub fn openai_sse(text: &str, finish: &str, usage: Option<(u64, u64)>) -> Action {
    sse(vec![Piece::Data(sse_bytes(&openai_events(
        text, finish, usage,
    )))])
}

pub fn anthropic_events(
    text: &str,
    stop: &str,
    usage: Option<(u64, u64)>,
) -> Vec<(String, String)> {
    let (i, o) = usage.unwrap_or((0, 0));
    let mut events = vec![
        ("message_start".to_string(), json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": i, "output_tokens": 1}}}).to_string()),
        ("content_block_start".into(), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
        ("ping".into(), json!({"type": "ping"}).to_string()),
    ];
    for part in split_text(text, 16) {
        events.push(("content_block_delta".into(), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}).to_string()));
    }
    events.push((
        "content_block_stop".into(),
        json!({"type": "content_block_stop", "index": 0}).to_string(),
    ));
    events.push(("message_delta".into(), json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": o}}).to_string()));
    events.push((
        "message_stop".into(),
        json!({"type": "message_stop"}).to_string(),
    ));
    events
}

pub fn anthropic_sse(text: &str, stop: &str, usage: Option<(u64, u64)>) -> Action {
    let bytes: String = anthropic_events(text, stop, usage)
        .iter()
        .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
        .collect();
    sse(vec![Piece::Data(bytes.into_bytes())])
}

pub fn anthropic_json(text: &str, stop: &str, usage: (u64, u64)) -> Action {
    json_body(
        200,
        json!({"id": "msg_fake", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}], "stop_reason": stop, "usage": {"input_tokens": usage.0, "output_tokens": usage.1}}),
    )
}

fn split_text(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

// ---- An agent's model ----------------------------------------------------------------------

/// The fake as the model behind Claude Code (`ANTHROPIC_BASE_URL` pointed here): to a
/// prompt of orchestrator's (found in the messages' text), it answers with a `Bash` tool
/// call that runs the prompt's `## Execute` blocks; once that call's result is back, with
/// the checkpoint block, outputs taken from `OUTPUT name=value` lines of the result.
/// Anything else gets a 404.
pub fn claude_code_model() -> impl Fn(&Seen) -> Action + Send + Sync + 'static {
    move |seen: &Seen| {
        if seen.method != "POST" || !seen.route().ends_with("/v1/messages") {
            return status(404, "not found", &[]);
        }
        let texts = seen.texts();
        let Some(prompt) = texts
            .iter()
            .find(|t| t.contains("\nPrompt: ") || t.starts_with("Prompt: "))
        else {
            return anthropic_stream(
                seen,
                vec![text_block("I see no orchestrator prompt.")],
                "end_turn",
            );
        };
        let name = prompt
            .lines()
            .find_map(|l| l.strip_prefix("Prompt: "))
            .unwrap_or("?")
            .trim()
            .to_string();
        // Once the tool's result is in the history, the task is done (Claude Code may add
        // messages after it, such as what remains of --max-budget-usd).
        let ran = seen.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_array())
            .any(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
        if !ran {
            let user = prompt.split("\n\n---\n\n").nth(1).unwrap_or(prompt);
            let command = execute_blocks(user)
                .iter()
                .map(|b| format!("(set -e\n{b})"))
                .collect::<Vec<_>>()
                .join("\n");
            let input =
                json!({"command": command, "description": "Run the prompt's Execute steps"});
            return anthropic_stream(
                seen,
                vec![
                    json!({"type": "tool_use", "id": "toolu_fake01", "name": "Bash", "input": input}),
                ],
                "tool_use",
            );
        }
        let mut outputs = serde_json::Map::new();
        for text in &texts {
            for line in text.lines() {
                if let Some((k, v)) = line.strip_prefix("OUTPUT ").and_then(|l| l.split_once('=')) {
                    outputs.insert(k.to_string(), Value::from(v));
                }
            }
        }
        let wanted = requested_outputs_in(prompt);
        let filled: serde_json::Map<String, Value> = wanted
            .into_iter()
            .map(|k| {
                let v = outputs.get(&k).cloned().unwrap_or(Value::from("done"));
                (k, v)
            })
            .collect();
        let text = checkpoint_text(&name, &Value::Object(filled));
        anthropic_stream(seen, vec![text_block(&text)], "end_turn")
    }
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// The output names a prompt asks for (its recall's `"outputs": {...}` line).
fn requested_outputs_in(prompt: &str) -> Vec<String> {
    prompt
        .lines()
        .filter(|l| l.contains("\"outputs\": {"))
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .and_then(|v| {
            v["outputs"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// The bash/sh/shell blocks of a markdown text's `## Execute` section.
fn execute_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut in_section = false;
    let mut fence: Option<(String, bool)> = None;
    let mut body = String::new();
    for line in markdown.lines() {
        if let Some((marker, shell)) = &fence {
            if line.trim() == marker {
                if *shell && in_section {
                    blocks.push(std::mem::take(&mut body));
                }
                body.clear();
                fence = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            in_section = title.trim().to_ascii_lowercase().starts_with("execute");
            continue;
        }
        if let Some(rest) = line.strip_prefix("```") {
            let lang = rest.trim().to_ascii_lowercase();
            fence = Some((
                "```".to_string(),
                matches!(lang.as_str(), "bash" | "sh" | "shell"),
            ));
        }
    }
    blocks
}

/// An Anthropic stream of `content` blocks ending with `stop`, as Claude Code reads them.
fn anthropic_stream(seen: &Seen, content: Vec<Value>, stop: &str) -> Action {
    let model = seen.body["model"]
        .as_str()
        .unwrap_or("claude-fake")
        .to_string();
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )];
    for (i, block) in content.iter().enumerate() {
        let (start, delta) = match block["type"].as_str() {
            Some("tool_use") => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            ),
            _ => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            ),
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": start}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}})));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let bytes: String = events
        .iter()
        .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
        .collect();
    sse(vec![Piece::Data(bytes.into_bytes())])
}
