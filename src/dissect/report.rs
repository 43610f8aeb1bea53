//! What a person looks at: each unit's top samples with its activation as a heatmap
//! (`<layer>/s-image/<unit>-top.jpg`, the images GAN Dissection's `/api/units` lists),
//! and `dissect.html`, a self-contained static report (inline CSS and SVG; the strips are
//! referenced relatively).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use super::collect::{latents, run_layers};
use super::output::StatsFile;
use super::stats::to_f32_vec;
use super::{write_file, DissectError};
use crate::imageio;
use crate::model::ProgGan;
use crate::project::{DissectJson, DissectLayer, Ranking, LEVEL_QUANTILES};

/// Thumbnails are at most this many pixels on a side.
pub const MAX_THUMB: u32 = 64;
const GAP: u32 = 2;
const JPEG_QUALITY: u8 = 75;
/// Units listed per concept in the report.
const REPORT_UNITS: usize = 5;

pub fn strip_path(layer: &str, unit: usize) -> String {
    format!("{layer}/s-image/{unit}-top.jpg")
}

/// Draws one sample as GAN Dissection does, plus a heatmap: the image is shown as it is
/// where the unit exceeds its threshold, with a yellow outline around that region;
/// elsewhere it is dimmed and tinted by a red-to-yellow heatmap of
/// `activation / threshold`, so near-misses show too. `activation` is `[T·T]`, upsampled
/// to the thumbnail.
fn overlay(thumb: &RgbImage, activation: &[f32], threshold: f32) -> RgbImage {
    let (w, h) = thumb.dimensions();
    let above = |x: u32, y: u32| activation[(y * w + x) as usize] > threshold;
    let mut out = RgbImage::new(w, h);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let a = activation[(y * w + x) as usize];
        let s = if threshold > 0.0 {
            (a / threshold).clamp(0.0, 1.0)
        } else {
            f32::from(u8::from(a > threshold))
        };
        let inside = above(x, y);
        let edge = inside
            && [(0i64, -1i64), (0, 1), (-1, 0), (1, 0)]
                .iter()
                .any(|&(dx, dy)| {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    nx >= 0
                        && ny >= 0
                        && nx < w as i64
                        && ny < h as i64
                        && !above(nx as u32, ny as u32)
                });
        if edge {
            *pixel = Rgb([255, 240, 0]);
            continue;
        }
        let base = thumb.get_pixel(x, y).0;
        if inside {
            *pixel = Rgb(base);
            continue;
        }
        let alpha = 0.6 * s * s;
        let heat = [255.0, 200.0 * s, 0.0];
        let mut rgb = [0u8; 3];
        for c in 0..3 {
            let v = base[c] as f32 * 0.55 * (1.0 - alpha) + heat[c] * alpha;
            rgb[c] = v.round().clamp(0.0, 255.0) as u8;
        }
        *pixel = Rgb(rgb);
    }
    out
}

/// Writes every unit's strip of top samples for every layer with top samples and
/// thresholds in `stats`. Regenerates only the samples needed. Returns the bytes written.
pub fn write_unit_strips(
    model: &ProgGan,
    stats: &StatsFile,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, DissectError> {
    let _guard = tch::no_grad_guard();
    let thumb = (model.resolution() as u32).min(MAX_THUMB);
    let layers: Vec<String> = stats.layers.iter().map(|l| l.layer.clone()).collect();
    // id → (layer slot, unit, rank) that show it.
    let mut needed: BTreeMap<u64, Vec<(usize, usize, usize)>> = BTreeMap::new();
    let mut strips: Vec<Vec<RgbImage>> = Vec::new();
    let mut thresholds: Vec<&[f32]> = Vec::new();
    for (slot, layer) in stats.layers.iter().enumerate() {
        let (Some(top), Some(levels)) = (&layer.top, &layer.levels) else {
            return Err(DissectError::Settings(format!(
                "layer `{}` has no top samples or thresholds to draw",
                layer.layer
            )));
        };
        thresholds.push(&levels.thresholds);
        let slots = top.k.max(1) as u32;
        strips.push(
            (0..top.units.len())
                .map(|_| {
                    RgbImage::from_pixel(slots * thumb + (slots - 1) * GAP, thumb, Rgb([255; 3]))
                })
                .collect(),
        );
        for (unit, list) in top.units.iter().enumerate() {
            for (rank, sample) in list.iter().enumerate() {
                needed
                    .entry(sample.id)
                    .or_default()
                    .push((slot, unit, rank));
            }
        }
    }
    let ids: Vec<u64> = needed.keys().copied().collect();
    for chunk in ids.chunks(stats.settings.batch.max(1)) {
        let z = latents(model, chunk)?;
        let (activations, image) = run_layers(model, &z, &layers, true)?;
        let images = imageio::to_rgb_images(&image.expect("asked for the image"))?;
        let side = thumb as i64;
        let upsampled: Vec<Vec<f32>> = activations
            .iter()
            .map(|a| {
                to_f32_vec(&a.f_upsample_bilinear2d(
                    [side, side],
                    false,
                    None::<f64>,
                    None::<f64>,
                )?)
            })
            .collect::<Result<_, DissectError>>()?;
        for (i, (&id, image)) in chunk.iter().zip(&images).enumerate() {
            let small = if image.width() == thumb {
                image.clone()
            } else {
                image::imageops::resize(image, thumb, thumb, FilterType::Triangle)
            };
            for &(slot, unit, rank) in &needed[&id] {
                let units = strips[slot].len();
                let plane = (thumb * thumb) as usize;
                let start = (i * units + unit) * plane;
                let drawn = overlay(
                    &small,
                    &upsampled[slot][start..start + plane],
                    thresholds[slot][unit],
                );
                image::imageops::replace(
                    &mut strips[slot][unit],
                    &drawn,
                    (rank as u32 * (thumb + GAP)) as i64,
                    0,
                );
            }
        }
        progress(chunk.len() as u64);
    }
    let mut bytes = 0u64;
    for (slot, layer_strips) in strips.iter().enumerate() {
        for (unit, strip) in layer_strips.iter().enumerate() {
            let jpeg = imageio::encode_jpeg(strip, JPEG_QUALITY)?;
            bytes += jpeg.len() as u64;
            write_file(&out.join(strip_path(&layers[slot], unit)), &jpeg)?;
        }
    }
    Ok(bytes)
}

/// How many samples `write_unit_strips` will regenerate.
pub fn strip_samples(stats: &StatsFile) -> u64 {
    let mut ids: Vec<u64> = stats
        .layers
        .iter()
        .filter_map(|l| l.top.as_ref())
        .flat_map(|t| t.units.iter().flatten().map(|s| s.id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len() as u64
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Per concept: the best IoU, its unit, and how many interpretable units carry the label.
struct ConceptSummary<'a> {
    concept: &'a str,
    best_iou: f64,
    best_unit: usize,
    labeled_units: usize,
    /// Units best first.
    order: Vec<usize>,
    /// The ranking's scores (`−iou` per unit).
    scores: &'a [f64],
}

fn concept_summaries<'a>(layer: &'a DissectLayer) -> Vec<ConceptSummary<'a>> {
    let mut summaries: Vec<ConceptSummary> = layer
        .rankings
        .iter()
        .filter(|r| r.metric == "iou")
        .map(|r| {
            let mut order: Vec<usize> = (0..r.score.len()).collect();
            order.sort_by(|&a, &b| r.score[a].total_cmp(&r.score[b]).then(a.cmp(&b)));
            let best_unit = order.first().copied().unwrap_or(0);
            ConceptSummary {
                concept: &r.concept,
                best_iou: 0.0 - r.score.get(best_unit).copied().unwrap_or(0.0),
                best_unit,
                labeled_units: layer
                    .units
                    .iter()
                    .filter(|u| u.interp && u.iou_label == r.concept)
                    .count(),
                order,
                scores: &r.score,
            }
        })
        .collect();
    summaries.sort_by(|a, b| b.best_iou.total_cmp(&a.best_iou));
    summaries
}

fn bar_chart(summaries: &[ConceptSummary]) -> String {
    let (label_w, bar_w, row_h) = (90.0, 360.0, 22.0);
    let top = summaries
        .iter()
        .map(|s| s.best_iou)
        .fold(0.0f64, f64::max)
        .max(0.1);
    let height = row_h * summaries.len() as f64 + 24.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" role="img" aria-label="best IoU per concept">"#,
        label_w + bar_w + 150.0
    );
    let threshold_x = label_w + bar_w * (super::IOU_THRESHOLD / top);
    for (i, s) in summaries.iter().enumerate() {
        let y = row_h * i as f64 + 4.0;
        let w = bar_w * (s.best_iou.max(0.0) / top);
        let _ = write!(
            svg,
            r##"<text x="{tx}" y="{ty}" text-anchor="end" class="l">{name}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{bh}" fill="{fill}"/><text x="{vx:.1}" y="{ty}" class="v">{iou:.3} · unit {unit} · {n} labeled</text>"##,
            tx = label_w - 6.0,
            ty = y + 13.0,
            name = esc(s.concept),
            bh = row_h - 6.0,
            fill = if s.best_iou > super::IOU_THRESHOLD {
                "#3b7dd8"
            } else {
                "#b8c4d6"
            },
            vx = label_w + w + 6.0,
            iou = s.best_iou,
            unit = s.best_unit,
            n = s.labeled_units,
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{threshold_x:.1}" x2="{threshold_x:.1}" y1="0" y2="{y2}" stroke="#d33" stroke-dasharray="3 3"/><text x="{threshold_x:.1}" y="{ty}" class="v">IoU {t}</text></svg>"##,
        y2 = height - 14.0,
        ty = height - 3.0,
        t = super::IOU_THRESHOLD,
    );
    svg
}

/// With several layers, a table comparing them: per concept, the best IoU each layer
/// reaches (and its unit), the best layer marked; then each layer's interpretable units.
/// Empty for a single layer (its own section says it all).
fn layer_comparison(dissect: &DissectJson) -> String {
    if dissect.layers.len() < 2 {
        return String::new();
    }
    let per_layer: Vec<Vec<ConceptSummary>> =
        dissect.layers.iter().map(concept_summaries).collect();
    // Concepts in the order of their best IoU over all layers.
    let mut concepts: Vec<(&str, f64)> = Vec::new();
    for summary in per_layer.iter().flatten() {
        match concepts.iter_mut().find(|(c, _)| *c == summary.concept) {
            Some((_, best)) => *best = best.max(summary.best_iou),
            None => concepts.push((summary.concept, summary.best_iou)),
        }
    }
    concepts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut html = String::from(
        "<h2>Layers compared</h2>\n<p>Best unit IoU per concept at each layer (the best layer in bold), then how many units have IoU &gt; ",
    );
    let _ = write!(
        html,
        "{} with some concept.</p>\n<table class=\"num\" id=\"layers\"><tr><th>concept</th>",
        super::IOU_THRESHOLD
    );
    for layer in &dissect.layers {
        let _ = write!(
            html,
            "<th>{} ({}×{})</th>",
            esc(&layer.layer),
            layer.shape[1],
            layer.shape[2]
        );
    }
    html.push_str("</tr>\n");
    for (concept, best) in &concepts {
        let _ = write!(html, "<tr><td>{}</td>", esc(concept));
        for summaries in &per_layer {
            match summaries.iter().find(|s| s.concept == *concept) {
                Some(s) if s.best_iou == *best => {
                    let _ = write!(
                        html,
                        "<td><b>{:.3}</b> (unit {})</td>",
                        s.best_iou, s.best_unit
                    );
                }
                Some(s) => {
                    let _ = write!(html, "<td>{:.3} (unit {})</td>", s.best_iou, s.best_unit);
                }
                None => html.push_str("<td>–</td>"),
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("<tr><td>interpretable units</td>");
    for layer in &dissect.layers {
        let interpretable = layer.units.iter().filter(|u| u.interp).count();
        let _ = write!(html, "<td>{interpretable} of {}</td>", layer.units.len());
    }
    html.push_str("</tr>\n</table>\n");
    html
}

/// Everything the report states besides the dissection itself.
pub struct ReportInfo {
    /// Whether strips were written (the report links them).
    pub images: bool,
}

/// `dissect.html`: settings and timing, then per layer an IoU bar chart and, for each
/// concept, its top units with their IoU and strips.
pub fn write_report(
    out: &Path,
    dissect: &DissectJson,
    stats: &StatsFile,
    info: &ReportInfo,
) -> Result<(), DissectError> {
    let s = &dissect.settings;
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}: dissection</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}}
h1{{font-size:22px}} h2{{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}}
h3{{font-size:15px;margin:18px 0 6px}}
table{{border-collapse:collapse}} td,th{{padding:3px 10px 3px 0;text-align:left;vertical-align:middle}}
.meta td:first-child{{color:#666}} .num{{font-variant-numeric:tabular-nums}}
svg text.l{{font-size:12px}} svg text.v{{font-size:11px;fill:#555}}
img{{image-rendering:pixelated;display:block}}
</style></head><body>
<h1>{name}: GAN dissection</h1>
<table class="meta">
<tr><td>model</td><td>{model}</td></tr>
<tr><td>segmenter</td><td>{segmenter}</td></tr>
<tr><td>samples</td><td>{samples} (image ids {first}..{end})</td></tr>
<tr><td>threshold</td><td>activation quantile {quantile} per unit (upsampled activation &gt; t<sub>u</sub>)</td></tr>
<tr><td>time</td><td>{time}</td></tr>
</table>
"#,
        name = esc(&dissect.netname),
        model = esc(&s.model),
        segmenter = esc(&s.segmenter),
        samples = s.samples,
        first = s.id(0),
        end = s.id(0) + s.samples,
        quantile = s.quantile,
        time = esc(&timing_text(stats)),
    );
    html.push_str(&layer_comparison(dissect));
    for layer in &dissect.layers {
        let summaries = concept_summaries(layer);
        let levels = stats.layer(&layer.layer)?.levels.as_ref();
        let (rank_error, threshold_error) = levels.map_or((f64::NAN, f64::NAN), |l| {
            (l.rank_error, l.threshold_rank_error)
        });
        let interpretable = layer.units.iter().filter(|u| u.interp).count();
        let _ = write!(
            html,
            r#"<h2>{name} ({c} units, {h}×{w})</h2>
<p>{interpretable} of {c} units have IoU &gt; {t} with some concept. Quantile sketches: rank error ≤ {re} (worst case), ≤ {te} at the thresholds.</p>
{chart}
"#,
            name = esc(&layer.layer),
            c = layer.shape[0],
            h = layer.shape[1],
            w = layer.shape[2],
            t = super::IOU_THRESHOLD,
            re = fraction(rank_error),
            te = fraction(threshold_error),
            chart = bar_chart(&summaries),
        );
        for summary in &summaries {
            let _ = write!(
                html,
                "<h3>{}</h3>\n<table><tr><th>unit</th><th>IoU</th><th>level {}</th><th>top samples</th></tr>\n",
                esc(summary.concept),
                LEVEL_QUANTILES[0]
            );
            for &unit in summary.order.iter().take(REPORT_UNITS) {
                let record = &layer.units[unit];
                let iou = 0.0 - summary.scores[unit];
                let image = if info.images {
                    format!(
                        r#"<img src="{}" alt="unit {unit}" loading="lazy">"#,
                        strip_path(&layer.layer, unit)
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    html,
                    r#"<tr><td class="num">{unit}</td><td class="num">{iou:.3}</td><td class="num">{level:.3}</td><td>{image}</td></tr>"#,
                    level = record.level,
                );
            }
            html.push_str("</table>\n");
        }
        html.push_str(&causal_table(layer));
    }
    html.push_str("</body></html>\n");
    write_file(&out.join("dissect.html"), html.as_bytes())
}

/// The causal rankings, when the dissection has them: per concept, the units that draw
/// and remove it best on their own, with their effects.
fn causal_table(layer: &DissectLayer) -> String {
    use crate::project::metric::{CAUSAL_DRAW as DRAW_METRIC, CAUSAL_REMOVE as REMOVE_METRIC};
    let find = |concept: &str, metric: &str| {
        layer
            .rankings
            .iter()
            .find(|r| r.concept == concept && r.metric == metric)
    };
    let top = |ranking: Option<&Ranking>, format_effect: &dyn Fn(f64) -> String| {
        let Some(r) = ranking else {
            return "— (IoU order)".to_string();
        };
        let mut order: Vec<usize> = (0..r.score.len()).collect();
        order.sort_by(|&a, &b| r.score[a].total_cmp(&r.score[b]).then(a.cmp(&b)));
        order
            .iter()
            .take(5)
            .map(|&u| format!("{u}: {}", format_effect(-r.score[u])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let concepts: Vec<&str> = layer
        .rankings
        .iter()
        .filter(|r| r.metric == DRAW_METRIC || r.metric == REMOVE_METRIC)
        .map(|r| r.concept.as_str())
        .fold(Vec::new(), |mut seen, c| {
            if !seen.contains(&c) {
                seen.push(c);
            }
            seen
        });
    if concepts.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h3>Causal effect of single units</h3>\n<p>Each unit alone, set to its 0.99 level (draw) or to 0 (remove) in a random 3×3-cell region: the mean rise of the concept's share of the region, and the mean relative fall where the concept was present. Painting uses these rankings when present.</p>\n<table><tr><th>concept</th><th>best units to draw (unit: gain)</th><th>best units to remove (unit: cut)</th></tr>\n",
    );
    for concept in concepts {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(concept),
            esc(&top(find(concept, DRAW_METRIC), &|e| format!("{e:+.3}"))),
            esc(&top(find(concept, REMOVE_METRIC), &|e| format!("{e:.2}"))),
        );
    }
    html.push_str("</table>\n");
    html
}

/// A rank-error fraction for people: `0 (exact)` or five decimals.
fn fraction(x: f64) -> String {
    if x == 0.0 {
        "0 (exact)".into()
    } else {
        format!("{x:.5}")
    }
}

/// "x ms per sample (…)" from the recorded compute time.
pub fn timing_text(stats: &StatsFile) -> String {
    let samples = stats.settings.samples.max(1) as f64;
    let t = &stats.timing;
    format!(
        "{:.2} ms per sample: {:.2} ms sketching, {:.2} ms generating, segmenting and counting (summed over {} shard(s))",
        1000.0 * (t.sketch_seconds + t.count_seconds) / samples,
        1000.0 * t.sketch_seconds / samples,
        1000.0 * t.count_seconds / samples,
        stats.shards.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_outlines_the_region_above_threshold_and_dims_the_rest() {
        let thumb = RgbImage::from_pixel(4, 4, Rgb([100, 100, 100]));
        let mut act = vec![0.0f32; 16];
        for y in 1..4 {
            for x in 1..4 {
                act[y * 4 + x] = 2.0;
            }
        }
        // (2, 2), the centre of the 3×3 block, is inside with no outside neighbour.
        act[0] = 0.5; // outside, half way to the threshold
        let out = overlay(&thumb, &act, 1.0);
        assert_eq!(out.get_pixel(1, 1).0, [255, 240, 0]); // edge of the region
        assert_eq!(out.get_pixel(2, 2).0, [100, 100, 100]); // inside: the image as it is
        assert_eq!(out.get_pixel(3, 0).0, [55, 55, 55]); // outside, inactive: dimmed
        let warm = out.get_pixel(0, 0).0; // outside, near the threshold: heat blended in
        assert!(warm[0] > 55 && warm[2] < 55, "{warm:?}");
    }

    use crate::project::DissectLayer;

    fn layer(name: &str, grid: i64, ious: &[(&str, &[f64])], interp: &[bool]) -> DissectLayer {
        DissectLayer {
            layer: name.into(),
            shape: [interp.len() as i64, grid, grid],
            units: interp
                .iter()
                .enumerate()
                .map(|(unit, &interp)| crate::project::DissectUnit {
                    unit,
                    iou: 0.0,
                    iou_label: "tree".into(),
                    iou_cat: "object".into(),
                    iou_labelnum: 1,
                    level: 1.0,
                    interp,
                    top: Vec::new(),
                })
                .collect(),
            rankings: ious
                .iter()
                .map(|(concept, ious)| crate::project::Ranking {
                    name: format!("{concept}-iou"),
                    concept: concept.to_string(),
                    metric: "iou".into(),
                    score: ious.iter().map(|v| -v).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn layers_are_compared_per_concept_with_the_best_layer_marked() {
        let mut dissect = DissectJson {
            netname: "t".into(),
            settings: serde_json::from_value(serde_json::json!({
                "model": "m", "segmenter": "s", "layers": ["layer1", "layer4"],
                "samples": 8, "seed": 0, "quantile": 0.99, "batch": 8, "sketch_capacity": 64
            }))
            .unwrap(),
            quantile_threshold: 0.99,
            iou_threshold: 0.04,
            layers: vec![layer(
                "layer1",
                4,
                &[("tree", &[0.01, 0.03]), ("sky", &[0.2, 0.1])],
                &[false, false],
            )],
        };
        // One layer: nothing to compare.
        assert_eq!(layer_comparison(&dissect), "");
        dissect.layers.push(layer(
            "layer4",
            8,
            &[("tree", &[0.05, 0.12, 0.02])],
            &[true, true, false],
        ));
        let html = layer_comparison(&dissect);
        assert!(
            html.contains("<th>layer1 (4×4)</th><th>layer4 (8×8)</th>"),
            "{html}"
        );
        // sky is best overall, so first; only layer1 has it.
        assert!(
            html.contains("<tr><td>sky</td><td><b>0.200</b> (unit 0)</td><td>–</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<tr><td>tree</td><td>0.030 (unit 1)</td><td><b>0.120</b> (unit 1)</td></tr>"
            ),
            "{html}"
        );
        assert!(html.find("<td>sky</td>") < html.find("<td>tree</td>"));
        assert!(html.contains("<td>0 of 2</td><td>2 of 3</td>"), "{html}");
    }

    #[test]
    fn html_escapes_labels() {
        assert_eq!(esc(r#"<a&"b">"#), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
