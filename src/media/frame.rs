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

/// Borrowed I420 planes with their strides: a decoder's picture in its own buffers, or an [`I420Frame`].
#[derive(Clone, Copy, Debug)]
pub struct I420View<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Y plane, `y_stride` bytes a row.
    pub y: &'a [u8],
    /// U plane, `uv_stride` bytes a row, half height (rounded up).
    pub u: &'a [u8],
    /// V plane, like U.
    pub v: &'a [u8],
    /// Bytes from one Y row to the next.
    pub y_stride: usize,
    /// Bytes from one U (or V) row to the next.
    pub uv_stride: usize,
}

/// The picture could not be converted (planes too small for the size they claim).
#[derive(Debug, thiserror::Error)]
#[error("I420 to RGBA conversion failed: {0}")]
pub struct ConvertError(String);

/// The colour conversion every decoded picture and preview goes through: BT.601 limited ("studio")
/// range, which is what openh264 and libvpx decode to and what browsers assume for untagged
/// WebRTC video. `chroma` says whether U and V are at half resolution (420) or full (444, used
/// by the half-size preview, which takes one chroma sample per output pixel).
fn yuv_to_rgba(view: &I420View<'_>, chroma: Chroma) -> Result<Arc<[u8]>, ConvertError> {
    use yuv::{YuvPlanarImage, YuvRange, YuvStandardMatrix};
    let (width, height) = (view.width, view.height);
    let image = YuvPlanarImage {
        y_plane: view.y,
        y_stride: view.y_stride as u32,
        u_plane: view.u,
        u_stride: view.uv_stride as u32,
        v_plane: view.v,
        v_stride: view.uv_stride as u32,
        width: width as u32,
        height: height as u32,
    };
    // Written in place in the shared buffer the picture is handed on in: no copy per frame.
    let mut shared: Arc<[u8]> = std::iter::repeat_n(0u8, width * height * 4).collect();
    // A buffer made just now has one owner; the error only keeps this free of a panic path.
    let rgba = Arc::get_mut(&mut shared).ok_or_else(|| ConvertError("RGBA buffer shared".into()))?;
    let (range, matrix) = (YuvRange::Limited, YuvStandardMatrix::Bt601);
    let stride = width as u32 * 4;
    match chroma {
        Chroma::Half => yuv::yuv420_to_rgba(&image, rgba, stride, range, matrix),
        Chroma::Full => yuv::yuv444_to_rgba(&image, rgba, stride, range, matrix),
    }
    .map_err(|e| ConvertError(e.to_string()))?;
    Ok(shared)
}

#[derive(Clone, Copy)]
enum Chroma {
    Half,
    Full,
}

impl I420View<'_> {
    /// This picture in RGBA (BT.601 limited range, as our decoders produce).
    pub fn to_rgba(&self) -> Result<Arc<[u8]>, ConvertError> {
        yuv_to_rgba(self, Chroma::Half)
    }
}

impl I420Frame {
    /// The planes as a view.
    pub fn view(&self) -> I420View<'_> {
        let (y, u, v) = self.planes();
        I420View {
            width: self.width,
            height: self.height,
            y,
            u,
            v,
            y_stride: self.width,
            uv_stride: self.width / 2,
        }
    }

    /// This picture in RGBA, for a window or a test.
    pub fn to_rgba(&self) -> Result<RgbaFrame, ConvertError> {
        let started = std::time::Instant::now();
        let pixels = self.view().to_rgba()?;
        Ok(RgbaFrame::new(self.width, self.height, pixels, started.elapsed()))
    }

    /// A half-size RGBA copy: one pixel per 2×2 block, which is exactly one chroma sample, so the
    /// conversion touches a quarter of the pixels and needs no chroma interpolation (the local preview).
    pub fn to_rgba_half(&self) -> Result<RgbaFrame, ConvertError> {
        let started = std::time::Instant::now();
        let (w, h) = (self.width / 2, self.height / 2);
        let (yp, u, v) = self.planes();
        // Every other luma sample of every other row: the one at each chroma sample's top-left.
        let y: Vec<u8> =
            (0..h).flat_map(|row| yp[2 * row * self.width..].iter().step_by(2).take(w)).copied().collect();
        let view = I420View { width: w, height: h, y: &y, u, v, y_stride: w, uv_stride: self.width / 2 };
        let pixels = yuv_to_rgba(&view, Chroma::Full)?;
        Ok(RgbaFrame::new(w, h, pixels, started.elapsed()))
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
    /// A picture made now (not from a keyframe), which took `took` to make.
    pub fn new(width: usize, height: usize, pixels: impl Into<Arc<[u8]>>, took: std::time::Duration) -> Self {
        Self {
            width,
            height,
            pixels: pixels.into(),
            keyframe: false,
            decoded_at_us: now_us(),
            decode_time: took,
        }
    }

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

    /// The float conversion this replaced (written by hand twice before: the preview and the pattern
    /// test): BT.601 studio range.
    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let c = 1.164 * (y as f32 - 16.0);
        let (u, v) = (u as f32 - 128.0, v as f32 - 128.0);
        let q = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        [q(c + 1.596 * v), q(c - 0.392 * u - 0.813 * v), q(c + 2.017 * u)]
    }

    /// A 64x64 frame whose 2x2 blocks walk through Y 16–235 and every U/V pair on a 16-step grid.
    fn colour_sweep() -> I420Frame {
        let mut frame = I420Frame::black(64, 64);
        let (y, u, v) = frame.planes_mut();
        for (i, p) in y.iter_mut().enumerate() {
            *p = 16 + (i * 7 % 220) as u8;
        }
        for (i, (pu, pv)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            *pu = 16 + (i % 15 * 16) as u8;
            *pv = 16 + (i / 15 % 15 * 16) as u8;
        }
        frame
    }

    #[test]
    fn rgba_is_bt601_studio_range_within_2_of_the_old_conversion() {
        let frame = colour_sweep();
        let (yp, up, vp) = frame.planes();
        let rgba = frame.to_rgba().expect("converts");
        let half = frame.to_rgba_half().expect("converts");
        assert_eq!((half.width, half.height), (32, 32));
        for row in 0..64 {
            for col in 0..64 {
                let ci = row / 2 * 32 + col / 2;
                let want = reference(yp[row * 64 + col], up[ci], vp[ci]);
                let o = (row * 64 + col) * 4;
                for (k, (&got, &want)) in rgba.pixels[o..o + 3].iter().zip(&want).enumerate() {
                    assert!(got.abs_diff(want) <= 2, "({col},{row}) channel {k}: {got} vs {want}");
                }
                assert_eq!(rgba.pixels[o + 3], 255);
                if row % 2 == 0 && col % 2 == 0 {
                    let h = (row / 2 * 32 + col / 2) * 4;
                    for (&got, &want) in half.pixels[h..h + 3].iter().zip(&want) {
                        assert!(got.abs_diff(want) <= 2, "half ({col},{row}): {got} vs {want}");
                    }
                }
            }
        }
        // Studio white and black are full white and black; the primaries come out as primaries.
        for ((y, u, v), want) in [
            ((235, 128, 128), [255, 255, 255]),
            ((16, 128, 128), [0, 0, 0]),
            ((81, 90, 240), [255, 0, 0]),
            ((41, 240, 110), [0, 0, 255]),
        ] {
            let mut f = I420Frame::black(2, 2);
            let (py, pu, pv) = f.planes_mut();
            py.fill(y);
            pu.fill(u);
            pv.fill(v);
            let got = f.to_rgba().expect("converts");
            for (&g, &w) in got.pixels[..3].iter().zip(&want) {
                assert!(g.abs_diff(w) <= 2, "Y{y} U{u} V{v}: {:?} vs {want:?}", &got.pixels[..3]);
            }
        }
    }

    #[test]
    fn short_planes_are_an_error_not_a_panic() {
        let frame = I420Frame::black(16, 16);
        let (y, u, v) = frame.planes();
        let view = I420View { width: 32, height: 32, y, u, v, y_stride: 32, uv_stride: 16 };
        assert!(view.to_rgba().is_err());
    }
}
