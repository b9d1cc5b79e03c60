//! The camera-like synthetic source: a picture that costs what a webcam's does, with the same stamp
//! as the test pattern ([`super::stamp`]) in its top rows.
//!
//! The plain pattern compresses to ~160 kbit/s at 640x480@30, so it never stresses a rate limit.
//! The scene has what a camera picture has: a textured background (fractal value noise with
//! furniture-like blocks, made once) panning slowly at sub-pixel steps, a few textured objects moving
//! across it, a slow change of light, and sensor noise that differs every frame. At 640x480@30 it
//! wants ~0.5–1.5 Mbit/s for 36–40 dB (README, Figures).
//!
//! Everything is a pure function of (frame number, stamp, size, seed), in integer arithmetic once the
//! textures are made, so a receiver holding a [`Scene`] of the same size and seed redraws the frame
//! it should have got, to the bit, and can compute PSNR against it.

use super::frame::{now_us, I420Frame};
use super::source::{pace, VideoSource};
use super::stamp::{self, Stamp};
use std::time::{Duration, Instant};

/// The seed [`SceneSource`] uses, so a receiver can redraw what a sender sends.
pub const DEFAULT_SEED: u32 = 0x5eed_ca11;

/// lowbias32: a well-mixed 32-bit integer hash.
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// A hash of several words, for lattice values and per-row noise seeds.
fn hash(words: &[u32]) -> u32 {
    words.iter().fold(0x9e37_79b9, |h, &w| mix(h ^ w))
}

/// A hash as a value in [-1, 1].
fn unit(words: &[u32]) -> f32 {
    hash(words) as f32 / u32::MAX as f32 * 2.0 - 1.0
}

/// Fractal value noise on a `w`×`h` torus (both powers of two): one octave per (cell size, weight),
/// bilinear between lattice points with a smoothstep. Values roughly in [-1, 1] times the weights' sum.
fn fractal(w: usize, h: usize, seed: u32, octaves: &[(usize, f32)]) -> Vec<f32> {
    let mut out = vec![0.0f32; w * h];
    for (o, &(cell, weight)) in octaves.iter().enumerate() {
        let cell = cell.clamp(1, w.min(h));
        let (gw, gh) = (w / cell, h / cell);
        let lattice: Vec<f32> = (0..gw * gh).map(|i| unit(&[seed, o as u32, i as u32]) * weight).collect();
        let smooth: Vec<f32> = (0..cell)
            .map(|i| {
                let t = i as f32 / cell as f32;
                t * t * (3.0 - 2.0 * t)
            })
            .collect();
        for y in 0..h {
            let (gy, ty) = (y / cell, smooth[y % cell]);
            let (r0, r1) = (gy * gw, (gy + 1) % gh * gw);
            for (x, px) in out[y * w..(y + 1) * w].iter_mut().enumerate() {
                let (gx, tx) = (x / cell, smooth[x % cell]);
                let gx1 = (gx + 1) % gw;
                let top = lattice[r0 + gx] + (lattice[r0 + gx1] - lattice[r0 + gx]) * tx;
                let bottom = lattice[r1 + gx] + (lattice[r1 + gx1] - lattice[r1 + gx]) * tx;
                *px += top + (bottom - top) * ty;
            }
        }
    }
    out
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(16.0, 235.0) as u8
}

/// One plane of a tileable texture, stored with its first `pad` columns repeated after each row so
/// a row of the picture is one contiguous read whatever the pan.
struct Tile {
    /// Width and height of the torus (powers of two).
    w: usize,
    h: usize,
    /// `w + pad` bytes a row.
    stride: usize,
    data: Vec<u8>,
}

impl Tile {
    fn new(w: usize, h: usize, pad: usize, value: impl Fn(usize, usize) -> u8) -> Self {
        let stride = w + pad;
        let mut data = vec![0u8; stride * h];
        for (y, row) in data.chunks_exact_mut(stride).enumerate() {
            for (x, p) in row.iter_mut().enumerate() {
                *p = value(x % w, y);
            }
        }
        Self { w, h, stride, data }
    }

    /// Draws this tile into `out` (`width` wide) panned by (`x8`, `y8`) eighths of a pixel: bilinear,
    /// integer weights summing to 64.
    fn pan_into(&self, out: &mut [u8], width: usize, x8: u64, y8: u64) {
        let (x0, fx) = ((x8 / 8) as usize % self.w, (x8 % 8) as u16);
        let (y0, fy) = ((y8 / 8) as usize, (y8 % 8) as u16);
        let weights = [(8 - fx) * (8 - fy), fx * (8 - fy), (8 - fx) * fy, fx * fy];
        for (y, row) in out.chunks_exact_mut(width).enumerate() {
            let r0 = (y0 + y) % self.h * self.stride + x0;
            let r1 = (y0 + y + 1) % self.h * self.stride + x0;
            let (a, b) = (&self.data[r0..r0 + width + 1], &self.data[r1..r1 + width + 1]);
            for (x, p) in row.iter_mut().enumerate() {
                let sum = a[x] as u16 * weights[0]
                    + a[x + 1] as u16 * weights[1]
                    + b[x] as u16 * weights[2]
                    + b[x + 1] as u16 * weights[3];
                *p = ((sum + 32) >> 6) as u8;
            }
        }
    }
}

/// A smooth wave in integers: a parabola-per-half-period stand-in for `amp·sin(2π·n/period + phase)`,
/// exact on every machine (so sender and receiver agree to the pixel).
fn wave(n: u32, period: u32, phase: u32, amp: i64) -> i64 {
    let period = period.max(2) as u64;
    let t = (n as u64 + phase as u64) % period;
    let half = period / 2;
    let u = (t % half.max(1)) as i64;
    let half = half.max(1) as i64;
    let arc = amp * 4 * u * (half - u) / (half * half);
    if (t as i64) < half {
        arc
    } else {
        -arc
    }
}

/// A textured object with a soft-edged mask, moving on a Lissajous-like path.
struct Sprite {
    /// Even width and height.
    w: usize,
    h: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    /// Coverage 0..=16 per luma pixel, and per chroma pixel.
    alpha: Vec<u8>,
    alpha_c: Vec<u8>,
    path: Path,
    /// Where on its path the sprite starts, in frames.
    phase: u32,
}

/// Where a sprite goes: around `centre` by up to `amp` pixels, once per `period` frames, in x and y.
struct Path {
    centre: (i64, i64),
    amp: (i64, i64),
    period: (u32, u32),
}

/// What a sprite looks like.
enum Shape {
    Ellipse,
    Rect,
}

impl Sprite {
    /// A sprite of `shape` about `w`×`h`, its (Y, U, V) `tone` textured ±`contrast` luma levels.
    fn new(
        seed: u32,
        (w, h): (usize, usize),
        shape: Shape,
        tone: (f32, f32, f32),
        contrast: f32,
        path: Path,
    ) -> Self {
        let (w, h) = ((w & !1).max(8), (h & !1).max(8));
        let side = w.max(h).next_power_of_two();
        let tex = fractal(side, side, seed, &[(side / 4, 0.6), (16, 0.35), (4, 0.25), (2, 0.15)]);
        let tint = fractal(side, side, seed ^ 0x55, &[(side / 2, 1.0), (8, 0.3)]);
        let cover = |x: usize, y: usize| -> u8 {
            // Coverage from 4×4 sub-samples, so the edge is soft as a lens makes it.
            let mut inside = 0;
            for sy in 0..4 {
                for sx in 0..4 {
                    let px = (x as f32 + (sx as f32 + 0.5) / 4.0) / w as f32 * 2.0 - 1.0;
                    let py = (y as f32 + (sy as f32 + 0.5) / 4.0) / h as f32 * 2.0 - 1.0;
                    inside += match shape {
                        Shape::Ellipse => px * px + py * py <= 1.0,
                        Shape::Rect => px.abs() <= 0.96 && py.abs() <= 0.96,
                    } as u8;
                }
            }
            inside
        };
        let mut s = Self {
            w,
            h,
            y: Vec::with_capacity(w * h),
            u: Vec::new(),
            v: Vec::new(),
            alpha: Vec::with_capacity(w * h),
            alpha_c: Vec::new(),
            phase: hash(&[seed, 7]) % path.period.0.max(1),
            path,
        };
        for y in 0..h {
            for x in 0..w {
                // Stripes across a rectangle (a book's spines), shading across an ellipse (a face).
                let light = match shape {
                    Shape::Ellipse => 1.0 - 0.35 * (x as f32 / w as f32),
                    Shape::Rect => 1.0 + 0.25 * (((x * 6 / w) % 2) as f32 - 0.5),
                };
                s.y.push(to_u8(tone.0 * light + contrast * tex[y * side + x]));
                s.alpha.push(cover(x, y).min(16));
            }
        }
        for y in 0..h / 2 {
            for x in 0..w / 2 {
                let t = tint[y * side + x] * 10.0;
                s.u.push((tone.1 + t).round().clamp(16.0, 240.0) as u8);
                s.v.push((tone.2 - t).round().clamp(16.0, 240.0) as u8);
                let a = s.alpha[2 * y * w + 2 * x] as u16
                    + s.alpha[2 * y * w + 2 * x + 1] as u16
                    + s.alpha[(2 * y + 1) * w + 2 * x] as u16
                    + s.alpha[(2 * y + 1) * w + 2 * x + 1] as u16;
                s.alpha_c.push((a / 4) as u8);
            }
        }
        s
    }

    /// Top-left corner (even, may be off the picture) at frame `n`.
    fn position(&self, n: u32) -> (i64, i64) {
        let Path { centre, amp, period } = &self.path;
        let x = centre.0 + wave(n, period.0, self.phase, amp.0) - self.w as i64 / 2;
        let y = centre.1 + wave(n, period.1, self.phase / 2, amp.1) - self.h as i64 / 2;
        (x & !1, y & !1)
    }

    /// Blends one plane of a sprite (`w`×`h` pixels and coverage) into `plane` at (`x`, `y`), clipped
    /// to the plane and below row `top`.
    fn blend(
        pixels: &[u8],
        alpha: &[u8],
        (w, h): (usize, usize),
        plane: &mut [u8],
        width: usize,
        (x, y): (i64, i64),
        top: usize,
    ) {
        let height = plane.len() / width;
        let x_from = (-x).max(0) as usize;
        let x_to = (width as i64 - x).clamp(0, w as i64) as usize;
        for sy in 0..h {
            let py = y + sy as i64;
            if py < top as i64 || py >= height as i64 || x_from >= x_to {
                continue;
            }
            let row = &mut plane[py as usize * width..(py as usize + 1) * width];
            for sx in x_from..x_to {
                let a = alpha[sy * w + sx] as u16;
                let p = &mut row[(x + sx as i64) as usize];
                *p = ((*p as u16 * (16 - a) + pixels[sy * w + sx] as u16 * a + 8) >> 4) as u8;
            }
        }
    }
}

/// The camera-like picture for one size and seed: textures made once ([`Scene::new`]), frames drawn
/// by [`Scene::render`] in ~1–2 ms at 640x480 in a release build.
pub struct Scene {
    width: usize,
    height: usize,
    seed: u32,
    bg_y: Tile,
    bg_u: Tile,
    bg_v: Tile,
    sprites: Vec<Sprite>,
    /// Sensor noise for a random byte: a rounded normal distribution, σ ≈ 2 luma levels.
    noise: [i8; 256],
}

impl Scene {
    /// The scene at `width`×`height` (rounded down to multiples of 16, at least 256×128 as the
    /// pattern) with textures from `seed`. Costs some tens of ms (more in a debug build): keep it.
    pub fn new(width: usize, height: usize, seed: u32) -> Self {
        let (width, height) = stamp::min_size(width, height, 80);
        // The background torus: at least the picture, so no repeat shows.
        let (tw, th) = (width.next_power_of_two(), height.next_power_of_two());
        let fine =
            [(128, 0.55), (64, 0.45), (32, 0.3), (16, 0.22), (8, 0.2), (4, 0.16), (2, 0.12), (1, 0.06)];
        let luma = fractal(tw, th, seed, &fine);
        // Furniture: blocks of their own tone and tint with hard edges, as shelves and frames are.
        let blocks: Vec<(usize, usize, usize, usize, f32, f32, f32)> = (0..14u32)
            .map(|i| {
                let r = |k: u32| hash(&[seed, 100 + i, k]) as usize;
                let (bw, bh) = (24 + r(0) % (tw / 4), 24 + r(1) % (th / 3));
                let tone = unit(&[seed, 200 + i]) * 45.0;
                (
                    r(2) % tw,
                    r(3) % th,
                    bw,
                    bh,
                    tone,
                    unit(&[seed, 300 + i]) * 25.0,
                    unit(&[seed, 400 + i]) * 25.0,
                )
            })
            .collect();
        let block_at = |x: usize, y: usize| {
            blocks.iter().rev().find(|b| (x + tw - b.0) % tw < b.2 && (y + th - b.1) % th < b.3)
        };
        let shade = |x: usize, y: usize| block_at(x, y).map_or((0.0, 0.0, 0.0), |b| (b.4, b.5, b.6));
        let bg_y =
            Tile::new(tw, th, width + 1, |x, y| to_u8(118.0 + 62.0 * luma[y * tw + x] + shade(x, y).0));
        let chroma = fractal(tw / 2, th / 2, seed ^ 0xc0, &[(64, 1.0), (16, 0.4)]);
        let chroma2 = fractal(tw / 2, th / 2, seed ^ 0xc1, &[(64, 1.0), (16, 0.4)]);
        let uv = |plane: &[f32], tint: fn((f32, f32, f32)) -> f32, x: usize, y: usize| {
            let v = 128.0 + 16.0 * plane[y * tw / 2 + x] + tint(shade(2 * x, 2 * y));
            v.round().clamp(16.0, 240.0) as u8
        };
        let bg_u = Tile::new(tw / 2, th / 2, width / 2 + 1, |x, y| uv(&chroma, |s| s.1, x, y));
        let bg_v = Tile::new(tw / 2, th / 2, width / 2 + 1, |x, y| uv(&chroma2, |s| s.2, x, y));
        let (w, h) = (width as i64, height as i64);
        let sprites = vec![
            // A head and shoulders: large, swaying slowly near the centre.
            Sprite::new(
                seed ^ 1,
                (width * 3 / 10, height * 5 / 10),
                Shape::Ellipse,
                (150.0, 110.0, 150.0),
                40.0,
                Path { centre: (w / 2, h * 3 / 5), amp: (w / 12, h / 30), period: (173, 97) },
            ),
            // A book held up, crossing the picture.
            Sprite::new(
                seed ^ 2,
                (width / 6, height / 4),
                Shape::Rect,
                (90.0, 150.0, 110.0),
                45.0,
                Path { centre: (w / 2, h / 2), amp: (w * 2 / 5, h / 5), period: (331, 211) },
            ),
            // A ball: small and quick.
            Sprite::new(
                seed ^ 3,
                (width / 12, width / 12),
                Shape::Ellipse,
                (190.0, 90.0, 170.0),
                30.0,
                Path { centre: (w / 2, h / 2), amp: (w * 9 / 20, h * 2 / 5), period: (67, 53) },
            ),
        ];
        let mut noise = [0i8; 256];
        for (i, n) in noise.iter_mut().enumerate() {
            // Inverse normal CDF (Acklam's rational fit is overkill here: a logistic fit is enough).
            let p = (i as f64 + 0.5) / 256.0;
            let z = (p / (1.0 - p)).ln() / 1.702;
            *n = (z * 2.0).round().clamp(-8.0, 8.0) as i8;
        }
        Self { width, height, seed, bg_y, bg_u, bg_v, sprites, noise }
    }

    /// The picture size (after rounding).
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Draws frame `stamp.frame_no` with `stamp` in its top rows.
    pub fn render(&self, stamp: Stamp) -> I420Frame {
        let n = stamp.frame_no;
        let (width, height) = (self.width, self.height);
        let mut frame = I420Frame::black(width, height);
        let top = stamp::stamp_height(width);
        // Pan: 0.75 px a frame to the right, forever (the texture is a torus), and a slow vertical sway.
        let x8 = n as u64 * 6;
        let y8 = (wave(n, 450, 0, 24 * 8) + 64 * 8) as u64;
        let (yp, up, vp) = frame.planes_mut();
        self.bg_y.pan_into(yp, width, x8, y8);
        self.bg_u.pan_into(up, width / 2, x8 / 2, y8 / 2);
        self.bg_v.pan_into(vp, width / 2, x8 / 2, y8 / 2);
        for s in &self.sprites {
            let (x, y) = s.position(n);
            Sprite::blend(&s.y, &s.alpha, (s.w, s.h), yp, width, (x, y), top);
            let half = (s.w / 2, s.h / 2);
            Sprite::blend(&s.u, &s.alpha_c, half, up, width / 2, (x / 2, y / 2), top / 2);
            Sprite::blend(&s.v, &s.alpha_c, half, vp, width / 2, (x / 2, y / 2), top / 2);
        }
        // Light: ±8 % gain over ~9 s at 30 fps, as auto-exposure drifts; then sensor noise.
        let gain = 1024 + wave(n, 270, 0, 80);
        let light: Vec<u8> =
            (0..256i64).map(|v| (16 + (v - 16) * gain / 1024).clamp(16, 235) as u8).collect();
        for (r, row) in yp.chunks_exact_mut(width).enumerate().skip(top) {
            let mut state = hash(&[self.seed, n, r as u32]) as u64 | 1 << 40;
            for chunk in row.chunks_mut(8) {
                let bytes = splitmix(&mut state).to_le_bytes();
                for (p, b) in chunk.iter_mut().zip(bytes) {
                    *p = (light[*p as usize] as i16 + self.noise[b as usize] as i16).clamp(16, 235) as u8;
                }
            }
        }
        stamp::draw(&mut frame, stamp);
        frame
    }
}

/// SplitMix64: one well-mixed 64-bit word per call (eight noise samples).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The camera-like source: renders the scene at a steady frame rate, stamping each frame's capture time.
pub struct SceneSource {
    scene: Scene,
    fps: u32,
    frame_no: u32,
    deadline: Instant,
}

impl SceneSource {
    /// The scene at `width`×`height` (rounded as [`Scene::new`] does) at `fps`, seed [`DEFAULT_SEED`].
    pub fn new(width: usize, height: usize, fps: u32) -> Self {
        Self {
            scene: Scene::new(width, height, DEFAULT_SEED),
            fps: fps.clamp(1, 120),
            frame_no: 0,
            deadline: Instant::now(),
        }
    }
}

impl VideoSource for SceneSource {
    fn next_frame(&mut self) -> Option<I420Frame> {
        pace(&mut self.deadline, Duration::from_secs(1) / self.fps);
        let stamp = Stamp { frame_no: self.frame_no, capture_us: now_us() };
        self.frame_no = self.frame_no.wrapping_add(1);
        Some(self.scene.render(stamp))
    }

    fn fps(&self) -> u32 {
        self.fps
    }

    fn describe(&self) -> String {
        let (w, h) = self.scene.size();
        format!("synthetic camera-like scene {w}x{h}@{}", self.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::{new_decoder, new_encoder, EncoderSettings, VideoCodec};
    use crate::media::frame::RgbaFrame;
    use crate::media::pattern;
    use crate::media::stamp::{psnr_luma, read_stamp};

    fn to_rgba(frame: &I420Frame) -> RgbaFrame {
        frame.to_rgba().expect("a packed frame converts")
    }

    fn stamp(frame_no: u32) -> Stamp {
        Stamp { frame_no, capture_us: (1_732_358_400_000_000 + frame_no as u64 * 33_333) & 0xFFFF_FFFF_FFFF }
    }

    #[test]
    fn the_stamp_reads_back_from_the_scene() {
        for (w, h) in [(640, 480), (320, 240), (256, 176)] {
            let scene = Scene::new(w, h, DEFAULT_SEED);
            assert_eq!(scene.size(), (w, h));
            for n in [0, 1, 77, 1000] {
                assert_eq!(
                    read_stamp(&to_rgba(&scene.render(stamp(n)))),
                    Some(stamp(n)),
                    "{w}x{h} frame {n}"
                );
            }
        }
    }

    #[test]
    fn a_redrawn_frame_is_the_same_frame_and_another_seed_another_scene() {
        let (a, b) = (Scene::new(320, 240, 7), Scene::new(320, 240, 7));
        for n in [0, 5, 12_345] {
            assert_eq!(a.render(stamp(n)).data, b.render(stamp(n)).data, "frame {n}");
        }
        let other = Scene::new(320, 240, 8).render(stamp(5));
        assert!(psnr_luma(&to_rgba(&other), &a.render(stamp(5))) < 25.0, "the seed picks the scene");
    }

    #[test]
    fn the_picture_moves_and_its_noise_changes_every_frame() {
        let scene = Scene::new(320, 240, DEFAULT_SEED);
        let frame = |n| scene.render(stamp(n));
        let top = stamp::stamp_height(320) * 320;
        // Next frame: sensor noise and motion everywhere below the stamp.
        let (f0, f1) = (frame(10), frame(11));
        let changed =
            f0.data[top..320 * 240].iter().zip(&f1.data[top..320 * 240]).filter(|(a, b)| a != b).count();
        assert!(changed > (320 * 240 - top) / 2, "only {changed} pixels changed");
        // A second later the picture is another one.
        assert!(psnr_luma(&to_rgba(&frame(40)), &f0) < 25.0);
    }

    /// Encodes `frames` frames of `draw` with H.264 at `kbps` and decodes them; returns the bytes sent
    /// and checks every decoded frame's stamp and its PSNR against what was sent.
    fn h264_round_trip(draw: &dyn Fn(Stamp) -> I420Frame, frames: u32, kbps: u32) -> (usize, f64) {
        let sent0 = draw(stamp(0));
        let settings = EncoderSettings { bitrate_bps: kbps * 1000, fps: 30, content: Default::default() };
        let mut encoder = new_encoder(VideoCodec::H264, settings).expect("encoder");
        let mut decoder = new_decoder(VideoCodec::H264).expect("decoder");
        let (mut bytes, mut worst) = (0, f64::MAX);
        for n in 0..frames {
            let sent = if n == 0 { sent0.clone() } else { draw(stamp(n)) };
            let Some(encoded) = encoder.encode(&sent).expect("encodes") else { continue };
            bytes += encoded.data.len();
            let shown = decoder.decode_rgba(&encoded.data).expect("decodes").expect("a picture");
            assert_eq!(read_stamp(&shown), Some(stamp(n)), "frame {n}'s stamp after H.264");
            worst = worst.min(psnr_luma(&shown, &sent));
        }
        (bytes, worst)
    }

    #[test]
    fn the_scene_costs_h264_several_times_the_pattern_and_keeps_its_stamp() {
        let (w, h) = (320, 240);
        let scene = Scene::new(w, h, DEFAULT_SEED);
        // A generous target: each content takes what it needs for its quality.
        let (scene_bytes, scene_psnr) = h264_round_trip(&|s| scene.render(s), 30, 3000);
        let (pattern_bytes, _) = h264_round_trip(&|s| pattern::render(s, w, h), 30, 3000);
        assert!(scene_psnr > 30.0, "the scene decodes close to what was sent: {scene_psnr:.1} dB");
        let ratio = scene_bytes as f64 / pattern_bytes as f64;
        assert!(ratio > 3.0, "scene {scene_bytes} B vs pattern {pattern_bytes} B: ×{ratio:.1}");
    }

    #[test]
    fn the_source_rounds_its_size_and_says_what_it_is() {
        let mut source = SceneSource::new(650, 100, 30);
        let frame = source.next_frame().expect("a frame");
        assert_eq!((frame.width, frame.height), (640, 128));
        assert!(source.describe().contains("camera-like scene 640x128@30"), "{}", source.describe());
        assert_eq!(read_stamp(&to_rgba(&frame)).map(|s| s.frame_no), Some(0));
    }
}
