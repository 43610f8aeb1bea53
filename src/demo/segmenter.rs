//! Training the demo segmenter on rendered (image, labels) pairs, and measuring it.
//!
//! Generated images are softer and noisier than renders, so training images are lightly
//! perturbed (random blur, noise, and brightness/contrast jitter); labels stay exact.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::data::{heldout_seed, render_batch, SceneBatches};
use super::nn::Adam;
use crate::segment::demo::DemoSegmenter;
use crate::segment::Segmenter;

pub struct SegmenterRun {
    pub steps: i64,
    pub batch: usize,
    /// Scene sizes, taken in turn from step to step (one segmenter for every resolution a
    /// bundled generator has had).
    pub sizes: Vec<usize>,
    pub lr: f64,
    pub seed: u64,
    /// Weights to start from (fine-tuning, for example to a new size) instead of fresh ones.
    pub init: Option<std::path::PathBuf>,
}

/// Checks the sizes a segmenter trains or is measured at: at least one, each a size the
/// scene renderer draws and a multiple of 8 (the U-Net pools three times).
pub fn check_sizes(sizes: &[usize]) -> anyhow::Result<()> {
    use super::scene::{MAX_SIZE, MIN_SIZE};
    if sizes.is_empty() {
        anyhow::bail!("--size needs at least one size");
    }
    for &size in sizes {
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) || size % 8 != 0 {
            anyhow::bail!(
                "--size {size}: scenes are drawn at {MIN_SIZE} to {MAX_SIZE} pixels a side, \
                 in multiples of 8"
            );
        }
    }
    Ok(())
}

/// Perturbs a batch in [-1, 1] so the segmenter tolerates generator artefacts.
fn augment(images: &Tensor) -> Tensor {
    let n = images.size()[0];
    let opts = (Kind::Float, images.device());
    // Blur half the images with a 3×3 box filter mixed in at a random strength.
    let kernel = Tensor::ones([3, 1, 3, 3], opts) / 9.0;
    let blurred = images.conv2d(&kernel, None::<Tensor>, [1, 1], [1, 1], [1, 1], 3);
    let mix = Tensor::rand([n, 1, 1, 1], opts)
        * Tensor::rand([n, 1, 1, 1], opts)
            .gt(0.5)
            .to_kind(Kind::Float);
    let x = images * (1.0 - &mix) + blurred * &mix;
    let contrast = Tensor::rand([n, 1, 1, 1], opts) * 0.3 + 0.85;
    let shift = (Tensor::rand([n, 1, 1, 1], opts) - 0.5) * 0.2;
    let noise = Tensor::randn_like(&x) * (Tensor::rand([n, 1, 1, 1], opts) * 0.06);
    (x * contrast + shift + noise).clamp(-1.0, 1.0)
}

/// Mean cross-entropy over pixels: logits [N, C, H, W], labels [N, H, W].
pub fn pixel_cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Mean, -100, 0.0)
}

impl SegmenterRun {
    pub fn run(&self, out: &Path, device: Device) -> anyhow::Result<DemoSegmenter> {
        check_sizes(&self.sizes)?;
        tch::manual_seed(self.seed as i64);
        let model = match &self.init {
            Some(path) => DemoSegmenter::load_trainable(path, device)?,
            None => DemoSegmenter::new(device),
        };
        let mut adam = Adam::new(model.var_store(), self.lr, 0.9, 0.999);
        // One stream of scenes per size; the first keeps the seed a single size has always had.
        let streams: Vec<SceneBatches> = self
            .sizes
            .iter()
            .enumerate()
            .map(|(k, &size)| {
                SceneBatches::spawn(self.seed ^ 0x5e6 ^ ((k as u64) << 40), 0, self.batch, size)
            })
            .collect();
        let bar = crate::progress::progress_bar(self.steps as u64, "train segmenter");
        for step in 0..self.steps {
            // Cosine decay to 5% of the initial rate.
            let progress = step as f64 / self.steps as f64;
            adam.lr =
                self.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            let batch = streams[step as usize % streams.len()].next()?;
            let images = augment(&batch.images.to_device(device));
            adam.zero_grad();
            let loss =
                pixel_cross_entropy(&model.forward(&images), &batch.labels.to_device(device));
            loss.backward();
            adam.update();
            bar.set_message(format!(
                "train segmenter loss {:.4}",
                loss.double_value(&[])
            ));
            bar.inc(1);
            if (step + 1) % 100 == 0 {
                tracing::info!(step = step + 1, loss = loss.double_value(&[]), "segmenter");
            }
        }
        bar.finish();
        model.save(out)?;
        Ok(model)
    }
}

/// Per-class IoU over `count` held-out rendered scenes, and their mean over the classes
/// that occur.
pub fn heldout_iou(
    seg: &dyn Segmenter,
    count: u64,
    size: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let classes = seg.labels().len() as i64;
    let mut inter = vec![0f64; classes as usize];
    let mut union = vec![0f64; classes as usize];
    let seeds: Vec<u64> = (0..count).map(heldout_seed).collect();
    for chunk in seeds.chunks(50) {
        let batch = render_batch(chunk, size);
        let predicted = seg.segment(&batch.images)?.to_device(Device::Cpu);
        for c in 0..classes {
            let p = predicted.eq(c);
            let t = batch.labels.eq(c);
            inter[c as usize] += p.logical_and(&t).sum(Kind::Float).double_value(&[]);
            union[c as usize] += p.logical_or(&t).sum(Kind::Float).double_value(&[]);
        }
    }
    let ious: Vec<f64> = inter
        .iter()
        .zip(&union)
        .map(|(i, u)| if *u > 0.0 { i / u } else { f64::NAN })
        .collect();
    let present: Vec<f64> = ious.iter().copied().filter(|v| !v.is_nan()).collect();
    Ok((
        present.iter().sum::<f64>() / present.len().max(1) as f64,
        ious,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_steps_lower_the_loss_and_write_a_loadable_model() {
        let path = std::env::temp_dir().join(format!(
            "ganpaint-segtrain-{}.safetensors",
            std::process::id()
        ));
        let run = SegmenterRun {
            steps: 30,
            batch: 4,
            sizes: vec![32],
            lr: 3e-3,
            seed: 5,
            init: None,
        };
        let model = run.run(&path, Device::Cpu).unwrap();
        let loaded = DemoSegmenter::load(&path, Device::Cpu).unwrap();
        let batch = render_batch(&[heldout_seed(0), heldout_seed(1)], 32);
        let loss = |m: &DemoSegmenter| {
            tch::no_grad(|| {
                pixel_cross_entropy(&m.forward(&batch.images), &batch.labels).double_value(&[])
            })
        };
        let fresh = DemoSegmenter::new(Device::Cpu);
        assert!(
            loss(&model) < loss(&fresh),
            "training did not lower the loss"
        );
        assert_eq!(loss(&model), loss(&loaded));
        let (miou, per_class) = heldout_iou(&loaded, 4, 32).unwrap();
        assert!((0.0..=1.0).contains(&miou) && per_class.len() == loaded.labels().len());

        // Fine-tuning starts from the given weights: no steps keep them as they are, and a
        // few steps at two sizes in turn lower the loss at the new size.
        let tuned_path = path.with_extension("tuned.safetensors");
        let keep = SegmenterRun {
            steps: 0,
            sizes: vec![32, 48],
            init: Some(path.clone()),
            ..run
        };
        let kept = keep.run(&tuned_path, Device::Cpu).unwrap();
        assert_eq!(loss(&kept), loss(&loaded));
        let at_48 = render_batch(&[heldout_seed(2), heldout_seed(3)], 48);
        let loss_48 = |m: &DemoSegmenter| {
            tch::no_grad(|| {
                pixel_cross_entropy(&m.forward(&at_48.images), &at_48.labels).double_value(&[])
            })
        };
        let tuned = SegmenterRun { steps: 20, ..keep }
            .run(&tuned_path, Device::Cpu)
            .unwrap();
        assert!(
            loss_48(&tuned) < loss_48(&loaded),
            "fine-tuning at 48² did not help at 48²"
        );
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(tuned_path);
    }

    #[test]
    fn sizes_must_be_drawable_and_poolable() {
        assert!(check_sizes(&[64, 128, 256]).is_ok());
        for bad in [vec![], vec![60], vec![16], vec![512], vec![128, 100]] {
            let err = check_sizes(&bad).unwrap_err().to_string();
            assert!(err.contains("--size"), "{bad:?}: {err}");
        }
    }
}
