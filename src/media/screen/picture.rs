//! The pure part of screen sharing: what size a shared picture goes out at, the part of a window
//! that is on screen, BGRA (what X servers hand out) → I420 for the encoder, and picker thumbnails.

use crate::media::frame::{I420Frame, RgbaFrame};
use std::time::Instant;
use yuv::{YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

/// The largest picture sent: detail (text) is kept over motion, up to full HD; a larger screen is
/// scaled down to fit (aspect kept).
pub const MAX_SIZE: (usize, usize) = (1920, 1080);

/// A captured picture, 4 bytes a pixel in B, G, R, X order (X11's 24/32-bit little-endian layout).
#[derive(Clone, Debug)]
pub struct BgraImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from one row to the next (≥ 4 × width).
    pub stride: usize,
    /// The pixels.
    pub data: Vec<u8>,
}

/// A rectangle in screen pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge (may be negative: a window partly off screen).
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The part of a window at `window` (screen coordinates) that lies on a screen of `screen` size, in
/// the window's own coordinates; `None` when none of it does. X refuses to read a window beyond the
/// screen's edges (BadMatch), so a window dragged half off screen is shared as its visible part.
pub fn visible_part(window: Rect, screen: (u32, u32)) -> Option<Rect> {
    let left = window.x.max(0);
    let top = window.y.max(0);
    let right = (window.x + window.width as i32).min(screen.0 as i32);
    let bottom = (window.y + window.height as i32).min(screen.1 as i32);
    (right - left >= 2 && bottom - top >= 2).then(|| Rect {
        x: left - window.x,
        y: top - window.y,
        width: (right - left) as u32,
        height: (bottom - top) as u32,
    })
}

/// The size a `width`×`height` capture is sent at: itself if it fits [`MAX_SIZE`], else scaled to fit
/// with its aspect kept; even both ways (I420), at least 2x2.
pub fn sent_size(width: usize, height: usize) -> (usize, usize) {
    let (max_w, max_h) = MAX_SIZE;
    let (w, h) = if width <= max_w && height <= max_h {
        (width, height)
    } else {
        // The tighter of the two limits decides; integer arithmetic keeps it exact for 16:9 → 1080p.
        let by_width = (max_w, height * max_w / width.max(1));
        let by_height = (width * max_h / height.max(1), max_h);
        if by_width.1 <= max_h {
            by_width
        } else {
            by_height
        }
    };
    ((w & !1).max(2), (h & !1).max(2))
}

impl BgraImage {
    /// A picture of one colour, for tests and stand-ins.
    pub fn filled(width: usize, height: usize, bgra: [u8; 4]) -> Self {
        let data = bgra.iter().copied().cycle().take(width * height * 4).collect();
        Self { width, height, stride: width * 4, data }
    }

    /// The pixel at (x, y) as B, G, R, X.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 4] {
        let at = y * self.stride + x * 4;
        [self.data[at], self.data[at + 1], self.data[at + 2], self.data[at + 3]]
    }

    /// This picture as the encoder gets it: at [`sent_size`], BT.601 studio range (what cameras are
    /// converted to and what decoders show).
    pub fn to_i420(&self) -> Result<I420Frame, String> {
        if self.width < 2
            || self.height < 2
            || self.data.len() < self.stride * (self.height - 1) + self.width * 4
        {
            return Err(format!(
                "a {}x{} picture of {} bytes (stride {}) is too small",
                self.width,
                self.height,
                self.data.len(),
                self.stride
            ));
        }
        let (w, h) = sent_size(self.width, self.height);
        let scaled;
        let (src, stride) = if (w, h) == (self.width & !1, self.height & !1) {
            (&self.data[..], self.stride)
        } else {
            scaled = self.resized(w, h);
            (&scaled[..], w * 4)
        };
        let mut out = I420Frame::black(w, h);
        let (y, u, v) = out.planes_mut();
        let mut planar = YuvPlanarImageMut {
            y_plane: yuv::BufferStoreMut::Borrowed(y),
            y_stride: w as u32,
            u_plane: yuv::BufferStoreMut::Borrowed(u),
            u_stride: (w / 2) as u32,
            v_plane: yuv::BufferStoreMut::Borrowed(v),
            v_stride: (w / 2) as u32,
            width: w as u32,
            height: h as u32,
        };
        yuv::bgra_to_yuv420(
            &mut planar,
            src,
            stride as u32,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| format!("BGRA to I420: {e}"))?;
        Ok(out)
    }

    /// A small RGBA picture (at most `max_w`×`max_h`, aspect kept) for the picker.
    pub fn thumbnail(&self, max_w: usize, max_h: usize) -> RgbaFrame {
        let started = Instant::now();
        let scale =
            (max_w as f64 / self.width.max(1) as f64).min(max_h as f64 / self.height.max(1) as f64).min(1.0);
        let w = ((self.width as f64 * scale) as usize).max(1);
        let h = ((self.height as f64 * scale) as usize).max(1);
        let mut rgba = self.resized(w, h);
        for p in rgba.chunks_exact_mut(4) {
            p.swap(0, 2);
            p[3] = 255;
        }
        RgbaFrame::new(w, h, rgba, started.elapsed())
    }

    /// This picture at `w`×`h` (smaller), each output pixel the mean of the source pixels it covers:
    /// text shrunk this way stays legible, where picking one pixel in n would drop strokes.
    fn resized(&self, w: usize, h: usize) -> Vec<u8> {
        let mut out = vec![0u8; w * h * 4];
        let span = |i: usize, n: usize, of: usize| {
            let start = i * of / n;
            start..((i + 1) * of / n).max(start + 1).min(of)
        };
        for oy in 0..h {
            let rows = span(oy, h, self.height);
            for ox in 0..w {
                let cols = span(ox, w, self.width);
                let mut sum = [0u32; 4];
                for y in rows.clone() {
                    let row = &self.data[y * self.stride..];
                    for p in row[cols.start * 4..cols.end * 4].chunks_exact(4) {
                        for c in 0..4 {
                            sum[c] += p[c] as u32;
                        }
                    }
                }
                let count = (rows.len() * cols.len()).max(1) as u32;
                let at = (oy * w + ox) * 4;
                for c in 0..4 {
                    out[at + c] = (sum[c] / count) as u8;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_up_to_1080p_then_scaled_to_fit_with_even_sizes() {
        assert_eq!(sent_size(1280, 800), (1280, 800));
        assert_eq!(sent_size(1920, 1080), (1920, 1080));
        assert_eq!(sent_size(801, 601), (800, 600));
        assert_eq!(sent_size(2560, 1440), (1920, 1080));
        assert_eq!(sent_size(3840, 2160), (1920, 1080));
        // 16:10 is limited by its height; an ultra-wide one by its width.
        assert_eq!(sent_size(2560, 1600), (1728, 1080));
        assert_eq!(sent_size(5120, 1440), (1920, 540));
        assert_eq!(sent_size(1, 1), (2, 2));
    }

    #[test]
    fn a_window_partly_off_screen_is_read_where_it_is_on_screen() {
        let screen = (1280, 800);
        let inside = Rect { x: 100, y: 50, width: 400, height: 300 };
        assert_eq!(visible_part(inside, screen), Some(Rect { x: 0, y: 0, width: 400, height: 300 }));
        let off_left_top = Rect { x: -40, y: -10, width: 400, height: 300 };
        assert_eq!(visible_part(off_left_top, screen), Some(Rect { x: 40, y: 10, width: 360, height: 290 }));
        let off_right = Rect { x: 1200, y: 700, width: 400, height: 300 };
        assert_eq!(visible_part(off_right, screen), Some(Rect { x: 0, y: 0, width: 80, height: 100 }));
        assert_eq!(visible_part(Rect { x: 1300, y: 0, width: 10, height: 10 }, screen), None);
    }

    #[test]
    fn bgra_becomes_studio_range_bt601_i420() {
        // White, black and pure red columns: Y 235 / 16 / 81 in BT.601 studio range.
        let mut img = BgraImage::filled(6, 4, [255, 255, 255, 0]);
        for y in 0..4 {
            for x in 2..4 {
                img.data[y * 24 + x * 4..y * 24 + x * 4 + 4].copy_from_slice(&[0, 0, 0, 0]);
            }
            for x in 4..6 {
                img.data[y * 24 + x * 4..y * 24 + x * 4 + 4].copy_from_slice(&[0, 0, 255, 0]);
            }
        }
        let frame = img.to_i420().expect("converts");
        assert_eq!((frame.width, frame.height), (6, 4));
        let (y, u, v) = frame.planes();
        let near = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 2;
        assert!(near(y[0], 235) && near(y[2], 16) && near(y[4], 81), "{:?}", &y[..6]);
        // Red: V high, U a little below neutral.
        assert!(near(v[2], 240) && u[2] < 128, "u {} v {}", u[2], v[2]);
        assert!(near(u[0], 128) && near(v[0], 128));
    }

    #[test]
    fn a_large_screen_is_scaled_by_the_mean_and_odd_sizes_are_cropped_even() {
        // Alternate black and white columns at 3840 wide average to mid grey at 1920.
        let mut img = BgraImage::filled(3840, 2160, [0, 0, 0, 0]);
        for y in 0..2160 {
            for x in (1..3840).step_by(2) {
                let at = y * img.stride + x * 4;
                img.data[at..at + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let frame = img.to_i420().expect("converts");
        assert_eq!((frame.width, frame.height), (1920, 1080));
        let mid = frame.planes().0[540 * 1920 + 960];
        assert!((120..=132).contains(&mid), "mean of black and white in studio range: {mid}");
        let odd = BgraImage::filled(101, 51, [10, 20, 30, 0]).to_i420().expect("converts");
        assert_eq!((odd.width, odd.height), (100, 50));
        assert!(BgraImage { width: 10, height: 10, stride: 40, data: vec![0; 100] }.to_i420().is_err());
    }

    #[test]
    fn thumbnails_keep_the_aspect_and_turn_bgra_into_rgba() {
        let thumb = BgraImage::filled(1280, 800, [10, 20, 200, 0]).thumbnail(160, 120);
        assert_eq!((thumb.width, thumb.height), (160, 100));
        assert_eq!(&thumb.pixels[..4], &[200, 20, 10, 255]);
    }
}
