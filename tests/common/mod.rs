//! Shared test fixtures: a tiny project (generator, segmenter, dissection) built once per
//! test binary in a temporary folder, through the same CLI a user runs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ganpaint::model::{ProgGan, ProgGanConfig};
use ganpaint::segment::demo::DemoSegmenter;
use tch::Device;

/// A data folder holding one project, `tiny`: a random 16×16 generator (layer4 is
/// 16×8×8) dissected with an untrained demo segmenter over 16 samples.
pub fn tiny_data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root =
            std::env::temp_dir().join(format!("ganpaint-tiny-project-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        tch::manual_seed(7);
        let model = ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 16, 8],
            },
            Device::Cpu,
        );
        let g = root.join("g.safetensors");
        model.save_safetensors(&g).unwrap();
        let s = root.join("s.safetensors");
        DemoSegmenter::new(Device::Cpu).save(&s).unwrap();
        dissect_tiny(&root.join("data/tiny"), &["layer4"]);
        root.join("data")
    })
}

/// Dissects the tiny generator (`g.safetensors` beside `tiny_data_dir()`) at `layers`
/// over 16 samples into the project folder `out`, through the CLI.
pub fn dissect_tiny(out: &Path, layers: &[&str]) {
    let root = out
        .ancestors()
        .find(|dir| dir.join("g.safetensors").is_file())
        .expect("a project folder under the tiny fixture's root");
    let status = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args([
            "dissect",
            "--device",
            "cpu",
            "--samples",
            "16",
            "--batch",
            "8",
        ])
        .args(["--causal-samples", "4"])
        .args(layers.iter().flat_map(|layer| ["--layer", layer]))
        .arg("--model")
        .arg(root.join("g.safetensors"))
        .arg("--segmenter")
        .arg(root.join("s.safetensors"))
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "dissecting the tiny project at {layers:?} failed"
    );
}

/// In-process HTTP helpers over the tiny project: a server state, one request through the
/// router, and the masks and images the API speaks.
pub mod http {
    use std::sync::Arc;

    use axum::body::{to_bytes, Body};
    use axum::http::{header, HeaderMap, Request, StatusCode};
    use ganpaint::edit::mask::encode_png_mask;
    use ganpaint::serve::{app, AppState, ServeConfig};
    use tower::ServiceExt;

    /// A server state over the tiny project on the CPU, with `adjust` applied to the
    /// default settings.
    pub fn state_with(adjust: impl FnOnce(&mut ServeConfig)) -> Arc<AppState> {
        let mut config = ServeConfig::with_data(super::tiny_data_dir().to_path_buf());
        config.device = ganpaint::model::DeviceChoice::Cpu;
        // Never the working directory's `uploads/`.
        config.uploads =
            std::env::temp_dir().join(format!("ganpaint-test-uploads-{}", std::process::id()));
        adjust(&mut config);
        Arc::new(AppState::load(config).unwrap())
    }

    /// One request through the whole router: status, headers and body.
    pub async fn call(
        state: Arc<AppState>,
        request: Request<Body>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = app(state).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }

    /// POSTs a JSON body (asking for JSON back when `accept_json`).
    pub async fn post(
        state: Arc<AppState>,
        uri: &str,
        body: &serde_json::Value,
        accept_json: bool,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if accept_json {
            request = request.header(header::ACCEPT, "application/json");
        }
        call(state, request.body(Body::from(body.to_string())).unwrap()).await
    }

    /// GETs `uri`: status, headers and body.
    pub async fn get(state: Arc<AppState>, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        call(state, Request::get(uri).body(Body::empty()).unwrap()).await
    }

    /// The pixels of an image data URL.
    pub fn decode_data_url(url: &str) -> image::RgbImage {
        use base64::Engine;
        let (_, payload) = url.split_once(";base64,").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap();
        image::load_from_memory(&bytes).unwrap().to_rgb8()
    }

    /// A 32×32 RGBA PNG mask over the top-left quarter, as the GANPaint client sends (the
    /// tiny model's images are 16×16, so it covers their top-left 8×8).
    pub fn quarter_mask() -> String {
        encode_png_mask(32, 32, |x, y| x < 16 && y < 16)
    }

    /// A 2 KB PNG that decodes to 4096² pixels (1-bit gray: no alpha, so all painted).
    pub fn mask_bomb() -> String {
        use base64::Engine;
        let mut png = Vec::new();
        let mut encoder = png::Encoder::new(&mut png, 4096, 4096);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        encoder.set_compression(png::Compression::High);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&vec![0u8; 4096 / 8 * 4096])
            .unwrap();
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        )
    }
}
