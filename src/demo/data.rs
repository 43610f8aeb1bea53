//! Training batches of rendered scenes, made on a background thread so the renderer
//! overlaps with libtorch's compute.
//!
//! Scene `i` of a stream with seed `s` is `scene::render(mix(s, i))`. Training streams
//! use seeds below 2⁶³; held-out evaluation uses [`heldout_seed`], which sets the top bit,
//! so the two never share a scene.

use std::sync::mpsc::{sync_channel, Receiver};

use tch::{Kind, Tensor};

use super::scene;

/// A SplitMix64 step: decorrelates neighbouring indices into well-spread render seeds.
pub fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(index)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & !(1 << 63)
}

/// Seed of held-out scene `index` (never produced by a training stream).
pub fn heldout_seed(index: u64) -> u64 {
    mix(0x05ee_d0f4_e1d0_u64, index) | (1 << 63)
}

/// A batch: images [N, 3, R, R] in [-1, 1] (f32) and labels [N, R, R] (i64 class ids).
pub struct SceneBatch {
    pub images: Tensor,
    pub labels: Tensor,
}

/// Renders the scenes with these seeds into one batch.
pub fn render_batch(seeds: &[u64], size: usize) -> SceneBatch {
    let (rgb, labels) = render_raw(seeds, size);
    to_batch(&rgb, &labels, seeds.len(), size)
}

fn render_raw(seeds: &[u64], size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rgb = Vec::with_capacity(seeds.len() * size * size * 3);
    let mut labels = Vec::with_capacity(seeds.len() * size * size);
    for &seed in seeds {
        let scene = scene::render(seed, size);
        rgb.extend_from_slice(&scene.rgb);
        labels.extend_from_slice(&scene.labels);
    }
    (rgb, labels)
}

fn to_batch(rgb: &[u8], labels: &[u8], n: usize, size: usize) -> SceneBatch {
    let (n, s) = (n as i64, size as i64);
    let images = Tensor::from_slice(rgb)
        .view([n, s, s, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 127.5
        - 1.0;
    let labels = Tensor::from_slice(labels)
        .view([n, s, s])
        .to_kind(Kind::Int64);
    SceneBatch { images, labels }
}

/// An endless stream of training batches, rendered two ahead. Tensors are built on the
/// consumer's thread; the renderer thread only makes bytes.
pub struct SceneBatches {
    rx: Receiver<(Vec<u8>, Vec<u8>)>,
    batch: usize,
    size: usize,
}

impl SceneBatches {
    /// Starts at scene `start` of the stream `seed` (so a resumed run continues the stream).
    pub fn spawn(seed: u64, start: u64, batch: usize, size: usize) -> Self {
        let (tx, rx) = sync_channel(2);
        std::thread::spawn(move || {
            let mut index = start;
            loop {
                let seeds: Vec<u64> = (index..index + batch as u64)
                    .map(|i| mix(seed, i))
                    .collect();
                index += batch as u64;
                if tx.send(render_raw(&seeds, size)).is_err() {
                    return; // the consumer is gone
                }
            }
        });
        SceneBatches { rx, batch, size }
    }

    pub fn next(&self) -> anyhow::Result<SceneBatch> {
        let (rgb, labels) = self
            .rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the scene renderer thread stopped"))?;
        Ok(to_batch(&rgb, &labels, self.batch, self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heldout_seeds_never_collide_with_training_seeds() {
        for i in 0..1000 {
            assert!(mix(1, i) < 1 << 63);
            assert!(heldout_seed(i) >= 1 << 63);
        }
    }

    #[test]
    fn streamed_batches_equal_directly_rendered_ones() {
        let stream = SceneBatches::spawn(9, 4, 2, 32);
        let streamed = stream.next().unwrap();
        let direct = render_batch(&[mix(9, 4), mix(9, 5)], 32);
        assert!(streamed.images.equal(&direct.images));
        assert!(streamed.labels.equal(&direct.labels));
        assert_eq!(direct.images.size(), vec![2, 3, 32, 32]);
        let (lo, hi) = (
            direct.images.min().double_value(&[]),
            direct.images.max().double_value(&[]),
        );
        assert!((-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi));
    }
}
