//! The command line: one file per subcommand. `anyhow` lives here and in `main` only.

mod generate;
pub mod ids;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ganpaint",
    version,
    about = "GANPaint: paint concepts into GAN-generated scenes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate images by GAN Dissection id (or seed) and write them as PNG.
    Generate(generate::GenerateArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A progress bar on stderr for long CLI jobs.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
