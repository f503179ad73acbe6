//! What people read, pinned: the tables of `plan`, `estimate` and `status`, the main
//! error messages, and the report's text. A change to any of them shows here as a diff
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test` then `git diff`), so that
//! nothing a user reads changes by accident. Times, session ids, durations and the test's
//! temporary folder are redacted.

use crate::support::Build;
use crate::support::builder::TestBuild;
use crate::support::fake_llm::FakeLlm;

/// `text` with what differs from run to run redacted, snapshotted as `name`.
fn pin(name: &str, build: &Build, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    let root = build.path().display().to_string();
    settings.add_filter(&regex_escape(&root), "[BUILD]");
    if let Ok(real) = std::fs::canonicalize(build.path()) {
        settings.add_filter(&regex_escape(&real.display().to_string()), "[BUILD]");
    }
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIME]");
    settings.add_filter(r"\b\d{8}_\d{6}(-\d+)?\b", "[SESSION]");
    settings.add_filter(r"\b\d+(\.\d+)? ms\b", "[MS]");
    // humantime's durations (`1s 200ms`, `8h`).
    settings.add_filter(r"\b(\d+(h|m|s|ms|us|ns)\b ?)+", "[DURATION] ");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Two phases, a placeholder carried across, a `## Validation` block, a budget.
fn two_phases(server: &FakeLlm) -> Build {
    TestBuild::against(server)
        .set("budget.total", 40_000)
        .phase("01-setup", "Setup", Some(12_000))
        .prompt("01.1-init", "Create the project.", &["project_name"])
        .prompt("01.2-config", "Configure {{project_name}}.", &["config_path"])
        .phase("02-build", "Build", None)
        .file(
            "prompts/02-build/02.1-module.md",
            "# 02.1 Module\n\n## Objective\nWrite the module in {{config_path}}.\n\n## Validation\n```bash\ntest -f module.py\n```\n\n## Checkpoint\n```json\n{\"prompt\": \"02.1-module\", \"success\": true, \"outputs\": {\"module\": \"module.py\"}}\n```\n\n---\n*Tokens: ~1500 | Time: 3 min | Checkpoint: Required*\n",
        )
        .build()
}

#[test]
fn plan_lists_phases_prompts_and_their_variables() {
    let server = FakeLlm::start();
    let b = two_phases(&server);
    let run = b.run(&["plan"]);
    run.code(0);
    pin("plan", &b, &run.stdout);
}

#[test]
fn estimate_shows_the_budget_table_and_every_prompt() {
    let server = FakeLlm::start();
    let b = two_phases(&server);
    let run = b.run(&["estimate"]);
    run.code(0);
    pin(
        "estimate",
        &b,
        &format!("{}\n--- stderr\n{}", run.stdout, run.stderr),
    );
}

#[test]
fn status_after_a_session_with_a_retry_a_failure_a_skip_and_a_crash() {
    let (_server, b) = crate::report::eventful_session();
    let run = b.run(&["status"]);
    run.code(0);
    pin("status", &b, &run.stdout);
}

#[test]
fn the_report_reads_as_it_did() {
    let (_server, b) = crate::report::eventful_session();
    b.run(&["report"]).code(0);
    let page = b.read("checkpoints/report.html");
    // What a reader sees: the page's text, one block a line, without the style sheet.
    let body = &page[page.find("<body>").unwrap_or(0)..];
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push('\n');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    pin("report", &b, &lines.join("\n"));
}

#[test]
fn the_main_error_messages_say_where_and_what_to_do() {
    let server = FakeLlm::start();
    let b = two_phases(&server);
    let mut said = String::new();
    let mut say = |what: &str, b: &Build, args: &[&str], code: i32| {
        let run = b.run(args);
        run.code(code);
        said.push_str(&format!(
            "## {what} (exit {code})\n{}\n",
            run.stderr.trim_end()
        ));
    };
    say("an unknown prompt", &b, &["rerun", "09.9"], 2);
    b.file("config.toml", "[llm]\nmodel = \"x\"\nmax_tokns = 5\n");
    say("a misspelt key", &b, &["plan"], 2);
    let b2 = TestBuild::against(&server)
        .folder("01-a")
        .prompt("01.1-first", "Use {{nothing_defines_this}}.", &[])
        .build();
    say("a placeholder nothing defines", &b2, &["plan"], 2);
    let b3 = TestBuild::against(&server)
        .set("budget.per_prompt", 100)
        .folder("01-a")
        .prompt("01.1-first", &"A long task. ".repeat(200), &[])
        .build();
    say("a prompt over per_prompt", &b3, &["run"], 3);
    let b4 = TestBuild::against(&server)
        .set("retry.max_attempts", 1)
        .folder("01-a")
        .prompt("01.1-first", "Say hello.", &["greeting"])
        .build();
    server.script([crate::support::fake_llm::status(400, "bad request", &[])]);
    say("a prompt that failed", &b4, &["run"], 1);
    let b5 = Build::new();
    say("no prompts", &b5, &["plan"], 2);
    pin("errors", &b, &said);
}
