//! The video track of a call, codec by codec, against webrtc-rs 0.21's rules: a track's packetizer is
//! fixed by the codec it is made with, and `add_track` narrows the transceiver's codec preferences to
//! that one codec. So the caller makes its track with its first choice and then widens the offer to
//! every codec we have; the callee makes its track only once it has read the offer, with the codec
//! the offer leads with; and a caller whose answer left out its track's codec swaps the track for
//! one the answer has (one more offer/answer round). See `codecs` for the decisions themselves.

use super::codecs::{self, NoCommonCodec, VideoPreference, VideoSection};
use super::error::CallError;
use super::peer;
use crate::media::codec::VideoCodec;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

/// The call's outgoing video: the track, its sender and the codec it packetizes.
pub struct VideoTrack {
    /// The codec the track was made with.
    pub codec: VideoCodec,
    /// The track the sender thread writes samples to.
    pub track: Arc<TrackLocalStaticSample>,
    /// Its RTP sender.
    pub sender: Arc<dyn RtpSender>,
}

fn setup(e: webrtc::error::Error) -> CallError {
    CallError::Setup(e.to_string())
}

/// Adds a video track in `codec` to `pc`.
pub async fn add_video(
    pc: &dyn PeerConnection,
    codec: VideoCodec,
    stream_id: &str,
) -> Result<VideoTrack, CallError> {
    let track = peer::local_track(RtpCodecKind::Video, codecs::rtp_codec(codec), stream_id).map_err(setup)?;
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.map_err(setup)?;
    Ok(VideoTrack { codec, track, sender })
}

/// The caller's video: a track in our first choice, offered beside every other codec we have.
pub async fn add_offered_video(
    pc: &dyn PeerConnection,
    preference: VideoPreference,
    stream_id: &str,
) -> Result<VideoTrack, CallError> {
    let order = preference.offer_order();
    let video = add_video(pc, order[0], stream_id).await?;
    let sender_id = video.sender.id();
    for transceiver in pc.get_transceivers().await {
        let is_ours = transceiver.sender().await.ok().flatten().is_some_and(|s| s.id() == sender_id);
        if is_ours {
            // Each codec with its RTX, as a browser's `setCodecPreferences` must list them.
            let all =
                order.iter().flat_map(|c| [codecs::rtp_parameters(*c), codecs::rtx_parameters(*c)]).collect();
            transceiver.set_codec_preferences(all).await.map_err(setup)?;
        }
    }
    Ok(video)
}

/// What the callee does about video, from the far side's offer.
#[derive(Debug)]
pub enum Answering {
    /// Send video in this codec.
    With(VideoCodec),
    /// The offer has no video: an audio call.
    AudioOnly,
    /// The offer has video, but none we can send or receive.
    NothingInCommon(NoCommonCodec),
}

/// Reads the offer: the codec to answer with, in the offerer's order unless the user asked for one.
pub fn answering(offer_sdp: &str, preference: VideoPreference) -> Answering {
    match codecs::video_section(offer_sdp) {
        Some(VideoSection::Formats(formats)) => match codecs::choose(&formats, preference) {
            Ok(codec) => Answering::With(codec),
            Err(none) => Answering::NothingInCommon(none),
        },
        Some(VideoSection::Absent | VideoSection::Rejected) => Answering::AudioOnly,
        // webrtc-rs refuses it too, with its own words, when the description is applied.
        None => Answering::AudioOnly,
    }
}

/// What the caller learns from the answer about its video.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// The answer takes the codec our track sends.
    Agreed,
    /// The answer takes only `VideoCodec`: our track must be remade in it (one more round).
    Switch(VideoCodec),
    /// The answer turned video down (or kept no codec of ours): audio only.
    Refused,
}

/// Reads the answer against the codec our track sends.
pub fn answered(answer_sdp: &str, ours: VideoCodec) -> Answered {
    let Some(VideoSection::Formats(formats)) = codecs::video_section(answer_sdp) else {
        return Answered::Refused;
    };
    let taken: Vec<VideoCodec> = formats.iter().filter_map(codecs::Format::call_codec).collect();
    match taken.first() {
        _ if taken.contains(&ours) => Answered::Agreed,
        Some(other) => Answered::Switch(*other),
        None => Answered::Refused,
    }
}

/// The payload type the sender was given for `codec` (the offer's number, when we answered).
pub async fn payload_type_for(sender: &dyn RtpSender, codec: VideoCodec) -> Result<u8, CallError> {
    let params =
        sender.get_parameters().await.map_err(|e| CallError::Media(format!("no negotiated codec: {e}")))?;
    let wanted = codecs::rtp_codec(codec);
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| {
            let format = codecs::Format {
                name: mime_name(&c.rtp_codec.mime_type),
                fmtp: c.rtp_codec.sdp_fmtp_line.clone(),
            };
            c.rtp_codec.mime_type.eq_ignore_ascii_case(&wanted.mime_type)
                && format.call_codec() == Some(codec)
        })
        .map(|c| c.payload_type)
        .ok_or_else(|| CallError::Media(format!("the far side accepted no {codec} from us")))
}

/// `video/VP8` → `VP8`.
fn mime_name(mime: &str) -> String {
    mime.rsplit('/').next().unwrap_or(mime).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(formats: &str, rtpmaps: &str) -> String {
        format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF {formats}\r\n{rtpmaps}")
    }

    #[test]
    fn an_answer_without_our_codec_asks_for_a_switch() {
        let vp8_only = answer("120", "a=rtpmap:120 VP8/90000\r\n");
        assert_eq!(answered(&vp8_only, VideoCodec::H264), Answered::Switch(VideoCodec::Vp8));
        assert_eq!(answered(&vp8_only, VideoCodec::Vp8), Answered::Agreed);
        let both = answer(
            "96 102",
            "a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n",
        );
        assert_eq!(answered(&both, VideoCodec::H264), Answered::Agreed, "any codec listed may be sent");
        let rejected = answer("120", "a=rtpmap:120 VP8/90000\r\n").replace("m=video 9", "m=video 0");
        assert_eq!(answered(&rejected, VideoCodec::H264), Answered::Refused);
    }

    #[test]
    fn offers_are_read_for_video() {
        let av1 = answer("99", "a=rtpmap:99 AV1/90000\r\n");
        assert!(matches!(answering(&av1, VideoPreference::Auto), Answering::NothingInCommon(_)));
        let vp8 = answer("120", "a=rtpmap:120 VP8/90000\r\n");
        assert!(matches!(answering(&vp8, VideoPreference::H264), Answering::With(VideoCodec::Vp8)));
        assert_eq!(mime_name("video/H264"), "H264");
    }
}
