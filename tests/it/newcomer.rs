//! A newcomer's first ten minutes (issue 14): `init` on a folder of prompts or on nothing,
//! shell completions, colour as asked, and the embedded mock model.

use serde_json::{Value, json};

use crate::support::fake_llm::FakeLlm;
use crate::support::{Build, copy_dir, events, prompt, repo, status_json};

/// The bundled prompts with no config beside them.
fn bundled_prompts_only() -> Build {
    let b = Build::new();
    copy_dir(&repo().join("prompts"), &b.path().join("prompts"));
    b
}

fn phases(estimate: &Value) -> Vec<(String, String, u64)> {
    estimate["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["dir"].as_str().unwrap_or("").to_string(),
                p["name"].as_str().unwrap_or("").to_string(),
                p["budget"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

// ---- init -----------------------------------------------------------------------------------

#[test]
fn init_on_the_bundled_prompts_writes_a_config_with_the_bundled_phases() {
    let b = bundled_prompts_only();
    b.run(&["init", "prompts"])
        .code(0)
        .stdout_has("40 prompts in 3 phases")
        .stdout_has("project_name, project_root")
        .stdout_has("next: `orchestrator estimate`");
    let written = b.run(&["estimate", "--json"]);
    let bundled = Build::bundled().run(&["estimate", "--json"]);
    // The phases, their folders and budgets (the footers' hints add up to the seed's).
    assert_eq!(phases(&written.json()), phases(&bundled.json()));
    assert_eq!(written.json()["prompts"].as_array().map(Vec::len), Some(40));
}

#[test]
fn init_on_a_flat_folder_writes_a_working_single_phase_config() {
    let b = Build::new();
    // Two prompts without a footer hint (their budget: the estimate's worst case), one
    // with a hint of 1,500.
    let no_hint =
        |text: String| text.replace("*Tokens: ~1000 | Time: 2 min | Checkpoint: Required*", "");
    b.file(
        "steps/01-outline.md",
        no_hint(prompt("01-outline", "Outline the essay.", &["outline"])),
    );
    b.file(
        "steps/02-draft.md",
        no_hint(prompt("02-draft", "Draft from {{outline}}.", &["draft"])),
    );
    b.file(
        "steps/03-polish.md",
        prompt("03-polish", "Polish the draft.", &["essay"]).replace("~1000", "~1500"),
    );
    b.file("steps/notes.md", "not a prompt");
    b.run(&["init", "steps"])
        .code(0)
        .stdout_has("3 prompts in 1 phase")
        .stdout_has("from footer hints, 2 by estimate's worst case x attempts x 1.5");
    let config = b.read("config.toml");
    assert!(config.contains("dir = \".\""), "{config}");
    assert!(config.contains("prompts = \"steps\""), "{config}");
    let estimate = b.run(&["estimate", "--json"]);
    estimate.code(0);
    let (dir, name, budget) = phases(&estimate.json()).remove(0);
    assert_eq!((dir.as_str(), name.as_str()), (".", "Steps"));
    let expected: u64 = estimate.json()["prompts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            p["tokens_hint"].as_u64().unwrap_or_else(|| {
                // Three attempts of the worst case, with a margin of 1.5.
                (p["worst_case_tokens"].as_u64().unwrap_or(0) as f64 * 3.0 * 1.5).ceil() as u64
            })
        })
        .sum();
    assert_eq!(
        budget, expected,
        "footer hints, else the worst case for every attempt"
    );
    assert!(
        expected > 1500 + 2 * 3 * 2000,
        "two worst cases for three attempts, and a hint: {expected}"
    );
    b.run(&["run", "--mock"]).code(0);
    assert_eq!(status_json(&b)["completed"], json!(["01", "02", "03"]));
}

#[test]
fn init_never_overwrites_a_file_unless_forced() {
    let b = bundled_prompts_only();
    b.file("config.toml", "# mine\n");
    b.run(&["init", "prompts"])
        .code(2)
        .stderr_has("config.toml already exists")
        .stderr_has("--force");
    assert_eq!(b.read("config.toml"), "# mine\n");
    b.run(&["init", "prompts", "--force"]).code(0);
    assert!(b.read("config.toml").contains("[[phases]]"));
}

#[test]
fn init_on_a_folder_without_prompts_says_what_it_looked_for() {
    let b = Build::new();
    b.file("empty/README.md", "nothing here");
    b.run(&["init", "empty"])
        .code(2)
        .stderr_has("no prompt files found; looked for folders holding");
    assert!(!b.path().join("config.toml").exists());
}

#[test]
fn init_without_a_folder_writes_a_first_prompt_that_estimates_and_runs_on_the_mock() {
    let b = Build::new();
    b.run(&["init"])
        .code(0)
        .stdout_has("prompts/01-first/01.1-hello.md");
    b.run(&["plan"]).code(0);
    b.run(&["estimate"]).code(0);
    b.run(&["run", "--mock"]).code(0);
    assert_eq!(
        status_json(&b)["variables"]["01.1"]["greeting"],
        "Hello from my-project"
    );
    b.run(&["init"]).code(2).stderr_has("already exist");
}

// ---- completions and colour --------------------------------------------------------------------

/// The commands and long options `--help` lists.
fn help_words(b: &Build) -> Vec<String> {
    let help = b.run(&["--help"]).stdout;
    let mut words = Vec::new();
    let mut section = "";
    for line in help.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            section = line;
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        match section {
            "Commands:" if !first.is_empty() && first != "help" => words.push(first.to_string()),
            "Options:" => {
                if let Some(long) = line.split_whitespace().find(|w| w.starts_with("--")) {
                    words.push(long.trim_end_matches([',', '.']).to_string());
                }
            }
            _ => {}
        }
    }
    words
}

#[test]
fn the_bash_completion_script_names_every_command_and_global_option() {
    let b = Build::new();
    let words = help_words(&b);
    assert!(words.len() > 12, "{words:?}");
    let script = b.run(&["completions", "bash"]);
    script.code(0);
    for w in &words {
        assert!(script.stdout.contains(w.as_str()), "the script lacks {w}");
    }
    for shell in ["zsh", "fish", "powershell"] {
        b.run(&["completions", shell])
            .code(0)
            .stdout_has("orchestrator");
    }
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    const ESC: &str = "\u{1b}[";
    // (flag, NO_COLOR set, coloured): stderr is not a terminal here, so auto is off.
    for (flag, no_color, coloured) in [
        ("always", false, true),
        ("always", true, true),
        ("never", false, false),
        ("auto", false, false),
        ("auto", true, false),
    ] {
        let mut b = Build::bundled();
        if no_color {
            b.env("NO_COLOR", "1");
        }
        // `estimate` on the bundled build warns (worst cases over the phase budgets).
        let run = b.run(&["--color", flag, "estimate"]);
        run.code(0).stderr_has("warning");
        assert_eq!(
            run.stderr.contains(ESC),
            coloured,
            "--color {flag}, NO_COLOR {no_color}"
        );
        assert!(!run.stdout.contains(ESC), "data is never coloured");
    }
}

// ---- the mock model --------------------------------------------------------------------------

#[test]
fn run_mock_completes_the_bundled_build_offline_and_a_real_run_starts_anew() {
    let b = Build::bundled();
    b.run(&["run", "--mock"]).code(0);
    let status = status_json(&b);
    assert_eq!(status["completed"].as_array().map(Vec::len), Some(40));
    b.run(&["status"]).code(0).stdout_has("A mock session");
    assert_eq!(b.run(&["status", "--json"]).json()["mock"], true);
    // Variables flowed: 01.2 got 01.1's example value.
    let venv = &status["variables"]["01.1"]["venv_path"];
    assert!(venv.is_string(), "{status}");
    // A real run on it archives the mock session and starts a new one.
    let server = FakeLlm::start();
    let config = b
        .read("config.toml")
        .replace("http://127.0.0.1:4000/v1", &server.base_url());
    b.config(&config);
    b.run(&["run", "--until", "01.1"])
        .code(0)
        .stderr_has("was a mock one; it is archived");
    assert_eq!(server.count(), 1);
    assert_eq!(b.run(&["status", "--json"]).json()["mock"], false);
    assert_eq!(status_json(&b)["completed"], json!(["01.1"]));
}

#[test]
fn the_mock_fails_a_listed_prompt_once_and_its_rerun_passes() {
    let b = Build::bundled();
    let config = b.read("config.toml") + "\n[mock]\nfail = [\"01.3\"]\n";
    b.config(&config);
    b.run(&["run", "--mock"])
        .code(1)
        .stderr_has("the mock fails this prompt");
    assert_eq!(status_json(&b)["failed"], json!(["01.3"]));
    b.run(&["rerun", "01.3", "--mock"]).code(0);
    b.run(&["run", "--mock"]).code(0);
    assert_eq!(
        status_json(&b)["completed"].as_array().map(Vec::len),
        Some(40)
    );
    assert!(!events(&b, "failed").is_empty());
}

#[test]
fn the_mock_is_refused_on_a_session_run_against_a_real_endpoint() {
    let server = FakeLlm::start();
    let b = Build::bundled();
    let config = b
        .read("config.toml")
        .replace("http://127.0.0.1:4000/v1", &server.base_url());
    b.config(&config);
    b.run(&["run", "--until", "01.1"]).code(0);
    b.run(&["run", "--mock"])
        .code(2)
        .stderr_has("run against a real endpoint; --mock would mix the two");
    b.run(&["run", "--mock", "--restart"]).code(0);
}
