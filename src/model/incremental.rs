//! Incremental re-rendering: after a paint stroke changes a few cells of the edited layer,
//! recompute only what those cells can reach.
//!
//! A render that may be edited again keeps [`SuffixActivations`]: the edited layer's
//! activation and the output of every later block, in the compute representation. When
//! the next request's activation at that layer differs from the kept one, the changed
//! cells' bounding box is pushed forward block by block ([`Footprint::changed`]: ×2 at an
//! upsample, plus the convolution's reach). Each block then recomputes only that box, from
//! a crop of its (already updated) input that is wide enough for every output pixel in
//! the box ([`Footprint::needed`]), and pastes it into its kept output. Pixels outside
//! the box are provably unchanged, so the image equals a full recompute up to the
//! rounding of a differently tiled convolution.
//!
//! Comparing activations (rather than trusting the request to be "the previous strokes
//! plus one") makes any change cheap in proportion to its size: a new stroke, an undo, a
//! different strength. A change whose box would cost more than [`FULL_RECOMPUTE_FRACTION`]
//! of a full pass is recomputed whole.

use tch::{Kind, Tensor};

use super::fast::Footprint;
use super::{ModelError, ProgGan};

/// Above this share of a full pass's multiply-adds, recompute everything: cropping and
/// pasting would cost more than they save.
pub const FULL_RECOMPUTE_FRACTION: f64 = 0.8;

/// A half-open box of a layer's grid: rows `[y0, y1)`, columns `[x0, x1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub y0: i64,
    pub y1: i64,
    pub x0: i64,
    pub x1: i64,
}

impl Region {
    pub fn area(&self) -> i64 {
        (self.y1 - self.y0).max(0) * (self.x1 - self.x0).max(0)
    }
}

/// One image's suffix pass, kept for the next edit of the same image at the same layer.
pub struct SuffixActivations {
    /// Index of the edited layer; blocks `layer + 1..` are kept.
    layer: usize,
    /// The edited layer's activation `[1, C, H, W]`, compute representation.
    input: Tensor,
    /// Each later block's output `[1, C', H', W']`, compute representation; the last is
    /// the image.
    outputs: Vec<Tensor>,
}

impl SuffixActivations {
    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        std::iter::once(&self.input)
            .chain(&self.outputs)
            .map(|t| t.numel() * t.kind().elt_size_in_bytes())
            .sum()
    }

    pub fn layer(&self) -> usize {
        self.layer
    }
}

/// What an incremental render did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IncrementalStats {
    /// Cells of the edited layer whose activation changed.
    pub changed_cells: i64,
    /// The recomputed share of a full pass's multiply-adds (1 when recomputed whole).
    pub work_fraction: f64,
}

impl ProgGan {
    /// Like [`ProgGan::forward_from`], and also returns each image's activations for
    /// [`ProgGan::forward_from_incremental`]. features `[N, C, H, W]` → image
    /// `[N, 3, R, R]` f32.
    pub fn forward_from_recorded(
        &self,
        layer: &str,
        features: &Tensor,
    ) -> Result<(Tensor, Vec<SuffixActivations>), ModelError> {
        let index = self.layer_index(layer)?;
        let input = self.to_compute(features)?;
        let n = features.size()[0];
        let per_image = |t: &Tensor, i: i64| -> Result<Tensor, ModelError> {
            if n == 1 {
                return Ok(t.shallow_clone());
            }
            // A copy, so that each kept image owns exactly its own memory.
            let slice = t.f_narrow(0, i, 1)?;
            let mut owned = slice.f_empty_like()?;
            owned.f_copy_(&slice)?;
            Ok(owned)
        };
        let mut kept: Vec<SuffixActivations> = (0..n)
            .map(|i| {
                Ok(SuffixActivations {
                    layer: index,
                    input: per_image(&input, i)?,
                    outputs: Vec::new(),
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let mut x = input;
        for block in index + 1..self.layer_names().len() {
            // Split each block's output per image as soon as it exists, so the batched
            // copy of earlier blocks is freed while later ones run.
            x = self.step(block, &x)?;
            for (i, image) in kept.iter_mut().enumerate() {
                image.outputs.push(per_image(&x, i as i64)?);
            }
        }
        let image = self.to_output(&x)?;
        Ok((image, kept))
    }

    /// Re-renders one image whose edited-layer activation is now `features` `[1, C, H, W]`,
    /// recomputing only the part of each later block that the changed cells reach, and
    /// updates `kept` to match. Returns the image `[1, 3, R, R]` f32.
    pub fn forward_from_incremental(
        &self,
        kept: &mut SuffixActivations,
        features: &Tensor,
    ) -> Result<(Tensor, IncrementalStats), ModelError> {
        let new_input = self.to_compute(features)?;
        if new_input.size() != kept.input.size() || new_input.kind() != kept.input.kind() {
            return Err(ModelError::ShapeMismatch {
                key: format!("{} activation", self.layer_names()[kept.layer]),
                expected: format!("{:?} {:?}", kept.input.size(), kept.input.kind()),
                found: format!("{:?} {:?}", new_input.size(), new_input.kind()),
            });
        }
        if kept.outputs.is_empty() {
            // The edited layer is the output itself: nothing to re-render.
            kept.input = new_input;
            return Ok((self.owned_output(&kept.input)?, IncrementalStats::default()));
        }
        let Some(changed) = changed_box(&kept.input, &new_input)? else {
            let image = self.owned_output(kept.outputs.last().expect("checked non-empty"))?;
            return Ok((image, IncrementalStats::default()));
        };
        let changed_cells = changed.area();
        let plan = self.region_plan(kept.layer, changed)?;
        let work_fraction = match &plan {
            Some((_, fraction)) => *fraction,
            None => 1.0,
        };
        let Some((regions, _)) = plan.filter(|(_, f)| *f <= FULL_RECOMPUTE_FRACTION) else {
            let name = self.layer_names()[kept.layer].to_string();
            let (image, mut fresh) = self.forward_from_recorded(&name, features)?;
            *kept = fresh.pop().expect("one image in, one out");
            return Ok((
                image,
                IncrementalStats {
                    changed_cells,
                    work_fraction: 1.0,
                },
            ));
        };
        kept.input = new_input;
        for (offset, region) in regions.iter().enumerate() {
            let block = kept.layer + 1 + offset;
            let footprint = Footprint::of(self.block_specs().nth(block).expect("in range"))
                .expect("region_plan checked every block");
            let source = if offset == 0 {
                &kept.input
            } else {
                &kept.outputs[offset - 1]
            };
            let size = source.size();
            let rows = footprint.needed((region.y0, region.y1), size[2]);
            let cols = footprint.needed((region.x0, region.x1), size[3]);
            let crop = source.f_narrow(2, rows.0, rows.1 - rows.0)?.f_narrow(
                3,
                cols.0,
                cols.1 - cols.0,
            )?;
            let crop = super::proggan::channels_last(&crop)?;
            let computed = self.step(block, &crop)?;
            // `computed` covers rows [stride·a, stride·b) of the whole map.
            let piece = computed
                .f_narrow(
                    2,
                    region.y0 - footprint.stride * rows.0,
                    region.y1 - region.y0,
                )?
                .f_narrow(
                    3,
                    region.x0 - footprint.stride * cols.0,
                    region.x1 - region.x0,
                )?;
            kept.outputs[offset]
                .f_narrow(2, region.y0, region.y1 - region.y0)?
                .f_narrow(3, region.x0, region.x1 - region.x0)?
                .f_copy_(&piece)?;
        }
        let image = self.owned_output(kept.outputs.last().expect("checked non-empty"))?;
        Ok((
            image,
            IncrementalStats {
                changed_cells,
                work_fraction,
            },
        ))
    }

    /// Renders `features` `[K, C, H, W]`: K edits of the one image whose render `kept`
    /// holds, recomputing, for all K at once, only the box of cells where any of them
    /// differs from it. `kept` stays as it was, so one recorded render serves any number
    /// of edits (dissection's causal pass edits each unit of a layer in one small region
    /// of each image). Returns the images `[K, 3, R, R]` f32.
    ///
    /// Each block reads a crop of its input: the kept map, with the part the previous
    /// block recomputed pasted over it, one copy per edit. Only the last block's output is
    /// materialized whole, as the images.
    pub fn forward_from_branches(
        &self,
        kept: &SuffixActivations,
        features: &Tensor,
    ) -> Result<(Tensor, IncrementalStats), ModelError> {
        let new_input = self.to_compute(features)?;
        let (size, kept_size) = (new_input.size(), kept.input.size());
        if size.len() != 4 || size[1..] != kept_size[1..] || new_input.kind() != kept.input.kind() {
            return Err(ModelError::ShapeMismatch {
                key: format!("{} activation", self.layer_names()[kept.layer]),
                expected: format!("[K, {:?}] {:?}", &kept_size[1..], kept.input.kind()),
                found: format!("{size:?} {:?}", new_input.kind()),
            });
        }
        let edits = size[0];
        let Some(last) = kept.outputs.last() else {
            // The edited layer is the output itself: nothing to re-render.
            return Ok((self.owned_output(&new_input)?, IncrementalStats::default()));
        };
        let Some(changed) = changed_box(&kept.input, &new_input)? else {
            let images = self.to_output(&last.f_repeat([edits, 1, 1, 1])?)?;
            return Ok((images, IncrementalStats::default()));
        };
        let changed_cells = changed.area();
        let plan = self
            .region_plan(kept.layer, changed)?
            .filter(|(_, fraction)| *fraction <= FULL_RECOMPUTE_FRACTION);
        let Some((regions, work_fraction)) = plan else {
            let images = self.run(&new_input, kept.layer + 1..self.layer_names().len())?;
            return Ok((
                images,
                IncrementalStats {
                    changed_cells,
                    work_fraction: 1.0,
                },
            ));
        };
        // The previous block's recomputed output `[K, C, ..]` and the box it covers.
        let mut piece: Option<(Tensor, Region)> = None;
        for (offset, region) in regions.iter().enumerate() {
            let block = kept.layer + 1 + offset;
            let footprint = Footprint::of(self.block_specs().nth(block).expect("in range"))
                .expect("region_plan checked every block");
            let full_size = if offset == 0 {
                kept.input.size()
            } else {
                kept.outputs[offset - 1].size()
            };
            let rows = footprint.needed((region.y0, region.y1), full_size[2]);
            let cols = footprint.needed((region.x0, region.x1), full_size[3]);
            let crop_box = Region {
                y0: rows.0,
                y1: rows.1,
                x0: cols.0,
                x1: cols.1,
            };
            let crop = match &piece {
                // The edited layer itself: every edit's whole map is at hand.
                None => crop_of(&new_input, crop_box)?,
                Some((computed, computed_box)) => {
                    let kept_crop = crop_of(&kept.outputs[offset - 1], crop_box)?;
                    let crop = kept_crop.f_repeat([edits, 1, 1, 1])?;
                    paste(&crop, crop_box, computed, *computed_box)?;
                    crop
                }
            };
            let crop = super::proggan::channels_last(&crop)?;
            let computed = self.step(block, &crop)?;
            // `computed` covers rows [stride·a, stride·b) of the whole map.
            let covered = Region {
                y0: footprint.stride * rows.0,
                y1: footprint.stride * rows.1,
                x0: footprint.stride * cols.0,
                x1: footprint.stride * cols.1,
            };
            piece = Some((crop_of_within(&computed, covered, *region)?, *region));
        }
        let images = last.f_repeat([edits, 1, 1, 1])?;
        let (computed, computed_box) = piece.expect("at least one block after the layer");
        let whole = Region {
            y0: 0,
            y1: images.size()[2],
            x0: 0,
            x1: images.size()[3],
        };
        paste(&images, whole, &computed, computed_box)?;
        Ok((
            self.to_output(&images)?,
            IncrementalStats {
                changed_cells,
                work_fraction,
            },
        ))
    }

    /// The image, as memory of its own: the kept tensors change in place on the next
    /// incremental call, and in exact precision `to_output` would only alias them.
    fn owned_output(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let image = self.to_output(x)?;
        if image.data_ptr() != x.data_ptr() {
            return Ok(image);
        }
        let mut owned = image.f_empty_like()?;
        owned.f_copy_(&image)?;
        Ok(owned)
    }

    /// For a change of `changed` cells at layer `layer`: the box each later block must
    /// recompute, and the share of a full pass's multiply-adds that costs (counting the
    /// crop margins). `None` when some block is not a "same" convolution.
    pub fn region_plan(
        &self,
        layer: usize,
        changed: Region,
    ) -> Result<Option<(Vec<Region>, f64)>, ModelError> {
        let mut regions = Vec::new();
        let mut box_now = changed;
        let (mut full, mut partial) = (0f64, 0f64);
        let mut in_len = self.block_specs().nth(layer).expect("in range").resolution;
        for spec in self.block_specs().skip(layer + 1) {
            let Some(footprint) = Footprint::of(spec) else {
                return Ok(None);
            };
            let out_len = spec.resolution;
            let rows = footprint.changed((box_now.y0, box_now.y1), out_len);
            let cols = footprint.changed((box_now.x0, box_now.x1), out_len);
            box_now = Region {
                y0: rows.0,
                y1: rows.1,
                x0: cols.0,
                x1: cols.1,
            };
            // Multiply-adds per output pixel, as the fast plan runs the block.
            let taps = super::fast::taps_per_output(spec);
            let per_pixel = (taps * spec.in_channels * spec.out_channels) as f64;
            let need_r = footprint.needed(rows, in_len);
            let need_c = footprint.needed(cols, in_len);
            let computed =
                footprint.stride * (need_r.1 - need_r.0) * footprint.stride * (need_c.1 - need_c.0);
            full += per_pixel * (out_len * out_len) as f64;
            partial += per_pixel * computed as f64;
            regions.push(box_now);
            in_len = out_len;
        }
        Ok(Some((regions, partial / full.max(1.0))))
    }
}

/// `x[.., box]` for a map `x` `[N, C, H, W]` that covers the whole grid.
fn crop_of(x: &Tensor, area: Region) -> Result<Tensor, tch::TchError> {
    x.f_narrow(2, area.y0, area.y1 - area.y0)?
        .f_narrow(3, area.x0, area.x1 - area.x0)
}

/// The part of `x` over `area`, where `x` covers `covered` of the grid.
fn crop_of_within(x: &Tensor, covered: Region, area: Region) -> Result<Tensor, tch::TchError> {
    crop_of(
        x,
        Region {
            y0: area.y0 - covered.y0,
            y1: area.y1 - covered.y0,
            x0: area.x0 - covered.x0,
            x1: area.x1 - covered.x0,
        },
    )
}

/// Copies `piece` (covering `piece_box` of the grid) into `target` (covering
/// `target_box`), where the two boxes overlap.
fn paste(
    target: &Tensor,
    target_box: Region,
    piece: &Tensor,
    piece_box: Region,
) -> Result<(), tch::TchError> {
    let overlap = Region {
        y0: target_box.y0.max(piece_box.y0),
        y1: target_box.y1.min(piece_box.y1),
        x0: target_box.x0.max(piece_box.x0),
        x1: target_box.x1.min(piece_box.x1),
    };
    if overlap.y1 <= overlap.y0 || overlap.x1 <= overlap.x0 {
        return Ok(());
    }
    crop_of_within(target, target_box, overlap)?
        .f_copy_(&crop_of_within(piece, piece_box, overlap)?)
}

/// The bounding box of the cells where `old` (`[1, C, H, W]`) and `new` (`[1, C, H, W]`,
/// or `[K, C, H, W]` for K edits) differ in any channel of any edit, or `None` when they
/// are equal.
fn changed_box(old: &Tensor, new: &Tensor) -> Result<Option<Region>, ModelError> {
    let differs = old
        .f_ne_tensor(new)?
        .f_any_dims([0i64, 1].as_slice(), false)?
        .f_to_device(tch::Device::Cpu)?
        .f_to_kind(Kind::Uint8)?
        .f_contiguous()?;
    let size = differs.size();
    let (h, w) = (size[0], size[1]);
    let mut cells = vec![0u8; (h * w) as usize];
    differs.f_copy_data_u8(&mut cells, (h * w) as usize)?;
    let mut found: Option<Region> = None;
    for y in 0..h {
        for x in 0..w {
            if cells[(y * w + x) as usize] != 0 {
                let r = found.get_or_insert(Region {
                    y0: y,
                    y1: y + 1,
                    x0: x,
                    x1: x + 1,
                });
                r.y0 = r.y0.min(y);
                r.y1 = r.y1.max(y + 1);
                r.x0 = r.x0.min(x);
                r.x1 = r.x1.max(x + 1);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::Precision;
    use crate::model::ProgGanConfig;
    use tch::Device;

    fn model(precision: Precision) -> ProgGan {
        tch::manual_seed(11);
        let mut model = ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 32, 16, 8],
            },
            Device::Cpu,
        );
        model.set_precision(precision).unwrap();
        model
    }

    /// Sets `cells` (y, x) of units 0..4 of `x` `[1, C, H, W]` to 3.0.
    fn paint(x: &Tensor, cells: &[(i64, i64)]) -> Tensor {
        let out = x.copy();
        for &(y, xx) in cells {
            let _ = out
                .narrow(1, 0, 4)
                .narrow(2, y, 1)
                .narrow(3, xx, 1)
                .fill_(3.0);
        }
        out
    }

    fn check_equals_full(precision: Precision, tolerance: f64) {
        let model = model(precision);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let base = model.features(&z, "layer4").unwrap();
        let (_, mut kept) = model.forward_from_recorded("layer4", &base).unwrap();
        let mut kept = kept.pop().unwrap();
        // A stroke in the middle, then one at a corner on top of it, then an undo.
        let first = paint(&base, &[(3, 3), (3, 4), (4, 3), (4, 4)]);
        let second = paint(&first, &[(0, 7), (1, 7)]);
        for (step, features) in [&first, &second, &first, &base].into_iter().enumerate() {
            let (image, stats) = model.forward_from_incremental(&mut kept, features).unwrap();
            let full = model.forward_from("layer4", features).unwrap();
            let diff = (&image - &full).abs().max().double_value(&[]);
            assert!(
                diff <= tolerance,
                "step {step}: incremental differs from full by {diff}"
            );
            assert!(stats.changed_cells > 0, "step {step} changed nothing");
            assert!(stats.work_fraction < 1.0, "step {step} recomputed whole");
        }
    }

    #[test]
    fn incremental_equals_full_recompute_exact() {
        check_equals_full(Precision::Exact, 1e-5);
    }

    #[test]
    fn incremental_equals_full_recompute_fast_f32() {
        check_equals_full(Precision::FastF32, 1e-5);
    }

    #[test]
    fn incremental_equals_full_recompute_fast_bf16() {
        check_equals_full(Precision::FastBf16, 0.05);
    }

    #[test]
    fn incremental_equals_full_recompute_fast_f16() {
        check_equals_full(Precision::FastF16, 0.01);
    }

    #[test]
    fn unchanged_activation_returns_kept_image_without_work() {
        let model = model(Precision::FastF32);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let base = model.features(&z, "layer4").unwrap();
        let (image, mut kept) = model.forward_from_recorded("layer4", &base).unwrap();
        let (again, stats) = model.forward_from_incremental(&mut kept[0], &base).unwrap();
        assert!(again.equal(&image));
        assert_eq!(stats, IncrementalStats::default());
    }

    #[test]
    fn region_plan_grows_through_upsamples_and_costs_less_at_corners() {
        let model = model(Precision::Exact);
        let layer = model.layer_index("layer4").unwrap();
        let centre = Region {
            y0: 3,
            y1: 5,
            x0: 3,
            x1: 5,
        };
        let (regions, centre_cost) = model.region_plan(layer, centre).unwrap().unwrap();
        // layer5 upsamples 8 → 16: rows 6..10, plus one of reach each side.
        assert_eq!(
            regions[0],
            Region {
                y0: 5,
                y1: 11,
                x0: 5,
                x1: 11
            }
        );
        let corner = Region {
            y0: 0,
            y1: 2,
            x0: 0,
            x1: 2,
        };
        let (_, corner_cost) = model.region_plan(layer, corner).unwrap().unwrap();
        assert!(corner_cost < centre_cost && centre_cost < 1.0);
    }

    #[test]
    fn recorded_batch_keeps_each_image_separately() {
        let model = model(Precision::FastF32);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([3, 16], (Kind::Float, Device::Cpu));
        let feats = model.features(&z, "layer4").unwrap();
        let (images, kept) = model.forward_from_recorded("layer4", &feats).unwrap();
        assert_eq!(kept.len(), 3);
        let one = kept[1].bytes();
        assert!(one > 0 && kept.iter().all(|k| k.bytes() == one));
        let mut second = kept.into_iter().nth(1).unwrap();
        let edited = paint(&feats.narrow(0, 1, 1), &[(2, 2)]);
        let (image, _) = model
            .forward_from_incremental(&mut second, &edited)
            .unwrap();
        let full = model.forward_from("layer4", &edited).unwrap();
        assert!((&image - &full).abs().max().double_value(&[]) < 1e-5);
        assert!(!image.equal(&images.narrow(0, 1, 1)));
    }

    fn check_branches_equal_full(precision: Precision, tolerance: f64) {
        let model = model(precision);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let base = model.features(&z, "layer4").unwrap();
        let (_, mut kept) = model.forward_from_recorded("layer4", &base).unwrap();
        let kept = kept.pop().unwrap();
        let kept_image = kept.outputs.last().unwrap().copy();
        // Three edits of one 2×2-cell region (one unchanged), and, separately, two edits
        // at opposite corners, whose box is the whole grid.
        let region = [(3, 3), (3, 4), (4, 3), (4, 4)];
        let near = Tensor::cat(
            &[
                paint(&base, &region),
                base.copy(),
                paint(&base, &region[..2]),
            ],
            0,
        );
        let far = Tensor::cat(&[paint(&base, &[(0, 0)]), paint(&base, &[(7, 7)])], 0);
        for (features, incremental) in [(&near, true), (&far, false)] {
            let (images, stats) = model.forward_from_branches(&kept, features).unwrap();
            let full = model.forward_from("layer4", features).unwrap();
            assert_eq!(images.size(), full.size());
            let diff = (&images - &full).abs().max().double_value(&[]);
            assert!(diff <= tolerance, "branches differ from full by {diff}");
            assert_eq!(stats.work_fraction < 1.0, incremental, "{stats:?}");
        }
        assert!(
            kept.outputs.last().unwrap().equal(&kept_image),
            "kept changed"
        );
        let (same, stats) = model
            .forward_from_branches(&kept, &base.repeat([2, 1, 1, 1]))
            .unwrap();
        assert_eq!(stats, IncrementalStats::default());
        let full = model.forward_from("layer4", &base).unwrap();
        assert!((&same - &full).abs().max().double_value(&[]) <= tolerance);
    }

    #[test]
    fn branches_equal_full_renders_and_leave_the_kept_render_exact() {
        check_branches_equal_full(Precision::Exact, 1e-5);
    }

    #[test]
    fn branches_equal_full_renders_and_leave_the_kept_render_fast_f32() {
        check_branches_equal_full(Precision::FastF32, 1e-5);
    }

    #[test]
    fn branches_equal_full_renders_and_leave_the_kept_render_fast_bf16() {
        check_branches_equal_full(Precision::FastBf16, 0.05);
    }

    #[test]
    fn branches_of_another_shape_are_refused() {
        let model = model(Precision::FastF32);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let base = model.features(&z, "layer4").unwrap();
        let (_, kept) = model.forward_from_recorded("layer4", &base).unwrap();
        let wrong = base.narrow(1, 0, 4);
        assert!(model.forward_from_branches(&kept[0], &wrong).is_err());
    }
}
