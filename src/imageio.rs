//! Turning generator output into pixels and image files.
//!
//! Pixels follow GAN Dissection: `u8 = clamp((x + 1) / 2 · 255, 0, 255)`, **truncated**
//! toward zero as its `.byte()` does, so our PNGs match its images byte for byte.
//! Encoding happens off the async runtime (in the worker or a blocking task).

use std::io::Cursor;
use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("expected images shaped [N, 3, H, W], got {0}")]
    BadShape(String),
    #[error("cannot encode image: {0}")]
    Encode(String),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// images: [N, 3, H, W] in about [-1, 1] → N RGB images (truncating, as GAN Dissection).
pub fn to_rgb_images(images: &Tensor) -> Result<Vec<RgbImage>, ImageError> {
    let size = images.size();
    if size.len() != 4 || size[1] != 3 {
        return Err(ImageError::BadShape(format!("{size:?}")));
    }
    let (n, h, w) = (size[0] as usize, size[2] as u32, size[3] as u32);
    let bytes = images
        .f_to_kind(Kind::Float)?
        .f_add_scalar(1.0)?
        .f_mul_scalar(127.5)?
        .f_clamp(0.0, 255.0)?
        .f_to_kind(Kind::Uint8)?
        .f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_to_device(Device::Cpu)?;
    let mut flat = vec![0u8; bytes.numel()];
    let numel = flat.len();
    bytes.f_copy_data_u8(&mut flat, numel)?;
    let per_image = (h * w * 3) as usize;
    Ok((0..n)
        .map(|i| {
            RgbImage::from_raw(w, h, flat[i * per_image..(i + 1) * per_image].to_vec())
                .expect("buffer sized from the tensor")
        })
        .collect())
}

/// PNG bytes with fast compression: an edit's latency includes this, so speed wins over size.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(image.as_raw().len() / 2);
    PngEncoder::new_with_quality(
        Cursor::new(&mut out),
        CompressionType::Fast,
        FilterType::Sub,
    )
    .write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(out)
}

/// Tiles equal-size images into a grid `cols` wide, row by row.
pub fn grid(images: &[RgbImage], cols: usize) -> RgbImage {
    let (w, h) = images.first().map_or((1, 1), |i| i.dimensions());
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let mut out = RgbImage::new(w * cols as u32, h * rows as u32);
    for (i, image) in images.iter().enumerate() {
        let (x, y) = ((i % cols) as i64 * w as i64, (i / cols) as i64 * h as i64);
        image::imageops::replace(&mut out, image, x, y);
    }
    out
}

/// JPEG bytes (the gandissect API answers JPEG data URLs at quality 95 or more), baseline
/// with 4:2:0 chroma as PIL writes them. `jpeg-encoder` (its AVX2 path where the CPU has
/// it) encodes a 256² picture in about half the time of `image`'s encoder.
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let (width, height) = image.dimensions();
    let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(ImageError::Encode(format!(
            "a JPEG is at most 65535 pixels a side, not {width}×{height}"
        )));
    };
    let mut out = Vec::with_capacity(image.as_raw().len() / 4);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(image.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(out)
}

pub fn write_png(image: &RgbImage, path: &Path) -> Result<(), ImageError> {
    write_bytes(&encode_png(image)?, path)
}

fn write_bytes(bytes: &[u8], path: &Path) -> Result<(), ImageError> {
    std::fs::write(path, bytes).map_err(|e| ImageError::Write {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// The JPEG quality of pictures written for people to look at ([`write_picture`]).
pub const PICTURE_JPEG_QUALITY: u8 = 90;

/// Writes `image` as a JPEG when `path` ends in `.jpg` or `.jpeg` (any case; quality
/// [`PICTURE_JPEG_QUALITY`]), else as a PNG.
pub fn write_picture(image: &RgbImage, path: &Path) -> Result<(), ImageError> {
    let jpeg = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
    if jpeg {
        write_bytes(&encode_jpeg(image, PICTURE_JPEG_QUALITY)?, path)
    } else {
        write_png(image, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_jpeg_or_png_by_their_extension() {
        let dir = std::env::temp_dir().join(format!("ganpaint-pictures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = RgbImage::from_fn(40, 24, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 10) as u8, 90])
        });
        for (name, magic) in [
            ("a.jpg", &[0xff, 0xd8, 0xff][..]),
            ("b.JPEG", &[0xff, 0xd8, 0xff][..]),
            ("c.png", &[0x89, b'P', b'N', b'G'][..]),
            ("d", &[0x89, b'P', b'N', b'G'][..]),
        ] {
            let path = dir.join(name);
            write_picture(&image, &path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.starts_with(magic), "{name}");
            let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
            assert_eq!(back.dimensions(), (40, 24), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pixels_truncate_and_clamp_like_gandissect() {
        // ((x+1)/2*255).clamp(0,255).byte(): -1→0, 0→127 (127.5 truncated), 1→255, 2→255, -3→0
        let x = Tensor::from_slice(&[-1.0f32, 0.0, 1.0, 2.0, -3.0, 0.5])
            .view([1, 1, 1, 6])
            .repeat([1, 3, 1, 1]);
        let images = to_rgb_images(&x).unwrap();
        let red: Vec<u8> = images[0].pixels().map(|p| p.0[0]).collect();
        assert_eq!(red, vec![0, 127, 255, 255, 0, 191]);
    }

    #[test]
    fn png_round_trips() {
        let image = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
        let png = encode_png(&image).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back, image);
    }

    #[test]
    fn jpeg_decodes_back_close_to_the_picture() {
        // A smooth picture with an edge, of a size that is not a multiple of the 16×16
        // blocks 4:2:0 chroma uses.
        let image = RgbImage::from_fn(70, 45, |x, y| {
            let edge = if x > 35 { 200 } else { 30 };
            image::Rgb([(x * 3) as u8, (y * 5) as u8, edge])
        });
        let jpeg = encode_jpeg(&image, 95).unwrap();
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
        let back = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        assert_eq!(back.dimensions(), image.dimensions());
        let error: f64 = back
            .as_raw()
            .iter()
            .zip(image.as_raw())
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / image.as_raw().len() as f64;
        assert!(error < 3.0, "mean error {error}");
        // A picture past JPEG's 65535-pixel side is an error, not a panic.
        let wide = RgbImage::new(70_000, 1);
        assert!(matches!(encode_jpeg(&wide, 95), Err(ImageError::Encode(_))));
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let x = Tensor::zeros([2, 4, 3, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(to_rgb_images(&x), Err(ImageError::BadShape(_))));
    }
}
