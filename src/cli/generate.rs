//! `ganpaint generate`: write `DIR/<id>.png` for GAN Dissection image ids.
//!
//! Other tools call this; keep the flags and file names stable.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tch::{Kind, Tensor};

use crate::cli::ids::parse_id_spec;
use crate::imageio;
use crate::model::{latent, DeviceChoice, Precision, ProgGan, DEFAULT_MODEL};

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Generator weights (.pth, zip or legacy, or .safetensors). Defaults to the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Image ids, e.g. `0..8,12` (ranges exclude the end). Id i is GAN Dissection's image i.
    #[arg(long, conflicts_with = "seeds", required_unless_present = "seeds")]
    ids: Option<String>,
    /// Arbitrary seeds instead of ids (same syntax); writes `seed-<n>.png`.
    #[arg(long)]
    seeds: Option<String>,
    /// Output folder, created if missing.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// `fast` (what the server shows) or `exact` (the reference f32 arithmetic).
    #[arg(long, value_enum, default_value_t = Precision::Fast)]
    precision: Precision,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let model_path = args
        .model
        .unwrap_or_else(|| crate::model::repo_path(DEFAULT_MODEL));
    if !model_path.exists() {
        bail!(
            "model file {} does not exist (pass --model PATH; the bundled model is {DEFAULT_MODEL})",
            model_path.display()
        );
    }
    let mut model = ProgGan::load(&model_path, device)
        .with_context(|| format!("loading {}", model_path.display()))?;
    model.set_precision(args.precision)?;
    tracing::info!(model = %model_path.display(), ?device, resolution = model.resolution(), "loaded generator");
    let (numbers, by_seed) = match (&args.ids, &args.seeds) {
        (Some(spec), _) => (parse_id_spec(spec).context("--ids")?, false),
        (None, Some(spec)) => (parse_id_spec(spec).context("--seeds")?, true),
        (None, None) => bail!("give --ids or --seeds"),
    };
    if !by_seed {
        if let Some(&id) = numbers.iter().find(|&&id| id > latent::MAX_ID) {
            bail!(
                "--ids: id {id} is above the largest supported id {}",
                latent::MAX_ID
            );
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let dim = model.z_dim() as usize;
    let bar = super::progress_bar(numbers.len() as u64, "generate");
    let _guard = tch::no_grad_guard();
    for chunk in numbers.chunks(args.batch.max(1)) {
        let z = if by_seed {
            latent::z_for_seeds(chunk, dim)
        } else {
            latent::z_for_ids(chunk, dim)
        };
        let z = Tensor::from_slice(&z)
            .view([chunk.len() as i64, dim as i64])
            .to_kind(Kind::Float)
            .to_device(device);
        let images = imageio::to_rgb_images(&model.forward(&z)?)?;
        for (number, image) in chunk.iter().zip(images) {
            let name = if by_seed {
                format!("seed-{number}.png")
            } else {
                format!("{number}.png")
            };
            imageio::write_png(&image, &args.out.join(name))?;
            bar.inc(1);
        }
    }
    bar.finish();
    tracing::info!(count = numbers.len(), out = %args.out.display(), "wrote images");
    Ok(())
}
