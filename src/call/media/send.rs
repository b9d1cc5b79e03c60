//! The sender threads: camera or pattern → H.264 → video track (with PLI → IDR, and the congestion
//! controller's target followed by bitrate, frame rate and picture size), and microphone or tone →
//! Opus → audio track.

use super::{CallMedia, TrackTarget};
use crate::call::congestion::estimator::START_BPS;
use crate::call::peer::asks_for_keyframe;
use crate::call::rate::{Ladder, QualityLimitation, MAX_PACER_QUEUE_MS};
use crate::call::stats::Counters;
use crate::media::codec::{new_encoder, EncoderSettings, VideoCodec, VideoEncoder};
use crate::media::frame::{I420Frame, RgbaFrame, AUDIO_FRAME_SAMPLES};
use crate::media::opus_codec::OpusEncoder;
use crate::media::source::{AudioSource, VideoSource};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

/// Starts the video sender thread. It owns the source and the encoder (the target's codec); a PLI/FIR from the far side
/// (watched by a task on the track) makes the next frame an IDR.
pub fn start_video_sender(
    rt: Handle,
    target: TrackTarget,
    codec: VideoCodec,
    mut source: Box<dyn VideoSource>,
    media: CallMedia,
    preview: watch::Sender<Option<RgbaFrame>>,
) -> std::io::Result<()> {
    let CallMedia { controls, counters, stop, .. } = media;
    counters.set_codec_out(codec);
    let keyframe_wanted = Arc::new(AtomicBool::new(true));
    spawn_keyframe_watch(&rt, target.track.clone(), keyframe_wanted.clone(), counters.clone(), stop.clone());
    std::thread::Builder::new().name("video-send".into()).spawn(move || {
        let fps = source.fps().max(1);
        let frame_duration = Duration::from_secs(1) / fps;
        let mut encoder: Option<Box<dyn VideoEncoder>> = None;
        let mut ladder: Option<Ladder> = None;
        // The picture is sent at 1/scale of its size each way (narrow links).
        let mut scale = 1;
        // The rate last given to the encoder (0: none yet).
        let mut encoder_bps = 0u32;
        // The encoder's picture size changed (which resets its rate).
        let mut rescaled = false;
        // The source's frame interval, smoothed (s), and the last capture: a busy CPU slows it.
        let mut interval = frame_duration.as_secs_f64();
        let mut last_capture: Option<Instant> = None;
        // Video bytes sent at the start of the current second, and what the last second sent.
        let mut second: Option<(Instant, u64)> = None;
        let mut sent_bps: Option<u32> = None;
        let mut black: Option<I420Frame> = None;
        let mut last_preview: Option<Instant> = None;
        while !*stop.borrow() {
            let Some(mut frame) = source.next_frame() else { break };
            let captured = Instant::now();
            if let Some(last) = last_capture.replace(captured) {
                interval += (captured.duration_since(last).as_secs_f64() - interval) * 0.1;
            }
            let source_share = (frame_duration.as_secs_f64() / interval.max(1e-3)).min(1.0);
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
                ladder = Some(Ladder::new(settings.bitrate_bps));
                // The first frames go out at the controller's start rate, not the picture's natural
                // one: a narrow link's queue overflowed under a 900 kbit/s start.
                // (Made at the natural rate, then lowered: openh264 takes its ceiling from the
                // rate it starts with, and one started at 300 kbit/s never went above it.)
                match new_encoder(codec, settings) {
                    Ok(mut e) => {
                        encoder_bps = settings.bitrate_bps.min(START_BPS as u32);
                        if let Err(err) = e.set_bitrate(encoder_bps) {
                            tracing::warn!(%err, "could not set the start bitrate");
                        }
                        encoder = Some(e);
                    }
                    Err(e) => {
                        tracing::error!(%e, "video sending stopped");
                        return;
                    }
                }
            }
            let (Some(enc), Some(ladder)) = (encoder.as_mut(), ladder.as_mut()) else { return };
            if keyframe_wanted.swap(false, Ordering::Relaxed) {
                enc.request_keyframe();
            }
            let congestion = &controls.congestion;
            let target_bps = congestion.target_bps().unwrap_or(START_BPS as u32).min(ladder.max_bps());
            let bytes = counters.video_bytes_sent.load(Ordering::Relaxed);
            match second {
                Some((at, was)) if captured.duration_since(at) >= Duration::from_secs(1) => {
                    let secs = captured.duration_since(at).as_secs_f64();
                    sent_bps = Some((bytes.saturating_sub(was) as f64 * 8.0 / secs) as u32);
                    second = Some((captured, bytes));
                }
                Some(_) => {}
                None => second = Some((captured, bytes)),
            }
            let rung = ladder.update(captured, target_bps, sent_bps);
            if rung.scale != scale {
                tracing::info!(
                    target_kbps = target_bps / 1000,
                    from = scale,
                    to = rung.scale,
                    "video picture rescaled for the link"
                );
                scale = rung.scale;
                rescaled = true;
            }
            controls.target_bitrate_bps.store(u64::from(target_bps), Ordering::Relaxed);
            counters.set_quality_limitation(QualityLimitation::of(
                rung,
                target_bps,
                ladder.max_bps(),
                counters.last_encode_ms(),
                frame_duration.as_secs_f64() * 1000.0,
                source_share,
            ));
            if !ladder.keep_frame() {
                continue; // this rung's frame rate
            }
            if congestion.queue_ms() > MAX_PACER_QUEUE_MS {
                // Behind this much it would arrive late anyway; skipping it lets the queue drain.
                Counters::add(&counters.frames_dropped_queue, 1);
                continue;
            }
            let shrunk = (scale > 1).then(|| frame.downscaled(scale));
            let result = enc.encode(shrunk.as_ref().unwrap_or(&frame));
            // After the encode: a frame of a new size reinitialises the encoder at its base rate.
            let wanted = ladder.encoder_bps(target_bps, source_share);
            let moved = wanted.abs_diff(encoder_bps) > encoder_bps / 20;
            if std::mem::take(&mut rescaled) || moved {
                match enc.set_bitrate(wanted) {
                    Ok(()) => encoder_bps = wanted,
                    Err(e) => tracing::warn!(%e, "could not change the video bitrate"),
                }
            }
            match result {
                Ok(Some(encoded)) => {
                    Counters::add(&counters.frames_sent, 1);
                    Counters::add(&counters.keyframes_sent, encoded.keyframe as u64);
                    Counters::add(&counters.video_bytes_sent, encoded.data.len() as u64);
                    Counters::add(&counters.encode_us, encoded.encode_time.as_micros() as u64);
                    counters.last_encode_us.store(encoded.encode_time.as_micros() as u64, Ordering::Relaxed);
                    if !target.write(&rt, encoded.data, frame_duration, captured) {
                        tracing::debug!("video track refused a sample (not bound yet or closing)");
                    }
                }
                Ok(None) => Counters::add(&counters.frames_skipped_encoder, 1),
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
    media: CallMedia,
) -> std::io::Result<()> {
    let CallMedia { controls, counters, stop, .. } = media;
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
