//! The command line: one file per subcommand. `anyhow` lives here and in `main` only.

mod bench;
mod dissect;
mod dissect_ace;
mod dissect_causal;
mod dissect_tune;
mod eval_demo;
mod eval_edits;
mod figure;
mod generate;
pub mod ids;
mod invert;
mod project;
mod serve;
mod train_demo;

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
    /// Serve the editor and its APIs (gandissect-compatible and native) on port 5001.
    Serve(crate::serve::ServeConfig),
    /// Dissect a generator layer: unit–concept IoU, rankings, levels, dissect.json, report.
    Dissect(dissect::DissectArgs),
    /// Causal check: paint each concept's top units and measure the segmented change.
    EvalEdits(eval_edits::EvalEditsArgs),
    /// A before/after picture of drawing and removing concepts on a few images.
    Figure(figure::FigureArgs),
    /// Measure the demo models: segmenter IoU, realism statistics, sample grids.
    EvalDemo(eval_demo::EvalDemoArgs),
    /// Train the bundled demo models on procedurally rendered scenes.
    TrainDemo(train_demo::TrainDemoArgs),
    /// Invert a picture (encoder, optimisation, adaptation) so it can be painted on.
    Invert(invert::InvertArgs),
    /// Edit latency, throughput and HTTP load, side by side with PyTorch eager.
    Bench(bench::BenchArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Serve(config) => serve::run(config),
        Command::TrainDemo(args) => train_demo::run(args),
        Command::EvalDemo(args) => eval_demo::run(args),
        Command::Dissect(args) => dissect::run(args),
        Command::EvalEdits(args) => eval_edits::run(args),
        Command::Figure(args) => figure::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Invert(args) => invert::run(args),
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

pub use crate::progress::progress_bar;
