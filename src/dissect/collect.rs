//! The two passes over the samples: activation sketches, then threshold/segmentation
//! counts. Both regenerate their samples batch by batch from image ids and hold one batch
//! of activations at a time.

use tch::{Device, Kind, Tensor};

use super::quantile::QuantileSketch;
use super::stats::{to_f32_vec, LayerCounts, TopSamples};
use super::{DissectError, Settings, Shard, TOP_SAMPLES};
use crate::model::ProgGan;
use crate::segment::Segmenter;

/// z for image ids: `[N, D]` f32 on the model's device.
pub fn latents(model: &ProgGan, ids: &[u64]) -> Result<Tensor, DissectError> {
    Ok(model.z_for_ids(ids)?)
}

/// Runs the generator once and returns the activations of `layers` (in the order given)
/// and, when asked, the image `[N, 3, R, R]`.
pub fn run_layers(
    model: &ProgGan,
    z: &Tensor,
    layers: &[String],
    with_image: bool,
) -> Result<(Vec<Tensor>, Option<Tensor>), DissectError> {
    let mut order: Vec<(usize, usize)> = layers
        .iter()
        .enumerate()
        .map(|(slot, name)| Ok((model.layer_index(name)?, slot)))
        .collect::<Result<_, DissectError>>()?;
    order.sort_unstable();
    let mut outputs: Vec<Option<Tensor>> = (0..layers.len()).map(|_| None).collect();
    let mut current: Option<(usize, Tensor)> = None; // (index of the last block run, activation)
    for &(index, slot) in &order {
        let x = match &current {
            None => model.features(z, &layers[slot])?,
            Some((last, x)) if *last == index => x.shallow_clone(),
            Some((last, x)) => model.run(x, last + 1..index + 1)?,
        };
        outputs[slot] = Some(x.shallow_clone());
        current = Some((index, x));
    }
    let image = match (with_image, &current) {
        (false, _) => None,
        (true, Some((last, x))) => Some(model.run(x, last + 1..model.layer_names().len())?),
        (true, None) => Some(model.forward(z)?),
    };
    let outputs = outputs
        .into_iter()
        .map(|t| t.expect("every slot is filled"))
        .collect();
    Ok((outputs, image))
}

/// Segments generator output: the images are clamped to `[-1, 1]` (the pixels a user
/// sees) first. Returns class ids `[N, h, w]` on `device`.
pub fn segment_images(
    segmenter: &dyn Segmenter,
    images: &Tensor,
    device: Device,
) -> Result<Tensor, DissectError> {
    let clamped = images.f_clamp(-1.0, 1.0)?;
    Ok(segmenter.segment(&clamped)?.f_to_device(device)?)
}

fn batch_ids(settings: &Settings, range: &std::ops::Range<u64>) -> Vec<u64> {
    range.clone().map(|j| settings.id(j)).collect()
}

/// Pass 1: one sketch per unit of each layer (in `settings.layers` order), over this
/// shard's samples. `progress` is told how many samples each batch finished.
pub fn collect_sketches(
    model: &ProgGan,
    settings: &Settings,
    shard: Shard,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Vec<QuantileSketch>>, DissectError> {
    let _guard = tch::no_grad_guard();
    let mut sketches: Vec<Vec<QuantileSketch>> = settings
        .layers
        .iter()
        .map(|layer| {
            let (units, _, _) = model.layer_shape(layer)?;
            Ok(vec![
                QuantileSketch::new(settings.sketch_capacity);
                units as usize
            ])
        })
        .collect::<Result<_, DissectError>>()?;
    for range in shard.batches(settings.samples, settings.batch) {
        let ids = batch_ids(settings, &range);
        let z = latents(model, &ids)?;
        let (activations, _) = run_layers(model, &z, &settings.layers, false)?;
        for (layer_sketches, act) in sketches.iter_mut().zip(&activations) {
            // [N, C, H, W] → [C, N·H·W]: each unit's values are one contiguous run.
            let units = layer_sketches.len() as i64;
            let values = to_f32_vec(&act.f_transpose(0, 1)?.f_reshape([units, -1])?)?;
            let per_unit = values.len() / units.max(1) as usize;
            for (sketch, unit_values) in layer_sketches.iter_mut().zip(values.chunks(per_unit)) {
                sketch.extend(unit_values);
            }
        }
        progress(ids.len() as u64);
    }
    Ok(sketches)
}

/// One layer's second-pass accumulators.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTally {
    pub counts: LayerCounts,
    pub top: TopSamples,
}

/// Pass 2: counts against `thresholds` (one `Vec` per layer, one value per unit) and top
/// samples, over this shard's samples.
pub fn collect_counts(
    model: &ProgGan,
    segmenter: &dyn Segmenter,
    settings: &Settings,
    shard: Shard,
    thresholds: &[Vec<f32>],
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<LayerTally>, DissectError> {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let concepts = segmenter.labels().len();
    let mut tallies = Vec::new();
    let mut threshold_tensors = Vec::new();
    for (layer, layer_thresholds) in settings.layers.iter().zip(thresholds) {
        let (units, _, _) = model.layer_shape(layer)?;
        if layer_thresholds.len() != units as usize {
            return Err(DissectError::Shape {
                what: format!("thresholds of `{layer}`"),
                detail: format!("{} values for {units} units", layer_thresholds.len()),
            });
        }
        threshold_tensors.push(
            Tensor::f_from_slice(layer_thresholds)?
                .f_to_kind(Kind::Float)?
                .f_to_device(device)?,
        );
        tallies.push(LayerTally {
            counts: LayerCounts::new(units as usize, concepts),
            top: TopSamples::new(units as usize, TOP_SAMPLES),
        });
    }
    for range in shard.batches(settings.samples, settings.batch) {
        let ids = batch_ids(settings, &range);
        let z = latents(model, &ids)?;
        let (activations, image) = run_layers(model, &z, &settings.layers, true)?;
        let image = image.expect("asked for the image");
        let segmentation = segment_images(segmenter, &image, device)?;
        for ((tally, act), t) in tallies.iter_mut().zip(&activations).zip(&threshold_tensors) {
            tally.counts.accumulate(act, t, &segmentation)?;
            tally.top.accumulate(act, &ids)?;
        }
        progress(ids.len() as u64);
    }
    Ok(tallies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_layers_matches_features_and_forward() {
        let model = crate::model::testing::tiny_generator(7);
        let _guard = tch::no_grad_guard();
        let z = latents(&model, &[0, 5]).unwrap();
        let layers = vec!["layer4".to_string(), "layer2".to_string()];
        let (acts, image) = run_layers(&model, &z, &layers, true).unwrap();
        assert!(acts[0].equal(&model.features(&z, "layer4").unwrap()));
        assert!(acts[1].equal(&model.features(&z, "layer2").unwrap()));
        assert!(image.unwrap().equal(&model.forward(&z).unwrap()));
    }

    #[test]
    fn sketches_of_shards_cover_every_value_once() {
        let model = crate::model::testing::tiny_generator(7);
        let settings = Settings {
            model: "tiny".into(),
            segmenter: "none".into(),
            layers: vec!["layer4".into()],
            samples: 7,
            seed: 0,
            quantile: 0.99,
            batch: 2,
            sketch_capacity: 64,
            segment_size: None,
            segment_precision: None,
            render_precision: None,
        };
        let mut seen = 0;
        let whole = collect_sketches(&model, &settings, Shard::WHOLE, &mut |n| seen += n).unwrap();
        assert_eq!(seen, 7);
        let (_, h, w) = model.layer_shape("layer4").unwrap();
        assert_eq!(whole[0][0].count(), 7 * (h * w) as u64);
        let mut merged =
            collect_sketches(&model, &settings, Shard { index: 0, count: 2 }, &mut |_| {}).unwrap();
        let other =
            collect_sketches(&model, &settings, Shard { index: 1, count: 2 }, &mut |_| {}).unwrap();
        for (a, b) in merged[0].iter_mut().zip(&other[0]) {
            a.merge(b).unwrap();
        }
        assert_eq!(merged[0][3].count(), whole[0][3].count());
        // Both see the same extremes exactly.
        assert_eq!(merged[0][3].quantile(1.0), whole[0][3].quantile(1.0));
        assert_eq!(merged[0][3].quantile(0.0), whole[0][3].quantile(0.0));
    }
}
