//! Chains as people write them (issue 18): small synthetic collections in each shape that
//! public prompt collections come in (none copied; each is written here, in its shape),
//! taken through `init` and then a real `run` against a fake server that answers in prose
//! only (no checkpoint block), refuses each prompt's first request with a 503, and reports
//! usage 1.5 times what tiktoken counts: each must finish with exit 0, every prompt
//! completed, and no hand edit (the server's address comes from `OPENAI_BASE_URL`).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use orchestrator::documents::PromptStatus;

use crate::support::builder::TestBuild;
use crate::support::fake_llm::{self, Action, FakeLlm, Seen, openai_sse};
use crate::support::{Build, events, status_json, strings};

/// tiktoken's count of a text (cl100k_base), loaded once.
fn tiktoken(text: &str) -> u64 {
    static BPE: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    let bpe = BPE.get_or_init(|| tiktoken_rs::cl100k_base().expect("cl100k_base"));
    bpe.encode_ordinary(text).len() as u64
}

/// A server that answers chat completions in prose, after a 503 on each prompt's first
/// request, with usage 1.5 times tiktoken's count of what was sent; anything else (a
/// `/tokenize` probe) is a 404.
fn prose_server() -> FakeLlm {
    let server = FakeLlm::start();
    let first_seen: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    server.responder(move |seen: &Seen| {
        if !seen.route().ends_with("/chat/completions") {
            return fake_llm::status(404, "not here", &[]);
        }
        let key = seen.user();
        let first = first_seen
            .lock()
            .map(|mut s| s.insert(key))
            .unwrap_or(false);
        if first {
            return fake_llm::status(503, "busy", &[("retry-after-ms", "1")]);
        }
        let sent: u64 = seen.texts().iter().map(|t| tiktoken(t)).sum();
        let input = (sent as f64 * 1.5).ceil() as u64;
        openai_sse(
            "Done. I wrote the module, tested it and described what changed.",
            "stop",
            Some((input, 40)),
        )
    });
    server
}

/// `init target`, then `run` against `server` as a user would: no edit of what init wrote.
fn init_and_run(b: &mut Build, target: &str, server: &FakeLlm) -> crate::support::Run {
    b.run(&["init", target]).code(0);
    b.env("OPENAI_BASE_URL", &server.base_url());
    b.run(&["run"])
}

fn completed(b: &Build) -> Vec<String> {
    strings(&status_json(b)["completed"])
}

/// A prompt in the shape of most collections: a heading, a task, no checkpoint protocol.
fn plain(title: &str) -> String {
    format!("# {title}\n\nImplement {title}. Keep it small and explain what you did.\n")
}

#[test]
fn a_flat_folder_not_named_prompts_runs_after_init_with_no_hand_edit() {
    let mut b = Build::new();
    for (i, name) in ["setup", "data-model", "api", "launch-audit"]
        .iter()
        .enumerate()
    {
        b.file(&format!("prompt/{:02}-{name}.md", i + 1), plain(name));
    }
    let server = prose_server();
    let run = init_and_run(&mut b, "prompt", &server);
    run.code(0);
    assert_eq!(completed(&b), ["01", "02", "03", "04"]);
    assert!(b.read("config.toml").contains("prompts = \"prompt\""));
    b.run(&["plan"]).code(0).stdout_has("4 prompts");
}

#[test]
fn underscored_names_numbered_from_zero_in_a_nested_folder_run_after_init() {
    let mut b = Build::new();
    for (i, name) in [
        "phase0_security_audit",
        "phase1_fix_findings",
        "phase2_report",
    ]
    .iter()
    .enumerate()
    {
        b.file(&format!("docs/prompts/{i:02}_{name}.md"), plain(name));
    }
    let server = prose_server();
    init_and_run(&mut b, "docs/prompts", &server).code(0);
    assert_eq!(completed(&b), ["00", "01", "02"]);
}

#[test]
fn phase_folders_of_any_name_whose_numbering_restarts_run_after_init_with_qualified_ids() {
    let mut b = Build::new();
    b.file("plan/phase-0/00-monorepo-scaffold.md", plain("scaffold"));
    b.file("plan/phase-1/01-auth-module.md", plain("auth"));
    b.file("plan/phase-1/02-auth-tests.md", plain("auth tests"));
    b.file("plan/Phase 2 - Core/01-dbcontext.md", plain("dbcontext"));
    b.file(
        "plan/Phase 2 - Core/02-repositories.md",
        plain("repositories"),
    );
    b.file("plan/README.md", "How to use these prompts.\n");
    let server = prose_server();
    b.run(&["init", "plan"])
        .code(0)
        .stdout_has("ids carry their phase's number");
    b.env("OPENAI_BASE_URL", &server.base_url());
    let plan = b.run(&["plan"]);
    plan.code(0)
        .stdout_has("0.00")
        .stdout_has("1.01")
        .stdout_has("2.01");
    b.run(&["run"]).code(0);
    assert_eq!(completed(&b), ["0.00", "1.01", "1.02", "2.01", "2.02"]);
    b.run(&["rerun", "2.01"]).code(0);
}

#[test]
fn a_single_plan_file_of_prompt_sections_runs_after_init_sending_only_the_blocks() {
    let mut b = Build::new();
    b.file(
        "prompt_plan.md",
        "# Blueprint\n\nWe build a todo app in small steps. This part is not sent.\n\n\
         ### Prompt 1: Project Setup\n\n```text\nSet up the project: a package and a test runner.\n```\n\n\
         ### Prompt 2: Data Model\n\nBuilding on the previous step:\n\n```text\nAdd the Todo model.\n```\n\n\
         ### Prompt 3: API\n\n```\nExpose the todos over HTTP, building on the previous prompts.\n```\n",
    );
    let server = prose_server();
    init_and_run(&mut b, "prompt_plan.md", &server).code(0);
    assert_eq!(completed(&b), ["1", "2", "3"]);
    let users: Vec<String> = server
        .seen()
        .iter()
        .filter(|s| s.route().ends_with("/chat/completions"))
        .map(Seen::user)
        .collect();
    assert!(users.iter().all(|u| !u.contains("Blueprint")), "{users:?}");
    assert!(users[0].starts_with("Set up the project"), "{}", users[0]);
}

#[test]
fn prompts_inside_notes_for_a_human_send_only_their_fenced_blocks() {
    let mut b = Build::new();
    b.file(
        "oficina/01-modelo.md",
        "# Passo 1\n\nCopie o prompt abaixo e cole no assistente:\n\n```\nCrie o modelo de dados do {{produto}}.\n```\n\n## Verificação de conclusão\n\n- [ ] O modelo existe\n",
    );
    b.file(
        "oficina/02-api.md",
        "# Passo 2\n\nCopie o prompt abaixo:\n\n```text\nCrie a API do {{produto}}.\n```\n\n## Verificação de conclusão\n\n- [ ] A API responde\n",
    );
    b.file(
        "oficina/03-ワークショップ.md",
        "# ステップ3\n\nまず実行してください:\n\n```bash\nnpm install\n```\n\n次のプロンプトを貼り付けてください:\n\n```\n{{タイトル}} の画面を作成してください。\n```\n",
    );
    let server = prose_server();
    b.run(&["init", "oficina"])
        .code(0)
        .stdout_has("send = \"fenced\"")
        .stdout_has("produto")
        .stdout_has("タイトル");
    b.env("OPENAI_BASE_URL", &server.base_url());
    let run = b.run(&["run"]);
    run.code(0)
        .stderr_has("`produto` is empty")
        .stderr_has("`タイトル` is empty");
    assert_eq!(completed(&b), ["01", "02", "03"]);
    let users: Vec<String> = server
        .seen()
        .iter()
        .filter(|s| s.route().ends_with("/chat/completions"))
        .map(Seen::user)
        .collect();
    assert!(
        users.iter().all(|u| !u.contains("Copie")
            && !u.contains("npm install")
            && !u.contains("Verificação")),
        "only the blocks are sent: {users:?}"
    );
    assert!(
        users.iter().any(|u| u.contains("Crie a API do")),
        "{users:?}"
    );
}

#[test]
fn a_global_context_file_goes_with_every_prompt() {
    let mut b = Build::new();
    b.file("agents/01-one.md", plain("one"));
    b.file("agents/02-two.md", plain("two"));
    b.file(
        "agents/instructions/global-context.md",
        "# Injected into Every Agent\n\nUse TypeScript. Never commit secrets.\n",
    );
    let server = prose_server();
    b.run(&["init", "agents"])
        .code(0)
        .stdout_has("global-context.md");
    assert!(b.read("config.toml").contains("global-context.md"));
    b.env("OPENAI_BASE_URL", &server.base_url());
    b.run(&["run"]).code(0);
    let systems: Vec<String> = server
        .seen()
        .iter()
        .filter(|s| s.route().ends_with("/chat/completions"))
        .map(Seen::system)
        .collect();
    assert!(!systems.is_empty());
    assert!(
        systems.iter().all(|s| s.contains("Never commit secrets")),
        "{systems:?}"
    );
    let estimate = b.run(&["estimate", "--json"]).json();
    let counted = estimate["prompts"][0]["input_tokens"].as_u64().unwrap_or(0);
    assert!(
        counted > tiktoken("Use TypeScript. Never commit secrets."),
        "counted: {counted}"
    );
}

#[test]
fn with_history_all_the_second_request_carries_the_first_reply_and_the_oldest_turns_go_first() {
    let server = FakeLlm::start();
    server.responder(|seen: &Seen| {
        let texts = seen.texts();
        let prompt = texts.last().cloned().unwrap_or_default();
        let step = prompt.lines().next().unwrap_or("").to_string();
        let text = format!(
            "Reply to {step}, with words: {}",
            "lorem ipsum ".repeat(120)
        );
        fake_llm::openai_sse(&text, "stop", Some((100, 130)))
    });
    let b = Build::new();
    b.config(&format!(
        "[llm]\nbase_url = \"{}\"\n[context]\nhistory = \"all\"\nmax_tokens = 600\n[budget]\nper_prompt = 8000\n",
        server.base_url()
    ));
    for i in 1..=5 {
        b.file(
            &format!("prompts/0{i}-step.md"),
            format!("# Step {i}\n\nDo step {i}.\n"),
        );
    }
    b.run(&["run"]).code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    let second = seen[1].texts();
    assert!(
        second.iter().any(|t| t.contains("Do step 1."))
            && second.iter().any(|t| t.contains("Reply to # Step 1")),
        "the second request carries the first prompt and its reply: {second:?}"
    );
    // Each turn is ~250 tokens: two fit in 600, the older ones go.
    let last = seen[4].texts();
    for kept in ["Do step 4.", "Do step 3."] {
        assert!(last.iter().any(|t| t.contains(kept)), "{kept}: {last:?}");
    }
    for gone in ["Do step 1.", "Do step 2."] {
        assert!(!last.iter().any(|t| t.contains(gone)), "{gone}: {last:?}");
    }
    let attempts = events(&b, "attempt_started");
    let fifth = attempts[4]["input_tokens"].as_u64().unwrap_or(0);
    assert!(fifth < 1000, "history within [context] max_tokens: {fifth}");
    let status = b.run(&["status", "--json"]).json();
    let used = status["total"]["used"].as_u64().unwrap_or(0);
    let budget = status["total"]["budget"].as_u64().unwrap_or(0);
    assert!(
        used > 0 && used <= budget,
        "the budget holds: {used} of {budget}"
    );
}

/// What `[context] history` sends is what `estimate` counted, within its worst case.
#[test]
fn estimate_counts_history_within_its_limits() {
    let b = Build::new();
    b.config("[context]\nhistory = \"previous\"\n[llm]\nmax_tokens = 300\n");
    for i in 1..=3 {
        b.file(
            &format!("prompts/0{i}-step.md"),
            format!("# Step {i}\n\nDo step {i}.\n"),
        );
    }
    let e = b.run(&["estimate", "--json"]).json();
    let inputs: Vec<u64> = e["prompts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["input_tokens"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        inputs[1] > inputs[0] + 300,
        "a turn at its worst case: {inputs:?}"
    );
    assert!(
        inputs[2] < inputs[1] + 300,
        "one turn only (previous): {inputs:?}"
    );
}

// ---- Friction points ------------------------------------------------------------------------

/// A build of `n` prompts (`01-step` …) against `server`, each with a checkpoint protocol.
fn steps(server: &FakeLlm, n: usize) -> Build {
    (1..=n)
        .fold(TestBuild::against(server), |t, i| {
            t.prompt(&format!("{i:02}-step"), &format!("Do step {i}."), &[])
        })
        .build()
}

#[test]
fn a_rerun_cut_by_kill_9_is_finished_by_the_next_run() {
    let server = FakeLlm::start();
    let b = steps(&server, 6);
    b.run(&["run"]).code(0);
    let before = server.count();
    // During the rerun, prompt 05 never answers: the runner is killed there.
    server.responder(|seen: &Seen| {
        if seen.prompt_name() == "05-step" {
            Action::Hang
        } else {
            fake_llm::default_reply(seen)
        }
    });
    let mut rerun = crate::support::Running::spawn_quiet(&b, &["rerun", "03", "--and-after"]);
    crate::support::await_requests(&server, before + 3);
    rerun.child().kill().expect("kill -9");
    let _ = rerun.child().wait();
    server.responder(fake_llm::default_reply);
    let run = b.run(&["run"]);
    // 03 and 04 were done again before the kill; 05 and 06 are what is left of it.
    run.code(0).stderr_has("4/6 prompts completed, 2 to run");
    let names: Vec<String> = server.seen()[before + 3..]
        .iter()
        .map(Seen::prompt_name)
        .collect();
    assert_eq!(
        names,
        ["05-step", "06-step"],
        "the rest of the rerun, once each"
    );
    assert_eq!(completed(&b).len(), 6);
    let report = b.run(&["report", "--json"]).report_doc();
    assert!(
        report
            .prompts
            .iter()
            .all(|p| p.status == PromptStatus::Completed),
        "{report:?}"
    );
}

#[test]
fn run_refuses_a_prompt_over_per_prompt_before_sending_the_first() {
    let server = FakeLlm::start();
    let b = steps(&server, 8);
    b.file(
        "prompts/08-step.md",
        crate::support::prompt("08-step", &"A very long task. ".repeat(1200), &[]),
    );
    b.run(&["run"])
        .code(3)
        .stderr_has("08-step.md")
        .stderr_has("budget.per_prompt")
        .stderr_has("nothing was sent");
    assert_eq!(server.count(), 0, "nothing paid for");
}

#[test]
fn counts_progress_and_warnings_say_what_is_so() {
    let server = FakeLlm::start();
    let b = steps(&server, 1);
    b.run(&["plan"])
        .code(0)
        .stdout_has("1 prompt,")
        .stdout_has("1 prompt in 1 phase");
    let b = steps(&server, 3);
    b.run(&["run"]).code(0);
    b.file(
        "prompts/01-step.md",
        crate::support::prompt("01-step", "Do step 1, edited.", &[]),
    );
    let rerun = b.run(&["rerun", "01", "--and-after"]);
    rerun
        .code(0)
        .stderr_has("0/3 prompts completed, 3 to run")
        .stderr_has("[1/3] 01-step")
        .stderr_has("[3/3] 03-step");
    assert!(
        !rerun.stderr.contains("changed since it ran"),
        "the prompt being rerun is no warning: {}",
        rerun.stderr
    );
    b.run(&["status"])
        .code(0)
        .stdout_has("largest request reserved");
}

#[test]
fn without_footers_estimate_and_plan_show_no_empty_hint_columns() {
    let b = Build::new();
    b.file("prompts/01-a.md", plain("a"));
    let estimate = b.run(&["estimate"]);
    estimate.code(0);
    assert!(
        !estimate.stdout.contains("time (footers)"),
        "{}",
        estimate.stdout
    );
    let plan = b.run(&["plan"]);
    assert!(!plan.stdout.contains("Tokens~"), "{}", plan.stdout);
    b.run(&["run", "--mock"]).code(0);
    let html = b.read("checkpoints/report.html");
    assert!(
        html.contains("no budget (the phase is not limited)"),
        "a phase without a budget is not drawn as one used up"
    );
}
