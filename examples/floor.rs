//! The floor of a runner's per-prompt cost, for the benchmark: one loopback HTTP round trip
//! (a chat request of the given size to the fake server, reply read in full) plus one
//! fsync'd atomic write (temporary file, fsync, rename, fsync of the folder) per prompt.
//! `floor URL PROMPTS BYTES DIR` prints the seconds taken for PROMPTS rounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, n, size, dir) = (
        &args[1],
        args[2].parse::<usize>().unwrap_or(200),
        args[3].parse::<usize>().unwrap_or(6000),
        std::path::PathBuf::from(&args[4]),
    );
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:0")
        .to_string();
    std::fs::create_dir_all(&dir)?;
    let body = format!(
        "{{\"model\":\"m\",\"stream\":false,\"messages\":[{{\"role\":\"system\",\"content\":\"Prompt: 01.1-x\"}},{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(size)
    );
    let start = std::time::Instant::now();
    let mut conn = TcpStream::connect(&addr)?;
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    for i in 0..n {
        write!(
            conn,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut reply = vec![0; len];
        reader.read_exact(&mut reply)?;
        let tmp = dir.join(format!(".state-{i}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&reply)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("state.json"))?;
        std::fs::File::open(&dir)?.sync_all()?;
    }
    println!("{:.6}", start.elapsed().as_secs_f64());
    Ok(())
}
