//! The receive pipelines: RTP → frame assembly (PLI on loss) → decoder thread → the sinks, and
//! Opus packets → decoder (FEC and concealment for lost frames) → the audio sink.

use super::{CallMedia, Sinks};
use crate::call::quality::ShownFrame;
use crate::call::recovery;
use crate::call::stats::Counters;
use crate::media::assembler::{Assembled, FrameAssembler};
use crate::media::codec::{new_decoder, VideoCodec};
use crate::media::frame::{now_us, AudioChunk};
use crate::media::opus_codec::OpusDecoder;
use crate::media::pattern::read_stamp;
use crate::media::playout::PlayoutClock;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// At most this many lost audio frames in a row are rebuilt or concealed (100 ms).
const MAX_CONCEALED_FRAMES: u16 = 5;

/// Whole frames waiting for the decoder at most. A frame dropped because the decoder is behind breaks
/// the references of every frame after it until a keyframe (a PLI, a large frame, a freeze), so the
/// queue rides out a decoder held up for half a second (a busy machine) in order rather than dropping:
/// with 4 frames, a call on a loaded 2-core machine asked for a keyframe a few times a second.
const DECODE_QUEUE: usize = 15;

/// Handles one remote track until it ends or the call stops.
pub async fn receive_track(track: Arc<dyn TrackRemote>, sinks: Sinks, media: CallMedia) {
    match track.kind().await {
        RtpCodecKind::Video => receive_video(track, sinks, media).await,
        RtpCodecKind::Audio => receive_audio(track, sinks, media.counters, media.stop).await,
        _ => {}
    }
}

async fn receive_video(track: Arc<dyn TrackRemote>, sinks: Sinks, media: CallMedia) {
    let (controls, counters, mut stop) = (media.controls.clone(), media.counters.clone(), media.stop.clone());
    let want_keyframe = &controls.keyframe_wanted;
    want_keyframe.store(true, Ordering::Relaxed);
    let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    // webrtc-rs names the track's codec from its first packet's payload type, before `on_track`.
    let mime = track.codec(media_ssrc).await.map(|c| c.mime_type);
    let codec = mime.as_deref().and_then(VideoCodec::from_mime).unwrap_or_else(|| {
        tracing::warn!(?mime, "remote video in a codec we do not know; trying H.264");
        VideoCodec::H264
    });
    media.counters.set_codec_in(codec);
    // The decoder runs on its own thread: a 720p decode takes milliseconds we don't take from the runtime.
    let (frames_tx, frames_rx) = std::sync::mpsc::sync_channel::<DecodeJob>(DECODE_QUEUE);
    let decoder = std::thread::Builder::new()
        .name("video-decode".into())
        .spawn(move || decode_loop(codec, frames_rx, sinks, media));
    if decoder.is_err() {
        tracing::error!("could not start the video decoder thread");
        return;
    }
    // A frame with a hole waits two retransmission rounds (from the measured round trip) for its
    // repair before it is given up and a keyframe asked for; the NACK generator asks at once.
    let recovery = Arc::clone(&controls.recovery);
    let mut assembler = FrameAssembler::new(codec, recovery::frame_wait(recovery.rtt()));
    let mut after_loss = false;
    let mut last_pli: Option<Instant> = None;
    // One timer for the whole call (not one per packet): it wakes the loop when no packets come, so a
    // wanted PLI still goes out.
    let mut pli_tick = tokio::time::interval(recovery::MIN_KEYFRAME_SPACING);
    pli_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Ask for a keyframe at the start, and whenever the decoder or the assembler lost the thread.
        let pli_interval = recovery::keyframe_request_interval(recovery.rtt());
        if want_keyframe.load(Ordering::Relaxed) && last_pli.is_none_or(|t| t.elapsed() >= pli_interval) {
            last_pli = Some(Instant::now());
            let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
            if track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                Counters::add(&counters.plis_sent, 1);
            }
        }
        let event = tokio::select! {
            _ = stop.changed() => return,
            _ = pli_tick.tick() => continue,
            event = track.poll() => event,
        };
        match event {
            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                Counters::add(&counters.video_bytes_received, packet.payload.len() as u64);
                assembler.set_max_wait(recovery::frame_wait(recovery.rtt()));
                for out in assembler.push(Instant::now(), packet) {
                    let (data, keyframe, rtp_timestamp) = match out {
                        Assembled::Frame { data, keyframe, rtp_timestamp } => (data, keyframe, rtp_timestamp),
                        Assembled::Lost => {
                            tracing::debug!("video frame lost");
                            Counters::add(&counters.frames_lost, 1);
                            want_keyframe.store(true, Ordering::Relaxed);
                            after_loss = true;
                            continue;
                        }
                    };
                    if keyframe {
                        tracing::debug!(bytes = data.len(), rtp_timestamp, "video keyframe whole");
                    }
                    let job =
                        DecodeJob { data, keyframe, after_loss, rtp_timestamp, whole_at: Instant::now() };
                    if frames_tx.try_send(job).is_ok() {
                        after_loss = false;
                    } else {
                        // The decoder is behind: dropping breaks references, so get a keyframe, and
                        // tell the decoder with the next frame that gets through.
                        Counters::add(&counters.frames_lost, 1);
                        want_keyframe.store(true, Ordering::Relaxed);
                        after_loss = true;
                    }
                }
            }
            Some(TrackRemoteEvent::OnEnded) | None => return,
            Some(_) => {}
        }
    }
}

/// What the receive task hands the decoder thread: one whole encoded frame, whether it is a keyframe
/// (the assembler read it from the bitstream), and whether a frame went missing before it. The loss
/// travels with the next frame, so a full channel cannot swallow it: VP8 cannot see a gap by itself.
/// The frame's timestamp and when it became whole time its showing (the playout clock).
struct DecodeJob {
    data: bytes::Bytes,
    keyframe: bool,
    after_loss: bool,
    rtp_timestamp: u32,
    whole_at: Instant,
}

fn decode_loop(
    codec: VideoCodec,
    frames: std::sync::mpsc::Receiver<DecodeJob>,
    sinks: Sinks,
    media: CallMedia,
) {
    let (want_keyframe, counters) = (&media.controls.keyframe_wanted, &media.counters);
    let mut decoder = match new_decoder(codec) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(%e, "video receiving stopped");
            return;
        }
    };
    // Frames are decoded as they come (a decoder that waits falls behind) and shown at their pace.
    let mut playout = PlayoutClock::new();
    let epoch = Instant::now();
    let micros = |t: Instant| t.saturating_duration_since(epoch).as_micros() as u64;
    while let Ok(job) = frames.recv() {
        let DecodeJob { data: access_unit, keyframe: is_idr, after_loss, rtp_timestamp, whole_at } = job;
        let show_at = epoch + Duration::from_micros(playout.frame(rtp_timestamp, micros(whole_at)));
        counters.playout_target_us.store(playout.target_us(), Ordering::Relaxed);
        if after_loss {
            decoder.reference_lost();
        }
        if is_idr {
            want_keyframe.store(false, Ordering::Relaxed);
        }
        match decoder.decode_rgba(&access_unit) {
            Ok(Some(frame)) => {
                // At most the clock's cap (400 ms); a frame already late is shown at once.
                std::thread::sleep(show_at.saturating_duration_since(Instant::now()));
                Counters::add(&counters.frames_decoded, 1);
                Counters::add(&counters.keyframes_decoded, frame.keyframe as u64);
                Counters::add(&counters.decode_us, frame.decode_time.as_micros() as u64);
                let res = (frame.width as u64) << 32 | frame.height as u64;
                counters.last_resolution.store(res, Ordering::Relaxed);
                let now = now_us();
                counters.frame_shown(now);
                let stamp = read_stamp(&frame).filter(|s| s.plausible_at(now));
                if let Some(stamp) = stamp {
                    counters.last_latency_us.store(stamp.age_us(now), Ordering::Relaxed);
                    counters.last_stamp.store(u64::from(stamp.frame_no) + 1, Ordering::Relaxed);
                }
                let shown =
                    ShownFrame { at_us: now, width: frame.width as u32, height: frame.height as u32, stamp };
                if sinks.show_remote(media.call, frame) {
                    // Nobody listening is fine.
                    let _ = sinks.shown.send(shown);
                }
            }
            Ok(None) => {
                if !is_idr {
                    want_keyframe.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::debug!(%e, "decoder error; asking for a keyframe");
                Counters::add(&counters.frames_lost, 1);
                want_keyframe.store(true, Ordering::Relaxed);
            }
        }
    }
}

async fn receive_audio(
    track: Arc<dyn TrackRemote>,
    sinks: Sinks,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut decoder = match OpusDecoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(%e, "audio receiving stopped");
            return;
        }
    };
    let mut last_seq: Option<u16> = None;
    loop {
        let event = tokio::select! {
            _ = stop.changed() => return,
            event = track.poll() => event,
        };
        match event {
            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                let seq = packet.header.sequence_number;
                // Frames lost just before this one: the last is rebuilt from this packet's FEC data,
                // the others concealed, so playback has no holes (bursts beyond a few frames are
                // left to the jitter buffer: there is nothing better to say about them).
                let missing = last_seq.map(|l| seq.wrapping_sub(l).wrapping_sub(1)).unwrap_or(0);
                if missing >= 0x8000 {
                    continue; // late or duplicate: its place in the stream is already filled
                }
                if (1..=MAX_CONCEALED_FRAMES).contains(&missing) {
                    for i in 0..missing {
                        let rebuilt = if i + 1 == missing {
                            decoder.decode_fec(&packet.payload)
                        } else {
                            decoder.conceal()
                        };
                        if let Ok(pcm) = rebuilt {
                            Counters::add(&counters.audio_concealed, 1);
                            let _ = sinks.remote_audio.send(AudioChunk::from(pcm));
                        }
                    }
                }
                last_seq = Some(seq);
                match decoder.decode(&packet.payload) {
                    Ok(pcm) => {
                        Counters::add(&counters.audio_packets_received, 1);
                        // Nobody listening is fine: the chunk is simply not kept.
                        let _ = sinks.remote_audio.send(AudioChunk::from(pcm));
                    }
                    Err(e) => tracing::debug!(%e, "an Opus packet could not be decoded"),
                }
            }
            Some(TrackRemoteEvent::OnEnded) | None => return,
            Some(_) => {}
        }
    }
}
