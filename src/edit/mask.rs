//! Masks on the wire, reduced straight to a layer's grid.
//!
//! - Native API: a PNG data URL of any size; a pixel is painted where alpha > 0 (an image
//!   without alpha counts every pixel).
//! - gandissect API: `{shape: [h, w], bitbounds: [y0, x0, y1, x1], bitstring}`. The
//!   bitstring is either a `data:image/png;base64,` URL (painted: alpha > 0 for RGBA, else
//!   red < 255; an empty `shape` defaults to the PNG's size) or a row-major string of
//!   '0'/'1' over the bitbounds box (default shape 256×256). The box sits at
//!   `[y0:y1, x0:x1]`; empty bitbounds mean the whole mask.
//!
//! An edit only ever needs a mask pooled to the layer's grid (8×8 for layer4), so a mask is
//! never held at full resolution: PNG rows are decoded one at a time and each painted pixel
//! is counted into the grid cells whose pooling window holds it ([`GridMask`]). A 4096²
//! 1-bit PNG of 2 KB used to decode to about 130 MB; now it costs a row buffer and the
//! grid. Windows are those of torch's adaptive pooling, so [`GridMask::pooled`] equals
//! `adaptive_max_pool2d` / `adaptive_avg_pool2d` of the full mask exactly. Decoded pixels
//! are charged to a per-request [`PixelBudget`], which bounds the CPU a request can take.

use super::Pooling;

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
    #[error("this mask has {pixels} pixels, which takes the request's masks past their budget of {limit} decoded pixels")]
    OverBudget { pixels: u64, limit: u64 },
}

/// Decoded mask pixels a request may still spend (`--max-mask-pixels`).
#[derive(Clone, Debug)]
pub struct PixelBudget {
    limit: u64,
    spent: u64,
}

impl PixelBudget {
    pub fn new(limit: u64) -> Self {
        PixelBudget { limit, spent: 0 }
    }

    fn charge(&mut self, pixels: u64) -> Result<(), MaskError> {
        if self.spent.saturating_add(pixels) > self.limit {
            return Err(MaskError::OverBudget {
                pixels,
                limit: self.limit,
            });
        }
        self.spent += pixels;
        Ok(())
    }
}

/// A mask reduced to a `height × width` grid as adaptive pooling reduces it: per cell, how
/// many pixels its window holds and how many of those are painted.
#[derive(Clone, Debug, PartialEq)]
pub struct GridMask {
    pub height: usize,
    pub width: usize,
    painted: Vec<u32>,
    window_rows: Vec<u32>,
    window_cols: Vec<u32>,
}

impl GridMask {
    /// The pooled mask, row-major: max pooling gives 1 where any pixel of the cell's
    /// window is painted; mean pooling the painted share, computed as torch does
    /// (`sum / kh / kw` in f32).
    pub fn pooled(&self, pooling: Pooling) -> Vec<f32> {
        (0..self.height * self.width)
            .map(|cell| {
                let painted = self.painted[cell];
                match pooling {
                    Pooling::Max => {
                        if painted > 0 {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Pooling::Mean => {
                        let (kh, kw) = (
                            self.window_rows[cell / self.width],
                            self.window_cols[cell % self.width],
                        );
                        painted as f32 / kh as f32 / kw as f32
                    }
                }
            })
            .collect()
    }
}

/// torch's adaptive pooling windows: output `i` of `out` reads inputs
/// `floor(i·len/out) .. ceil((i+1)·len/out)`. Returns, per input index, the range of
/// outputs whose window holds it, and each output's window length.
fn windows(len: usize, out: usize) -> (Covering, Vec<u32>) {
    let mut covering = vec![(usize::MAX, 0); len];
    let mut lengths = Vec::with_capacity(out);
    for i in 0..out {
        let start = i * len / out;
        let end = ((i + 1) * len).div_ceil(out);
        lengths.push((end - start) as u32);
        for entry in &mut covering[start..end] {
            entry.0 = entry.0.min(i);
            entry.1 = entry.1.max(i + 1);
        }
    }
    (covering, lengths)
}

/// For each mask row (or column), the range of grid rows (or columns) whose window holds it.
type Covering = Vec<(usize, usize)>;

/// Counts painted pixels of an `mh × mw` mask into every grid it is pooled to.
struct Accumulator {
    grids: Vec<(GridMask, Covering, Covering)>,
}

impl Accumulator {
    fn new(mask_height: usize, mask_width: usize, grids: &[(usize, usize)]) -> Self {
        Accumulator {
            grids: grids
                .iter()
                .map(|&(height, width)| {
                    let (rows, window_rows) = windows(mask_height, height);
                    let (cols, window_cols) = windows(mask_width, width);
                    let grid = GridMask {
                        height,
                        width,
                        painted: vec![0; height * width],
                        window_rows,
                        window_cols,
                    };
                    (grid, rows, cols)
                })
                .collect(),
        }
    }

    /// Pixel (y, x) of the full mask is painted.
    fn paint(&mut self, y: usize, x: usize) {
        for (grid, rows, cols) in &mut self.grids {
            let (r0, r1) = rows[y];
            let (c0, c1) = cols[x];
            for i in r0..r1 {
                for j in c0..c1 {
                    grid.painted[i * grid.width + j] += 1;
                }
            }
        }
    }

    fn finish(self) -> Vec<GridMask> {
        self.grids.into_iter().map(|(grid, ..)| grid).collect()
    }
}

/// Which pixels of a mask image count as painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaintedRule {
    /// Native: alpha > 0; an image without alpha is painted everywhere.
    Alpha,
    /// gandissect: alpha > 0 with alpha, else red (or gray) < 255.
    AlphaElseNotWhite,
}

enum ImageKind {
    Png,
    Jpeg,
}

/// A mask image's bytes and size, read from its header before any pixel is decoded.
struct MaskImage {
    bytes: Vec<u8>,
    kind: ImageKind,
    width: u32,
    height: u32,
}

impl MaskImage {
    /// Decodes `data:image/png;base64,…` (or a JPEG, for clients that send one) up to its
    /// header, and checks its size.
    fn open(url: &str) -> Result<MaskImage, MaskError> {
        use crate::formats::data_url::{decode_image, DataUrlError};
        let (_, bytes) = decode_image(url).map_err(|e| match e {
            DataUrlError::NotImageDataUrl(start) => MaskError::NotDataUrl(start),
            DataUrlError::Base64(e) => MaskError::NotDataUrl(format!("bad base64: {e}")),
        })?;
        let not_png = |e: &dyn std::fmt::Display| MaskError::NotPng(e.to_string());
        let (kind, width, height) = if bytes.starts_with(b"\x89PNG") {
            let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
            let reader = decoder.read_info().map_err(|e| not_png(&e))?;
            let info = reader.info();
            (ImageKind::Png, info.width, info.height)
        } else if bytes.starts_with(&[0xff, 0xd8]) {
            use image::ImageDecoder;
            let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&bytes))
                .map_err(|e| not_png(&e))?;
            let (width, height) = decoder.dimensions();
            (ImageKind::Jpeg, width, height)
        } else {
            return Err(MaskError::NotPng("neither a PNG nor a JPEG".into()));
        };
        if width > MAX_MASK_SIDE || height > MAX_MASK_SIDE || width == 0 || height == 0 {
            return Err(MaskError::TooLarge { width, height });
        }
        Ok(MaskImage {
            bytes,
            kind,
            width,
            height,
        })
    }

    fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }

    /// Calls `paint(y, x)` for each painted pixel, decoding one row at a time (a PNG) or
    /// into one bounded buffer (a JPEG, at most 4096² × 3 bytes).
    fn for_each_painted(
        &self,
        rule: PaintedRule,
        mut paint: impl FnMut(usize, usize),
    ) -> Result<(), MaskError> {
        let not_png = |e: &dyn std::fmt::Display| MaskError::NotPng(e.to_string());
        match self.kind {
            ImageKind::Png => {
                let mut decoder = png::Decoder::new_with_limits(
                    std::io::Cursor::new(&self.bytes),
                    png::Limits { bytes: 8 << 20 },
                );
                decoder.set_transformations(png::Transformations::normalize_to_color8());
                let mut reader = decoder.read_info().map_err(|e| not_png(&e))?;
                let (color, _) = reader.output_color_type();
                let channels = color.samples();
                let has_alpha =
                    matches!(color, png::ColorType::GrayscaleAlpha | png::ColorType::Rgba);
                let painted = |pixel: &[u8]| match (has_alpha, rule) {
                    (true, _) => pixel[channels - 1] > 0,
                    (false, PaintedRule::Alpha) => true,
                    (false, PaintedRule::AlphaElseNotWhite) => pixel[0] < 255,
                };
                // Where each decoded row lies: (y, first x, x step). Adam7 passes hold
                // every `dx`-th pixel of every `dy`-th row; empty passes are skipped, as the
                // decoder skips them.
                let (width, height) = (self.width as usize, self.height as usize);
                let placements: Vec<(usize, usize, usize)> = if reader.info().interlaced {
                    ADAM7
                        .iter()
                        .filter(|&&(x0, y0, ..)| x0 < width && y0 < height)
                        .flat_map(|&(x0, y0, dx, dy)| {
                            (y0..height).step_by(dy).map(move |y| (y, x0, dx))
                        })
                        .collect()
                } else {
                    (0..height).map(|y| (y, 0, 1)).collect()
                };
                let mut placements = placements.into_iter();
                while let Some(row) = reader.next_row().map_err(|e| not_png(&e))? {
                    let (y, x0, dx) = placements.next().ok_or_else(|| {
                        MaskError::NotPng("more rows than the header says".into())
                    })?;
                    for (k, pixel) in row.data().chunks_exact(channels).enumerate() {
                        if painted(pixel) {
                            paint(y, x0 + k * dx);
                        }
                    }
                }
            }
            ImageKind::Jpeg => {
                use image::ImageDecoder;
                let decoder =
                    image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&self.bytes))
                        .map_err(|e| not_png(&e))?;
                let channels = decoder.color_type().channel_count() as usize;
                let width = self.width as usize;
                if rule == PaintedRule::Alpha {
                    // No alpha: every pixel is painted, without decoding any.
                    for y in 0..self.height as usize {
                        for x in 0..width {
                            paint(y, x);
                        }
                    }
                    return Ok(());
                }
                let mut buffer = vec![0u8; decoder.total_bytes() as usize];
                decoder.read_image(&mut buffer).map_err(|e| not_png(&e))?;
                for (i, pixel) in buffer.chunks_exact(channels).enumerate() {
                    if pixel[0] < 255 {
                        paint(i / width, i % width);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adam7 passes: (x start, y start, x step, y step).
const ADAM7: [(usize, usize, usize, usize); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

/// A native mask (a PNG data URL, alpha > 0 painted), pooled to each of `grids`.
pub fn pool_png_mask(
    url: &str,
    grids: &[(usize, usize)],
    budget: &mut PixelBudget,
) -> Result<Vec<GridMask>, MaskError> {
    let image = MaskImage::open(url)?;
    budget.charge(image.pixels())?;
    let mut accumulator = Accumulator::new(image.height as usize, image.width as usize, grids);
    image.for_each_painted(PaintedRule::Alpha, |y, x| accumulator.paint(y, x))?;
    Ok(accumulator.finish())
}

/// gandissect's `Mask` record, read exactly as its server does, pooled to each of
/// `grids`.
pub fn pool_gandissect_mask(
    shape: &[i64],
    bitbounds: &[i64],
    bitstring: &str,
    grids: &[(usize, usize)],
    budget: &mut PixelBudget,
) -> Result<Vec<GridMask>, MaskError> {
    let image = if bitstring.starts_with("data:image/") {
        Some(MaskImage::open(bitstring)?)
    } else {
        None
    };
    let shape: Vec<i64> = if shape.is_empty() {
        match &image {
            Some(image) => vec![image.height as i64, image.width as i64],
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
    let (y0, x0) = (y0 as usize, x0 as usize);
    let mut accumulator = Accumulator::new(h as usize, w as usize, grids);
    match image {
        Some(image) => {
            // numpy assignment semantics: the PNG must be exactly the box's size.
            if image.height as usize != box_h || image.width as usize != box_w {
                return Err(bad_bounds());
            }
            budget.charge(image.pixels())?;
            image.for_each_painted(PaintedRule::AlphaElseNotWhite, |y, x| {
                accumulator.paint(y0 + y, x0 + x)
            })?;
        }
        None => {
            let bits = bitstring.as_bytes();
            if bits.len() != box_h * box_w || bits.iter().any(|b| *b != b'0' && *b != b'1') {
                return Err(MaskError::BadBitstring {
                    expected: box_h * box_w,
                    found: bits.len(),
                });
            }
            budget.charge(bits.len() as u64)?;
            for (i, b) in bits.iter().enumerate() {
                if *b == b'1' {
                    accumulator.paint(y0 + i / box_w.max(1), x0 + i % box_w.max(1));
                }
            }
        }
    }
    Ok(accumulator.finish())
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
    crate::formats::data_url::encode("image/png", &png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn budget() -> PixelBudget {
        PixelBudget::new(u64::MAX)
    }

    fn one(url: &str, grid: (usize, usize)) -> GridMask {
        pool_png_mask(url, &[grid], &mut budget())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn png_alpha_marks_painted_pixels() {
        let url = encode_png_mask(4, 2, |x, y| x == 3 && y == 1);
        let mask = one(&url, (2, 4));
        let pooled = mask.pooled(Pooling::Max);
        assert_eq!(pooled.iter().sum::<f32>(), 1.0);
        assert_eq!(pooled[4 + 3], 1.0);
    }

    /// Pooling while decoding equals torch's adaptive pooling of the full mask, for both
    /// poolings, grids smaller and larger than the mask, and sides that do not divide.
    #[test]
    fn pooled_grid_equals_torch_adaptive_pooling_of_the_full_mask() {
        let cases = [
            (32, 32, 8, 8),
            (37, 23, 8, 8),
            (5, 3, 8, 8),
            (64, 48, 7, 5),
            (9, 100, 4, 16),
        ];
        for (k, &(mh, mw, gh, gw)) in cases.iter().enumerate() {
            let painted = |x: u32, y: u32| (x * 7 + y * 13 + k as u32 * 5) % 11 < 4;
            let url = encode_png_mask(mw, mh, painted);
            let grid = one(&url, (gh, gw));
            let full: Vec<f32> = (0..mh)
                .flat_map(|y| (0..mw).map(move |x| if painted(x, y) { 1.0 } else { 0.0 }))
                .collect();
            let full = Tensor::from_slice(&full).view([mh as i64, mw as i64]);
            for pooling in [Pooling::Max, Pooling::Mean] {
                let torch = crate::edit::pool_mask(&full, (gh as i64, gw as i64), pooling)
                    .unwrap()
                    .to_kind(Kind::Float)
                    .flatten(0, -1);
                let torch = Vec::<f32>::try_from(torch).unwrap();
                let ours = grid.pooled(pooling);
                let same = ours
                    .iter()
                    .zip(&torch)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{mh}×{mw} → {gh}×{gw} {pooling:?}: {ours:?} vs {torch:?}"
                );
            }
        }
    }

    /// An Adam7-interlaced 8-bit RGBA PNG, written by hand (filter 0 on every row).
    fn interlaced_rgba_png(image: &image::RgbaImage) -> Vec<u8> {
        use std::io::Write;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut raw = Vec::new();
        for &(x0, y0, dx, dy) in &ADAM7 {
            if x0 >= w || y0 >= h {
                continue;
            }
            for y in (y0..h).step_by(dy) {
                raw.push(0);
                for x in (x0..w).step_by(dx) {
                    raw.extend_from_slice(&image.get_pixel(x as u32, y as u32).0);
                }
            }
        }
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&raw).unwrap();
        let idat = zlib.finish().unwrap();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(w as u32).to_be_bytes());
        ihdr.extend_from_slice(&(h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 1]); // depth 8, RGBA, deflate, filter 0, Adam7
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", Vec::new())] {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(&data);
            png.extend_from_slice(kind);
            png.extend_from_slice(&data);
            png.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        png
    }

    #[test]
    fn interlaced_png_pools_like_the_plain_one() {
        let painted = |x: u32, y: u32| (x + 2 * y).is_multiple_of(5) || (x > 20 && y < 9);
        let image = image::RgbaImage::from_fn(29, 19, |x, y| {
            image::Rgba([0, 0, 0, if painted(x, y) { 255 } else { 0 }])
        });
        let png = interlaced_rgba_png(&image);
        let url = crate::formats::data_url::encode("image/png", &png);
        let plain = encode_png_mask(29, 19, painted);
        assert_eq!(one(&url, (8, 8)), one(&plain, (8, 8)));
    }

    #[test]
    fn gandissect_png_mask_defaults_to_png_size() {
        let url = encode_png_mask(32, 32, |x, _| x < 16);
        let mask = pool_gandissect_mask(&[], &[], &url, &[(32, 32)], &mut budget()).unwrap();
        assert_eq!((mask[0].height, mask[0].width), (32, 32));
        assert_eq!(mask[0].pooled(Pooling::Max).iter().sum::<f32>(), 512.0);
    }

    #[test]
    fn gandissect_bitstring_fills_the_box_row_major() {
        let mask = pool_gandissect_mask(&[4, 4], &[1, 1, 3, 3], "1001", &[(4, 4)], &mut budget())
            .unwrap()
            .remove(0)
            .pooled(Pooling::Max);
        assert_eq!((mask[4 + 1], mask[4 + 2], mask[2 * 4 + 2]), (1.0, 0.0, 1.0));
        assert_eq!(mask.iter().sum::<f32>(), 2.0);
        // Default shape 256×256: the 1×2 box lands in cell (0, 0) of an 8×8 grid.
        let default = pool_gandissect_mask(&[], &[0, 0, 1, 2], "11", &[(8, 8)], &mut budget())
            .unwrap()
            .remove(0)
            .pooled(Pooling::Mean);
        assert_eq!(default[0], 2.0 / 32.0 / 32.0);
    }

    #[test]
    fn bad_masks_are_named_errors() {
        let grid = [(8, 8)];
        assert!(matches!(
            pool_png_mask("hello", &grid, &mut budget()),
            Err(MaskError::NotDataUrl(_))
        ));
        assert!(matches!(
            pool_png_mask("data:image/png;base64,AAAA", &grid, &mut budget()),
            Err(MaskError::NotPng(_))
        ));
        assert!(matches!(
            pool_gandissect_mask(&[4, 4], &[0, 0, 2, 2], "101", &grid, &mut budget()),
            Err(MaskError::BadBitstring { .. })
        ));
        assert!(matches!(
            pool_gandissect_mask(&[4, 4], &[0, 0, 5, 2], "1", &grid, &mut budget()),
            Err(MaskError::BadBounds { .. })
        ));
        assert!(matches!(
            pool_gandissect_mask(&[0, 4], &[], "1", &grid, &mut budget()),
            Err(MaskError::BadShape(_))
        ));
    }

    #[test]
    fn oversized_png_is_refused_before_decoding() {
        let url = encode_png_mask(MAX_MASK_SIDE + 1, 1, |_, _| true);
        assert!(matches!(
            pool_png_mask(&url, &[(8, 8)], &mut budget()),
            Err(MaskError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_pixel_budget_spans_the_masks_of_a_request() {
        let url = encode_png_mask(100, 100, |_, _| true);
        let mut budget = PixelBudget::new(25_000);
        assert!(pool_png_mask(&url, &[(8, 8)], &mut budget).is_ok());
        assert!(pool_png_mask(&url, &[(8, 8)], &mut budget).is_ok());
        assert_eq!(
            pool_png_mask(&url, &[(8, 8)], &mut budget),
            Err(MaskError::OverBudget {
                pixels: 10_000,
                limit: 25_000
            })
        );
    }
}
