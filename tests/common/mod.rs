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
        let out = root.join("data/tiny");
        let status = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
            .args([
                "dissect",
                "--device",
                "cpu",
                "--samples",
                "16",
                "--batch",
                "8",
                "--causal-samples",
                "4",
            ])
            .arg("--model")
            .arg(&g)
            .arg("--segmenter")
            .arg(&s)
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "dissecting the tiny project failed");
        root.join("data")
    })
}
