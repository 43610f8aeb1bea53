//! `ganpaint eval-demo`: how good are the bundled demo models?
//!
//! - the segmenter's IoU per class on held-out rendered scenes;
//! - realism: per class, the mean pixel share and the presence rate (fraction of images
//!   containing the class) over generated samples and over rendered scenes. Both sides go
//!   through the same segmenter, so its own errors cancel and only the generator's
//!   departures from the renderer remain;
//! - 8×8 grids of generated and rendered images, to look at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::data::{heldout_seed, render_batch};
use crate::model::ProgGan;
use crate::segment::Segmenter;

#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct ClassRealism {
    pub generated_share: f64,
    pub rendered_share: f64,
    pub generated_presence: f64,
    pub rendered_presence: f64,
    /// The standard error of `generated_share`: the standard deviation of the class's
    /// share over the images, over the square root of their count. A class that fills
    /// some images and is absent from others (a building) has a wide one, so a few
    /// hundred images leave its share gap uncertain by several points.
    pub generated_share_se: f64,
    /// The same for `rendered_share`.
    pub rendered_share_se: f64,
}

impl ClassRealism {
    /// |generated − rendered| / rendered share; `None` where the scenes never show the class.
    pub fn share_gap(&self) -> Option<f64> {
        (self.rendered_share > 0.0)
            .then(|| (self.generated_share - self.rendered_share).abs() / self.rendered_share)
    }

    /// The standard error of [`Self::share_gap`] from those of the two shares (to first
    /// order, the two sides independent); `None` where the scenes never show the class.
    pub fn share_gap_se(&self) -> Option<f64> {
        (self.rendered_share > 0.0).then(|| {
            let ratio = self.generated_share / self.rendered_share;
            (self.generated_share_se.powi(2) + (ratio * self.rendered_share_se).powi(2)).sqrt()
                / self.rendered_share
        })
    }

    /// |generated − rendered| presence rate.
    pub fn presence_gap(&self) -> f64 {
        (self.generated_presence - self.rendered_presence).abs()
    }
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub segmenter_miou: f64,
    pub segmenter_iou: BTreeMap<String, Option<f64>>,
    pub realism: BTreeMap<String, ClassRealism>,
    /// Mean gradient magnitude of the generated images over that of the rendered scenes
    /// (same resolution, same count): below 1, the generator blurs.
    pub sharpness_ratio: f64,
    pub generated_sharpness: f64,
    pub rendered_sharpness: f64,
    /// G's strongest fine regular pattern against the scenes ([`Stripe`]); `None` below
    /// 2² images.
    pub stripe: Option<Stripe>,
    /// The side everything was measured at (`--size`, else the generator's).
    pub size: usize,
    pub grid: PathBuf,
    pub rendered_grid: PathBuf,
}

/// The mean gradient magnitude of images ([N, 3, H, W] in [-1, 1]), accumulated over
/// batches: per pixel, the length of the (horizontal, vertical) forward differences of
/// the luminance, over the pixels that have both neighbours.
#[derive(Clone, Debug, Default)]
struct Sharpness {
    sum: f64,
    pixels: f64,
}

impl Sharpness {
    fn add(&mut self, images: &Tensor) {
        let (n, _, h, w) = images.size4().expect("[N, 3, H, W] images");
        if h < 2 || w < 2 {
            return;
        }
        let magnitude = luminance_gradient(images);
        self.sum += magnitude.sum(Kind::Double).double_value(&[]);
        self.pixels += (n * (h - 1) * (w - 1)) as f64;
    }

    fn mean(&self) -> f64 {
        self.sum / self.pixels.max(1.0)
    }
}

/// The Rec. 601 luma of `[N, 3, H, W]` images, `[N, 1, H, W]` in f32. It keeps gradients.
pub fn luma(images: &Tensor) -> Tensor {
    let weights = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .view([1, 3, 1, 1])
        .to_device(images.device());
    (images.to_kind(Kind::Float) * weights).sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
}

/// Each pixel's luminance gradient magnitude in `[N, 3, H, W]` images (H, W ≥ 2): the
/// Rec. 601 luma's forward differences across and down, `[N, 1, H − 1, W − 1]`, in f32.
/// Its mean is the sharpness `eval-demo` reports; it keeps gradients, so `train-demo gan
/// --sharpness-weight` holds G's to the rendered scenes' with it. (A flat patch has
/// magnitude 0; the tiny floor under the root keeps its gradient finite there.)
pub fn luminance_gradient(images: &Tensor) -> Tensor {
    let (_, _, h, w) = images.size4().expect("[N, 3, H, W] images");
    let luma = luma(images);
    let dx = luma.narrow(3, 1, w - 1) - luma.narrow(3, 0, w - 1);
    let dy = luma.narrow(2, 1, h - 1) - luma.narrow(2, 0, h - 1);
    let dx = dx.narrow(2, 0, h - 1);
    let dy = dy.narrow(3, 0, w - 1);
    (dx.square() + dy.square() + 1e-12).sqrt()
}

/// The fine band of the line spectra starts at a side's width over this, in cycles per
/// side: at 256² periods of 16 pixels and finer. Coarser ones are the scene's layout, which
/// the critic and the teacher judge; the band is its texture, where `train-demo gan
/// --spectrum-weight` holds G to the scenes and where [`Stripe`] looks for a peak.
pub const SPECTRUM_BAND_START: i64 = 16;

/// The mean power of `images`' luma along rows and along columns, `[2, W/2 + 1]` for
/// square `[N, 3, W, W]` images (the first row across, the second down): each frequency's
/// power averaged over every row (or column) of every image, after each image's mean luma
/// is taken out. It keeps gradients.
pub fn line_spectra(images: &Tensor) -> Tensor {
    let (_, _, h, w) = images.size4().expect("[N, 3, H, W] images");
    assert_eq!(h, w, "line_spectra takes square images");
    let luma = luma(images);
    let luma = &luma - luma.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    let bins = w / 2 + 1;
    let mean_power = |lines: Tensor| {
        lines
            .fft_rfft(None, -1, "ortho")
            .abs()
            .square()
            .reshape([-1, bins])
            .mean_dim([0i64].as_slice(), false, Kind::Float)
    };
    // Across: each row; down: each column, made a row by the transpose.
    let across = mean_power(luma.shallow_clone());
    let down = mean_power(luma.transpose(2, 3));
    Tensor::stack(&[across, down], 0)
}

/// The line spectra ([`line_spectra`]) of images, averaged over batches.
#[derive(Clone, Debug, Default)]
struct Spectra {
    /// Each image's spectra summed, `[across…, down…]` (2 × (W/2 + 1)).
    sum: Vec<f64>,
    images: f64,
}

impl Spectra {
    fn add(&mut self, images: &Tensor) {
        let (n, _, h, w) = images.size4().expect("[N, 3, H, W] images");
        if h != w || w < 2 {
            return;
        }
        let spectra = line_spectra(images).to_kind(Kind::Double).flatten(0, -1) * n as f64;
        let spectra = Vec::<f64>::try_from(&spectra).expect("a 1-D f64 tensor");
        if self.sum.is_empty() {
            self.sum = vec![0.0; spectra.len()];
        }
        for (s, v) in self.sum.iter_mut().zip(spectra) {
            *s += v;
        }
        self.images += n as f64;
    }

    /// The mean power at `cycles` per side on `axis` (0 across, 1 down).
    fn power(&self, axis: usize, cycles: usize) -> f64 {
        let bins = self.sum.len() / 2;
        self.sum[axis * bins + cycles] / self.images.max(1.0)
    }
}

/// The strongest regular pattern of generated images against the rendered scenes: the
/// largest ratio of their line-spectrum power ([`line_spectra`]) to the scenes' at one
/// frequency of the fine band (from a side's [`SPECTRUM_BAND_START`]th up), on either axis.
/// A stripe G draws everywhere (lines a few pixels apart) is a peak there that a share or a
/// sharpness figure does not see; near 1 where G's texture is as fine as the scenes'.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Stripe {
    pub ratio: f64,
    /// Its frequency, in cycles per image side.
    pub cycles: usize,
    /// `across` (lines running down the image, their period along the rows) or `down`.
    pub axis: &'static str,
}

impl Stripe {
    /// Whether it misses [`STRIPE_BAR`].
    pub fn misses_bar(&self) -> bool {
        self.ratio > STRIPE_BAR
    }

    /// The peak of `generated` over `rendered`, both measured at one side; `None` without
    /// images on either side.
    fn peak(generated: &Spectra, rendered: &Spectra) -> Option<Self> {
        if generated.images == 0.0
            || rendered.images == 0.0
            || generated.sum.len() != rendered.sum.len()
        {
            return None;
        }
        let bins = generated.sum.len() / 2;
        let side = 2 * (bins - 1);
        let first = (side / SPECTRUM_BAND_START as usize).max(1);
        let mut best: Option<Self> = None;
        for (axis, name) in [(0, "across"), (1, "down")] {
            for cycles in first..bins {
                let ratio = generated.power(axis, cycles)
                    / rendered.power(axis, cycles).max(f64::MIN_POSITIVE);
                if best.as_ref().is_none_or(|b| ratio > b.ratio) {
                    best = Some(Self {
                        ratio,
                        cycles,
                        axis: name,
                    });
                }
            }
        }
        best
    }
}

/// A class counts as present in an image when it covers at least this share of it, so
/// a few stray misclassified pixels do not count.
pub const PRESENCE_MIN_SHARE: f64 = 0.002;

/// Accumulates per-class pixel shares and presence over batches of label maps.
#[derive(Clone)]
struct ShareStats {
    share_sum: Vec<f64>,
    /// The sum of each class's squared share, for its spread over images.
    share_square_sum: Vec<f64>,
    present: Vec<f64>,
    images: f64,
}

impl ShareStats {
    fn new(classes: usize) -> Self {
        ShareStats {
            share_sum: vec![0.0; classes],
            share_square_sum: vec![0.0; classes],
            present: vec![0.0; classes],
            images: 0.0,
        }
    }

    /// labels: [N, h, w] class ids.
    fn add(&mut self, labels: &Tensor) {
        let (n, h, w) = labels.size3().expect("label maps");
        let classes = self.share_sum.len() as i64;
        let counts = labels.view([n, h * w]).one_hot(classes).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Float,
        );
        let shares = counts / (h * w) as f64; // [n, C]
        let mean: Vec<f64> =
            Vec::try_from(shares.sum_dim_intlist([0i64].as_slice(), false, Kind::Double))
                .expect("f64");
        let squares: Vec<f64> = Vec::try_from(shares.square().sum_dim_intlist(
            [0i64].as_slice(),
            false,
            Kind::Double,
        ))
        .expect("f64");
        let present: Vec<f64> = Vec::try_from(
            shares
                .ge(PRESENCE_MIN_SHARE)
                .to_kind(Kind::Double)
                .sum_dim_intlist([0i64].as_slice(), false, Kind::Double),
        )
        .expect("f64");
        for c in 0..self.share_sum.len() {
            self.share_sum[c] += mean[c];
            self.share_square_sum[c] += squares[c];
            self.present[c] += present[c];
        }
        self.images += n as f64;
    }

    fn share(&self, c: usize) -> f64 {
        self.share_sum[c] / self.images.max(1.0)
    }

    fn presence(&self, c: usize) -> f64 {
        self.present[c] / self.images.max(1.0)
    }

    /// The standard error of [`Self::share`]: the sample standard deviation of the
    /// class's share over the images, over √images (0 under two images).
    fn share_se(&self, c: usize) -> f64 {
        let n = self.images;
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.share(c);
        let variance = ((self.share_square_sum[c] - n * mean * mean) / (n - 1.0)).max(0.0);
        (variance / n).sqrt()
    }
}

pub struct EvalDemo<'a> {
    pub generator: &'a ProgGan,
    pub segmenter: &'a dyn Segmenter,
    /// The realism figures use generated ids `first_sample..first_sample + samples` and
    /// as many held-out rendered scenes, numbered alike. 0 is the reported split; another
    /// offset gives a disjoint validation split, for choosing between checkpoints without
    /// choosing on the figures that get reported.
    pub first_sample: u64,
    pub samples: u64,
    pub heldout: u64,
    pub out_dir: &'a Path,
    /// The side everything is measured at: G's images resized to it ([`resized`]), the
    /// scenes rendered at it. `None`: G's own. A smaller generator measured at a grown
    /// one's size is what that one's label teacher sees.
    pub size: Option<usize>,
}

/// `images` (`[N, C, H, H]`) at `side`²: bilinear when smaller, averaged over blocks
/// when larger, unchanged when equal.
pub fn resized(images: &Tensor, side: i64) -> Tensor {
    let own = images.size()[2];
    if own == side {
        images.shallow_clone()
    } else if own > side {
        images.adaptive_avg_pool2d([side, side])
    } else {
        images.upsample_bilinear2d([side, side], false, None, None)
    }
}

/// The first held-out scene index of the realism split; the segmenter's held-out scenes
/// (`heldout_iou`) are numbered from 0, so the two never meet.
const REALISM_SCENES_FROM: u64 = 1_000_000;

/// The rendered half of the realism figures: it depends only on the segmenter, the split
/// and the image size, so callers that measure many generators on one split (`train-demo
/// pick`) compute it once.
#[derive(Clone)]
pub struct RenderedSide {
    key: (u64, u64, usize),
    stats: ShareStats,
    sharpness: Sharpness,
    spectra: Spectra,
    grid: Vec<image::RgbImage>,
}

impl EvalDemo<'_> {
    pub fn run(&self) -> anyhow::Result<EvalReport> {
        self.run_cached(&mut None)
    }

    /// As [`EvalDemo::run`], taking the rendered half from `rendered` when it holds this
    /// split's, and leaving it there otherwise. The segmenter must be the same across calls.
    pub fn run_cached(&self, rendered: &mut Option<RenderedSide>) -> anyhow::Result<EvalReport> {
        std::fs::create_dir_all(self.out_dir)?;
        let size = self.size.unwrap_or(self.generator.resolution() as usize);
        let sizes = super::scene::MIN_SIZE..=super::scene::MAX_SIZE;
        if !sizes.contains(&size) {
            let what = match self.size {
                Some(size) => format!("--size {size}"),
                None => format!("the generator makes {size}² images"),
            };
            anyhow::bail!(
                "{what}; rendered scenes come in {}² to {}²",
                sizes.start(),
                sizes.end()
            );
        }
        let (miou, ious) = super::segmenter::heldout_iou(self.segmenter, self.heldout, size)?;
        let labels = self.segmenter.labels().to_vec();
        let classes = labels.len();
        let ids: Vec<u64> = (self.first_sample..self.first_sample + self.samples).collect();
        let _guard = tch::no_grad_guard();
        let key = (self.first_sample, self.samples, size);
        let side = match rendered.take() {
            Some(side) if side.key == key => side,
            _ => {
                let mut stats = ShareStats::new(classes);
                let mut sharpness = Sharpness::default();
                let mut spectra = Spectra::default();
                let mut grid = Vec::new();
                let bar = crate::progress::progress_bar(self.samples, "eval rendered scenes");
                for chunk in ids.chunks(50) {
                    let seeds: Vec<u64> = chunk
                        .iter()
                        .map(|&i| heldout_seed(REALISM_SCENES_FROM + i))
                        .collect();
                    let renders = render_batch(&seeds, size);
                    sharpness.add(&renders.images);
                    spectra.add(&renders.images);
                    stats.add(
                        &self
                            .segmenter
                            .segment(&renders.images)?
                            .to_device(Device::Cpu),
                    );
                    if grid.len() < 64 {
                        grid.extend(crate::imageio::to_rgb_images(&renders.images)?);
                    }
                    bar.inc(chunk.len() as u64);
                }
                bar.finish();
                grid.truncate(64);
                RenderedSide {
                    key,
                    stats,
                    sharpness,
                    spectra,
                    grid,
                }
            }
        };
        let mut generated = ShareStats::new(classes);
        let mut generated_sharpness = Sharpness::default();
        let mut generated_spectra = Spectra::default();
        let mut first_generated = Vec::new();
        let bar = crate::progress::progress_bar(self.samples, "eval generated samples");
        for chunk in ids.chunks(50) {
            let z = self.generator.z_for_ids(chunk)?;
            let images = resized(&self.generator.forward(&z)?, size as i64).to_device(Device::Cpu);
            generated_sharpness.add(&images);
            generated_spectra.add(&images);
            generated.add(&self.segmenter.segment(&images)?.to_device(Device::Cpu));
            if first_generated.len() < 64 {
                first_generated.extend(crate::imageio::to_rgb_images(&images)?);
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
        first_generated.truncate(64);
        let grid = self.out_dir.join("generated_grid.png");
        let rendered_grid = self.out_dir.join("rendered_grid.png");
        crate::imageio::write_png(&crate::imageio::grid(&first_generated, 8), &grid)?;
        crate::imageio::write_png(&crate::imageio::grid(&side.grid, 8), &rendered_grid)?;
        let realism = (0..classes)
            .map(|c| {
                (
                    labels[c].clone(),
                    ClassRealism {
                        generated_share: generated.share(c),
                        rendered_share: side.stats.share(c),
                        generated_presence: generated.presence(c),
                        rendered_presence: side.stats.presence(c),
                        generated_share_se: generated.share_se(c),
                        rendered_share_se: side.stats.share_se(c),
                    },
                )
            })
            .collect();
        let rendered_sharpness = side.sharpness.mean();
        let generated_sharpness = generated_sharpness.mean();
        let stripe = Stripe::peak(&generated_spectra, &side.spectra);
        *rendered = Some(side);
        let segmenter_iou = labels
            .iter()
            .zip(&ious)
            .map(|(l, v)| (l.clone(), if v.is_nan() { None } else { Some(*v) }))
            .collect();
        Ok(EvalReport {
            segmenter_miou: miou,
            segmenter_iou,
            realism,
            sharpness_ratio: generated_sharpness / rendered_sharpness.max(f64::MIN_POSITIVE),
            generated_sharpness,
            rendered_sharpness,
            stripe,
            size,
            grid,
            rendered_grid,
        })
    }
}

/// The realism bars: a generated class share within this relative gap of the rendered one…
pub const SHARE_BAR: f64 = 0.25;
/// …and a presence rate within this many (fractional) points.
pub const PRESENCE_BAR: f64 = 0.10;

/// How far the worst class is from the realism bars: the largest of each class's share gap
/// over [`SHARE_BAR`] and presence gap over [`PRESENCE_BAR`], with that class. Below 1.0
/// every bar is met; lower is closer to the rendered scenes. `None` without classes.
pub fn realism_score(realism: &BTreeMap<String, ClassRealism>) -> Option<(f64, String)> {
    realism
        .iter()
        .map(|(class, r)| {
            let share = match r.share_gap() {
                Some(gap) => gap / SHARE_BAR,
                None if r.generated_share > 0.0 => f64::INFINITY,
                None => 0.0,
            };
            let presence = r.presence_gap() / PRESENCE_BAR;
            (share.max(presence), class.clone())
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The sharpness bar: generated images' mean gradient magnitude at least this fraction of
/// the rendered scenes' (`sharpness_ratio`).
pub const SHARPNESS_BAR: f64 = 0.8;

/// Whether a sharpness ratio misses [`SHARPNESS_BAR`].
pub fn sharpness_misses_bar(ratio: f64) -> bool {
    ratio < SHARPNESS_BAR
}

/// How far a sharpness ratio is from [`SHARPNESS_BAR`], on the scale of
/// [`realism_score`]: the bar over the ratio, so at most 1.0 where it is met.
pub fn sharpness_bars(ratio: f64) -> f64 {
    if ratio > 0.0 {
        SHARPNESS_BAR / ratio
    } else {
        f64::INFINITY
    }
}

/// The stripe bar: at no frequency of the fine band may G's line-spectrum power exceed
/// this many times the rendered scenes' ([`Stripe`]). The stripe the sharpness loss drew
/// (vertical lines 3.3 pixels apart, plain to see in a sample grid) stood at 4.4; once no
/// grid showed it, no peak passed 1.5.
pub const STRIPE_BAR: f64 = 2.0;

/// How far a stripe is from [`STRIPE_BAR`], on the scale of [`realism_score`]: at most
/// 1.0 where it is met.
pub fn stripe_bars(stripe: &Stripe) -> f64 {
    stripe.ratio / STRIPE_BAR
}

/// The realism score with sharpness and the stripe as two more bars: [`realism_score`],
/// unless [`sharpness_bars`] or [`stripe_bars`] is further, then that, named `sharpness`
/// or `stripe`. Below 1.0 every bar of `eval-demo` on the generated images is met.
pub fn demo_score(
    realism: &BTreeMap<String, ClassRealism>,
    sharpness_ratio: f64,
    stripe: Option<&Stripe>,
) -> Option<(f64, String)> {
    let mut worst = realism_score(realism)?;
    let sharpness = sharpness_bars(sharpness_ratio);
    if sharpness > worst.0 {
        worst = (sharpness, "sharpness".to_string());
    }
    if let Some(stripe) = stripe.map(stripe_bars).filter(|&s| s > worst.0) {
        worst = (stripe, "stripe".to_string());
    }
    Some(worst)
}

/// How many of `eval-demo`'s bars on the generated images are missed: each class's share
/// and presence bar ([`realism_misses`]), the sharpness bar and the stripe bar. `pick`
/// ranks by it before [`demo_score`]: a generator that misses one bar by a third is
/// closer to shipping than one that misses two by a fifth each.
pub fn demo_misses(
    realism: &BTreeMap<String, ClassRealism>,
    sharpness_ratio: f64,
    stripe: Option<&Stripe>,
) -> usize {
    realism_misses(realism).len()
        + usize::from(sharpness_misses_bar(sharpness_ratio))
        + usize::from(stripe.is_some_and(Stripe::misses_bar))
}

/// The bars: generated share within 25% (relative) of rendered, presence within
/// 10 points. Returns the classes that miss, with a reason.
pub fn realism_misses(realism: &BTreeMap<String, ClassRealism>) -> Vec<String> {
    let mut misses = Vec::new();
    for (class, r) in realism {
        if r.share_gap().is_some_and(|gap| gap > SHARE_BAR) {
            misses.push(format!(
                "{class}: share {:.4} vs {:.4}",
                r.generated_share, r.rendered_share
            ));
        }
        if r.presence_gap() > PRESENCE_BAR {
            misses.push(format!(
                "{class}: presence {:.3} vs {:.3}",
                r.generated_presence, r.rendered_presence
            ));
        }
    }
    misses
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::demo::gan::tests::tiny_settings;
    use crate::segment::testing::RedSegmenter;

    #[test]
    fn sharpness_is_the_mean_luminance_gradient_and_blur_lowers_it() {
        // A vertical edge: 0 left of column 2, 1 from it (all channels, so luminance 1).
        let edge = Tensor::zeros([1, 3, 4, 4], (Kind::Float, Device::Cpu));
        let _ = edge.narrow(3, 2, 2).fill_(1.0);
        let mut s = Sharpness::default();
        s.add(&edge);
        // 3×3 pixels have both neighbours; in each of the 3 rows one crosses the edge.
        assert!((s.mean() - 3.0 / 9.0).abs() < 1e-6, "{}", s.mean());
        // A flat image adds pixels but no gradient.
        s.add(&Tensor::ones([1, 3, 4, 4], (Kind::Float, Device::Cpu)));
        assert!((s.mean() - 3.0 / 18.0).abs() < 1e-6, "{}", s.mean());
        // Blurring a random image (2× down, then up) lowers its sharpness.
        tch::manual_seed(3);
        let noise = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let blurred = noise
            .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
            .upsample_bilinear2d([16, 16], false, None, None);
        let (mut sharp, mut soft) = (Sharpness::default(), Sharpness::default());
        sharp.add(&noise);
        soft.add(&blurred);
        assert!(
            soft.mean() < 0.7 * sharp.mean(),
            "{} vs {}",
            soft.mean(),
            sharp.mean()
        );
    }

    #[test]
    fn shares_and_presence_count_pixels_per_image() {
        let mut stats = ShareStats::new(3);
        // image 0: all class 0; image 1: half 1, half 2.
        let labels = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 1, 2, 2]).view([2, 2, 2]);
        stats.add(&labels);
        assert_eq!(stats.share(0), 0.5);
        assert_eq!(stats.share(1), 0.25);
        assert_eq!(stats.presence(2), 0.5);
        assert_eq!(stats.presence(0), 0.5);
        // Class 0's shares are 1 and 0: standard deviation √0.5, over √2 images.
        assert!((stats.share_se(0) - 0.5).abs() < 1e-12);
        // Class 1's are 0 and 0.5 (sd √0.125); a third image with none adds to the count.
        assert!((stats.share_se(1) - (0.125f64 / 2.0).sqrt()).abs() < 1e-12);
        stats.add(&Tensor::from_slice(&[0i64, 0, 0, 0]).view([1, 2, 2]));
        let (mean, sd) = (
            0.5 / 3.0,
            ((0.25 - 3.0 * (0.5f64 / 3.0).powi(2)) / 2.0).sqrt(),
        );
        assert!((stats.share(1) - mean).abs() < 1e-12);
        assert!((stats.share_se(1) - sd / 3f64.sqrt()).abs() < 1e-12);
        // One image has no spread to measure.
        let mut one = ShareStats::new(2);
        one.add(&Tensor::from_slice(&[0i64, 1]).view([1, 1, 2]));
        assert_eq!(one.share_se(0), 0.0);
    }

    #[test]
    fn sharpness_is_one_more_bar_of_the_score() {
        let mut realism = BTreeMap::new();
        realism.insert(
            "tree".to_string(),
            ClassRealism {
                generated_share: 0.12,
                rendered_share: 0.10,
                generated_presence: 0.9,
                rendered_presence: 0.99,
                ..Default::default()
            },
        );
        // tree: share 20% off (0.8 bars), presence 9 points (0.9 bars); as sharp as the
        // rendered scenes, sharpness is at 0.8 bars.
        assert_eq!(sharpness_bars(SHARPNESS_BAR), 1.0);
        assert_eq!(sharpness_bars(0.0), f64::INFINITY);
        let (score, class) = demo_score(&realism, 1.0, None).unwrap();
        assert!(
            (score - 0.9).abs() < 1e-9 && class == "tree",
            "{score} {class}"
        );
        // Blurrier than the bar: sharpness sets the score, and it misses.
        let (score, class) = demo_score(&realism, 0.4, None).unwrap();
        assert_eq!((score, class.as_str()), (2.0, "sharpness"));
        assert!(demo_score(&BTreeMap::new(), 1.0, None).is_none());
        // A stripe within its bar leaves the score to the classes; past it, it sets it.
        let stripe = |ratio| Stripe {
            ratio,
            cycles: 78,
            axis: "across",
        };
        assert_eq!(stripe_bars(&stripe(STRIPE_BAR)), 1.0);
        let (score, class) = demo_score(&realism, 1.0, Some(&stripe(1.2))).unwrap();
        assert!(
            (score - 0.9).abs() < 1e-9 && class == "tree",
            "{score} {class}"
        );
        let (score, class) = demo_score(&realism, 0.4, Some(&stripe(4.4))).unwrap();
        assert!(
            (score - 2.2).abs() < 1e-9 && class == "stripe",
            "{score} {class}"
        );
        // The bars missed are counted one by one: none here, then sharpness, then both.
        assert_eq!(demo_misses(&realism, 1.0, Some(&stripe(1.2))), 0);
        assert_eq!(demo_misses(&realism, 0.79, Some(&stripe(1.2))), 1);
        assert_eq!(demo_misses(&realism, 0.79, Some(&stripe(2.1))), 2);
        // A class past both its bars counts twice.
        realism.insert(
            "dome".to_string(),
            ClassRealism {
                generated_share: 0.05,
                rendered_share: 0.10,
                generated_presence: 0.5,
                rendered_presence: 0.8,
                ..Default::default()
            },
        );
        assert_eq!(demo_misses(&realism, 0.79, None), 3);
    }

    /// `n` images of smooth noise (side `side`, a 4× blur of uniform noise) with a fine
    /// grain over it, as rendered scenes have (uniform in ±0.1: without it the reference
    /// holds almost no power at the high frequencies, their log ratios swing with every
    /// step, and the descent below met its bars for a few random draws only), and the same
    /// with a vertical stripe of `cycles` cycles across added.
    pub(crate) fn plain_and_striped(n: i64, side: i64, cycles: i64) -> (Tensor, Tensor) {
        let noise =
            Tensor::rand([n, 3, side / 4, side / 4], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let grain = Tensor::rand([n, 3, side, side], (Kind::Float, Device::Cpu)) * 0.2 - 0.1;
        let plain = noise.upsample_bilinear2d([side, side], false, None, None) * 0.5 + grain;
        let x = Tensor::arange(side, (Kind::Float, Device::Cpu)).view([1, 1, 1, side]);
        let stripe = (x * (2.0 * std::f64::consts::PI * cycles as f64 / side as f64)).cos() * 0.2;
        let striped = &plain + stripe;
        (plain, striped)
    }

    #[test]
    fn line_spectra_show_a_stripe_on_its_axis_at_its_frequency() {
        tch::manual_seed(11);
        let (side, cycles) = (32, 10);
        let (plain, striped) = plain_and_striped(4, side, cycles);
        let (p, s) = (line_spectra(&plain), line_spectra(&striped));
        assert_eq!(p.size(), vec![2, side / 2 + 1]);
        let at = |t: &Tensor, axis: i64, k: i64| t.double_value(&[axis, k]);
        // Across the rows the stripe's frequency gains far more power than it had...
        assert!(
            at(&s, 0, cycles) > 20.0 * at(&p, 0, cycles),
            "{} vs {}",
            at(&s, 0, cycles),
            at(&p, 0, cycles)
        );
        // ...and no other frequency gains (cos is exact on the grid), nor any down the
        // columns, where the stripe is constant.
        for k in (1..=side / 2).filter(|&k| k != cycles) {
            assert!(
                (at(&s, 0, k) - at(&p, 0, k)).abs() < 1e-4 * (1.0 + at(&p, 0, k)),
                "{k}"
            );
        }
        for k in 1..=side / 2 {
            assert!(
                (at(&s, 1, k) - at(&p, 1, k)).abs() < 1e-4 * (1.0 + at(&p, 1, k)),
                "{k}"
            );
        }
        // The mean is taken out: a constant image has no power at all.
        let flat = Tensor::ones([2, 3, side, side], (Kind::Float, Device::Cpu)) * 0.3;
        assert!(line_spectra(&flat).abs().max().double_value(&[]) < 1e-10);
    }

    #[test]
    fn the_stripe_is_the_peak_of_generated_over_rendered_power_in_the_fine_band() {
        tch::manual_seed(13);
        let (side, cycles) = (32, 10);
        let (plain, striped) = plain_and_striped(8, side, cycles);
        let spectra = |batches: &[&Tensor]| {
            let mut s = Spectra::default();
            for b in batches {
                s.add(b);
            }
            s
        };
        let rendered = spectra(&[&plain]);
        // The same images: every ratio is 1.
        let same = Stripe::peak(
            &spectra(&[&plain.narrow(0, 0, 4), &plain.narrow(0, 4, 4)]),
            &rendered,
        )
        .unwrap();
        assert!((same.ratio - 1.0).abs() < 1e-6, "{same:?}");
        // A vertical stripe: the peak is across, at its frequency, and far over the bar.
        let peak = Stripe::peak(&spectra(&[&striped]), &rendered).unwrap();
        assert_eq!(
            (peak.cycles, peak.axis),
            (cycles as usize, "across"),
            "{peak:?}"
        );
        assert!(peak.ratio > 20.0, "{peak:?}");
        // The same stripe turned a quarter: down.
        let turned = Stripe::peak(&spectra(&[&striped.transpose(2, 3)]), &rendered).unwrap();
        assert_eq!(
            (turned.cycles, turned.axis),
            (cycles as usize, "down"),
            "{turned:?}"
        );
        // A stripe coarser than the band (2 cycles on 32 pixels) is layout, not texture.
        let (_, coarse) = plain_and_striped(8, side, 1);
        let coarse = Stripe::peak(&spectra(&[&coarse]), &rendered).unwrap();
        assert!(coarse.ratio < 3.0, "{coarse:?}");
        // Nothing measured on a side: no stripe.
        assert!(Stripe::peak(&Spectra::default(), &rendered).is_none());
    }

    #[test]
    fn a_share_gap_s_standard_error_combines_both_sides() {
        let r = ClassRealism {
            generated_share: 0.02,
            rendered_share: 0.01,
            generated_share_se: 0.003,
            rendered_share_se: 0.002,
            ..Default::default()
        };
        // gap = g/r − 1; its error: √(se_g² + (g/r · se_r)²) / r = √(9 + 16)e-3 / 0.01.
        assert!((r.share_gap().unwrap() - 1.0).abs() < 1e-12);
        assert!((r.share_gap_se().unwrap() - 0.5).abs() < 1e-12);
        let never = ClassRealism::default();
        assert!(never.share_gap_se().is_none());
    }

    #[test]
    fn misses_flag_share_and_presence_gaps() {
        let mut realism = BTreeMap::new();
        let close = ClassRealism {
            generated_share: 0.11,
            rendered_share: 0.10,
            generated_presence: 0.9,
            rendered_presence: 0.95,
            ..Default::default()
        };
        let far = ClassRealism {
            generated_share: 0.05,
            rendered_share: 0.10,
            generated_presence: 0.5,
            rendered_presence: 0.9,
            ..Default::default()
        };
        realism.insert("tree".to_string(), close);
        realism.insert("dome".to_string(), far);
        let misses = realism_misses(&realism);
        assert_eq!(misses.len(), 2, "{misses:?}");
        assert!(misses.iter().all(|m| m.starts_with("dome")));
        // dome: share 50% off (2.0 bars), presence 40 points off (4.0 bars).
        let (score, class) = realism_score(&realism).unwrap();
        assert_eq!(class, "dome");
        assert!((score - 4.0).abs() < 1e-9, "{score}");
        realism.remove("dome");
        // tree: share 10% off (0.4 bars), presence 5 points off (0.5 bars).
        let (score, class) = realism_score(&realism).unwrap();
        assert_eq!(class, "tree");
        assert!((score - 0.5).abs() < 1e-9, "{score}");
        assert!(realism_score(&BTreeMap::new()).is_none());
    }

    #[test]
    fn an_offset_split_takes_the_next_samples_and_scenes() {
        tch::manual_seed(3);
        let generator = ProgGan::new(tiny_settings().generator_config(), Device::Cpu);
        let segmenter = RedSegmenter::new();
        let dir = std::env::temp_dir().join(format!("ganpaint-eval-{}", std::process::id()));
        let run = |first_sample, samples| {
            EvalDemo {
                generator: &generator,
                segmenter: &segmenter,
                first_sample,
                samples,
                heldout: 2,
                out_dir: &dir,
                size: None,
            }
            .run()
            .unwrap()
            .realism
        };
        let (head, tail, both) = (run(0, 3), run(3, 3), run(0, 6));
        // Shares are means over images, so the two halves average to the whole.
        for class in ["dark", "bright"] {
            let (h, t, b) = (&head[class], &tail[class], &both[class]);
            assert!((h.generated_share + t.generated_share - 2.0 * b.generated_share).abs() < 1e-9);
            assert!((h.rendered_share + t.rendered_share - 2.0 * b.rendered_share).abs() < 1e-9);
            assert!(
                (h.generated_presence + t.generated_presence - 2.0 * b.generated_presence).abs()
                    < 1e-9
            );
        }
        // And the halves are different samples and scenes.
        assert_ne!(
            head["bright"].generated_share,
            tail["bright"].generated_share
        );
        assert_ne!(head["bright"].rendered_share, tail["bright"].rendered_share);

        // A cached rendered half gives the same figures for another generator, and a cache
        // of another split is not used.
        let other = ProgGan::new(tiny_settings().generator_config(), Device::Cpu);
        let eval = |generator, first_sample, cache: &mut Option<RenderedSide>| {
            EvalDemo {
                generator,
                segmenter: &segmenter,
                first_sample,
                samples: 3,
                heldout: 0,
                out_dir: &dir,
                size: None,
            }
            .run_cached(cache)
            .unwrap()
            .realism
        };
        let mut cache = None;
        eval(&generator, 3, &mut cache);
        let cached = eval(&other, 3, &mut cache);
        let fresh = eval(&other, 3, &mut None);
        assert_eq!(
            format!("{:?}", cached["bright"]),
            format!("{:?}", fresh["bright"])
        );
        assert_ne!(
            cached["bright"].generated_share,
            tail["bright"].generated_share
        );
        let moved = eval(&other, 0, &mut cache);
        assert_eq!(
            moved["bright"].rendered_share,
            head["bright"].rendered_share
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_generator_smaller_than_any_scene_is_refused() {
        tch::manual_seed(7);
        let generator = ProgGan::new(
            crate::model::ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 16, 8],
            },
            Device::Cpu,
        );
        let segmenter = RedSegmenter::new();
        let dir = std::env::temp_dir().join(format!("ganpaint-eval-small-{}", std::process::id()));
        let err = EvalDemo {
            generator: &generator,
            segmenter: &segmenter,
            first_sample: 0,
            samples: 2,
            heldout: 2,
            out_dir: &dir,
            size: None,
        }
        .run()
        .unwrap_err();
        assert!(err.to_string().contains("16² images"), "{err}");

        // Measured at a scene size, it runs; at a size no scene comes in, the flag is named.
        let at = |size| EvalDemo {
            generator: &generator,
            segmenter: &segmenter,
            first_sample: 0,
            samples: 2,
            heldout: 0,
            out_dir: &dir,
            size: Some(size),
        };
        let report = at(32).run().unwrap();
        assert!(report.realism["bright"].generated_share > 0.0);
        let err = at(512).run().unwrap_err();
        assert!(err.to_string().contains("--size 512"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_generator_measured_at_another_size_is_resized_and_the_scenes_rendered_there() {
        tch::manual_seed(5);
        let generator = ProgGan::new(tiny_settings().generator_config(), Device::Cpu);
        let segmenter = RedSegmenter::new();
        let dir = std::env::temp_dir().join(format!("ganpaint-eval-size-{}", std::process::id()));
        let at = |size| {
            EvalDemo {
                generator: &generator,
                segmenter: &segmenter,
                first_sample: 0,
                samples: 4,
                heldout: 0,
                out_dir: &dir,
                size,
            }
            .run()
            .unwrap()
        };
        let (own, up) = (at(None), at(Some(64)));
        // The same figures as G's images upsampled by hand and segmented at 64².
        let _guard = tch::no_grad_guard();
        let z = generator.z_for_ids(&[0, 1, 2, 3]).unwrap();
        let images = generator.forward(&z).unwrap();
        let by_hand = resized(&images, 64);
        assert_eq!(by_hand.size(), [4, 3, 64, 64]);
        let mut stats = ShareStats::new(segmenter.labels().len());
        stats.add(&segmenter.segment(&by_hand).unwrap());
        let bright = segmenter
            .labels()
            .iter()
            .position(|l| l == "bright")
            .unwrap();
        assert!((up.realism["bright"].generated_share - stats.share(bright)).abs() < 1e-9);
        assert!((up.realism["bright"].generated_presence - stats.presence(bright)).abs() < 1e-9);
        // The scenes are rendered at 64², as the same seeds render there.
        let seeds: Vec<u64> = (0..4)
            .map(|i| heldout_seed(REALISM_SCENES_FROM + i))
            .collect();
        let scenes = render_batch(&seeds, 64).images;
        let mut rendered = ShareStats::new(segmenter.labels().len());
        rendered.add(&segmenter.segment(&scenes).unwrap());
        assert!((up.realism["bright"].rendered_share - rendered.share(bright)).abs() < 1e-9);
        let mut sharpness = Sharpness::default();
        sharpness.add(&scenes);
        assert!((up.rendered_sharpness - sharpness.mean()).abs() < 1e-9);
        assert_eq!((up.size, own.size), (64, 32));
        // G's images upsampled are softer than G's own.
        assert!(up.generated_sharpness < own.generated_sharpness);
        // Downsizing averages blocks; G's own side is left as it is.
        let pooled = images.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        assert!(resized(&images, 16).allclose(&pooled, 1e-6, 1e-6, false));
        assert!(resized(&images, 32).equal(&images));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
