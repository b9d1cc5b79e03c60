//! A call's media pipelines: sources → encoders → tracks on their own threads, and remote tracks →
//! frame assembly → decoders → listeners. The engine starts them when the connection is up and stops
//! them (one watch flag) when the call ends.

use super::peer::asks_for_keyframe;
use super::rate::{picture_scale, BitrateController};
use super::stats::Counters;
use crate::media::assembler::{Assembled, FrameAssembler};
use crate::media::codec::h264::{H264Decoder, H264Encoder};
use crate::media::codec::{EncoderSettings, VideoCodec, VideoDecoder, VideoEncoder};
use crate::media::frame::{now_us, AudioChunk, I420Frame, RgbaFrame, AUDIO_FRAME_SAMPLES};
use crate::media::opus_codec::{OpusDecoder, OpusEncoder};
use crate::media::pattern::read_stamp;
use crate::media::source::{AudioSource, VideoSource};
use rtc::media::Sample;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Switches the user flips during a call; read by the sender threads on every frame.
#[derive(Default, Debug)]
pub struct MediaControls {
    /// Send silence instead of the microphone.
    pub audio_muted: AtomicBool,
    /// Send black frames instead of the camera.
    pub video_off: AtomicBool,
}

/// Where decoded media goes: the latest picture (a window only ever wants that one) and every
/// chunk of audio (a speaker wants all of it).
#[derive(Clone)]
pub struct Sinks {
    /// The latest decoded remote picture; `None` when there is no call.
    pub remote_video: watch::Sender<Option<RgbaFrame>>,
    /// Decoded remote audio, 20 ms mono 48 kHz chunks.
    pub remote_audio: broadcast::Sender<AudioChunk>,
    /// A half-size preview of what we send, a few times a second while someone watches; `None` when
    /// no video is going out.
    pub local_video: watch::Sender<Option<RgbaFrame>>,
}

/// Everything a sender thread needs to write to its track.
pub struct TrackTarget {
    /// The track.
    pub track: Arc<TrackLocalStaticSample>,
    /// The SSRC of its one encoding.
    pub ssrc: u32,
    /// The negotiated payload type.
    pub payload_type: u8,
}

impl TrackTarget {
    fn write(&self, rt: &Handle, data: bytes::Bytes, duration: Duration, captured: Instant) -> bool {
        let sample = Sample { data, duration, ..Sample::new(captured) };
        rt.block_on(self.track.sample_writer(self.ssrc, self.payload_type).write_sample(&sample)).is_ok()
    }
}

/// Starts the video sender thread. It owns the source and the encoder; a PLI/FIR from the far side
/// (watched by a task on the track) makes the next frame an IDR.
pub fn start_video_sender(
    rt: Handle,
    target: TrackTarget,
    mut source: Box<dyn VideoSource>,
    controls: Arc<MediaControls>,
    counters: Arc<Counters>,
    preview: watch::Sender<Option<RgbaFrame>>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let keyframe_wanted = Arc::new(AtomicBool::new(true));
    spawn_keyframe_watch(&rt, target.track.clone(), keyframe_wanted.clone(), counters.clone(), stop.clone());
    std::thread::Builder::new().name("video-send".into()).spawn(move || {
        let fps = source.fps().max(1);
        let frame_duration = Duration::from_secs(1) / fps;
        let mut encoder: Option<H264Encoder> = None;
        let mut rate: Option<BitrateController> = None;
        let mut reports_seen = 0;
        // Video bytes sent and when, at the last loss report: what was really sent in between.
        let mut last_report: Option<(Instant, u64)> = None;
        // The picture is sent at 1/scale of its size each way (narrow links).
        let mut scale = 1;
        // The encoder's target changed, or its picture size did (which resets its target).
        let mut retarget = false;
        let mut black: Option<I420Frame> = None;
        let mut last_preview: Option<Instant> = None;
        while !*stop.borrow() {
            let Some(mut frame) = source.next_frame() else { break };
            let captured = Instant::now();
            if controls.video_off.load(Ordering::Relaxed) {
                let b = black.get_or_insert_with(|| I420Frame::black(frame.width, frame.height));
                if b.width != frame.width || b.height != frame.height {
                    *b = I420Frame::black(frame.width, frame.height);
                }
                frame.data.copy_from_slice(&b.data);
            }
            // The preview costs a conversion, so only while a window watches, and at most PREVIEW_FPS.
            if preview.receiver_count() > 0 && last_preview.is_none_or(|t| t.elapsed() >= PREVIEW_INTERVAL) {
                last_preview = Some(captured);
                match frame.to_rgba_half() {
                    Ok(small) => {
                        preview.send_replace(Some(small));
                    }
                    Err(e) => tracing::debug!(%e, "no preview for this frame"),
                }
            }
            if encoder.as_ref().is_none() {
                let settings = EncoderSettings::for_size(frame.width, frame.height, fps);
                rate = Some(BitrateController::new(settings.bitrate_bps));
                match H264Encoder::new(settings) {
                    Ok(e) => encoder = Some(e),
                    Err(e) => {
                        tracing::error!(%e, "video sending stopped");
                        return;
                    }
                }
            }
            let Some(enc) = encoder.as_mut() else { return };
            if keyframe_wanted.swap(false, Ordering::Relaxed) {
                enc.request_keyframe();
            }
            let report = counters.loss_feedback.take_new(&mut reports_seen);
            if let (Some(fraction_lost), Some(rate)) = (report, rate.as_mut()) {
                let now = (captured, counters.video_bytes_sent.load(Ordering::Relaxed));
                let sent_bps = last_report.replace(now).and_then(|(at, bytes)| {
                    let secs = now.0.duration_since(at).as_secs_f64();
                    (secs > 0.1).then(|| (now.1.saturating_sub(bytes) as f64 * 8.0 / secs) as u32)
                });
                let before = rate.target_bps();
                let target = rate.on_loss_report(fraction_lost, sent_bps);
                let wanted = picture_scale(scale, target, rate.max_bps());
                let rescaled = wanted != scale;
                if rescaled {
                    tracing::info!(
                        target_kbps = target / 1000,
                        from = scale,
                        to = wanted,
                        "video picture rescaled for the link"
                    );
                    scale = wanted;
                }
                retarget |= target != before || rescaled;
                counters.target_bitrate_bps.store(target as u64, Ordering::Relaxed);
            }
            let shrunk = (scale > 1).then(|| frame.downscaled(scale));
            let result = enc.encode(shrunk.as_ref().unwrap_or(&frame));
            // After the encode: a frame of a new size reinitialises the encoder at its base rate.
            if std::mem::take(&mut retarget) {
                if let Some(rate) = rate.as_ref() {
                    if let Err(e) = enc.set_bitrate(rate.target_bps()) {
                        tracing::warn!(%e, "could not change the video bitrate");
                    }
                }
            }
            match result {
                Ok(Some(encoded)) => {
                    Counters::add(&counters.frames_sent, 1);
                    Counters::add(&counters.keyframes_sent, encoded.keyframe as u64);
                    Counters::add(&counters.video_bytes_sent, encoded.data.len() as u64);
                    Counters::add(&counters.encode_us, encoded.encode_time.as_micros() as u64);
                    if !target.write(&rt, encoded.data, frame_duration, captured) {
                        tracing::debug!("video track refused a sample (not bound yet or closing)");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%e, "a video frame could not be encoded"),
            }
        }
        preview.send_replace(None);
    })?;
    Ok(())
}

/// Spacing of local preview frames (~15 fps): a corner thumbnail needs no more.
const PREVIEW_INTERVAL: Duration = Duration::from_millis(66);

/// Watches the local video track for PLI/FIR from the far side.
fn spawn_keyframe_watch(
    rt: &Handle,
    track: Arc<TrackLocalStaticSample>,
    keyframe_wanted: Arc<AtomicBool>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                event = track.poll() => match event {
                    Some(TrackLocalEvent::OnRtcpPacket(packets)) if asks_for_keyframe(&packets) => {
                        Counters::add(&counters.keyframe_requests_received, 1);
                        keyframe_wanted.store(true, Ordering::Relaxed);
                    }
                    Some(_) => {}
                    None => return,
                },
            }
        }
    });
}

/// Starts the audio sender thread: 20 ms chunks from the source, Opus, onto the track.
pub fn start_audio_sender(
    rt: Handle,
    target: TrackTarget,
    mut source: Box<dyn AudioSource>,
    controls: Arc<MediaControls>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("audio-send".into()).spawn(move || {
        let mut encoder = match OpusEncoder::new(32_000) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(%e, "audio sending stopped");
                return;
            }
        };
        let mut pcm = vec![0i16; AUDIO_FRAME_SAMPLES];
        while !*stop.borrow() {
            if !source.next_chunk(&mut pcm) {
                break;
            }
            let captured = Instant::now();
            if controls.audio_muted.load(Ordering::Relaxed) {
                pcm.fill(0);
            }
            match encoder.encode(&pcm) {
                Ok(packet) => {
                    Counters::add(&counters.audio_packets_sent, 1);
                    target.write(&rt, packet, Duration::from_millis(20), captured);
                }
                Err(e) => tracing::warn!(%e, "an audio frame could not be encoded"),
            }
        }
    })?;
    Ok(())
}

/// At most this many lost audio frames in a row are rebuilt or concealed (100 ms).
const MAX_CONCEALED_FRAMES: u16 = 5;

/// Minimum spacing of our PLIs: one per round trip or so is plenty, a flood helps nobody.
const PLI_INTERVAL: Duration = Duration::from_millis(300);
/// How long a frame may wait for a missing packet (NACK retransmission) before we give it up.
const MAX_FRAME_WAIT: Duration = Duration::from_millis(250);

/// Handles one remote track until it ends or the call stops.
/// `want_keyframe` is the receiver's flag for "ask the sender for a keyframe": set here on loss and
/// decoder errors, and by the user's refresh command.
pub async fn receive_track(
    track: Arc<dyn TrackRemote>,
    sinks: Sinks,
    counters: Arc<Counters>,
    want_keyframe: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
) {
    match track.kind().await {
        RtpCodecKind::Video => receive_video(track, sinks, counters, want_keyframe, stop).await,
        RtpCodecKind::Audio => receive_audio(track, sinks, counters, stop).await,
        _ => {}
    }
}

async fn receive_video(
    track: Arc<dyn TrackRemote>,
    sinks: Sinks,
    counters: Arc<Counters>,
    want_keyframe: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    want_keyframe.store(true, Ordering::Relaxed);
    let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    // The decoder runs on its own thread: a 720p decode takes milliseconds we don't take from the runtime.
    let (frames_tx, frames_rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(4);
    let decoder_ok = {
        let want_keyframe = want_keyframe.clone();
        let counters = counters.clone();
        std::thread::Builder::new()
            .name("video-decode".into())
            .spawn({
                let stop = stop.clone();
                move || decode_loop(frames_rx, sinks.remote_video, want_keyframe, counters, stop)
            })
            .is_ok()
    };
    if !decoder_ok {
        tracing::error!("could not start the video decoder thread");
        return;
    }
    let mut assembler = FrameAssembler::new(VideoCodec::H264, MAX_FRAME_WAIT);
    let mut last_pli: Option<Instant> = None;
    // One timer for the whole call (not one per packet): it wakes the loop when no packets come, so a
    // wanted PLI still goes out.
    let mut pli_tick = tokio::time::interval(PLI_INTERVAL);
    pli_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Ask for a keyframe at the start, and whenever the decoder or the assembler lost the thread.
        if want_keyframe.load(Ordering::Relaxed) && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL) {
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
                for out in assembler.push(Instant::now(), packet) {
                    match out {
                        Assembled::Frame { data, .. } => {
                            if frames_tx.try_send(data).is_err() {
                                // The decoder is behind: dropping breaks references, so get a keyframe.
                                Counters::add(&counters.frames_lost, 1);
                                want_keyframe.store(true, Ordering::Relaxed);
                            }
                        }
                        Assembled::Lost => {
                            Counters::add(&counters.frames_lost, 1);
                            want_keyframe.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            Some(TrackRemoteEvent::OnEnded) | None => return,
            Some(_) => {}
        }
    }
}

fn decode_loop(
    frames: std::sync::mpsc::Receiver<bytes::Bytes>,
    out: watch::Sender<Option<RgbaFrame>>,
    want_keyframe: Arc<AtomicBool>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(%e, "video receiving stopped");
            return;
        }
    };
    while let Ok(access_unit) = frames.recv() {
        let is_idr = crate::media::codec::h264::contains_idr(&access_unit);
        if is_idr {
            want_keyframe.store(false, Ordering::Relaxed);
        }
        match decoder.decode_rgba(&access_unit) {
            Ok(Some(frame)) => {
                Counters::add(&counters.frames_decoded, 1);
                Counters::add(&counters.keyframes_decoded, frame.keyframe as u64);
                Counters::add(&counters.decode_us, frame.decode_time.as_micros() as u64);
                let res = (frame.width as u64) << 32 | frame.height as u64;
                counters.last_resolution.store(res, Ordering::Relaxed);
                let now = now_us();
                counters.frame_shown(now);
                if let Some(stamp) = read_stamp(&frame) {
                    counters.last_latency_us.store(stamp.age_us(now), Ordering::Relaxed);
                }
                // A picture decoded after the call ended must not reappear once the engine cleared it.
                if *stop.borrow() {
                    return;
                }
                out.send_replace(Some(frame));
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
