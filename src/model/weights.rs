//! Reading generator weights from disk, and the model layer's error type.
//!
//! Three containers are accepted, detected by their first bytes rather than the file name:
//! safetensors, and both `torch.save` formats (the zip archive of PyTorch ≥ 1.6 and the
//! legacy pickle stream that GAN Dissection's published `.pth` files use), read by
//! [`super::pth`] without Python. Names are then made canonical: a `state_dict` wrapper
//! and DataParallel's `module.` prefix are dropped, and the old naming `features.N.*` /
//! `output.*` becomes `layer{N+1}.*` / `output_RxR.*`.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::formats::pth::{self, DType, PthError, RawTensor};

/// Everything that can go wrong between a weights file and a running generator.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read weights file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a readable torch checkpoint: {source}")]
    Pth { path: String, source: PthError },
    #[error("{path} is not a readable safetensors file: {detail}")]
    SafeTensors { path: String, detail: String },
    #[error("{path}: tensor `{key}` has dtype {dtype:?}, expected a floating-point type")]
    NotFloat {
        path: String,
        key: String,
        dtype: String,
    },
    #[error("weights are missing `{key}` (expected shape {expected})")]
    MissingKey { key: String, expected: String },
    #[error("weights have unexpected key `{key}` with shape {shape}")]
    UnexpectedKey { key: String, shape: String },
    #[error("weight `{key}` has shape {found} but the model expects {expected}")]
    ShapeMismatch {
        key: String,
        expected: String,
        found: String,
    },
    #[error("not a Progressive GAN generator: {0}")]
    NotAProgGan(String),
    #[error("unknown layer `{layer}`; this model has: {available}")]
    UnknownLayer { layer: String, available: String },
    #[error("z must have shape [N, {expected}], got {found}")]
    BadLatent { expected: i64, found: String },
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
    #[error("--device cuda was asked for, but libtorch sees no CUDA GPU")]
    NoCuda,
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Reads a generator state_dict with canonical names, as CPU tensors.
pub fn read_generator_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let tensors = read_tensors(path)?;
    let resolution = output_resolution(&tensors);
    Ok(tensors
        .into_iter()
        .map(|(name, t)| (canonical_name(&name, resolution), t))
        .collect())
}

/// Reads every tensor in a safetensors or `torch.save` file, with names as stored
/// (minus a `state_dict` wrapper, which [`pth`] removes).
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: shown.clone(),
        source,
    })?;
    if looks_like_safetensors(&bytes) {
        return Tensor::read_safetensors(path).map_err(|e| ModelError::SafeTensors {
            path: shown,
            detail: e.to_string(),
        });
    }
    let raw = pth::read_state_dict_bytes(&bytes).map_err(|source| ModelError::Pth {
        path: shown.clone(),
        source,
    })?;
    raw.into_iter()
        .map(|(name, tensor)| {
            let t = raw_to_tensor(&tensor).ok_or_else(|| ModelError::NotFloat {
                path: shown.clone(),
                key: name.clone(),
                dtype: format!("{:?}", tensor.dtype),
            })??;
            Ok((name, t))
        })
        .collect()
}

/// safetensors starts with a little-endian u64 header length, then a JSON object.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    if bytes.len() < 10 {
        return false;
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    bytes[8] == b'{' && header_len <= (bytes.len() - 8) as u64
}

/// Floating-point tensors only: a generator has no integer weights.
fn raw_to_tensor(raw: &RawTensor) -> Option<Result<Tensor, ModelError>> {
    let kind = match raw.dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        _ => return None,
    };
    let shape: Vec<i64> = raw.shape.iter().map(|&d| d as i64).collect();
    Some(Tensor::f_from_data_size(&raw.data, &shape, kind).map_err(ModelError::from))
}

/// The output block's resolution, needed to rename the old `output.*` keys: read off the
/// number of `features.N` blocks (two per resolution, starting at 4²).
fn output_resolution(tensors: &[(String, Tensor)]) -> i64 {
    let blocks = tensors
        .iter()
        .filter_map(|(name, _)| {
            let rest = strip_wrappers(name).strip_prefix("features.")?;
            rest.split('.').next()?.parse::<i64>().ok()
        })
        .max()
        .map_or(0, |n| n + 1);
    if blocks >= 2 {
        4 << (blocks / 2 - 1)
    } else {
        0
    }
}

fn strip_wrappers(name: &str) -> &str {
    name.strip_prefix("module.").unwrap_or(name)
}

/// Maps `features.N.rest` → `layer{N+1}.rest` and `output.rest` → `output_RxR.rest`;
/// leaves modern names alone.
pub fn canonical_name(name: &str, resolution: i64) -> String {
    let name = strip_wrappers(name);
    if let Some(rest) = name.strip_prefix("features.") {
        if let Some((index, tail)) = rest.split_once('.') {
            if let Ok(n) = index.parse::<usize>() {
                return format!("layer{}.{tail}", n + 1);
            }
        }
    }
    if let Some(tail) = name.strip_prefix("output.") {
        return format!("output_{resolution}x{resolution}.{tail}");
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_names_map_to_layers_and_output() {
        assert_eq!(
            canonical_name("features.0.conv.weight", 64),
            "layer1.conv.weight"
        );
        assert_eq!(
            canonical_name("features.11.wscale.b", 64),
            "layer12.wscale.b"
        );
        assert_eq!(
            canonical_name("output.wscale.b", 256),
            "output_256x256.wscale.b"
        );
        assert_eq!(
            canonical_name("module.layer3.conv.weight", 64),
            "layer3.conv.weight"
        );
        assert_eq!(canonical_name("layer4.wscale.b", 64), "layer4.wscale.b");
    }

    #[test]
    fn safetensors_detection_needs_json_header() {
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}xx");
        assert!(looks_like_safetensors(&bytes));
        assert!(!looks_like_safetensors(b"PK\x03\x04 zipzipzip"));
        assert!(!looks_like_safetensors(b"\x80\x02\x8a\x0a"));
    }
}
