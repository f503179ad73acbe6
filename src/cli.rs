//! The command line: clap types, turned once into [`Settings`] that the rest of the program
//! uses, and the one place where results become output and exit codes.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::budget;
use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::plan::Plan;
use crate::report;
use crate::request::RequestBuilder;
use crate::tokens::Encoding;

#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Runs chains of LLM prompt files unattended, inside hard token budgets, with a checkpoint after every prompt.",
    after_help = "Exit codes: 0 done, 1 a prompt failed, 2 bad usage/config/plan/state, 3 budget, 4 time limit, 130 interrupted."
)]
pub struct Cli {
    /// The build's settings.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The prompts folder [default: prompts/ beside the config file].
    #[arg(long, global = true, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// The state folder [default: checkpoints/ beside the config file].
    #[arg(long, global = true, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout (`run`: one event per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (and the data asked for).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List phases and prompts in order, with ids, metadata and variables.
    Plan,
    /// Count every request against the budgets; sends nothing.
    Estimate,
    /// Resume the session in checkpoints/ (or start one) and run what is left.
    Run(RunArgs),
    /// Run one prompt again with the variables of the prompts before it.
    Rerun {
        /// The prompt's id (02.3), name or file name.
        id: String,
        /// Also re-run every prompt after it.
        #[arg(long)]
        and_after: bool,
    },
    /// Progress, the token budget table and the success criteria.
    Status,
    /// Count the tokens of files (or stdin) as Python tiktoken's encode_ordinary does.
    Tokens {
        /// Files to count; none, or `-`, reads stdin.
        files: Vec<PathBuf>,
        /// cl100k_base, o200k_base, o200k_harmony, p50k_base, p50k_edit or r50k_base
        /// [default: config's, else chosen from the model name].
        #[arg(long, value_name = "NAME")]
        encoding: Option<String>,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// Start at this prompt (earlier ones are left as they are).
    #[arg(long, value_name = "ID")]
    pub from: Option<String>,
    /// Stop after this prompt.
    #[arg(long, value_name = "ID")]
    pub until: Option<String>,
    /// Run only this prompt.
    #[arg(long, value_name = "ID", conflicts_with_all = ["from", "until"])]
    pub only: Option<String>,
    /// Archive the old state under checkpoints/archive/<session_id>/ and start anew.
    #[arg(long)]
    pub restart: bool,
    /// Estimate only: the same as `orchestrator estimate`.
    #[arg(long)]
    pub dry_run: bool,
}

/// Validated settings: what every command works from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub config_path: PathBuf,
    pub config_dir: PathBuf,
    pub prompts: PathBuf,
    pub checkpoints: PathBuf,
    pub output: Output,
}

/// How to talk to the user.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// stderr is a terminal (progress bars) rather than a log.
    pub terminal: bool,
}

impl Output {
    /// A warning, on stderr, unless quiet.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }

    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("note: {message}");
        }
    }
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Result<Settings> {
        let explicit = cli.config.is_some();
        let config_path = cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("config.toml"));
        let config = Config::load(&config_path, explicit)?;
        let config_dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(Settings {
            prompts: cli
                .prompts
                .clone()
                .unwrap_or_else(|| config_dir.join("prompts")),
            checkpoints: cli
                .checkpoints
                .clone()
                .unwrap_or_else(|| config_dir.join("checkpoints")),
            config,
            config_path,
            config_dir,
            output: Output {
                json: cli.json,
                quiet: cli.quiet,
                verbose: cli.verbose,
                terminal: std::io::stderr().is_terminal(),
            },
        })
    }

    pub fn load_plan(&self) -> Result<Plan> {
        let plan = Plan::load(&self.prompts, &self.config)?;
        for note in &plan.notes {
            self.output.note(note);
        }
        Ok(plan)
    }
}

/// Parses the arguments, runs the command, prints any error; returns the exit code.
pub fn main_entry() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    if let Command::Tokens { files, encoding } = &cli.command {
        // `tokens` needs no plan, and a config only for its encoding.
        let settings = Settings::from_cli(&cli)?;
        return tokens(&settings, files, encoding.as_deref());
    }
    let settings = Settings::from_cli(&cli)?;
    if matches!(
        cli.command,
        Command::Estimate | Command::Run(_) | Command::Rerun { .. }
    ) {
        // Loading the encoding (~40 ms for cl100k) overlaps reading the plan and state.
        let encoding = settings
            .config
            .tokenizer
            .encoding
            .unwrap_or_else(|| Encoding::for_model(settings.config.llm.model()));
        std::thread::spawn(move || encoding.count("warm up"));
    }
    match &cli.command {
        Command::Plan => {
            let plan = settings.load_plan()?;
            if settings.output.json {
                print(
                    &serde_json::to_string_pretty(&report::plan_json(&plan)).unwrap_or_default(),
                )?;
            } else {
                print(&report::plan_text(&plan))?;
            }
            Ok(exit::OK)
        }
        Command::Estimate => estimate(&settings),
        Command::Run(args) if args.dry_run => estimate(&settings),
        Command::Run(args) => crate::runner::run_command(&settings, args),
        Command::Rerun { id, and_after } => crate::runner::rerun_command(&settings, id, *and_after),
        Command::Status => crate::runner::status_command(&settings),
        Command::Tokens { .. } => unreachable!("handled above"),
    }
}

fn estimate(settings: &Settings) -> Result<i32> {
    let plan = settings.load_plan()?;
    let builder = RequestBuilder::new(&settings.config, &plan, &settings.config_dir)?;
    let state = crate::state::Snapshot::read_if_any(&settings.checkpoints)?;
    let e = budget::estimate(
        &plan,
        &settings.config,
        &builder,
        &|i| {
            state
                .as_ref()
                .and_then(|s| s.variables_of(&plan.prompts[i]))
        },
        &|i| state.as_ref().and_then(|s| s.spent_on(&plan.prompts[i])),
    )?;
    if settings.output.json {
        print(&serde_json::to_string_pretty(&report::estimate_json(&e)).unwrap_or_default())?;
    } else {
        print(&report::estimate_text(&e))?;
    }
    for p in e
        .phases
        .iter()
        .filter(|p| p.worst_case_over && !p.over_budget)
    {
        settings.output.warn(&format!(
            "phase {}: the worst case ({} tokens) is over its budget ({}); the run caps max_tokens to what remains",
            p.name,
            p.worst_case_tokens,
            p.budget.unwrap_or_default()
        ));
    }
    if e.over_budget {
        let mut reasons = Vec::new();
        for p in e.prompts.iter().filter(|p| p.over_per_prompt) {
            reasons.push(format!(
                "prompt {} counts {} tokens, over budget.per_prompt {}",
                p.id, p.input_tokens, e.per_prompt
            ));
        }
        for p in e.phases.iter().filter(|p| p.over_budget) {
            reasons.push(format!(
                "phase {}: inputs alone count {} tokens, over its budget {}",
                p.name,
                p.input_tokens,
                p.budget.unwrap_or_default()
            ));
        }
        if e.total.over_budget {
            reasons.push(format!(
                "inputs alone count {} tokens, over budget.total {}",
                e.total.input_tokens, e.total.budget
            ));
        }
        eprintln!("error: over budget:\n  {}", reasons.join("\n  "));
        return Ok(exit::BUDGET);
    }
    Ok(exit::OK)
}

fn tokens(settings: &Settings, files: &[PathBuf], encoding: Option<&str>) -> Result<i32> {
    let encoding = match encoding {
        Some(name) => Encoding::from_name(name).ok_or_else(|| {
            Error::Usage(format!(
                "--encoding {name:?} is not an encoding; use one of {}",
                Encoding::ALL.map(Encoding::name).join(", ")
            ))
        })?,
        None => settings
            .config
            .tokenizer
            .encoding
            .unwrap_or_else(|| Encoding::for_model(settings.config.llm.model())),
    };
    let stdin = PathBuf::from("-");
    let files: Vec<&PathBuf> = if files.is_empty() {
        vec![&stdin]
    } else {
        files.iter().collect()
    };
    let mut counts = Vec::new();
    for file in files {
        let (name, bytes) = if file.as_path() == Path::new("-") {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("<stdin>", e))?;
            ("<stdin>".to_string(), buf)
        } else {
            let bytes = std::fs::read(file).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory => Error::Usage(
                    format!("{}: {e}; give `tokens` files to count", file.display()),
                ),
                _ => Error::io(file, e),
            })?;
            (file.display().to_string(), bytes)
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::Usage(format!(
                "{name}: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        counts.push((name, encoding.count(&text)));
    }
    if settings.output.json {
        let v: Vec<_> = counts
            .iter()
            .map(|(f, t)| serde_json::json!({"file": f, "tokens": t}))
            .collect();
        print(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    } else {
        let total: u64 = counts.iter().map(|c| c.1).sum();
        let many = counts.len() > 1;
        let mut rows: Vec<Vec<String>> = counts
            .into_iter()
            .map(|(f, t)| vec![f, report::thousands(t)])
            .collect();
        if many {
            rows.push(vec!["Total".into(), report::thousands(total)]);
        }
        print(&report::table(
            &["File", &format!("Tokens ({encoding})")],
            rows,
            &[1],
        ))?;
    }
    Ok(exit::OK)
}

/// Writes data to stdout. A closed pipe (`orchestrator plan | head`) is not an error.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("<stdout>", e)),
        Ok(()) => Ok(()),
    }
}
