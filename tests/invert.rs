//! End-to-end: `ganpaint train-demo encoder` then `ganpaint invert --image` on the tiny
//! project of `tests/common` (a random 16² generator, layer4 = 16×8×8), through the real
//! binary: the encoder file, the pictures and the JSON line with the figures.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn ganpaint(args: &[&str], paths: &[(&str, &Path)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ganpaint"));
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "ganpaint {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn train_an_encoder_then_invert_a_picture_writing_pictures_and_figures() {
    let project = common::tiny_data_dir().join("tiny");
    let dir = std::env::temp_dir().join(format!("ganpaint-invert-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let encoder = dir.join("encoder.safetensors");
    let trained = ganpaint(
        &[
            "train-demo",
            "encoder",
            "--device",
            "cpu",
            "--steps",
            "8",
            "--batch",
            "4",
            "--width",
            "8",
            "--max-width",
            "16",
        ],
        &[("--project", &project), ("--out", &encoder)],
    );
    let line: Value = serde_json::from_str(trained.lines().last().unwrap()).unwrap();
    assert!(line["feature_loss"].as_f64().unwrap().is_finite(), "{line}");
    // The encoder predicts z too (its error is reported).
    assert!(line["z_loss"].as_f64().unwrap().is_finite(), "{line}");
    assert!(encoder.exists());

    // A picture the generator did not make, of another size and shape: it is cropped and
    // resized to 16².
    let picture = dir.join("picture.png");
    image::RgbImage::from_fn(30, 24, |x, y| {
        image::Rgb([
            (x * 8) as u8,
            (y * 10) as u8,
            if (x / 6 + y / 6) % 2 == 0 { 40 } else { 220 },
        ])
    })
    .save(&picture)
    .unwrap();
    let out = dir.join("out");
    let printed = ganpaint(
        &[
            "invert", "--device", "cpu", "--steps2", "20", "--steps3", "20",
        ],
        &[
            ("--project", &project),
            ("--encoder", &encoder),
            ("--image", &picture),
            ("--out", &out),
        ],
    );
    let line: Value = serde_json::from_str(printed.lines().last().unwrap()).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("inversion.json")).unwrap())
            .unwrap();
    assert_eq!(line, written);
    assert_eq!(line["layer"], "layer4");
    assert_eq!(line["resolution"], 16);
    let figures = &line["figures"];
    let psnr = |key: &str| figures[key].as_f64().unwrap();
    assert!(
        psnr("psnr_optimized_db") > psnr("psnr_encoder_db"),
        "{figures}"
    );
    assert!(
        psnr("psnr_adapted_db") > psnr("psnr_optimized_db"),
        "{figures}"
    );
    assert!(figures["total_s"].as_f64().unwrap() > 0.0);
    // A z was fitted to the optimised activations: its relative error is a real figure.
    let z_error = psnr("z_error");
    assert!(z_error.is_finite() && z_error >= 0.0, "{figures}");
    assert!(figures["z_s"].as_f64().unwrap() > 0.0, "{figures}");
    for name in [
        "picture.png",
        "encoder.png",
        "optimized.png",
        "reconstruction.png",
    ] {
        let image = image::open(out.join(name)).unwrap();
        assert_eq!((image.width(), image.height()), (16, 16), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invert_without_an_encoder_says_how_to_train_one() {
    let project = common::tiny_data_dir().join("tiny");
    let output = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args([
            "invert",
            "--device",
            "cpu",
            "--image",
            "missing.png",
            "--out",
            "unused",
        ])
        .arg("--project")
        .arg(&project)
        .arg("--encoder")
        .arg(project.join("no-such-encoder.safetensors"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("train-demo encoder"), "{stderr}");
}
