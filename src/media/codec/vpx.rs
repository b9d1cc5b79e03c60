//! VP8 and VP9 through libvpx (Debian's `libvpx-dev` 1.12, bindings from `env-libvpx-sys`): a
//! real-time encoder and a decoder that says when its references are broken.
//!
//! All of Peercall's `unsafe` for libvpx lives in this file, each block with the reason it holds.
//! The encoder is set up as libwebrtc sets up VP8 for a call: one pass, CBR, no lag, error resilient,
//! frame dropping when the rate control runs out of bits, keyframes only on request (and a safety
//! one every 3,000 frames), a cap on keyframe size so a PLI answer does not flood the link.

use super::{CodecError, EncodedFrame, EncoderSettings, Picture, VideoCodec, VideoDecoder, VideoEncoder};
use crate::media::frame::{I420Frame, I420View};
use crate::media::source::VideoContent;
use std::ffi::{c_int, c_long, c_uint, c_ulong, CStr};
use std::mem::MaybeUninit;
use std::time::Instant;
use vpx_sys as ffi;

/// RTP's video clock: the encoder's timebase, so its rate control counts time as RTP does.
const TIMEBASE_HZ: i32 = 90_000;

/// Encoder tuning that the benchmark varies; calls use [`VpxOptions::for_codec`].
#[derive(Clone, Copy, Debug)]
pub struct VpxOptions {
    /// libvpx's speed setting. VP8 real-time: −16…16, negative is a fixed speed |n| (higher is faster,
    /// lower quality), positive lets libvpx pick a speed from the time it measures. VP9 real-time: 5…9.
    pub cpu_used: i32,
    /// Encoder threads.
    pub threads: u32,
}

impl VpxOptions {
    /// What calls use, chosen from `codec-bench` runs on this machine (2 cores, shared by both
    /// directions of a call and the decoder), in process CPU ms per frame on the grain content
    /// (`codec-bench --cpu-used=-4,-6,-8,-10,-12,-16`; H.264 beside it: 4.9 at 640x480, 13.4 at 1280x720):
    ///
    /// | cpu-used | −4 | −6 | −8 | −10 | −12 | −16 |
    /// |---|---|---|---|---|---|---|
    /// | 640x480 | 9.0 | 4.6 | 4.1 | 3.7 | 3.8 | 3.5 |
    /// | 1280x720 | 30.9 | 17.1 | 12.2 | 11.8 | 12.2 | 10.7 |
    ///
    /// −8 is the knee: below it VP8 costs more than H.264, past it the time saved is under 15 %
    /// while the plain pattern shows the loss (−16: 4–7 dB less PSNR at 50–70 % more bits than −8).
    /// libwebrtc's desktop default is −6; two cores shared by four codec instances want the cheaper
    /// setting. One thread: with two, libvpx's workers wait on each other (80 ms of CPU a 640x480
    /// frame on this busy machine, 20× one thread).
    ///
    /// VP9 at speed 8 costs 1.8× VP8 −8 (7.2 and 22.1 ms), and on the plain pattern its real-time
    /// mode leaves changed 16×16 stamp blocks stale at 1280x720 (stamps misread at speeds 7–9).
    pub fn for_codec(codec: VideoCodec) -> Self {
        match codec {
            VideoCodec::Vp9 => Self { cpu_used: 8, threads: 1 },
            _ => Self { cpu_used: -8, threads: 1 },
        }
    }
}

/// Text for a libvpx status code.
fn err_text(err: ffi::vpx_codec_err_t) -> String {
    // SAFETY: vpx_codec_err_to_string returns a pointer to a static NUL-terminated string (or null,
    // which we check) for any code.
    let text = unsafe { ffi::vpx_codec_err_to_string(err) };
    if text.is_null() {
        return format!("{err:?}");
    }
    // SAFETY: non-null, static and NUL-terminated (above).
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// Text for the last error of a context, with libvpx's detail where it has one.
fn ctx_error(ctx: &mut ffi::vpx_codec_ctx_t, err: ffi::vpx_codec_err_t) -> String {
    // SAFETY: `ctx` is an initialised context (every caller holds one); the detail is a string owned by
    // the context, valid until its next call, and copied out at once below.
    let detail = unsafe { ffi::vpx_codec_error_detail(ctx) };
    let mut text = err_text(err);
    if !detail.is_null() {
        // SAFETY: non-null and NUL-terminated, owned by the context we borrow for this call.
        text = format!("{text} ({})", unsafe { CStr::from_ptr(detail) }.to_string_lossy());
    }
    text
}

/// An all-zero codec context, as C's `vpx_codec_ctx_t ctx = {0}`, for an init call to fill in.
fn zeroed_ctx() -> Box<ffi::vpx_codec_ctx_t> {
    // SAFETY: the context holds raw pointers, integers, a union of pointers and `err`, an enum whose
    // zero is VPX_CODEC_OK: all-zero bytes are a valid value of each.
    Box::new(unsafe { MaybeUninit::<ffi::vpx_codec_ctx_t>::zeroed().assume_init() })
}

fn encoder_iface(codec: VideoCodec) -> *mut ffi::vpx_codec_iface_t {
    // SAFETY: these return pointers to libvpx's static interface tables; no preconditions.
    unsafe {
        match codec {
            VideoCodec::Vp9 => ffi::vpx_codec_vp9_cx(),
            _ => ffi::vpx_codec_vp8_cx(),
        }
    }
}

fn decoder_iface(codec: VideoCodec) -> *mut ffi::vpx_codec_iface_t {
    // SAFETY: as above.
    unsafe {
        match codec {
            VideoCodec::Vp9 => ffi::vpx_codec_vp9_dx(),
            _ => ffi::vpx_codec_vp8_dx(),
        }
    }
}

/// A libvpx VP8 or VP9 encoder in real-time mode.
pub struct VpxEncoder {
    codec: VideoCodec,
    // Boxed: libvpx keeps the addresses of both while the context lives.
    ctx: Box<ffi::vpx_codec_ctx_t>,
    cfg: Box<ffi::vpx_codec_enc_cfg_t>,
    settings: EncoderSettings,
    options: VpxOptions,
    /// The size the encoder was opened at: VP8 can switch to smaller sizes in place, not larger ones.
    opened_at: (u32, u32),
    pts: i64,
    force_keyframe: bool,
    screen_content: bool,
}

// SAFETY: a libvpx context has no tie to the thread that made it; every use goes through `&mut self`,
// so it is only ever used from one thread at a time.
unsafe impl Send for VpxEncoder {}

impl VpxEncoder {
    /// A VP8 or VP9 encoder with the options calls use. It opens at the first frame's size.
    pub fn new(codec: VideoCodec, settings: EncoderSettings) -> Result<Self, CodecError> {
        Self::with_options(codec, settings, VpxOptions::for_codec(codec))
    }

    /// The same with other tuning (benchmarks).
    pub fn with_options(
        codec: VideoCodec,
        settings: EncoderSettings,
        options: VpxOptions,
    ) -> Result<Self, CodecError> {
        if !matches!(codec, VideoCodec::Vp8 | VideoCodec::Vp9) {
            return Err(CodecError::EncoderInit(codec, "not a libvpx codec".into()));
        }
        // A placeholder size until the first frame: libvpx needs one to open, and reopening once at
        // the real size costs nothing noticeable.
        Self::open(codec, settings, options, (640, 480), settings.content == VideoContent::Screen)
    }

    fn open(
        codec: VideoCodec,
        settings: EncoderSettings,
        options: VpxOptions,
        (width, height): (u32, u32),
        screen_content: bool,
    ) -> Result<Self, CodecError> {
        let init_err = |text: String| CodecError::EncoderInit(codec, text);
        let iface = encoder_iface(codec);
        let mut cfg = Box::new(MaybeUninit::<ffi::vpx_codec_enc_cfg_t>::uninit());
        // SAFETY: `cfg` is writable memory for one config; on success libvpx has assigned the whole
        // struct (its defaults for usage 0).
        let rc = unsafe { ffi::vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0) };
        if rc != ffi::VPX_CODEC_OK {
            return Err(init_err(err_text(rc)));
        }
        // SAFETY: initialised by the successful call above.
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_threads = options.threads.max(1);
        cfg.g_timebase = ffi::vpx_rational { num: 1, den: TIMEBASE_HZ };
        // Each frame decodable after a loss of earlier non-reference data; no look-ahead (latency).
        cfg.g_error_resilient = ffi::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_lag_in_frames = 0;
        cfg.g_pass = ffi::vpx_enc_pass::VPX_RC_ONE_PASS;
        // libwebrtc's real-time rate control for VP8: CBR with a 1 s buffer, quantiser 2–56, frames
        // dropped (rather than the buffer overrun) when the target cannot be met.
        cfg.rc_end_usage = ffi::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = kbps(settings.bitrate_bps);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.rc_dropframe_thresh = 30;
        cfg.rc_resize_allowed = 0;
        // Keyframes when asked (PLI/FIR); the automatic ones only as a safety net every 100 s at 30 fps.
        cfg.kf_mode = ffi::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = 3000;

        let mut ctx = zeroed_ctx();
        // SAFETY: `ctx` and `cfg` are valid and boxed (stable addresses for as long as the encoder
        // lives, which libvpx relies on); the ABI version is the one the bindings were made from.
        let rc = unsafe {
            ffi::vpx_codec_enc_init_ver(&mut *ctx, iface, &*cfg, 0, ffi::VPX_ENCODER_ABI_VERSION as c_int)
        };
        if rc != ffi::VPX_CODEC_OK {
            // Not initialised: nothing to destroy.
            return Err(init_err(ctx_error(&mut ctx, rc)));
        }
        let mut encoder = Self {
            codec,
            ctx,
            cfg,
            settings,
            options,
            opened_at: (width, height),
            pts: 0,
            force_keyframe: true,
            screen_content: false,
        };
        match codec {
            VideoCodec::Vp9 => {
                encoder.control(ffi::vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int, options.cpu_used)?;
                // Cyclic-refresh adaptive quantisation: libwebrtc's real-time VP9 setting.
                encoder.control(ffi::vp8e_enc_control_id::VP9E_SET_AQ_MODE as c_int, 3)?;
                encoder.control(ffi::vp8e_enc_control_id::VP9E_SET_ROW_MT as c_int, 1)?;
                encoder.control(ffi::vp8e_enc_control_id::VP9E_SET_NOISE_SENSITIVITY as c_int, 0)?;
            }
            _ => {
                encoder.control(ffi::vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int, options.cpu_used)?;
                // Skip blocks that barely changed (cheap on still backgrounds), as libwebrtc does.
                encoder.control(ffi::vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD as c_int, 1)?;
                encoder.control(ffi::vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY as c_int, 0)?;
                // A keyframe may take at most ~9 average frames' worth of bits (libwebrtc's formula for a
                // 600 ms optimal buffer at 30 fps): a PLI answer stays a short burst.
                encoder.control(ffi::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT as c_int, 900)?;
            }
        }
        encoder.set_screen_content(screen_content)?;
        Ok(encoder)
    }

    /// One integer control on the encoder.
    fn control(&mut self, id: c_int, value: c_int) -> Result<(), CodecError> {
        // SAFETY: the context is initialised; every control we send takes one int (or unsigned int,
        // passed the same way through C's varargs) by value.
        let rc = unsafe { ffi::vpx_codec_control_(&mut *self.ctx, id, value) };
        if rc != ffi::VPX_CODEC_OK {
            return Err(CodecError::Encode(
                self.codec,
                format!("control {id} = {value}: {}", ctx_error(&mut self.ctx, rc)),
            ));
        }
        Ok(())
    }

    /// Hands the (changed) config to the running encoder.
    fn apply_config(&mut self) -> Result<(), CodecError> {
        // SAFETY: the context is initialised and `cfg` is the boxed config it was opened with.
        let rc = unsafe { ffi::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        if rc != ffi::VPX_CODEC_OK {
            return Err(CodecError::Encode(self.codec, ctx_error(&mut self.ctx, rc)));
        }
        Ok(())
    }

    /// Follows a change of picture size: in place when VP8 allows it (not larger than it was opened
    /// at), else a new encoder. Either way the next frame is a keyframe.
    fn resize(&mut self, width: u32, height: u32) -> Result<(), CodecError> {
        if width <= self.opened_at.0 && height <= self.opened_at.1 && self.pts > 0 {
            self.cfg.g_w = width;
            self.cfg.g_h = height;
            self.apply_config()?;
        } else {
            let mut fresh =
                Self::open(self.codec, self.settings, self.options, (width, height), self.screen_content)?;
            fresh.pts = self.pts;
            *self = fresh;
        }
        self.force_keyframe = true;
        Ok(())
    }
}

fn kbps(bps: u32) -> c_uint {
    bps.div_ceil(1000).max(1)
}

impl VideoEncoder for VpxEncoder {
    fn codec(&self) -> VideoCodec {
        self.codec
    }

    fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Through `vpx_codec_enc_config_set`: the rate control takes the new target from the next frame.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        self.cfg.rc_target_bitrate = kbps(bitrate_bps);
        self.apply_config()?;
        self.settings.bitrate_bps = bitrate_bps;
        Ok(())
    }

    fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// VP8's screen-content mode (VP8E_SET_SCREEN_CONTENT_MODE), VP9's content tuning.
    fn set_screen_content(&mut self, on: bool) -> Result<(), CodecError> {
        let id = match self.codec {
            VideoCodec::Vp9 => ffi::vp8e_enc_control_id::VP9E_SET_TUNE_CONTENT,
            _ => ffi::vp8e_enc_control_id::VP8E_SET_SCREEN_CONTENT_MODE,
        };
        self.control(id as c_int, on as c_int)?;
        self.screen_content = on;
        Ok(())
    }

    fn encode(&mut self, frame: &I420Frame) -> Result<Option<EncodedFrame>, CodecError> {
        let started = Instant::now();
        let (width, height) = (frame.width, frame.height);
        let luma = width * height;
        if width == 0
            || height == 0
            || width % 2 == 1
            || height % 2 == 1
            || frame.data.len() < luma + luma / 2
        {
            return Err(CodecError::Encode(
                self.codec,
                format!("not an even-sized I420 frame: {width}x{height}"),
            ));
        }
        let (w, h) = (width as c_uint, height as c_uint);
        if (w, h) != (self.cfg.g_w, self.cfg.g_h) {
            self.resize(w, h)?;
        }
        let mut image = MaybeUninit::<ffi::vpx_image_t>::zeroed();
        // SAFETY: vpx_img_wrap fills `image` to describe the caller's buffer, which we checked holds a
        // packed I420 picture of this size (stride alignment 1: rows of `width` and `width/2` bytes).
        // libvpx only reads the planes; the pointer is cast to *mut only because the C API is not
        // const-correct.
        let wrapped = unsafe {
            ffi::vpx_img_wrap(
                image.as_mut_ptr(),
                ffi::vpx_img_fmt::VPX_IMG_FMT_I420,
                w,
                h,
                1,
                frame.data.as_ptr().cast_mut(),
            )
        };
        if wrapped.is_null() {
            return Err(CodecError::Encode(self.codec, "libvpx refused the picture".into()));
        }
        let duration = (TIMEBASE_HZ as u32 / self.settings.fps.max(1)) as c_ulong;
        let flags: c_long =
            if std::mem::take(&mut self.force_keyframe) { ffi::VPX_EFLAG_FORCE_KF as c_long } else { 0 };
        // SAFETY: the context is initialised; `wrapped` points at `image`, which lives (and whose
        // planes, in `frame`, live) until this call returns; libvpx copies what it keeps.
        let rc = unsafe {
            ffi::vpx_codec_encode(
                &mut *self.ctx,
                wrapped,
                self.pts,
                duration,
                flags,
                ffi::VPX_DL_REALTIME as c_ulong,
            )
        };
        self.pts += duration as i64;
        if rc != ffi::VPX_CODEC_OK {
            self.force_keyframe |= flags != 0;
            return Err(CodecError::Encode(self.codec, ctx_error(&mut self.ctx, rc)));
        }
        let mut data = Vec::new();
        let mut keyframe = false;
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        loop {
            // SAFETY: the context is initialised and `iter` is the iterator libvpx asks for, starting
            // null; the packet it returns stays valid until the next call on the context.
            let packet = unsafe { ffi::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if packet.is_null() {
                break;
            }
            // SAFETY: non-null packets point at a valid vpx_codec_cx_pkt_t (above).
            let packet = unsafe { &*packet };
            if packet.kind != ffi::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: for a frame packet the `frame` member of the union is the one libvpx wrote.
            let out = unsafe { packet.data.frame };
            if out.buf.is_null() || out.sz == 0 {
                continue;
            }
            // SAFETY: libvpx's frame buffer holds `sz` bytes, valid until the next call on the context;
            // copied out at once.
            data.extend_from_slice(unsafe {
                std::slice::from_raw_parts(out.buf as *const u8, out.sz as usize)
            });
            keyframe |= out.flags & ffi::VPX_FRAME_IS_KEY != 0;
        }
        if data.is_empty() {
            // Dropped by the rate control; a keyframe asked for is still owed.
            self.force_keyframe |= flags != 0;
            return Ok(None);
        }
        Ok(Some(EncodedFrame { data: data.into(), keyframe, encode_time: started.elapsed() }))
    }
}

impl Drop for VpxEncoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `open` (a value of this type exists only then) and is
        // destroyed once, here.
        unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// A libvpx VP8 or VP9 decoder that refuses to decode against broken references.
pub struct VpxDecoder {
    codec: VideoCodec,
    ctx: Box<ffi::vpx_codec_ctx_t>,
    _cfg: Box<ffi::vpx_codec_dec_cfg_t>,
    /// No keyframe since the start, since a decode error, or since a frame went missing.
    needs_keyframe: bool,
}

// SAFETY: as for the encoder: no thread affinity, used only through `&mut self`.
unsafe impl Send for VpxDecoder {}

impl VpxDecoder {
    /// Starts a decoder (one thread: a 720p VP8 frame decodes in a few milliseconds).
    pub fn new(codec: VideoCodec) -> Result<Self, CodecError> {
        if !matches!(codec, VideoCodec::Vp8 | VideoCodec::Vp9) {
            return Err(CodecError::DecoderInit(codec, "not a libvpx codec".into()));
        }
        let cfg = Box::new(ffi::vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 });
        let mut ctx = zeroed_ctx();
        // SAFETY: `ctx` and `cfg` are valid and boxed (stable for the decoder's life); the ABI
        // version is the one the bindings were made from.
        let rc = unsafe {
            ffi::vpx_codec_dec_init_ver(
                &mut *ctx,
                decoder_iface(codec),
                &*cfg,
                0,
                ffi::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if rc != ffi::VPX_CODEC_OK {
            return Err(CodecError::DecoderInit(codec, ctx_error(&mut ctx, rc)));
        }
        Ok(Self { codec, ctx, _cfg: cfg, needs_keyframe: true })
    }

    fn fail(&mut self, text: String) -> CodecError {
        self.needs_keyframe = true;
        CodecError::Decode(self.codec, text)
    }
}

impl VideoDecoder for VpxDecoder {
    fn codec(&self) -> VideoCodec {
        self.codec
    }

    fn decode(&mut self, frame: &[u8]) -> Result<Option<Picture<'_>>, CodecError> {
        let keyframe = self.codec.is_keyframe(frame);
        if self.needs_keyframe && !keyframe {
            return Ok(None);
        }
        if let Some((w, h)) = keyframe.then(|| vp8_keyframe_size(self.codec, frame)).flatten() {
            // A keyframe may claim up to 16383x16383; libvpx would allocate its buffers for that.
            if u64::from(w) * u64::from(h) > MAX_PICTURE_PIXELS {
                return Err(self.fail(format!("a {w}x{h} picture is larger than we decode")));
            }
        }
        let Ok(len) = c_uint::try_from(frame.len()) else {
            return Err(self.fail(format!("a {} byte frame is too large", frame.len())));
        };
        if len == 0 {
            return Err(self.fail("empty frame".into()));
        }
        // SAFETY: the context is initialised; libvpx reads `len` bytes of `frame`, which outlives the
        // call; no user data, no deadline.
        let rc =
            unsafe { ffi::vpx_codec_decode(&mut *self.ctx, frame.as_ptr(), len, std::ptr::null_mut(), 0) };
        if rc != ffi::VPX_CODEC_OK {
            let text = ctx_error(&mut self.ctx, rc);
            return Err(self.fail(text));
        }
        let mut corrupted: c_int = 0;
        // SAFETY: VP8D_GET_FRAME_CORRUPTED (which the VP9 decoder answers too) writes one int through
        // the pointer, which points at a live local.
        let rc = unsafe {
            ffi::vpx_codec_control_(
                &mut *self.ctx,
                ffi::vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        };
        if rc == ffi::VPX_CODEC_OK && corrupted != 0 {
            return Err(self.fail("the frame decoded against a corrupt reference".into()));
        }
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        // SAFETY: the context is initialised; the image it returns (or null) belongs to the decoder and
        // stays valid until its next decode, which needs `&mut self`, so the borrow below holds it.
        let image = unsafe { ffi::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
        if image.is_null() {
            return Ok(None);
        }
        // SAFETY: non-null, valid as said above.
        let image = unsafe { &*image };
        if image.fmt != ffi::vpx_img_fmt::VPX_IMG_FMT_I420 || image.stride[0] <= 0 || image.stride[1] <= 0 {
            let text = format!("unexpected picture format {:?}", image.fmt);
            return Err(self.fail(text));
        }
        let (width, height) = (image.d_w as usize, image.d_h as usize);
        let (y_stride, uv_stride) = (image.stride[0] as usize, image.stride[1] as usize);
        let chroma_rows = height.div_ceil(2);
        // SAFETY: libvpx's I420 picture has `d_h` rows of `stride[0]` bytes in plane 0 and
        // ceil(d_h/2) rows of `stride[1]`/`stride[2]` bytes in planes 1 and 2 (checked positive and
        // I420 above), all owned by the decoder until its next call.
        let (y, u, v) = unsafe {
            (
                std::slice::from_raw_parts(image.planes[0], y_stride * height),
                std::slice::from_raw_parts(image.planes[1], uv_stride * chroma_rows),
                std::slice::from_raw_parts(image.planes[2], image.stride[2].max(0) as usize * chroma_rows),
            )
        };
        if keyframe {
            self.needs_keyframe = false;
        }
        Ok(Some(Picture { planes: I420View { width, height, y, u, v, y_stride, uv_stride }, keyframe }))
    }

    fn reference_lost(&mut self) {
        self.needs_keyframe = true;
    }
}

impl Drop for VpxDecoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` (a value exists only then), destroyed once, here.
        unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// Whether a VP8 frame is a keyframe: the frame tag's P bit (bit 0 of byte 0) is 0, and a keyframe
/// carries the start code 9d 01 2a after the 3-byte tag (RFC 6386 §9.1).
/// The largest picture we decode, in pixels (4096x2304): a peer's keyframe claiming more is refused
/// before libvpx allocates for it.
const MAX_PICTURE_PIXELS: u64 = 4096 * 2304;

/// The size a VP8 keyframe's header gives (RFC 6386 §9.1: 14 bits each after the start code).
fn vp8_keyframe_size(codec: VideoCodec, frame: &[u8]) -> Option<(u16, u16)> {
    let header = frame.get(3..10).filter(|_| codec == VideoCodec::Vp8)?;
    if header[..3] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let dim = |lo: u8, hi: u8| u16::from_le_bytes([lo, hi]) & 0x3fff;
    Some((dim(header[3], header[4]), dim(header[5], header[6])))
}

pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 1 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// Whether a VP9 frame is a keyframe, from its uncompressed header: frame marker `10`, the profile
/// bits (plus a reserved bit in profile 3), `show_existing_frame` 0, then `frame_type` 0.
pub fn vp9_is_keyframe(frame: &[u8]) -> bool {
    let Some(&b) = frame.first() else { return false };
    if b >> 6 != 0b10 {
        return false;
    }
    let profile = ((b >> 5) & 1) | (((b >> 4) & 1) << 1);
    // Profile 3 has a reserved bit before show_existing_frame.
    let show_existing_at = if profile == 3 { 2 } else { 3 };
    let show_existing = (b >> show_existing_at) & 1;
    let frame_type = (b >> (show_existing_at - 1)) & 1;
    show_existing == 0 && frame_type == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_claiming_a_huge_picture_is_refused_before_libvpx_sees_it() {
        let mut decoder = VpxDecoder::new(VideoCodec::Vp8).expect("decoder");
        // A keyframe tag (P bit 0, shown), the start code, 16383x16383.
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f];
        frame.extend_from_slice(&[0; 64]);
        assert_eq!(vp8_keyframe_size(VideoCodec::Vp8, &frame), Some((16383, 16383)));
        let refused = decoder.decode(&frame).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("16383x16383"), "{refused}");
    }
    use crate::media::frame::RgbaFrame;
    use crate::media::pattern::{grainy, psnr_luma, read_stamp, render, Stamp};

    fn stamp(n: u32) -> Stamp {
        Stamp { frame_no: n, capture_us: 5_000 + 33_333 * n as u64 }
    }

    fn vp8(width: usize, height: usize) -> (VpxEncoder, VpxDecoder) {
        let enc =
            VpxEncoder::new(VideoCodec::Vp8, EncoderSettings::for_size(width, height, 30)).expect("encoder");
        (enc, VpxDecoder::new(VideoCodec::Vp8).expect("decoder"))
    }

    fn decode(dec: &mut VpxDecoder, frame: &EncodedFrame) -> Option<RgbaFrame> {
        dec.decode_rgba(&frame.data).expect("decodes")
    }

    #[test]
    fn encodes_and_decodes_the_pattern_with_stamps_intact() {
        for (width, height, frames) in [(640, 480, 60u32), (1280, 720, 30)] {
            let (mut enc, mut dec) = vp8(width, height);
            let mut worst = f64::MAX;
            let mut last_stamp = None;
            for n in 0..frames {
                let sent = render(stamp(n), width, height);
                let encoded = enc.encode(&sent).expect("encode").expect("no frame dropped at this bitrate");
                assert_eq!(
                    encoded.keyframe,
                    n == 0,
                    "{width}x{height} frame {n}: only the first is a keyframe"
                );
                assert_eq!(VideoCodec::Vp8.is_keyframe(&encoded.data), n == 0, "the bitstream says the same");
                let decoded = decode(&mut dec, &encoded).expect("a picture per frame");
                assert_eq!((decoded.width, decoded.height), (width, height));
                let read = read_stamp(&decoded);
                assert_eq!(read, Some(stamp(n)), "{width}x{height} frame {n}: the stamp survives");
                assert!(read.map(|s| s.frame_no) > last_stamp, "frame numbers rise");
                last_stamp = read.map(|s| s.frame_no);
                worst = worst.min(psnr_luma(&decoded, &sent));
            }
            // Measured: the worst frame is 44.0 dB at 640x480 and 47.2 dB at 1280x720 (the mean ~60 dB).
            // 38 dB leaves 6 dB for other libvpx versions and settings while still failing on a
            // picture that is shifted, torn or from the wrong frame (consecutive pattern frames are
            // under 25 dB apart) or a stale block (the VP9 failure: 23 dB).
            assert!(worst > 38.0, "{width}x{height}: worst PSNR {worst:.1} dB");
            eprintln!("VP8 {width}x{height}: worst PSNR {worst:.1} dB over {frames} frames");
        }
    }

    #[test]
    fn bitrate_changes_mid_stream_without_a_keyframe() {
        let mut enc = VpxEncoder::new(
            VideoCodec::Vp8,
            EncoderSettings { bitrate_bps: 2_000_000, fps: 30, content: Default::default() },
        )
        .expect("encoder");
        let bytes = |enc: &mut VpxEncoder, from: u32| -> (usize, usize) {
            let frames: Vec<EncodedFrame> = (from..from + 60)
                .filter_map(|n| enc.encode(&grainy(stamp(n), 640, 480)).expect("encode"))
                .collect();
            (frames.iter().map(|f| f.data.len()).sum(), frames.iter().filter(|f| f.keyframe).count())
        };
        let (_first, _) = bytes(&mut enc, 0);
        let (high, keyframes) = bytes(&mut enc, 60);
        assert_eq!(keyframes, 0);
        enc.set_bitrate(300_000).expect("bitrate change");
        assert_eq!(enc.settings().bitrate_bps, 300_000);
        let (low, keyframes) = bytes(&mut enc, 120);
        assert_eq!(keyframes, 0, "a bitrate change makes no keyframe");
        // 2 s at 2 Mbit/s is ~500 kB, at 300 kbit/s ~75 kB; CBR's buffer lets the first second after
        // the change run over, so ask for only a third.
        assert!(low * 3 < high, "at 300 kbit/s the encoder must spend far less: {low} vs {high} bytes");
        let per_second = low as f64 * 8.0 / 2.0;
        assert!(per_second < 600_000.0, "{per_second:.0} bit/s after the change to 300 kbit/s");
    }

    #[test]
    fn keyframe_on_request_and_screen_content_switch() {
        let (mut enc, mut dec) = vp8(320, 240);
        let frame = |n| render(stamp(n), 320, 240);
        assert!(enc.encode(&frame(0)).expect("encode").expect("frame").keyframe);
        assert!(!enc.encode(&frame(1)).expect("encode").expect("frame").keyframe);
        enc.request_keyframe();
        let key = enc.encode(&frame(2)).expect("encode").expect("frame");
        assert!(key.keyframe && vp8_is_keyframe(&key.data));
        assert!(decode(&mut dec, &key).expect("picture").keyframe);
        enc.set_screen_content(true).expect("screen mode on");
        let screen = enc.encode(&frame(3)).expect("encode").expect("frame");
        assert!(!screen.keyframe, "the switch makes no keyframe");
        assert_eq!(read_stamp(&decode(&mut dec, &screen).expect("picture")), Some(stamp(3)));
        enc.set_screen_content(false).expect("screen mode off");
    }

    #[test]
    fn a_lost_frame_makes_the_decoder_wait_for_a_keyframe() {
        let (mut enc, mut dec) = vp8(640, 480);
        let frames: Vec<EncodedFrame> = (0..8)
            .map(|n| enc.encode(&render(stamp(n), 640, 480)).expect("encode").expect("frame"))
            .collect();
        assert!(
            dec.decode(&frames[1].data).expect("no error").is_none(),
            "no keyframe seen yet: nothing to show"
        );
        for f in &frames[..3] {
            decode(&mut dec, f).expect("picture");
        }
        // Frame 3 never arrives: the assembler says so, and the decoder must not show 4 against 2.
        dec.reference_lost();
        assert!(dec.decode(&frames[4].data).expect("no error").is_none());
        // A damaged frame (its second half missing) is an error, and the decoder waits again.
        enc.request_keyframe();
        let key = enc.encode(&render(stamp(8), 640, 480)).expect("encode").expect("frame");
        assert_eq!(read_stamp(&decode(&mut dec, &key).expect("the keyframe repairs it")), Some(stamp(8)));
        let next = enc.encode(&render(stamp(9), 640, 480)).expect("encode").expect("frame");
        let damaged = &next.data[..next.data.len() / 2];
        let result = dec.decode(damaged).map(|p| p.is_some());
        assert!(result.is_err(), "half a frame is an error, not a picture: {result:?}");
        let after = enc.encode(&render(stamp(10), 640, 480)).expect("encode").expect("frame");
        assert!(dec.decode(&after.data).expect("no error").is_none(), "waits for a keyframe after the error");
    }

    #[test]
    fn follows_picture_size_changes_down_and_up() {
        let (mut enc, mut dec) = vp8(640, 480);
        for (n, (w, h)) in
            [(640, 480), (320, 240), (320, 240), (640, 480), (1280, 720), (640, 480)].into_iter().enumerate()
        {
            let sent = render(stamp(n as u32), w, h);
            let encoded = enc.encode(&sent).expect("encode").expect("frame");
            let new_size = n == 0 || n == 1 || n >= 3;
            assert_eq!(encoded.keyframe, new_size, "frame {n} ({w}x{h}): a new size starts with a keyframe");
            let decoded = decode(&mut dec, &encoded).expect("picture");
            assert_eq!((decoded.width, decoded.height), (w, h));
            assert_eq!(read_stamp(&decoded), Some(stamp(n as u32)));
        }
    }

    #[test]
    fn junk_is_an_error_or_nothing_never_a_panic() {
        let mut dec = VpxDecoder::new(VideoCodec::Vp8).expect("decoder");
        let fake_key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0xff, 0xff, 0x00];
        for junk in [&fake_key[..], &[1, 2, 3], &[], &[0u8; 64]] {
            if let Ok(Some(_)) = dec.decode_rgba(junk) {
                panic!("junk decoded to a picture");
            }
        }
        let mut enc =
            VpxEncoder::new(VideoCodec::Vp8, EncoderSettings::for_size(320, 240, 30)).expect("encoder");
        let odd = I420Frame { width: 321, height: 240, data: vec![0; 321 * 240 * 2] };
        assert!(enc.encode(&odd).is_err(), "odd sizes are refused, not passed to libvpx");
    }
}
