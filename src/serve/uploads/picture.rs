//! An uploaded file → the picture the model reconstructs. Only still PNG and JPEG are
//! taken, recognised by their bytes (not by what the client says they are); the size is
//! read from the header and checked against the pixel budget before anything is decoded.
//! The picture is then centre-cropped to a square and resized to the model's resolution
//! ([`crate::invert::fit_picture`]). Every refusal is a message for the `image` field.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, RgbImage};

/// A decoded upload.
pub struct Picture {
    /// The file's size in pixels.
    pub width: u32,
    pub height: u32,
    /// The picture at the model's resolution, `R × R` RGB.
    pub fitted: RgbImage,
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = &[0xff, 0xd8, 0xff];

/// What the bytes are.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, String> {
    if bytes.starts_with(PNG_MAGIC) {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(JPEG_MAGIC) {
        return Ok(ImageFormat::Jpeg);
    }
    let what = if bytes.is_empty() {
        "empty"
    } else if bytes.starts_with(b"GIF8") {
        "a GIF"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "a WebP"
    } else {
        "not a picture this server reads"
    };
    Err(format!("the file is {what}; upload a PNG or JPEG"))
}

/// Checks, decodes and fits an uploaded file (see the module docs). `max_pixels` bounds
/// `width × height` of the file.
pub fn decode_upload(bytes: &[u8], max_pixels: u64, resolution: u32) -> Result<Picture, String> {
    let format = sniff(bytes)?;
    let (width, height) = match format {
        ImageFormat::Png => {
            let decoder = png::Decoder::new(Cursor::new(bytes));
            let reader = decoder
                .read_info()
                .map_err(|_| "the PNG is corrupt: its header cannot be read".to_string())?;
            let info = reader.info();
            if info.animation_control.is_some() {
                return Err("the PNG is animated (APNG); upload a still PNG or JPEG".to_string());
            }
            (info.width, info.height)
        }
        _ => ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| format!("the JPEG is corrupt: {e}"))?,
    };
    let pixels = width as u64 * height as u64;
    if pixels == 0 {
        return Err("the picture has no pixels".to_string());
    }
    if pixels > max_pixels {
        return Err(format!(
            "the picture is {width}×{height} = {pixels} pixels, more than the {max_pixels} \
             this server takes (--max-upload-pixels); scale it down first"
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGBA at 16 bits per channel, with room for the decoder's own buffers.
    limits.max_alloc = Some(pixels * 8 * 2 + (16 << 20));
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| {
        let name = if format == ImageFormat::Png {
            "PNG"
        } else {
            "JPEG"
        };
        format!("the {name} is corrupt: {e}")
    })?;
    let rgb = decoded.to_rgb8();
    let fitted = crate::invert::fit_picture(&rgb, resolution).map_err(|e| e.to_string())?;
    Ok(Picture {
        width,
        height,
        fitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        crate::imageio::encode_png(&image).unwrap()
    }

    #[test]
    fn a_png_and_a_jpeg_are_fitted_to_the_resolution() {
        let picture = decode_upload(&png(40, 20), 10_000, 16).unwrap();
        assert_eq!((picture.width, picture.height), (40, 20));
        assert_eq!(picture.fitted.dimensions(), (16, 16));
        let image = RgbImage::from_fn(16, 16, |_, _| image::Rgb([200, 10, 10]));
        let jpeg = crate::imageio::encode_jpeg(&image, 95).unwrap();
        let picture = decode_upload(&jpeg, 10_000, 16).unwrap();
        assert_eq!((picture.width, picture.height), (16, 16));
        let p = picture.fitted.get_pixel(8, 8).0;
        assert!(p[0] > 180 && p[1] < 40, "{p:?}");
    }

    #[test]
    fn other_formats_corrupt_files_and_oversized_pictures_are_refused_by_name() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (b"GIF89a\x01\x00".to_vec(), "GIF"),
            (b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), "WebP"),
            (b"hello".to_vec(), "PNG or JPEG"),
            (png(8, 8)[..30].to_vec(), "corrupt"),
            ([JPEG_MAGIC, b"\xe0garbage"].concat(), "corrupt"),
            (png(200, 100), "20000 pixels"),
        ];
        for (bytes, expected) in cases {
            let err = decode_upload(&bytes, 10_000, 16).err().unwrap();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn an_animated_png_is_refused() {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, 4, 4);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_animated(2, 0).unwrap();
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&[0u8; 48]).unwrap();
            writer.write_image_data(&[9u8; 48]).unwrap();
            writer.finish().unwrap();
        }
        let err = decode_upload(&bytes, 10_000, 16).err().unwrap();
        assert!(err.contains("animated"), "{err}");
    }
}
