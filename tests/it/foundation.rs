//! The foundation: `plan`, `estimate`, config and plan errors, exit codes.

use crate::support::{Build, prompt};

/// One phase, `01-a`.
const ONE_PHASE: &str = "[[phases]]\ndir = \"01-a\"\nname = \"A\"\nbudget = 10000\n";

#[test]
fn the_bundled_build_estimates_within_budget() {
    let b = Build::bundled();
    let run = b.run(&["estimate", "--json"]);
    run.code(0);
    let v = run.json();
    let phases = v["phases"].as_array().expect("phases");
    let names: Vec<_> = phases
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["Foundation", "Core", "Features"]);
    let prompts = v["prompts"].as_array().expect("prompts");
    for (phase, count) in [("Foundation", 5), ("Core", 15), ("Features", 20)] {
        assert_eq!(
            prompts.iter().filter(|p| p["phase"] == phase).count(),
            count,
            "{phase}"
        );
    }
    for p in phases {
        let input = p["input_tokens"].as_u64().expect("input");
        let budget = p["budget"].as_u64().expect("budget");
        assert!(input <= budget, "{p}");
    }
    for p in prompts {
        assert!(p["input_tokens"].as_u64().expect("input") <= 3000, "{p}");
        assert_eq!(p["over_per_prompt"], false);
        assert_eq!(
            p["worst_case_tokens"].as_u64(),
            Some(p["input_tokens"].as_u64().unwrap_or(0) + p["max_tokens"].as_u64().unwrap_or(0))
        );
    }
    assert_eq!(v["over_budget"], false);
    assert_eq!(v["encoding"], "cl100k_base");
    assert!(v["total"]["minutes"].as_f64().expect("minutes") < 8.0 * 60.0);
}

#[test]
fn the_human_estimate_has_a_budget_table() {
    let b = Build::bundled();
    let run = b.run(&["estimate"]);
    run.code(0);
    run.stdout_has("| Phase ")
        .stdout_has("| Foundation |")
        .stdout_has("| Total ");
    run.stdout_has("Remaining");
    // Dry run is the same command.
    let dry = b.run(&["run", "--dry-run"]);
    dry.code(0);
    assert_eq!(dry.stdout, run.stdout);
}

#[test]
fn plan_lists_phases_prompts_and_variables() {
    let b = Build::bundled();
    let run = b.run(&["plan", "--json"]);
    run.code(0);
    let v = run.json();
    let phases = v["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 3);
    let first = &phases[0]["prompts"][0];
    assert_eq!(first["id"], "01.1");
    assert_eq!(first["name"], "01.1-python-setup");
    assert_eq!(first["checkpoint"], "required");
    assert_eq!(first["tokens_hint"], 2000);
    assert!(!first["produces"].as_array().expect("produces").is_empty());
    let core = phases[1]["prompts"].as_array().expect("core");
    let ids: Vec<_> = core
        .iter()
        .map(|p| p["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids[8..11], ["02.9", "02.10", "02.11"], "numeric order");
    assert!(
        v["ignored"]
            .as_array()
            .expect("ignored")
            .iter()
            .any(|p| p.as_str().unwrap_or("").ends_with("README.md"))
    );
}

#[test]
fn order_is_numeric_and_readmes_are_ignored() {
    let b = Build::new();
    b.config("");
    for stem in ["02.10-ten", "02.9-nine", "02.1-one"] {
        b.file(
            &format!("prompts/02-core/{stem}.md"),
            prompt(stem, "do", &[]),
        );
    }
    b.file("prompts/02-core/notes.md", "not a prompt");
    b.file(
        "prompts/01-first/07-integration-testing.md",
        prompt("07-integration-testing", "x", &[]),
    );
    let run = b.run(&["plan", "--json"]);
    run.code(0);
    let v = run.json();
    let ids: Vec<_> = v["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|p| p["prompts"].as_array().cloned().unwrap_or_default())
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, ["07", "02.1", "02.9", "02.10"]);
    // Unlisted phase folders run under a name taken from the folder, with no budget.
    assert_eq!(v["phases"][0]["name"], "first");
    assert_eq!(v["phases"][0]["budget"], serde_json::Value::Null);
    run.stderr_has("not in config's [[phases]]");
}

#[test]
fn real_world_prompts_plan_and_oversized_ones_exit_3() {
    let b = Build::new();
    b.config("[budget]\nper_prompt = 3000\n[variables]\nproject_root = \"/p\"\n");
    // A seed-style small prompt that declares a variable ...
    b.file(
        "prompts/01-foundation/01.1-python-setup.md",
        prompt(
            "01.1-python-setup",
            "Create the venv under {{project_root}}.",
            &["venv_path"],
        ),
    );
    // ... and an old monolithic prompt with Python f-strings, Jinja and Actions syntax.
    let mut big = String::from("# 02 UI\n\nUse {{venv_path}}.\n\n```python\n");
    for i in 0..700 {
        big.push_str(&format!(
            "style_{i} = f\"QMainWindow {{{{ background: {{bg_{i}}}; }}}}\"  # {{{{key}}}} stays\n"
        ));
    }
    big.push_str(
        "```\n\n```yaml\nref: ${{ github.ref }}\n```\n\n```jinja\n{{ track.title }}\n```\n",
    );
    b.file("prompts/02-core/02-ui-development.md", &big);
    let plan = b.run(&["plan"]);
    plan.code(0);
    let est = b.run(&["estimate", "--json"]);
    est.code(3).stderr_has("over budget.per_prompt 3000");
    let v = est.json();
    let over: Vec<_> = v["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .filter(|p| p["over_per_prompt"] == true)
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(over, ["02"]);
    let tokens = v["prompts"][1]["input_tokens"].as_u64().expect("tokens");
    assert!((7000..=40000).contains(&tokens), "{tokens}");
}

/// A build the binary must refuse: what is in it, the command run on it, the exit code and
/// what stderr must say.
struct BadInput {
    row: &'static str,
    /// `config.toml` (none: no config file).
    config: Option<&'static str>,
    files: Vec<(&'static str, Vec<u8>)>,
    dirs: &'static [&'static str],
    args: &'static [&'static str],
    code: i32,
    stderr: &'static [&'static str],
}

impl BadInput {
    /// What this row got wrong (nothing if it passed), each line naming the row.
    fn problems(&self) -> Vec<String> {
        let b = Build::new();
        if let Some(config) = self.config {
            b.config(config);
        }
        for (rel, contents) in &self.files {
            b.file(rel, contents);
        }
        for dir in self.dirs {
            std::fs::create_dir_all(b.path().join(dir)).expect("mkdir");
        }
        let run = b.run(self.args);
        let row = self.row;
        let mut problems = Vec::new();
        if run.code != self.code {
            problems.push(format!("{row}: exit code {}, not {}", run.code, self.code));
        }
        if run.stderr.contains("panicked") || run.stderr.contains("RUST_BACKTRACE") {
            problems.push(format!("{row}: the binary panicked"));
        }
        for needle in self.stderr {
            if !run.stderr.contains(needle) {
                problems.push(format!("{row}: stderr lacks {needle:?}"));
            }
        }
        if !problems.is_empty() {
            problems.push(format!("{row}: --- stderr\n{}", run.stderr));
        }
        problems
    }
}

#[test]
fn bad_input_each_exits_with_its_code_and_names_the_place() {
    let x = || prompt("01.1-x", "x", &[]).into_bytes();
    let rows = [
        BadInput {
            row: "two files with one id",
            config: Some(ONE_PHASE),
            files: vec![
                ("prompts/01-a/01.1-x.md", x()),
                (
                    "prompts/01-a/1.1-y.md",
                    prompt("1.1-y", "y", &[]).into_bytes(),
                ),
            ],
            dirs: &[],
            args: &["plan"],
            code: 2,
            stderr: &["1.1-y.md: id 1.1 is also the id of"],
        },
        BadInput {
            row: "a placeholder nobody declares",
            config: Some(ONE_PHASE),
            files: vec![(
                "prompts/01-a/01.1-x.md",
                b"# x\n\nline two\nUse {{nobody}} here.\n".to_vec(),
            )],
            dirs: &[],
            args: &["estimate"],
            code: 2,
            stderr: &["01.1-x.md:4: placeholder {{nobody}}"],
        },
        BadInput {
            row: "a non-UTF-8 file",
            config: Some(ONE_PHASE),
            files: vec![(
                "prompts/01-a/01.1-x.md",
                b"# x\nline\n\xff\xfe bad\n".to_vec(),
            )],
            dirs: &[],
            args: &["plan"],
            code: 2,
            stderr: &["01.1-x.md:3: not UTF-8"],
        },
        BadInput {
            row: "an unknown (misspelt) config key",
            config: Some("[llm]\nmodel = \"m\"\nmax_tokenz = 10\n"),
            files: vec![("prompts/01-a/01.1-x.md", x())],
            dirs: &[],
            args: &["plan"],
            code: 2,
            stderr: &["config.toml:3", "max_tokenz"],
        },
        BadInput {
            row: "broken TOML",
            config: Some("[budget\ntotal = 5\n"),
            files: vec![],
            dirs: &[],
            args: &["estimate"],
            code: 2,
            stderr: &["config.toml:1"],
        },
        BadInput {
            row: "a missing prompts folder",
            config: Some(""),
            files: vec![],
            dirs: &[],
            args: &["plan"],
            code: 2,
            stderr: &["prompts: the prompts folder does not exist"],
        },
        BadInput {
            row: "an empty prompts folder",
            config: Some(""),
            files: vec![],
            dirs: &["prompts"],
            args: &["estimate"],
            code: 2,
            stderr: &["no prompt files found"],
        },
        BadInput {
            row: "a prompt over the per-prompt budget",
            config: Some("[budget]\nper_prompt = 50\n"),
            files: vec![(
                "prompts/01-a/01.1-x.md",
                prompt("01.1-x", &"word ".repeat(100), &[]).into_bytes(),
            )],
            dirs: &[],
            args: &["estimate"],
            code: 3,
            stderr: &["prompt 01.1 counts"],
        },
        BadInput {
            row: "a bad duration string",
            config: Some("[run]\nmax_duration = \"eight hours\"\n"),
            files: vec![],
            dirs: &[],
            args: &["plan"],
            code: 2,
            stderr: &["config.toml:2", "invalid duration \"eight hours\""],
        },
        BadInput {
            row: "a prompt beside phase folders",
            config: Some(""),
            files: vec![
                ("prompts/01.1-loose.md", b"# loose\n".to_vec()),
                ("prompts/02-a/02.1-in.md", b"# in a phase\n".to_vec()),
            ],
            dirs: &[],
            args: &["plan"],
            code: 2,
            stderr: &["01.1-loose.md", "beside phase folders"],
        },
        BadInput {
            row: "an explicit --config that does not exist",
            config: None,
            files: vec![],
            dirs: &[],
            args: &["--config", "nope.toml", "plan"],
            code: 2,
            stderr: &["nope.toml: no such file"],
        },
    ];
    // Every row runs; the failure lists each row that went wrong.
    let problems: Vec<String> = rows.iter().flat_map(BadInput::problems).collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn a_placeholder_declared_only_later_is_an_ordering_error() {
    let b = Build::new();
    b.config("");
    b.file("prompts/01-a/01.1-x.md", "# x\nUse {{later_var}}.\n");
    b.file(
        "prompts/01-a/01.2-y.md",
        prompt("01.2-y", "y", &["later_var"]),
    );
    b.run(&["plan"])
        .code(2)
        .stderr_has("only a later prompt declares");
}

#[test]
fn front_matter_sets_max_tokens_and_is_not_sent() {
    let b = Build::new();
    b.config("");
    b.file(
        "prompts/01-a/01.1-x.md",
        "+++\nmax_tokens = 123\ncheckpoint = \"optional\"\n+++\n# x\n",
    );
    let v = b.run(&["estimate", "--json"]).json();
    assert_eq!(v["prompts"][0]["max_tokens"], 123);
    let plan = b.run(&["plan", "--json"]).json();
    assert_eq!(plan["phases"][0]["prompts"][0]["checkpoint"], "optional");
    b.file(
        "prompts/01-a/01.2-y.md",
        "+++\nmax_tokens = 1\nbogus = true\n+++\n",
    );
    b.run(&["plan"])
        .code(2)
        .stderr_has("01.2-y.md:3: front matter");
}

#[test]
fn help_exits_0_and_usage_errors_exit_2() {
    let b = Build::new();
    b.run(&["--help"]).code(0).stdout_has("estimate");
    b.run(&["frobnicate"]).code(2);
    b.run(&["tokens", "--encoding", "nope"])
        .code(2)
        .stderr_has("cl100k_base");
}
