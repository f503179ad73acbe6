//! `report` (issue 14): one self-contained HTML page of a session, built from its journal,
//! shown in a real browser (`chromium-headless-shell`) to check that it reads and that its
//! SVG is laid out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator::documents::{AttemptOutcome, PromptStatus};
use serde_json::Value;

use crate::support::fake_llm::{Action, FakeLlm, json_body};
use crate::support::{Build, Running, config_with, on_path, prompt};

/// Four prompts, `on_failure = "skip"`: 01.1 has a transient failure, then an attempt cut
/// by a crash (the runner killed mid-request), then is accepted; 01.2 fails for good (a
/// 400); 01.3 needs 01.2's output and is skipped; 01.4 stands alone.
pub(crate) fn eventful_session() -> (FakeLlm, Build) {
    let server = FakeLlm::start();
    let b = Build::new();
    b.config(&config_with(
        &format!(
            "[llm]\nbase_url = \"{}\"\ntimeout = \"20s\"\nidle_timeout = \"5s\"\n\n[[phases]]\ndir = \"01-a\"\nname = \"A\"\nbudget = 50000\n",
            server.base_url()
        ),
        &[
            ("run.on_failure", "skip".into()),
            ("retry.initial_delay", "10ms".into()),
            ("retry.max_delay", "50ms".into()),
        ],
    ));
    b.file(
        "prompts/01-a/01.1-first.md",
        prompt("01.1-first", "Say hello.", &["greeting"]),
    );
    b.file(
        "prompts/01-a/01.2-second.md",
        prompt("01.2-second", "Build on {{greeting}}.", &["second"]),
    );
    b.file(
        "prompts/01-a/01.3-third.md",
        prompt("01.3-third", "Use {{second}}.", &["third"]),
    );
    b.file(
        "prompts/01-a/01.4-fourth.md",
        prompt("01.4-fourth", "Stand alone.", &["fourth"]),
    );
    let bad = || {
        json_body(
            400,
            serde_json::json!({"error": {"message": "Invalid request: unknown field", "type": "invalid_request_error"}}),
        )
    };
    server.script_prompt(
        "01.1-first",
        [
            json_body(503, serde_json::json!({"error": {"message": "overloaded"}})),
            Action::Hang,
        ],
    );
    server.script_prompt("01.2-second", [bad()]);
    let runner = Running::spawn_quiet(&b, &["run"]);
    assert!(
        server.wait_for(2, Duration::from_secs(20)),
        "the second attempt never came"
    );
    runner.kill();
    b.run(&["run"]).code(1);
    (server, b)
}

#[test]
fn the_report_shows_a_retry_a_failure_a_skip_and_an_attempt_cut_by_a_crash() {
    let (_server, b) = eventful_session();
    let run = b.run(&["report"]);
    run.code(0).stdout_has("report.html");
    let page = b.read("checkpoints/report.html");
    for text in [
        "2 of 4 prompts completed",
        "failed: 01.2",
        "skipped: 01.3",
        "attempt 2: unknown",
        "Invalid request: unknown field",
        "Success criteria",
    ] {
        assert!(page.contains(text), "the page lacks {text:?}");
    }
    assert!(!page.contains("<script"), "no script is needed to read it");
    assert!(
        !page.contains("src=") && !page.contains("href=\"http") && !page.contains("@import"),
        "nothing from the network"
    );
    // `--json` is the same data (read into the type it is written from): 01.1's attempts,
    // in order.
    let doc = b.run(&["report", "--json"]).report_doc();
    let outcomes: Vec<AttemptOutcome> = doc.prompts[0].attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Transient,
            AttemptOutcome::Unknown,
            AttemptOutcome::Ok
        ]
    );
    let states: Vec<PromptStatus> = doc.prompts.iter().map(|p| p.status).collect();
    assert_eq!(
        states,
        [
            PromptStatus::Completed,
            PromptStatus::Failed,
            PromptStatus::Skipped,
            PromptStatus::Completed
        ]
    );
    assert_eq!(doc.completed.len(), 2);
    assert_eq!(doc.criteria.len(), 5);
}

#[test]
fn every_run_writes_the_report() {
    let server = FakeLlm::start();
    let b = crate::support::fast_bundled(&server, &[]);
    b.run(&["run", "--until", "01.2"]).code(0);
    let page = b.read("checkpoints/report.html");
    assert!(
        page.contains("2 of 40 prompts completed"),
        "{}",
        &page[..page.len().min(2000)]
    );
}

/// A headless Chromium, if the machine has one (`.ci/run` installs it).
fn chromium() -> Option<PathBuf> {
    ["chromium-headless-shell", "chromium", "chromium-browser"]
        .iter()
        .find_map(|name| on_path(name))
}

/// The page as Chromium laid it out: its DOM after a measuring script ran, with every SVG
/// element's box.
fn render(browser: &Path, page: &Path, profile: &Path) -> String {
    let html = std::fs::read_to_string(page).expect("report");
    let measure = "<script>document.body.setAttribute('data-boxes', JSON.stringify([...document.querySelectorAll('svg, svg rect, svg polyline')].map(e => { const b = e.getBoundingClientRect(); return [e.tagName, e.getAttribute('class') || '', b.width, b.height]; })));</script>";
    let measured = page.with_file_name("measured.html");
    std::fs::write(
        &measured,
        html.replace("</body>", &format!("{measure}</body>")),
    )
    .expect("write");
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", measured.display()))
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs chromium-headless-shell on PATH (apt-get install chromium-headless-shell); .ci/run installs it and runs it"]
fn the_report_reads_in_a_real_browser_and_its_svg_is_laid_out() {
    let browser = chromium().expect(
        "no chromium-headless-shell or chromium on PATH: apt-get install chromium-headless-shell",
    );
    let (_server, b) = eventful_session();
    b.run(&["report"]).code(0);
    let profile = tempfile::tempdir().expect("profile");
    let dom = render(
        &browser,
        &b.path().join("checkpoints/report.html"),
        profile.path(),
    );
    for text in [
        "Success criteria",
        "Timeline",
        "01.2-second",
        "01.4-fourth",
        "Invalid request: unknown field",
    ] {
        assert!(dom.contains(text), "the rendered page lacks {text:?}");
    }
    let boxes = dom
        .split("data-boxes=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|json| json.replace("&quot;", "\""))
        .expect("the measuring script ran");
    let boxes: Vec<Value> = serde_json::from_str(&boxes).expect("boxes are JSON");
    let attempt_boxes = boxes
        .iter()
        .filter(|b| {
            b[0] == "rect"
                && ["ok", "transient", "unknown", "permanent"]
                    .contains(&b[1].as_str().unwrap_or(""))
        })
        .count();
    assert_eq!(
        attempt_boxes,
        2 * (3 + 1 + 1),
        "01.1's three attempts, 01.2's and 01.4's, each in the prompts' timeline and on the time axis"
    );
    for b in &boxes {
        let (w, h) = (b[2].as_f64().unwrap_or(0.0), b[3].as_f64().unwrap_or(0.0));
        let empty_by_design = b[1] == "billed";
        assert!(
            empty_by_design || (w > 0.0 && h > 0.0),
            "an element with no box: {b}"
        );
    }
}

#[test]
fn status_json_prints_the_document_the_runner_writes_to_status_json() {
    let (_server, b) = eventful_session();
    let printed = b.run(&["status", "--json"]);
    printed.code(0);
    let printed = printed.status_doc();
    let written = crate::support::status_doc(&b);
    assert_eq!(printed, written, "one document, not two that drift");
    // The seed's keys with the seed's meaning, and what the runner adds beside them.
    assert_eq!(written.completed.len(), 2);
    assert_eq!(written.failed.as_ref(), ["01.2"]);
    assert_eq!(written.skipped.as_ref(), ["01.3"]);
    assert_eq!(written.criteria.len(), 5);
    assert_eq!(written.plan_hashes.len(), 4);
    assert!(written.total.used > 0 && written.total.possibly_billed > 0);
}
