//! A layer's [`LevelTable`] from our sketches: each unit's levels, threshold and quantile
//! grid, with the sketches' rank-error bounds. Reading a table back (from `levels.json`
//! or GAN Dissection's `quantiles.npz`) is [`crate::project`]'s.

use super::quantile::QuantileSketch;
use crate::project::{grid_quantiles, LevelTable, LEVEL_QUANTILES};

impl LevelTable {
    pub fn from_sketches(sketches: &[QuantileSketch], threshold_quantile: f64) -> Self {
        let grid = grid_quantiles();
        let mut table = LevelTable {
            quantiles: LEVEL_QUANTILES.to_vec(),
            levels: Vec::with_capacity(sketches.len()),
            threshold_quantile,
            thresholds: Vec::with_capacity(sketches.len()),
            grid_levels: Vec::with_capacity(sketches.len()),
            grid_quantiles: grid.clone(),
            rank_error: 0.0,
            threshold_rank_error: 0.0,
            values: sketches.first().map_or(0, |s| s.count()),
        };
        for sketch in sketches {
            let threshold = sketch.quantile(threshold_quantile);
            table.levels.push(sketch.quantiles(&LEVEL_QUANTILES));
            table.thresholds.push(threshold);
            table.grid_levels.push(sketch.quantiles(&grid));
            table.rank_error = table.rank_error.max(sketch.rank_error_bound());
            let at = sketch.rank_error_at(threshold) as f64 / sketch.count().max(1) as f64;
            table.threshold_rank_error = table.threshold_rank_error.max(at);
        }
        table
    }
}
