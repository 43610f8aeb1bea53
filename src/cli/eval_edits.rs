//! `ganpaint eval-edits`: the causal check of a dissection (see
//! [`crate::dissect::causal`]). For each way of choosing units (`--ranking`: by IoU, by
//! causal effect, or the learned weights of optimized interventions) it prints a table,
//! then one JSON line `{"ranking": "…", "regions": "random|context", "concepts": {"<concept>": {"draw_gain",
//! "remove_cut", "far_change", "samples", "remove_samples", "draw_units", "remove_units",
//! "strength"}}}`.

use std::path::PathBuf;

use anyhow::Context;

use crate::dissect::causal::EditEval;
use crate::model::DeviceChoice;
use crate::project::{read_project, UnitChoice};

use super::project::{
    draw_regions, load_project_models, render_in_project_precision, DrawRegionArgs, ProjectModels,
};

#[derive(clap::Args, Debug)]
pub struct EvalEditsArgs {
    /// A dissection folder (dissect.json and levels.json), e.g. dissect/demo.
    #[arg(long)]
    project: PathBuf,
    /// The layer to paint (default: `layer4` when dissected, else the project's first).
    #[arg(long)]
    layer: Option<String>,
    /// Generator (default: the project's model, else the bundled one).
    #[arg(long)]
    generator: Option<PathBuf>,
    /// Segmenter (default: the project's, else the bundled one).
    #[arg(long)]
    segmenter: Option<PathBuf>,
    /// A TorchScript segmenter's labels (default: labels.json beside it).
    #[arg(long)]
    segmenter_labels: Option<PathBuf>,
    /// Samples per concept (image ids first-id .. first-id + samples).
    #[arg(long, default_value_t = 100)]
    samples: u64,
    /// First image id; the default keeps clear of a 2000-sample dissection's ids.
    #[arg(long, default_value_t = 10_000)]
    first_id: u64,
    /// Top units painted per concept (default: each concept and mode's tuned count from
    /// `dissect tune`, else 20, as a stroke that gives none).
    #[arg(long)]
    units: Option<usize>,
    /// Concepts to test, comma-separated (default: every ranked concept the segmenter knows).
    #[arg(long, value_delimiter = ',')]
    concepts: Vec<String>,
    /// Seed of the random regions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The level drawn: each unit's activation quantile.
    #[arg(long, default_value_t = 0.99)]
    quantile: f64,
    /// Draw strength (default: each concept's tuned one, else 1, as for `--units`).
    #[arg(long)]
    strength: Option<f32>,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// How strokes choose their units, one report each: `iou` (top units by IoU),
    /// `causal` (top units by causal effect for the mode, else IoU), `ace` (the learned
    /// weights of `dissect ace`, else as causal; skipped when the dissection has none).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "causal,ace")]
    ranking: Vec<RankingArg>,
    #[command(flatten)]
    regions: DrawRegionArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RankingArg {
    Iou,
    Causal,
    Ace,
}

impl RankingArg {
    fn choice(self) -> UnitChoice {
        match self {
            RankingArg::Iou => UnitChoice::Iou,
            RankingArg::Causal => UnitChoice::Causal,
            RankingArg::Ace => UnitChoice::Optimized,
        }
    }

    fn name(self) -> &'static str {
        match self {
            RankingArg::Iou => "iou",
            RankingArg::Causal => "causal",
            RankingArg::Ace => "ace",
        }
    }
}

pub fn run(args: EvalEditsArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let project = read_project(&args.project)
        .with_context(|| format!("reading the dissection in {}", args.project.display()))?;
    let layer = project.chosen_layer(args.layer.as_deref())?;
    let layer_name = layer.layer.clone();
    let ProjectModels {
        mut generator,
        generator_path,
        segmenter,
    } = load_project_models(
        &project,
        args.generator.as_deref(),
        "--generator",
        args.segmenter.as_deref(),
        args.segmenter_labels.as_deref(),
        device,
    )?;
    render_in_project_precision(&project, &mut generator)?;
    let concepts = if args.concepts.is_empty() {
        layer
            .concepts()
            .into_iter()
            .filter(|c| segmenter.labels().iter().any(|l| l == c))
            .map(str::to_string)
            .collect()
    } else {
        args.concepts.clone()
    };
    tracing::info!(generator = %generator_path.display(), layer = %layer_name, ?concepts, samples = args.samples, "evaluating edits");
    let classes: Vec<i64> = concepts
        .iter()
        .filter_map(|c| segmenter.labels().iter().position(|l| l == c))
        .map(|c| c as i64)
        .collect();
    let profiles = args.regions.profiles(
        &generator,
        segmenter.as_ref(),
        &layer_name,
        &classes,
        args.batch,
    )?;
    let has_learned = layer.rankings.iter().any(|r| {
        concepts.contains(&r.concept)
            && (r.metric == crate::dissect::optimize::DRAW_METRIC
                || r.metric == crate::dissect::optimize::REMOVE_METRIC)
    });
    for ranking in &args.ranking {
        if *ranking == RankingArg::Ace && !has_learned {
            eprintln!(
                "ace: the dissection has no learned edits for these concepts (run `ganpaint dissect ace`); skipped"
            );
            continue;
        }
        let eval = EditEval {
            generator: &generator,
            segmenter: segmenter.as_ref(),
            layer,
            concepts: concepts.clone(),
            samples: args.samples,
            first_id: args.first_id,
            units: args.units,
            quantile: args.quantile,
            strength: args.strength,
            remove: true,
            seed: args.seed,
            batch: args.batch,
            choice: ranking.choice(),
            draw_regions: draw_regions(&profiles),
        };
        let bar = super::progress_bar(
            args.samples,
            &format!("paint and segment ({})", ranking.name()),
        );
        let started = std::time::Instant::now();
        let report = eval.run(&mut |n| bar.inc(n))?;
        bar.finish();
        println!(
            "{:<10} | {:>5} {:>5} {:>7} {:>7} {:>9} | {:>5} {:>7} {:>7} {:>7} {:>10} | {:>8} {:>8} {:>10}",
            "concept",
            "units",
            "str",
            "before",
            "drawn",
            "draw_gain",
            "units",
            "present",
            "before",
            "removed",
            "remove_cut",
            "far draw",
            "far rm",
            "far_change"
        );
        for (concept, e) in &report.concepts {
            let cut = e.remove_cut.map_or("-".to_string(), |c| format!("{c:.3}"));
            println!(
                "{concept:<10} | {:>5} {:>5.2} {:>7.3} {:>7.3} {:>+9.3} | {:>5} {:>7} {:>7.3} {:>7.3} {cut:>10} | {:>8.4} {:>8.4} {:>10.4}",
                e.units.len(),
                e.strength,
                e.draw_before,
                e.draw_after,
                e.draw_gain,
                e.remove_units,
                e.remove_samples,
                e.remove_before,
                e.remove_after,
                e.far_change_draw,
                e.far_change_remove,
                e.far_change
            );
        }
        println!(
            "shares are of the region's pixels; `present` samples (share ≥ {}) are the ones removed from",
            crate::dissect::causal::PRESENT_SHARE
        );
        let count = args.units.map_or_else(
            || "as tuned per concept and mode (else 20)".to_string(),
            |n| format!("at most {n}"),
        );
        println!(
            "({} samples, 3×3-cell regions of {layer_name} ({} for draws), units by {}: {count} at the {} level, {:.1} s)",
            args.samples,
            args.regions.name(),
            ranking.name(),
            args.quantile,
            started.elapsed().as_secs_f64()
        );
        let mut json = serde_json::to_value(&report)?;
        json["ranking"] = ranking.name().into();
        json["regions"] = args.regions.name().into();
        println!("{}", serde_json::to_string(&json)?);
    }
    Ok(())
}
