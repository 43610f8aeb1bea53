//! `ganpaint invert`: paint on your own picture, from the command line (see
//! [`crate::invert`]).
//!
//! ```text
//! ganpaint invert --project dissect/demo --image photo.png --out out/photo
//! ganpaint invert --project dissect/demo --eval 200          # held-out rendered scenes
//! ```
//!
//! With `--image`, it writes `encoder.png` (the encoder's guess rendered), `optimized.png`
//! (after step 2), `reconstruction.png` (after step 3, what edits start from), `picture.png`
//! (the picture at the model's resolution) and `inversion.json`, and prints that JSON as
//! one line. With `--eval N`, it inverts N held-out rendered scenes and prints one JSON
//! line of figures (see [`crate::invert::eval`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};

use crate::invert::eval::{InvertEval, FIRST_SCENE};
use crate::invert::{
    invert, load_picture, AdaptSettings, Encoder, InvertSettings, OptimizeSettings, Stage,
    ZFitSettings,
};
use crate::model::DeviceChoice;
use crate::project::{read_project, UnitChoice};

use super::project::{load_project_models, ProjectModels};

#[derive(clap::Args, Debug)]
pub struct InvertArgs {
    /// A dissection folder (dissect.json and levels.json), e.g. dissect/demo.
    #[arg(long)]
    project: PathBuf,
    /// The picture to invert (PNG or JPEG; centre-cropped and resized to the model's size).
    #[arg(long, required_unless_present = "eval", conflicts_with = "eval")]
    image: Option<PathBuf>,
    /// Where to write the pictures and inversion.json.
    #[arg(long, required_unless_present = "eval")]
    out: Option<PathBuf>,
    /// Instead of a picture: invert this many held-out rendered scenes and report figures.
    #[arg(long)]
    eval: Option<u64>,
    /// First held-out scene index of the evaluation.
    #[arg(long, default_value_t = FIRST_SCENE)]
    first_scene: u64,
    /// The concept the evaluation draws.
    #[arg(long, default_value = "tree")]
    concept: String,
    /// Top units a draw stroke paints (by causal effect), as eval-edits.
    #[arg(long, default_value_t = 20)]
    units: usize,
    /// Seed of the evaluation's stroke regions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Other layers the evaluation paints the inverted pictures at (comma-separated;
    /// default: every other dissected layer; `none` for none). A layer before the inverted
    /// one goes through the fitted z.
    #[arg(long)]
    paint_layers: Option<String>,
    /// The fit of z (when the encoder predicts z): steps, and the pull towards the
    /// encoder's prediction.
    #[arg(long, default_value_t = ZFitSettings::default().steps)]
    z_steps: usize,
    #[arg(long, default_value_t = ZFitSettings::default().lr)]
    z_lr: f64,
    #[arg(long, default_value_t = ZFitSettings::default().prior_weight)]
    z_prior: f64,
    /// The layer (default: `layer4` when dissected, else the project's first).
    #[arg(long)]
    layer: Option<String>,
    /// Generator (default: the project's model, else the bundled one).
    #[arg(long)]
    generator: Option<PathBuf>,
    /// Encoder (default: the project's: `project.json`'s `encoder`, else the dissection's
    /// `encoder` setting, else the bundled one).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Segmenter for the evaluation (default: the project's, else the bundled one).
    #[arg(long)]
    segmenter: Option<PathBuf>,
    #[arg(long)]
    segmenter_labels: Option<PathBuf>,
    /// Step 2: optimisation steps of the layer's activations.
    #[arg(long, default_value_t = OptimizeSettings::default().steps)]
    steps2: usize,
    #[arg(long, default_value_t = OptimizeSettings::default().lr)]
    lr2: f64,
    /// Step 2: the pull towards the encoder's guess.
    #[arg(long, default_value_t = OptimizeSettings::default().prior_weight)]
    prior: f64,
    /// Step 3: adaptation steps of the weights after the layer.
    #[arg(long, default_value_t = AdaptSettings::default().steps)]
    steps3: usize,
    #[arg(long, default_value_t = AdaptSettings::default().lr)]
    lr3: f64,
    /// Step 3: the pull towards the original weights.
    #[arg(long, default_value_t = AdaptSettings::default().pull)]
    pull: f64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

pub fn run(args: InvertArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let project = read_project(&args.project)
        .with_context(|| format!("reading the dissection in {}", args.project.display()))?;
    let layer = project.chosen_layer(args.layer.as_deref())?;
    let layer_name = layer.layer.clone();
    let ProjectModels {
        generator,
        generator_path,
        segmenter,
    } = load_project_models(
        &project,
        args.generator.as_deref(),
        "--generator",
        args.segmenter.as_deref(),
        args.segmenter_labels.as_deref(),
        device,
    )?;
    let encoder_path = match &args.encoder {
        Some(path) => path.clone(),
        None => crate::project::encoder_file(&project, crate::invert::DEFAULT_ENCODER)?,
    };
    if !encoder_path.exists() {
        bail!(
            "encoder {} does not exist (pass --encoder PATH, or train one with \
             `ganpaint train-demo encoder --project {}`)",
            encoder_path.display(),
            args.project.display()
        );
    }
    let encoder = Encoder::load(&encoder_path, device)
        .with_context(|| format!("loading encoder {}", encoder_path.display()))?;
    let settings = InvertSettings {
        optimize: OptimizeSettings {
            steps: args.steps2,
            lr: args.lr2,
            prior_weight: args.prior,
        },
        adapt: AdaptSettings {
            steps: args.steps3,
            lr: args.lr3,
            pull: args.pull,
        },
        z: ZFitSettings {
            steps: args.z_steps,
            lr: args.z_lr,
            prior_weight: args.z_prior,
        },
    };
    tracing::info!(generator = %generator_path.display(), encoder = %encoder_path.display(), layer = %layer_name, ?settings, "inverting");

    if let Some(scenes) = args.eval {
        // Layers before the inverted one paint through the fitted z: without one (an
        // encoder without a z head, or no z steps) they are left out, or refused by name.
        let fits_z = encoder.config().z_dim.is_some() && settings.z.steps > 0;
        let inverted_at = generator.layer_index(&layer_name)?;
        let paintable = |l: &crate::project::ProjectLayer| {
            fits_z
                || generator
                    .layer_index(&l.layer)
                    .is_ok_and(|i| i >= inverted_at)
        };
        let other_layers: Vec<&crate::project::ProjectLayer> = match args.paint_layers.as_deref() {
            None => project
                .layers
                .iter()
                .filter(|l| l.layer != layer_name && paintable(l))
                .collect(),
            Some("none") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|name| project.chosen_layer(Some(name.trim())))
                .collect::<Result<Vec<_>, _>>()
                .context("--paint-layers")?,
        };
        if let Some(early) = other_layers.iter().find(|l| !paintable(l)) {
            bail!(
                "--paint-layers: {} comes before {layer_name}, and no z is fitted (the encoder \
                 has no z head, or --z-steps is 0) to carry an edit there",
                early.layer
            );
        }
        let eval = InvertEval {
            generator: &generator,
            encoder: &encoder,
            segmenter: segmenter.as_ref(),
            layer,
            other_layers,
            settings,
            scenes,
            first_scene: args.first_scene,
            concept: args.concept.clone(),
            units: args.units,
            quantile: 0.99,
            strength: 1.0,
            choice: UnitChoice::Causal,
            seed: args.seed,
        };
        let bar = super::progress_bar(scenes, "invert held-out scenes");
        let report = eval.run(&mut |n| bar.inc(n))?;
        bar.finish();
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }

    let image = args
        .image
        .as_deref()
        .expect("clap requires --image without --eval");
    let out = args
        .out
        .as_deref()
        .expect("clap requires --out without --eval");
    let picture = load_picture(image, generator.resolution(), device)?;
    let total = (settings.optimize.steps + settings.adapt.steps) as u64;
    let bar = super::progress_bar(total, "invert");
    let inversion = invert(
        &generator,
        &encoder,
        &layer_name,
        &picture,
        &settings,
        &mut |stage, _, _| {
            if stage == Stage::Adapt && bar.message() == "invert" {
                bar.set_message("invert (adapting)");
            }
            bar.inc(1);
        },
        &AtomicBool::new(false),
    )?;
    bar.finish();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, images) in [
        ("picture.png", &inversion.target),
        ("encoder.png", &inversion.encoder_image),
        ("optimized.png", &inversion.optimized_image),
        ("reconstruction.png", &inversion.reconstruction),
    ] {
        write_png(images, &out.join(name))?;
    }
    let json = serde_json::json!({
        "image": image,
        "layer": layer_name,
        "resolution": generator.resolution(),
        "figures": inversion.report,
        "settings": settings,
    });
    let line = serde_json::to_string(&json)?;
    std::fs::write(out.join("inversion.json"), format!("{line}\n"))?;
    println!("{line}");
    Ok(())
}

fn write_png(images: &tch::Tensor, path: &Path) -> anyhow::Result<()> {
    let rgb = crate::imageio::to_rgb_images(images)?;
    crate::imageio::write_png(&rgb[0], path).with_context(|| format!("writing {}", path.display()))
}
