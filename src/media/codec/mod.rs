//! Video codecs behind one seam: H.264 (openh264) and VP8/VP9 (libvpx) encode I420 frames and
//! decode to I420 pictures through the same two traits, so a call picks its codec at negotiation.
//!
//! - [`VideoEncoder`]: I420 in, one encoded frame out (with whether it is a keyframe); bitrate changes
//!   mid-stream without a keyframe; a keyframe on request (the answer to PLI/FIR).
//! - [`VideoDecoder`]: one complete encoded frame in (as the [assembler](super::assembler) hands it
//!   over), a picture out, or an error / `None` meaning "ask the sender for a keyframe".
//! - [`new_encoder`] / [`new_decoder`] make the right one for a [`VideoCodec`].
//!
//! # Carrying VP8 in a call
//! - SDP: `video/VP8`, clock 90000, no fmtp, rtcp-fb `nack`, `nack pli`, `ccm fir`, `goog-remb`
//!   (`transport-cc` where TWCC is on). Chromium 156 offers it first, as payload type 96 (rtx 97);
//!   Firefox ESR 153 offline offers VP8 120 (rtx 124, fmtp `max-fs=12288;max-fr=60`), VP9 121, AV1 99
//!   and no H.264. The answer uses the offer's numbers.
//! - Sending: `TrackLocalStaticSample` picks its payloader (for VP8 the `rtc` crate's `Vp8Payloader`,
//!   picture id on) once, in `new`, from the codec the track was made with, not from what was
//!   negotiated: make the video track for the negotiated codec (or swap it in with
//!   `RtpSender::replace_track`), then hand it [`EncodedFrame::data`] as is.
//! - Receiving: [`FrameAssembler::new`](super::assembler::FrameAssembler::new) with [`VideoCodec::Vp8`];
//!   on [`Assembled::Lost`](super::assembler::Assembled::Lost) call [`VideoDecoder::reference_lost`]
//!   and send PLI; `Assembled::Frame::keyframe` says when the PLI was answered.

pub mod h264;
pub mod vpx;

use super::frame::{I420Frame, I420View, RgbaFrame};
use super::source::VideoContent;
use std::fmt;
use std::time::{Duration, Instant};

/// The video codecs Peercall can encode and decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization-mode 1 (openh264).
    H264,
    /// VP8 (libvpx): what every browser has, and all an offline Firefox has besides VP9 and AV1.
    Vp8,
    /// VP9 profile 0 (libvpx), for measurement only: it costs 1.8× VP8's CPU here and its real-time
    /// mode left stamp blocks stale on the test pattern (see [`vpx::VpxOptions::for_codec`]); every
    /// browser that offers VP9 offers VP8, so calls do not offer it.
    Vp9,
}

impl VideoCodec {
    /// The RTP/SDP MIME type (`a=rtpmap` name with its kind), as webrtc-rs names it.
    pub fn mime_type(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/H264",
            VideoCodec::Vp8 => "video/VP8",
            VideoCodec::Vp9 => "video/VP9",
        }
    }

    /// The codec for a MIME type, in any case (`video/vp8`, `video/VP8`).
    pub fn from_mime(mime: &str) -> Option<Self> {
        [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Vp9]
            .into_iter()
            .find(|c| c.mime_type().eq_ignore_ascii_case(mime))
    }

    /// Whether `frame` (one whole encoded frame) is a keyframe, read from the bitstream itself:
    /// an IDR slice for H.264, the frame tag's P bit for VP8, the uncompressed header for VP9.
    pub fn is_keyframe(self, frame: &[u8]) -> bool {
        match self {
            VideoCodec::H264 => h264::contains_idr(frame),
            VideoCodec::Vp8 => vpx::vp8_is_keyframe(frame),
            VideoCodec::Vp9 => vpx::vp9_is_keyframe(frame),
        }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
        })
    }
}

/// What can go wrong in a codec, in words a log or a window can show.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The encoder refused to start (bad size or parameters, or the library is missing a codec).
    #[error("{0} encoder could not start: {1}")]
    EncoderInit(VideoCodec, String),
    /// A frame could not be encoded, or a setting could not be changed.
    #[error("{0} encoding failed: {1}")]
    Encode(VideoCodec, String),
    /// The decoder could not start.
    #[error("{0} decoder could not start: {1}")]
    DecoderInit(VideoCodec, String),
    /// The bitstream could not be decoded (loss, corruption, or no keyframe yet): ask for a keyframe.
    #[error("{0} decoding failed: {1}")]
    Decode(VideoCodec, String),
    /// The codec has no such switch.
    #[error("{0} has no {1}")]
    Unsupported(VideoCodec, &'static str),
}

/// One encoded frame, ready for the RTP payloader: Annex-B for H.264 (an IDR carries SPS and PPS
/// ahead of it), the raw frame for VP8/VP9.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    /// The bitstream of the frame.
    pub data: bytes::Bytes,
    /// Whether this is a keyframe (IDR): decodable with no earlier frame.
    pub keyframe: bool,
    /// Time the encoder spent on it.
    pub encode_time: Duration,
}

/// The encoder settings a call needs.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSettings {
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Frames per second the source delivers.
    pub fps: u32,
    /// What the pictures hold: a shared screen is encoded with the codec's screen-content tuning
    /// (openh264's `SCREEN_CONTENT_REAL_TIME` usage, VP8's screen-content mode).
    pub content: VideoContent,
}

impl EncoderSettings {
    /// A bitrate that looks good for the pattern and for a camera at this size: ~0.1 bit per pixel at 30 fps.
    pub fn for_size(width: usize, height: usize, fps: u32) -> Self {
        let bps = (width * height) as u64 * fps as u64 / 10;
        Self { bitrate_bps: bps.clamp(300_000, 4_000_000) as u32, fps, content: VideoContent::Camera }
    }

    /// Settings for a shared screen at this size: mostly still pictures whose detail matters, so
    /// ~0.15 bit per pixel at 15 fps (1080p: 4.7 Mbit/s, capped at 4; 1280x800: 2.3 Mbit/s), which
    /// the encoder spends on the changes and on sharp keyframes.
    pub fn for_screen(width: usize, height: usize, fps: u32) -> Self {
        let bps = (width * height) as u64 * fps as u64 * 3 / 20;
        Self { bitrate_bps: bps.clamp(500_000, 4_000_000) as u32, fps, content: VideoContent::Screen }
    }

    /// The settings for pictures of `content` at this size.
    pub fn for_content(content: VideoContent, width: usize, height: usize, fps: u32) -> Self {
        match content {
            VideoContent::Camera => Self::for_size(width, height, fps),
            VideoContent::Screen => Self::for_screen(width, height, fps),
        }
    }
}

/// A video encoder: I420 frames in, encoded frames out.
pub trait VideoEncoder: Send {
    /// Which codec this is.
    fn codec(&self) -> VideoCodec;

    /// The settings the encoder runs with (the bitrate as last set).
    fn settings(&self) -> EncoderSettings;

    /// Changes the target bitrate on the fly: no keyframe, no new stream headers.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError>;

    /// Makes the next frame a keyframe: the answer to PLI and FIR.
    fn request_keyframe(&mut self);

    /// Tunes for screen content (text, sharp edges, large still areas) or back to camera video.
    /// Only libvpx has a live switch; openh264 fixes its content type at start.
    fn set_screen_content(&mut self, on: bool) -> Result<(), CodecError> {
        let _ = on;
        Err(CodecError::Unsupported(self.codec(), "live screen-content switch"))
    }

    /// Encodes one frame; `None` if the rate control dropped it. A frame of a new size restarts the
    /// stream at that size with a keyframe.
    fn encode(&mut self, frame: &I420Frame) -> Result<Option<EncodedFrame>, CodecError>;
}

/// A decoded picture, borrowed from the decoder's own buffers until its next call.
pub struct Picture<'a> {
    /// The planes.
    pub planes: I420View<'a>,
    /// Whether the frame was a keyframe.
    pub keyframe: bool,
}

/// A video decoder: whole encoded frames in, pictures out.
pub trait VideoDecoder: Send {
    /// Which codec this is.
    fn codec(&self) -> VideoCodec;

    /// Decodes one whole frame. `Ok(None)`: nothing to show yet (no keyframe seen since the start or
    /// since a loss); an error: the frame is damaged. In both cases, unless `frame` was itself a
    /// keyframe, the references are broken and the caller should ask for a keyframe (PLI).
    fn decode(&mut self, frame: &[u8]) -> Result<Option<Picture<'_>>, CodecError>;

    /// Tells the decoder that a frame went missing before the next one it gets (the assembler gave it
    /// up). VP8 has no frame numbers of its own, so without this it would decode the following frames
    /// against the wrong references and show garbage until the next keyframe; with it, it waits for
    /// the keyframe instead. openh264 sees the gap in H.264's `frame_num` by itself.
    fn reference_lost(&mut self) {}

    /// Decodes one whole frame to RGBA for a window or a test; `decode_time` includes the conversion.
    fn decode_rgba(&mut self, frame: &[u8]) -> Result<Option<RgbaFrame>, CodecError> {
        let started = Instant::now();
        let codec = self.codec();
        let Some(picture) = self.decode(frame)? else { return Ok(None) };
        let (width, height, keyframe) = (picture.planes.width, picture.planes.height, picture.keyframe);
        let pixels = picture.planes.to_rgba().map_err(|e| CodecError::Decode(codec, e.to_string()))?;
        let mut rgba = RgbaFrame::new(width, height, pixels, started.elapsed());
        rgba.keyframe = keyframe;
        Ok(Some(rgba))
    }
}

/// An encoder for `codec`, starting at `settings`; its first frame is a keyframe.
pub fn new_encoder(
    codec: VideoCodec,
    settings: EncoderSettings,
) -> Result<Box<dyn VideoEncoder>, CodecError> {
    Ok(match codec {
        VideoCodec::H264 => Box::new(h264::H264Encoder::new(settings)?),
        VideoCodec::Vp8 | VideoCodec::Vp9 => Box::new(vpx::VpxEncoder::new(codec, settings)?),
    })
}

/// A decoder for `codec`.
pub fn new_decoder(codec: VideoCodec) -> Result<Box<dyn VideoDecoder>, CodecError> {
    Ok(match codec {
        VideoCodec::H264 => Box::new(h264::H264Decoder::new()?),
        VideoCodec::Vp8 | VideoCodec::Vp9 => Box::new(vpx::VpxDecoder::new(codec)?),
    })
}
