//! Which video codec a call uses: what we offer and in which order, what we take from a far side's
//! offer (its order, as browsers do, unless the user asked for one), what an answer left us, and the
//! words for a peer with nothing in common. Pure: SDP text in, decisions out.

use crate::media::codec::VideoCodec;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_RTX;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The H.264 line browsers accept: constrained baseline 3.1, packetization-mode 1.
pub const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Payload type we offer for H.264 (Chromium's usual number for this profile).
pub const H264_PAYLOAD_TYPE: u8 = 102;
/// Payload type we offer for VP8 (Chromium's usual number; an answer uses the offer's numbers).
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// Payload type VP9 would have (Chromium's); calls do not offer VP9.
const VP9_PAYLOAD_TYPE: u8 = 98;
/// RTP's clock for video (RFC 3551).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// The video codecs calls use, in our default order of preference: H.264 costs the least CPU here
/// (see `codec-bench`), VP8 is what every browser has.
pub const CALL_CODECS: [VideoCodec; 2] = [VideoCodec::H264, VideoCodec::Vp8];

/// Which video codec the user prefers (`--video-codec`, and the window's Devices settings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VideoPreference {
    /// H.264 first in our offers; as callee, the caller's order.
    #[default]
    Auto,
    /// H.264 first, as caller and callee, wherever the far side has it.
    H264,
    /// VP8 first, as caller and callee, wherever the far side has it.
    Vp8,
}

impl VideoPreference {
    /// Our codecs in the order we offer them.
    pub fn offer_order(self) -> [VideoCodec; 2] {
        match self {
            VideoPreference::Auto | VideoPreference::H264 => [VideoCodec::H264, VideoCodec::Vp8],
            VideoPreference::Vp8 => [VideoCodec::Vp8, VideoCodec::H264],
        }
    }

    /// The codec the user asked for by name, if any.
    fn wanted(self) -> Option<VideoCodec> {
        match self {
            VideoPreference::Auto => None,
            VideoPreference::H264 => Some(VideoCodec::H264),
            VideoPreference::Vp8 => Some(VideoCodec::Vp8),
        }
    }
}

impl fmt::Display for VideoPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoPreference::Auto => "auto",
            VideoPreference::H264 => "h264",
            VideoPreference::Vp8 => "vp8",
        })
    }
}

/// The codec as the peer connection registers it: MIME type, clock, fmtp and feedback.
pub fn rtp_codec(codec: VideoCodec) -> RTCRtpCodec {
    let fb =
        |typ: &str, parameter: &str| RTCPFeedback { typ: typ.to_owned(), parameter: parameter.to_owned() };
    let fmtp = if codec == VideoCodec::H264 { H264_FMTP } else { "" };
    RTCRtpCodec {
        mime_type: codec.mime_type().to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir"), fb("goog-remb", "")],
    }
}

/// The codec with the payload type we offer it under.
pub fn rtp_parameters(codec: VideoCodec) -> RTCRtpCodecParameters {
    let payload_type = match codec {
        VideoCodec::H264 => H264_PAYLOAD_TYPE,
        VideoCodec::Vp8 => VP8_PAYLOAD_TYPE,
        // Not offered in calls (see `CALL_CODECS`); Chromium's number, should it ever be.
        VideoCodec::Vp9 => VP9_PAYLOAD_TYPE,
    };
    RTCRtpCodecParameters { rtp_codec: rtp_codec(codec), payload_type }
}

/// RTX (RFC 4588) for `codec`: `video/rtx` under the payload type after the codec's, `apt=` the
/// codec's, as Chromium numbers them (`a=rtpmap:97 rtx/90000`, `a=fmtp:97 apt=96`).
pub fn rtx_parameters(codec: VideoCodec) -> RTCRtpCodecParameters {
    let media = rtp_parameters(codec).payload_type;
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_RTX.to_owned(),
            clock_rate: VIDEO_CLOCK_RATE,
            channels: 0,
            sdp_fmtp_line: format!("apt={media}"),
            rtcp_feedback: vec![],
        },
        payload_type: media + 1,
    }
}

/// One video format a description lists: its name (`VP8`, `H264`, `AV1`) and fmtp line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// The `a=rtpmap` encoding name.
    pub name: String,
    /// The `a=fmtp` parameters, verbatim (empty when none).
    pub fmtp: String,
}

impl Format {
    /// Which of our call codecs this is, if any. H.264 must be packetization-mode 1 and the
    /// constrained baseline profile (`42e0…`): what our encoder makes and what webrtc-rs matches
    /// against our registered line (same profile bytes and mode, RFC 6184 §8.2.2).
    pub fn call_codec(&self) -> Option<VideoCodec> {
        if self.name.eq_ignore_ascii_case("VP8") {
            return Some(VideoCodec::Vp8);
        }
        if !self.name.eq_ignore_ascii_case("H264") {
            return None;
        }
        let param = |key: &str| {
            self.fmtp
                .split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
        };
        let mode_one = param("packetization-mode").is_some_and(|(_, v)| v.trim() == "1");
        let baseline = param("profile-level-id")
            .is_some_and(|(_, v)| v.trim().get(..4).is_some_and(|p| p.eq_ignore_ascii_case("42e0")));
        (mode_one && baseline).then_some(VideoCodec::H264)
    }
}

/// What a description says about video.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoSection {
    /// No video section at all (an audio-only peer).
    Absent,
    /// A video section turned down (port 0: the answerer has no codec in common with the offer).
    Rejected,
    /// The formats offered or accepted, in the description's order (RTX, RED and FEC left out).
    Formats(Vec<Format>),
}

/// Reads the first video section of an SDP text; `None` if the text is not valid SDP.
pub fn video_section(sdp: &str) -> Option<VideoSection> {
    let parsed = rtc::sdp::description::session::SessionDescription::unmarshal(&mut std::io::Cursor::new(
        sdp.as_bytes(),
    ))
    .ok()?;
    let Some(media) = parsed.media_descriptions.iter().find(|m| m.media_name.media == "video") else {
        return Some(VideoSection::Absent);
    };
    if media.media_name.port.value == 0 {
        return Some(VideoSection::Rejected);
    }
    let formats = media
        .media_name
        .formats
        .iter()
        .filter_map(|pt| pt.parse::<u8>().ok())
        .filter_map(|pt| parsed.get_codec_for_payload_type(pt).ok())
        .filter(|c| !["rtx", "red", "ulpfec", "flexfec-03"].iter().any(|n| c.name.eq_ignore_ascii_case(n)))
        .map(|c| Format { name: c.name, fmtp: c.fmtp })
        .collect();
    Some(VideoSection::Formats(formats))
}

/// No video codec in common: what each side has, for the words on both sides.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no common video codec: they offer {}, we have {}; the call goes on with audio only", theirs_words(.theirs), ours_words())]
pub struct NoCommonCodec {
    /// The far side's video formats by name, in its order (empty: it sent no video at all).
    pub theirs: Vec<String>,
}

fn theirs_words(theirs: &[String]) -> String {
    if theirs.is_empty() {
        "no video".to_owned()
    } else {
        theirs.join(", ")
    }
}

fn ours_words() -> String {
    CALL_CODECS.iter().map(VideoCodec::to_string).collect::<Vec<_>>().join(", ")
}

/// The codec to answer `formats` (an offer's, in its order) with: the one the user asked for if
/// offered, else the offerer's first that we have, as browsers do.
pub fn choose(formats: &[Format], preference: VideoPreference) -> Result<VideoCodec, NoCommonCodec> {
    let ours: Vec<VideoCodec> = formats.iter().filter_map(Format::call_codec).collect();
    let wanted = preference.wanted().filter(|w| ours.contains(w));
    wanted.or_else(|| ours.first().copied()).ok_or_else(|| NoCommonCodec { theirs: names(formats) })
}

/// The formats' names, each once, in order (H.264 is often offered under several profiles).
pub fn names(formats: &[Format]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for f in formats {
        let name = match f.name.to_ascii_uppercase().as_str() {
            "H264" => "H.264".to_owned(),
            other => other.to_owned(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The video part of an offer from an offline Firefox (VP8, VP9, AV1; no OpenH264 plugin).
    const FIREFOX_OFFLINE: &str = "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 99\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\na=mid:1\r\n\
        a=rtpmap:120 VP8/90000\r\na=fmtp:120 max-fs=12288;max-fr=60\r\na=rtpmap:124 rtx/90000\r\na=fmtp:124 apt=120\r\n\
        a=rtpmap:121 VP9/90000\r\na=fmtp:121 max-fs=12288;max-fr=60\r\na=rtpmap:125 rtx/90000\r\na=fmtp:125 apt=121\r\n\
        a=rtpmap:99 AV1/90000\r\n";

    /// Chromium's usual order: VP8 first, H.264 in several profiles later.
    const CHROMIUM: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 108\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
        a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

    fn formats(sdp: &str) -> Vec<Format> {
        match video_section(sdp) {
            Some(VideoSection::Formats(f)) => f,
            other => panic!("no video formats: {other:?}"),
        }
    }

    #[test]
    fn an_offline_firefox_gets_vp8() {
        let f = formats(FIREFOX_OFFLINE);
        assert_eq!(names(&f), ["VP8", "VP9", "AV1"], "RTX is not a codec of its own");
        assert_eq!(choose(&f, VideoPreference::Auto), Ok(VideoCodec::Vp8));
        assert_eq!(choose(&f, VideoPreference::H264), Ok(VideoCodec::Vp8), "asked-for but not offered");
    }

    #[test]
    fn the_offerers_order_wins_unless_the_user_asked() {
        let f = formats(CHROMIUM);
        assert_eq!(choose(&f, VideoPreference::Auto), Ok(VideoCodec::Vp8));
        assert_eq!(choose(&f, VideoPreference::H264), Ok(VideoCodec::H264));
        assert_eq!(choose(&f, VideoPreference::Vp8), Ok(VideoCodec::Vp8));
        // Only the constrained-baseline, mode-1 H.264 counts (42001f is plain baseline).
        let codecs: Vec<_> = f.iter().map(Format::call_codec).collect();
        assert_eq!(codecs, [Some(VideoCodec::Vp8), None, Some(VideoCodec::H264)]);
    }

    #[test]
    fn nothing_in_common_is_said_in_words() {
        let av1 = FIREFOX_OFFLINE.replace("120 124 121 125 99", "99");
        let f = formats(&av1);
        let error = choose(&f, VideoPreference::Auto).expect_err("AV1 only");
        assert_eq!(
            error.to_string(),
            "no common video codec: they offer AV1, we have H.264, VP8; the call goes on with audio only"
        );
        let mode0 =
            Format { name: "H264".into(), fmtp: "packetization-mode=0;profile-level-id=42e01f".into() };
        assert_eq!(mode0.call_codec(), None);
    }

    #[test]
    fn rejected_and_absent_video_sections_are_told_apart() {
        let rejected = CHROMIUM.replace("m=video 9 ", "m=video 0 ");
        assert_eq!(video_section(&rejected), Some(VideoSection::Rejected));
        let audio_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(video_section(audio_only), Some(VideoSection::Absent));
        assert_eq!(video_section("not sdp"), None);
    }

    #[test]
    fn our_offer_order_follows_the_preference() {
        assert_eq!(VideoPreference::Auto.offer_order(), [VideoCodec::H264, VideoCodec::Vp8]);
        assert_eq!(VideoPreference::Vp8.offer_order(), [VideoCodec::Vp8, VideoCodec::H264]);
        assert_eq!(rtp_parameters(VideoCodec::Vp8).payload_type, VP8_PAYLOAD_TYPE);
        assert!(rtp_codec(VideoCodec::H264).sdp_fmtp_line.contains("packetization-mode=1"));
        let rtx = rtx_parameters(VideoCodec::Vp8);
        assert_eq!((rtx.payload_type, rtx.rtp_codec.sdp_fmtp_line.as_str()), (97, "apt=96"));
        assert_eq!(rtx_parameters(VideoCodec::H264).payload_type, 103, "Chromium's rtx of 102");
    }
}
