//! `ganpaint dissect`: unit–concept statistics of generator layers, and
//! `ganpaint dissect merge`, which combines shards. See [`crate::dissect`] for the method
//! and the files.
//!
//! ```text
//! ganpaint dissect --out dissect/demo [--model M] [--segmenter S] [--layer layer4]…
//!                  [--samples 2000] [--seed 0] [--quantile 0.99] [--batch 32]
//!                  [--shard i/n] [--thresholds DIR]
//! ganpaint dissect merge DIR… --out DIR
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::dissect::collect::{collect_counts, collect_sketches};
use crate::dissect::output::{
    dissect_json, read_layer_sketches, write_json, write_layer_sketches, write_levels, Coverage,
    LayerStats, Round, StatsFile,
};
use crate::dissect::quantile::DEFAULT_CAPACITY;
use crate::dissect::report::{
    strip_samples, timing_text, write_report, write_unit_strips, ReportInfo,
};
use crate::dissect::Shard;
use crate::model::{repo_path, DeviceChoice, Precision, ProgGan, DEFAULT_MODEL};
use crate::project::{resolve_setting_path, setting_path, LevelTable, Settings, DISSECT_FILE};
use crate::segment::ScorePrecision;

use super::eval_demo::DEFAULT_SEGMENTER;
use super::project::{load_model, load_segmenter, rewrite_report, sized_segmenter};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DissectArgs {
    #[command(subcommand)]
    command: Option<DissectCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand, Debug)]
enum DissectCommand {
    /// Combine shard folders: sketches into thresholds, or counts into the final dissection.
    Merge(MergeArgs),
    /// Add causal rankings (which units draw or remove each concept) to a dissection.
    Causal(super::dissect_causal::CausalArgs),
    /// Learn optimized interventions (one weight per unit, per concept and mode) and add
    /// them to a dissection as `<concept>-ace-draw` / `-ace-remove` rankings.
    Ace(Box<super::dissect_ace::AceArgs>),
    /// Tune each concept's strokes: the units and draw strength that paint it best
    /// within a budget of change far from the brush, written to dissect.json as the
    /// defaults of strokes that give none.
    Tune(Box<super::dissect_tune::TuneArgs>),
    /// Rewrite a dissection's dissect.html from its dissect.json and stats.json (after
    /// rankings were added or edited by hand).
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// The dissection's folder.
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Generator weights (.pth or .safetensors). Defaults to the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Segmenter: the demo segmenter's .safetensors, or a TorchScript module (input
    /// N×3×H×W in [-1, 1], output N×C×h×w scores) with its labels in a JSON array.
    #[arg(long)]
    segmenter: Option<PathBuf>,
    /// The TorchScript segmenter's labels (default: labels.json beside the module).
    #[arg(long)]
    segmenter_labels: Option<PathBuf>,
    /// Layer to dissect (repeatable).
    #[arg(long = "layer", default_values_t = ["layer4".to_string()])]
    layers: Vec<String>,
    /// Samples (image ids seed·samples .. (seed+1)·samples).
    #[arg(long, default_value_t = 2000)]
    samples: u64,
    /// Picks the sample ids: sample j is id seed·samples + j, so seeds never overlap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Activation quantile that thresholds each unit.
    #[arg(long, default_value_t = 0.99)]
    quantile: f64,
    /// Samples per batch. Shards are whole batches, so every shard of one dissection
    /// needs the same value.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Process only batches b ≡ i (mod n). Without --thresholds this is round 1
    /// (sketches); with it, round 2 (counts).
    #[arg(long)]
    shard: Option<Shard>,
    /// A merged round-1 folder whose thresholds and levels to use (skips the sketch pass).
    #[arg(long)]
    thresholds: Option<PathBuf>,
    /// Output folder, e.g. dissect/demo.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// The dissection's name (netname). Defaults to the output folder's name.
    #[arg(long)]
    name: Option<String>,
    /// Values kept per level of each unit's quantile sketch.
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    sketch_capacity: usize,
    /// Segment images larger than this many pixels a side scaled down to it, with the
    /// labels scaled back, as GAN Dissection segments its 256² images at 128². Every
    /// segmentation costs about a quarter at half the side. Recorded in dissect.json: the
    /// project's later passes (causal, ace, tune, eval-edits, figure, invert) segment the
    /// same way.
    #[arg(long)]
    segment_size: Option<usize>,
    /// The arithmetic the demo segmenter labels in, for this pass and the project's later
    /// ones (recorded in dissect.json). Default: the fastest this device has (bf16 on CPUs
    /// with AMX or AVX-512-BF16, f16 on CUDA, otherwise f32). A TorchScript segmenter
    /// always runs as it was saved (f32).
    #[arg(long, value_enum)]
    segment_precision: Option<ScorePrecision>,
    /// How the generator computes in this pass and the project's later ones that only
    /// render (`causal`, `tune`, `eval-edits`, `figure`), recorded in dissect.json. `fast`
    /// is the server's plan in the kind this device has (recorded as that kind);
    /// `exact` is the reference arithmetic.
    #[arg(long, value_enum, default_value_t = Precision::Fast)]
    render_precision: Precision,
    /// Skip the unit images (and the images in the report).
    #[arg(long)]
    no_images: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Causal rankings, added when the run is complete (see `ganpaint dissect causal`).
    #[command(flatten)]
    causal: super::dissect_causal::CausalOptions,
}

#[derive(clap::Args, Debug)]
struct MergeArgs {
    /// Shard folders, all from round 1 (sketches) or all from round 2 (counts).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Output folder: thresholds (round 1), the final dissection (round 2, all shards), or
    /// a partial merge to merge again later.
    #[arg(long)]
    out: PathBuf,
    /// The dissection's name (netname). Defaults to the output folder's name.
    #[arg(long)]
    name: Option<String>,
    /// The generator for the unit images (default: the one in the shards' settings).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Skip the unit images (and the images in the report).
    #[arg(long)]
    no_images: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

pub fn run(args: DissectArgs) -> anyhow::Result<()> {
    match args.command {
        Some(DissectCommand::Merge(merge)) => run_merge(merge),
        Some(DissectCommand::Causal(causal)) => super::dissect_causal::run(causal),
        Some(DissectCommand::Ace(ace)) => super::dissect_ace::run(*ace),
        Some(DissectCommand::Tune(tune)) => super::dissect_tune::run(*tune),
        Some(DissectCommand::Report(report)) => {
            let path = rewrite_report(&report.dir)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        None => run_dissect(args.run),
    }
}

fn dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map_or_else(|| "dissection".into(), |n| n.to_string_lossy().into_owned())
}

fn run_dissect(args: RunArgs) -> anyhow::Result<()> {
    let out = args.out.clone().expect("clap requires --out");
    let device = args.device.resolve()?;
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| repo_path(DEFAULT_MODEL));
    let segmenter_path = args
        .segmenter
        .clone()
        .unwrap_or_else(|| repo_path(DEFAULT_SEGMENTER));
    let mut layers = Vec::new();
    for layer in &args.layers {
        if !layers.contains(layer) {
            layers.push(layer.clone());
        }
    }
    let settings = Settings {
        model: setting_path(&model_path),
        segmenter: setting_path(&segmenter_path),
        layers,
        samples: args.samples,
        seed: args.seed,
        quantile: args.quantile,
        batch: args.batch,
        sketch_capacity: args.sketch_capacity,
        segment_size: args.segment_size,
        segment_precision: Some(if crate::segment::is_demo_segmenter(&segmenter_path) {
            args.segment_precision
                .unwrap_or_else(|| ScorePrecision::fastest(device))
        } else {
            if args
                .segment_precision
                .is_some_and(|p| p != ScorePrecision::F32)
            {
                bail!(
                    "--segment-precision: {} is a TorchScript segmenter, which runs as it was saved; leave the flag out or pass f32",
                    segmenter_path.display()
                );
            }
            ScorePrecision::F32
        }),
        render_precision: Some(args.render_precision.on(device)),
    };
    settings.validate()?;
    let mut model = load_model(&model_path, device)?;
    model.set_precision(settings.render_precision.unwrap_or(Precision::Exact))?;
    let mut shapes = Vec::new();
    for layer in &settings.layers {
        let (c, h, w) = model.layer_shape(layer)?;
        shapes.push([c, h, w]);
    }
    tracing::info!(model = %model_path.display(), ?device, layers = ?settings.layers, samples = settings.samples, "dissecting");
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let shard_samples: u64 = shard
        .batches(settings.samples, settings.batch)
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let _guard = tch::no_grad_guard();

    // Pass 1, or the thresholds of an earlier one.
    let mut stats = StatsFile::new(Round::Counts, settings.clone(), Coverage::of(shard));
    let tables: Vec<LevelTable> = match &args.thresholds {
        Some(dir) => {
            let given = StatsFile::read(dir)?;
            check_same_settings(&settings, &given.settings, dir)?;
            if !given.shards.is_complete() || given.round == Round::Sketches {
                bail!(
                    "{} holds no final thresholds (round `{:?}`, shards {:?} of {}): merge all round-1 shards first",
                    dir.display(),
                    given.round,
                    given.shards.done,
                    given.shards.count
                );
            }
            stats.timing.sketch_seconds = given.timing.sketch_seconds;
            settings
                .layers
                .iter()
                .map(|layer| {
                    given.layer(layer)?.levels.clone().ok_or_else(|| {
                        anyhow::anyhow!("{} has no levels for `{layer}`", dir.display())
                    })
                })
                .collect::<anyhow::Result<_>>()?
        }
        None => {
            let started = Instant::now();
            let bar = super::progress_bar(shard_samples, "sketch activations");
            let sketches = collect_sketches(&model, &settings, shard, &mut |n| bar.inc(n))?;
            bar.finish();
            let seconds = started.elapsed().as_secs_f64();
            if args.shard.is_some() {
                // Round 1: keep the sketches for the merge; counting waits for global thresholds.
                let mut stats =
                    StatsFile::new(Round::Sketches, settings.clone(), Coverage::of(shard));
                stats.timing.sketch_seconds = seconds;
                for ((layer, sketches), shape) in settings.layers.iter().zip(&sketches).zip(&shapes)
                {
                    write_layer_sketches(&out, layer, sketches)?;
                    stats.layers.push(LayerStats {
                        layer: layer.clone(),
                        shape: *shape,
                        levels: None,
                        counts: None,
                        top: None,
                    });
                }
                stats.write(&out)?;
                println!(
                    "shard {shard}: sketched {shard_samples} samples in {seconds:.1} s ({:.2} ms per sample); wrote {}",
                    1000.0 * seconds / shard_samples.max(1) as f64,
                    out.display()
                );
                println!(
                    "next: ganpaint dissect merge <all round-1 folders> --out <thresholds folder>"
                );
                return Ok(());
            }
            stats.timing.sketch_seconds = seconds;
            sketches
                .iter()
                .map(|s| LevelTable::from_sketches(s, settings.quantile))
                .collect()
        }
    };

    // Pass 2.
    let segmenter = sized_segmenter(
        load_segmenter(
            &segmenter_path,
            args.segmenter_labels.as_deref(),
            device,
            settings.segment_precision.unwrap_or(ScorePrecision::F32),
        )?,
        settings.segment_size,
    );
    let started = Instant::now();
    let thresholds: Vec<Vec<f32>> = tables.iter().map(|t| t.thresholds.clone()).collect();
    let bar = super::progress_bar(shard_samples, "count IoU");
    let tallies = collect_counts(
        &model,
        segmenter.as_ref(),
        &settings,
        shard,
        &thresholds,
        &mut |n| bar.inc(n),
    )?;
    bar.finish();
    stats.timing.count_seconds = started.elapsed().as_secs_f64();
    stats.labels = segmenter.labels().to_vec();
    for (((layer, tally), table), shape) in
        settings.layers.iter().zip(tallies).zip(tables).zip(&shapes)
    {
        stats.layers.push(LayerStats {
            layer: layer.clone(),
            shape: *shape,
            levels: Some(table),
            counts: Some(tally.counts),
            top: Some(tally.top),
        });
    }
    if stats.shards.is_complete() {
        let name = args.name.clone().unwrap_or_else(|| dir_name(&out));
        finish(&out, &name, &stats, (!args.no_images).then_some(&model))?;
        super::dissect_causal::add_causal_rankings(&out, &model, segmenter.as_ref(), &args.causal)
    } else {
        stats.write(&out)?;
        println!(
            "shard {shard}: counted {shard_samples} samples in {:.1} s; wrote {}",
            stats.timing.count_seconds,
            out.display()
        );
        println!("next: ganpaint dissect merge <all round-2 folders> --out <final folder>");
        Ok(())
    }
}

/// Writes the complete dissection: stats, levels, dissect.json, unit images, report.
fn finish(
    out: &Path,
    name: &str,
    stats: &StatsFile,
    model: Option<&ProgGan>,
) -> anyhow::Result<()> {
    stats.write(out)?;
    write_levels(out, stats)?;
    let dissect = dissect_json(name, stats)?;
    write_json(&out.join(DISSECT_FILE), &dissect)?;
    if let Some(model) = model {
        let bar = super::progress_bar(strip_samples(stats), "unit images");
        let bytes = write_unit_strips(model, stats, out, &mut |n| bar.inc(n))?;
        bar.finish();
        tracing::info!(kib = bytes / 1024, "wrote unit images");
    }
    write_report(
        out,
        &dissect,
        stats,
        &ReportInfo {
            images: model.is_some(),
        },
    )?;
    for layer in &dissect.layers {
        let interpretable = layer.units.iter().filter(|u| u.interp).count();
        println!(
            "{}: {interpretable} of {} units have IoU > {}",
            layer.layer,
            layer.units.len(),
            dissect.iou_threshold
        );
        let mut best: Vec<(f64, &str, usize)> = layer
            .rankings
            .iter()
            .filter(|r| r.metric == "iou")
            .map(|r| {
                let (unit, score) = r
                    .score
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .map_or((0, 0.0), |(u, &s)| (u, s));
                (0.0 - score, r.concept.as_str(), unit)
            })
            .collect();
        best.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!("  {:<12} {:>8} {:>6}", "concept", "best IoU", "unit");
        for (iou, concept, unit) in best {
            println!("  {concept:<12} {iou:>8.3} {unit:>6}");
        }
    }
    println!("time: {}", timing_text(stats));
    println!("wrote {}", out.display());
    Ok(())
}

/// Names every setting that differs.
fn check_same_settings(expected: &Settings, found: &Settings, dir: &Path) -> anyhow::Result<()> {
    if expected == found {
        return Ok(());
    }
    let (a, b) = (
        serde_json::to_value(expected)?,
        serde_json::to_value(found)?,
    );
    let differences: Vec<String> = a
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, value)| b.get(key.as_str()) != Some(value))
        .map(|(key, value)| {
            format!(
                "{key}: {value} here, {} in {}",
                b[key.as_str()],
                dir.display()
            )
        })
        .collect();
    bail!("settings differ: {}", differences.join("; "))
}

fn run_merge(args: MergeArgs) -> anyhow::Result<()> {
    let mut inputs: Vec<(PathBuf, StatsFile)> = args
        .dirs
        .iter()
        .map(|dir| Ok((dir.clone(), StatsFile::read(dir)?)))
        .collect::<anyhow::Result<_>>()?;
    // Merge in shard order, whatever the argument order: sketches are then identical.
    inputs.sort_by_key(|(_, s)| s.shards.done.first().copied());
    let (first_dir, first) = &inputs[0];
    let mut coverage = first.shards.clone();
    for (dir, stats) in &inputs[1..] {
        check_same_settings(&first.settings, &stats.settings, dir)?;
        if stats.round != first.round {
            bail!(
                "{} is round `{:?}` but {} is `{:?}`: merge round-1 and round-2 folders separately",
                dir.display(),
                stats.round,
                first_dir.display(),
                first.round
            );
        }
        coverage
            .add(&stats.shards)
            .with_context(|| format!("adding {}", dir.display()))?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let settings = first.settings.clone();
    match first.round {
        Round::Thresholds => bail!(
            "{} already holds merged thresholds: pass it to round 2 as --thresholds",
            first_dir.display()
        ),
        Round::Sketches => {
            let complete = coverage.is_complete();
            let round = if complete {
                Round::Thresholds
            } else {
                Round::Sketches
            };
            let mut merged = StatsFile::new(round, settings.clone(), coverage.clone());
            merged.timing.sketch_seconds =
                inputs.iter().map(|(_, s)| s.timing.sketch_seconds).sum();
            for layer in &first.layers {
                let mut sketches = read_layer_sketches(first_dir, &layer.layer)?;
                for (dir, _) in &inputs[1..] {
                    let more = read_layer_sketches(dir, &layer.layer)?;
                    if more.len() != sketches.len() {
                        bail!(
                            "{} has {} sketches for `{}`, expected {}",
                            dir.display(),
                            more.len(),
                            layer.layer,
                            sketches.len()
                        );
                    }
                    for (a, b) in sketches.iter_mut().zip(&more) {
                        a.merge(b)?;
                    }
                }
                write_layer_sketches(&args.out, &layer.layer, &sketches)?;
                merged.layers.push(LayerStats {
                    layer: layer.layer.clone(),
                    shape: layer.shape,
                    levels: complete
                        .then(|| LevelTable::from_sketches(&sketches, settings.quantile)),
                    counts: None,
                    top: None,
                });
            }
            merged.write(&args.out)?;
            if complete {
                write_levels(&args.out, &merged)?;
                for layer in &merged.layers {
                    let table = layer.levels.as_ref().expect("complete");
                    println!(
                        "{}: thresholds from {} values per unit; rank error ≤ {:.5} (≤ {:.5} at the thresholds)",
                        layer.layer, table.values, table.rank_error, table.threshold_rank_error
                    );
                }
                println!("wrote thresholds to {}", args.out.display());
                println!(
                    "next: ganpaint dissect --shard i/{} --thresholds {} --out <round-2 folder i> (same settings)",
                    coverage.count,
                    args.out.display()
                );
            } else {
                print_partial(&coverage, &args.out);
            }
            Ok(())
        }
        Round::Counts => {
            let mut merged = first.clone();
            merged.shards = coverage.clone();
            for (dir, stats) in &inputs[1..] {
                if stats.labels != merged.labels {
                    bail!(
                        "{} was segmented with other labels than {}",
                        dir.display(),
                        first_dir.display()
                    );
                }
                merged.timing.count_seconds += stats.timing.count_seconds;
                for (mine, theirs) in merged.layers.iter_mut().zip(&stats.layers) {
                    let same_thresholds = match (&mine.levels, &theirs.levels) {
                        (Some(a), Some(b)) => {
                            a.thresholds.len() == b.thresholds.len()
                                && a.thresholds
                                    .iter()
                                    .zip(&b.thresholds)
                                    .all(|(x, y)| x.to_bits() == y.to_bits())
                        }
                        _ => false,
                    };
                    if mine.layer != theirs.layer || !same_thresholds {
                        bail!(
                            "{} counted `{}` with other thresholds than {}: all round-2 shards need the same --thresholds",
                            dir.display(),
                            theirs.layer,
                            first_dir.display()
                        );
                    }
                    match (&mut mine.counts, &theirs.counts, &mut mine.top, &theirs.top) {
                        (Some(a), Some(b), Some(ta), Some(tb)) => {
                            a.merge(b)?;
                            ta.merge(tb)?;
                        }
                        _ => bail!("{} lacks counts for `{}`", dir.display(), theirs.layer),
                    }
                }
            }
            if coverage.is_complete() {
                let name = args.name.clone().unwrap_or_else(|| dir_name(&args.out));
                let model = if args.no_images {
                    None
                } else {
                    let path = args
                        .model
                        .clone()
                        .unwrap_or_else(|| resolve_setting_path(&settings.model));
                    Some(load_model(&path, args.device.resolve()?)?)
                };
                let _guard = tch::no_grad_guard();
                finish(&args.out, &name, &merged, model.as_ref())
            } else {
                merged.write(&args.out)?;
                print_partial(&coverage, &args.out);
                Ok(())
            }
        }
    }
}

/// Reports a merge that does not cover every shard yet.
fn print_partial(coverage: &Coverage, out: &Path) {
    println!(
        "merged shards {:?} of {} (missing {:?}) into {}",
        coverage.done,
        coverage.count,
        coverage.missing(),
        out.display()
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn dissect_parses_with_and_without_the_merge_subcommand() {
        let cli =
            Cli::try_parse_from(["ganpaint", "dissect", "--out", "o", "--shard", "1/3"]).unwrap();
        let Command::Dissect(args) = cli.command else {
            panic!("not dissect")
        };
        assert!(args.command.is_none());
        assert_eq!(args.run.shard.unwrap().to_string(), "1/3");
        assert_eq!(args.run.layers, vec!["layer4"]);

        let cli =
            Cli::try_parse_from(["ganpaint", "dissect", "merge", "a", "b", "--out", "c"]).unwrap();
        let Command::Dissect(args) = cli.command else {
            panic!("not dissect")
        };
        let Some(super::DissectCommand::Merge(merge)) = args.command else {
            panic!("not merge")
        };
        assert_eq!(merge.dirs.len(), 2);

        assert!(
            Cli::try_parse_from(["ganpaint", "dissect"]).is_err(),
            "--out is required"
        );
        assert!(
            Cli::try_parse_from(["ganpaint", "dissect", "--out", "o", "--shard", "3/3"]).is_err()
        );
    }
}
