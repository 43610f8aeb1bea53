//! Exact, mergeable accumulators of the second pass: unit × concept intersection counts
//! (hence IoU) and each unit's top-activating samples.
//!
//! For unit `u` with threshold `t_u` and concept `c`, over all samples and segmentation
//! pixels `p`, with `A_u = {p : up(a_u)(p) > t_u}` (the activation bilinearly upsampled
//! to the segmentation's size, `align_corners = false`) and `S_c = {p : seg(p) = c}`:
//!
//! ```text
//! activated[u] = |A_u|     labeled[c] = |S_c|     intersection[u][c] = |A_u ∩ S_c|
//! IoU(u, c) = |A_u ∩ S_c| / (|A_u| + |S_c| − |A_u ∩ S_c|)      (0 when the union is empty)
//! ```
//!
//! All counts are `u64` sums of exact integers, so shards add up to a single run's counts
//! bit for bit, in any order. This is GAN Dissection's `collect_bincounts` with a single
//! category (its union is `activated + labeled − intersection` as well).

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::DissectError;

/// The largest number of elements an upsampled chunk may hold (128 MiB of f32), so a
/// 512-unit layer with 256² segmentations still fits.
const CHUNK_ELEMENTS: i64 = 1 << 25;
/// f32 counts ones exactly up to 2²⁴.
const EXACT_F32_SUM: i64 = 1 << 24;

/// The `[output, input]` matrix of 1-d bilinear interpolation with
/// `align_corners = false`, computed as libtorch's `upsample_bilinear2d` computes its
/// source indices and weights (f32 `scale = input / output`, source `scale·(d + ½) − ½`
/// clamped at 0). Upsampling is then `rows · a · colsᵀ`, two small matrix products: on a
/// CPU 4× faster than `upsample_bilinear2d` for 8² → 64², and equal to it within f32
/// rounding.
pub fn bilinear_matrix(input: i64, output: i64) -> Vec<f32> {
    let (input_len, output_len) = (input.max(1) as usize, output.max(1) as usize);
    let mut matrix = vec![0f32; input_len * output_len];
    let scale = input as f32 / output as f32;
    for dst in 0..output_len {
        let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src as usize).min(input_len - 1);
        let step = usize::from(i0 < input_len - 1);
        let lambda1 = src - i0 as f32;
        let row = &mut matrix[dst * input_len..(dst + 1) * input_len];
        row[i0] += 1.0 - lambda1;
        row[i0 + step] += lambda1;
    }
    matrix
}

/// Pixel counts of one layer against one segmenter's labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerCounts {
    pub samples: u64,
    /// Segmentation pixels counted (samples × h × w).
    pub pixels: u64,
    /// `[unit]`: pixels where the upsampled unit exceeds its threshold.
    pub activated: Vec<u64>,
    /// `[concept]`: pixels segmented as the concept.
    pub labeled: Vec<u64>,
    /// `[unit][concept]`: pixels in both.
    pub intersection: Vec<Vec<u64>>,
}

impl LayerCounts {
    pub fn new(units: usize, concepts: usize) -> Self {
        LayerCounts {
            samples: 0,
            pixels: 0,
            activated: vec![0; units],
            labeled: vec![0; concepts],
            intersection: vec![vec![0; concepts]; units],
        }
    }

    pub fn units(&self) -> usize {
        self.activated.len()
    }

    pub fn concepts(&self) -> usize {
        self.labeled.len()
    }

    pub fn iou(&self, unit: usize, concept: usize) -> f64 {
        let inter = self.intersection[unit][concept];
        let union = self.activated[unit] + self.labeled[concept] - inter;
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }

    /// Counts one batch.
    ///
    /// `activations`: the layer, `[N, C, H, W]`; `thresholds`: `[C]`; `segmentation`:
    /// class ids `[N, h, w]` in `0..concepts`. All on one device.
    pub fn accumulate(
        &mut self,
        activations: &Tensor,
        thresholds: &Tensor,
        segmentation: &Tensor,
    ) -> Result<(), DissectError> {
        let a = activations.size();
        let s = segmentation.size();
        let (units, concepts) = (self.units() as i64, self.concepts() as i64);
        if a.len() != 4 || a[1] != units || s.len() != 3 || s[0] != a[0] {
            return Err(DissectError::Shape {
                what: "activations and segmentation".into(),
                detail: format!("[N, {units}, H, W] and [N, h, w] expected, got {a:?} and {s:?}"),
            });
        }
        let (n, h, w) = (s[0], s[1], s[2]);
        if n == 0 {
            return Ok(());
        }
        let (lowest, highest) = (
            segmentation.f_min()?.int64_value(&[]),
            segmentation.f_max()?.int64_value(&[]),
        );
        if lowest < 0 || highest >= concepts {
            return Err(DissectError::Shape {
                what: "segmentation".into(),
                detail: format!(
                    "class ids span {lowest}..={highest}, but the segmenter has {concepts} labels"
                ),
            });
        }
        if h * w > EXACT_F32_SUM {
            return Err(DissectError::Shape {
                what: "segmentation".into(),
                detail: format!(
                    "{h}×{w} pixels per image is more than 2²⁴, too many to count in f32"
                ),
            });
        }
        let thresholds = thresholds
            .f_to_kind(Kind::Float)?
            .f_view([1, units, 1, 1])?;
        let device = activations.device();
        let rows = Tensor::f_from_slice(&bilinear_matrix(a[2], h))?
            .f_view([h, a[2]])?
            .f_to_device(device)?;
        let cols = Tensor::f_from_slice(&bilinear_matrix(a[3], w))?
            .f_view([w, a[3]])?
            .f_transpose(0, 1)?
            .f_to_device(device)?;
        let chunk = (CHUNK_ELEMENTS / (units * h * w).max(1)).max(1);
        let mut start = 0;
        while start < n {
            let m = chunk.min(n - start);
            // Separable bilinear upsampling, rows · a · colsᵀ: [m, C, h, w].
            let upsampled = rows
                .f_matmul(&activations.f_narrow(0, start, m)?.f_to_kind(Kind::Float)?)?
                .f_matmul(&cols)?;
            let on = upsampled
                .f_gt_tensor(&thresholds)?
                .f_to_kind(Kind::Float)?
                .f_view([m, units, h * w])?;
            let labels = segmentation.f_narrow(0, start, m)?.f_reshape([m, h * w])?;
            // One-hot labels plus a column of ones, so one product gives the intersections
            // and (last column) the activated counts: [m, C, K + 1]. Each entry is a count
            // of at most h·w ≤ 2²⁴ ones, exact in f32.
            let onehot = Tensor::f_cat(
                &[
                    labels.f_one_hot(concepts)?.f_to_kind(Kind::Float)?,
                    Tensor::f_ones([m, h * w, 1], (Kind::Float, device))?,
                ],
                2,
            )?;
            let product = on
                .f_bmm(&onehot)?
                .f_round()?
                .f_to_kind(Kind::Int64)?
                .f_sum_dim_intlist([0i64].as_slice(), false, Kind::Int64)?;
            let intersection = product.f_narrow(1, 0, concepts)?;
            let activated = product.f_select(1, concepts)?;
            let labeled = labels
                .f_reshape([-1])?
                .f_bincount(None::<Tensor>, concepts)?;
            add_into(&mut self.activated, &activated)?;
            add_into(&mut self.labeled, &labeled)?;
            let flat = to_i64_vec(&intersection)?;
            for (row, values) in self
                .intersection
                .iter_mut()
                .zip(flat.chunks(concepts as usize))
            {
                for (acc, &v) in row.iter_mut().zip(values) {
                    *acc += v as u64;
                }
            }
            start += m;
        }
        self.samples += n as u64;
        self.pixels += (n * h * w) as u64;
        Ok(())
    }

    /// Adds another shard's counts (exact).
    pub fn merge(&mut self, other: &LayerCounts) -> Result<(), DissectError> {
        if other.units() != self.units() || other.concepts() != self.concepts() {
            return Err(DissectError::Mismatch {
                what: "count table size".into(),
                detail: format!(
                    "{}×{} vs {}×{}",
                    self.units(),
                    self.concepts(),
                    other.units(),
                    other.concepts()
                ),
            });
        }
        self.samples += other.samples;
        self.pixels += other.pixels;
        for (a, b) in self.activated.iter_mut().zip(&other.activated) {
            *a += b;
        }
        for (a, b) in self.labeled.iter_mut().zip(&other.labeled) {
            *a += b;
        }
        for (row, other_row) in self.intersection.iter_mut().zip(&other.intersection) {
            for (a, b) in row.iter_mut().zip(other_row) {
                *a += b;
            }
        }
        Ok(())
    }
}

/// Any tensor as a flat `Vec<i64>` on the CPU.
pub fn to_i64_vec(t: &Tensor) -> Result<Vec<i64>, DissectError> {
    let flat = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Int64)?
        .f_contiguous()?
        .f_view([-1])?;
    Ok(Vec::<i64>::try_from(&flat)?)
}

fn add_into(acc: &mut [u64], t: &Tensor) -> Result<(), DissectError> {
    for (a, v) in acc.iter_mut().zip(to_i64_vec(t)?) {
        *a += v as u64;
    }
    Ok(())
}

/// Flattens any tensor to a `Vec<f32>` on the CPU, in row-major order.
pub fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>, DissectError> {
    let flat = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_view([-1])?;
    Ok(Vec::<f32>::try_from(&flat)?)
}

/// One of a unit's top samples: an image id and the unit's largest activation in it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopSample {
    pub id: u64,
    pub act: f32,
}

/// Each unit's `k` samples with the largest peak activation, best first. Ties go to the
/// smaller id, so the result is one well-defined set: merging shards is exact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopSamples {
    pub k: usize,
    pub units: Vec<Vec<TopSample>>,
}

fn best_first(a: &TopSample, b: &TopSample) -> std::cmp::Ordering {
    b.act.total_cmp(&a.act).then(a.id.cmp(&b.id))
}

impl TopSamples {
    pub fn new(units: usize, k: usize) -> Self {
        TopSamples {
            k,
            units: vec![Vec::new(); units],
        }
    }

    /// `activations`: `[N, C, H, W]` for the samples `ids` (length N).
    pub fn accumulate(&mut self, activations: &Tensor, ids: &[u64]) -> Result<(), DissectError> {
        let peaks = activations.f_amax([2i64, 3].as_slice(), false)?; // [N, C]
        let peaks = to_f32_vec(&peaks)?;
        let units = self.units.len();
        if peaks.len() != ids.len() * units {
            return Err(DissectError::Shape {
                what: "activations for top samples".into(),
                detail: format!(
                    "{} peaks for {} ids × {units} units",
                    peaks.len(),
                    ids.len()
                ),
            });
        }
        for (unit, list) in self.units.iter_mut().enumerate() {
            list.extend(ids.iter().enumerate().map(|(i, &id)| TopSample {
                id,
                act: peaks[i * units + unit],
            }));
            list.sort_by(best_first);
            list.truncate(self.k);
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &TopSamples) -> Result<(), DissectError> {
        if other.units.len() != self.units.len() || other.k != self.k {
            return Err(DissectError::Mismatch {
                what: "top-sample lists".into(),
                detail: format!(
                    "{} units, k = {} vs {} units, k = {}",
                    self.units.len(),
                    self.k,
                    other.units.len(),
                    other.k
                ),
            });
        }
        for (mine, theirs) in self.units.iter_mut().zip(&other.units) {
            mine.extend_from_slice(theirs);
            mine.sort_by(best_first);
            mine.truncate(self.k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(rows: &[[f32; 2]; 2]) -> Tensor {
        Tensor::from_slice(&rows.concat()).view([2, 2])
    }

    #[test]
    fn counts_and_iou_match_a_hand_computed_example() {
        // Two units on a 2×2 grid, segmented at the same size (so upsampling is the
        // identity). Unit 0 fires only at (0,0); unit 1 everywhere.
        let unit0 = t2(&[[5.0, 0.0], [0.0, 0.0]]);
        let unit1 = t2(&[[1.0, 1.0], [1.0, 1.0]]);
        let acts = Tensor::stack(&[unit0, unit1], 0).view([1, 2, 2, 2]);
        let thresholds = Tensor::from_slice(&[1.0f32, 0.5]);
        let seg = Tensor::from_slice(&[0i64, 1, 1, 2]).view([1, 2, 2]);
        let mut counts = LayerCounts::new(2, 3);
        counts.accumulate(&acts, &thresholds, &seg).unwrap();
        assert_eq!(counts.activated, vec![1, 4]);
        assert_eq!(counts.labeled, vec![1, 2, 1]);
        assert_eq!(counts.intersection, vec![vec![1, 0, 0], vec![1, 2, 1]]);
        assert_eq!((counts.samples, counts.pixels), (1, 4));
        assert_eq!(counts.iou(0, 0), 1.0);
        assert_eq!(counts.iou(1, 1), 0.5); // 2 / (4 + 2 − 2)
        assert_eq!(counts.iou(0, 2), 0.0);
    }

    #[test]
    fn separable_upsampling_matches_libtorch_bilinear() {
        // Integer and fractional scales, up and down.
        for (from, to) in [((8, 8), (64, 64)), ((5, 7), (11, 13)), ((6, 6), (4, 9))] {
            let x = Tensor::randn([2, 3, from.0, from.1], (Kind::Float, Device::Cpu));
            let reference = x.upsample_bilinear2d([to.0, to.1], false, None::<f64>, None::<f64>);
            let rows = Tensor::from_slice(&bilinear_matrix(from.0, to.0)).view([to.0, from.0]);
            let cols = Tensor::from_slice(&bilinear_matrix(from.1, to.1)).view([to.1, from.1]);
            let ours = rows.matmul(&x).matmul(&cols.tr());
            let diff = (ours - reference).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{from:?} → {to:?}: max difference {diff}");
        }
    }

    #[test]
    fn threshold_is_strict() {
        let acts = Tensor::ones([1, 1, 2, 2], (Kind::Float, Device::Cpu));
        let seg = Tensor::zeros([1, 2, 2], (Kind::Int64, Device::Cpu));
        let mut counts = LayerCounts::new(1, 1);
        counts
            .accumulate(&acts, &Tensor::from_slice(&[1.0f32]), &seg)
            .unwrap();
        assert_eq!(counts.activated, vec![0]);
    }

    #[test]
    fn activations_are_upsampled_bilinearly_to_the_segmentation() {
        // A 1×2 layer [0, 4] upsampled to 1×4 with align_corners = false gives
        // [0, 1, 3, 4]; above 2 are the right two pixels.
        let acts = Tensor::from_slice(&[0.0f32, 4.0]).view([1, 1, 1, 2]);
        let seg = Tensor::from_slice(&[0i64, 0, 1, 1]).view([1, 1, 4]);
        let mut counts = LayerCounts::new(1, 2);
        counts
            .accumulate(&acts, &Tensor::from_slice(&[2.0f32]), &seg)
            .unwrap();
        assert_eq!(counts.intersection, vec![vec![0, 2]]);
        assert_eq!(counts.iou(0, 1), 1.0);
    }

    #[test]
    fn batches_and_merges_give_the_same_counts() {
        let acts = Tensor::randn([6, 3, 4, 4], (Kind::Float, Device::Cpu));
        let seg = Tensor::randint(4, [6, 8, 8], (Kind::Int64, Device::Cpu));
        let thresholds = Tensor::from_slice(&[0.0f32, 0.5, 1.0]);
        let mut whole = LayerCounts::new(3, 4);
        whole.accumulate(&acts, &thresholds, &seg).unwrap();
        let mut parts = LayerCounts::new(3, 4);
        for (start, len) in [(0, 1), (1, 3), (4, 2)] {
            let mut part = LayerCounts::new(3, 4);
            part.accumulate(
                &acts.narrow(0, start, len),
                &thresholds,
                &seg.narrow(0, start, len),
            )
            .unwrap();
            parts.merge(&part).unwrap();
        }
        assert_eq!(whole, parts);
        assert_eq!(whole.labeled.iter().sum::<u64>(), 6 * 64);
    }

    #[test]
    fn out_of_range_class_ids_are_an_error() {
        let acts = Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu));
        let seg = Tensor::full([1, 2, 2], 3, (Kind::Int64, Device::Cpu));
        let err = LayerCounts::new(1, 3)
            .accumulate(&acts, &Tensor::from_slice(&[0.0f32]), &seg)
            .unwrap_err();
        assert!(err.to_string().contains("3 labels"), "{err}");
    }

    #[test]
    fn top_samples_keep_the_largest_peaks_with_ties_to_smaller_ids() {
        // Peaks per sample for unit 0: 1, 3, 3, 2.
        let acts = Tensor::from_slice(&[1.0f32, 3.0, 3.0, 2.0]).view([4, 1, 1, 1]);
        let mut top = TopSamples::new(1, 2);
        top.accumulate(&acts, &[10, 12, 11, 13]).unwrap();
        let ids: Vec<u64> = top.units[0].iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![11, 12]);
        let mut split = TopSamples::new(1, 2);
        split.accumulate(&acts.narrow(0, 0, 2), &[10, 12]).unwrap();
        let mut other = TopSamples::new(1, 2);
        other.accumulate(&acts.narrow(0, 2, 2), &[11, 13]).unwrap();
        split.merge(&other).unwrap();
        assert_eq!(split, top);
    }
}
