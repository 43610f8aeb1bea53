//! `ganpaint figure`: a before/after picture of what painting does, for a README or a
//! paper. One row per image id; the first column is the generated image, then for each
//! concept its **draw** and its **remove** stroke, each through the same path the server
//! paints with ([`ProjectLayer::resolve_stroke`](crate::project::ProjectLayer::resolve_stroke), then the interventions' rule and the
//! generator's suffix). The stroke's 3×3 cells are outlined.
//!
//! Where to paint, per image: removal takes the 3×3-cell region holding the most of the
//! concept; drawing takes the region where it fits best, by what surrounds the concept in
//! other generated samples ([`crate::dissect::context`], with `eval-edits --regions
//! context`' defaults: a dome on top of a building, grass beside a path), as a person
//! would brush it; where no region fits, the one with the least of the concept.

use std::path::PathBuf;

use anyhow::Context;
use image::{Rgb, RgbImage};
use tch::{Device, Kind, Tensor};

use crate::dissect::causal::{zones, Region, REGION_CELLS};
use crate::dissect::context::{
    self, CellCounts, ContextProfile, CONTEXT_FIRST_ID, CONTEXT_SAMPLES,
};
use crate::edit::{intervention_planes, Pooling, StrokeMode};
use crate::model::DeviceChoice;
use crate::project::read_project;

use super::project::{
    concept_classes, load_project_models, render_in_project_precision, ProjectModels,
};

#[derive(clap::Args, Debug)]
pub struct FigureArgs {
    /// A dissection folder, e.g. dissect/demo.
    #[arg(long)]
    project: PathBuf,
    /// Where to write the figure: a JPEG when it ends in `.jpg` or `.jpeg`, else a PNG.
    #[arg(long)]
    out: PathBuf,
    /// Image ids, one row each.
    #[arg(long, value_delimiter = ',', default_value = "3,11,24,40")]
    ids: Vec<u64>,
    #[arg(long, value_delimiter = ',', default_value = "tree,grass,dome,cloud")]
    concepts: Vec<String>,
    /// The layer to paint (default: `layer4` when dissected, else the project's first).
    #[arg(long)]
    layer: Option<String>,
    /// Pixels per generated pixel in the figure (nearest neighbour).
    #[arg(long, default_value_t = 2)]
    scale: u32,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

pub fn run(args: FigureArgs) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    let device = args.device.resolve()?;
    let project = read_project(&args.project)
        .with_context(|| format!("reading the dissection in {}", args.project.display()))?;
    let layer = project.chosen_layer(args.layer.as_deref())?;
    let ProjectModels {
        mut generator,
        segmenter,
        ..
    } = load_project_models(&project, None, "--project", None, None, device)?;
    render_in_project_precision(&project, &mut generator)?;
    let labels = segmenter.labels().to_vec();
    let class_count = labels.len();
    let classes: Vec<i64> = concept_classes(&args.concepts, &labels, "--concepts")?
        .into_iter()
        .map(|(_, class)| class)
        .collect();
    let name = layer.layer.as_str();
    let (_, gh, gw) = generator.layer_shape(name)?;
    let grid = (gh, gw);
    let side = generator.resolution();
    // Label maps, flattened, and their side lengths.
    let segment = |images: &Tensor| -> anyhow::Result<(Vec<i64>, (i64, i64))> {
        let labels = segmenter.segment(&images.f_clamp(-1.0, 1.0)?)?;
        let size = (labels.size()[1], labels.size()[2]);
        let flat = Vec::<i64>::try_from(labels.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
        Ok((flat, size))
    };
    let all_regions: Vec<Region> = context::all_regions(grid).collect();
    let region_zones: Vec<Vec<u8>> = all_regions
        .iter()
        .map(|&r| zones(r, grid, (side, side)))
        .collect();

    // Where each concept fits: what surrounds it in other generated images.
    let context_ids: Vec<u64> = (CONTEXT_FIRST_ID..CONTEXT_FIRST_ID + CONTEXT_SAMPLES).collect();
    let profiles = ContextProfile::from_samples(
        &generator,
        segmenter.as_ref(),
        name,
        &classes,
        &context_ids,
        16,
    )?;
    let shape = generator.layer_shape(name)?;
    let mut tiles = Vec::new();
    for &id in &args.ids {
        let z = generator.z_for_ids(&[id])?;
        let features = generator.features(&z, name)?;
        let image = generator.forward_from(name, &features)?;
        let (labels, seg_size) = segment(&image)?;
        tiles.push((crate::imageio::to_rgb_images(&image)?.remove(0), None));
        let cells = CellCounts::new(&labels, seg_size, grid, class_count);
        for (c, concept) in args.concepts.iter().enumerate() {
            let here: Vec<f64> = all_regions
                .iter()
                .map(|&r| cells.share(r, classes[c]))
                .collect();
            let best = |score: &dyn Fn(usize) -> f64| {
                (0..all_regions.len())
                    .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                    .expect("at least one region")
            };
            let draw_at = match profiles[c].best_region(&labels, seg_size, grid) {
                Some((region, _)) => all_regions
                    .iter()
                    .position(|&r| r == region)
                    .expect("one of the grid's regions"),
                // The concept everywhere: where it is thinnest.
                None => best(&|r| -here[r]),
            };
            let remove_at = best(&|r| here[r]);
            for (mode, at) in [(StrokeMode::Draw, draw_at), (StrokeMode::Remove, remove_at)] {
                let region = all_regions[at];
                let edits = layer.resolve_stroke(concept, mode, None, None)?.edits();
                let mask: Vec<f32> = region_zones[at]
                    .iter()
                    .map(|&z| f32::from(u8::from(z == 1)))
                    .collect();
                let mask = Tensor::f_from_slice(&mask)?.f_view([side, side])?;
                let planes = intervention_planes(
                    name,
                    shape,
                    &edits,
                    Some(&mask),
                    Pooling::Max,
                    generator.device(),
                )?;
                let edited = crate::edit::render_edited(
                    &generator,
                    name,
                    &features,
                    &planes,
                    crate::edit::Route::Full,
                )?
                .images;
                let tile =
                    crate::imageio::to_rgb_images(&edited.f_to_kind(Kind::Float)?)?.remove(0);
                tiles.push((tile, Some(region)));
            }
        }
    }
    let figure = compose(&tiles, 1 + 2 * args.concepts.len(), grid, args.scale.max(1));
    crate::imageio::write_picture(&figure, &args.out)?;
    println!(
        "wrote {} ({}×{}): rows are ids {:?}; columns: the generated image, then draw and remove for {}",
        args.out.display(),
        figure.width(),
        figure.height(),
        args.ids,
        args.concepts.join(", ")
    );
    Ok(())
}

/// Lays tiles out `cols` to a row with a 4-pixel white gutter, each scaled `scale`×, and
/// outlines each edited tile's region (in the layer's `grid`) in white and black.
fn compose(
    tiles: &[(RgbImage, Option<Region>)],
    cols: usize,
    grid: (i64, i64),
    scale: u32,
) -> RgbImage {
    const GUTTER: u32 = 4;
    let (w, h) = (tiles[0].0.width() * scale, tiles[0].0.height() * scale);
    let rows = tiles.len().div_ceil(cols) as u32;
    let mut out = RgbImage::from_pixel(
        cols as u32 * (w + GUTTER) - GUTTER,
        rows * (h + GUTTER) - GUTTER,
        Rgb([255, 255, 255]),
    );
    for (i, (tile, region)) in tiles.iter().enumerate() {
        let (x0, y0) = (
            (i % cols) as u32 * (w + GUTTER),
            (i / cols) as u32 * (h + GUTTER),
        );
        for y in 0..h {
            for x in 0..w {
                out.put_pixel(x0 + x, y0 + y, *tile.get_pixel(x / scale, y / scale));
            }
        }
        if let Some(r) = region {
            let cell = (w as f64 / grid.1 as f64, h as f64 / grid.0 as f64);
            let left = (r.x as f64 * cell.0) as u32;
            let top = (r.y as f64 * cell.1) as u32;
            let right = (((r.x + REGION_CELLS) as f64 * cell.0) as u32).min(w) - 1;
            let bottom = (((r.y + REGION_CELLS) as f64 * cell.1) as u32).min(h) - 1;
            for (inset, color) in [(0, Rgb([255, 255, 255])), (1, Rgb([0, 0, 0]))] {
                let (l, t, r, b) = (left + inset, top + inset, right - inset, bottom - inset);
                for x in l..=r {
                    out.put_pixel(x0 + x, y0 + t, color);
                    out.put_pixel(x0 + x, y0 + b, color);
                }
                for y in t..=b {
                    out.put_pixel(x0 + l, y0 + y, color);
                    out.put_pixel(x0 + r, y0 + y, color);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_laid_out_scaled_with_gutters_and_outlined_regions() {
        let red = RgbImage::from_pixel(8, 8, Rgb([200, 0, 0]));
        let tiles = vec![
            (red.clone(), None),
            (red.clone(), Some(Region { y: 0, x: 0 })),
            (red.clone(), None),
        ];
        let out = compose(&tiles, 2, (8, 8), 2);
        assert_eq!((out.width(), out.height()), (16 + 4 + 16, 16 + 4 + 16));
        assert_eq!(*out.get_pixel(17, 5), Rgb([255, 255, 255]), "gutter");
        assert_eq!(*out.get_pixel(5, 5), Rgb([200, 0, 0]), "plain tile");
        // The outline of cells 0..3 (6 px at 2×) on the second tile: white, then black.
        assert_eq!(*out.get_pixel(20, 0), Rgb([255, 255, 255]));
        assert_eq!(*out.get_pixel(21, 1), Rgb([0, 0, 0]));
        assert_eq!(
            *out.get_pixel(23, 3),
            Rgb([200, 0, 0]),
            "inside the outline"
        );
        // The empty last cell stays white.
        assert_eq!(*out.get_pixel(30, 30), Rgb([255, 255, 255]));
    }
}
