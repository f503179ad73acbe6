//! The `orchestrator` binary: everything is in the library; see `cli::main_entry`.

fn main() {
    std::process::exit(orchestrator::cli::main_entry());
}
