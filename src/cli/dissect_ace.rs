//! `ganpaint dissect ace DIR`: learns optimized interventions ([`crate::dissect::optimize`])
//! for a finished dissection, one per concept and mode, and writes them into
//! `DIR/dissect.json` as rankings `<concept>-ace-draw` and `<concept>-ace-remove` (score
//! `−weight`), replacing earlier ones. Painting (the server, the UI, `eval-edits`) uses
//! their weights when they are there. The file is edited as JSON, so every other field
//! stays as it was.

use std::path::PathBuf;

use anyhow::Context;

use crate::dissect::optimize::{OptimizeEdit, DRAW_METRIC, REMOVE_METRIC};
use crate::edit::StrokeMode;

use super::project::{
    chosen_layers, concept_classes, labeled_concepts, read_dissect_json, write_dissect_json,
    DrawRegionArgs, ProjectModelArgs, ProjectModels,
};

#[derive(clap::Args, Debug)]
pub struct AceArgs {
    /// A finished dissection folder (dissect.json and levels.json).
    pub dir: PathBuf,
    /// Layers to learn edits for (default: every layer of the dissection).
    #[arg(long)]
    pub layer: Vec<String>,
    /// Concepts, comma-separated (default: every ranked concept the segmenter knows).
    #[arg(long, value_delimiter = ',')]
    pub concepts: Vec<String>,
    /// Modes to learn, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "draw,remove")]
    pub modes: Vec<ModeArg>,
    /// Optimization steps per concept and mode.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 0.02)]
    pub lr: f64,
    /// L1 penalty per unit at full weight (larger: fewer units).
    #[arg(long, default_value_t = 0.004)]
    pub l1: f64,
    /// Weight of the mean squared pixel change outside the brush.
    #[arg(long, default_value_t = 1.0)]
    pub outside: f64,
    /// First image id; the default keeps clear of the dissection's, the causal rankings'
    /// and eval-edits' ids.
    #[arg(long, default_value_t = 2_000_000)]
    pub first_id: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where draws are brushed while learning (see `eval-edits --regions`).
    #[command(flatten)]
    pub regions: DrawRegionArgs,
    #[command(flatten)]
    pub models: ProjectModelArgs,
}

/// A stroke mode on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    Draw,
    Remove,
}

impl ModeArg {
    fn mode(self) -> StrokeMode {
        match self {
            ModeArg::Draw => StrokeMode::Draw,
            ModeArg::Remove => StrokeMode::Remove,
        }
    }
}

pub fn run(args: AceArgs) -> anyhow::Result<()> {
    let (
        project,
        ProjectModels {
            mut generator,
            segmenter,
            ..
        },
    ) = args.models.open(&args.dir)?;
    // Only the edit's weights learn.
    generator.var_store_mut().freeze();
    let mut json = read_dissect_json(&args.dir)?;
    let labels = segmenter.labels().to_vec();
    let layers = chosen_layers(&project, &args.layer)?;
    let started = std::time::Instant::now();
    for layer in layers {
        let concepts = if args.concepts.is_empty() {
            labeled_concepts(layer, &labels)
        } else {
            concept_classes(&args.concepts, &labels, "--concepts")?
        };
        let levels: Vec<f32> = (0..layer.units)
            .map(|u| layer.levels.level(u, 0.99).unwrap_or(0.0))
            .collect();
        let total = (concepts.len() * args.modes.len() * args.steps) as u64;
        eprintln!(
            "{}: learning {} edits ({} concepts × {} modes) of {} steps × {} images each",
            layer.layer,
            concepts.len() * args.modes.len(),
            concepts.len(),
            args.modes.len(),
            args.steps,
            args.batch
        );
        let draws = args.modes.contains(&ModeArg::Draw);
        let classes: Vec<i64> = concepts.iter().map(|(_, class)| *class).collect();
        let profiles = if draws {
            args.regions.profiles(
                &generator,
                segmenter.as_ref(),
                &layer.layer,
                &classes,
                args.batch,
            )?
        } else {
            None
        };
        let bar = super::progress_bar(total, &format!("ace {}", layer.layer));
        let mut rankings = Vec::new();
        println!(
            "{}: {:<8} {:<7} {:>6} {:>13} {:>7}  top units (weight)",
            layer.layer, "concept", "mode", "units", "p(region)", "images"
        );
        for (c, (concept, class)) in concepts.iter().enumerate() {
            for mode in args.modes.iter().map(|m| m.mode()) {
                let learned = OptimizeEdit {
                    generator: &generator,
                    segmenter: segmenter.as_ref(),
                    layer: &layer.layer,
                    levels: &levels,
                    concept,
                    class: *class,
                    mode,
                    steps: args.steps,
                    batch: args.batch,
                    lr: args.lr,
                    l1: args.l1,
                    outside: args.outside,
                    first_id: args.first_id,
                    seed: args.seed,
                    context: profiles.as_ref().map(|p| &p[c]),
                }
                .run(&mut |n| bar.inc(n))?;
                let units = learned.units();
                let top: Vec<String> = units
                    .iter()
                    .take(6)
                    .map(|(u, w)| format!("{u} ({w:.2})"))
                    .collect();
                bar.suspend(|| {
                    println!(
                        "{}  {concept:<8} {:<7} {:>6} {:>6.3}→{:<6.3} {:>7}  {}",
                        " ".repeat(layer.layer.len()),
                        format!("{mode:?}").to_lowercase(),
                        units.len(),
                        learned.region_prob_start,
                        learned.region_prob_end,
                        learned.images,
                        top.join(", ")
                    )
                });
                tracing::info!(layer = %layer.layer, concept, ?mode, units = units.len(), start = learned.region_prob_start, end = learned.region_prob_end, "learned edit");
                // An edit that kept no unit would paint nothing: leave it out, and strokes
                // keep the causal (or IoU) ranking.
                if !units.is_empty() {
                    rankings.push(learned.ranking());
                }
            }
        }
        bar.finish();
        let entry = json["layers"]
            .as_array_mut()
            .and_then(|all| all.iter_mut().find(|l| l["layer"] == layer.layer.as_str()))
            .context("dissect.json lacks the layer it was read with")?;
        let list = entry["rankings"]
            .as_array_mut()
            .context("dissect.json layer without rankings")?;
        // Replace what this run learned (its concepts, in its modes), keep the rest.
        let learned_concepts: Vec<&str> = concepts.iter().map(|(c, _)| c.as_str()).collect();
        let learned_metrics: Vec<&str> = args
            .modes
            .iter()
            .map(|mode| match mode.mode() {
                StrokeMode::Draw => DRAW_METRIC,
                StrokeMode::Remove => REMOVE_METRIC,
            })
            .collect();
        list.retain(|r| {
            let metric = r["metric"].as_str().unwrap_or_default();
            let concept = r["concept"].as_str().unwrap_or_default();
            !(learned_metrics.contains(&metric) && learned_concepts.contains(&concept))
        });
        for ranking in &rankings {
            list.push(serde_json::to_value(ranking)?);
        }
    }
    let path = write_dissect_json(&args.dir, &json)?;
    println!(
        "optimized interventions: {:.1} s; wrote {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}
