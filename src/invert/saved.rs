//! A [`Fit`] as one safetensors file, so that an inverted picture outlives the process
//! that inverted it:
//!
//! | tensor | kind, shape | holds |
//! |---|---|---|
//! | `picture` | u8 `[3, R, R]` | the picture's pixels (the target is `p / 127.5 − 1`) |
//! | `features` | f32 `[1, C, H, W]` | the optimised activations of the layer |
//! | `adapted.<name>` | f32 | each adapted weight, under its state_dict name |
//! | `z` | f32 `[1, D]` | the fitted z, when one was (optional) |
//! | `meta` | u8 `[n]` | UTF-8 JSON: `{"format": 1, "layer": …, "report": {…}}` |
//!
//! Reading checks the format and every shape against the generator it will paint with,
//! and names what does not fit.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::{Fit, InversionReport, InvertError};
use crate::model::ProgGan;

/// The version written into `meta`; a file of another version is refused.
pub const FORMAT: u64 = 1;

const ADAPTED_PREFIX: &str = "adapted.";

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    format: u64,
    layer: String,
    report: InversionReport,
}

fn bad(path: &Path, detail: impl std::fmt::Display) -> InvertError {
    InvertError::Saved(format!("{}: {detail}", path.display()))
}

/// The picture `[1, 3, R, R]` in [-1, 1] → its u8 pixels `[3, R, R]` (exact for a
/// target made from 8-bit pixels).
pub fn picture_pixels(target: &Tensor) -> Result<Tensor, InvertError> {
    Ok(target
        .f_add_scalar(1.0)?
        .f_mul_scalar(127.5)?
        .f_round()?
        .f_clamp(0.0, 255.0)?
        .f_to_kind(Kind::Uint8)?
        .f_to_device(Device::Cpu)?
        .f_squeeze_dim(0)?
        .f_contiguous()?)
}

impl Fit {
    /// Writes the fit to `path` (see the module docs). Not atomic: write to a temporary
    /// name and rename.
    pub fn save(&self, path: &Path) -> Result<(), InvertError> {
        let meta = serde_json::to_vec(&Meta {
            format: FORMAT,
            layer: self.layer.clone(),
            report: self.report.clone(),
        })
        .map_err(|e| bad(path, e))?;
        let cpu = |t: &Tensor| -> Result<Tensor, InvertError> {
            Ok(t.f_detach()?
                .f_to_kind(Kind::Float)?
                .f_to_device(Device::Cpu)?
                .f_contiguous()?)
        };
        let mut tensors = vec![
            ("picture".to_string(), picture_pixels(&self.target)?),
            ("features".to_string(), cpu(&self.features)?),
            ("meta".to_string(), Tensor::f_from_slice(&meta)?),
        ];
        for (name, weight) in &self.adapted {
            tensors.push((format!("{ADAPTED_PREFIX}{name}"), cpu(weight)?));
        }
        if let Some(z) = &self.z {
            tensors.push(("z".to_string(), cpu(z)?));
        }
        Tensor::write_safetensors(&tensors, path).map_err(|e| bad(path, e))
    }

    /// Reads a fit written by [`Fit::save`] onto `base`'s device, checking it against
    /// `base`: the layer exists, the picture and activations have its shapes, and every
    /// adapted weight is one of its weights after the layer, with its shape.
    pub fn load(path: &Path, base: &ProgGan) -> Result<Fit, InvertError> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| bad(path, e))?;
        let mut picture = None;
        let mut features = None;
        let mut meta = None;
        let mut z = None;
        let mut adapted = Vec::new();
        for (name, tensor) in tensors {
            match name.as_str() {
                "picture" => picture = Some(tensor),
                "features" => features = Some(tensor),
                "meta" => meta = Some(tensor),
                "z" => z = Some(tensor),
                _ => match name.strip_prefix(ADAPTED_PREFIX) {
                    Some(weight) => adapted.push((weight.to_string(), tensor)),
                    None => return Err(bad(path, format!("unexpected tensor `{name}`"))),
                },
            }
        }
        let missing = |what: &str| bad(path, format!("no `{what}` tensor"));
        let meta = meta.ok_or_else(|| missing("meta"))?;
        let bytes = Vec::<u8>::try_from(meta.f_to_kind(Kind::Uint8)?)?;
        let meta: Meta =
            serde_json::from_slice(&bytes).map_err(|e| bad(path, format!("meta: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(
                path,
                format!("format {} (this version reads {FORMAT})", meta.format),
            ));
        }
        let device = base.device();
        let (c, h, w) = base
            .layer_shape(&meta.layer)
            .map_err(|e| bad(path, format!("meta.layer: {e}")))?;
        let r = base.resolution();
        let picture = picture.ok_or_else(|| missing("picture"))?;
        if picture.size() != [3, r, r] || picture.kind() != Kind::Uint8 {
            return Err(bad(
                path,
                format!(
                    "picture is {:?} {:?}; the generator's is u8 [3, {r}, {r}]",
                    picture.kind(),
                    picture.size()
                ),
            ));
        }
        let features = features.ok_or_else(|| missing("features"))?;
        if features.size() != [1, c, h, w] {
            return Err(bad(
                path,
                format!(
                    "features is {:?}; {} is [1, {c}, {h}, {w}]",
                    features.size(),
                    meta.layer
                ),
            ));
        }
        let expected = super::adapt::weights_after(base, &meta.layer)?;
        let shapes = base.config().expected_shapes();
        for (name, weight) in &adapted {
            if !expected.contains(name) {
                return Err(bad(
                    path,
                    format!(
                        "{ADAPTED_PREFIX}{name} is not a weight after {}",
                        meta.layer
                    ),
                ));
            }
            let shape = shapes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            if weight.size() != shape {
                return Err(bad(
                    path,
                    format!(
                        "{ADAPTED_PREFIX}{name} is {:?}; the generator's is {shape:?}",
                        weight.size()
                    ),
                ));
            }
        }
        if let Some(z) = &z {
            let d = base.z_dim();
            if z.size() != [1, d] {
                return Err(bad(
                    path,
                    format!("z is {:?}; the generator's z is [1, {d}]", z.size()),
                ));
            }
        }
        let target = picture
            .f_unsqueeze(0)?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(127.5)?
            .f_sub_scalar(1.0)?
            .f_to_device(device)?;
        let adapted = adapted
            .into_iter()
            .map(|(name, t)| Ok((name, t.f_to_kind(Kind::Float)?.f_to_device(device)?)))
            .collect::<Result<Vec<_>, InvertError>>()?;
        Ok(Fit {
            layer: meta.layer,
            target,
            features: features.f_to_kind(Kind::Float)?.f_to_device(device)?,
            adapted,
            z: z.map(|z| z.f_to_kind(Kind::Float)?.f_to_device(device))
                .transpose()?,
            report: meta.report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::tiny_generator;

    fn fit(generator: &ProgGan) -> Fit {
        tch::manual_seed(3);
        let r = generator.resolution();
        let pixels = Tensor::randint(256, [1, 3, r, r], (Kind::Float, Device::Cpu));
        let adapted = super::super::adapt::weights_after(generator, "layer4")
            .unwrap()
            .into_iter()
            .map(|name| {
                let t = generator
                    .named_tensors()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .unwrap()
                    .1;
                let moved = &t + 0.25;
                (name, moved)
            })
            .collect();
        let (c, h, w) = generator.layer_shape("layer4").unwrap();
        Fit {
            layer: "layer4".into(),
            target: pixels / 127.5 - 1.0,
            features: Tensor::randn([1, c, h, w], (Kind::Float, Device::Cpu)),
            adapted,
            z: Some(Tensor::randn([1, 16], (Kind::Float, Device::Cpu))),
            report: InversionReport {
                psnr_adapted_db: 31.5,
                total_s: 2.0,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_saved_fit_reads_back_the_same_and_renders_the_same() {
        let generator = tiny_generator(5);
        let original = fit(&generator);
        let dir = std::env::temp_dir().join(format!("ganpaint-saved-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.safetensors");
        original.save(&path).unwrap();
        let read = Fit::load(&path, &generator).unwrap();
        assert_eq!(read.layer, "layer4");
        assert_eq!(read.report, original.report);
        assert!(read.target.allclose(&original.target, 0.0, 1e-6, false));
        assert!(read.features.equal(&original.features));
        assert!(read.z.as_ref().unwrap().equal(original.z.as_ref().unwrap()));
        assert_eq!(read.adapted.len(), original.adapted.len());
        let a = original.generator(&generator).unwrap();
        let b = read.generator(&generator).unwrap();
        let (ia, ib) = tch::no_grad(|| {
            (
                a.forward_from("layer4", &original.features).unwrap(),
                b.forward_from("layer4", &read.features).unwrap(),
            )
        });
        assert!(ia.equal(&ib));
        // A fit stored without z (an encoder without a z head) reads back without one.
        let without = Fit {
            z: None,
            ..fit(&generator)
        };
        without.save(&path).unwrap();
        assert!(Fit::load(&path, &generator).unwrap().z.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fit_for_another_generator_is_refused_naming_the_tensor() {
        let generator = tiny_generator(5);
        let dir = std::env::temp_dir().join(format!("ganpaint-saved-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.safetensors");
        fit(&generator).save(&path).unwrap();
        let other = ProgGan::new(
            crate::model::ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 24, 8],
            },
            Device::Cpu,
        );
        let err = Fit::load(&path, &other).err().unwrap().to_string();
        assert!(
            err.contains("features") || err.contains("adapted."),
            "{err}"
        );
        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = Fit::load(&path, &generator).err().unwrap().to_string();
        assert!(err.contains("a.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
