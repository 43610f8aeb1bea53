//! `ganpaint dissect causal DIR`: adds causal rankings ([`crate::dissect::ace`]) to a
//! finished dissection. `ganpaint dissect` runs it at the end of a complete run; after a
//! sharded run, run it on the merged folder.
//!
//! The rankings go into `DIR/dissect.json` beside the IoU ones, as
//! `<concept>-causal-draw` and `<concept>-causal-remove`; any earlier causal rankings
//! are replaced. The file is edited as JSON, so GAN Dissection's own `dissect.json`
//! keeps every field it had.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::dissect::ace::{UnitEffects, DRAW_METRIC, REMOVE_METRIC};
use crate::dissect::output::StatsFile;
use crate::model::ProgGan;
use crate::project::{read_project, DISSECT_FILE};
use crate::segment::Segmenter;

use super::project::{
    labeled_concepts, render_in_project_precision, ProjectModelArgs, ProjectModels,
};

#[derive(clap::Args, Debug)]
pub struct CausalArgs {
    /// A finished dissection folder (dissect.json and levels.json).
    pub dir: PathBuf,
    #[command(flatten)]
    pub options: CausalOptions,
    #[command(flatten)]
    pub models: ProjectModelArgs,
}

/// How the causal effects are sampled (shared with `ganpaint dissect`).
#[derive(clap::Args, Debug, Clone)]
pub struct CausalOptions {
    /// Images per unit and mode (each costs 2 × units renders and segmentations); 0 skips
    /// the causal rankings.
    #[arg(long, default_value_t = 32)]
    pub causal_samples: u64,
    /// First image id; the default keeps clear of the dissection's and eval-edits' ids.
    #[arg(long, default_value_t = 1_000_000)]
    pub causal_first_id: u64,
    /// Seed of the random 3×3-cell regions.
    #[arg(long, default_value_t = 1)]
    pub causal_seed: u64,
    /// Edited images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub causal_batch: usize,
    /// Render every edit whole, instead of recomputing only what its region reaches
    /// from the image's kept render: the same rankings up to float rounding, and slower;
    /// for checking.
    #[arg(long)]
    pub causal_full_render: bool,
}

pub fn run(args: CausalArgs) -> anyhow::Result<()> {
    let (
        project,
        ProjectModels {
            mut generator,
            segmenter,
            ..
        },
    ) = args.models.open(&args.dir)?;
    render_in_project_precision(&project, &mut generator)?;
    add_causal_rankings(&args.dir, &generator, segmenter.as_ref(), &args.options)
}

/// Measures every unit's causal effect on every ranked concept, for each layer of the
/// dissection in `dir`, and writes the rankings into its `dissect.json`.
pub fn add_causal_rankings(
    dir: &Path,
    generator: &ProgGan,
    segmenter: &dyn Segmenter,
    options: &CausalOptions,
) -> anyhow::Result<()> {
    if options.causal_samples == 0 {
        return Ok(());
    }
    let project = read_project(dir)?;
    let path = dir.join(DISSECT_FILE);
    let mut json: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let started = std::time::Instant::now();
    for layer in &project.layers {
        let concepts = labeled_concepts(layer, segmenter.labels());
        if concepts.is_empty() {
            continue;
        }
        let levels: Vec<f32> = (0..layer.units)
            .map(|u| layer.levels.level(u, 0.99).unwrap_or(0.0))
            .collect();
        let effects = UnitEffects {
            generator,
            segmenter,
            layer: &layer.layer,
            levels: &levels,
            concepts,
            samples: options.causal_samples,
            first_id: options.causal_first_id,
            seed: options.causal_seed,
            batch: options.causal_batch,
            full_renders: options.causal_full_render,
        };
        eprintln!(
            "causal {}: {} samples × 2 modes × {} units = {} single-unit renders and segmentations",
            layer.layer,
            options.causal_samples,
            layer.units,
            options.causal_samples * 2 * layer.units as u64
        );
        let bar = super::progress_bar(options.causal_samples, &format!("causal {}", layer.layer));
        let table = effects.run(&mut |n| bar.inc(n))?;
        bar.finish();
        let rankings = table.rankings();
        let Some(entry) = json["layers"].as_array_mut().and_then(|layers| {
            layers
                .iter_mut()
                .find(|l| l["layer"] == layer.layer.as_str())
        }) else {
            continue;
        };
        let list = entry["rankings"]
            .as_array_mut()
            .context("dissect.json layer without rankings")?;
        list.retain(|r| {
            let metric = r["metric"].as_str().unwrap_or_default();
            metric != DRAW_METRIC && metric != REMOVE_METRIC
        });
        for ranking in &rankings {
            list.push(serde_json::to_value(ranking)?);
        }
        println!(
            "{}: causal effect of one unit in a 3×3-cell region ({} samples)",
            layer.layer, options.causal_samples
        );
        println!(
            "  {:<10} {:>22} {:>22}",
            "concept", "best draw (unit: gain)", "best remove (unit: cut)"
        );
        for (c, concept) in table.concepts.iter().enumerate() {
            let best = |effects: &[f64]| {
                effects
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or((0, 0.0), |(u, &e)| (u, e))
            };
            let (du, dg) = best(&table.draw[c]);
            let (ru, rc) = best(&table.remove[c]);
            println!(
                "  {concept:<10} {:>22} {:>22}",
                format!("{du}: {dg:+.3}"),
                format!("{ru}: {rc:.3}")
            );
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    // Our own dissections get their report rewritten with the causal table.
    if StatsFile::read(dir).is_ok() {
        super::project::rewrite_report(dir)?;
    }
    println!(
        "causal rankings: {:.1} s; wrote {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}
