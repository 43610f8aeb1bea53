//! Painting an uploaded picture against painting a generated one, over HTTP: the bundled
//! project served in-process with its render cache on (as in use), one picture uploaded
//! (a scene of a held-out seed, rendered and sent back as a PNG), then the same growing
//! stack of strokes painted on the sample and on the upload, the two alternating in
//! rounds. Every paint updates the image's kept render, as a user's next stroke (or, at
//! the start of a round, an undo back to one stroke) does. Reports the upload's inversion time and figures, both latencies, and
//! the per-round ratio of their medians (upload / sample).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::http::paintable_concept;
use super::report::UploadBench;
use super::stats::{median, Latency, RatioStats};
use crate::model::{DeviceChoice, Precision};

pub struct UploadSettings {
    pub data: PathBuf,
    pub device: DeviceChoice,
    pub precision: Precision,
    pub rounds: usize,
    /// Strokes per stack (paints per subject per round).
    pub strokes: usize,
}

/// The seed of the uploaded scene and of the sample painted beside it: outside the ids
/// and seeds the demo was dissected and evaluated on.
const PICTURE_SEED: u64 = 9_100_001;
const SAMPLE_SEED: u64 = 9_100_002;

pub fn bench_upload(settings: &UploadSettings) -> anyhow::Result<UploadBench> {
    let uploads =
        std::env::temp_dir().join(format!("ganpaint-bench-uploads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&uploads);
    let mut config = crate::serve::ServeConfig::with_data(settings.data.clone());
    config.device = settings.device;
    config.precision = settings.precision;
    config.uploads = uploads.clone();
    let state = Arc::new(crate::serve::AppState::load(config)?);
    let Some((project, layer, resolution)) = state
        .projects
        .iter()
        .find(|(_, p)| p.inverter.is_ok())
        .map(|(id, p)| (id.clone(), p.default_layer().clone(), p.resolution() as u32))
    else {
        bail!("no project under {} takes uploads", settings.data.display());
    };
    let concept = paintable_concept(&layer)?;
    // Stroke k: a square a quarter of the image wide, walking across it.
    let strokes: Vec<Value> = (0..settings.strokes)
        .map(|k| {
            let side = resolution / 4;
            let (x0, y0) = (
                (k as u32 * side / 2) % (resolution - side),
                (k as u32 * side) % (resolution - side),
            );
            let mask = crate::edit::mask::encode_png_mask(resolution, resolution, |x, y| {
                (x0..x0 + side).contains(&x) && (y0..y0 + side).contains(&y)
            });
            let mode = if k % 3 == 2 { "remove" } else { "draw" };
            json!({ "concept": concept, "mode": mode, "mask": mask })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, crate::serve::app(state)).await;
        });
        let client = reqwest::Client::builder().build()?;
        let base = format!("http://{address}/api/v1");
        let picture = client
            .post(format!("{base}/generate"))
            .json(&json!({ "project": project, "seeds": [PICTURE_SEED] }))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let sent = Instant::now();
        let answer: Value = client
            .post(format!("{base}/images?project={project}"))
            .header("content-type", "image/png")
            .body(picture.to_vec())
            .send()
            .await?
            .error_for_status()
            .context("uploading the picture")?
            .json()
            .await?;
        let upload_ms = sent.elapsed().as_secs_f64() * 1e3;
        let image = answer["image"]
            .as_str()
            .context("no upload id")?
            .to_string();
        let subjects = [
            ("sample", json!({ "project": project, "seed": SAMPLE_SEED })),
            ("upload", json!({ "project": project, "image": image })),
        ];
        let mut ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut round_medians: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..settings.rounds {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let mut this_round = Vec::new();
                for k in 1..=strokes.len() {
                    let mut body = subjects[which].1.clone();
                    body["strokes"] = Value::Array(strokes[..k].to_vec());
                    let sent = Instant::now();
                    client
                        .post(format!("{base}/paint"))
                        .json(&body)
                        .send()
                        .await?
                        .error_for_status()
                        .with_context(|| format!("painting the {}", subjects[which].0))?
                        .bytes()
                        .await?;
                    this_round.push(sent.elapsed().as_secs_f64() * 1e3);
                }
                round_medians[which].push(median(&this_round).unwrap_or(f64::NAN));
                ms[which].extend(this_round);
            }
        }
        server.abort();
        anyhow::Ok(UploadBench {
            project,
            upload_ms: super::stats::round3(upload_ms),
            psnr_db: answer["psnr_db"].as_f64().unwrap_or(f64::NAN),
            inversion: answer["timing"].clone(),
            sample_paint: Latency::of(&ms[0]),
            upload_paint: Latency::of(&ms[1]),
            upload_over_sample: RatioStats::of_rounds(&round_medians[1], &round_medians[0]),
        })
    });
    let _ = std::fs::remove_dir_all(&uploads);
    result
}
