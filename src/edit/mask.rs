//! Masks on the wire, decoded to `[h, w]` f32 tensors of 0/1.
//!
//! - Native API: a PNG data URL of any size; a pixel is painted where alpha > 0 (an image
//!   without alpha counts every pixel).
//! - gandissect API: `{shape: [h, w], bitbounds: [y0, x0, y1, x1], bitstring}`. The
//!   bitstring is either a `data:image/png;base64,` URL (painted: alpha > 0 for RGBA, else
//!   red < 255; an empty `shape` defaults to the PNG's size) or a row-major string of
//!   '0'/'1' over the bitbounds box (default shape 256×256). The box sits at
//!   `[y0:y1, x0:x1]`; empty bitbounds mean the whole mask.

use base64::Engine;
use tch::Tensor;

/// The largest mask side accepted, so a hostile PNG header cannot make us allocate
/// gigabytes.
pub const MAX_MASK_SIDE: u32 = 4096;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaskError {
    #[error("mask is not a base64 PNG data URL (expected `data:image/png;base64,…`): {0}")]
    NotDataUrl(String),
    #[error("mask is not a decodable PNG: {0}")]
    NotPng(String),
    #[error("mask is {width}×{height}; the largest accepted side is {MAX_MASK_SIDE}")]
    TooLarge { width: u32, height: u32 },
    #[error("mask shape {0:?} must be two positive sides of at most {MAX_MASK_SIDE}")]
    BadShape(Vec<i64>),
    #[error("mask bitbounds {bounds:?} do not fit in shape {shape:?}")]
    BadBounds { bounds: Vec<i64>, shape: Vec<i64> },
    #[error("mask bitstring has {found} bits but the box holds {expected}, or has characters other than 0/1")]
    BadBitstring { expected: usize, found: usize },
}

/// Decodes `data:image/png;base64,…` (or a JPEG, for clients that send one) into an
/// RGBA image and whether the source had an alpha channel, checking the size from the
/// header before decoding pixels.
fn decode_data_url(url: &str) -> Result<(image::RgbaImage, bool), MaskError> {
    let (_, payload) = url
        .split_once(";base64,")
        .filter(|(head, _)| head.starts_with("data:image/"))
        .ok_or_else(|| MaskError::NotDataUrl(url.chars().take(40).collect()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| MaskError::NotDataUrl(format!("bad base64: {e}")))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| MaskError::NotPng(e.to_string()))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| MaskError::NotPng(e.to_string()))?;
    if width > MAX_MASK_SIDE || height > MAX_MASK_SIDE || width == 0 || height == 0 {
        return Err(MaskError::TooLarge { width, height });
    }
    let decoded = image::load_from_memory(&bytes).map_err(|e| MaskError::NotPng(e.to_string()))?;
    Ok((decoded.to_rgba8(), decoded.color().has_alpha()))
}

fn to_tensor(values: Vec<f32>, h: i64, w: i64) -> Tensor {
    Tensor::from_slice(&values).view([h, w])
}

/// Native masks: alpha > 0 is painted.
pub fn decode_png_mask(url: &str) -> Result<Tensor, MaskError> {
    let (image, _) = decode_data_url(url)?;
    let values = image
        .pixels()
        .map(|p| if p.0[3] > 0 { 1.0 } else { 0.0 })
        .collect();
    Ok(to_tensor(
        values,
        image.height() as i64,
        image.width() as i64,
    ))
}

/// gandissect's `Mask` record, decoded exactly as its server does.
pub fn decode_gandissect_mask(
    shape: &[i64],
    bitbounds: &[i64],
    bitstring: &str,
) -> Result<Tensor, MaskError> {
    let png = if bitstring.starts_with("data:image/") {
        Some(decode_data_url(bitstring)?)
    } else {
        None
    };
    let shape: Vec<i64> = if shape.is_empty() {
        match &png {
            Some((image, _)) => vec![image.height() as i64, image.width() as i64],
            None => vec![256, 256],
        }
    } else {
        shape.to_vec()
    };
    if shape.len() != 2 || shape.iter().any(|&s| s <= 0 || s > MAX_MASK_SIDE as i64) {
        return Err(MaskError::BadShape(shape));
    }
    let (h, w) = (shape[0], shape[1]);
    let bounds: Vec<i64> = if bitbounds.is_empty() {
        vec![0, 0, h, w]
    } else {
        bitbounds.to_vec()
    };
    let bad_bounds = || MaskError::BadBounds {
        bounds: bounds.clone(),
        shape: shape.clone(),
    };
    if bounds.len() != 4 {
        return Err(bad_bounds());
    }
    let (y0, x0, y1, x1) = (bounds[0], bounds[1], bounds[2], bounds[3]);
    if y0 < 0 || x0 < 0 || y1 > h || x1 > w || y1 < y0 || x1 < x0 {
        return Err(bad_bounds());
    }
    let (box_h, box_w) = ((y1 - y0) as usize, (x1 - x0) as usize);
    let mut values = vec![0f32; (h * w) as usize];
    let mut set = |by: usize, bx: usize, on: bool| {
        values[(y0 as usize + by) * w as usize + x0 as usize + bx] = if on { 1.0 } else { 0.0 };
    };
    match png {
        Some((image, has_alpha)) => {
            // numpy assignment semantics: the PNG must be exactly the box's size.
            if image.height() as usize != box_h || image.width() as usize != box_w {
                return Err(bad_bounds());
            }
            for (x, y, p) in image.enumerate_pixels() {
                let on = if has_alpha { p.0[3] > 0 } else { p.0[0] < 255 };
                set(y as usize, x as usize, on);
            }
        }
        None => {
            let bits = bitstring.as_bytes();
            if bits.len() != box_h * box_w || bits.iter().any(|b| *b != b'0' && *b != b'1') {
                return Err(MaskError::BadBitstring {
                    expected: box_h * box_w,
                    found: bits.len(),
                });
            }
            for (i, b) in bits.iter().enumerate() {
                set(i / box_w.max(1), i % box_w.max(1), *b == b'1');
            }
        }
    }
    Ok(to_tensor(values, h, w))
}

/// A PNG data URL of an RGBA mask, for tests and clients.
pub fn encode_png_mask(width: u32, height: u32, painted: impl Fn(u32, u32) -> bool) -> String {
    let image = image::RgbaImage::from_fn(width, height, |x, y| {
        if painted(x, y) {
            image::Rgba([255, 0, 0, 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        }
    });
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode to memory");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_alpha_marks_painted_pixels() {
        let url = encode_png_mask(4, 2, |x, y| x == 3 && y == 1);
        let mask = decode_png_mask(&url).unwrap();
        assert_eq!(mask.size(), vec![2, 4]);
        assert_eq!(mask.sum(tch::Kind::Float).double_value(&[]), 1.0);
        assert_eq!(mask.double_value(&[1, 3]), 1.0);
    }

    #[test]
    fn gandissect_png_mask_defaults_to_png_size() {
        let url = encode_png_mask(32, 32, |x, _| x < 16);
        let mask = decode_gandissect_mask(&[], &[], &url).unwrap();
        assert_eq!(mask.size(), vec![32, 32]);
        assert_eq!(mask.sum(tch::Kind::Float).double_value(&[]), 512.0);
    }

    #[test]
    fn gandissect_bitstring_fills_the_box_row_major() {
        let mask = decode_gandissect_mask(&[4, 4], &[1, 1, 3, 3], "1001").unwrap();
        assert_eq!(mask.double_value(&[1, 1]), 1.0);
        assert_eq!(mask.double_value(&[1, 2]), 0.0);
        assert_eq!(mask.double_value(&[2, 2]), 1.0);
        assert_eq!(mask.sum(tch::Kind::Float).double_value(&[]), 2.0);
        let default = decode_gandissect_mask(&[], &[0, 0, 1, 2], "11").unwrap();
        assert_eq!(default.size(), vec![256, 256]);
    }

    #[test]
    fn bad_masks_are_named_errors() {
        assert!(matches!(
            decode_png_mask("hello"),
            Err(MaskError::NotDataUrl(_))
        ));
        assert!(matches!(
            decode_png_mask("data:image/png;base64,AAAA"),
            Err(MaskError::NotPng(_))
        ));
        assert!(matches!(
            decode_gandissect_mask(&[4, 4], &[0, 0, 2, 2], "101"),
            Err(MaskError::BadBitstring { .. })
        ));
        assert!(matches!(
            decode_gandissect_mask(&[4, 4], &[0, 0, 5, 2], "1"),
            Err(MaskError::BadBounds { .. })
        ));
        assert!(matches!(
            decode_gandissect_mask(&[0, 4], &[], "1"),
            Err(MaskError::BadShape(_))
        ));
    }

    #[test]
    fn oversized_png_is_refused_before_decoding() {
        let url = encode_png_mask(MAX_MASK_SIDE + 1, 1, |_, _| true);
        assert!(matches!(
            decode_png_mask(&url),
            Err(MaskError::TooLarge { .. })
        ));
    }
}
