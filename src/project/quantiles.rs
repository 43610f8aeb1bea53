//! GAN Dissection's quantile files: a layer's `quantiles.npz`, the sketch of its
//! `RunningQuantile`, read with the generic reader of [`crate::formats::npy`] and given
//! gandissect's meaning twice:
//!
//! - [`read_gandissect_quantiles`] turns it into the [`LevelTable`] that painting uses.
//!   [`read_project`](super::read_project) calls it when a folder has no `levels.json`
//!   entry for a layer, so a GAN Dissection output folder (`<project>/dissect.json`,
//!   `<project>/<layer>/quantiles.npz`) can be served as it is, with the full level table
//!   rather than the one `level` per unit in its `dissect.json`.
//! - [`QuantileNormalizer`] maps activations to quantiles through the whole sketch,
//!   exactly as `RunningQuantile.normalize` does, for the server's `/api/features` and
//!   `/api/featuremaps`, rather than through the level grid that painting uses.
//!
//! No Python runs: the one pickle inside goes through the inert
//! [`pickle`](crate::formats::pickle) VM.
//!
//! ## The file
//! gandissect saves its `RunningQuantile` sketch with `numpy.savez(path,
//! **rq.state_dict())`: a zip of one `.npy` per key. The keys used here:
//!
//! | key | what numpy stored |
//! |---|---|
//! | `constructor` | `'netdissect.runningstats.RunningQuantile()'`, a 0-d `<U` array |
//! | `depth` | the units, a 0-d `<i8` |
//! | `data` | level `i`'s samples, `[n_i, depth]` each (see below) |
//! | `sizes` | each level's capacity, `<i8 [levels]` |
//! | `extremes` | each unit's `(min, max)`, `[depth, 2]` |
//! | `size` | the values added per unit, a 0-d `<i8` |
//!
//! `data` is a list of arrays of different lengths. numpy < 1.24 made a 1-D **object**
//! array of it (numpy ≥ 1.24 refuses ragged lists), and an object array's `.npy` payload
//! is a pickle of the array: `_reconstruct` + `BUILD` with state `(version, shape,
//! dtype, is_fortran, data)`, where `data` is the list of element arrays, each pickled
//! the same way with its raw bytes. Things that are easy to miss:
//!
//! - Levels are `buffer[:, :n].T` views. A **full** level's view is Fortran-contiguous,
//!   so numpy pickles it column-major with `is_fortran = True`; others are C order.
//! - When every level holds the same number of samples (one level, say), the list is not
//!   ragged and numpy stacks it into a plain `[levels, n, depth]` array instead.
//! - numpy 1 pickles name `numpy.core.multiarray._reconstruct`, numpy 2
//!   `numpy._core.multiarray._reconstruct`. numpy ≤ 1.16 wrote protocol 2 (bytes
//!   appear as `_codecs.encode(text, 'latin1')`), 1.17–1.26 protocol 3, numpy 2
//!   protocol 4. numpy 1 cannot load numpy 2's files; this reader takes all of them.
//! - The saved `extremes` leave out the samples still in level 0: gandissect folds
//!   level 0 in only when it computes quantiles, so the reader must do the same.
//!
//! ## The quantiles
//! As `RunningQuantile.quantiles`: per unit, a summary of the two extremes (weight 0)
//! and every sample of level `i` (weight `2^i`), sorted by value; each point sits at
//! `(cumsum(w) − w/2) / sum(w)`, and a quantile is `numpy.interp` in those points
//! (linear, clamped at the ends). Two deliberate differences, both far below a unit's
//! level resolution: ties are broken by summary position (extremes, then level 0, 1,
//! …), because gandissect's `torch.sort` is not stable, so its own answer for tied
//! values depends on torch's sort order; and the arithmetic is float64 at the exact
//! quantiles, where gandissect rounds the requested quantiles to float32
//! (`torch.Tensor(q)`: 0.99 becomes 0.99000001) and keeps weights in float32. On the
//! test fixture its levels differ from these by up to 1.3e-6.
//!
//! ## Hostile input
//! Shapes in headers and pickles are never trusted: element counts are multiplied with
//! overflow checks and compared with the bytes actually present before anything is
//! allocated, zip entry sizes are checked against the file size, the pickle VM has its
//! own limits, and an object array may hold arrays but not further object arrays (so
//! decoding cannot recurse). Errors name the entry (`data.npy`) and what was wrong.

use std::path::{Component, Path, PathBuf};

use super::{grid_quantiles, read_file, LevelTable, ProjectError, LEVEL_QUANTILES};
use crate::formats::npy::{NpyArray, NpyData, NpyError, Npz};

/// gandissect's file for a layer's sketch: `<project>/<layer>/quantiles.npz`.
pub const QUANTILES_FILE: &str = "quantiles.npz";
/// The quantile of the thresholds in a table read from gandissect's sketch:
/// `1 − quantile_threshold` for gandissect's usual 0.01. (Some gandissect versions
/// default to 0.005; painting uses the levels, not the thresholds.)
pub const THRESHOLD_QUANTILE: f64 = 0.99;
/// What errors call the file.
pub(super) const QUANTILES_WHAT: &str = "GAN Dissection quantiles file";

// ---------------------------------------------------------------------------------------
// gandissect's RunningQuantile

/// What gandissect's `RunningQuantile` keeps: samples in levels, where each sample of
/// level `i` stands for `2^i` values, and each unit's extremes.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningQuantileState {
    /// Units.
    pub depth: usize,
    /// Level `i`: `[n_i, depth]`, row-major.
    pub levels: Vec<Vec<f64>>,
    /// Per unit `(min, max)` as saved (without level 0, see the module docs).
    pub extremes: Vec<(f64, f64)>,
    /// Values added per unit (`size`).
    pub size: u64,
}

impl RunningQuantileState {
    /// Reads a `RunningQuantile.state_dict()` saved with `numpy.savez`.
    pub fn from_npz(bytes: &[u8]) -> Result<Self, NpyError> {
        let mut npz = Npz::new(bytes)?;
        let content = |key: &str, detail: String| NpyError::Content {
            entry: format!("{key}.npy"),
            detail,
        };
        if let Some(constructor) = npz.array("constructor")? {
            match constructor.as_str_scalar() {
                Some(name) if name.ends_with("RunningQuantile()") => {}
                Some(name) => {
                    return Err(content(
                        "constructor",
                        format!("`{name}` is not a RunningQuantile"),
                    ))
                }
                None => {
                    return Err(content(
                        "constructor",
                        format!("expected a string, found {}", constructor.describe()),
                    ))
                }
            }
        }

        let extremes = npz.require("extremes")?;
        let depth = match extremes.shape[..] {
            [depth, 2] => depth,
            _ => {
                return Err(content(
                    "extremes",
                    format!("expected [depth, 2], found {}", extremes.describe()),
                ))
            }
        };
        let extreme_values = float_values(&extremes)
            .ok_or_else(|| content("extremes", format!("{} is not float", extremes.describe())))?;
        let extremes: Vec<(f64, f64)> = extreme_values
            .chunks_exact(2)
            .map(|p| (p[0], p[1]))
            .collect();
        if let Some(declared) = npz.array("depth")? {
            if declared.as_int_scalar() != Some(depth as i64) {
                return Err(content(
                    "depth",
                    format!(
                        "{} ({:?}) does not match `extremes` ({depth} units)",
                        declared.describe(),
                        declared.as_int_scalar()
                    ),
                ));
            }
        }

        let data = npz.require("data")?;
        let levels = split_levels(&data, depth).map_err(|detail| content("data", detail))?;
        if let Some(sizes) = npz.array("sizes")? {
            if sizes.data.len() != levels.len() {
                return Err(content(
                    "sizes",
                    format!(
                        "{} capacities for {} levels in `data`",
                        sizes.data.len(),
                        levels.len()
                    ),
                ));
            }
        }
        let size = npz.require("size")?;
        let size = size
            .as_int_scalar()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(|| {
                content(
                    "size",
                    format!("expected a count, found {}", size.describe()),
                )
            })?;
        Ok(RunningQuantileState {
            depth,
            levels,
            extremes,
            size,
        })
    }

    /// `RunningQuantile.quantiles(quantiles)`: `[unit][quantile]`. All NaN when no value
    /// was added, as gandissect returns.
    pub fn quantiles(&self, quantiles: &[f64]) -> Vec<Vec<f64>> {
        let samples: usize = self
            .levels
            .iter()
            .map(|l| l.len() / self.depth.max(1))
            .sum();
        let mut summary: Vec<(f64, f64)> = Vec::with_capacity(samples + 2);
        (0..self.depth)
            .map(|unit| {
                if self.size == 0 {
                    return vec![f64::NAN; quantiles.len()];
                }
                let Some(&(mut low, mut high)) = self.extremes.get(unit) else {
                    return vec![f64::NAN; quantiles.len()];
                };
                // gandissect's `_scan_extremes`: level 0 is not in the saved extremes.
                if let Some(level0) = self.levels.first() {
                    for row in level0.chunks_exact(self.depth) {
                        low = low.min(row[unit]);
                        high = high.max(row[unit]);
                    }
                }
                summary.clear();
                summary.push((low, 0.0));
                summary.push((high, 0.0));
                for (level, values) in self.levels.iter().enumerate() {
                    let weight = 2f64.powi(i32::try_from(level).unwrap_or(i32::MAX));
                    summary.extend(
                        values
                            .chunks_exact(self.depth)
                            .map(|row| (row[unit], weight)),
                    );
                }
                weighted_quantiles(&mut summary, quantiles)
            })
            .collect()
    }

    /// The level table painting uses: levels at [`LEVEL_QUANTILES`], thresholds at
    /// [`THRESHOLD_QUANTILE`], the grid at [`grid_quantiles`]. The sketch's rank error is
    /// not known, so `rank_error` and `threshold_rank_error` are NaN.
    pub fn level_table(&self) -> LevelTable {
        let grid = grid_quantiles();
        let mut wanted = LEVEL_QUANTILES.to_vec();
        wanted.push(THRESHOLD_QUANTILE);
        wanted.extend(&grid);
        let rows = self.quantiles(&wanted);
        let narrow = |values: &[f64]| values.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let n = LEVEL_QUANTILES.len();
        LevelTable {
            quantiles: LEVEL_QUANTILES.to_vec(),
            levels: rows.iter().map(|row| narrow(&row[..n])).collect(),
            threshold_quantile: THRESHOLD_QUANTILE,
            thresholds: rows.iter().map(|row| row[n] as f32).collect(),
            grid_levels: rows.iter().map(|row| narrow(&row[n + 1..])).collect(),
            grid_quantiles: grid,
            rank_error: f64::NAN,
            threshold_rank_error: f64::NAN,
            values: self.size,
        }
    }
}

/// Float elements as `f64` (integers are not samples).
fn float_values(array: &NpyArray) -> Option<Vec<f64>> {
    match array.data {
        NpyData::F32(_) | NpyData::F64(_) => array.to_f64(),
        _ => None,
    }
}

/// `data`'s levels, each `[n_i, depth]` row-major: a 1-D object array of 2-D float
/// arrays, or (when all levels hold as many samples) one `[levels, n, depth]` array.
fn split_levels(data: &NpyArray, depth: usize) -> Result<Vec<Vec<f64>>, String> {
    match (&data.data, &data.shape[..]) {
        (NpyData::Object(items), [_]) => items
            .iter()
            .enumerate()
            .map(|(i, level)| match level.shape[..] {
                [_, units] if units == depth => float_values(level)
                    .ok_or_else(|| format!("level {i} is {}, not float", level.describe())),
                _ => Err(format!(
                    "level {i} is {}, expected [samples, {depth}]",
                    level.describe()
                )),
            })
            .collect(),
        (NpyData::F32(_) | NpyData::F64(_), &[_, n, units]) if units == depth => {
            let values = data.to_f64().unwrap_or_default();
            let per_level = n * depth;
            if per_level == 0 {
                return Ok(vec![Vec::new(); data.shape[0]]);
            }
            Ok(values
                .chunks_exact(per_level)
                .map(<[f64]>::to_vec)
                .collect())
        }
        _ => Err(format!(
            "expected a list of [samples, {depth}] float arrays, found {}",
            data.describe()
        )),
    }
}

/// Sorts a `(value, weight)` summary by value (ties keep their order) and interpolates
/// each quantile at the points `(cumsum(w) − w/2) / sum(w)`, as `numpy.interp` does.
fn weighted_quantiles(summary: &mut [(f64, f64)], quantiles: &[f64]) -> Vec<f64> {
    // NaN sorts last, as in torch.sort; -0.0 and 0.0 tie.
    summary.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
        (false, false) => a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal),
        (x, y) => x.cmp(&y),
    });
    let total: f64 = summary.iter().map(|&(_, w)| w).sum();
    if total.is_nan() || total <= 0.0 {
        return vec![f64::NAN; quantiles.len()];
    }
    let mut running = 0.0;
    let positions: Vec<f64> = summary
        .iter()
        .map(|&(_, w)| {
            running += w;
            (running - w / 2.0) / total
        })
        .collect();
    let values: Vec<f64> = summary.iter().map(|&(v, _)| v).collect();
    quantiles
        .iter()
        .map(|&q| interp(q, &positions, &values))
        .collect()
}

/// `numpy.interp(x, xp, fp)` for one point: linear between neighbours, clamped to the
/// end values outside `xp`.
fn interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let (Some(&first), Some(&last)) = (xp.first(), xp.last()) else {
        return f64::NAN;
    };
    if x.is_nan() {
        return f64::NAN;
    }
    if x > last {
        return fp[fp.len() - 1];
    }
    if x < first {
        return fp[0];
    }
    // The last j with xp[j] <= x.
    let j = xp.partition_point(|&p| p <= x).saturating_sub(1);
    if j + 1 >= xp.len() || x == xp[j] {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    let value = slope * (x - xp[j]) + fp[j];
    if !value.is_nan() {
        return value;
    }
    // numpy: if that is NaN, try from the other end.
    let value = slope * (x - xp[j + 1]) + fp[j + 1];
    if value.is_nan() && fp[j] == fp[j + 1] {
        fp[j]
    } else {
        value
    }
}

/// `<dir>/<folder>/quantiles.npz`, where `folder` is the layer name as gandissect's
/// `safe_dir_name` makes it (letters, digits, space, `.`, `_` and `-` kept, trailing
/// space dropped); `None` when that is not a plain folder name (`..`, empty).
pub fn gandissect_quantiles_path(dir: &Path, layer: &str) -> Option<PathBuf> {
    let folder: String = layer
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'))
        .collect();
    let folder = folder.trim_end();
    let mut parts = Path::new(folder).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Some(dir.join(folder).join(QUANTILES_FILE)),
        _ => None,
    }
}

/// Reads gandissect's `<project>/<layer>/quantiles.npz` as a [`LevelTable`] (see
/// [`RunningQuantileState::level_table`]).
pub fn read_gandissect_quantiles(path: &Path) -> Result<LevelTable, ProjectError> {
    let bytes = read_file(path)?;
    let state = RunningQuantileState::from_npz(&bytes).map_err(|e| ProjectError::Format {
        path: path.display().to_string(),
        what: QUANTILES_WHAT.into(),
        detail: e.to_string(),
    })?;
    Ok(state.level_table())
}

// ---------------------------------------------------------------------------------------
// GAN Dissection's RunningQuantile.normalize

/// Each unit's map from activation to quantile, as GAN Dissection's
/// `RunningQuantile.normalize` computes it from the sketch in a layer's `quantiles.npz`:
/// a summary of the unit's two extremes (weight 0) and every sample of level `i` (weight
/// `2^i`), sorted by value; each sample sits at `(cumsum(w) − w/2) / sum(w)`, computed in
/// f32 as gandissect keeps weights; a value's quantile is `numpy.interp(value, samples,
/// positions)` in f64, narrowed to f32 and clamped to [0, 1]. Ties are broken by summary
/// position (extremes, then level 0, 1, …), as [`RunningQuantileState::quantiles`] does for
/// the levels.
#[derive(Debug)]
pub struct QuantileNormalizer {
    /// Per unit: `(sorted sample values, their positions)`.
    units: Vec<(Vec<f64>, Vec<f32>)>,
}

impl QuantileNormalizer {
    /// Reads `<project>/<layer>/quantiles.npz`.
    pub fn read(path: &Path) -> Result<Self, ProjectError> {
        let bytes = read_file(path)?;
        let state = RunningQuantileState::from_npz(&bytes).map_err(|e| ProjectError::Format {
            path: path.display().to_string(),
            what: QUANTILES_WHAT.into(),
            detail: e.to_string(),
        })?;
        Ok(Self::from_state(&state))
    }

    pub fn from_state(state: &RunningQuantileState) -> Self {
        let depth = state.depth.max(1);
        let units = (0..state.depth)
            .map(|unit| {
                if state.size == 0 {
                    return (Vec::new(), Vec::new());
                }
                let Some(&(mut low, mut high)) = state.extremes.get(unit) else {
                    return (Vec::new(), Vec::new());
                };
                // gandissect folds level 0 into the extremes only when it reads them.
                if let Some(level0) = state.levels.first() {
                    for row in level0.chunks_exact(depth) {
                        low = low.min(row[unit]);
                        high = high.max(row[unit]);
                    }
                }
                let mut summary: Vec<(f64, f32)> = vec![(low, 0.0), (high, 0.0)];
                for (level, values) in state.levels.iter().enumerate() {
                    let weight = 2f32.powi(i32::try_from(level).unwrap_or(i32::MAX));
                    summary.extend(values.chunks_exact(depth).map(|row| (row[unit], weight)));
                }
                // NaN last, as torch.sort; the sort is stable, so ties keep summary order.
                summary.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
                    (false, false) => a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal),
                    (x, y) => x.cmp(&y),
                });
                // Weights are small powers of two: sums are exact in f64, and one rounding
                // to f32 per operation is what torch's f32 arithmetic gives.
                let total = summary.iter().map(|&(_, w)| w as f64).sum::<f64>() as f32;
                let mut running = 0f64;
                let positions = summary
                    .iter()
                    .map(|&(_, w)| {
                        running += w as f64;
                        let centred = (running as f32 as f64 - (w / 2.0) as f64) as f32;
                        (centred as f64 / total as f64) as f32
                    })
                    .collect();
                (summary.into_iter().map(|(v, _)| v).collect(), positions)
            })
            .collect();
        QuantileNormalizer { units }
    }

    pub fn units(&self) -> usize {
        self.units.len()
    }

    /// `unit`'s quantile of `value` in [0, 1]; `None` for an unknown unit or an empty
    /// sketch.
    pub fn normalize(&self, unit: usize, value: f32) -> Option<f32> {
        let (values, positions) = self.units.get(unit)?;
        let q = numpy_interp(value as f64, values, positions)?;
        Some((q as f32).clamp(0.0, 1.0))
    }
}

/// `numpy.interp(x, xp, fp)` for one point, with numpy's arithmetic: the last `j` with
/// `xp[j] <= x`, then `slope·(x − xp[j]) + fp[j]`; clamped to the end values outside
/// `xp`. `None` when `xp` is empty.
fn numpy_interp(x: f64, xp: &[f64], fp: &[f32]) -> Option<f64> {
    let n = xp.len();
    if n == 0 || fp.len() != n {
        return None;
    }
    let y = |i: usize| fp[i] as f64;
    if x.is_nan() {
        return Some(x);
    }
    if x < xp[0] {
        return Some(y(0));
    }
    if x > xp[n - 1] {
        return Some(y(n - 1));
    }
    let j = xp.partition_point(|&p| p <= x).saturating_sub(1);
    if j == n - 1 || xp[j] == x {
        return Some(y(j));
    }
    let slope = (y(j + 1) - y(j)) / (xp[j + 1] - xp[j]);
    let value = slope * (x - xp[j]) + y(j);
    if !value.is_nan() {
        return Some(value);
    }
    let value = slope * (x - xp[j + 1]) + y(j + 1);
    Some(if value.is_nan() && y(j) == y(j + 1) {
        y(j)
    } else {
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::npy::parse_npy;
    use crate::formats::npy::testing::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gandissect")
            .join(name)
    }

    /// The three fixture sketches (scripts/make_npz_fixture.py): numpy 2 (protocol 4),
    /// numpy 1.17–1.26 (protocol 3) and numpy ≤ 1.16 in float64 (protocol 2).
    const SKETCHES: [&str; 3] = [
        "layer4/quantiles.npz",
        "legacy_np1_proto3.npz",
        "legacy_np1_proto2_f64.npz",
    ];

    /// expected_quantiles.json: RunningQuantile.quantiles(quantiles) recomputed in numpy
    /// float64 by the fixture script (`gandissect_quantiles`).
    #[derive(serde::Deserialize)]
    struct Expected {
        quantiles: Vec<f64>,
        levels: Vec<Vec<f64>>,
        depth: usize,
        size: u64,
    }

    fn expected() -> Expected {
        serde_json::from_slice(&std::fs::read(fixture("expected_quantiles.json")).unwrap()).unwrap()
    }

    /// The expected level of every unit at `quantile`.
    fn expected_at(expected: &Expected, quantile: f64) -> Vec<f64> {
        let col = expected
            .quantiles
            .iter()
            .position(|&q| q == quantile)
            .unwrap();
        expected.levels.iter().map(|row| row[col]).collect()
    }

    /// A small valid state: 2 units, levels `[n, 2]` of f32, extremes, size.
    fn small_state(data: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "constructor",
                unicode_npy("netdissect.runningstats.RunningQuantile()"),
            ),
            (
                "extremes",
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                    &f32_bytes(&[0.0, 10.0, -1.0, 1.0]),
                ),
            ),
            ("data", data),
            (
                "size",
                npy(
                    1,
                    "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
                    &9i64.to_le_bytes(),
                ),
            ),
        ]
    }

    #[test]
    fn object_array_levels_decode_from_every_numpy_version() {
        let mut decoded = Vec::new();
        for name in SKETCHES {
            let bytes = std::fs::read(fixture(name)).unwrap();
            let mut archive = Npz::new(&bytes).unwrap();
            let mut keys = archive.keys();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "buffersize",
                    "constructor",
                    "data",
                    "depth",
                    "extremes",
                    "resolution",
                    "samplerate",
                    "size",
                    "sizes"
                ],
                "{name}"
            );
            let constructor = archive.require("constructor").unwrap();
            assert_eq!(
                constructor.as_str_scalar(),
                Some("netdissect.runningstats.RunningQuantile()")
            );
            let sizes = archive.require("sizes").unwrap();
            assert_eq!(sizes.data, NpyData::Int(vec![24, 32, 48, 64]));
            let NpyData::Object(levels) = archive.require("data").unwrap().data else {
                panic!("{name}: data is not an object array");
            };
            let shapes: Vec<&[usize]> = levels.iter().map(|l| &l.shape[..]).collect();
            assert_eq!(shapes, [[13, 6], [0, 6], [29, 6], [64, 6]], "{name}");
            let f64_file = name.contains("f64");
            for level in &levels {
                assert_eq!(
                    matches!(level.data, NpyData::F64(_)),
                    f64_file,
                    "{name}: {}",
                    level.describe()
                );
            }
            decoded.push(RunningQuantileState::from_npz(&bytes).unwrap());
        }
        // The full last level was pickled column-major (is_fortran) and the others
        // row-major; all three files decode to the same samples.
        assert_eq!(decoded[0], decoded[1]);
        assert_eq!(decoded[0], decoded[2]);
        assert_eq!(decoded[0].depth, 6);
        assert_eq!(decoded[0].size, 641);
    }

    #[test]
    fn quantiles_match_the_numpy_reference() {
        let expected = expected();
        for name in SKETCHES {
            let state =
                RunningQuantileState::from_npz(&std::fs::read(fixture(name)).unwrap()).unwrap();
            assert_eq!((state.depth, state.size), (expected.depth, expected.size));
            let got = state.quantiles(&expected.quantiles);
            for (unit, (row, want)) in got.iter().zip(&expected.levels).enumerate() {
                for ((g, w), q) in row.iter().zip(want).zip(&expected.quantiles) {
                    assert!((g - w).abs() < 1e-9, "{name} unit {unit} q {q}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn level_table_holds_levels_thresholds_and_grid() {
        let expected = expected();
        let table = read_gandissect_quantiles(&fixture("layer4/quantiles.npz")).unwrap();
        assert_eq!(table.quantiles, LEVEL_QUANTILES.to_vec());
        assert_eq!(table.threshold_quantile, 0.99);
        assert_eq!(table.grid_quantiles, grid_quantiles());
        assert_eq!(table.values, 641);
        assert!(table.rank_error.is_nan() && table.threshold_rank_error.is_nan());
        let close = |got: f32, want: f64| (f64::from(got) - want).abs() < 1e-6;
        for (col, &q) in LEVEL_QUANTILES.iter().enumerate() {
            for (unit, want) in expected_at(&expected, q).into_iter().enumerate() {
                let got = table.levels[unit][col];
                assert!(close(got, want), "unit {unit} q {q}: {got} vs {want}");
            }
        }
        let grid = grid_quantiles();
        for q in [0.0, 0.5, 0.99, 1.0] {
            let col = grid.iter().position(|&g| g == q).unwrap();
            for (unit, want) in expected_at(&expected, q).into_iter().enumerate() {
                assert!(close(table.grid_levels[unit][col], want), "grid q {q}");
                assert!(close(table.level(unit, q).unwrap(), want), "level q {q}");
            }
        }
        assert_eq!(
            table.thresholds,
            table.levels.iter().map(|r| r[0]).collect::<Vec<_>>()
        );
        // Unit 2's level-0 sample below the saved minimum is its quantile 0.
        assert!(table.grid_levels[2][0] < table.grid_levels[2][1]);
    }

    #[test]
    fn read_project_uses_the_gandissect_sketch_without_levels_json() {
        let dir = fixture("");
        assert!(!dir.join("levels.json").exists());
        let project = super::super::read_project(&dir).unwrap();
        let layer = project.layer("layer4").unwrap();
        assert_eq!(layer.units, 6);
        assert_eq!(layer.levels.quantiles, LEVEL_QUANTILES.to_vec());
        assert_eq!(layer.top_units("tree", 2).unwrap(), vec![0, 5]);
        let expected = expected();
        let units: Vec<i64> = (0..6).collect();
        for q in LEVEL_QUANTILES {
            let got = layer.levels_for(&units, q).unwrap();
            for (g, w) in got.iter().zip(expected_at(&expected, q)) {
                assert!((f64::from(*g) - w).abs() < 1e-6, "q {q}: {g} vs {w}");
            }
        }
        // Between the stored columns, the grid answers.
        assert!(layer.levels_for(&[1], 0.7).unwrap()[0].is_finite());
    }

    #[test]
    fn read_project_checks_the_sketch_unit_count_and_falls_back_without_it() {
        let dir = std::env::temp_dir().join(format!("ganpaint-npz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("layer4")).unwrap();
        let mut dissect: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("dissect.json")).unwrap()).unwrap();
        let units = dissect["layers"][0]["units"].as_array_mut().unwrap();
        units.truncate(5);
        let levels: Vec<f64> = units.iter().map(|u| u["level"].as_f64().unwrap()).collect();
        for ranking in dissect["layers"][0]["rankings"].as_array_mut().unwrap() {
            ranking["score"].as_array_mut().unwrap().truncate(5);
        }
        std::fs::write(dir.join("dissect.json"), dissect.to_string()).unwrap();

        // No sketch: each unit's one level.
        let project = super::super::read_project(&dir).unwrap();
        let table = &project.layer("layer4").unwrap().levels;
        assert_eq!(table.quantiles, vec![0.99]);
        assert_eq!(table.levels[3][0], levels[3] as f32);

        // A sketch of 6 units for 5 listed units.
        std::fs::copy(
            fixture("layer4/quantiles.npz"),
            dir.join("layer4/quantiles.npz"),
        )
        .unwrap();
        let err = super::super::read_project(&dir).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("quantiles.npz") && message.contains("6 units"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn truncated_or_garbage_npz_is_a_named_error() {
        let bytes = std::fs::read(fixture("layer4/quantiles.npz")).unwrap();
        for cut in (0..bytes.len()).step_by(5).chain([bytes.len() - 1]) {
            assert!(
                RunningQuantileState::from_npz(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let path =
            std::env::temp_dir().join(format!("ganpaint-npz-cut-{}.npz", std::process::id()));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        match read_gandissect_quantiles(&path) {
            Err(ProjectError::Format { path: p, what, .. }) => {
                assert!(p.ends_with(".npz"));
                assert_eq!(what, QUANTILES_WHAT);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            RunningQuantileState::from_npz(b"not a zip at all"),
            Err(NpyError::Zip(_))
        ));

        // A flipped byte inside `data.npy`: the zip CRC names the entry.
        let at = bytes
            .windows(12)
            .position(|w| w == b"_reconstruct")
            .unwrap();
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x20;
        let err = RunningQuantileState::from_npz(&flipped).unwrap_err();
        assert!(err.to_string().contains("data.npy"), "{err}");

        // data.npy itself, cut and mutated: errors, never panics.
        let data = Npz::new(&bytes)
            .unwrap()
            .read_entry("data.npy")
            .unwrap()
            .unwrap();
        parse_npy(&data).unwrap();
        for cut in 0..data.len() {
            assert!(parse_npy(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut copy = data.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % copy.len() as u64) as usize;
                copy[i] = (state >> 32) as u8;
            }
            let _ = parse_npy(&copy);
        }
    }

    #[test]
    fn wrong_entries_name_the_entry() {
        let f4 = |shape: &str, values: &[f32]| {
            npy(
                1,
                &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"),
                &f32_bytes(values),
            )
        };
        // data as one flat array: neither a list of levels nor [levels, n, depth].
        let flat = npz(&small_state(f4("(4,)", &[1.0, 2.0, 3.0, 4.0])));
        let err = RunningQuantileState::from_npz(&flat).unwrap_err();
        assert!(
            matches!(&err, NpyError::Content { entry, .. } if entry == "data.npy"),
            "{err}"
        );
        // Levels of 3 units where extremes have 2.
        let wide = npz(&small_state(f4("(1, 2, 3)", &[0.0; 6])));
        let err = RunningQuantileState::from_npz(&wide).unwrap_err();
        assert!(err.to_string().contains("data.npy"), "{err}");
        // Another running statistic.
        let mut entries = small_state(f4("(1, 1, 2)", &[1.0, 2.0]));
        entries[0].1 = unicode_npy("netdissect.runningstats.RunningVariance()");
        let err = RunningQuantileState::from_npz(&npz(&entries)).unwrap_err();
        assert!(
            matches!(&err, NpyError::Content { entry, .. } if entry == "constructor.npy"),
            "{err}"
        );
        // No `size`.
        let mut entries = small_state(f4("(1, 1, 2)", &[1.0, 2.0]));
        entries.retain(|(k, _)| *k != "size");
        assert_eq!(
            RunningQuantileState::from_npz(&npz(&entries)).unwrap_err(),
            NpyError::MissingEntry("size.npy".into())
        );
    }

    #[test]
    fn stacked_levels_and_hand_computed_quantiles() {
        // All levels hold 3 samples, so numpy stacked `data` into [2, 3, 2] (levels,
        // samples, units). Unit 0: level 0 = 1, 2, 3 (weight 1), level 1 = 4, 5, 6
        // (weight 2), extremes 0 and 10. Sorted points (cumsum(w) − w/2) / 9:
        // 0@0, 1@0.5/9, 2@1.5/9, 3@2.5/9, 4@4/9, 5@6/9, 6@8/9, 10@1.
        let data = npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2), }",
            &f32_bytes(&[1.0, 0.1, 2.0, 0.2, 3.0, 0.3, 4.0, 0.4, 5.0, 0.5, 6.0, 0.6]),
        );
        let state = RunningQuantileState::from_npz(&npz(&small_state(data))).unwrap();
        assert_eq!(state.levels.len(), 2);
        let unit0 = &state.quantiles(&[0.0, 0.5 / 9.0, 0.5, 8.5 / 9.0, 1.0])[0];
        let want = [0.0, 1.0, 4.25, 8.0, 10.0];
        for (g, w) in unit0.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{unit0:?}");
        }
        // Unit 1: extremes −1 and 1 (the samples lie inside them).
        let unit1 = &state.quantiles(&[0.0, 1.0])[1];
        assert_eq!(unit1, &vec![-1.0, 1.0]);
    }

    #[test]
    fn sketch_folders_are_gandissect_safe_names_inside_the_project() {
        let dir = Path::new("/p");
        let path = |layer| gandissect_quantiles_path(dir, layer);
        assert_eq!(path("layer4"), Some(dir.join("layer4/quantiles.npz")));
        assert_eq!(
            path("features/conv5 "),
            Some(dir.join("featuresconv5/quantiles.npz"))
        );
        assert_eq!(path(".."), None);
        assert_eq!(path("/"), None);
    }

    #[test]
    fn interp_and_ties_follow_numpy_and_summary_order() {
        let xp = [0.0, 0.25, 0.25, 1.0];
        let fp = [0.0, 1.0, 2.0, 5.0];
        assert_eq!(interp(-1.0, &xp, &fp), 0.0);
        assert_eq!(interp(2.0, &xp, &fp), 5.0);
        assert_eq!(interp(0.25, &xp, &fp), 2.0); // the last of equal points, as numpy
        assert_eq!(interp(0.625, &xp, &fp), 3.5);
        assert!(interp(f64::NAN, &xp, &fp).is_nan());
        // An extreme tied with a sample sorts first (summary order): 3 (w 0) at 0, then
        // the sample 3 (w 1) at 1/4.
        let mut summary = vec![(3.0, 0.0), (9.0, 0.0), (3.0, 1.0), (5.0, 1.0)];
        let got = weighted_quantiles(&mut summary, &[0.125, 0.5]);
        assert_eq!(got, vec![3.0, 4.0]);
        // Nothing added: NaN, as gandissect.
        let empty = RunningQuantileState {
            depth: 1,
            levels: vec![Vec::new()],
            extremes: vec![(f64::INFINITY, f64::NEG_INFINITY)],
            size: 0,
        };
        assert!(empty.quantiles(&[0.5])[0][0].is_nan());
    }

    /// One unit: level 0 holds -2, -1, 0, 1, 2 (weight 1 each), extremes -3 and 3.
    fn five_samples() -> QuantileNormalizer {
        QuantileNormalizer::from_state(&RunningQuantileState {
            depth: 1,
            levels: vec![vec![1.0, -2.0, 0.0, 2.0, -1.0]],
            extremes: vec![(-3.0, 3.0)],
            size: 5,
        })
    }

    #[test]
    fn normalize_interpolates_the_whole_sketch_as_gandissect() {
        // Sorted summary -3 (w 0), -2, -1, 0, 1, 2, 3 (w 0); (cumsum(w) - w/2) / 5 puts
        // them at 0, .1, .3, .5, .7, .9, 1, as f32.
        let n = five_samples();
        let (values, positions) = &n.units[0];
        assert_eq!(values, &vec![-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(positions, &vec![0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]);
        // numpy.interp(x, values, positions) in f64, then f32:
        //   >>> np.float32(np.interp(-2.5, v, np.float32(p)))  -> 0.05
        //   >>> np.float32(np.interp(0.25, v, np.float32(p)))  -> 0.55
        let cases: [(f32, f32); 8] = [
            (-10.0, 0.0),
            (-3.0, 0.0),
            (-2.5, 0.05),
            (-2.0, 0.1),
            (0.25, 0.55),
            (2.0, 0.9),
            (3.0, 1.0),
            (10.0, 1.0),
        ];
        for (x, q) in cases {
            assert_eq!(n.normalize(0, x), Some(q), "x = {x}");
        }
        assert_eq!(n.normalize(1, 0.0), None);
    }

    #[test]
    fn normalize_equals_gandissect_on_its_own_quantiles_file() {
        // The fixture of the tests above (scripts/make_npz_fixture.py). Expected: its
        // RunningQuantile state run through `_weighted_summary` and `normalize` op for op
        // in PyTorch 2 / numpy 2 (torch.sort, f32 torch.cumsum of the weights,
        // numpy.interp, torch.tensor(..., dtype=torch.float).clamp_(0, 1)), printed with
        // `.tolist()`.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gandissect/layer4/quantiles.npz");
        let n = QuantileNormalizer::read(&path).unwrap();
        let xs: [f32; 13] = [
            -3.5, -2.0, -0.7, -0.06857, 0.0, 0.3, 0.95, 1.5, 2.2049733, 2.5, 3.1, 4.0, 6.0,
        ];
        let expected: [[f64; 13]; 6] = [
            [
                0.0,
                0.018680552020668983,
                0.2786453366279602,
                0.5000007748603821,
                0.5236981511116028,
                0.6287418603897095,
                0.8193138837814331,
                0.9299550652503967,
                0.9900000095367432,
                0.9988113045692444,
                1.0,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.05033661052584648,
                0.5000577569007874,
                0.8328260779380798,
                0.9196961522102356,
                0.9588075876235962,
                0.9689362645149231,
                0.9837144017219543,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.07567543536424637,
                0.24050328135490417,
                0.2557656466960907,
                0.3145633041858673,
                0.4640295207500458,
                0.6707401275634766,
                0.8863603472709656,
                0.9160581827163696,
                1.0,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.0,
                0.10507769137620926,
                0.1726691573858261,
                0.3834027051925659,
                0.7565154433250427,
                0.8763887882232666,
                0.9602072238922119,
                0.9649887084960938,
                0.987323522567749,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.014816422946751118,
                0.16894865036010742,
                0.5870682597160339,
                0.7905942797660828,
                0.933449387550354,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.17070679366588593,
                0.5267921090126038,
                0.5345509648323059,
                0.5665936470031738,
                0.5685701370239258,
                0.570579469203949,
                0.6402879953384399,
                0.7745330333709717,
                0.9640322327613831,
                1.0,
                1.0,
            ],
        ];
        assert_eq!(n.units(), 6);
        for (unit, row) in expected.iter().enumerate() {
            for (&x, &q) in xs.iter().zip(row) {
                assert_eq!(
                    n.normalize(unit, x).map(f64::from),
                    Some(q),
                    "unit {unit}, x {x}"
                );
            }
        }
    }

    #[test]
    fn level_zero_extends_the_saved_extremes() {
        // gandissect saves extremes without level 0's samples; -5 lies below them.
        let n = QuantileNormalizer::from_state(&RunningQuantileState {
            depth: 1,
            levels: vec![vec![-5.0, 0.0], vec![1.0]],
            extremes: vec![(-1.0, 2.0)],
            size: 4,
        });
        // -5 (w 0), -5 (w 1), 0 (w 1), 1 (w 2), 2 (w 0): positions 0, .125, .375, .75, 1.
        assert_eq!(n.units[0].1, vec![0.0, 0.125, 0.375, 0.75, 1.0]);
        // A tie takes the last of its run, as numpy.interp does.
        assert_eq!(n.normalize(0, -5.0), Some(0.125));
        assert_eq!(n.normalize(0, 1.5), Some(0.875));
    }

    #[test]
    fn an_empty_sketch_normalizes_to_nothing() {
        let n = QuantileNormalizer::from_state(&RunningQuantileState {
            depth: 2,
            levels: vec![],
            extremes: vec![(0.0, 0.0), (0.0, 0.0)],
            size: 0,
        });
        assert_eq!(n.units(), 2);
        assert_eq!(n.normalize(0, 1.0), None);
    }
}
