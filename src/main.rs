//! The `ganpaint` command: parse the CLI, start logging, dispatch to `cli::*`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    ganpaint::model::keep_freed_memory();
    ganpaint::model::fit_threads_to_cpus();
    let cli = ganpaint::cli::Cli::parse();
    ganpaint::cli::init_tracing();
    ganpaint::cli::run(cli)
}
