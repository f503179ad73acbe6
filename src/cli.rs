//! The command line: clap's types, turned once into [`Settings`] that the commands use
//! (they never see clap), and the one place where results become exit codes.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::commands::{self, RunRange};
use crate::config::ProviderKind;
use crate::error::{Result, exit};
use crate::printer::{self, Printer};
use crate::settings::{Locations, Settings};
use crate::tokens::Encoding;

#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Runs chains of LLM prompt files unattended, inside hard token budgets, with a checkpoint after every prompt.",
    after_help = "Exit codes: 0 done, 1 a prompt failed, 2 bad usage/config/plan/state, 3 budget, 4 time limit, 130 interrupted."
)]
pub(crate) struct Cli {
    /// The build's settings.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The prompts folder [default: prompts/ beside the config file].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) prompts: Option<PathBuf>,
    /// The state folder [default: checkpoints/ beside the config file].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) checkpoints: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout (`run`: one event per line).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print nothing but errors (and the data asked for).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Say more (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Colour on stderr: auto (a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = clap::ColorChoice::Auto)]
    pub(crate) color: clap::ColorChoice,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// Take changes found in the workspace into a commit rather than refuse to start.
        #[arg(long)]
        allow_dirty: bool,
        /// Answer with the embedded mock model (offline; see [mock] in config).
        #[arg(long)]
        mock: bool,
        /// Prompts in flight at once, with --and-after (run.jobs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: Option<u32>,
    },
    /// Progress, the token budget table and the success criteria.
    Status,
    /// Write the session as one HTML page, checkpoints/report.html (--json: its data).
    Report,
    /// Write a config.toml for a folder of prompts (or, with no folder, a first prompt and
    /// a config to start from).
    Init {
        /// The folder of prompt files: phase folders (01-foundation/) or NN-name.md files.
        dir: Option<PathBuf>,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions { shell: clap_complete::Shell },
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
pub(crate) struct RunArgs {
    /// Start at this prompt (earlier ones are left as they are).
    #[arg(long, value_name = "ID")]
    pub(crate) from: Option<String>,
    /// Stop after this prompt.
    #[arg(long, value_name = "ID")]
    pub(crate) until: Option<String>,
    /// Run only this prompt.
    #[arg(long, value_name = "ID", conflicts_with_all = ["from", "until"])]
    pub(crate) only: Option<String>,
    /// Archive the old state under checkpoints/archive/<session_id>/ and start anew.
    #[arg(long)]
    pub(crate) restart: bool,
    /// Estimate only: the same as `orchestrator estimate`.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Take changes found in the workspace into a commit rather than refuse to start.
    #[arg(long)]
    pub(crate) allow_dirty: bool,
    /// Answer with the embedded mock model: every prompt gets its own checkpoint example,
    /// offline, nothing sent (see [mock] in config).
    #[arg(long)]
    pub(crate) mock: bool,
    /// Prompts in flight at once, those whose dependencies are accepted (run.jobs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) jobs: Option<u32>,
}

/// Parses the arguments, runs the command, prints any error; returns the exit code.
pub(crate) fn main_entry() -> i32 {
    // clap's own help and errors are coloured as clap sees fit (a terminal, NO_COLOR): the
    // flag is not known until the arguments parse.
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
    let color = printer::color(cli.color);
    match run(cli, color) {
        Ok(()) => exit::OK,
        Err(e) => {
            let word = printer::paint("error:", printer::Paint::Error, color);
            printer::stderr(&format!("{word} {}", printer::clean(&e.to_string())));
            e.exit_code()
        }
    }
}

/// Turns the parsed command line into settings and runs the command.
fn run(cli: Cli, color: bool) -> Result<()> {
    let printer = Printer {
        json: cli.json,
        quiet: cli.quiet,
        verbose: cli.verbose,
        terminal: std::io::stderr().is_terminal(),
        color,
    };
    let at = Locations {
        config: cli.config,
        prompts: cli.prompts,
        checkpoints: cli.checkpoints,
    };
    match &cli.command {
        Command::Init { dir, force } => return commands::init(printer, dir.as_deref(), *force),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "orchestrator", &mut out);
            return printer.data(&String::from_utf8_lossy(&out));
        }
        _ => {}
    }
    let mut settings = Settings::load(at, printer)?;
    if matches!(&cli.command, Command::Run(a) if a.mock)
        || matches!(&cli.command, Command::Rerun { mock: true, .. })
    {
        settings.config.llm.provider = ProviderKind::Mock;
    }
    let jobs = match &cli.command {
        Command::Run(a) => a.jobs,
        Command::Rerun { jobs, .. } => *jobs,
        _ => None,
    };
    if let Some(jobs) = jobs {
        settings.config.run.jobs = jobs;
    }
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
    match cli.command {
        Command::Plan => commands::plan(&settings),
        Command::Estimate => commands::estimate(&settings),
        Command::Run(args) if args.dry_run => commands::estimate(&settings),
        Command::Run(args) => {
            let range = RunRange {
                from: args.from,
                until: args.until,
                only: args.only,
            };
            commands::run(&settings, &range, args.restart, args.allow_dirty)
        }
        Command::Rerun {
            id,
            and_after,
            allow_dirty,
            ..
        } => commands::rerun(&settings, &id, and_after, allow_dirty),
        Command::Status => commands::status(&settings),
        Command::Report => commands::report(&settings),
        Command::Init { .. } | Command::Completions { .. } => Ok(()),
        Command::Tokens { files, encoding } => {
            commands::tokens(&settings, &files, encoding.as_deref())
        }
    }
}
