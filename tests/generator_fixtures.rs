//! The generator against the PyTorch reference, in every weight container.
//!
//! Expected values come from `scripts/make_fixtures.py`, which runs the spec-written
//! reference in `scripts/proggan_reference.py`:
//! `image = ProgGan([32, 32, 32, 16, 8])(z)`, `layer4 = model.features(z, "layer4")`,
//! `z = RandomState(1).standard_normal((4, 32))`.

use std::path::{Path, PathBuf};

use ganpaint::model::{latent, ModelError, ProgGan, ProgGanConfig};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proggan")
        .join(name)
}

fn expected(name: &str) -> Tensor {
    Tensor::read_safetensors(fixture("expected.safetensors"))
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap()
        .1
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn check_matches_reference(file: &str) {
    let model = ProgGan::load(&fixture(file), Device::Cpu).unwrap();
    assert_eq!(
        model.config(),
        &ProgGanConfig {
            z_dim: 32,
            channels: vec![32, 32, 16, 8]
        }
    );
    let _guard = tch::no_grad_guard();
    let z = expected("z");
    let image = model.forward(&z).unwrap();
    let diff = max_abs_diff(&image, &expected("image"));
    eprintln!("{file}: max abs difference to the PyTorch reference {diff:e}");
    assert!(
        diff < 1e-4,
        "{file}: image differs from the reference by {diff}"
    );
    let layer4 = model.features(&z, "layer4").unwrap();
    let diff = max_abs_diff(&layer4, &expected("layer4"));
    assert!(
        diff < 1e-4,
        "{file}: layer4 differs from the reference by {diff}"
    );
}

#[test]
fn zip_pth_matches_reference() {
    check_matches_reference("tiny_zip.pth");
}

#[test]
fn legacy_wrapped_pth_matches_reference() {
    check_matches_reference("tiny_legacy_wrapped.pth");
}

#[test]
fn legacy_old_names_pth_matches_reference() {
    check_matches_reference("tiny_oldnames.pth");
}

#[test]
fn safetensors_matches_reference() {
    check_matches_reference("tiny.safetensors");
}

#[test]
fn rust_latents_equal_the_fixture_numpy_latents() {
    let z = latent::z_for_ids(&[0, 1, 2, 3], 32);
    let reference = expected("z");
    assert_eq!(Tensor::from_slice(&z).view([4, 32]), reference);
}

#[test]
fn prefix_plus_suffix_equals_full_forward_on_loaded_weights() {
    let model = ProgGan::load(&fixture("tiny_zip.pth"), Device::Cpu).unwrap();
    let _guard = tch::no_grad_guard();
    let z = expected("z");
    let full = model.forward(&z).unwrap();
    for layer in model.layer_names().iter().take(8) {
        let feats = model.features(&z, layer).unwrap();
        assert!(
            model.forward_from(layer, &feats).unwrap().equal(&full),
            "split at {layer}"
        );
    }
}

#[test]
fn saved_safetensors_round_trip_exactly() {
    let model = ProgGan::load(&fixture("tiny_legacy_wrapped.pth"), Device::Cpu).unwrap();
    let dir = tempdir("roundtrip");
    let path = dir.join("g.safetensors");
    model.save_safetensors(&path).unwrap();
    let again = ProgGan::load(&path, Device::Cpu).unwrap();
    let z = Tensor::randn([2, 32], (Kind::Float, Device::Cpu));
    let _guard = tch::no_grad_guard();
    assert!(model
        .forward(&z)
        .unwrap()
        .equal(&again.forward(&z).unwrap()));
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ganpaint-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load_err(bytes: &[u8], tag: &str) -> ModelError {
    let dir = tempdir(tag);
    let path = dir.join("bad.pth");
    std::fs::write(&path, bytes).unwrap();
    match ProgGan::load(&path, Device::Cpu) {
        Ok(_) => panic!("{tag}: loading should fail"),
        Err(e) => e,
    }
}

#[test]
fn truncated_files_give_named_errors() {
    for file in [
        "tiny_zip.pth",
        "tiny_legacy_wrapped.pth",
        "tiny.safetensors",
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 100, 40] {
            let err = load_err(&bytes[..cut], "truncated");
            let message = err.to_string();
            assert!(
                matches!(err, ModelError::Pth { .. } | ModelError::SafeTensors { .. }),
                "{file} cut at {cut}: {message}"
            );
            assert!(message.contains("bad.pth"), "{message}");
        }
    }
}

#[test]
fn garbage_and_empty_files_are_not_torch_checkpoints() {
    for bytes in [
        &b""[..],
        b"hello, this is not a checkpoint at all",
        &[0xffu8; 64],
    ] {
        let err = load_err(bytes, "garbage");
        assert!(matches!(err, ModelError::Pth { .. }), "{err}");
    }
}

#[test]
fn missing_file_names_the_path() {
    let err = ProgGan::load(Path::new("/nonexistent/g.pth"), Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/g.pth"), "{err}");
}

#[test]
fn wrong_architecture_names_the_key_and_both_shapes() {
    let err = ProgGan::load_as(
        &fixture("tiny_zip.pth"),
        Some(&ProgGanConfig::lsun256()),
        Device::Cpu,
    )
    .err()
    .unwrap();
    let message = err.to_string();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{message}");
    assert!(message.contains("layer1.conv.weight"), "{message}");
    assert!(
        message.contains("[512, 512, 4, 4]") && message.contains("[32, 32, 4, 4]"),
        "{message}"
    );
}

#[test]
fn inconsistent_weights_name_the_key() {
    // layer3 claims 8 input channels while layer2 produces 32.
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(fixture("tiny.safetensors")).unwrap();
    for (key, t) in tensors.iter_mut() {
        if key == "layer3.conv.weight" {
            *t = Tensor::zeros([32, 8, 3, 3], (Kind::Float, Device::Cpu));
        }
    }
    let dir = tempdir("inconsistent");
    let path = dir.join("g.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let message = ProgGan::load(&path, Device::Cpu).err().unwrap().to_string();
    assert!(
        message.contains("layer3.conv.weight") && message.contains("[32, 8, 3, 3]"),
        "{message}"
    );
}
