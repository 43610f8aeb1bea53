//! The edited render: the one way an edit becomes pixels.
//!
//! [`render_edited`] takes the unedited activation of the edited layer (the prefix,
//! `ProgGan::features`), applies the edit planes (`x·(1 − alpha) + value·alpha`, see
//! [`EditPlanes::apply`]) and runs the blocks after the layer along a [`Route`]:
//!
//! - [`Route::Full`]: every block, for the whole batch. Autograd flows through it, so
//!   learning an edit ([`crate::dissect::optimize`]) renders the same way.
//! - [`Route::Record`]: every block, keeping each image's activations
//!   ([`SuffixActivations`]) so that the next edit of that image can be incremental.
//! - [`Route::Update`]: one image whose render is kept; only the cells where the new edit
//!   differs from the kept one are recomputed, and the kept render becomes the new one
//!   (the server's next stroke on the same image).
//! - [`Route::Branch`]: many edits of one image whose render is kept, in one batch; only
//!   the box where any of them differs is recomputed and the kept render stays as it was
//!   (dissection's causal pass: each unit, alone, in one small region).
//!
//! The incremental routes equal the full one up to the rounding of a differently tiled
//! convolution ([`crate::model::incremental`]). [`render`] and [`features_with_edits`]
//! are the multi-layer forms (edits at several layers, starting from z); `render` ends
//! in `render_edited` too.

use tch::Tensor;

use super::{EditError, EditPlanes};
use crate::model::{IncrementalStats, ProgGan, SuffixActivations};

/// One layer's edit.
pub struct LayerPlanes {
    pub layer: String,
    pub planes: EditPlanes,
}

/// How the blocks after the edited layer run (see the module documentation).
pub enum Route<'a> {
    Full,
    Record,
    Update(&'a mut SuffixActivations),
    Branch(&'a SuffixActivations),
}

/// What [`render_edited`] made.
pub struct Rendered {
    /// `[N, 3, R, R]` f32, roughly in [-1, 1]: one image per prefix image (full and
    /// record routes), or per edit (branch route).
    pub images: Tensor,
    /// Each image's activations, on the record route (empty otherwise).
    pub kept: Vec<SuffixActivations>,
    /// What an incremental route recomputed; `None` on the full and record routes.
    pub incremental: Option<IncrementalStats>,
}

/// Renders the activation `prefix` of `layer`, edited by `planes`, along `route`.
///
/// - `prefix`: `[N, C, H, W]` (`[1, C, H, W]` on the update and branch routes, the
///   image whose render the route holds);
/// - `planes`: `[C, H, W]` (one edit for every image) or `[N, C, H, W]` (one per image;
///   on the branch route, `[K, C, H, W]`: K edits of the one image), or anything that
///   broadcasts to those;
/// - returns images `[N, 3, R, R]` (`[K, 3, R, R]` on the branch route).
pub fn render_edited(
    model: &ProgGan,
    layer: &str,
    prefix: &Tensor,
    planes: &EditPlanes,
    route: Route<'_>,
) -> Result<Rendered, EditError> {
    let index = model.layer_index(layer)?;
    let held = match &route {
        Route::Update(kept) => Some(kept.layer()),
        Route::Branch(kept) => Some(kept.layer()),
        Route::Full | Route::Record => None,
    };
    if let Some(held) = held.filter(|&held| held != index) {
        return Err(EditError::KeptLayer {
            kept: model.layer_names()[held].to_string(),
            layer: layer.to_string(),
        });
    }
    let edited = planes.apply(prefix)?;
    Ok(match route {
        Route::Full => Rendered {
            images: model.forward_from(layer, &edited)?,
            kept: Vec::new(),
            incremental: None,
        },
        Route::Record => {
            let (images, kept) = model.forward_from_recorded(layer, &edited)?;
            Rendered {
                images,
                kept,
                incremental: None,
            }
        }
        Route::Update(kept) => {
            let (images, stats) = model.forward_from_incremental(kept, &edited)?;
            Rendered {
                images,
                kept: Vec::new(),
                incremental: Some(stats),
            }
        }
        Route::Branch(kept) => {
            let (images, stats) = model.forward_from_branches(kept, &edited)?;
            Rendered {
                images,
                kept: Vec::new(),
                incremental: Some(stats),
            }
        }
    })
}

/// Runs the generator with edits at any layers: z `[N, D]` → image `[N, 3, R, R]`.
/// Each edit's planes are `[C, H, W]` (same for the batch) or `[N, C, H, W]` (one per
/// image). Layers run in order; an edited layer's activation is replaced before the
/// next block sees it. The blocks after the last edited layer run through
/// [`render_edited`]'s full route.
pub fn render(model: &ProgGan, z: &Tensor, edits: &[LayerPlanes]) -> Result<Tensor, EditError> {
    let ordered = in_order(model, edits, model.layer_names().len() - 1)?;
    let Some((&(last, planes), earlier)) = ordered.split_last() else {
        return Ok(model.forward(z)?);
    };
    let prefix = run_edited(model, z, earlier, last)?;
    let layer = model.layer_names()[last];
    Ok(render_edited(model, layer, &prefix, planes, Route::Full)?.images)
}

/// The activation of `layer` `[N, C, H, W]` under `edits` (edits at later layers are
/// ignored; an edit at `layer` itself is applied).
pub fn features_with_edits(
    model: &ProgGan,
    z: &Tensor,
    layer: &str,
    edits: &[LayerPlanes],
) -> Result<Tensor, EditError> {
    let last = model.layer_index(layer)?;
    let ordered = in_order(model, edits, last)?;
    run_edited(model, z, &ordered, last)
}

/// The edits at layers up to `last`, as (layer index, planes), in layer order.
fn in_order<'a>(
    model: &ProgGan,
    edits: &'a [LayerPlanes],
    last: usize,
) -> Result<Vec<(usize, &'a EditPlanes)>, EditError> {
    let mut ordered = Vec::with_capacity(edits.len());
    for edit in edits {
        let index = model.layer_index(&edit.layer)?;
        if index <= last {
            ordered.push((index, &edit.planes));
        }
    }
    ordered.sort_by_key(|(index, _)| *index);
    Ok(ordered)
}

/// Runs blocks `0..=last`, applying each of the `ordered` edits right after its layer.
fn run_edited(
    model: &ProgGan,
    z: &Tensor,
    ordered: &[(usize, &EditPlanes)],
    last: usize,
) -> Result<Tensor, EditError> {
    let first = ordered.first().map_or(last, |&(index, _)| index);
    let mut x = model.features(z, model.layer_names()[first])?;
    let mut done = first;
    for &(index, planes) in ordered {
        if index > done {
            x = model.run(&x, done + 1..index + 1)?;
            done = index;
        }
        x = planes.apply(&x)?;
    }
    Ok(model.run(&x, done + 1..last + 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::{intervention_planes, Pooling, UnitEdit};
    use crate::model::{Precision, ProgGanConfig};
    use tch::{Device, Kind};

    fn model() -> ProgGan {
        tch::manual_seed(5);
        let mut model = ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 32, 16, 8],
            },
            Device::Cpu,
        );
        model.set_precision(Precision::FastF32).unwrap();
        model
    }

    /// Units `units` set to `value` over the cells `[y0, y1) × [x0, x1)` of an 8×8 grid.
    fn stroke(model: &ProgGan, units: &[i64], value: f32, cells: [i64; 4]) -> EditPlanes {
        let mask = Tensor::zeros([8, 8], (Kind::Float, Device::Cpu));
        let _ = mask
            .narrow(0, cells[0], cells[1] - cells[0])
            .narrow(1, cells[2], cells[3] - cells[2])
            .fill_(1.0);
        let edits: Vec<UnitEdit> = units
            .iter()
            .map(|&unit| UnitEdit {
                unit,
                alpha: 1.0,
                value,
            })
            .collect();
        let shape = model.layer_shape("layer4").unwrap();
        intervention_planes(
            "layer4",
            shape,
            &edits,
            Some(&mask),
            Pooling::Max,
            Device::Cpu,
        )
        .unwrap()
    }

    fn stack(planes: &[&EditPlanes]) -> EditPlanes {
        let alphas: Vec<&Tensor> = planes.iter().map(|p| &p.alpha).collect();
        let values: Vec<&Tensor> = planes.iter().map(|p| &p.value).collect();
        EditPlanes {
            alpha: Tensor::stack(&alphas, 0),
            value: Tensor::stack(&values, 0),
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn every_route_renders_what_the_full_route_renders() {
        let model = model();
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let prefix = model.features(&z, "layer4").unwrap();
        let first = stroke(&model, &[0, 3], 4.0, [3, 5, 3, 5]);
        let second = stroke(&model, &[1], 0.0, [0, 2, 6, 8]);
        let full = |planes: &EditPlanes| {
            render_edited(&model, "layer4", &prefix, planes, Route::Full)
                .unwrap()
                .images
        };
        let mut recorded = render_edited(&model, "layer4", &prefix, &first, Route::Record).unwrap();
        assert!(recorded.images.equal(&full(&first)));
        assert!(recorded.incremental.is_none());
        let mut kept = recorded.kept.pop().unwrap();
        // Branches from the kept render of `first`, which stays as it was.
        let both = stack(&[&second, &first]);
        let branched =
            render_edited(&model, "layer4", &prefix, &both, Route::Branch(&kept)).unwrap();
        assert!(max_diff(&branched.images.narrow(0, 0, 1), &full(&second)) < 1e-5);
        assert!(max_diff(&branched.images.narrow(0, 1, 1), &full(&first)) < 1e-5);
        // Updates move the kept render along.
        let updated =
            render_edited(&model, "layer4", &prefix, &second, Route::Update(&mut kept)).unwrap();
        assert!(max_diff(&updated.images, &full(&second)) < 1e-5);
        let stats = updated.incremental.unwrap();
        assert!(stats.changed_cells > 0 && stats.work_fraction < 1.0);
        let again =
            render_edited(&model, "layer4", &prefix, &second, Route::Update(&mut kept)).unwrap();
        assert_eq!(again.incremental.unwrap().changed_cells, 0);
    }

    #[test]
    fn a_kept_render_of_another_layer_is_refused() {
        let model = model();
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let prefix5 = model.features(&z, "layer5").unwrap();
        let (_, kept) = model.forward_from_recorded("layer5", &prefix5).unwrap();
        let prefix = model.features(&z, "layer4").unwrap();
        let planes = stroke(&model, &[0], 1.0, [0, 1, 0, 1]);
        let err = render_edited(&model, "layer4", &prefix, &planes, Route::Branch(&kept[0]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("layer5"), "{err}");
    }

    #[test]
    fn render_applies_each_layer_edit_before_the_next_block() {
        let model = model();
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
        assert!(render(&model, &z, &[])
            .unwrap()
            .equal(&model.forward(&z).unwrap()));
        let at4 = stroke(&model, &[2], 5.0, [0, 4, 0, 4]);
        let shape5 = model.layer_shape("layer5").unwrap();
        let at5 = intervention_planes(
            "layer5",
            shape5,
            &[UnitEdit {
                unit: 1,
                alpha: 0.5,
                value: 2.0,
            }],
            None,
            Pooling::Max,
            Device::Cpu,
        )
        .unwrap();
        // By hand: layer4, edit, layer5, edit, the rest.
        let x4 = at4.apply(&model.features(&z, "layer4").unwrap()).unwrap();
        let (i4, i5) = (
            model.layer_index("layer4").unwrap(),
            model.layer_index("layer5").unwrap(),
        );
        let x5 = at5.apply(&model.run(&x4, i4 + 1..i5 + 1).unwrap()).unwrap();
        let by_hand = model.forward_from("layer5", &x5).unwrap();
        let edits = [
            LayerPlanes {
                layer: "layer5".into(),
                planes: at5,
            },
            LayerPlanes {
                layer: "layer4".into(),
                planes: at4,
            },
        ];
        assert!(render(&model, &z, &edits).unwrap().equal(&by_hand));
        let x5_again = features_with_edits(&model, &z, "layer5", &edits).unwrap();
        assert!(x5_again.equal(&x5));
    }
}
