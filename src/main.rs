//! The `orchestrator` binary: everything is in the library; see `orchestrator::main_entry`.

fn main() {
    std::process::exit(orchestrator::main_entry());
}
