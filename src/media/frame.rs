//! Video and audio frames as they travel between sources, codecs and listeners.

use std::sync::Arc;

/// A video frame in I420 (planar Y, then U and V at half resolution): what encoders want.
#[derive(Clone, Debug)]
pub struct I420Frame {
    /// Width in pixels (even).
    pub width: usize,
    /// Height in pixels (even).
    pub height: usize,
    /// Y plane (`width*height`), then U and V (`width/2*height/2` each), no padding.
    pub data: Vec<u8>,
}

impl I420Frame {
    /// A black frame of the given (even) size.
    pub fn black(width: usize, height: usize) -> Self {
        let luma = width * height;
        let mut data = vec![16u8; luma + luma / 2];
        data[luma..].fill(128);
        Self { width, height, data }
    }

    /// The Y, U and V planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let luma = self.width * self.height;
        let chroma = luma / 4;
        let (y, rest) = self.data.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        (y, u, &v[..chroma])
    }

    /// This picture shrunk by `factor` (2, 4, ...) each way, each pixel the mean of the block it
    /// covers; the size stays even. For a narrow link: a smaller picture at the same bitrate looks
    /// better than a larger one starved of bits.
    pub fn downscaled(&self, factor: usize) -> I420Frame {
        let factor = factor.max(1);
        let width = (self.width / factor) & !1;
        let height = (self.height / factor) & !1;
        let mut out = I420Frame::black(width.max(2), height.max(2));
        let (width, height) = (out.width, out.height);
        let (sy, su, sv) = self.planes();
        let (dy, du, dv) = out.planes_mut();
        let (source, chroma) = ((self.width, self.height), (self.width / 2, self.height / 2));
        shrink(sy, source, dy, (width, height), factor);
        shrink(su, chroma, du, (width / 2, height / 2), factor);
        shrink(sv, chroma, dv, (width / 2, height / 2), factor);
        out
    }

    /// The Y, U and V planes, writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.width * self.height;
        let chroma = luma / 4;
        let (y, rest) = self.data.split_at_mut(luma);
        let (u, v) = rest.split_at_mut(chroma);
        (y, u, &mut v[..chroma])
    }
}

/// Box-filters one plane (`src_width`×`src_height`) into `dst` (`width`×`height`): each output pixel
/// is the mean of the `factor`×`factor` block it covers, clipped to the source (a minimum-size output
/// may reach past a tiny source's edge; it then repeats the last row or column).
fn shrink(
    src: &[u8],
    (src_width, src_height): (usize, usize),
    dst: &mut [u8],
    (width, height): (usize, usize),
    factor: usize,
) {
    let span = |i: usize, limit: usize| {
        let start = (i * factor).min(limit - 1);
        start..((i + 1) * factor).clamp(start + 1, limit)
    };
    for y in 0..height {
        let rows = span(y, src_height);
        for x in 0..width {
            let cols = span(x, src_width);
            let count = (rows.len() * cols.len()) as u32;
            let sum: u32 = rows
                .clone()
                .flat_map(|row| &src[row * src_width + cols.start..row * src_width + cols.end])
                .map(|&p| u32::from(p))
                .sum();
            dst[y * width + x] = ((sum + count / 2) / count) as u8;
        }
    }
}

impl openh264::formats::YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        self.planes().0
    }

    fn u(&self) -> &[u8] {
        self.planes().1
    }

    fn v(&self) -> &[u8] {
        self.planes().2
    }
}

/// A decoded video frame in RGBA, shared cheaply between listeners (window, tests, benchmarks).
#[derive(Clone, Debug)]
pub struct RgbaFrame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width*height*4` bytes, row by row.
    pub pixels: Arc<[u8]>,
    /// Whether the encoded frame was a keyframe (IDR).
    pub keyframe: bool,
    /// Microseconds since the Unix epoch when decoding finished.
    pub decoded_at_us: u64,
    /// Time the decoder spent on this frame, including the RGBA conversion.
    pub decode_time: std::time::Duration,
}

impl RgbaFrame {
    /// BT.601 studio-range luma of a pixel, as the encoder saw it (inverse of the decoder's conversion).
    pub fn luma(&self, x: usize, y: usize) -> f32 {
        let i = (y * self.width + x) * 4;
        let p = &self.pixels[i..i + 3];
        // Studio-range luma: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
        16.0 + (65.481 * p[0] as f32 + 128.553 * p[1] as f32 + 24.966 * p[2] as f32) / 255.0
    }
}

/// Mono 48 kHz PCM samples, one 20 ms Opus frame (960 samples) at a time.
pub type AudioChunk = Arc<[i16]>;

/// Samples per second of every audio path inside Peercall.
pub const AUDIO_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`AUDIO_RATE`].
pub const AUDIO_FRAME_SAMPLES: usize = 960;

/// Microseconds since the Unix epoch: the clock the synthetic pattern stamps into its pixels.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscaling_averages_blocks_and_keeps_sizes_even() {
        let mut frame = I420Frame::black(8, 4);
        let (y, u, _) = frame.planes_mut();
        // Left half of the luma white, right half black; chroma 100 in the left column pair.
        for row in y.chunks_mut(8) {
            row[..4].fill(235);
        }
        u[0] = 100;
        u[1] = 100;
        u[4] = 100;
        u[5] = 100;
        let half = frame.downscaled(2);
        assert_eq!((half.width, half.height), (4, 2));
        let (y, u, v) = half.planes();
        assert_eq!(y, [235, 235, 16, 16, 235, 235, 16, 16]);
        assert_eq!(u, [100, 128]);
        assert_eq!(v, [128, 128]);
        let quarter = I420Frame::black(1280, 720).downscaled(4);
        assert_eq!((quarter.width, quarter.height), (320, 180));
        // A source too small for the factor still gives a correct (minimum-size) picture.
        let tiny = I420Frame::black(10, 6).downscaled(4);
        assert_eq!((tiny.width, tiny.height), (2, 2));
        let (y, u, v) = tiny.planes();
        assert!(
            y.iter().all(|&p| p == 16) && u == [128] && v == [128],
            "black stays black: {y:?} {u:?} {v:?}"
        );
    }
}
