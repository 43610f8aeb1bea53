//! Interventions: how a paint stroke (or a gandissect `interventions` entry) becomes an
//! edit of one layer's activations.
//!
//! For a layer with activations `x: [N, C, H, W]` an edit is two planes, `alpha` and
//! `value`, each `[C, H, W]`; the edited activation is `x·(1 − alpha) + value·alpha`
//! (gandissect's rule). A single intervention sets `alpha` and `value` for some units,
//! multiplied by a mask max-pooled (or mean-pooled) to the layer's grid. Several
//! interventions compose in order, "over" style:
//! `a = 1 − (1 − a_new)(1 − a_acc)`, `v = (v_acc·a_acc·(1 − a_new) + v_new·a_new) / (a + 1e-40)`.
//!
//! Painting is the special case the bundled UI and `eval-edits` use: a stroke picks the
//! concept's top-`k` units; **draw** sets them to `strength × level` (the unit's 0.99
//! activation quantile from dissection), **remove** sets them to 0, under the mask.
//! [`paint_planes`] is the one function that turns strokes into a layer edit; the server,
//! the CLI and dissection's causal check all call it.
//!
//! [`render_edited`] is the one function that turns an edit into pixels, fully or
//! incrementally ([`render`] module); the server, bench, dissection's causal rankings and
//! the learning of optimized interventions all render through it.

pub mod mask;
pub mod render;

use tch::{Device, Kind, Tensor};

use crate::model::ModelError;

pub use render::{features_with_edits, render, render_edited, LayerPlanes, Rendered, Route};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("unit {unit} is out of range: layer `{layer}` has {channels} units")]
    UnitOutOfRange {
        layer: String,
        unit: i64,
        channels: i64,
    },
    #[error("mask must be a 2-d [h, w] array, got shape {0}")]
    BadMask(String),
    #[error("concept `{concept}` has no ranked units at layer `{layer}`")]
    UnknownConcept { concept: String, layer: String },
    #[error("the kept render is of layer `{kept}`, not `{layer}`")]
    KeptLayer { kept: String, layer: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// How a mask is reduced to the layer's grid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    #[default]
    Max,
    Mean,
}

/// One unit's target in an intervention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnitEdit {
    pub unit: i64,
    pub alpha: f32,
    pub value: f32,
}

/// The alpha and value planes of one layer, `[C, H, W]` f32 each.
pub struct EditPlanes {
    pub alpha: Tensor,
    pub value: Tensor,
}

impl EditPlanes {
    /// The identity edit (alpha 0 everywhere).
    pub fn empty(shape: (i64, i64, i64), device: Device) -> Self {
        let (c, h, w) = shape;
        EditPlanes {
            alpha: Tensor::zeros([c, h, w], (Kind::Float, device)),
            value: Tensor::zeros([c, h, w], (Kind::Float, device)),
        }
    }

    /// Composites `new` over `self` (gandissect's order: later interventions on top).
    pub fn over(&mut self, new: &EditPlanes) -> Result<(), EditError> {
        let keep = new.alpha.f_neg()?.f_add_scalar(1.0)?; // 1 - a_new
        let alpha = keep
            .f_mul(&self.alpha.f_neg()?.f_add_scalar(1.0)?)?
            .f_neg()?
            .f_add_scalar(1.0)?;
        let numerator = self
            .value
            .f_mul(&self.alpha)?
            .f_mul(&keep)?
            .f_add(&new.value.f_mul(&new.alpha)?)?;
        self.value = numerator.f_div(&alpha.f_add_scalar(1e-40)?)?;
        self.alpha = alpha;
        Ok(())
    }

    /// x: [N, C, H, W] → `x·(1 − alpha) + value·alpha` (planes broadcast over N, or may
    /// themselves be [N, C, H, W] for a batch of different edits; anything that
    /// broadcasts, such as a value per unit `[1, C, 1, 1]`, works). Differentiable in
    /// the planes, which is how [`crate::dissect::optimize`] learns an edit.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor, EditError> {
        let alpha = self.alpha.f_to_kind(x.kind())?;
        let value = self.value.f_to_kind(x.kind())?;
        Ok(x.f_mul(&alpha.f_neg()?.f_add_scalar(1.0)?)?
            .f_add(&value.f_mul(&alpha)?)?)
    }

    /// True when the edit changes nothing.
    pub fn is_identity(&self) -> bool {
        self.alpha.abs().max().double_value(&[]) == 0.0
    }

    /// Grid cells `(y, x)` where any unit's alpha is set: the region an edit touches.
    pub fn touched_cells(&self) -> Tensor {
        self.alpha.gt(0.0).any_dims([0i64].as_slice(), false)
    }
}

/// Reduces a mask `[h, w]` (values in [0, 1]) to the layer grid `[H, W]`.
pub fn pool_mask(mask: &Tensor, grid: (i64, i64), pooling: Pooling) -> Result<Tensor, EditError> {
    let size = mask.size();
    if size.len() != 2 {
        return Err(EditError::BadMask(format!("{size:?}")));
    }
    let m = mask
        .f_to_kind(Kind::Float)?
        .f_view([1, 1, size[0], size[1]])?;
    let pooled = match pooling {
        Pooling::Max => m.f_adaptive_max_pool2d([grid.0, grid.1])?.0,
        Pooling::Mean => m.f_adaptive_avg_pool2d([grid.0, grid.1])?,
    };
    Ok(pooled.f_view([grid.0, grid.1])?)
}

/// One gandissect intervention on one layer: for each listed unit, alpha and value
/// planes, times the pooled mask (no mask: everywhere). Entries with alpha = 0 and
/// value = 0 are skipped, as gandissect does.
pub fn intervention_planes(
    layer: &str,
    shape: (i64, i64, i64),
    edits: &[UnitEdit],
    mask: Option<&Tensor>,
    pooling: Pooling,
    device: Device,
) -> Result<EditPlanes, EditError> {
    let (c, h, w) = shape;
    let mut alpha_units = vec![0f32; c as usize];
    let mut value_units = vec![0f32; c as usize];
    for edit in edits {
        if edit.unit < 0 || edit.unit >= c {
            return Err(EditError::UnitOutOfRange {
                layer: layer.to_string(),
                unit: edit.unit,
                channels: c,
            });
        }
        if edit.alpha == 0.0 && edit.value == 0.0 {
            continue;
        }
        alpha_units[edit.unit as usize] = edit.alpha;
        value_units[edit.unit as usize] = edit.value;
    }
    let spatial = match mask {
        Some(m) => pool_mask(m, (h, w), pooling)?.f_to_device(device)?,
        None => Tensor::ones([h, w], (Kind::Float, device)),
    };
    let per_unit = |v: Vec<f32>| -> Result<Tensor, tch::TchError> {
        Tensor::f_from_slice(&v)?
            .f_to_device(device)?
            .f_view([c, 1, 1])
    };
    let alpha = per_unit(alpha_units)?.f_mul(&spatial.f_view([1, h, w])?)?;
    let value = per_unit(value_units)?
        .f_expand([c, h, w], false)?
        .f_contiguous()?;
    Ok(EditPlanes { alpha, value })
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StrokeMode {
    Draw,
    Remove,
}

/// A paint stroke, resolved to units: `units` are the concept's units (best first),
/// `levels[i]` is unit `units[i]`'s draw level (its 0.99 activation quantile) and
/// `alphas[i]` how far the stroke moves it there: 1 for a ranking's top units, the
/// learned weight for an optimized intervention (see `dissect::optimize`).
#[derive(Debug)]
pub struct ResolvedStroke {
    pub units: Vec<i64>,
    pub levels: Vec<f32>,
    pub alphas: Vec<f32>,
    pub mode: StrokeMode,
    pub strength: f32,
    /// `[h, w]` in [0, 1]; any resolution.
    pub mask: Tensor,
}

/// Turns strokes into one layer edit: each stroke is an intervention (draw: the units to
/// `strength × level`; remove: to 0; each with its alpha) under its max-pooled mask,
/// composited in order.
pub fn paint_planes(
    layer: &str,
    shape: (i64, i64, i64),
    strokes: &[ResolvedStroke],
    device: Device,
) -> Result<EditPlanes, EditError> {
    paint_planes_over(
        EditPlanes::empty(shape, device),
        layer,
        shape,
        strokes,
        device,
    )
}

/// [`paint_planes`] on top of an existing edit: the strokes are composited over `planes`
/// in order. Starting from the planes that earlier strokes made gives, bit for bit, the
/// planes of all the strokes at once, since compositing runs stroke by stroke either way.
pub fn paint_planes_over(
    mut planes: EditPlanes,
    layer: &str,
    shape: (i64, i64, i64),
    strokes: &[ResolvedStroke],
    device: Device,
) -> Result<EditPlanes, EditError> {
    for stroke in strokes {
        let edits: Vec<UnitEdit> = stroke
            .units
            .iter()
            .zip(&stroke.levels)
            .zip(&stroke.alphas)
            .map(|((&unit, &level), &alpha)| UnitEdit {
                unit,
                alpha,
                value: match stroke.mode {
                    StrokeMode::Draw => stroke.strength * level,
                    StrokeMode::Remove => 0.0,
                },
            })
            .collect();
        let new = intervention_planes(
            layer,
            shape,
            &edits,
            Some(&stroke.mask),
            Pooling::Max,
            device,
        )?;
        planes.over(&new)?;
    }
    Ok(planes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProgGan;

    fn cpu() -> Device {
        Device::Cpu
    }

    #[test]
    fn max_pooling_marks_every_cell_the_mask_touches() {
        let mask = Tensor::zeros([32, 32], (Kind::Float, cpu()));
        let _ = mask.narrow(0, 5, 1).narrow(1, 20, 1).fill_(1.0); // one pixel in cell (1, 5) of 8×8
        let pooled = pool_mask(&mask, (8, 8), Pooling::Max).unwrap();
        assert_eq!(pooled.sum(Kind::Float).double_value(&[]), 1.0);
        assert_eq!(pooled.double_value(&[1, 5]), 1.0);
        let mean = pool_mask(&mask, (8, 8), Pooling::Mean).unwrap();
        assert!((mean.double_value(&[1, 5]) - 1.0 / 16.0).abs() < 1e-7);
    }

    #[test]
    fn apply_replaces_units_only_under_the_mask() {
        let mask = Tensor::zeros([4, 4], (Kind::Float, cpu()));
        let _ = mask.narrow(0, 0, 2).fill_(1.0); // top half
        let edits = [UnitEdit {
            unit: 1,
            alpha: 1.0,
            value: 5.0,
        }];
        let planes = intervention_planes(
            "layer4",
            (3, 4, 4),
            &edits,
            Some(&mask),
            Pooling::Max,
            cpu(),
        )
        .unwrap();
        let x = Tensor::ones([2, 3, 4, 4], (Kind::Float, cpu()));
        let y = planes.apply(&x).unwrap();
        assert_eq!(y.double_value(&[1, 1, 0, 3]), 5.0);
        assert_eq!(y.double_value(&[1, 1, 3, 3]), 1.0);
        assert_eq!(y.double_value(&[0, 0, 0, 0]), 1.0);
    }

    #[test]
    fn over_compositing_follows_gandissect_formula() {
        let shape = (1, 1, 1);
        let mut acc = intervention_planes(
            "l",
            shape,
            &[UnitEdit {
                unit: 0,
                alpha: 0.5,
                value: 2.0,
            }],
            None,
            Pooling::Max,
            cpu(),
        )
        .unwrap();
        let new = intervention_planes(
            "l",
            shape,
            &[UnitEdit {
                unit: 0,
                alpha: 0.5,
                value: 6.0,
            }],
            None,
            Pooling::Max,
            cpu(),
        )
        .unwrap();
        acc.over(&new).unwrap();
        // a = 1 - 0.5·0.5 = 0.75; v = (2·0.5·0.5 + 6·0.5) / 0.75 = 4.6667
        assert!((acc.alpha.double_value(&[0, 0, 0]) - 0.75).abs() < 1e-7);
        assert!((acc.value.double_value(&[0, 0, 0]) - 14.0 / 3.0).abs() < 1e-5);
    }

    #[test]
    fn later_opaque_stroke_wins_and_remove_sets_zero() {
        let mask = Tensor::ones([8, 8], (Kind::Float, cpu()));
        let draw = || ResolvedStroke {
            units: vec![0, 2],
            levels: vec![3.0, 4.0],
            alphas: vec![1.0, 1.0],
            mode: StrokeMode::Draw,
            strength: 1.0,
            mask: mask.shallow_clone(),
        };
        let remove = ResolvedStroke {
            units: vec![2],
            levels: vec![4.0],
            alphas: vec![1.0],
            mode: StrokeMode::Remove,
            strength: 1.0,
            mask: mask.shallow_clone(),
        };
        let planes = paint_planes("layer4", (3, 2, 2), &[draw()], cpu()).unwrap();
        let x = Tensor::ones([1, 3, 2, 2], (Kind::Float, cpu()));
        let y = planes.apply(&x).unwrap();
        assert_eq!(
            (
                y.double_value(&[0, 0, 0, 0]),
                y.double_value(&[0, 1, 0, 0]),
                y.double_value(&[0, 2, 1, 1])
            ),
            (3.0, 1.0, 4.0)
        );
        let planes = paint_planes("layer4", (3, 2, 2), &[draw(), remove], cpu()).unwrap();
        let y = planes.apply(&x).unwrap();
        assert_eq!(
            (y.double_value(&[0, 0, 0, 0]), y.double_value(&[0, 2, 1, 1])),
            (3.0, 0.0)
        );
    }

    #[test]
    fn render_with_identity_edits_equals_forward_and_edits_change_pixels() {
        tch::manual_seed(1);
        let model = ProgGan::new(
            crate::model::ProgGanConfig {
                z_dim: 8,
                channels: vec![16, 8, 8],
            },
            cpu(),
        );
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([2, 8], (Kind::Float, cpu()));
        let plain = model.forward(&z).unwrap();
        let shape = model.layer_shape("layer4").unwrap();
        let identity = vec![LayerPlanes {
            layer: "layer4".to_string(),
            planes: EditPlanes::empty(shape, cpu()),
        }];
        assert!(render(&model, &z, &identity).unwrap().equal(&plain));
        let edit = intervention_planes(
            "layer4",
            shape,
            &[UnitEdit {
                unit: 0,
                alpha: 1.0,
                value: 50.0,
            }],
            None,
            Pooling::Max,
            cpu(),
        )
        .unwrap();
        let edited = render(
            &model,
            &z,
            &[LayerPlanes {
                layer: "layer4".to_string(),
                planes: edit,
            }],
        )
        .unwrap();
        assert!(!edited.equal(&plain));
        // Same as doing the split by hand.
        let feats = model.features(&z, "layer4").unwrap();
        let edit = intervention_planes(
            "layer4",
            shape,
            &[UnitEdit {
                unit: 0,
                alpha: 1.0,
                value: 50.0,
            }],
            None,
            Pooling::Max,
            cpu(),
        )
        .unwrap();
        let by_hand = model
            .forward_from("layer4", &edit.apply(&feats).unwrap())
            .unwrap();
        assert!(edited.equal(&by_hand));
    }

    #[test]
    fn out_of_range_unit_is_named() {
        let err = intervention_planes(
            "layer4",
            (3, 2, 2),
            &[UnitEdit {
                unit: 3,
                alpha: 1.0,
                value: 1.0,
            }],
            None,
            Pooling::Max,
            cpu(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("unit 3") && err.to_string().contains("layer4"));
    }
}
