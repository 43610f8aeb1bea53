//! A label teacher for the blocks a run grew: what each pixel of a scene *is* must not
//! change when the picture gets finer.
//!
//! A grown run holds its old layers fixed, so the layout of each scene (where the building,
//! the dome and the path are) is the one the smaller generator drew, and that generator
//! met the realism bars. The new blocks only paint it at a finer scale, and the adversarial
//! loss alone lets them paint it wrongly: measured on the 256² demo, a fifth to a third of
//! what the 64² generator drew as dome, roof or window came out as brick, because the new
//! blocks laid wall stripes over everything built.
//!
//! The teacher is that smaller generator and a segmenter. For the same latents it draws the
//! teacher's scenes, upsamples them to the segmenter's size and labels them (no gradients);
//! G's images, average-pooled to that size, are segmented with gradients flowing back into
//! G, and the loss is the cross-entropy of G's segmentation against the teacher's labels,
//! balanced over classes: the mean, over the classes the teacher drew, of each class's mean
//! over its pixels. Unbalanced, a dome's 2% of the pixels would weigh 2% of the loss,
//! and the sky's boundary with the grass more than every dome.
//! Pixels the segmenter is unsure of in the teacher's scene (top probability under
//! [`MIN_CONFIDENCE`] by default) are left out. The segmenter's own weights never move.
//!
//! **Shares over images.** The teacher fixes what each pixel is, so it keeps whatever the
//! smaller generator got wrong about how a class spreads over images: measured on the 256²
//! demo with the 256² segmenter, the 64² generator's scenes hold a cloud in 98.5% of
//! images (the renderer: 86.7%), a dome in 92% (72.6%), a roof in 96% (75.5%). Those are
//! mostly small patches, which the finer blocks can paint as what surrounds them. With a
//! [`ShareReference`] (each class's share of each of a set of rendered scenes, as the same
//! segmenter sees them) the teacher also gives [`TeacherLosses::shares`]: per class, the
//! 1-D optimal-transport distance between the shares of G's images in the batch and those
//! of the rendered scenes, as a batch can estimate it (G's sorted shares against the
//! reference's quantiles at the matching ranks), relative to the class's mean share,
//! averaged over classes. It moves G's smallest shares towards the rendered scenes'
//! smallest, near none where the renderer often draws none (presence), and the mean with
//! them. Only the images the teacher teaches (`--teacher-images`) are compared. Shares
//! are soft (mean probabilities) on both sides, so they compare. With a share
//! temperature T under 1 (`--share-temperature`, [`LabelTeacher::with_share_temperature`])
//! the probabilities are the softmax of the scores divided by T, on both sides: closer to
//! counting each pixel for its most likely class, as `eval-demo` counts shares. At T = 1 a
//! pixel the segmenter is unsure of counts partly for each class it might be, and G's
//! thin classes hold more such pixels than rendered scenes do: on the 256² demo, G's roof
//! share was 27% short of the rendered one counted soft and 35% short counted by most
//! likely class, while the rendered scenes' two counts differ by a tenth.
//!
//! **Presence** ([`TeacherLosses::presence`], `--presence-weight`). `eval-demo` counts a
//! class present in an image from [`PRESENCE_MIN_SHARE`] of its pixels, labelled by their
//! most likely class. The share loss cannot see that: a small cloud of half a percent
//! differs from none by a few thousandths of soft share, next to a class's mean of several
//! hundredths. The presence loss compares each image's *presence score* per class
//! ([`presence_scores`]): the mean, over the class's k most decided pixels (k the pixel
//! count of [`PRESENCE_MIN_SHARE`]), of the pixel's margin, its class's score less the best
//! other class's. It is positive about where `eval-demo` calls the class present, and a
//! margin, not a probability, so a small cloud the segmenter is sure of still has a
//! gradient on each of its pixels (a probability there is saturated: its gradient is near
//! 0). G's scores are held to the rendered scenes' at the same ranks, as the share loss
//! does; a target beyond ±[`PRESENCE_CAP`] counts as that cap, passed freely (a rendered
//! scene's cloud does not need to be surer than that, nor its absence). With
//! `--presence-classes` it holds only the classes named
//! ([`LabelTeacher::with_presence_classes`]).
//!
//! **Small patches do not teach** (with a reference and a minimum patch, `--teacher-min-patch
//! F`). Where the smaller generator's scene holds less of a class than F times the class's
//! mean share in the rendered scenes, those pixels do not teach. The balanced loss weighs
//! every class the teacher drew alike, so a few pixels of blurred horizon that the segmenter
//! calls cloud in the upsampled teacher scene weighed as much as a whole building (on the
//! 256² demo, the least cloudy images of the teacher-trained G held 0.3% to 2% of "cloud",
//! mostly pale halos where trees and buildings meet the sky). The share loss then decides
//! how much of such a class G draws. (There, leaving them out did not by itself remove the
//! halos in 700 steps: see `models/README.md`.)
//!
//! **Labelled at a smaller size** ([`LabelTeacher::labelling_at`], `--teacher-label-size`,
//! `--teacher-label-segmenter`). The halos are the upsampling's: the same 64² scenes,
//! segmented at 64² by the same segmenter, hold a cloud in 90% of images (the renderer's
//! scenes: 85%), against 95% upsampled to 128² and 98% to 256² (`ganpaint eval-demo
//! --size` measures a generator at another size). Labelled at a smaller side, with the
//! scores resized to the teacher's, a scene is labelled closer to how the smaller
//! generator drew it, and where G paints a halo that those labels call sky, the label
//! loss pulls against it. A segmenter at its best at that side can label (small classes
//! are what a segmenter trained at 256² reads worst at 64²).

use std::path::Path;

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use crate::model::ProgGan;
use crate::segment::Segmenter;

/// By default, teacher pixels labelled with less than this probability do not teach.
pub const MIN_CONFIDENCE: f64 = 0.5;

/// The margin beyond which a rendered scene's presence score is held as "present" (or,
/// negated, "absent") without pulling G's further (see the module's text).
pub const PRESENCE_CAP: f64 = 2.0;

pub use super::eval::PRESENCE_MIN_SHARE;

/// Each class's share of each of a set of rendered scenes, sorted per class: the
/// distribution G's shares are held to (see the module's text). The presence reference
/// is one too, made of presence scores ([`presence_scores`]); its mean goes unused.
pub struct ShareReference {
    /// `[scenes, C]`, each column ascending.
    sorted: Tensor,
    /// `[C]`: each class's mean share (the loss is relative to it, at least [`MIN_SCALE`]).
    mean: Tensor,
}

/// The smallest share a class's share differences are taken relative to: a class the
/// renderer (almost) never draws must not weigh a hundred times the others.
const MIN_SCALE: f64 = 1e-2;

impl ShareReference {
    /// From soft shares `[scenes, C]`.
    pub fn from_shares(shares: &Tensor) -> anyhow::Result<Self> {
        let shares = shares.to_kind(Kind::Float).detach();
        if shares.dim() != 2 || shares.size()[0] < 1 {
            anyhow::bail!(
                "share reference: want [scenes, classes], got {:?}",
                shares.size()
            );
        }
        let mean = shares.mean_dim([0i64].as_slice(), false, Kind::Float);
        let (sorted, _) = shares.sort(0, false);
        Ok(ShareReference { sorted, mean })
    }

    /// The reference's shares at the ranks of a batch of `n`: row i is each class's
    /// quantile `(i + 2/3) / (n + 1/3)`, about the median of the i-th smallest of n draws
    /// (Hyndman and Fan's type 8). An L1 pull of G's i-th smallest share to a quantile
    /// rests where that order statistic's median meets it, so with these ranks G rests at
    /// the reference's distribution even for a small batch (with `(i + 0.5) / n`, four
    /// images a batch would rest with a class missing from 16% of G's images where the
    /// reference has it in all).
    fn at_ranks(&self, n: i64) -> Tensor {
        let scenes = self.sorted.size()[0];
        let rows: Vec<i64> = (0..n)
            .map(|i| {
                let q = (i as f64 + 2.0 / 3.0) / (n as f64 + 1.0 / 3.0);
                ((q * scenes as f64).floor() as i64).clamp(0, scenes - 1)
            })
            .collect();
        self.sorted.index_select(
            0,
            &Tensor::from_slice(&rows).to_device(self.sorted.device()),
        )
    }

    /// The same reference, of the classes at `columns` (indices, in that order) only.
    pub fn columns(&self, columns: &Tensor) -> ShareReference {
        let columns = columns.to_device(self.sorted.device());
        ShareReference {
            sorted: self.sorted.index_select(1, &columns),
            mean: self.mean.index_select(0, &columns),
        }
    }

    /// The distance of G's soft shares `[n, C]` from the reference (see the module's text).
    pub fn loss(&self, shares: &Tensor) -> Tensor {
        let n = shares.size()[0];
        let (sorted, _) = shares.sort(0, false);
        let target = self.at_ranks(n).to_device(shares.device());
        let scale = self.mean.clamp_min(MIN_SCALE).to_device(shares.device());
        ((sorted - target).abs() / scale).mean(Kind::Float)
    }

    /// The presence loss of G's presence scores `[n, C]` ([`presence_scores`]) against a
    /// reference made of rendered scenes' scores: at the same ranks as [`Self::loss`], the
    /// distance to the reference's score clamped to ±[`PRESENCE_CAP`], none past a cap on
    /// its far side (see the module's text).
    pub fn presence_loss(&self, scores: &Tensor) -> Tensor {
        let n = scores.size()[0];
        let (sorted, _) = scores.sort(0, false);
        let target = self.at_ranks(n).to_device(scores.device());
        let clamped = target.clamp(-PRESENCE_CAP, PRESENCE_CAP);
        let gap = &sorted - &clamped;
        let absent = target.le(-PRESENCE_CAP);
        let present = target.ge(PRESENCE_CAP);
        gap.relu()
            .where_self(&absent, &(-&gap).relu().where_self(&present, &gap.abs()))
            .mean(Kind::Float)
    }
}

/// The teacher's losses for one batch of G's images.
pub struct TeacherLosses {
    /// The label loss (0 when not asked for).
    pub labels: Tensor,
    /// The share loss, when the teacher holds a [`ShareReference`] and it was asked for.
    pub shares: Option<Tensor>,
    /// The presence loss, when the teacher holds a reference of presence scores
    /// ([`LabelTeacher::with_presence_reference`]) and it was asked for.
    pub presence: Option<Tensor>,
}

/// Which of the teacher's losses a step wants.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted {
    pub labels: bool,
    pub shares: bool,
    pub presence: bool,
}

pub struct LabelTeacher {
    generator: ProgGan,
    segmenter: Box<dyn Segmenter>,
    /// The side both images are segmented at.
    size: i64,
    /// Teacher pixels labelled with less than this probability do not teach.
    min_confidence: f64,
    /// How many images of each batch it teaches (the first ones): segmenting with
    /// gradients at 256² costs more than the rest of a step.
    images: i64,
    /// The rendered scenes' shares, for the share loss and the minimum patch.
    reference: Option<ShareReference>,
    /// The rendered scenes' presence scores, for the presence loss.
    presence: Option<ShareReference>,
    /// The classes the presence loss holds (indices into the segmenter's labels, those
    /// of `presence`'s columns); `None`: every class.
    presence_classes: Option<Tensor>,
    /// A class whose teacher share in an image is under this times its mean rendered
    /// share does not teach in that image (0: every patch teaches).
    min_patch: f64,
    /// The side the teacher's scenes are labelled at (their scores then resized to `size`).
    label_size: i64,
    /// What labels them, when not `segmenter`.
    labeller: Option<Box<dyn Segmenter>>,
    /// The segmenter's scores are divided by this before the softmax of a soft share
    /// ([`soft_shares`]), on both sides of the share loss; 1: its own probabilities.
    share_temperature: f64,
}

impl LabelTeacher {
    /// The teacher `generator` and `segmenter` (paths for messages), segmenting at `size`
    /// the first `images` images of each batch.
    pub fn load(
        generator: &Path,
        segmenter: &Path,
        size: i64,
        images: i64,
        device: Device,
    ) -> anyhow::Result<Self> {
        let g = ProgGan::load(generator, device)
            .with_context(|| format!("--teacher {}", generator.display()))?;
        let s = crate::segment::load(segmenter, None, device)
            .with_context(|| format!("--teacher-segmenter {}", segmenter.display()))?;
        Self::new(g, s, size, MIN_CONFIDENCE)?.teaching(images)
    }

    /// The same teacher, teaching the first `images` images of each batch.
    pub fn teaching(self, images: i64) -> anyhow::Result<Self> {
        if images < 1 {
            anyhow::bail!("--teacher-images must be at least 1, got {images}");
        }
        Ok(LabelTeacher { images, ..self })
    }

    pub fn new(
        generator: ProgGan,
        segmenter: Box<dyn Segmenter>,
        size: i64,
        min_confidence: f64,
    ) -> anyhow::Result<Self> {
        if size < 8 {
            anyhow::bail!("--teacher-size must be at least 8, got {size}");
        }
        Ok(LabelTeacher {
            generator,
            segmenter,
            size,
            min_confidence,
            images: i64::MAX,
            reference: None,
            presence: None,
            presence_classes: None,
            min_patch: 0.0,
            label_size: size,
            labeller: None,
            share_temperature: 1.0,
        })
    }

    /// Each class's soft share of each of `scenes` (`[N, 3, R, R]` in [-1, 1]) as the
    /// teacher's segmenter sees them at its size: `[N, C]`, what a [`ShareReference`] is
    /// made of.
    pub fn shares_of(&self, scenes: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.both_shares_of(scenes)?.0)
    }

    /// Each class's soft share and presence score ([`presence_scores`]) in each of
    /// `scenes`, as [`Self::shares_of`]: what the share and presence references are made
    /// of.
    pub fn both_shares_of(&self, scenes: &Tensor) -> anyhow::Result<(Tensor, Tensor)> {
        tch::no_grad(|| {
            let (mut soft, mut presence) = (Vec::new(), Vec::new());
            for chunk in scenes.split(16, 0) {
                let images = self.resize(&chunk.to_kind(Kind::Float)).clamp(-1.0, 1.0);
                let scores = self.segmenter.scores(&images)?;
                soft.push(soft_shares(&scores, self.share_temperature));
                presence.push(presence_scores(&scores));
            }
            Ok((Tensor::cat(&soft, 0), Tensor::cat(&presence, 0)))
        })
    }

    /// The same teacher, its soft shares counted from the segmenter's scores divided by
    /// `temperature` ([`soft_shares`]); set it before the references are counted, since
    /// both sides of the share loss must count alike. Under 1 the shares come closer to the
    /// pixel counts by most likely class that `eval-demo` and `pick` measure: a pixel
    /// the segmenter is unsure of weighs less in every class it might be.
    pub fn with_share_temperature(self, temperature: f64) -> anyhow::Result<Self> {
        check_share_temperature(temperature)?;
        if self.reference.is_some() {
            anyhow::bail!(
                "the share temperature must be set before the share reference is counted"
            );
        }
        Ok(LabelTeacher {
            share_temperature: temperature,
            ..self
        })
    }

    /// The same teacher, holding G's shares to `reference` (the share loss).
    pub fn with_reference(self, reference: ShareReference) -> Self {
        LabelTeacher {
            reference: Some(reference),
            ..self
        }
    }

    /// The same teacher, holding G's presence scores to `reference`, made of rendered
    /// scenes' scores (the presence loss).
    pub fn with_presence_reference(self, reference: ShareReference) -> Self {
        LabelTeacher {
            presence: Some(reference),
            presence_classes: None,
            ..self
        }
    }

    /// The same teacher, its presence loss holding only the classes named in `classes`
    /// (the segmenter's labels; empty: every class). A class whose presence already
    /// matches the rendered scenes' is then left to the share loss and the labels: the
    /// presence loss's pull towards "absent" on an image's faintest patches takes a
    /// little of every class it holds. Needs the presence reference.
    pub fn with_presence_classes(self, classes: &[String]) -> anyhow::Result<Self> {
        if classes.is_empty() {
            return Ok(self);
        }
        let Some(reference) = &self.presence else {
            anyhow::bail!("--presence-classes chooses what the presence loss holds: the teacher has no presence reference (give --presence-weight)");
        };
        let labels = self.segmenter.labels();
        let mut columns = Vec::with_capacity(classes.len());
        for class in classes {
            let Some(i) = labels.iter().position(|l| l == class) else {
                anyhow::bail!(
                    "--presence-classes: the teacher's segmenter has no class {class:?} (it has {})",
                    labels.join(", ")
                );
            };
            if columns.contains(&(i as i64)) {
                anyhow::bail!("--presence-classes names {class:?} twice");
            }
            columns.push(i as i64);
        }
        let columns = Tensor::from_slice(&columns);
        Ok(LabelTeacher {
            presence: Some(reference.columns(&columns)),
            presence_classes: Some(columns),
            ..self
        })
    }

    /// The same teacher, leaving out the patches of each image that hold less of a class
    /// than `fraction` times the class's mean share in the reference (see the module's
    /// text). Needs the reference.
    pub fn with_min_patch(self, fraction: f64) -> anyhow::Result<Self> {
        check_min_patch(fraction)?;
        if fraction > 0.0 && self.reference.is_none() {
            anyhow::bail!("--teacher-min-patch compares with the rendered scenes' shares: the teacher has none");
        }
        Ok(LabelTeacher {
            min_patch: fraction,
            ..self
        })
    }

    /// The same teacher, labelling its scenes at `size`² (8 up to the side G's images are
    /// segmented at), by `labeller` when given (it must name the segmenter's classes), and
    /// resizing the scores to the teacher's side (bilinear) before they become labels. At
    /// the smaller generator's own size, its scenes are labelled as it drew them rather
    /// than as their upsampled blur (see the module's text). A minimum patch compares
    /// these labels' shares with the reference's, which `segmenter` counts at the
    /// teacher's side.
    pub fn labelling_at(
        self,
        size: i64,
        labeller: Option<Box<dyn Segmenter>>,
    ) -> anyhow::Result<Self> {
        if !(8..=self.size).contains(&size) {
            anyhow::bail!(
                "--teacher-label-size must be 8 to --teacher-size ({}), got {size}",
                self.size
            );
        }
        if let Some(labeller) = &labeller {
            if labeller.labels() != self.segmenter.labels() {
                anyhow::bail!(
                    "--teacher-label-segmenter names the classes {:?}; --teacher-segmenter names {:?}",
                    labeller.labels(),
                    self.segmenter.labels()
                );
            }
        }
        Ok(LabelTeacher {
            label_size: size,
            labeller,
            ..self
        })
    }

    /// Checks that the teacher can teach a generator with latents of `z_dim` drawing
    /// `resolution`² images: same latent size, and no finer than G (it teaches the layout,
    /// not detail G cannot draw) nor than the segmenter's size.
    pub fn check(&self, z_dim: i64, resolution: i64) -> anyhow::Result<()> {
        let teacher = self.generator.config().z_dim;
        if teacher != z_dim {
            anyhow::bail!("--teacher takes {teacher}-d latents; this run's G takes {z_dim}-d");
        }
        if self.size > resolution {
            anyhow::bail!(
                "--teacher-size {} is finer than G's {resolution}x{resolution} images",
                self.size
            );
        }
        Ok(())
    }

    /// The teacher's labels `[N, S, S]` (int64) for latents `z`, and where they teach
    /// (`[N, S, S]` f32, 0 or 1): sure enough, and not in a patch under the minimum.
    pub fn labels(&self, z: &Tensor) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let images = self
                .generator
                .forward(&z.to_kind(Kind::Float))
                .expect("the teacher draws the run's latents")
                .to_kind(Kind::Float);
            let images = super::eval::resized(&images, self.label_size).clamp(-1.0, 1.0);
            let labeller = self.labeller.as_deref().unwrap_or(self.segmenter.as_ref());
            let scores = labeller
                .scores(&images)
                .expect("the segmenter labels the teacher's scenes");
            let probabilities = super::eval::resized(&scores, self.size).softmax(1, Kind::Float);
            let (top, labels) = probabilities.max_dim(1, false);
            let mut teach = top.ge(self.min_confidence).to_kind(Kind::Float);
            if let Some(reference) = self.reference.as_ref().filter(|_| self.min_patch > 0.0) {
                // [N, C]: each class's share of each teacher scene, against its threshold.
                let classes = probabilities.size()[1];
                let shares = labels.one_hot(classes).to_kind(Kind::Float).mean_dim(
                    [1i64, 2].as_slice(),
                    false,
                    Kind::Float,
                );
                let threshold = reference.mean.to_device(shares.device()) * self.min_patch;
                let kept = shares
                    .ge_tensor(&threshold.unsqueeze(0))
                    .to_kind(Kind::Float);
                // Each pixel's class's verdict in its image.
                let n = labels.size()[0];
                let per_pixel = kept
                    .gather(1, &labels.view([n, -1]), false)
                    .view_as(&labels);
                teach *= per_pixel;
            }
            (labels, teach)
        })
    }

    /// The loss of G's `images` (`[N, 3, R, R]`, any float kind) against the teacher's labels
    /// for the same latents `z`: the cross-entropy over the pixels that teach, in the first
    /// images it teaches, averaged per class and then over the classes that teach.
    /// Differentiable in `images`.
    pub fn loss(&self, z: &Tensor, images: &Tensor) -> Tensor {
        let labels_only = Wanted {
            labels: true,
            ..Wanted::default()
        };
        self.losses(z, images, labels_only).labels
    }

    /// The label loss (as [`Self::loss`]), the share loss and the presence loss (each when
    /// wanted and, for the last two, when the teacher holds its reference) of the first
    /// images it teaches, segmented once.
    pub fn losses(&self, z: &Tensor, images: &Tensor, wanted: Wanted) -> TeacherLosses {
        let n = images.size()[0].min(self.images);
        let (z, images) = (z.narrow(0, 0, n), images.narrow(0, 0, n));
        let images = self.resize(&images.to_kind(Kind::Float)).clamp(-1.0, 1.0);
        let logits = self
            .segmenter
            .differentiable_scores(&images)
            .expect("the segmenter labels G's images");
        let shares = self
            .reference
            .as_ref()
            .filter(|_| wanted.shares)
            .map(|reference| reference.loss(&soft_shares(&logits, self.share_temperature)));
        let presence = self
            .presence
            .as_ref()
            .filter(|_| wanted.presence)
            .map(|reference| {
                let scores = presence_scores(&logits);
                let scores = match &self.presence_classes {
                    Some(columns) => scores.index_select(1, &columns.to_device(scores.device())),
                    None => scores,
                };
                reference.presence_loss(&scores)
            });
        let labels = if wanted.labels {
            self.label_loss(&z, &logits)
        } else {
            Tensor::zeros([], (Kind::Float, logits.device()))
        };
        TeacherLosses {
            labels,
            shares,
            presence,
        }
    }

    /// The balanced cross-entropy of `logits` (G's images segmented) against the teacher's
    /// labels for `z`.
    fn label_loss(&self, z: &Tensor, logits: &Tensor) -> Tensor {
        let (labels, sure) = self.labels(z);
        let per_pixel = logits
            .log_softmax(1, Kind::Float)
            .gather(1, &labels.unsqueeze(1), false)
            .squeeze_dim(1)
            .neg();
        // [C, pixels]: which teaching pixels each class has.
        let classes = logits.size()[1];
        let members = labels
            .flatten(0, -1)
            .one_hot(classes)
            .to_kind(Kind::Float)
            .tr()
            * sure.flatten(0, -1);
        let counts = members.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let per_class = members.matmul(&per_pixel.flatten(0, -1)) / counts.clamp_min(1.0);
        let taught = counts.gt(0.0).to_kind(Kind::Float);
        (per_class * &taught).sum(Kind::Float) / taught.sum(Kind::Float).clamp_min(1.0)
    }

    /// `images` at the teacher's side.
    fn resize(&self, images: &Tensor) -> Tensor {
        super::eval::resized(images, self.size)
    }
}

/// Checks a minimum patch (`--teacher-min-patch`): a finite fraction, 0 or more.
pub fn check_min_patch(fraction: f64) -> anyhow::Result<()> {
    if !(fraction.is_finite() && fraction >= 0.0) {
        anyhow::bail!("--teacher-min-patch must be 0 or more, got {fraction}");
    }
    Ok(())
}

/// Checks a share temperature (`--share-temperature`): a finite number above 0.
pub fn check_share_temperature(temperature: f64) -> anyhow::Result<()> {
    if !(temperature.is_finite() && temperature > 0.0) {
        anyhow::bail!("--share-temperature must be a number above 0, got {temperature}");
    }
    Ok(())
}

/// Each class's soft share of each image: segmenter scores `[N, C, h, w]` → `[N, C]`, the
/// mean over the pixels of the softmax of the scores divided by `temperature`. At 1, the
/// segmenter's probabilities; towards 0, each pixel counts for its most likely class
/// alone, as `eval-demo` counts a share.
fn soft_shares(logits: &Tensor, temperature: f64) -> Tensor {
    (logits.to_kind(Kind::Float) / temperature)
        .softmax(1, Kind::Float)
        .mean_dim([2i64, 3].as_slice(), false, Kind::Float)
}

/// Each class's presence score in each image: scores `[N, C, h, w]` → `[N, C]`, the mean
/// of the class's margin (its score less the best other class's: positive where the
/// class wins the pixel) over its k highest-margin pixels, k the pixel count of
/// [`PRESENCE_MIN_SHARE`] (at least 1).
pub fn presence_scores(logits: &Tensor) -> Tensor {
    let (n, c, h, w) = logits.size4().expect("segmenter scores [N, C, h, w]");
    let logits = logits.to_kind(Kind::Float);
    let (top, which) = logits.topk(2.min(c), 1, true, true);
    let (first, second) = (top.narrow(1, 0, 1), top.narrow(1, (c > 1) as i64, 1));
    let classes = Tensor::arange(c, (Kind::Int64, logits.device())).view([1, c, 1, 1]);
    let best_other = second.where_self(&which.narrow(1, 0, 1).eq_tensor(&classes), &first);
    let margins = (logits - best_other).view([n, c, h * w]);
    let k = ((PRESENCE_MIN_SHARE * (h * w) as f64).ceil() as i64).clamp(1, h * w);
    margins
        .topk(k, 2, true, false)
        .0
        .mean_dim([2i64].as_slice(), false, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProgGanConfig;
    use crate::segment::demo::DemoSegmenter;
    use std::collections::BTreeMap;

    fn tiny(channels: &[i64]) -> ProgGan {
        tch::manual_seed(3);
        ProgGan::new(
            ProgGanConfig {
                z_dim: 8,
                channels: channels.to_vec(),
            },
            Device::Cpu,
        )
    }

    /// A tiny teacher whose segmenter is untrained, so unsure everywhere: at 16², with no
    /// confidence needed, every pixel teaches.
    fn untrained_teacher() -> LabelTeacher {
        LabelTeacher::new(
            tiny(&[8, 8, 8]),
            Box::new(DemoSegmenter::new(Device::Cpu)),
            16,
            0.0,
        )
        .unwrap()
    }

    #[test]
    fn the_teacher_agrees_with_itself_and_teaches_g_through_its_images() {
        // An untrained segmenter is unsure everywhere: every pixel teaches.
        let teacher = untrained_teacher();
        teacher.check(8, 16).unwrap();
        let z = Tensor::randn([2, 8], (Kind::Float, Device::Cpu));
        let (labels, sure) = teacher.labels(&z);
        assert_eq!(labels.size(), [2, 16, 16]);
        assert_eq!(sure.size(), [2, 16, 16]);
        // G's images are the teacher's own, upsampled: where the segmenter is sure, the
        // loss is what it pays for its own labels, the smallest the images allow.
        let own = teacher.generator.forward(&z).unwrap().detach();
        let images = own
            .upsample_nearest2d([32, 32], None, None)
            .set_requires_grad(true);
        let loss = teacher.loss(&z, &images);
        assert!(loss.double_value(&[]).is_finite());
        loss.backward();
        let grad = images.grad();
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        // Segmented like the teacher's own scene, each pixel pays −log of its top
        // probability; averaged per class, then over the classes.
        let own_loss = tch::no_grad(|| teacher.loss(&z, &images)).double_value(&[]);
        let (top, label) = tch::no_grad(|| {
            let scene = own.clamp(-1.0, 1.0);
            let p = teacher
                .segmenter
                .scores(&scene)
                .unwrap()
                .softmax(1, Kind::Float);
            let (top, label) = p.max_dim(1, false);
            let top = Vec::<f32>::try_from(top.log().neg().flatten(0, -1)).unwrap();
            let label = Vec::<i64>::try_from(label.flatten(0, -1)).unwrap();
            (top, label)
        });
        let mut by_class: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for (&paid, &class) in top.iter().zip(&label) {
            let entry = by_class.entry(class).or_default();
            entry.0 += f64::from(paid);
            entry.1 += 1.0;
        }
        let want = by_class.values().map(|(sum, n)| sum / n).sum::<f64>() / by_class.len() as f64;
        assert!((own_loss - want).abs() < 1e-5, "own {own_loss} want {want}");
        let noise = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        assert_eq!(sure.sum(Kind::Float).double_value(&[]), 2.0 * 256.0);
        // A teacher that is never sure enough teaches nothing.
        let unsure = LabelTeacher {
            min_confidence: 1.01,
            ..teacher
        };
        assert_eq!(unsure.labels(&z).1.sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(unsure.loss(&z, &noise).double_value(&[]), 0.0);
        // Teaching only the first image of each batch: the second one has no say.
        let first = LabelTeacher {
            min_confidence: 0.0,
            ..unsure
        }
        .teaching(1)
        .unwrap();
        let mixed = Tensor::cat(&[images.narrow(0, 0, 1).detach(), noise.narrow(0, 1, 1)], 0);
        let alone = first.loss(&z, &mixed).double_value(&[]);
        let both = first.loss(&z, &images.detach()).double_value(&[]);
        assert!((alone - both).abs() < 1e-6, "{alone} vs {both}");
        assert!(first.teaching(0).is_err());
    }

    #[test]
    fn patches_under_the_minimum_do_not_teach() {
        // (Untrained teachers differ: the labels come from one, made once.)
        let teacher = untrained_teacher();
        let z = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
        let (labels, all) = teacher.labels(&z);
        assert_eq!(all.sum(Kind::Float).double_value(&[]), 3.0 * 256.0);
        // Each class's share of each teacher scene, and a reference whose mean shares are
        // the scenes' own: at a minimum of 1, a class teaches in an image only where it
        // covers at least its mean.
        let classes = teacher.segmenter.labels().len() as i64;
        let shares = labels.one_hot(classes).to_kind(Kind::Float).mean_dim(
            [1i64, 2].as_slice(),
            false,
            Kind::Float,
        );
        let reference = || ShareReference::from_shares(&shares).unwrap();
        assert!(
            untrained_teacher().with_min_patch(1.0).is_err(),
            "no reference"
        );
        let other = untrained_teacher().with_reference(reference());
        assert!(other.with_min_patch(-1.0).is_err());
        let taught = teacher
            .with_reference(reference())
            .with_min_patch(1.0)
            .unwrap();
        let (same, teach) = taught.labels(&z);
        assert!(same.equal(&labels));
        let mean =
            Vec::<f32>::try_from(shares.mean_dim([0i64].as_slice(), false, Kind::Float)).unwrap();
        let share = Vec::<Vec<f32>>::try_from(&shares).unwrap();
        let labels = Vec::<i64>::try_from(labels.flatten(0, -1)).unwrap();
        let teach = Vec::<f32>::try_from(teach.flatten(0, -1)).unwrap();
        let (mut kept, mut left) = (0, 0);
        for (p, (&class, &t)) in labels.iter().zip(&teach).enumerate() {
            let (image, class) = (p / 256, class as usize);
            let want = share[image][class] >= mean[class];
            assert_eq!(t == 1.0, want, "pixel {p} of class {class}");
            if want {
                kept += 1
            } else {
                left += 1
            }
        }
        assert!(kept > 0 && left > 0, "kept {kept}, left out {left}");
        // At 0, every patch teaches again.
        let every = taught.with_min_patch(0.0).unwrap();
        assert_eq!(
            every.labels(&z).1.sum(Kind::Float).double_value(&[]),
            3.0 * 256.0
        );
    }

    #[test]
    fn scenes_labelled_at_a_smaller_size_have_their_scores_resized() {
        let z = Tensor::randn([2, 8], (Kind::Float, Device::Cpu));
        // By hand: the teacher's scene at 8², segmented by `labeller`, the scores
        // upsampled (bilinear) to the teacher's 16² and their argmax taken.
        let by_hand = |teacher: &LabelTeacher, labeller: &dyn Segmenter| {
            tch::no_grad(|| {
                let scene = teacher.generator.forward(&z).unwrap();
                let small = scene.adaptive_avg_pool2d([8, 8]).clamp(-1.0, 1.0);
                let scores = labeller.scores(&small).unwrap();
                assert_eq!(scores.size()[2..], [8, 8]);
                scores
                    .upsample_bilinear2d([16, 16], false, None, None)
                    .argmax(1, false)
            })
        };
        let teacher = untrained_teacher();
        let own = teacher.labels(&z).0;
        let teacher = teacher.labelling_at(8, None).unwrap();
        let (labels, teach) = teacher.labels(&z);
        assert_eq!(labels.size(), [2, 16, 16]);
        assert!(labels.equal(&by_hand(&teacher, teacher.segmenter.as_ref())));
        assert!(!labels.equal(&own), "labelled at 8², not as the 16² scene");
        assert_eq!(teach.sum(Kind::Float).double_value(&[]), 2.0 * 256.0);
        // Another labeller (same classes, other weights) labels instead of the segmenter.
        let labeller: Box<dyn Segmenter> = Box::new(DemoSegmenter::new(Device::Cpu));
        let teacher = teacher.labelling_at(8, Some(labeller)).unwrap();
        let labels = teacher.labels(&z).0;
        let labeller = teacher.labeller.as_deref().unwrap();
        assert!(labels.equal(&by_hand(&teacher, labeller)));
        assert!(!labels.equal(&by_hand(&teacher, teacher.segmenter.as_ref())));
        // Sizes outside 8..=16, and a labeller of other classes, are refused by name.
        for size in [4, 32] {
            let err = untrained_teacher().labelling_at(size, None).err().unwrap();
            assert!(
                err.to_string().contains(&format!(
                    "--teacher-label-size must be 8 to --teacher-size (16), got {size}"
                )),
                "{err}"
            );
        }
        let red: Box<dyn Segmenter> = Box::new(crate::segment::testing::RedSegmenter::new());
        let err = untrained_teacher()
            .labelling_at(8, Some(red))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("--teacher-label-segmenter"),
            "{err}"
        );
    }

    #[test]
    fn share_loss_is_the_transport_distance_to_the_reference_quantiles() {
        // Two classes over four rendered scenes: class 0 absent from half of them.
        let reference = ShareReference::from_shares(&Tensor::from_slice2(&[
            [0.0f32, 1.0],
            [0.4, 0.6],
            [0.0, 1.0],
            [0.4, 0.6],
        ]))
        .unwrap();
        // A batch of two sits at the quantiles 2/7 and 5/7: rows 1 and 2 of the sorted ones.
        assert_eq!(
            Vec::<f32>::try_from(reference.at_ranks(2).flatten(0, -1)).unwrap(),
            [0.0, 0.6, 0.4, 1.0]
        );
        assert_eq!(reference.at_ranks(4).size(), [4, 2]);
        // The reference's own shares, in any order, are at distance 0.
        let same = Tensor::from_slice2(&[[0.4f32, 0.6], [0.0, 1.0]]);
        assert_eq!(reference.loss(&same).double_value(&[]), 0.0);
        // Class 0 in both images (none in the reference's lower half): the smaller share
        // pays, relative to class 0's mean share 0.2, and is pushed towards none; the
        // larger one already matches.
        let both = Tensor::from_slice2(&[[0.4f32, 0.6], [0.1, 0.9]]).set_requires_grad(true);
        let loss = reference.loss(&both);
        let want = (0.1 / 0.2 + 0.1 / 0.8) / 4.0;
        assert!(
            (loss.double_value(&[]) - want).abs() < 1e-6,
            "{loss:?} vs {want}"
        );
        loss.backward();
        let grad = Vec::<f32>::try_from(both.grad().flatten(0, -1)).unwrap();
        assert!(grad[2] > 0.0 && grad[3] < 0.0, "{grad:?}");
        assert_eq!((grad[0], grad[1]), (0.0, 0.0));
        assert!(
            ShareReference::from_shares(&Tensor::zeros([3], (Kind::Float, Device::Cpu))).is_err()
        );
    }

    const ALL: Wanted = Wanted {
        labels: true,
        shares: true,
        presence: true,
    };
    const SHARES: Wanted = Wanted {
        labels: false,
        shares: true,
        presence: true,
    };
    const LABELS: Wanted = Wanted {
        labels: true,
        shares: false,
        presence: false,
    };

    #[test]
    fn a_teacher_with_a_reference_holds_g_to_the_rendered_shares() {
        let teacher = untrained_teacher();
        let z = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let scenes = tch::no_grad(|| teacher.generator.forward(&z).unwrap());
        // No reference: no share or presence loss.
        let none = teacher.losses(&z, &scenes, ALL);
        assert!(none.shares.is_none() && none.presence.is_none());
        let (soft, presence) = teacher.both_shares_of(&scenes).unwrap();
        // shares_of is the soft half.
        assert!(soft.allclose(&teacher.shares_of(&scenes).unwrap(), 1e-6, 1e-7, false));
        let teacher = teacher
            .with_reference(ShareReference::from_shares(&soft).unwrap())
            .with_presence_reference(ShareReference::from_shares(&presence).unwrap());
        // G drawing the reference scenes themselves, in another order, is at distance 0.
        let order = Tensor::from_slice(&[2i64, 0, 3, 1]);
        let shuffled = scenes.index_select(0, &order);
        let at_home = teacher.losses(&z, &shuffled, SHARES);
        assert!(at_home.shares.unwrap().double_value(&[]).abs() < 1e-6);
        assert!(at_home.presence.unwrap().double_value(&[]).abs() < 1e-5);
        assert_eq!(at_home.labels.double_value(&[]), 0.0);
        // Other images are not, and both losses reach G's images.
        for pick in [0, 1] {
            let noise = (Tensor::rand([4, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0)
                .set_requires_grad(true);
            let away = teacher.losses(&z, &noise, ALL);
            assert!(away.labels.double_value(&[]) > 0.0);
            let loss = [away.shares.unwrap(), away.presence.unwrap()][pick].shallow_clone();
            assert!(loss.double_value(&[]) > 0.0, "loss {pick}");
            loss.backward();
            assert!(noise.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
        // Not asked for, neither is computed.
        let noise = Tensor::rand([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let labels = teacher.losses(&z, &noise, LABELS);
        assert!(labels.shares.is_none() && labels.presence.is_none());
    }

    #[test]
    fn a_share_temperature_counts_shares_closer_to_each_pixel_s_most_likely_class() {
        // Two pixels: one sure of class 0 (scores 4, 0), one unsure, leaning to class 0
        // (scores 0.5, 0). Counted by most likely class, class 0 holds both.
        let logits = Tensor::from_slice(&[4.0f32, 0.5, 0.0, 0.0]).view([1, 2, 1, 2]);
        let at = |t: f64| Vec::<f32>::try_from(soft_shares(&logits, t).flatten(0, -1)).unwrap();
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        for t in [1.0, 0.25, 0.05] {
            let got = at(t);
            let want = (sigmoid(4.0 / t) + sigmoid(0.5 / t)) / 2.0;
            assert!(
                (got[0] as f64 - want).abs() < 1e-6,
                "T {t}: {got:?} vs {want}"
            );
            assert!((got[0] + got[1] - 1.0).abs() < 1e-6);
        }
        // Colder, class 0's share rises towards the hard count of 1.
        assert!(at(1.0)[0] < at(0.25)[0] && at(0.25)[0] < at(0.05)[0]);
        assert!(at(0.05)[0] > 0.99);
        // A teacher counts its references and G's shares alike at its temperature: G
        // drawing the reference scenes is still at distance 0, and other images are not.
        let teacher = untrained_teacher().with_share_temperature(0.2).unwrap();
        let z = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let scenes = tch::no_grad(|| teacher.generator.forward(&z).unwrap());
        let (soft, _) = teacher.both_shares_of(&scenes).unwrap();
        let plain = untrained_teacher().shares_of(&scenes).unwrap();
        assert!(!soft.allclose(&plain, 1e-4, 1e-4, false));
        let teacher = teacher.with_reference(ShareReference::from_shares(&soft).unwrap());
        let shuffled = scenes.index_select(0, &Tensor::from_slice(&[3i64, 1, 0, 2]));
        let at_home = teacher.losses(&z, &shuffled, SHARES);
        assert!(at_home.shares.unwrap().double_value(&[]).abs() < 1e-6);
        let noise = Tensor::rand([4, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let away = teacher.losses(&z, &noise, SHARES);
        assert!(away.shares.unwrap().double_value(&[]) > 0.0);
        // The temperature cannot change under a counted reference, nor be unsound.
        let err = teacher.with_share_temperature(0.5).err().unwrap();
        assert!(
            format!("{err:#}").contains("before the share reference"),
            "{err:#}"
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = untrained_teacher()
                .with_share_temperature(bad)
                .err()
                .unwrap();
            assert!(
                format!("{err:#}").contains("--share-temperature"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn presence_classes_hold_only_the_classes_named() {
        let teacher = untrained_teacher();
        let z = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let scenes = tch::no_grad(|| teacher.generator.forward(&z).unwrap());
        let (_, presence) = teacher.both_shares_of(&scenes).unwrap();
        let labels = teacher.segmenter.labels().to_vec();
        let (first, last) = (labels[0].clone(), labels[labels.len() - 1].clone());
        // Naming classes needs the presence reference; naming none changes nothing.
        let err = untrained_teacher()
            .with_presence_classes(std::slice::from_ref(&first))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--presence-weight"), "{err}");
        let teacher = teacher
            .with_presence_classes(&[])
            .unwrap()
            .with_presence_reference(ShareReference::from_shares(&presence).unwrap());
        let noise = Tensor::rand([4, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let all = teacher.losses(&z, &noise, SHARES).presence.unwrap();
        // G's scores and the reference's, by hand, of the last class and then the first.
        let (_, noise_presence) = teacher.both_shares_of(&noise).unwrap();
        let columns = Tensor::from_slice(&[labels.len() as i64 - 1, 0]);
        let by_hand = ShareReference::from_shares(&presence.index_select(1, &columns))
            .unwrap()
            .presence_loss(&noise_presence.index_select(1, &columns));
        let whole = ShareReference::from_shares(&presence)
            .unwrap()
            .presence_loss(&noise_presence);
        assert!((all.double_value(&[]) - whole.double_value(&[])).abs() < 1e-4);
        let two = teacher
            .with_presence_classes(&[last.clone(), first.clone()])
            .unwrap();
        let held = two.losses(&z, &noise, SHARES).presence.unwrap();
        assert!(
            (held.double_value(&[]) - by_hand.double_value(&[])).abs() < 1e-4,
            "{held:?} vs {by_hand:?}"
        );
        assert!((held.double_value(&[]) - all.double_value(&[])).abs() > 1e-4);
        // A name the segmenter does not have, or one named twice, is refused.
        let fresh = || {
            untrained_teacher()
                .with_presence_reference(ShareReference::from_shares(&presence).unwrap())
        };
        let err = fresh()
            .with_presence_classes(&["moon".to_string()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--presence-classes") && err.contains("\"moon\"") && err.contains(&last),
            "{err}"
        );
        let err = fresh()
            .with_presence_classes(&[first.clone(), first.clone()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn presence_scores_are_margins_over_each_class_s_most_decided_pixels() {
        // One image of 1250 pixels (k = ⌈0.002 × 1250⌉ = 3), three classes. Class 0 wins
        // three pixels by 3, class 1 one pixel by 1, class 2 the rest by 5.
        let mut pixels = vec![[4.0f32, 0.0, 1.0]; 3];
        pixels.push([0.0, 2.0, 1.0]);
        pixels.resize(1250, [0.0, 0.0, 5.0]);
        let flat: Vec<f32> = (0..3)
            .flat_map(|c| pixels.iter().map(move |p| p[c]))
            .collect();
        let logits = || Tensor::from_slice(&flat).view([1, 3, 25, 50]);
        let got = Vec::<f32>::try_from(presence_scores(&logits()).flatten(0, -1)).unwrap();
        // Class 0 holds 0.24% of the pixels (present for eval-demo), class 1 0.08% (absent).
        let want = [3.0, (1.0 - 4.0 - 4.0) / 3.0, 5.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        // Ten times as sure, the scores are ten times as large and class 0's gradient on
        // each of its three pixels stays 1/3: a sure small patch is still pulled.
        let sure = (logits() * 10.0).set_requires_grad(true);
        let scores = presence_scores(&sure);
        assert!((scores.double_value(&[0, 0]) - 30.0).abs() < 1e-3);
        scores.get(0).get(0).backward();
        let grad = sure.grad().view([3, 1250]);
        for i in 0..3 {
            assert!((grad.double_value(&[0, i]) - 1.0 / 3.0).abs() < 1e-6);
            // …and pushes the best other class's score (class 2) the other way.
            assert!((grad.double_value(&[2, i]) + 1.0 / 3.0).abs() < 1e-6);
        }
        assert_eq!(grad.double_value(&[0, 3]), 0.0);
        // Probabilities there are saturated: the same pixels' gradient through the soft
        // share is under a millionth.
        let sure = (logits() * 10.0).set_requires_grad(true);
        soft_shares(&sure, 1.0).get(0).get(0).backward();
        assert!(sure.grad().view([3, 1250]).double_value(&[0, 0]).abs() < 1e-6);
    }

    #[test]
    fn presence_loss_pulls_a_sure_patch_out_where_the_reference_holds_none() {
        // Class 0 absent (score −6) from half of four rendered scenes, present (3) in the
        // other half; class 1 present in all.
        let reference = ShareReference::from_shares(&Tensor::from_slice2(&[
            [-6.0f32, 6.0],
            [3.0, 6.0],
            [-6.0, 6.0],
            [3.0, 6.0],
        ]))
        .unwrap();
        // A batch of two sits at rows 1 and 2 of the sorted scores: class 0 at −6 and 3.
        // G's image 1 holds a sure patch of class 0 (score 2): held to −6, clamped to −2,
        // it is 4 off. Image 0's 8 is past the cap of 3's side, as are class 1's 6 and 9.
        let g = Tensor::from_slice2(&[[8.0f32, 6.0], [2.0, 9.0]]).set_requires_grad(true);
        let loss = reference.presence_loss(&g);
        assert!((loss.double_value(&[]) - 1.0).abs() < 1e-6, "{loss:?}");
        loss.backward();
        let grad = g.grad();
        assert_eq!(grad.double_value(&[1, 0]), 0.25);
        for (i, c) in [(0, 0), (0, 1), (1, 1)] {
            assert_eq!(grad.double_value(&[i, c]), 0.0);
        }
        // Past the cap on the far side, an absent class is not pulled further.
        let clear = Tensor::from_slice2(&[[-9.0f32, 6.0], [5.0, 9.0]]);
        assert_eq!(reference.presence_loss(&clear).double_value(&[]), 0.0);
        // Within the cap, a score is pulled to the target from either side.
        let within =
            ShareReference::from_shares(&Tensor::from_slice2(&[[1.0f32], [1.0], [1.0]])).unwrap();
        let g = Tensor::from_slice2(&[[3.0f32], [-1.0]]).set_requires_grad(true);
        let loss = within.presence_loss(&g);
        assert!((loss.double_value(&[]) - 2.0).abs() < 1e-6);
        loss.backward();
        assert_eq!(
            Vec::<f32>::try_from(g.grad().flatten(0, -1)).unwrap(),
            [0.5, -0.5]
        );
        // The reference's own scores are at distance 0.
        let own = Tensor::from_slice2(&[[-6.0f32, 6.0], [3.0, 6.0]]);
        assert_eq!(reference.presence_loss(&own).double_value(&[]), 0.0);
    }

    #[test]
    fn a_teacher_that_cannot_teach_says_why() {
        let teacher = LabelTeacher::new(
            tiny(&[8, 8, 8]),
            Box::new(DemoSegmenter::new(Device::Cpu)),
            32,
            0.5,
        )
        .unwrap();
        let err = teacher.check(16, 64).unwrap_err().to_string();
        assert!(err.contains("8-d latents") && err.contains("16-d"), "{err}");
        let err = teacher.check(8, 16).unwrap_err().to_string();
        assert!(err.contains("--teacher-size 32"), "{err}");
        let err = LabelTeacher::new(
            tiny(&[8, 8]),
            Box::new(DemoSegmenter::new(Device::Cpu)),
            4,
            0.5,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("--teacher-size"), "{err}");
    }
}
