//! Camera pixels to I420 for the encoder: YUYV, NV12, RGB/BGR/RGBA, grey and MJPEG.
//!
//! The packed-YUV and RGB paths use the `yuv` crate's SIMD routines (BT.601, studio range, the matrix
//! our decoder and preview assume); MJPEG is decoded by libjpeg-turbo (the `mozjpeg` crate, SIMD) to
//! RGB and then takes the RGB path.
//! A [`Converter`] keeps its scratch buffer between frames, so a capture loop allocates only the
//! frame it hands on.

use crate::media::frame::I420Frame;
use yuv::{
    BufferStoreMut, YuvConversionMode, YuvError, YuvPackedImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

/// How a camera lays out its pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed 4:2:2, bytes Y0 U Y1 V (most USB webcams' uncompressed format).
    Yuyv,
    /// Y plane, then interleaved U V at half resolution (many laptop cameras and capture cards).
    Nv12,
    /// Packed 8-bit R G B.
    Rgb,
    /// Packed 8-bit B G R.
    Bgr,
    /// Packed 8-bit R G B A (alpha ignored).
    Rgba,
    /// 8-bit luma only.
    Gray,
    /// Motion JPEG: every frame a complete JPEG (USB webcams at 720p and above).
    Mjpeg,
}

impl PixelFormat {
    /// Bytes a frame of `width`×`height` takes, or `None` for a compressed format.
    pub fn frame_len(self, width: usize, height: usize) -> Option<usize> {
        let pixels = width * height;
        match self {
            PixelFormat::Yuyv => Some(pixels * 2),
            PixelFormat::Nv12 => Some(pixels + 2 * (width.div_ceil(2) * height.div_ceil(2))),
            PixelFormat::Rgb | PixelFormat::Bgr => Some(pixels * 3),
            PixelFormat::Rgba => Some(pixels * 4),
            PixelFormat::Gray => Some(pixels),
            PixelFormat::Mjpeg => None,
        }
    }
}

/// Why a frame could not be converted. Cameras send torn or short frames now and then; the capture
/// loop skips such a frame and goes on.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Fewer bytes than the format and size need (a torn USB transfer).
    #[error("a {format:?} frame of {width}x{height} needs {needed} bytes, the camera gave {got}")]
    ShortFrame {
        /// The format.
        format: PixelFormat,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes received.
        got: usize,
    },
    /// The frame is smaller than 2×2, which I420 cannot hold.
    #[error("a {width}x{height} frame is too small to encode")]
    TooSmall {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// The MJPEG frame is not a decodable JPEG.
    #[error("the camera sent a broken JPEG frame: {0}")]
    Jpeg(String),
    /// The conversion routine refused the layout.
    #[error("pixel conversion failed: {0}")]
    Yuv(#[from] YuvError),
}

/// Converts camera frames to I420, reusing its scratch memory between frames.
#[derive(Default)]
pub struct Converter {
    /// MJPEG decodes to RGB here before the RGB→I420 step.
    rgb: Vec<u8>,
}

impl Converter {
    /// A converter with no scratch memory yet (it grows to the first frame's size).
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts one frame of `width`×`height` in `format` to I420. Odd sizes lose their last column
    /// or row (I420 needs even sizes; the encoder would crop them anyway). For MJPEG the size comes
    /// from the JPEG itself, and `width`/`height` are only what the camera announced.
    pub fn to_i420(
        &mut self,
        format: PixelFormat,
        data: &[u8],
        width: usize,
        height: usize,
    ) -> Result<I420Frame, ConvertError> {
        if format == PixelFormat::Mjpeg {
            return self.mjpeg_to_i420(data);
        }
        if let Some(needed) = format.frame_len(width, height) {
            if data.len() < needed {
                return Err(ConvertError::ShortFrame { format, width, height, needed, got: data.len() });
            }
        }
        let mut out = blank_frame(width, height)?;
        // Drivers may pad rows (V4L2's bytesperline); a packed frame's row stride is its length
        // over its height.
        let stride = |bytes_per_pixel: usize| (data.len() / height).max(width * bytes_per_pixel);
        match format {
            PixelFormat::Yuyv => yuyv_to_i420(data, stride(2), &mut out)?,
            PixelFormat::Nv12 => nv12_to_i420(data, width, height, &mut out),
            PixelFormat::Rgb => packed_rgb_to_i420(data, stride(3), Channels::Rgb, &mut out)?,
            PixelFormat::Bgr => packed_rgb_to_i420(data, stride(3), Channels::Bgr, &mut out)?,
            PixelFormat::Rgba => packed_rgb_to_i420(data, stride(4), Channels::Rgba, &mut out)?,
            PixelFormat::Gray => gray_to_i420(data, stride(1), &mut out),
            // Taken above; decoding here too keeps the match whole without a panic path.
            PixelFormat::Mjpeg => return self.mjpeg_to_i420(data),
        }
        Ok(out)
    }

    fn mjpeg_to_i420(&mut self, data: &[u8]) -> Result<I420Frame, ConvertError> {
        let rgb = &mut self.rgb;
        // libjpeg reports some corrupt streams by unwinding (the mozjpeg crate's documented
        // behaviour); a torn USB frame must cost one frame, not the capture thread.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_jpeg_rgb(data, rgb)));
        let (width, height) = match decoded {
            Ok(Ok(size)) => size,
            Ok(Err(e)) => return Err(ConvertError::Jpeg(e.to_string())),
            Err(_) => return Err(ConvertError::Jpeg("the decoder gave up on it".into())),
        };
        let mut out = blank_frame(width, height)?;
        packed_rgb_to_i420(&self.rgb, width * 3, Channels::Rgb, &mut out)?;
        Ok(out)
    }
}

/// Decodes a JPEG into packed RGB in `rgb` (resized to fit); returns its size. Fast integer DCT
/// and plain upsampling: a webcam picture at call bitrates shows no difference, and it is the
/// cheaper half of libjpeg's options.
fn decode_jpeg_rgb(data: &[u8], rgb: &mut Vec<u8>) -> std::io::Result<(usize, usize)> {
    let mut decompress = mozjpeg::Decompress::new_mem(data)?;
    decompress.dct_method(mozjpeg::DctMethod::IntegerFast);
    decompress.do_fancy_upsampling(false);
    let mut started = decompress.rgb()?;
    let (width, height) = (started.width(), started.height());
    rgb.resize(width * height * 3, 0);
    started.read_scanlines_into(&mut rgb[..])?;
    started.finish()?;
    Ok((width, height))
}

/// A frame of the even size below `width`×`height`, to be filled.
fn blank_frame(width: usize, height: usize) -> Result<I420Frame, ConvertError> {
    let (w, h) = (width & !1, height & !1);
    if w == 0 || h == 0 {
        return Err(ConvertError::TooSmall { width, height });
    }
    Ok(I420Frame { width: w, height: h, data: vec![0; w * h * 3 / 2] })
}

/// The three planes of `out` in the `yuv` crate's terms.
fn planar(out: &mut I420Frame) -> YuvPlanarImageMut<'_, u8> {
    let (w, h) = (out.width as u32, out.height as u32);
    let (y, u, v) = out.planes_mut();
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: w,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: w / 2,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: w / 2,
        width: w,
        height: h,
    }
}

fn yuyv_to_i420(data: &[u8], stride: usize, out: &mut I420Frame) -> Result<(), YuvError> {
    let packed = YuvPackedImage {
        yuy: data,
        yuy_stride: stride as u32,
        width: out.width as u32,
        height: out.height as u32,
    };
    yuv::yuyv422_to_yuv420(&mut planar(out), &packed)
}

/// Which packed RGB layout a buffer holds.
#[derive(Clone, Copy)]
enum Channels {
    Rgb,
    Bgr,
    Rgba,
}

fn packed_rgb_to_i420(
    data: &[u8],
    stride: usize,
    channels: Channels,
    out: &mut I420Frame,
) -> Result<(), YuvError> {
    let (range, matrix, mode) = (YuvRange::Limited, YuvStandardMatrix::Bt601, YuvConversionMode::Balanced);
    let stride = stride as u32;
    let mut image = planar(out);
    match channels {
        Channels::Rgb => yuv::rgb_to_yuv420(&mut image, data, stride, range, matrix, mode),
        Channels::Bgr => yuv::bgr_to_yuv420(&mut image, data, stride, range, matrix, mode),
        Channels::Rgba => yuv::rgba_to_yuv420(&mut image, data, stride, range, matrix, mode),
    }
}

/// NV12 → I420: the Y plane is a copy; the interleaved chroma is split. The `yuv` crate has no
/// bi-planar→planar routine; this loop is a plain deinterleave the compiler vectorises.
fn nv12_to_i420(data: &[u8], src_width: usize, src_height: usize, out: &mut I420Frame) {
    let (w, h) = (out.width, out.height);
    let (y_src, uv_src) = data.split_at(src_width * src_height);
    let uv_stride = 2 * src_width.div_ceil(2);
    let (y, u, v) = out.planes_mut();
    for (dst, src) in y.chunks_exact_mut(w).zip(y_src.chunks(src_width)) {
        dst.copy_from_slice(&src[..w]);
    }
    let rows =
        u.chunks_exact_mut(w / 2).zip(v.chunks_exact_mut(w / 2)).zip(uv_src.chunks(uv_stride)).take(h / 2);
    for ((u_row, v_row), uv_row) in rows {
        for ((pair, u), v) in uv_row.chunks_exact(2).zip(u_row.iter_mut()).zip(v_row.iter_mut()) {
            *u = pair[0];
            *v = pair[1];
        }
    }
}

/// Grey → I420: luma as it is (a grey camera's 0..255 is full range, squeezed to 16..235 so the
/// decoder's studio-range matrix shows the same brightness), chroma neutral.
fn gray_to_i420(data: &[u8], stride: usize, out: &mut I420Frame) {
    let w = out.width;
    let (y, u, v) = out.planes_mut();
    for (dst, src) in y.chunks_exact_mut(w).zip(data.chunks(stride)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = 16 + ((s as u16 * 219 + 127) / 255) as u8;
        }
    }
    u.fill(128);
    v.fill(128);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 studio-range values of pure colours (ITU-R BT.601 tables, rounded).
    const REFERENCE: [([u8; 3], [u8; 3]); 6] = [
        ([0, 0, 0], [16, 128, 128]),
        ([255, 255, 255], [235, 128, 128]),
        ([255, 0, 0], [81, 90, 240]),
        ([0, 255, 0], [145, 54, 34]),
        ([0, 0, 255], [41, 240, 110]),
        ([128, 128, 128], [126, 128, 128]),
    ];

    fn assert_near(got: [u8; 3], want: [u8; 3], what: &str) {
        for (g, w) in got.iter().zip(want) {
            assert!((*g as i32 - w as i32).abs() <= 2, "{what}: got {got:?}, want {want:?}");
        }
    }

    fn yuv_at(frame: &I420Frame, x: usize, y: usize) -> [u8; 3] {
        let (yp, up, vp) = frame.planes();
        let c = (y / 2) * (frame.width / 2) + x / 2;
        [yp[y * frame.width + x], up[c], vp[c]]
    }

    #[test]
    fn rgb_bgr_and_rgba_match_bt601_reference_values() {
        let mut conv = Converter::new();
        for (rgb, want) in REFERENCE {
            let (w, h) = (16, 8);
            let rgb_buf: Vec<u8> = rgb.iter().copied().cycle().take(w * h * 3).collect();
            let bgr_buf: Vec<u8> = [rgb[2], rgb[1], rgb[0]].iter().copied().cycle().take(w * h * 3).collect();
            let rgba_buf: Vec<u8> =
                [rgb[0], rgb[1], rgb[2], 255].iter().copied().cycle().take(w * h * 4).collect();
            for (format, buf) in
                [(PixelFormat::Rgb, rgb_buf), (PixelFormat::Bgr, bgr_buf), (PixelFormat::Rgba, rgba_buf)]
            {
                let frame = conv.to_i420(format, &buf, w, h).expect("converts");
                assert_eq!((frame.width, frame.height), (w, h));
                assert_near(yuv_at(&frame, 5, 3), want, &format!("{format:?} {rgb:?}"));
            }
        }
    }

    #[test]
    fn yuyv_keeps_every_luma_sample_and_the_blocks_chroma() {
        // 8x4, luma a ramp, chroma constant in each 2x2 block (so 4:2:2 → 4:2:0 loses nothing).
        let (w, h) = (8, 4);
        let mut buf = Vec::new();
        for y in 0..h {
            for pair in 0..w / 2 {
                let (u, v) = (40 + 20 * pair as u8 + (y / 2) as u8 * 7, 200 - 10 * pair as u8);
                buf.extend_from_slice(&[(16 + y * w + 2 * pair) as u8, u, (17 + y * w + 2 * pair) as u8, v]);
            }
        }
        let frame = Converter::new().to_i420(PixelFormat::Yuyv, &buf, w, h).expect("converts");
        let (yp, up, vp) = frame.planes();
        assert_eq!(yp, (0..w * h).map(|i| (16 + i) as u8).collect::<Vec<_>>().as_slice());
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                assert_eq!(up[cy * w / 2 + cx], 40 + 20 * cx as u8 + cy as u8 * 7, "U at {cx},{cy}");
                assert_eq!(vp[cy * w / 2 + cx], 200 - 10 * cx as u8, "V at {cx},{cy}");
            }
        }
    }

    #[test]
    fn nv12_splits_the_chroma_and_crops_odd_sizes() {
        let (w, h) = (6, 4);
        let mut buf: Vec<u8> = (0..w * h).map(|i| i as u8).collect();
        for i in 0..(w / 2) * (h / 2) {
            buf.extend_from_slice(&[100 + i as u8, 200 - i as u8]);
        }
        let frame = Converter::new().to_i420(PixelFormat::Nv12, &buf, w, h).expect("converts");
        let (yp, up, vp) = frame.planes();
        assert_eq!(yp, &buf[..w * h]);
        assert_eq!(up, &[100, 101, 102, 103, 104, 105]);
        assert_eq!(vp, &[200, 199, 198, 197, 196, 195]);

        // 5x3 crops to 4x2: the kept pixels are the top-left ones.
        let (w, h) = (5, 3);
        let mut buf: Vec<u8> = (0..w * h).map(|i| i as u8).collect();
        buf.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let frame = Converter::new().to_i420(PixelFormat::Nv12, &buf, w, h).expect("converts");
        assert_eq!((frame.width, frame.height), (4, 2));
        let (yp, up, vp) = frame.planes();
        assert_eq!(yp, &[0, 1, 2, 3, 5, 6, 7, 8]);
        assert_eq!((up, vp), (&[1u8, 3][..], &[2u8, 4][..]));
    }

    #[test]
    fn padded_rows_are_read_at_their_stride() {
        // 4x2 YUYV with 4 bytes of driver padding after each 8-byte row.
        let row = |y0: u8| [y0, 100, y0 + 1, 150, y0 + 2, 100, y0 + 3, 150, 0xEE, 0xEE, 0xEE, 0xEE];
        let buf: Vec<u8> = row(20).into_iter().chain(row(40)).collect();
        let frame = Converter::new().to_i420(PixelFormat::Yuyv, &buf, 4, 2).expect("converts");
        assert_eq!(
            frame.planes(),
            (&[20u8, 21, 22, 23, 40, 41, 42, 43][..], &[100u8, 100][..], &[150u8, 150][..])
        );
    }

    #[test]
    fn gray_maps_full_range_to_studio_range_with_neutral_chroma() {
        let frame = Converter::new().to_i420(PixelFormat::Gray, &[0, 255, 128, 64], 2, 2).expect("converts");
        assert_eq!(frame.planes(), (&[16u8, 235, 126, 71][..], &[128u8][..], &[128u8][..]));
    }

    #[test]
    fn short_and_broken_frames_are_errors_in_words() {
        let mut conv = Converter::new();
        let err = conv.to_i420(PixelFormat::Yuyv, &[0; 10], 8, 4).expect_err("short");
        assert!(err.to_string().contains("needs 64 bytes, the camera gave 10"), "{err}");
        let err = conv.to_i420(PixelFormat::Mjpeg, b"not a jpeg", 8, 4).expect_err("broken");
        assert!(err.to_string().starts_with("the camera sent a broken JPEG frame"), "{err}");
        assert!(conv.to_i420(PixelFormat::Gray, &[0], 1, 1).is_err());
    }
}
