//! The synthetic video source: a moving test pattern that carries its frame number and capture time
//! in its pixels, so the far end can check content and measure glass-to-glass latency from decoded frames.
//!
//! The stamp (see [`super::stamp`]) takes the top rows. Below the stamp, colour bars scroll and a white square moves, so every frame differs (the encoder
//! can't skip) and a frozen or torn picture is visible at a glance. Everything is a pure function of
//! the frame number and stamp, so a receiver can redraw the expected frame and compute PSNR.

use super::frame::{now_us, I420Frame};
use super::source::{pace, VideoSource};
use super::stamp::{self, stamp_height, WHITE};
pub use super::stamp::{psnr_luma, read_stamp, Stamp};
use std::time::{Duration, Instant};

/// 75% colour bars (Y, U, V), BT.601 studio range.
const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128), // white
    (162, 44, 142),  // yellow
    (131, 156, 44),  // cyan
    (112, 72, 58),   // green
    (84, 184, 198),  // magenta
    (65, 100, 212),  // red
    (35, 212, 114),  // blue
    (16, 128, 128),  // black
];

/// Draws the frame `stamp.frame_no` of the pattern at `width`×`height` (both multiples of 16, width ≥ 64).
pub fn render(stamp: Stamp, width: usize, height: usize) -> I420Frame {
    let mut frame = I420Frame::black(width, height);
    let code_h = stamp_height(width);
    let shift = (stamp.frame_no as usize * 4) % width;
    let (yp, up, vp) = frame.planes_mut();

    // Scrolling bars: every row is the same, so build one row per plane and copy it down.
    let bar = |x: usize| BARS[((x + shift) % width) * BARS.len() / width];
    let y_row: Vec<u8> = (0..width).map(|x| bar(x).0).collect();
    let u_row: Vec<u8> = (0..width / 2).map(|x| bar(2 * x).1).collect();
    let v_row: Vec<u8> = (0..width / 2).map(|x| bar(2 * x).2).collect();
    for row in yp.chunks_exact_mut(width).skip(code_h) {
        row.copy_from_slice(&y_row);
    }
    for row in up.chunks_exact_mut(width / 2).skip(code_h / 2) {
        row.copy_from_slice(&u_row);
    }
    for row in vp.chunks_exact_mut(width / 2).skip(code_h / 2) {
        row.copy_from_slice(&v_row);
    }

    // A white square bouncing through the picture area (even coordinates keep chroma aligned);
    // left out when the picture is too small to hold it below the stamp.
    let side = (height / 6).max(16) & !1;
    if code_h + side <= height && side <= width {
        let span_x = (width - side).max(1);
        let span_y = (height - code_h - side).max(1);
        let sx = (stamp.frame_no as usize * 6 % span_x) & !1;
        let sy = (code_h + stamp.frame_no as usize * 4 % span_y) & !1;
        for row in yp.chunks_exact_mut(width).skip(sy).take(side) {
            row[sx..sx + side].fill(WHITE);
        }
        for r in sy / 2..(sy + side) / 2 {
            up[r * width / 2 + sx / 2..r * width / 2 + (sx + side) / 2].fill(128);
            vp[r * width / 2 + sx / 2..r * width / 2 + (sx + side) / 2].fill(128);
        }
    }

    // The stamp: one block per bit, row-major from the top-left; chroma stays neutral (128).
    stamp::draw(&mut frame, stamp);
    frame
}

/// The pattern with grain below the stamp (±16 luma, a pseudo-random field that changes every frame):
/// it costs bits as a camera picture does (the plain pattern compresses to a fifth of a call's
/// bitrate), so keyframes span many RTP packets and the rate control has work to do, while the stamp
/// stays readable. Tests and `codec-bench` use it.
pub fn grainy(stamp: Stamp, width: usize, height: usize) -> I420Frame {
    let mut frame = render(stamp, width, height);
    let start = stamp_height(width) * width;
    let (y, _, _) = frame.planes_mut();
    for (i, p) in y.iter_mut().enumerate().skip(start) {
        // lowbias32 (a well-mixed integer hash): a plain multiplicative hash leaves structure the
        // encoder predicts away.
        let mut x = (i as u32) ^ stamp.frame_no.rotate_left(20);
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        let noise = x >> 27;
        *p = p.saturating_add(noise as u8).saturating_sub(16);
    }
    frame
}

/// The synthetic camera: renders the pattern at a steady frame rate, stamping each frame's capture time.
pub struct PatternSource {
    width: usize,
    height: usize,
    fps: u32,
    frame_no: u32,
    deadline: Instant,
}

impl PatternSource {
    /// A pattern of `width`×`height` (rounded down to multiples of 16, and at least big enough for the
    /// stamp and the moving square: 256×128) at `fps`.
    pub fn new(width: usize, height: usize, fps: u32) -> Self {
        let (width, height) = stamp::min_size(width, height, 32);
        Self { width, height, fps: fps.clamp(1, 120), frame_no: 0, deadline: Instant::now() }
    }
}

impl VideoSource for PatternSource {
    fn next_frame(&mut self) -> Option<I420Frame> {
        pace(&mut self.deadline, Duration::from_secs(1) / self.fps);
        let stamp = Stamp { frame_no: self.frame_no, capture_us: now_us() };
        self.frame_no = self.frame_no.wrapping_add(1);
        Some(render(stamp, self.width, self.height))
    }

    fn fps(&self) -> u32 {
        self.fps
    }

    fn describe(&self) -> String {
        format!("synthetic test pattern {}x{}@{}", self.width, self.height, self.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::RgbaFrame;

    fn to_rgba(frame: &I420Frame) -> RgbaFrame {
        frame.to_rgba().expect("a packed frame converts")
    }

    #[test]
    fn stamp_round_trips_through_pixels() {
        for (w, h) in [(640, 480), (1280, 720), (320, 240)] {
            let stamp = Stamp { frame_no: 123_456, capture_us: 1_732_358_400_123_456 & 0xFFFF_FFFF_FFFF };
            let sent = render(stamp, w, h);
            let rgba = to_rgba(&sent);
            assert_eq!(read_stamp(&rgba), Some(stamp), "{w}x{h}");
            assert!(psnr_luma(&rgba, &sent) > 40.0);
        }
    }

    #[test]
    fn a_stamp_reads_on_a_picture_sent_at_a_half_or_a_quarter_of_its_size() {
        let stamp = Stamp { frame_no: 4_242, capture_us: 987_654_321 };
        let sent = render(stamp, 640, 480);
        for scale in [2, 4] {
            let small = sent.downscaled(scale);
            assert_eq!(read_stamp(&to_rgba(&small)), Some(stamp), "1/{scale}");
        }
    }

    #[test]
    fn tiny_sizes_are_raised_to_what_the_stamp_needs_and_never_panic() {
        let mut source = PatternSource::new(160, 120, 15);
        let frame = source.next_frame().expect("a frame");
        assert!(frame.width >= 256 && frame.height >= 128, "{}x{}", frame.width, frame.height);
        assert!(read_stamp(&to_rgba(&frame)).is_some());
        // Drawing below the minimum leaves the square out instead of panicking.
        let _ = render(Stamp { frame_no: 3, capture_us: 0 }, 160, 64);
    }

    #[test]
    fn a_damaged_stamp_is_refused() {
        let sent = render(Stamp { frame_no: 7, capture_us: 99 }, 320, 240);
        let mut rgba = to_rgba(&sent);
        let mut px = rgba.pixels.to_vec();
        // Invert the first block (bit 0 of the frame number).
        for y in 0..16 {
            for x in 0..16 {
                let o = (y * 320 + x) * 4;
                let inverted = if px[o] > 128 { 0 } else { 255 };
                px[o..o + 3].fill(inverted);
            }
        }
        rgba.pixels = px.into();
        assert_eq!(read_stamp(&rgba), None);
    }

    #[test]
    fn consecutive_frames_differ_and_psnr_tells_them_apart() {
        let a = render(Stamp { frame_no: 10, capture_us: 5 }, 640, 480);
        let b = render(Stamp { frame_no: 11, capture_us: 5 }, 640, 480);
        assert!(psnr_luma(&to_rgba(&a), &b) < 25.0, "the picture must move between frames");
    }
}
