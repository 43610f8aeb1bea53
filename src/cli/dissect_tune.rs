//! `ganpaint dissect tune DIR`: for each concept and mode of a finished dissection, the
//! number of units and the draw strength that paint it best ([`crate::dissect::tune`]),
//! written into `DIR/dissect.json` as the layer's `paint` entry. Strokes that give no
//! `units` or `strength` (the server's, the editor's "Tuned" preset, `eval-edits` without
//! `--units`/`--strength`, `figure`) then paint with them. Run it after `dissect ace`:
//! it measures the units strokes really take. The file is edited as JSON, so every other
//! field stays as it was.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::dissect::causal::{ConceptEffect, DrawRegions, EditEval, FAR_CELLS, REGION_CELLS};
use crate::dissect::tune::{choose, Trial};
use crate::edit::StrokeMode;
use crate::project::{ConceptPaint, StrokeDefault, UnitChoice, MAX_STRENGTH};

use super::project::{
    chosen_layers, concept_classes, labeled_concepts, read_dissect_json,
    render_in_project_precision, write_dissect_json, ProjectModelArgs, ProjectModels,
};

#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// A finished dissection folder (dissect.json and levels.json).
    pub dir: PathBuf,
    /// Layers to tune (default: every layer of the dissection).
    #[arg(long)]
    pub layer: Vec<String>,
    /// Concepts, comma-separated (default: every ranked concept the segmenter knows).
    #[arg(long, value_delimiter = ',')]
    pub concepts: Vec<String>,
    /// Unit counts to try (20, the untuned count, is always tried).
    #[arg(long, value_delimiter = ',', default_value = "20,40,60,100")]
    pub units: Vec<usize>,
    /// Draw strengths to try (1 is always tried).
    #[arg(long, value_delimiter = ',', default_value = "1,1.5,2,3")]
    pub strengths: Vec<f32>,
    /// Samples per setting.
    #[arg(long, default_value_t = 100)]
    pub samples: u64,
    /// First image id; the default keeps clear of the dissection's, eval-edits' and the
    /// optimized interventions' ids.
    #[arg(long, default_value_t = 20_000)]
    pub first_id: u64,
    /// Seed of the random regions (eval-edits uses 0).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The largest share of far pixels a kept setting may change.
    #[arg(long, default_value_t = 0.015)]
    pub max_far: f64,
    /// Settings scoring within this much of the best count as as good; the cheapest wins.
    #[arg(long, default_value_t = 0.01)]
    pub tolerance: f64,
    /// A remove is tuned only when at least this many samples had the concept to remove.
    #[arg(long, default_value_t = 10)]
    pub min_remove_samples: u64,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[command(flatten)]
    pub models: ProjectModelArgs,
}

/// The grid, with the untuned setting in it, sorted and without repeats.
fn grid(args: &TuneArgs, layer_units: usize) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let mut units: Vec<usize> = args
        .units
        .iter()
        .copied()
        .chain([crate::project::DEFAULT_UNITS])
        .map(|u| u.min(layer_units))
        .collect();
    if units.contains(&0) {
        anyhow::bail!("--units: every count must be at least 1");
    }
    units.sort_unstable();
    units.dedup();
    let mut strengths: Vec<f32> = args.strengths.iter().copied().chain([1.0]).collect();
    if let Some(s) = strengths
        .iter()
        .find(|s| !s.is_finite() || !(0.0..=MAX_STRENGTH).contains(*s))
    {
        anyhow::bail!("--strengths: {s} is not in [0, {MAX_STRENGTH}]");
    }
    strengths.sort_by(|a, b| a.total_cmp(b));
    strengths.dedup();
    Ok((units, strengths))
}

pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    if args.samples == 0 {
        anyhow::bail!("--samples: must be at least 1");
    }
    let (
        project,
        ProjectModels {
            mut generator,
            segmenter,
            ..
        },
    ) = args.models.open(&args.dir)?;
    render_in_project_precision(&project, &mut generator)?;
    let mut json = read_dissect_json(&args.dir)?;
    let labels = segmenter.labels().to_vec();
    let layers = chosen_layers(&project, &args.layer)?;
    // Every layer's concepts, checked before the first (long) measurement.
    let mut plan = Vec::new();
    for layer in layers {
        let concepts: Vec<String> = if args.concepts.is_empty() {
            labeled_concepts(layer, &labels)
        } else {
            concept_classes(&args.concepts, &labels, "--concepts")?
        }
        .into_iter()
        .map(|(c, _)| c)
        .collect();
        let ranked = layer.concepts();
        if let Some(missing) = concepts.iter().find(|c| !ranked.contains(&c.as_str())) {
            anyhow::bail!(
                "--concepts: `{missing}` is not ranked at {} (it ranks {})",
                layer.layer,
                ranked.join(", ")
            );
        }
        plan.push((layer, concepts));
    }
    let started = std::time::Instant::now();
    for (layer, concepts) in plan {
        // A grid too small for any pixel to lie far from a region: no side effect could be
        // measured, so nothing would be tuned; say so instead of measuring.
        let (_, gh, gw) = generator.layer_shape(&layer.layer)?;
        if gh.max(gw) <= REGION_CELLS + FAR_CELLS {
            println!(
                "{}: untuned: on its {gh}×{gw} grid no pixel lies more than {FAR_CELLS} cells from a {REGION_CELLS}×{REGION_CELLS}-cell region, so side effects cannot be measured",
                layer.layer
            );
            continue;
        }
        let (unit_grid, strength_grid) = grid(&args, layer.units)?;
        let runs = unit_grid.len() * strength_grid.len();
        // Each setting paints every concept on every sample (and removes, once per count).
        eprintln!(
            "{}: tuning {} concepts over {} settings ({} unit counts × {} strengths), {} samples each: {} edited renders",
            layer.layer,
            concepts.len(),
            runs,
            unit_grid.len(),
            strength_grid.len(),
            args.samples,
            (runs + unit_grid.len()) as u64 * args.samples * concepts.len() as u64,
        );
        let bar = super::progress_bar(runs as u64 * args.samples, &format!("tune {}", layer.layer));
        // Per concept, per mode: every measured setting (a remove only where enough
        // samples had the concept), and for removes the most samples any setting had.
        let mut trials: BTreeMap<(String, StrokeMode), Vec<Trial>> = concepts
            .iter()
            .flat_map(|c| {
                [StrokeMode::Draw, StrokeMode::Remove].map(|m| ((c.clone(), m), Vec::new()))
            })
            .collect();
        let mut present: BTreeMap<String, u64> = BTreeMap::new();
        for &units in &unit_grid {
            for (i, &strength) in strength_grid.iter().enumerate() {
                let report = EditEval {
                    generator: &generator,
                    segmenter: segmenter.as_ref(),
                    layer,
                    concepts: concepts.clone(),
                    samples: args.samples,
                    first_id: args.first_id,
                    units: Some(units),
                    quantile: crate::project::DRAW_QUANTILE,
                    strength: Some(strength),
                    // A remove does not depend on the strength: measured once per count.
                    remove: i == 0,
                    seed: args.seed,
                    batch: args.batch,
                    choice: UnitChoice::Optimized,
                    draw_regions: DrawRegions::Random,
                }
                .run(&mut |n| bar.inc(n))?;
                for (concept, effect) in report.concepts {
                    let seen = present.entry(concept.clone()).or_default();
                    *seen = (*seen).max(effect.remove_samples);
                    let removed = i == 0 && effect.remove_samples >= args.min_remove_samples;
                    record(&mut trials, concept, &effect, units, removed);
                }
            }
        }
        bar.finish();
        let mut paint: BTreeMap<String, ConceptPaint> = BTreeMap::new();
        let untuned_units = crate::project::DEFAULT_UNITS.min(layer.units);
        println!(
            "{}: {:<8} {:<7} {:>6} {:>9} {:>9} {:>10}   (untuned: {untuned_units} units at 1.0)",
            layer.layer, "concept", "mode", "units", "strength", "score", "far_change"
        );
        let indent = " ".repeat(layer.layer.len());
        for ((concept, mode), tried) in &trials {
            let mode_name = format!("{mode:?}").to_lowercase();
            let untuned = tried
                .iter()
                .find(|t| t.strength == 1.0 && t.asked == untuned_units)
                .map_or("-".to_string(), |t| format!("{:.3}", t.score));
            match choose(tried, args.max_far, args.tolerance) {
                Some(kept) => {
                    println!(
                        "{indent}  {concept:<8} {mode_name:<7} {:>6} {:>9.1} {:>9.3} {:>10.4}   (untuned {untuned})",
                        kept.units,
                        kept.strength,
                        kept.score,
                        kept.far_change.unwrap_or(f64::NAN)
                    );
                    paint
                        .entry(concept.clone())
                        .or_default()
                        .set(*mode, StrokeDefault::from(kept));
                }
                None => {
                    let why = if *mode == StrokeMode::Remove && tried.is_empty() {
                        format!(
                            "{} samples had it to remove (fewer than {})",
                            present.get(concept).copied().unwrap_or(0),
                            args.min_remove_samples
                        )
                    } else if tried.iter().all(|t| t.far_change.is_none()) {
                        "no pixel lies far from the region to measure side effects on".into()
                    } else {
                        "no setting paints it within the far budget".into()
                    };
                    println!("{indent}  {concept:<8} {mode_name:<7} untuned: {why}");
                }
            }
        }
        let entry = json["layers"]
            .as_array_mut()
            .and_then(|all| all.iter_mut().find(|l| l["layer"] == layer.layer.as_str()))
            .context("dissect.json lacks the layer it was read with")?;
        // Replace the tuned concepts' entries, keep the others'.
        let mut written: serde_json::Map<String, Value> = entry
            .get("paint")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for concept in &concepts {
            written.remove(concept);
        }
        for (concept, modes) in paint {
            written.insert(concept, serde_json::to_value(modes)?);
        }
        entry["paint"] = Value::Object(written);
        entry["paint_tuning"] = serde_json::json!({
            "first_id": args.first_id,
            "samples": args.samples,
            "seed": args.seed,
            "units": unit_grid,
            "strengths": strength_grid,
            "max_far": args.max_far,
            "tolerance": args.tolerance,
            "min_remove_samples": args.min_remove_samples,
        });
        // Each layer is written as it is done: a later failure keeps the earlier work.
        let path = write_dissect_json(&args.dir, &json)?;
        println!(
            "{}: tuned strokes written to {} ({:.1} s so far)",
            layer.layer,
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Adds a report's draw (and, when `removed`, remove) of one concept, painted with
/// `asked` units, to `trials`.
fn record(
    trials: &mut BTreeMap<(String, StrokeMode), Vec<Trial>>,
    concept: String,
    effect: &ConceptEffect,
    asked: usize,
    removed: bool,
) {
    let measured = |far: f64, pixels: u64| (pixels > 0).then_some(far);
    trials
        .entry((concept.clone(), StrokeMode::Draw))
        .or_default()
        .push(Trial {
            asked,
            units: effect.units.len(),
            strength: effect.strength,
            score: effect.draw_gain,
            far_change: measured(effect.far_change_draw, effect.far_pixels_draw),
            samples: effect.samples,
        });
    if let (true, Some(cut)) = (removed, effect.remove_cut) {
        trials
            .entry((concept, StrokeMode::Remove))
            .or_default()
            .push(Trial {
                asked,
                units: effect.remove_units,
                strength: 1.0,
                score: cut,
                far_change: measured(effect.far_change_remove, effect.far_pixels_remove),
                samples: effect.remove_samples,
            });
    }
}
