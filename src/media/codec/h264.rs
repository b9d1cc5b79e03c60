//! H.264 through openh264: a constrained-baseline encoder that makes IDRs on request, and a decoder
//! that turns Annex-B access units into I420 pictures.

use super::{CodecError, EncodedFrame, EncoderSettings, Picture, VideoCodec, VideoDecoder, VideoEncoder};
use crate::media::frame::{I420Frame, I420View};
use crate::media::source::VideoContent;
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, Profile, RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use std::time::Instant;

const H264: VideoCodec = VideoCodec::H264;

/// openh264 in constrained baseline (what browsers decode with packetization-mode=1).
pub struct H264Encoder {
    inner: Encoder,
    settings: EncoderSettings,
    force_keyframe: bool,
}

impl H264Encoder {
    /// Starts an encoder; the first frame it produces is an IDR.
    pub fn new(settings: EncoderSettings) -> Result<Self, CodecError> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(settings.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            // Screen content: openh264's screen mode (scrolling and still-block detection, sharper
            // text at the same rate) for a shared screen; camera tuning for everything else.
            .usage_type(match settings.content {
                VideoContent::Screen => UsageType::ScreenContentRealTime,
                VideoContent::Camera => UsageType::CameraVideoRealTime,
            })
            .rate_control_mode(RateControlMode::Bitrate)
            .profile(Profile::Baseline)
            // Without frame skipping openh264's rate control cannot hold the bitrate (it says so on stderr).
            .skip_frames(true)
            .num_threads(1)
            // Say in the SPS that the pixels are BT.601 studio range (what we convert cameras to and
            // decode with). Untagged, Chromium shows H.264 as BT.709: every saturated colour came out
            // wrong (a grab of our pattern was 28 dB from it, against 64 dB for VP8, which it shows as
            // BT.601).
            .vui(VuiConfig::bt601());
        // openh264 turns these off itself for screen content, with a warning on stderr per encoder.
        let screen = settings.content == VideoContent::Screen;
        let config =
            if screen { config.adaptive_quantization(false).background_detection(false) } else { config };
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::EncoderInit(H264, e.to_string()))?;
        Ok(Self { inner, settings, force_keyframe: true })
    }
}

impl VideoEncoder for H264Encoder {
    fn codec(&self) -> VideoCodec {
        H264
    }

    fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// No new keyframe, no new SPS.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: bitrate_bps.min(i32::MAX as u32) as i32,
        };
        // SAFETY: SetOption(ENCODER_OPTION_BITRATE) reads one SBitrateInfo through the pointer, which
        // lives across the call; the encoder is initialised (we own it and have made it in `new`).
        let rc = unsafe {
            self.inner.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                (&mut info as *mut openh264_sys2::SBitrateInfo).cast(),
            )
        };
        if rc != 0 {
            return Err(CodecError::Encode(
                H264,
                format!("openh264 refused bitrate {bitrate_bps} (code {rc})"),
            ));
        }
        self.settings.bitrate_bps = bitrate_bps;
        Ok(())
    }

    /// The next frame is an IDR with SPS/PPS.
    fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    fn encode(&mut self, frame: &I420Frame) -> Result<Option<EncodedFrame>, CodecError> {
        let started = Instant::now();
        if std::mem::take(&mut self.force_keyframe) {
            self.inner.force_intra_frame();
        }
        let bitstream = self.inner.encode(frame).map_err(|e| CodecError::Encode(H264, e.to_string()))?;
        let frame_type = bitstream.frame_type();
        if matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let data = bitstream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedFrame {
            data: data.into(),
            keyframe: matches!(frame_type, FrameType::IDR | FrameType::I),
            encode_time: started.elapsed(),
        }))
    }
}

/// openh264's decoder.
pub struct H264Decoder {
    inner: Decoder,
    /// The last picture's Y, U and V planes, copied out as they are (strides kept): openh264's wrapper
    /// lends its planes only for as long as the value it returns lives, so they cannot be handed on
    /// (a 720p copy is ~0.1 ms, a decode ~3 ms).
    planes: [Vec<u8>; 3],
}

impl H264Decoder {
    /// Starts a decoder.
    pub fn new() -> Result<Self, CodecError> {
        let inner = Decoder::new().map_err(|e| CodecError::DecoderInit(H264, e.to_string()))?;
        Ok(Self { inner, planes: Default::default() })
    }
}

impl VideoDecoder for H264Decoder {
    fn codec(&self) -> VideoCodec {
        H264
    }

    /// `frame` is one access unit, Annex-B.
    fn decode(&mut self, frame: &[u8]) -> Result<Option<Picture<'_>>, CodecError> {
        let keyframe = contains_idr(frame);
        let Some(yuv) = self.inner.decode(frame).map_err(|e| CodecError::Decode(H264, e.to_string()))? else {
            return Ok(None);
        };
        let (width, height) = yuv.dimensions();
        let (y_stride, uv_stride, _) = yuv.strides();
        for (kept, plane) in self.planes.iter_mut().zip([yuv.y(), yuv.u(), yuv.v()]) {
            kept.clear();
            kept.extend_from_slice(plane);
        }
        let [y, u, v] = &self.planes;
        let planes = I420View { width, height, y, u, v, y_stride, uv_stride };
        Ok(Some(Picture { planes, keyframe }))
    }
}

/// Whether an Annex-B access unit holds an IDR slice (NAL type 5).
pub fn contains_idr(access_unit: &[u8]) -> bool {
    nal_types(access_unit).any(|t| t == 5)
}

/// The NAL unit types in an Annex-B stream, in order.
pub fn nal_types(stream: &[u8]) -> impl Iterator<Item = u8> + '_ {
    // A NAL header follows every 00 00 01 start code (the 4-byte form ends in the same three bytes).
    stream.windows(4).filter(|w| w[0] == 0 && w[1] == 0 && w[2] == 1).map(|w| w[3] & 0x1F)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::{psnr_luma, read_stamp, render, Stamp};

    #[test]
    fn encodes_and_decodes_the_pattern_with_stamps_intact() {
        let settings = EncoderSettings::for_size(640, 480, 30);
        let mut enc = H264Encoder::new(settings).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        for n in 0..30u32 {
            let sent = render(Stamp { frame_no: n, capture_us: 1000 + n as u64 }, 640, 480);
            let Some(encoded) = enc.encode(&sent).expect("encode") else { continue };
            assert_eq!(encoded.keyframe, n == 0, "only the first frame is an IDR");
            if n == 0 {
                let types: Vec<u8> = nal_types(&encoded.data).collect();
                assert_eq!(&types[..3], &[7, 8, 5], "SPS, PPS, then the IDR slice");
            }
            let decoded = dec.decode_rgba(&encoded.data).expect("decode").expect("a picture per frame");
            assert_eq!(read_stamp(&decoded), Some(Stamp { frame_no: n, capture_us: 1000 + n as u64 }));
            let psnr = psnr_luma(&decoded, &sent);
            assert!(psnr > 30.0, "frame {n}: PSNR {psnr:.1} dB");
        }
    }

    #[test]
    fn bitrate_changes_on_the_fly_and_the_output_follows() {
        let mut enc = H264Encoder::new(EncoderSettings {
            bitrate_bps: 2_000_000,
            fps: 30,
            content: Default::default(),
        })
        .expect("encoder");
        // Noise-like content makes the rate controller work for its bytes.
        let frame = |n: u32| {
            let mut f = render(Stamp { frame_no: n, capture_us: 0 }, 640, 480);
            for (i, p) in f.data.iter_mut().enumerate() {
                *p = p.wrapping_add(
                    ((i as u32).wrapping_mul(2_654_435_761) ^ n.wrapping_mul(40_503)) as u8 >> 3,
                );
            }
            f
        };
        let bytes = |enc: &mut H264Encoder, from: u32| -> usize {
            (from..from + 60).filter_map(|n| enc.encode(&frame(n)).ok().flatten()).map(|e| e.data.len()).sum()
        };
        let high = bytes(&mut enc, 0);
        enc.set_bitrate(200_000).expect("bitrate change");
        assert_eq!(enc.settings().bitrate_bps, 200_000);
        let _settle = bytes(&mut enc, 60);
        let low = bytes(&mut enc, 120);
        assert!(low * 2 < high, "at 200 kbit/s the encoder must spend far less: {low} vs {high} bytes");
    }

    #[test]
    fn keyframe_on_request() {
        let mut enc = H264Encoder::new(EncoderSettings::for_size(320, 240, 30)).expect("encoder");
        let frame = |n| render(Stamp { frame_no: n, capture_us: 0 }, 320, 240);
        assert!(enc.encode(&frame(0)).expect("encode").expect("frame").keyframe);
        assert!(!enc.encode(&frame(1)).expect("encode").expect("frame").keyframe);
        enc.request_keyframe();
        let idr = enc.encode(&frame(2)).expect("encode").expect("frame");
        assert!(idr.keyframe && contains_idr(&idr.data));
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_panic() {
        let mut dec = H264Decoder::new().expect("decoder");
        for junk in [&[0u8, 0, 0, 1, 0x65, 0xFF, 0x00][..], &[1, 2, 3], &[]] {
            if let Ok(Some(_)) = dec.decode_rgba(junk) {
                panic!("junk decoded to a picture")
            }
        }
    }
}
