//! Procedural outdoor church scenes with an exact per-pixel label map.
//!
//! GAN Dissection needs two things that cannot be downloaded here: a generator trained on
//! pictures that contain nameable concepts, and a segmenter that names them. This module is the
//! stand-in for the LSUN church set behind both. Every picture comes with the label of every
//! pixel, so the segmenter trains on exact masks, and `render` is cheap enough (about a
//! millisecond at 64x64 in release on one busy core) that training draws a fresh scene for every
//! sample instead of reading a fixed dataset.
//!
//! Why the scenes look the way they do:
//! - Layout is decided in normalised coordinates (0..1 across and down), so a seed draws the same
//!   scene at every size and only the sharpness changes.
//! - Concepts are large coherent regions. Dissection scores a unit by how well its activation map
//!   overlaps a concept mask on an 8x8 grid at 64x64, so a concept must cover whole cells to be
//!   measurable, and a user must be able to paint it in. Doors and windows therefore have minimum
//!   sizes that are larger than a strict scale model would give.
//! - Composition, count, scale, colour and lighting are sampled widely, because a GAN only
//!   devotes units to factors that vary across its training set.
//! - Pictures are painted at 2x to 4x the requested size (3x at 64) and box-filtered; labels are
//!   the majority vote of the subpixels, so edges are clean and each label matches what is
//!   visible.
//! - Layers are painted back to front (sky, clouds, distant trees, ground, then buildings and trees
//!   sorted by how far down the picture they stand), so occlusion falls out of painting order.
//!
//! Everything random comes from one inline SplitMix64 stream seeded by the caller, plus integer
//! hashes of positions for texture: no dependency and no global state, so a seed is a complete
//! description of its scene. (A few shaders call `sin`, `powf` and `asin`, whose last bit may
//! differ between libm builds; a seed is reproducible bit for bit on one platform.)

use std::f32::consts::PI;

/// Names of the label values, indexed by label (defined beside the segmenter that
/// labels them, [`crate::segment::demo::CLASSES`], so that the segmenter needs nothing
/// from this room).
pub use crate::segment::demo::CLASSES;

/// Smallest side `render` accepts; below it doors and windows fall under a pixel.
pub const MIN_SIZE: usize = 32;
/// Largest side `render` accepts; above it a scene costs more than training can afford.
pub const MAX_SIZE: usize = 256;

const SKY: u8 = 0;
const CLOUD: u8 = 1;
const GRASS: u8 = 2;
const TREE: u8 = 3;
const BRICK: u8 = 4;
const DOME: u8 = 5;
const DOOR: u8 = 6;
const WINDOW: u8 = 7;
const ROOF: u8 = 8;
const PATH: u8 = 9;

/// The side of the supersampled canvas that outputs aim for: 3x at 64, 4x at 32, and never
/// below 2x. 3x3 subpixels already give clean edges at 64, and 4x4 would cost 78% more in
/// the renderer that training calls for every sample.
const SUPERSAMPLED_SIDE: usize = 192;

/// One rendered picture and its labels.
pub struct Scene {
    /// Width and height in pixels.
    pub size: usize,
    /// `size * size * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
    /// `size * size` labels, row-major, each an index into [`CLASSES`].
    pub labels: Vec<u8>,
}

/// The label value of a class name, if it is one of [`CLASSES`].
pub fn class_index(name: &str) -> Option<usize> {
    CLASSES.iter().position(|&class| class == name)
}

/// Renders the scene for `seed` at `size` x `size` pixels.
///
/// The same `(seed, size)` always gives the same bytes; the same seed at another size gives the
/// same scene, resampled.
///
/// # Panics
///
/// If `size` is outside [`MIN_SIZE`]`..=`[`MAX_SIZE`]: callers are internal and pick the size
/// once, so a wrong one is a programming error rather than input to recover from.
pub fn render(seed: u64, size: usize) -> Scene {
    assert!(
        (MIN_SIZE..=MAX_SIZE).contains(&size),
        "scene size {size} is outside {MIN_SIZE}..={MAX_SIZE}"
    );
    let mut rng = SplitMix64(seed);
    let plan = Plan::sample(&mut rng);
    let supersample = (SUPERSAMPLED_SIDE / size).clamp(2, 4);
    let mut canvas = Canvas::new(size * supersample);
    plan.paint(&mut canvas);
    canvas.resolve(size, supersample, &plan.grade)
}

// ---------------------------------------------------------------------------------------------
// Randomness and noise

/// SplitMix64: tiny, fast, and good enough to choose scene parameters.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 24 bits so every value is exact in f32.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    fn range(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.unit()
    }

    fn chance(&mut self, probability: f32) -> bool {
        self.unit() < probability
    }

    fn below(&mut self, count: usize) -> usize {
        (self.next_u64() % count as u64) as usize
    }

    /// An index drawn with the given relative weights.
    fn weighted(&mut self, weights: &[f32]) -> usize {
        let total: f32 = weights.iter().sum();
        let mut target = self.unit() * total;
        for (index, weight) in weights.iter().enumerate() {
            if target < *weight {
                return index;
            }
            target -= weight;
        }
        weights.len() - 1
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn vary_pick(&mut self, colors: &[Rgb], amount: f32) -> Rgb {
        let color = self.pick(colors);
        self.vary(color, amount)
    }

    fn salt(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A colour with each channel moved by up to `amount`, so palettes never repeat exactly.
    fn vary(&mut self, color: Rgb, amount: f32) -> Rgb {
        let shift = self.range(-amount, amount);
        [
            (color[0] + shift + self.range(-amount, amount) * 0.5).clamp(0.0, 1.0),
            (color[1] + shift + self.range(-amount, amount) * 0.5).clamp(0.0, 1.0),
            (color[2] + shift + self.range(-amount, amount) * 0.5).clamp(0.0, 1.0),
        ]
    }
}

/// A cheap integer hash of a lattice point. Textures only need it to look irregular, and it runs
/// several times per subpixel, so it trades statistical quality for two multiplies.
fn hash(x: i32, y: i32, salt: u32) -> u32 {
    let mut h = (x as u32).wrapping_mul(0x27D4_EB2D) ^ (y as u32).wrapping_mul(0x1656_67B1) ^ salt;
    h = (h ^ (h >> 15)).wrapping_mul(0x2C1B_3C6D);
    h ^ (h >> 13)
}

fn hash_unit(x: i32, y: i32, salt: u32) -> f32 {
    (hash(x, y, salt) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// `f32::floor` for the small coordinates used here. Without SSE4.1 the standard one is a libm
/// call, and texture lookups make millions of them per scene.
fn fast_floor(x: f32) -> f32 {
    let truncated = x as i32 as f32;
    if truncated > x {
        truncated - 1.0
    } else {
        truncated
    }
}

/// Smooth value noise in [0, 1] with features about one lattice unit across.
fn value_noise(x: f32, y: f32, salt: u32) -> f32 {
    let (floor_x, floor_y) = (fast_floor(x), fast_floor(y));
    let (fx, fy) = (x - floor_x, y - floor_y);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (floor_x as i32, floor_y as i32);
    let top = lerp(hash_unit(ix, iy, salt), hash_unit(ix + 1, iy, salt), sx);
    let bottom = lerp(
        hash_unit(ix, iy + 1, salt),
        hash_unit(ix + 1, iy + 1, salt),
        sx,
    );
    lerp(top, bottom, sy)
}

// ---------------------------------------------------------------------------------------------
// Small geometry and colour helpers

type Rgb = [f32; 3];
type Vec3 = [f32; 3];
type Point = (f32, f32);

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        lerp(a[0], b[0], t),
        lerp(a[1], b[1], t),
        lerp(a[2], b[2], t),
    ]
}

fn scale(color: Rgb, factor: f32) -> Rgb {
    [color[0] * factor, color[1] * factor, color[2] * factor]
}

fn modulate(a: Rgb, b: Rgb) -> Rgb {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}

fn add(a: Rgb, b: Rgb) -> Rgb {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn luma(color: Rgb) -> f32 {
    0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
}

fn dot(a: Vec3, b: Vec3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalize(v: Vec3) -> Vec3 {
    let length = dot(v, v).sqrt().max(1e-6);
    [v[0] / length, v[1] / length, v[2] / length]
}

/// The normal of a wall facing the viewer. Picture coordinates run right and down, so "up" in
/// normals is negative y, and positive z points at the viewer.
const FACING_VIEWER: Vec3 = [0.0, 0.0, 1.0];
const FACING_UP: Vec3 = [0.0, -1.0, 0.0];

#[derive(Clone, Copy)]
struct Bounds {
    left: f32,
    top: f32,
    right: f32,
    bottom: f32,
}

impl Bounds {
    const FULL: Bounds = Bounds {
        left: 0.0,
        top: 0.0,
        right: 1.0,
        bottom: 1.0,
    };

    fn around(points: &[Point]) -> Bounds {
        let mut bounds = Bounds {
            left: f32::MAX,
            top: f32::MAX,
            right: f32::MIN,
            bottom: f32::MIN,
        };
        for &(x, y) in points {
            bounds.left = bounds.left.min(x);
            bounds.right = bounds.right.max(x);
            bounds.top = bounds.top.min(y);
            bounds.bottom = bounds.bottom.max(y);
        }
        bounds
    }
}

#[derive(Clone, Copy)]
struct Ellipse {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
}

impl Ellipse {
    /// Squared normalised distance from the centre: below 1 inside.
    fn radius2(&self, x: f32, y: f32) -> f32 {
        let dx = (x - self.cx) / self.rx;
        let dy = (y - self.cy) / self.ry;
        dx * dx + dy * dy
    }

    fn bounds(&self, growth: f32) -> Bounds {
        Bounds {
            left: self.cx - self.rx * growth,
            top: self.cy - self.ry * growth,
            right: self.cx + self.rx * growth,
            bottom: self.cy + self.ry * growth,
        }
    }
}

/// An axis-aligned rectangle in picture coordinates; `bottom` is below `top`.
#[derive(Clone, Copy)]
struct Rect {
    left: f32,
    top: f32,
    right: f32,
    bottom: f32,
}

impl Rect {
    fn width(&self) -> f32 {
        self.right - self.left
    }

    fn center_x(&self) -> f32 {
        (self.left + self.right) * 0.5
    }

    fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.left && x <= self.right && y >= self.top && y <= self.bottom
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            left: self.left,
            top: self.top,
            right: self.right,
            bottom: self.bottom,
        }
    }

    fn grow(&self, margin: f32) -> Rect {
        Rect {
            left: self.left - margin,
            top: self.top - margin,
            right: self.right + margin,
            bottom: self.bottom + margin,
        }
    }

    fn overlaps_x(&self, left: f32, right: f32) -> bool {
        self.left < right && left < self.right
    }
}

fn inside_convex(polygon: &[Point], x: f32, y: f32) -> bool {
    let mut winding = 0.0f32;
    for (index, &(ax, ay)) in polygon.iter().enumerate() {
        let (bx, by) = polygon[(index + 1) % polygon.len()];
        let cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
        if cross != 0.0 {
            if winding == 0.0 {
                winding = cross.signum();
            } else if cross.signum() != winding {
                return false;
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Canvas: the supersampled picture being painted

struct Canvas {
    side: usize,
    rgb: Vec<Rgb>,
    labels: Vec<u8>,
}

impl Canvas {
    fn new(side: usize) -> Canvas {
        Canvas {
            side,
            rgb: vec![[0.0; 3]; side * side],
            labels: vec![SKY; side * side],
        }
    }

    /// Indices of the pixels whose centres fall in `low..=high` along one axis.
    fn span(&self, low: f32, high: f32) -> std::ops::Range<usize> {
        let side = self.side as f32;
        let start = (low * side - 0.5).ceil().clamp(0.0, side) as usize;
        let end = ((high * side - 0.5).floor() + 1.0).clamp(0.0, side) as usize;
        start.min(end)..end
    }

    /// Calls `shader` with the centre of every pixel in `area`; where it returns a colour, the
    /// pixel takes that colour and `label`.
    fn paint(&mut self, area: Bounds, label: u8, mut shader: impl FnMut(f32, f32) -> Option<Rgb>) {
        let inverse = 1.0 / self.side as f32;
        let columns = self.span(area.left, area.right);
        for row in self.span(area.top, area.bottom) {
            let y = (row as f32 + 0.5) * inverse;
            for column in columns.clone() {
                let x = (column as f32 + 0.5) * inverse;
                if let Some(color) = shader(x, y) {
                    let index = row * self.side + column;
                    self.rgb[index] = color;
                    self.labels[index] = label;
                }
            }
        }
    }

    /// Like `paint`, but the shader also gives an opacity; a pixel changes label only where the
    /// new layer is at least half opaque, so soft edges blend without stray labels.
    fn blend(
        &mut self,
        area: Bounds,
        label: u8,
        mut shader: impl FnMut(f32, f32) -> Option<(Rgb, f32)>,
    ) {
        let inverse = 1.0 / self.side as f32;
        let columns = self.span(area.left, area.right);
        for row in self.span(area.top, area.bottom) {
            let y = (row as f32 + 0.5) * inverse;
            for column in columns.clone() {
                let x = (column as f32 + 0.5) * inverse;
                if let Some((color, alpha)) = shader(x, y) {
                    let index = row * self.side + column;
                    self.rgb[index] = mix(self.rgb[index], color, alpha.clamp(0.0, 1.0));
                    if alpha >= 0.5 {
                        self.labels[index] = label;
                    }
                }
            }
        }
    }

    /// Multiplies the colour of pixels labelled `target` by what `shader` gives; used for cast
    /// shadows, which darken the ground without changing what it is.
    fn darken(&mut self, area: Bounds, target: &[u8], mut shader: impl FnMut(f32, f32) -> f32) {
        let inverse = 1.0 / self.side as f32;
        let columns = self.span(area.left, area.right);
        for row in self.span(area.top, area.bottom) {
            let y = (row as f32 + 0.5) * inverse;
            for column in columns.clone() {
                let index = row * self.side + column;
                if target.contains(&self.labels[index]) {
                    let x = (column as f32 + 0.5) * inverse;
                    self.rgb[index] = scale(self.rgb[index], shader(x, y));
                }
            }
        }
    }

    /// Box-filters colours and majority-votes labels down to `size`, then applies the grade.
    fn resolve(&self, size: usize, supersample: usize, grade: &Grade) -> Scene {
        let mut rgb = Vec::with_capacity(size * size * 3);
        let mut labels = Vec::with_capacity(size * size);
        let samples = (supersample * supersample) as f32;
        for out_y in 0..size {
            for out_x in 0..size {
                let mut sum = [0.0f32; 3];
                let mut votes = [0u8; CLASSES.len()];
                for sub_y in 0..supersample {
                    let row = (out_y * supersample + sub_y) * self.side + out_x * supersample;
                    for index in row..row + supersample {
                        sum = add(sum, self.rgb[index]);
                        votes[self.labels[index] as usize] += 1;
                    }
                }
                // Ties go to the later class: those are the small foreground ones (door over
                // brick, tree over grass), which would otherwise lose every close call.
                let mut label = 0;
                for (class, &count) in votes.iter().enumerate() {
                    if count >= votes[label] {
                        label = class;
                    }
                }
                labels.push(label as u8);
                let x = (out_x as f32 + 0.5) / size as f32;
                let y = (out_y as f32 + 0.5) / size as f32;
                let grain = hash_unit(out_x as i32, out_y as i32, grade.salt) - 0.5;
                let color = grade.apply(scale(sum, 1.0 / samples), x, y, grain);
                rgb.extend(
                    color
                        .iter()
                        .map(|channel| (channel.clamp(0.0, 1.0) * 255.0 + 0.5) as u8),
                );
            }
        }
        Scene { size, rgb, labels }
    }
}

// ---------------------------------------------------------------------------------------------
// Light and atmosphere

struct Light {
    /// Unit vector towards the sun.
    direction: Vec3,
    color: Rgb,
    /// Share of brightness a surface keeps when facing away from the sun; high under overcast
    /// skies, which is what flattens their shading.
    ambient: f32,
}

impl Light {
    fn intensity(&self, normal: Vec3) -> f32 {
        self.ambient + (1.0 - self.ambient) * dot(normal, self.direction).max(0.0)
    }

    fn shade(&self, albedo: Rgb, normal: Vec3) -> Rgb {
        modulate(scale(albedo, self.intensity(normal)), self.color)
    }
}

struct Atmosphere {
    light: Light,
    horizon: f32,
    haze_color: Rgb,
    /// How much of the haze colour the farthest objects take on.
    haze: f32,
}

impl Atmosphere {
    /// Aerial perspective: things standing near the horizon line are far away and fade towards
    /// the sky colour, which gives depth cues the GAN can pick up.
    fn fade(&self, color: Rgb, base_y: f32) -> Rgb {
        let nearness = ((base_y - self.horizon) / 0.3).clamp(0.0, 1.0);
        mix(color, self.haze_color, self.haze * (1.0 - nearness))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Weather {
    Clear,
    Hazy,
    Dusk,
    Overcast,
}

struct Sky {
    zenith: Rgb,
    horizon_color: Rgb,
    /// Bends the gradient: positive keeps the pale band low, negative spreads it up.
    curve: f32,
    glow: Rgb,
    glow_x: f32,
    glow_radius: f32,
}

impl Sky {
    fn sample(rng: &mut SplitMix64, weather: Weather, sun_x: f32) -> Sky {
        let (zenith, horizon_color, glow, glow_radius) = match weather {
            Weather::Clear => (
                rng.vary([0.18, 0.38, 0.78], 0.08),
                rng.vary([0.62, 0.77, 0.92], 0.06),
                [0.12, 0.1, 0.06],
                rng.range(0.15, 0.3),
            ),
            Weather::Hazy => (
                rng.vary([0.52, 0.66, 0.84], 0.07),
                rng.vary([0.85, 0.87, 0.88], 0.05),
                [0.08, 0.07, 0.05],
                rng.range(0.2, 0.4),
            ),
            Weather::Dusk => {
                let warm = rng.pick(&[[0.98, 0.62, 0.32], [0.95, 0.55, 0.55], [0.98, 0.78, 0.45]]);
                (
                    rng.vary([0.22, 0.26, 0.52], 0.08),
                    rng.vary(warm, 0.05),
                    [0.35, 0.2, 0.08],
                    rng.range(0.12, 0.25),
                )
            }
            Weather::Overcast => {
                let grey = rng.range(0.5, 0.78);
                (
                    rng.vary([grey, grey + 0.02, grey + 0.05], 0.03),
                    rng.vary([grey + 0.15, grey + 0.16, grey + 0.17], 0.03),
                    [0.0; 3],
                    0.3,
                )
            }
        };
        Sky {
            zenith,
            horizon_color,
            curve: rng.range(-0.4, 0.8),
            glow: scale(glow, rng.range(0.3, 1.0)),
            glow_x: sun_x,
            glow_radius,
        }
    }

    fn color(&self, x: f32, y: f32, horizon: f32) -> Rgb {
        let t = (y / horizon).clamp(0.0, 1.0);
        let t = t + self.curve * t * (1.0 - t);
        let base = mix(self.zenith, self.horizon_color, t);
        let dx = x - self.glow_x;
        let dy = (y - horizon) * 1.6;
        let glow = 1.0 / (1.0 + (dx * dx + dy * dy) / (self.glow_radius * self.glow_radius));
        add(base, scale(self.glow, glow))
    }
}

// ---------------------------------------------------------------------------------------------
// Clouds

struct Cloud {
    puffs: Vec<Ellipse>,
    area: Bounds,
    top: f32,
    base: f32,
    lit: Rgb,
    shadow: Rgb,
    opacity: f32,
    softness: f32,
    salt: u32,
}

impl Cloud {
    fn sample(rng: &mut SplitMix64, weather: Weather, sky: &Sky, horizon: f32) -> Cloud {
        let stratus = rng.chance(if weather == Weather::Overcast {
            0.45
        } else {
            0.25
        });
        let width = if stratus {
            rng.range(0.3, 0.7)
        } else {
            rng.range(0.16, 0.5)
        };
        let height = width
            * if stratus {
                rng.range(0.1, 0.2)
            } else {
                rng.range(0.28, 0.5)
            };
        let center_x = rng.range(-0.1, 1.1);
        let base = rng.range(0.08 + height, (horizon - 0.06).max(0.12 + height));
        let count = if stratus {
            2 + rng.below(3)
        } else {
            3 + rng.below(5)
        };
        let mut puffs = Vec::with_capacity(count);
        for index in 0..count {
            let offset = (index as f32 + 0.5) / count as f32 - 0.5 + rng.range(-0.08, 0.08);
            let rx = width / count as f32 * rng.range(0.9, 1.7);
            let ry = (height * (1.0 - 1.3 * offset.abs()) * rng.range(0.6, 1.0)).max(height * 0.3);
            puffs.push(Ellipse {
                cx: center_x + offset * width,
                cy: base - ry * rng.range(0.25, 0.6),
                rx,
                ry,
            });
        }
        let area = puffs
            .iter()
            .map(|puff| puff.bounds(1.25))
            .reduce(|a, b| Bounds {
                left: a.left.min(b.left),
                top: a.top.min(b.top),
                right: a.right.max(b.right),
                bottom: a.bottom.max(b.bottom),
            })
            .unwrap_or(Bounds::FULL);
        let (lit, shadow) = match weather {
            Weather::Clear => {
                let white = rng.range(0.9, 1.0);
                ([white; 3], rng.vary([0.68, 0.72, 0.8], 0.06))
            }
            Weather::Hazy => ([0.95, 0.95, 0.95], rng.vary([0.75, 0.77, 0.8], 0.05)),
            Weather::Dusk => (
                rng.vary(mix(sky.horizon_color, [1.0, 0.9, 0.8], 0.5), 0.05),
                rng.vary([0.42, 0.36, 0.5], 0.06),
            ),
            Weather::Overcast => {
                let grey = luma(sky.zenith);
                (
                    [grey + 0.2, grey + 0.2, grey + 0.21],
                    [grey - 0.12, grey - 0.11, grey - 0.09],
                )
            }
        };
        Cloud {
            puffs,
            top: area.top,
            base,
            area,
            lit,
            shadow,
            opacity: rng.range(0.8, 1.0),
            softness: rng.range(0.2, 0.45),
            salt: rng.salt(),
        }
    }

    fn paint(&self, canvas: &mut Canvas) {
        canvas.blend(self.area, CLOUD, |x, y| {
            let mut density = f32::MIN;
            for puff in &self.puffs {
                density = density.max(1.0 - puff.radius2(x, y));
            }
            if density < -0.6 {
                return None;
            }
            let fluff = value_noise(x * 40.0, y * 40.0, self.salt) - 0.5
                + 0.5 * (value_noise(x * 110.0, y * 110.0, self.salt ^ 0x5bd1) - 0.5);
            // Cumulus have flat bases: fade out just below the base line.
            let flat_base = smoothstep(self.base + 0.02, self.base - 0.01, y);
            let alpha =
                smoothstep(0.0, self.softness, density + 0.4 * fluff) * self.opacity * flat_base;
            if alpha <= 0.01 {
                return None;
            }
            let depth = ((y - self.top) / (self.base - self.top).max(0.01)).clamp(0.0, 1.0);
            let color = mix(self.lit, self.shadow, depth * depth * 0.9 + fluff * 0.2);
            Some((color, alpha))
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Ground, distant woods and path

struct Ground {
    horizon: f32,
    tilt: f32,
    swell: f32,
    swell_frequency: f32,
    swell_phase: f32,
    near: Rgb,
    far: Rgb,
    patch_contrast: f32,
    stripes: f32,
    stripe_frequency: f32,
    stripe_center: f32,
    salt: u32,
}

impl Ground {
    fn sample(rng: &mut SplitMix64, horizon: f32) -> Ground {
        let greens = [
            [0.22, 0.45, 0.14],
            [0.42, 0.52, 0.2],
            [0.15, 0.32, 0.11],
            [0.5, 0.5, 0.28],
            [0.3, 0.5, 0.22],
        ];
        let kind = rng.weighted(&[3.0, 2.0, 2.0, 1.0, 2.0]);
        let near = rng.vary(greens[kind], 0.05);
        let far_scale = rng.range(0.85, 1.15);
        Ground {
            horizon,
            tilt: rng.range(-0.06, 0.06),
            swell: rng.range(0.0, 0.025),
            swell_frequency: rng.range(3.0, 9.0),
            swell_phase: rng.range(0.0, 2.0 * PI),
            far: rng.vary(scale(near, far_scale), 0.03),
            near,
            patch_contrast: rng.range(0.1, 0.35),
            stripes: if rng.chance(0.2) {
                rng.range(0.04, 0.1)
            } else {
                0.0
            },
            stripe_frequency: rng.range(0.8, 2.0),
            stripe_center: rng.range(0.2, 0.8),
            salt: rng.salt(),
        }
    }

    fn line(&self, x: f32) -> f32 {
        self.horizon
            + self.tilt * (x - 0.5)
            + self.swell * (x * self.swell_frequency + self.swell_phase).sin()
    }

    fn highest(&self) -> f32 {
        self.horizon - self.tilt.abs() * 0.5 - self.swell
    }

    fn paint(&self, canvas: &mut Canvas, atmosphere: &Atmosphere) {
        let light = atmosphere.light.intensity(FACING_UP);
        let area = Bounds {
            top: self.highest(),
            ..Bounds::FULL
        };
        // The skyline depends only on the column; a sine per pixel would cost more than the
        // texture.
        let side = canvas.side;
        let lines: Vec<f32> = (0..side)
            .map(|column| self.line((column as f32 + 0.5) / side as f32))
            .collect();
        canvas.paint(area, GRASS, |x, y| {
            let line = lines[((x * side as f32) as usize).min(side - 1)];
            if y < line {
                return None;
            }
            let nearness = ((y - line) / (1.0 - line).max(0.05)).clamp(0.0, 1.0);
            let base = mix(self.far, self.near, nearness.sqrt());
            let patches = value_noise(x * 7.0, y * 18.0, self.salt) - 0.5;
            // Blades are stretched across: ground seen at a glancing angle foreshortens vertically.
            let blades = value_noise(x * 150.0, y * 75.0, self.salt ^ 0x1f3d) - 0.5;
            // Mowing stripes run straight away from the viewer, so they converge on the horizon;
            // they fade out before they get finer than a pixel.
            let across = (x - self.stripe_center) * self.stripe_frequency / (y - line + 0.03);
            let stripe = if across - fast_floor(across) < 0.5 {
                self.stripes
            } else {
                -self.stripes
            };
            let stripe = stripe * nearness.sqrt();
            let shade = light
                * (1.0 + self.patch_contrast * patches)
                * (1.0 + blades * (0.15 + 0.25 * nearness))
                * (1.0 + stripe);
            let color = modulate(scale(base, shade), atmosphere.light.color);
            Some(atmosphere.fade(color, y))
        });
    }
}

/// Woods far behind everything else, along part of the horizon.
struct Treeline {
    height: f32,
    frequency: f32,
    left: f32,
    right: f32,
    color: Rgb,
    salt: u32,
}

impl Treeline {
    fn paint(&self, canvas: &mut Canvas, ground: &Ground, atmosphere: &Atmosphere) {
        let area = Bounds {
            left: self.left,
            right: self.right,
            top: ground.highest() - self.height * 1.6,
            bottom: ground.highest() + ground.swell * 2.0 + ground.tilt.abs() + 0.02,
        };
        let light = atmosphere.light.intensity(normalize([0.0, -0.3, 1.0]));
        canvas.paint(area, TREE, |x, y| {
            let line = ground.line(x) + 0.01;
            let taper = smoothstep(self.left, self.left + 0.06, x)
                * smoothstep(self.right, self.right - 0.06, x);
            let crowns = 0.65 * value_noise(x * self.frequency, 0.5, self.salt)
                + 0.35 * value_noise(x * self.frequency * 2.7, 7.5, self.salt);
            let top = line - self.height * (0.6 + crowns) * taper;
            if y < top || y > line || taper <= 0.0 {
                return None;
            }
            let leaves = value_noise(x * 90.0, y * 90.0, self.salt ^ 0x77) - 0.5;
            let crown_light = 1.0 - 0.35 * ((y - top) / self.height.max(0.01)).min(1.0);
            let color = modulate(
                scale(self.color, light * crown_light * (1.0 + 0.35 * leaves)),
                atmosphere.light.color,
            );
            Some(atmosphere.fade(color, atmosphere.horizon))
        });
    }
}

struct Path {
    top: f32,
    top_x: f32,
    top_half: f32,
    bottom_x: f32,
    bottom_half: f32,
    color: Rgb,
    salt: u32,
}

impl Path {
    fn paint(&self, canvas: &mut Canvas, atmosphere: &Atmosphere) {
        let light = atmosphere.light.intensity(FACING_UP);
        let reach = self.top_half.max(self.bottom_half);
        let area = Bounds {
            left: self.top_x.min(self.bottom_x) - reach,
            right: self.top_x.max(self.bottom_x) + reach,
            top: self.top,
            bottom: 1.0,
        };
        canvas.paint(area, PATH, |x, y| {
            let t = ((y - self.top) / (1.0 - self.top).max(0.01)).clamp(0.0, 1.0);
            let center = lerp(self.top_x, self.bottom_x, t);
            let half = lerp(self.top_half, self.bottom_half, t);
            let across = (x - center).abs() / half;
            if across > 1.0 {
                return None;
            }
            let gravel = value_noise(x * 140.0, y * 100.0, self.salt) - 0.5;
            let worn = 1.0 - 0.15 * across * across;
            let color = modulate(
                scale(self.color, light * worn * (1.0 + 0.3 * gravel)),
                atmosphere.light.color,
            );
            Some(atmosphere.fade(color, y))
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Trees

enum Crown {
    /// Overlapping leafy balls: broadleaf trees, and poplars when stacked tall and narrow.
    Lobes(Vec<Ellipse>),
    /// Stacked triangles: conifers.
    Tiers { center_x: f32, tiers: Vec<Tier> },
}

struct Tier {
    apex: f32,
    bottom: f32,
    half_width: f32,
}

struct Tree {
    base_x: f32,
    base_y: f32,
    trunk_half: f32,
    trunk_top: f32,
    trunk_color: Rgb,
    crown: Crown,
    foliage: Rgb,
    shadow: Ellipse,
    salt: u32,
}

impl Tree {
    fn sample(rng: &mut SplitMix64, base_x: f32, base_y: f32, horizon: f32, sun_x: f32) -> Tree {
        let nearness = ((base_y - horizon) / 0.35).clamp(0.0, 1.0);
        let size = (0.6 + 1.1 * nearness) * rng.range(0.8, 1.25);
        let radius = 0.1 * size;
        let foliage = if rng.chance(0.1) {
            rng.vary_pick(
                &[[0.62, 0.4, 0.14], [0.7, 0.3, 0.12], [0.6, 0.55, 0.18]],
                0.05,
            )
        } else {
            rng.vary_pick(
                &[
                    [0.2, 0.4, 0.14],
                    [0.28, 0.45, 0.16],
                    [0.14, 0.3, 0.12],
                    [0.36, 0.48, 0.2],
                ],
                0.05,
            )
        };
        let kind = rng.weighted(&[5.0, 3.0, 2.0]);
        let (crown, trunk_top, width) = match kind {
            // Broadleaf: a ball of lobes on a visible trunk.
            0 => {
                let trunk = radius * rng.range(0.5, 1.1);
                let center_y = base_y - trunk - radius * rng.range(0.8, 1.0);
                let spread = radius * rng.range(0.9, 1.3);
                let mut lobes = vec![Ellipse {
                    cx: base_x,
                    cy: center_y,
                    rx: spread * 0.75,
                    ry: radius * 0.75,
                }];
                for _ in 0..(4 + rng.below(5)) {
                    let angle = rng.range(0.0, 2.0 * PI);
                    let distance = rng.range(0.3, 0.62);
                    let lobe = radius * rng.range(0.42, 0.62);
                    lobes.push(Ellipse {
                        cx: base_x + angle.cos() * distance * spread,
                        cy: center_y + angle.sin() * distance * radius,
                        rx: lobe * rng.range(0.9, 1.2),
                        ry: lobe,
                    });
                }
                // Lower lobes first so the sunlit top of the crown is painted over them.
                lobes.sort_by(|a, b| b.cy.total_cmp(&a.cy));
                (Crown::Lobes(lobes), base_y - trunk, spread)
            }
            // Conifer: stacked tiers on a short trunk.
            1 => {
                let height = radius * rng.range(3.0, 4.8);
                let half_width = radius * rng.range(0.65, 0.95);
                let trunk = height * rng.range(0.06, 0.12);
                let count = 3 + rng.below(3);
                let crown_top = base_y - trunk - height;
                let mut tiers = Vec::with_capacity(count);
                for index in 0..count {
                    let share = (index + 1) as f32 / count as f32;
                    tiers.push(Tier {
                        apex: crown_top + height * (share - 1.0 / count as f32) * 0.75,
                        bottom: crown_top + height * share,
                        half_width: half_width * (0.45 + 0.55 * share),
                    });
                }
                (
                    Crown::Tiers {
                        center_x: base_x,
                        tiers,
                    },
                    base_y - trunk,
                    half_width,
                )
            }
            // Poplar or cypress: a tall narrow column of lobes.
            _ => {
                let height = radius * rng.range(3.2, 4.5);
                let half_width = radius * rng.range(0.45, 0.6);
                let trunk = height * rng.range(0.05, 0.1);
                let mut lobes = Vec::new();
                let count = 4;
                for index in 0..count {
                    let along = (index as f32 + 0.5) / count as f32;
                    let taper = 1.0 - 0.5 * (along - 0.4).abs();
                    lobes.push(Ellipse {
                        cx: base_x + rng.range(-0.2, 0.2) * half_width,
                        cy: base_y - trunk - height * (1.0 - along) * 0.9 - height * 0.05,
                        rx: half_width * taper,
                        ry: height * 0.3,
                    });
                }
                lobes.sort_by(|a, b| b.cy.total_cmp(&a.cy));
                (Crown::Lobes(lobes), base_y - trunk, half_width)
            }
        };
        let shadow_reach = (base_x - sun_x).signum() * width * 0.6;
        Tree {
            base_x,
            base_y,
            trunk_half: (width * rng.range(0.08, 0.14)).max(0.006),
            trunk_top,
            trunk_color: rng.vary([0.3, 0.22, 0.15], 0.05),
            crown,
            foliage,
            shadow: Ellipse {
                cx: base_x + shadow_reach,
                cy: base_y,
                rx: width * 1.1,
                ry: width * 0.22,
            },
            salt: rng.salt(),
        }
    }

    fn leaf_color(&self, atmosphere: &Atmosphere, x: f32, y: f32, normal: Vec3) -> Rgb {
        let fine = value_noise(x * 95.0, y * 95.0, self.salt) - 0.5;
        let clumps = value_noise(x * 30.0, y * 30.0, self.salt ^ 0x2c1b) - 0.5;
        let lit = atmosphere.light.shade(self.foliage, normal);
        atmosphere.fade(
            scale(lit, (1.0 + 0.6 * clumps) * (1.0 + 0.45 * fine)),
            self.base_y,
        )
    }

    fn paint(&self, canvas: &mut Canvas, atmosphere: &Atmosphere) {
        canvas.darken(self.shadow.bounds(1.0), &[GRASS, PATH], |x, y| {
            let r2 = self.shadow.radius2(x, y);
            1.0 - 0.35 * (1.0 - r2).clamp(0.0, 1.0).sqrt() * (1.0 - atmosphere.light.ambient)
        });
        let trunk = Rect {
            left: self.base_x - self.trunk_half,
            right: self.base_x + self.trunk_half,
            top: self.trunk_top - 0.03,
            bottom: self.base_y,
        };
        canvas.paint(trunk.bounds(), TREE, |x, y| {
            let across = (x - self.base_x) / self.trunk_half;
            let normal = [across, 0.0, (1.0 - across * across).max(0.0).sqrt()];
            let bark = value_noise(x * 200.0, y * 40.0, self.salt) * 0.3 + 0.85;
            Some(atmosphere.fade(
                scale(atmosphere.light.shade(self.trunk_color, normal), bark),
                self.base_y,
            ))
        });
        match &self.crown {
            Crown::Lobes(lobes) => {
                for lobe in lobes {
                    canvas.paint(lobe.bounds(1.15), TREE, |x, y| {
                        let ragged = value_noise(x * 70.0, y * 70.0, self.salt ^ 0x91) - 0.5;
                        let r2 = lobe.radius2(x, y);
                        if r2 > 1.0 + 0.5 * ragged {
                            return None;
                        }
                        let dx = (x - lobe.cx) / lobe.rx;
                        let dy = (y - lobe.cy) / lobe.ry;
                        let normal = [dx, dy, (1.0 - r2).max(0.0).sqrt()];
                        // Lobe rims are darker so overlapping lobes read as separate clumps.
                        let rim = 1.0 - 0.25 * r2.min(1.0);
                        Some(scale(
                            self.leaf_color(atmosphere, x, y, normalize(normal)),
                            rim,
                        ))
                    });
                }
            }
            Crown::Tiers { center_x, tiers } => {
                for tier in tiers {
                    let area = Bounds {
                        left: center_x - tier.half_width * 1.15,
                        right: center_x + tier.half_width * 1.15,
                        top: tier.apex,
                        bottom: tier.bottom + 0.01,
                    };
                    canvas.paint(area, TREE, |x, y| {
                        let ragged = value_noise(x * 80.0, y * 80.0, self.salt ^ 0x4d) - 0.5;
                        let down = (y - tier.apex) / (tier.bottom - tier.apex);
                        let half = tier.half_width * down * (1.0 + 0.3 * ragged);
                        let dx = x - center_x;
                        let sag = 0.015 * (dx / tier.half_width).powi(2);
                        if dx.abs() > half || y > tier.bottom - sag + 0.006 * ragged {
                            return None;
                        }
                        let across = (dx / half.max(1e-4)).clamp(-1.0, 1.0);
                        let normal =
                            normalize([across * 0.8, -0.35, (1.0 - across * across * 0.64).sqrt()]);
                        let shade = 0.8 + 0.2 * down;
                        Some(scale(self.leaf_color(atmosphere, x, y, normal), shade))
                    });
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Churches

/// A wall's surface: brick, stone blocks or plaster scored with faint joints.
struct Masonry {
    stone: Rgb,
    mortar: Rgb,
    course: f32,
    block: f32,
    joint: f32,
    variation: f32,
    salt: u32,
}

impl Masonry {
    fn sample(rng: &mut SplitMix64) -> Masonry {
        let kind = rng.weighted(&[3.0, 2.0, 1.5, 2.0, 2.0, 1.0, 1.0]);
        let (stone, bricks, plaster) = match kind {
            0 => ([0.6, 0.26, 0.18], true, false),
            1 => ([0.46, 0.3, 0.21], true, false),
            2 => ([0.78, 0.62, 0.4], true, false),
            3 => ([0.8, 0.71, 0.53], false, false),
            4 => ([0.62, 0.61, 0.58], false, false),
            5 => ([0.42, 0.42, 0.44], false, false),
            _ => (
                rng.pick(&[[0.9, 0.88, 0.82], [0.88, 0.78, 0.52], [0.9, 0.85, 0.78]]),
                false,
                true,
            ),
        };
        let stone = rng.vary(stone, 0.05);
        let (course, block, mortar, variation) = if bricks {
            let course = rng.range(0.016, 0.024);
            (
                course,
                course * rng.range(2.2, 3.0),
                rng.vary([0.74, 0.71, 0.66], 0.05),
                0.22,
            )
        } else if plaster {
            let course = rng.range(0.03, 0.045);
            (
                course,
                course * rng.range(2.0, 3.0),
                scale(stone, 0.92),
                0.03,
            )
        } else {
            let course = rng.range(0.026, 0.04);
            (
                course,
                course * rng.range(1.4, 2.4),
                scale(stone, rng.range(0.6, 0.8)),
                0.15,
            )
        };
        Masonry {
            stone,
            mortar,
            course,
            block,
            joint: rng.range(0.14, 0.22),
            variation,
            salt: rng.salt(),
        }
    }

    fn albedo(&self, x: f32, y: f32) -> Rgb {
        let rows = y / self.course;
        let row = fast_floor(rows);
        let shift = if (row as i32) & 1 == 1 { 0.5 } else { 0.0 };
        let columns = x / self.block + shift;
        let column = fast_floor(columns);
        let (across, down) = (columns - column, rows - row);
        if down < self.joint || across < self.joint * self.course / self.block {
            return self.mortar;
        }
        let unit = hash_unit(column as i32, row as i32, self.salt) - 0.5;
        scale(self.stone, 1.0 + self.variation * unit)
    }

    /// A lighter version of the stone for cornices and door surrounds.
    fn trim(&self) -> Rgb {
        mix(self.stone, [0.92, 0.9, 0.85], 0.4)
    }
}

#[derive(Clone, Copy)]
enum Profile {
    Round,
    Onion,
}

impl Profile {
    /// Radius at height `t` (0 at the base, 1 at the top), as a share of the widest radius.
    fn radius(self, t: f32) -> f32 {
        match self {
            Profile::Round => (1.0 - t * t).max(0.0).sqrt(),
            Profile::Onion => (PI * (0.2 + 0.8 * t)).sin().max(0.0).powf(1.4),
        }
    }
}

struct Dome {
    center_x: f32,
    base_y: f32,
    half_width: f32,
    height: f32,
    profile: Profile,
    color: Rgb,
    metallic: f32,
    ribs: f32,
    lantern: bool,
}

impl Dome {
    fn paint(&self, canvas: &mut Canvas, atmosphere: &Atmosphere, depth_y: f32) {
        let light = &atmosphere.light;
        let halfway = normalize([
            light.direction[0],
            light.direction[1],
            light.direction[2] + 1.0,
        ]);
        let area = Bounds {
            left: self.center_x - self.half_width,
            right: self.center_x + self.half_width,
            top: self.base_y - self.height,
            bottom: self.base_y,
        };
        canvas.paint(area, DOME, |x, y| {
            let t = (self.base_y - y) / self.height;
            if !(0.0..=1.0).contains(&t) {
                return None;
            }
            let radius = self.profile.radius(t) * self.half_width;
            let dx = x - self.center_x;
            if dx.abs() > radius || radius <= 0.0 {
                return None;
            }
            let across = dx / radius;
            let step = 0.02;
            let slope = (self.profile.radius((t + step).min(1.0))
                - self.profile.radius((t - step).max(0.0)))
                / (2.0 * step)
                * self.half_width
                / self.height;
            let upward = slope.clamp(-6.0, 6.0);
            let normal = normalize([across, upward, (1.0 - across * across).max(0.0).sqrt()]);
            let mut color = light.shade(self.color, normal);
            if self.ribs > 0.0 {
                let angle = across.clamp(-1.0, 1.0).asin() / PI * self.ribs + 0.5;
                if (angle.fract() - 0.5).abs() > 0.4 {
                    color = scale(color, 0.78);
                }
            }
            let glint =
                dot(normal, halfway).max(0.0).powi(16) * self.metallic * (1.0 - light.ambient);
            color = add(color, modulate([glint; 3], light.color));
            Some(atmosphere.fade(color, depth_y))
        });
        if self.lantern {
            let top = self.base_y - self.height;
            let half = (self.half_width * 0.14).max(0.005);
            let lantern = Rect {
                left: self.center_x - half,
                right: self.center_x + half,
                top: top - self.half_width * 0.35,
                bottom: top + 0.004,
            };
            let cross = Rect {
                left: self.center_x - half * 0.3,
                right: self.center_x + half * 0.3,
                top: lantern.top - self.half_width * 0.3,
                bottom: lantern.top,
            };
            let arm = Rect {
                left: self.center_x - half * 1.2,
                right: self.center_x + half * 1.2,
                top: cross.top + (cross.bottom - cross.top) * 0.25,
                bottom: cross.top + (cross.bottom - cross.top) * 0.4,
            };
            for (part, shine) in [(lantern, 1.0), (cross, 0.8), (arm, 0.8)] {
                canvas.paint(part.bounds(), DOME, |x, _| {
                    let across = ((x - self.center_x) / half).clamp(-1.0, 1.0);
                    let normal = [across, 0.0, (1.0 - across * across).sqrt()];
                    Some(atmosphere.fade(scale(light.shade(self.color, normal), shine), depth_y))
                });
            }
        }
    }
}

enum Cap {
    Spire { height: f32 },
    Dome(Dome),
    Battlements { count: usize, height: f32 },
}

struct Tower {
    rect: Rect,
    cap: Cap,
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Arched,
    Square,
    Round,
}

#[derive(Clone, Copy)]
struct Opening {
    rect: Rect,
    shape: Shape,
}

impl Opening {
    fn contains(&self, x: f32, y: f32) -> bool {
        let rect = self.rect;
        if !rect.contains(x, y) {
            return false;
        }
        let half = rect.width() * 0.5;
        let dx = x - rect.center_x();
        match self.shape {
            Shape::Square => true,
            Shape::Arched => {
                let spring = rect.top + half;
                y >= spring || dx * dx + (y - spring) * (y - spring) <= half * half
            }
            Shape::Round => {
                let cy = (rect.top + rect.bottom) * 0.5;
                dx * dx + (y - cy) * (y - cy) <= half * half
            }
        }
    }

    fn grown(&self, margin: f32) -> Opening {
        Opening {
            rect: self.rect.grow(margin),
            shape: self.shape,
        }
    }
}

enum Top {
    Flat { cornice: f32 },
    Gable { peak: f32 },
    Pitched { rise: f32, inset: f32 },
}

/// The long side of the nave, seen going away towards a vanishing point on the horizon.
struct Wing {
    wall: [Point; 4],
    roof: Option<[Point; 4]>,
    normal: Vec3,
}

struct Church {
    base_y: f32,
    masonry: Masonry,
    body: Rect,
    top: Top,
    wing: Option<Wing>,
    roof_color: Rgb,
    dome: Option<(Option<Rect>, Dome)>,
    towers: Vec<Tower>,
    doors: Vec<Opening>,
    windows: Vec<Opening>,
    door_color: Rgb,
    glass: Rgb,
    lit_windows: bool,
    salt: u32,
}

const DOME_COLORS: &[(Rgb, f32)] = &[
    ([0.36, 0.62, 0.52], 0.2),
    ([0.86, 0.66, 0.22], 0.9),
    ([0.55, 0.57, 0.6], 0.4),
    ([0.2, 0.36, 0.72], 0.4),
    ([0.28, 0.3, 0.34], 0.3),
    ([0.68, 0.36, 0.24], 0.1),
    ([0.9, 0.9, 0.88], 0.2),
];

const ROOF_COLORS: &[Rgb] = &[
    [0.3, 0.32, 0.38],
    [0.6, 0.27, 0.19],
    [0.33, 0.24, 0.2],
    [0.36, 0.55, 0.48],
    [0.48, 0.48, 0.5],
];

impl Church {
    fn sample(
        rng: &mut SplitMix64,
        center_x: f32,
        base_y: f32,
        size: f32,
        atmosphere: &Atmosphere,
        dusk: bool,
    ) -> Church {
        let width = size * rng.range(0.3, 0.5);
        // Never so low that the minimum door no longer fits under the roof.
        let height = (size * rng.range(0.15, 0.24)).max(0.13);
        let body = Rect {
            left: center_x - width * 0.5,
            right: center_x + width * 0.5,
            top: base_y - height,
            bottom: base_y,
        };
        let masonry = Masonry::sample(rng);
        let roof_color = rng.vary_pick(ROOF_COLORS, 0.05);
        let top = match rng.weighted(&[4.5, 2.5, 3.0]) {
            0 => Top::Gable {
                peak: width * rng.range(0.18, 0.34),
            },
            1 => Top::Pitched {
                rise: height * rng.range(0.35, 0.7),
                inset: width * rng.range(0.05, 0.2),
            },
            _ => Top::Flat {
                cornice: rng.range(0.008, 0.014),
            },
        };
        let ridge_y = match top {
            Top::Gable { peak } => body.top - peak,
            Top::Pitched { rise, .. } => body.top - rise,
            Top::Flat { .. } => body.top,
        };

        let wing = match top {
            Top::Pitched { .. } => None,
            _ if !rng.chance(0.55) => None,
            _ => {
                let facing = if rng.chance(0.5) { 1.0 } else { -1.0 };
                let depth = width * rng.range(0.35, 1.0);
                let near_x = if facing > 0.0 { body.right } else { body.left };
                let vanishing_x = near_x + facing * depth * rng.range(2.5, 6.0);
                let toward = |(x, y): Point, share: f32| -> Point {
                    (
                        x + (vanishing_x - x) * share,
                        y + (atmosphere.horizon - y) * share,
                    )
                };
                let share = depth / (vanishing_x - near_x).abs();
                let wall = [
                    (near_x, body.top),
                    toward((near_x, body.top), share),
                    toward((near_x, base_y), share),
                    (near_x, base_y),
                ];
                let roof = match top {
                    Top::Gable { .. } => {
                        // Points of the facade plane all travel the same share of the way to
                        // the vanishing point to reach the back of the nave.
                        let ridge = (center_x, ridge_y);
                        Some([ridge, toward(ridge, share), wall[1], wall[0]])
                    }
                    _ => None,
                };
                Some(Wing {
                    wall,
                    roof,
                    normal: normalize([facing, 0.0, 0.6]),
                })
            }
        };

        let dome_style = rng.pick(DOME_COLORS);
        let dome_color = rng.vary(dome_style.0, 0.05);
        let dome = if rng.chance(0.7) {
            let half_width = (width * rng.range(0.18, 0.32)).max(0.045);
            let profile = if rng.chance(0.25) {
                Profile::Onion
            } else {
                Profile::Round
            };
            let seat = match top {
                Top::Flat { .. } => body.top,
                Top::Gable { peak } => body.top - peak * 0.55,
                Top::Pitched { rise, .. } => body.top - rise * 0.6,
            };
            let drum_height = if rng.chance(0.3) {
                0.0
            } else {
                half_width * rng.range(0.4, 1.1)
            };
            let drum_half = half_width * profile.radius(0.0) * rng.range(0.85, 0.97);
            let drum = (drum_height > 0.0).then_some(Rect {
                left: center_x - drum_half,
                right: center_x + drum_half,
                top: seat - drum_height,
                bottom: seat,
            });
            let dome_height = half_width
                * match profile {
                    Profile::Round => rng.range(0.8, 1.4),
                    Profile::Onion => rng.range(1.5, 2.1),
                };
            Some((
                drum,
                Dome {
                    center_x,
                    base_y: seat - drum_height + 0.002,
                    half_width,
                    height: dome_height,
                    profile,
                    color: dome_color,
                    metallic: dome_style.1,
                    ribs: if rng.chance(0.5) {
                        rng.range(6.0, 12.0).floor()
                    } else {
                        0.0
                    },
                    lantern: rng.chance(0.6),
                },
            ))
        } else {
            None
        };

        let tower_count = rng.weighted(&[4.0, 3.5, 2.5]);
        let central_tower = tower_count == 1
            && dome.is_none()
            && !matches!(top, Top::Pitched { .. })
            && rng.chance(0.4);
        let mut towers = Vec::new();
        let tower_width =
            (width * rng.range(0.16, 0.26)).max(if central_tower { 0.08 } else { 0.045 });
        let tower_top = ridge_y - height * rng.range(0.3, 1.0);
        let cap_kind = rng.weighted(&[4.0, 4.0, 1.5]);
        let lean_out = tower_width * rng.range(0.1, 0.5);
        let tower_sides: Vec<f32> = match tower_count {
            0 => vec![],
            1 if central_tower => vec![0.0],
            1 => vec![if rng.chance(0.5) { -1.0 } else { 1.0 }],
            _ => vec![-1.0, 1.0],
        };
        for side in tower_sides {
            let left = if side < 0.0 {
                body.left - lean_out
            } else if side > 0.0 {
                body.right + lean_out - tower_width
            } else {
                center_x - tower_width * 0.5
            };
            let rect = Rect {
                left,
                right: left + tower_width,
                top: tower_top,
                bottom: base_y,
            };
            let cap = match cap_kind {
                0 => Cap::Spire {
                    height: tower_width * rng.range(0.5, 2.8),
                },
                1 => {
                    let profile = if rng.chance(0.35) {
                        Profile::Onion
                    } else {
                        Profile::Round
                    };
                    let half_width = tower_width * 0.5 * rng.range(0.8, 1.05);
                    Cap::Dome(Dome {
                        center_x: rect.center_x(),
                        base_y: tower_top + 0.002,
                        half_width,
                        height: half_width
                            * if matches!(profile, Profile::Onion) {
                                1.8
                            } else {
                                1.0
                            },
                        profile,
                        color: dome_color,
                        metallic: dome_style.1,
                        ribs: 0.0,
                        lantern: rng.chance(0.5),
                    })
                }
                _ => Cap::Battlements {
                    count: 3 + rng.below(2),
                    height: tower_width * 0.22,
                },
            };
            towers.push(Tower { rect, cap });
        }

        // Doors are kept at least ~6 px tall at 64x64 even on small churches, so that they
        // are learnable concepts rather than a few stray pixels.
        let door_width = (width * rng.range(0.13, 0.2)).clamp(0.05, 0.11);
        let door_height = (door_width * rng.range(1.6, 2.3))
            .max(0.095)
            .min(height * 0.78);
        let door_shape = if rng.chance(0.7) {
            Shape::Arched
        } else {
            Shape::Square
        };
        let door_x = if central_tower || rng.chance(0.8) {
            center_x
        } else {
            body.left + width * rng.range(0.3, 0.7)
        };
        let door_at = |x: f32, scale_by: f32| Opening {
            rect: Rect {
                left: x - door_width * scale_by * 0.5,
                right: x + door_width * scale_by * 0.5,
                top: base_y - door_height * scale_by,
                bottom: base_y,
            },
            shape: door_shape,
        };
        let mut doors = vec![door_at(door_x, 1.0)];
        if width > 0.38 && door_x == center_x && tower_count == 0 && rng.chance(0.35) {
            doors.push(door_at(center_x - width * 0.3, 0.75));
            doors.push(door_at(center_x + width * 0.3, 0.75));
        }

        let mut windows = Vec::new();
        let window_width = (width * rng.range(0.05, 0.08)).clamp(0.032, 0.06);
        let window_height = window_width * rng.range(1.8, 2.6);
        let window_shape = if rng.chance(0.75) {
            Shape::Arched
        } else {
            Shape::Square
        };
        let spacing = window_width * rng.range(1.9, 3.2);
        let margin = window_width * 0.5;
        let mut blocked: Vec<Rect> = doors.iter().map(|door| door.rect.grow(margin)).collect();
        blocked.extend(towers.iter().map(|tower| tower.rect.grow(margin)));
        let mut rows = vec![body.top + (height - window_height) * rng.range(0.2, 0.45)];
        if height > window_height * 2.0 + door_height && rng.chance(0.5) {
            rows = vec![
                body.top + height * 0.08,
                base_y - window_height - height * 0.1,
            ];
        }
        let parity = if rng.chance(0.5) { 0.5 } else { 0.0 };
        for &row_top in &rows {
            let row = Rect {
                left: 0.0,
                right: 0.0,
                top: row_top,
                bottom: row_top + window_height,
            };
            for step in -8..=8 {
                let x = center_x + (step as f32 + parity) * spacing;
                let left = x - window_width * 0.5;
                let right = x + window_width * 0.5;
                let inside = left > body.left + margin && right < body.right - margin;
                let clear = blocked.iter().all(|block| {
                    !block.overlaps_x(left, right)
                        || block.bottom < row.top
                        || block.top > row.bottom
                });
                if inside && clear {
                    windows.push(Opening {
                        rect: Rect { left, right, ..row },
                        shape: window_shape,
                    });
                }
            }
        }
        if let Some(wing) = wing.as_ref().filter(|_| rng.chance(0.75)) {
            let [near_top, far_top, far_bottom, near_bottom] = wing.wall;
            let span = far_top.0 - near_top.0;
            let count = ((span.abs() / spacing) as usize).clamp(1, 6);
            for index in 0..count {
                let share = (index as f32 + 0.5) / count as f32;
                let x = near_top.0 + span * share;
                let top = lerp(near_top.1, far_top.1, share);
                let wall_height = lerp(near_bottom.1, far_bottom.1, share) - top;
                // Farther windows shrink with the wall, but not below what survives at 64x64.
                let half = (window_width * (1.0 - 0.4 * share)).max(0.026) * 0.5;
                let window_top = top + wall_height * 0.25;
                let rect = Rect {
                    left: x - half,
                    right: x + half,
                    top: window_top,
                    bottom: window_top + wall_height * 0.4,
                };
                if blocked
                    .iter()
                    .all(|block| !block.overlaps_x(rect.left, rect.right))
                {
                    windows.push(Opening {
                        rect,
                        shape: window_shape,
                    });
                }
            }
        }
        if let Top::Gable { peak } = top {
            let radius = peak * rng.range(0.17, 0.25);
            if radius > 0.016 && rng.chance(0.6) {
                let cy = body.top - peak * 0.36;
                windows.push(Opening {
                    rect: Rect {
                        left: center_x - radius,
                        right: center_x + radius,
                        top: cy - radius,
                        bottom: cy + radius,
                    },
                    shape: Shape::Round,
                });
            }
        }
        for tower in &towers {
            let rect = tower.rect;
            let belfry_width = (rect.width() * rng.range(0.35, 0.5)).max(0.025);
            let belfry_top = rect.top + rect.width() * 0.3;
            windows.push(Opening {
                rect: Rect {
                    left: rect.center_x() - belfry_width * 0.5,
                    right: rect.center_x() + belfry_width * 0.5,
                    top: belfry_top,
                    bottom: belfry_top + belfry_width * rng.range(1.6, 2.4),
                },
                shape: Shape::Arched,
            });
        }
        if let Some((Some(drum), _)) = &dome {
            let drum_height = drum.bottom - drum.top;
            let narrow = (drum.width() * 0.09).max(0.02);
            if drum_height > narrow * 2.0 {
                let count = 3 + rng.below(2) * 2;
                for index in 0..count {
                    let along = (index as f32 + 0.5) / count as f32 * 2.0 - 1.0;
                    let x = drum.center_x() + along * drum.width() * 0.36;
                    windows.push(Opening {
                        rect: Rect {
                            left: x - narrow * 0.5 * (1.0 - 0.5 * along.abs()),
                            right: x + narrow * 0.5 * (1.0 - 0.5 * along.abs()),
                            top: drum.top + drum_height * 0.22,
                            bottom: drum.bottom - drum_height * 0.2,
                        },
                        shape: Shape::Arched,
                    });
                }
            }
        }

        let door_color = {
            let wood = rng.vary_pick(
                &[
                    [0.3, 0.17, 0.08],
                    [0.13, 0.1, 0.08],
                    [0.12, 0.22, 0.15],
                    [0.36, 0.1, 0.08],
                    [0.06, 0.05, 0.05],
                ],
                0.03,
            );
            // A door lighter than its wall would read as a wall patch, not an opening.
            let limit = luma(masonry.stone) * 0.55;
            let brightness = luma(wood).max(1e-3);
            if brightness > limit {
                scale(wood, limit / brightness)
            } else {
                wood
            }
        };
        let lit_windows = rng.chance(if dusk { 0.6 } else { 0.05 });
        let glass = if lit_windows {
            rng.vary([0.95, 0.76, 0.38], 0.04)
        } else {
            rng.vary_pick(
                &[
                    [0.1, 0.12, 0.17],
                    [0.05, 0.05, 0.06],
                    [0.24, 0.3, 0.4],
                    [0.15, 0.14, 0.13],
                ],
                0.03,
            )
        };

        Church {
            base_y,
            masonry,
            body,
            top,
            wing,
            roof_color,
            dome,
            towers,
            doors,
            windows,
            door_color,
            glass,
            lit_windows,
            salt: rng.salt(),
        }
    }

    fn wall(
        &self,
        canvas: &mut Canvas,
        atmosphere: &Atmosphere,
        area: Bounds,
        normal: Vec3,
        inside: impl Fn(f32, f32) -> bool,
    ) {
        let light = &atmosphere.light;
        canvas.paint(area, BRICK, |x, y| {
            if !inside(x, y) {
                return None;
            }
            // Walls darken slightly towards the ground, where less sky light reaches them.
            let grounding = 1.0 - 0.12 * smoothstep(self.base_y - 0.08, self.base_y, y);
            let color = light.shade(scale(self.masonry.albedo(x, y), grounding), normal);
            Some(atmosphere.fade(color, self.base_y))
        });
    }

    fn roof(&self, canvas: &mut Canvas, atmosphere: &Atmosphere, polygon: &[Point], normal: Vec3) {
        let color = atmosphere.light.shade(self.roof_color, normal);
        canvas.paint(Bounds::around(polygon), ROOF, |x, y| {
            if !inside_convex(polygon, x, y) {
                return None;
            }
            let courses = (y * 90.0).fract();
            let tiles = if courses < 0.25 { 0.82 } else { 1.0 };
            let grain =
                1.0 + 0.1 * (hash_unit((x * 160.0) as i32, (y * 90.0) as i32, self.salt) - 0.5);
            Some(atmosphere.fade(scale(color, tiles * grain), self.base_y))
        });
    }

    fn paint_dome(&self, canvas: &mut Canvas, atmosphere: &Atmosphere) {
        if let Some((drum, dome)) = &self.dome {
            if let Some(drum) = drum {
                let half = drum.width() * 0.5;
                let center = drum.center_x();
                let light = &atmosphere.light;
                canvas.paint(drum.bounds(), BRICK, |x, y| {
                    let across = ((x - center) / half).clamp(-1.0, 1.0);
                    let normal = [across, 0.0, (1.0 - across * across).sqrt()];
                    let albedo = if y < drum.top + 0.008 {
                        self.masonry.trim()
                    } else {
                        self.masonry.albedo(x, y)
                    };
                    Some(atmosphere.fade(light.shade(albedo, normal), self.base_y))
                });
            }
            dome.paint(canvas, atmosphere, self.base_y);
        }
    }

    fn paint(&self, canvas: &mut Canvas, atmosphere: &Atmosphere) {
        let body = self.body;
        if let Some(wing) = &self.wing {
            self.wall(
                canvas,
                atmosphere,
                Bounds::around(&wing.wall),
                wing.normal,
                |x, y| inside_convex(&wing.wall, x, y),
            );
            if let Some(roof) = &wing.roof {
                self.roof(
                    canvas,
                    atmosphere,
                    roof,
                    normalize([wing.normal[0] * 0.3, -0.8, 0.5]),
                );
            }
        }
        if matches!(self.top, Top::Gable { .. }) {
            self.paint_dome(canvas, atmosphere);
        }
        self.wall(canvas, atmosphere, body.bounds(), FACING_VIEWER, |_, _| {
            true
        });
        match self.top {
            Top::Gable { peak } => {
                let overhang = body.width() * 0.04;
                let trim = [
                    (body.center_x(), body.top - peak - overhang * 0.9),
                    (body.right + overhang, body.top + 0.004),
                    (body.left - overhang, body.top + 0.004),
                ];
                self.roof(canvas, atmosphere, &trim, FACING_VIEWER);
                let gable = [
                    (body.center_x(), body.top - peak),
                    (body.right, body.top + 0.001),
                    (body.left, body.top + 0.001),
                ];
                self.wall(
                    canvas,
                    atmosphere,
                    Bounds::around(&gable),
                    FACING_VIEWER,
                    |x, y| inside_convex(&gable, x, y),
                );
            }
            Top::Pitched { rise, inset } => {
                let overhang = body.width() * 0.03;
                let roof = [
                    (body.left - overhang, body.top + 0.004),
                    (body.right + overhang, body.top + 0.004),
                    (body.right - inset, body.top - rise),
                    (body.left + inset, body.top - rise),
                ];
                self.roof(canvas, atmosphere, &roof, normalize([0.0, -0.7, 0.7]));
            }
            Top::Flat { cornice } => {
                let band = Rect {
                    left: body.left - 0.006,
                    right: body.right + 0.006,
                    top: body.top - cornice,
                    bottom: body.top + cornice * 0.4,
                };
                let color = atmosphere.light.shade(self.masonry.trim(), FACING_VIEWER);
                canvas.paint(band.bounds(), BRICK, |_, y| {
                    let under = if y > body.top { 0.8 } else { 1.0 };
                    Some(atmosphere.fade(scale(color, under), self.base_y))
                });
            }
        }
        if !matches!(self.top, Top::Gable { .. }) {
            self.paint_dome(canvas, atmosphere);
        }
        for tower in &self.towers {
            self.paint_tower(canvas, atmosphere, tower);
        }
        for door in &self.doors {
            self.paint_door(canvas, atmosphere, door);
        }
        for window in &self.windows {
            self.paint_window(canvas, atmosphere, window);
        }
    }

    fn paint_tower(&self, canvas: &mut Canvas, atmosphere: &Atmosphere, tower: &Tower) {
        let rect = tower.rect;
        self.wall(canvas, atmosphere, rect.bounds(), FACING_VIEWER, |_, _| {
            true
        });
        // Storey bands break the tall wall up the way string courses do on real towers.
        let band_color = atmosphere.light.shade(self.masonry.trim(), FACING_VIEWER);
        let storeys = ((rect.bottom - rect.top) / (rect.width() * 1.6))
            .floor()
            .max(1.0);
        let storey = (rect.bottom - rect.top) / storeys;
        for index in 0..storeys as usize {
            let y = rect.top + storey * index as f32;
            let band = Rect {
                left: rect.left - 0.004,
                right: rect.right + 0.004,
                top: y,
                bottom: y + 0.009,
            };
            canvas.paint(band.bounds(), BRICK, |_, _| {
                Some(atmosphere.fade(band_color, self.base_y))
            });
        }
        match &tower.cap {
            Cap::Spire { height } => {
                let overhang = rect.width() * 0.08;
                let apex = (rect.center_x(), rect.top - height);
                let left = [
                    apex,
                    (rect.center_x(), rect.top + 0.003),
                    (rect.left - overhang, rect.top + 0.003),
                ];
                let right = [
                    apex,
                    (rect.right + overhang, rect.top + 0.003),
                    (rect.center_x(), rect.top + 0.003),
                ];
                self.roof(canvas, atmosphere, &left, normalize([-0.7, -0.3, 0.6]));
                self.roof(canvas, atmosphere, &right, normalize([0.7, -0.3, 0.6]));
            }
            Cap::Dome(dome) => dome.paint(canvas, atmosphere, self.base_y),
            Cap::Battlements { count, height } => {
                let slots = (count * 2 - 1) as f32;
                let merlon = rect.width() / slots;
                for index in 0..*count {
                    let left = rect.left + merlon * 2.0 * index as f32;
                    let part = Rect {
                        left,
                        right: left + merlon,
                        top: rect.top - height,
                        bottom: rect.top + 0.002,
                    };
                    self.wall(canvas, atmosphere, part.bounds(), FACING_VIEWER, |_, _| {
                        true
                    });
                }
            }
        }
    }

    fn paint_door(&self, canvas: &mut Canvas, atmosphere: &Atmosphere, door: &Opening) {
        let light = &atmosphere.light;
        let surround = door.grown(door.rect.width() * 0.14);
        let trim = light.shade(self.masonry.trim(), FACING_VIEWER);
        canvas.paint(surround.rect.bounds(), BRICK, |x, y| {
            (surround.contains(x, y) && y <= door.rect.bottom)
                .then(|| atmosphere.fade(trim, self.base_y))
        });
        let plank = door.rect.width() / 4.0;
        let color = light.shade(self.door_color, FACING_VIEWER);
        canvas.paint(door.rect.bounds(), DOOR, |x, y| {
            if !door.contains(x, y) {
                return None;
            }
            let seam = ((x - door.rect.left) / plank).fract();
            let seam_shade = if seam < 0.12 { 0.7 } else { 1.0 };
            // The head of a recessed doorway is in shadow.
            let recess =
                0.75 + 0.25 * smoothstep(door.rect.top, door.rect.top + door.rect.width(), y);
            Some(atmosphere.fade(scale(color, seam_shade * recess), self.base_y))
        });
    }

    fn paint_window(&self, canvas: &mut Canvas, atmosphere: &Atmosphere, window: &Opening) {
        let light = &atmosphere.light;
        let frame = light.shade(self.masonry.trim(), FACING_VIEWER);
        let glass = if self.lit_windows {
            self.glass
        } else {
            light.shade(self.glass, FACING_VIEWER)
        };
        let rect = window.rect;
        let center = rect.center_x();
        let half = rect.width() * 0.5;
        let mullion = rect.width() > 0.04;
        canvas.paint(rect.bounds(), WINDOW, |x, y| {
            if !window.contains(x, y) {
                return None;
            }
            let dx = x - center;
            let tracery = match window.shape {
                Shape::Round => {
                    let cy = (rect.top + rect.bottom) * 0.5;
                    let angle = (y - cy).atan2(dx) / PI * 4.0;
                    let spoke = (angle.fract() - 0.5).abs() > 0.42;
                    let hub = dx * dx + (y - cy) * (y - cy) < half * half * 0.1;
                    spoke || hub
                }
                _ => mullion && dx.abs() < rect.width() * 0.07,
            };
            if tracery {
                return Some(atmosphere.fade(frame, self.base_y));
            }
            // Glass reflects the bright sky at the top and the dark ground at the bottom.
            let down = (y - rect.top) / (rect.bottom - rect.top);
            let reflection = if self.lit_windows {
                1.0 - 0.2 * down
            } else {
                1.25 - 0.4 * down
            };
            Some(atmosphere.fade(scale(glass, reflection), self.base_y))
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The whole scene

enum Object {
    Church(Box<Church>),
    Tree(Tree),
}

impl Object {
    fn base_y(&self) -> f32 {
        match self {
            Object::Church(church) => church.base_y,
            Object::Tree(tree) => tree.base_y,
        }
    }
}

/// The final camera-like adjustment, applied after downsampling because it is per-pixel.
struct Grade {
    exposure: f32,
    contrast: f32,
    saturation: f32,
    tint: Rgb,
    vignette: f32,
    grain: f32,
    salt: u32,
}

impl Grade {
    fn apply(&self, color: Rgb, x: f32, y: f32, grain: f32) -> Rgb {
        let grey = luma(color);
        let color = mix([grey; 3], color, self.saturation);
        let (dx, dy) = (x - 0.5, y - 0.5);
        let falloff = 1.0 - self.vignette * (dx * dx + dy * dy) * 2.0;
        let gain = self.exposure * falloff;
        let noise = self.grain * grain;
        let mut out = [0.0; 3];
        for channel in 0..3 {
            let contrasted = (color[channel] - 0.5) * self.contrast + 0.5;
            out[channel] = contrasted * gain * self.tint[channel] + noise;
        }
        out
    }
}

struct Plan {
    atmosphere: Atmosphere,
    sky: Sky,
    clouds: Vec<Cloud>,
    ground: Ground,
    treeline: Option<Treeline>,
    path: Option<Path>,
    objects: Vec<Object>,
    grade: Grade,
}

impl Plan {
    fn sample(rng: &mut SplitMix64) -> Plan {
        let weather = [
            Weather::Clear,
            Weather::Hazy,
            Weather::Dusk,
            Weather::Overcast,
        ][rng.weighted(&[4.5, 2.0, 1.5, 2.0])];
        let sun_side = if rng.chance(0.5) { -1.0 } else { 1.0 };
        let sun_height = match weather {
            Weather::Dusk => rng.range(0.1, 0.35),
            _ => rng.range(0.3, 0.9),
        };
        let direction = normalize([
            sun_side * rng.range(0.2, 1.0),
            -sun_height,
            rng.range(0.4, 0.9),
        ]);
        let light = match weather {
            Weather::Clear => Light {
                direction,
                color: rng.vary([1.0, 0.97, 0.9], 0.03),
                ambient: rng.range(0.45, 0.62),
            },
            Weather::Hazy => Light {
                direction,
                color: rng.vary([0.98, 0.97, 0.94], 0.03),
                ambient: rng.range(0.6, 0.75),
            },
            Weather::Dusk => Light {
                direction,
                color: rng.vary([1.0, 0.78, 0.55], 0.04),
                ambient: rng.range(0.35, 0.5),
            },
            Weather::Overcast => Light {
                direction,
                color: rng.vary([0.92, 0.93, 0.96], 0.02),
                ambient: rng.range(0.78, 0.9),
            },
        };
        let sun_x = 0.5 + sun_side * rng.range(0.2, 0.6);
        let sky = Sky::sample(rng, weather, sun_x);
        let horizon = rng.range(0.5, 0.75);
        let atmosphere = Atmosphere {
            light,
            horizon,
            haze_color: sky.horizon_color,
            haze: match weather {
                Weather::Hazy | Weather::Overcast => rng.range(0.2, 0.4),
                _ => rng.range(0.08, 0.3),
            },
        };

        let cloud_count = match weather {
            Weather::Overcast => 2 + rng.below(3),
            _ => [0, 1, 2, 3, 4][rng.weighted(&[1.5, 2.5, 3.0, 2.0, 1.0])],
        };
        let clouds = (0..cloud_count)
            .map(|_| Cloud::sample(rng, weather, &sky, horizon))
            .collect();
        let ground = Ground::sample(rng, horizon);
        let treeline = rng.chance(0.55).then(|| {
            let left = rng.range(-0.2, 0.5);
            Treeline {
                height: rng.range(0.04, 0.09),
                frequency: rng.range(12.0, 30.0),
                left,
                right: (left + rng.range(0.4, 1.2)).min(1.2),
                color: rng.vary([0.17, 0.3, 0.14], 0.04),
                salt: rng.salt(),
            }
        });

        let mut objects = Vec::new();
        let church_count = rng.weighted(&[0.8, 8.0, 1.4]);
        let mut path = None;
        let mut edges = Vec::new();
        for index in 0..church_count {
            let primary = index == 0;
            let depth = if primary {
                rng.range(0.02, 0.16)
            } else {
                rng.range(0.0, 0.05)
            };
            let size = if !primary {
                rng.range(0.65, 0.9)
            } else if rng.chance(0.1) {
                rng.range(1.5, 2.0)
            } else {
                rng.range(0.85, 1.4)
            };
            let center_x = if primary {
                rng.range(0.3, 0.7)
            } else if rng.chance(0.5) {
                rng.range(0.0, 0.2)
            } else {
                rng.range(0.8, 1.0)
            };
            let base_y = horizon + depth;
            let church = Church::sample(
                rng,
                center_x,
                base_y,
                size,
                &atmosphere,
                weather == Weather::Dusk,
            );
            edges.push((church.body.left, church.body.right, base_y));
            if primary && rng.chance(0.35) {
                let door = church.doors[0].rect;
                path = Some(Path {
                    top: base_y - 0.004,
                    top_x: door.center_x(),
                    top_half: door.width() * 0.6,
                    bottom_x: door.center_x() + rng.range(-0.25, 0.25),
                    bottom_half: rng.range(0.08, 0.2),
                    color: rng.vary_pick(
                        &[[0.72, 0.66, 0.55], [0.55, 0.53, 0.5], [0.5, 0.4, 0.3]],
                        0.04,
                    ),
                    salt: rng.salt(),
                });
            }
            objects.push(Object::Church(Box::new(church)));
        }

        let tree_count = [0, 1, 2, 3, 4, 5][rng.weighted(&[0.6, 1.2, 2.2, 2.4, 2.0, 1.6])];
        let tree_count = if church_count == 0 {
            tree_count + 2
        } else {
            tree_count
        };
        for _ in 0..tree_count {
            let (base_x, base_y) = if !edges.is_empty() && rng.chance(0.5) {
                let (left, right, base) = edges[rng.below(edges.len())];
                let side = if rng.chance(0.5) { left } else { right };
                (side + rng.range(-0.06, 0.06), base + rng.range(-0.02, 0.12))
            } else {
                (rng.range(-0.05, 1.05), horizon + rng.range(0.0, 0.3))
            };
            objects.push(Object::Tree(Tree::sample(
                rng,
                base_x,
                base_y.min(1.02),
                horizon,
                sun_x,
            )));
        }
        objects.sort_by(|a, b| a.base_y().total_cmp(&b.base_y()));

        let grade = Grade {
            exposure: rng.range(0.85, 1.12),
            contrast: rng.range(0.85, 1.15),
            saturation: rng.range(0.75, 1.2),
            tint: rng.vary([1.0, 1.0, 1.0], 0.04),
            vignette: rng.range(0.0, 0.35),
            grain: rng.range(0.01, 0.04),
            salt: rng.salt(),
        };
        Plan {
            atmosphere,
            sky,
            clouds,
            ground,
            treeline,
            path,
            objects,
            grade,
        }
    }

    fn paint(&self, canvas: &mut Canvas) {
        let horizon = self.atmosphere.horizon;
        let sky_area = Bounds {
            bottom: self.ground.horizon + self.ground.tilt.abs() + self.ground.swell + 0.02,
            ..Bounds::FULL
        };
        canvas.paint(sky_area, SKY, |x, y| Some(self.sky.color(x, y, horizon)));
        for cloud in &self.clouds {
            cloud.paint(canvas);
        }
        if let Some(treeline) = &self.treeline {
            treeline.paint(canvas, &self.ground, &self.atmosphere);
        }
        self.ground.paint(canvas, &self.atmosphere);
        if let Some(path) = &self.path {
            path.paint(canvas, &self.atmosphere);
        }
        for object in &self.objects {
            match object {
                Object::Church(church) => church.paint(canvas, &self.atmosphere),
                Object::Tree(tree) => tree.paint(canvas, &self.atmosphere),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_SIZE: usize = 64;

    fn pixel_share(scene: &Scene, label: usize) -> f32 {
        scene
            .labels
            .iter()
            .filter(|&&l| l as usize == label)
            .count() as f32
            / scene.labels.len() as f32
    }

    fn mean_color(scenes: &[Scene], label: usize) -> Rgb {
        let mut sum = [0.0f64; 3];
        let mut count = 0.0f64;
        for scene in scenes {
            let pixels = scene.rgb.chunks_exact(3);
            for (pixel, _) in pixels
                .zip(&scene.labels)
                .filter(|(_, &l)| l as usize == label)
            {
                for (total, &channel) in sum.iter_mut().zip(pixel) {
                    *total += channel as f64 / 255.0;
                }
                count += 1.0;
            }
        }
        [
            (sum[0] / count) as f32,
            (sum[1] / count) as f32,
            (sum[2] / count) as f32,
        ]
    }

    /// 300 scenes at 64x64, rendered once and shared: debug builds render slowly, and every
    /// statistical test wants a sample of this size.
    fn sample() -> &'static [Scene] {
        static SAMPLE: std::sync::OnceLock<Vec<Scene>> = std::sync::OnceLock::new();
        SAMPLE.get_or_init(|| (0..300).map(|seed| render(seed, TEST_SIZE)).collect())
    }

    #[test]
    fn same_seed_renders_identical_bytes() {
        let first = render(42, TEST_SIZE);
        let second = render(42, TEST_SIZE);
        assert_eq!(first.rgb, second.rgb);
        assert_eq!(first.labels, second.labels);
    }

    #[test]
    fn different_seeds_render_different_images() {
        let images: Vec<Vec<u8>> = (0..20).map(|seed| render(seed, TEST_SIZE).rgb).collect();
        for (index, image) in images.iter().enumerate() {
            for other in &images[index + 1..] {
                assert_ne!(image, other);
            }
        }
    }

    #[test]
    fn buffers_have_the_requested_size() {
        for size in [64, 128] {
            let scene = render(7, size);
            assert_eq!(scene.size, size);
            assert_eq!(scene.rgb.len(), size * size * 3);
            assert_eq!(scene.labels.len(), size * size);
        }
    }

    #[test]
    fn every_label_names_a_class() {
        for seed in 0..50 {
            let scene = render(seed, TEST_SIZE);
            assert!(scene
                .labels
                .iter()
                .all(|&label| (label as usize) < CLASSES.len()));
        }
    }

    #[test]
    fn extreme_sizes_and_seeds_render() {
        for (seed, size) in [(0, MIN_SIZE), (u64::MAX, MAX_SIZE), (1 << 63, 100)] {
            let scene = render(seed, size);
            assert_eq!(scene.labels.len(), size * size);
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn size_out_of_range_panics() {
        render(0, MIN_SIZE - 1);
    }

    #[test]
    fn required_classes_come_first_in_order() {
        let required = [
            "sky", "cloud", "grass", "tree", "brick", "dome", "door", "window",
        ];
        assert_eq!(&CLASSES[..required.len()], &required);
        for (index, name) in CLASSES.iter().enumerate() {
            assert_eq!(class_index(name), Some(index));
        }
        assert_eq!(class_index("car"), None);
    }

    #[test]
    fn each_required_class_appears_in_most_scenes() {
        let scenes = sample();
        // A class counts as present only with a few pixels of it, not one stray pixel.
        let minimum = [
            ("sky", 0.95),
            ("cloud", 0.6),
            ("grass", 0.95),
            ("tree", 0.7),
            ("brick", 0.8),
            ("dome", 0.5),
            ("door", 0.7),
            ("window", 0.6),
        ];
        for (name, floor) in minimum {
            let label = class_index(name).unwrap();
            let present = scenes
                .iter()
                .filter(|scene| pixel_share(scene, label) * 4096.0 >= 4.0)
                .count();
            let rate = present as f32 / scenes.len() as f32;
            assert!(
                rate >= floor,
                "{name} present in {rate:.2} of scenes, expected at least {floor}"
            );
        }
    }

    #[test]
    fn sky_and_grass_cover_large_shares() {
        let scenes = sample();
        let count = scenes.len() as f32;
        let sky = scenes
            .iter()
            .map(|scene| pixel_share(scene, 0))
            .sum::<f32>()
            / count;
        let grass = scenes
            .iter()
            .map(|scene| pixel_share(scene, 2))
            .sum::<f32>()
            / count;
        assert!((0.2..0.55).contains(&sky), "sky share {sky}");
        assert!((0.15..0.45).contains(&grass), "grass share {grass}");
    }

    #[test]
    fn grass_is_greener_than_sky() {
        let scenes = sample();
        let grass = mean_color(scenes, 2);
        let sky = mean_color(scenes, 0);
        let greenness = |c: Rgb| c[1] - (c[0] + c[2]) * 0.5;
        assert!(
            greenness(grass) > greenness(sky) + 0.05,
            "grass {grass:?} sky {sky:?}"
        );
    }

    #[test]
    fn sky_is_bluer_and_brighter_than_trees() {
        let scenes = sample();
        let sky = mean_color(scenes, 0);
        let tree = mean_color(scenes, 3);
        assert!(
            sky[2] > tree[2] + 0.2 && luma(sky) > luma(tree),
            "sky {sky:?} tree {tree:?}"
        );
    }

    #[test]
    fn doors_are_darker_than_brick() {
        let scenes = sample();
        let door = luma(mean_color(scenes, 6));
        let brick = luma(mean_color(scenes, 4));
        assert!(door < brick * 0.75, "door {door} brick {brick}");
    }
}
