//! A layer's levels: each unit's activation at the quantiles painting and the API use,
//! from our sketches (`levels.json`) or from GAN Dissection's (`quantiles.npz`).

use serde::{Deserialize, Serialize};

/// The quantiles whose values are the painting levels.
pub const LEVEL_QUANTILES: [f64; 3] = [0.99, 0.995, 0.999];

/// A layer's quantile-derived values: the `levels.json` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelTable {
    pub quantiles: Vec<f64>,
    /// `[unit][quantile]`.
    pub levels: Vec<Vec<f32>>,
    pub threshold_quantile: f64,
    /// `t_u`, per unit.
    pub thresholds: Vec<f32>,
    #[serde(default)]
    pub grid_quantiles: Vec<f64>,
    /// `[unit][grid quantile]`.
    #[serde(default)]
    pub grid_levels: Vec<Vec<f32>>,
    /// The sketches' worst-case rank error, the largest over units, as a fraction.
    pub rank_error: f64,
    /// The largest rank-error bound at a unit's threshold, as a fraction.
    pub threshold_rank_error: f64,
    /// Activation values per unit.
    pub values: u64,
}

/// `0, 0.02, …, 0.98, 0.99, 0.995, 0.999, 1`: 54 points, fine enough to interpolate any
/// quantile, small enough to commit (256 units ≈ 150 kB of JSON).
pub fn grid_quantiles() -> Vec<f64> {
    let mut grid: Vec<f64> = (0..50).map(|i| i as f64 / 50.0).collect();
    grid.extend([0.99, 0.995, 0.999, 1.0]);
    grid
}

impl LevelTable {
    /// For tests: one level per unit, at the 0.99 quantile, which is also its threshold.
    #[cfg(test)]
    pub(crate) fn at_099(levels: &[f32]) -> LevelTable {
        LevelTable {
            quantiles: vec![0.99],
            levels: levels.iter().map(|&l| vec![l]).collect(),
            thresholds: levels.to_vec(),
            threshold_quantile: 0.99,
            grid_quantiles: Vec::new(),
            grid_levels: Vec::new(),
            rank_error: 0.0,
            threshold_rank_error: 0.0,
            values: 0,
        }
    }

    fn column(&self, quantile: f64) -> Option<usize> {
        self.quantiles
            .iter()
            .position(|&q| (q - quantile).abs() < 1e-9)
    }

    /// Unit `unit`'s level at `quantile`: a stored column when there is one, otherwise
    /// linear interpolation in the grid.
    pub fn level(&self, unit: usize, quantile: f64) -> Option<f32> {
        if let Some(col) = self.column(quantile) {
            return self.levels.get(unit)?.get(col).copied();
        }
        let row = self.grid_levels.get(unit)?;
        let grid = &self.grid_quantiles;
        if grid.len() < 2 || row.len() != grid.len() || !(0.0..=1.0).contains(&quantile) {
            return None;
        }
        let i = grid
            .partition_point(|&g| g <= quantile)
            .clamp(1, grid.len() - 1);
        let (q0, q1) = (grid[i - 1], grid[i]);
        let t = ((quantile - q0) / (q1 - q0)).clamp(0.0, 1.0) as f32;
        Some(row[i - 1] + (row[i] - row[i - 1]) * t)
    }

    /// The inverse: the quantile of `value` for `unit`, by interpolation in the grid (what
    /// GAN Dissection's `RunningQuantile.normalize` gives).
    pub fn quantile_of(&self, unit: usize, value: f32) -> Option<f64> {
        let row = self.grid_levels.get(unit)?;
        let grid = &self.grid_quantiles;
        if row.len() != grid.len() || grid.is_empty() {
            return None;
        }
        let i = row.partition_point(|&v| v <= value);
        if i == 0 {
            return Some(grid[0]);
        }
        if i == row.len() {
            return Some(grid[grid.len() - 1]);
        }
        let (v0, v1) = (row[i - 1] as f64, row[i] as f64);
        let t = if v1 > v0 {
            (value as f64 - v0) / (v1 - v0)
        } else {
            0.0
        };
        Some(grid[i - 1] + (grid[i] - grid[i - 1]) * t)
    }
}
