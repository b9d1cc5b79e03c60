//! The sender threads: camera, pattern or shared screen → H.264/VP8 → video track (with PLI → IDR,
//! and the congestion controller's target followed by bitrate, frame rate and picture size), and
//! microphone or tone → Opus → audio track.
//!
//! A source may change what it sends mid-call (camera → shared screen → camera): the encoder is
//! made anew for the new content (screen tuning, its own rate) and its first frame is a keyframe at
//! the new size, on the same track and SSRC, so the far side decodes on without renegotiation.

use super::{CallMedia, TrackTarget};
use crate::call::congestion::estimator::START_BPS;
use crate::call::peer::asks_for_keyframe;
use crate::call::rate::{source_idle, Ladder, OverflowHold, QualityLimitation, Split, MAX_PACER_QUEUE_MS};
use crate::call::recovery::{keyframe_answered_for, MIN_KEYFRAME_SPACING};
use crate::call::stats::Counters;
use crate::media::codec::{new_encoder, EncoderSettings, VideoCodec, VideoEncoder};
use crate::media::frame::{I420Frame, RgbaFrame, AUDIO_FRAME_SAMPLES};
use crate::media::opus_codec::OpusEncoder;
use crate::media::source::{AudioSource, VideoContent, VideoSource};
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
        let mut fps = source.fps().max(1);
        let mut frame_duration = Duration::from_secs(1) / fps;
        // What the encoder is tuned for; a source that changes content gets a new encoder.
        let mut content = source.content();
        controls.congestion.set_screen(content == VideoContent::Screen);
        let mut last_keyframe: Option<Instant> = None;
        // The camera's first keyframe was weighed against the start's target.
        let mut first_keyframe_seen = false;
        let mut overflow_hold = OverflowHold::default();
        // Until when a camera keyframe request is taken as answered by the last keyframe.
        let mut answered_until: Option<Instant> = None;
        // The pacer's count of discarded frames, as last answered with a keyframe.
        let mut frames_discarded = controls.congestion.frames_discarded();
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
        let mut second: Option<(Instant, u64, u64)> = None;
        let mut sent_bps: Option<u32> = None;
        // The second before's, so one second's keyframe burst does not read as a source using its target.
        let mut sent_before: Option<u32> = None;
        // A third of the frames were dropped behind the pacer's queue in the last second: the link,
        // not the source, held the sending down.
        let mut held_back = false;
        let mut rtp_clock = RtpClock::default();
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
            if source.content() != content {
                content = source.content();
                fps = source.fps().max(1);
                frame_duration = Duration::from_secs(1) / fps;
                (scale, encoder, ladder) = (1, None, None);
                interval = frame_duration.as_secs_f64();
                // The pacer lets a screen's bursts through unpaced (see `Congestion::set_screen`).
                controls.congestion.set_screen(content == VideoContent::Screen);
                tracing::info!(
                    ?content,
                    fps,
                    width = frame.width,
                    height = frame.height,
                    "video source changed"
                );
            }
            // The link drops what comes to it: a frame sent now is lost, and holding it back drains
            // the queue for the next, a keyframe if one is asked for (the requests wait).
            let (path_queue_ms, loss) = (controls.congestion.path_queue_ms(), controls.congestion.loss());
            if content == VideoContent::Camera && overflow_hold.hold(captured, path_queue_ms, loss) {
                Counters::add(&counters.frames_dropped_queue, 1);
                continue;
            }
            // A keyframe asked for goes out now, unless the last one answers it (asked before that one
            // could have arrived: dropped, the far side asks again if it still lacks one); for a
            // screen, at most one per SCREEN_KEYFRAME_SPACING, and one asked sooner waits.
            let asked = keyframe_wanted.load(Ordering::Relaxed);
            let keyframe_due = asked
                && match content {
                    VideoContent::Camera => answered_until.is_none_or(|t| captured >= t),
                    VideoContent::Screen => {
                        last_keyframe.is_none_or(|t| captured.duration_since(t) >= SCREEN_KEYFRAME_SPACING)
                    }
                };
            if asked && !keyframe_due && content == VideoContent::Camera {
                keyframe_wanted.store(false, Ordering::Relaxed);
            }
            // The pacer discarded frames: the far side's references are broken, so a keyframe now
            // rather than a round trip later when its request comes (which this then answers).
            let discarded = controls.congestion.frames_discarded();
            let repair_due = discarded != frames_discarded
                && last_keyframe.is_none_or(|t| captured.duration_since(t) >= MIN_KEYFRAME_SPACING);
            if repair_due {
                frames_discarded = discarded;
            }
            let keyframe_due = keyframe_due || repair_due;
            let congestion = &controls.congestion;
            if encoder.as_ref().is_none() {
                let settings = EncoderSettings::for_content(content, frame.width, frame.height, fps);
                ladder = Some(Ladder::new(settings.bitrate_bps));
                // The first frames go out at the controller's rate (its start rate at the call's
                // start), not the picture's natural one: a narrow link's queue overflowed under a
                // 900 kbit/s start. (Made at the natural rate, then lowered: openh264 takes its
                // ceiling from the rate it starts with, and one started at 300 kbit/s never went
                // above it.)
                match new_encoder(codec, settings) {
                    Ok(mut e) => {
                        let now_bps = congestion.target_bps().unwrap_or(START_BPS as u32);
                        encoder_bps = settings.bitrate_bps.min(now_bps);
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
            if keyframe_due {
                keyframe_wanted.store(false, Ordering::Relaxed);
                enc.request_keyframe();
            }
            // Video gets what audio leaves of the estimate (see `Split`).
            let estimate_bps = congestion.target_bps().unwrap_or(START_BPS as u32);
            let target_bps = Split::of(estimate_bps).video_bps.min(ladder.max_bps());
            let bytes = counters.video_bytes_sent.load(Ordering::Relaxed);
            let dropped = counters.frames_dropped_queue.load(Ordering::Relaxed);
            match second {
                Some((at, was, dropped_was)) if captured.duration_since(at) >= Duration::from_secs(1) => {
                    let secs = captured.duration_since(at).as_secs_f64();
                    sent_before = sent_bps;
                    sent_bps = Some((bytes.saturating_sub(was) as f64 * 8.0 / secs) as u32);
                    // A third of the frames or more: one keyframe's queue drops a few frames
                    // behind it and is no sign of a link too narrow (read as one, a keyframe after
                    // a loss took a 10 %-loss call's picture to 320x240); a deep drop drops nearly all.
                    held_back = dropped.saturating_sub(dropped_was) as f64 >= f64::from(fps) * secs / 3.0;
                    second = Some((captured, bytes, dropped));
                }
                Some(_) => {}
                None => second = Some((captured, bytes, dropped)),
            }
            // A sender dropping frames behind the pacer sends little *because* of the link: to the
            // ladder that is a source using its whole target. (Read as a source with little to
            // send, it kept a deep drop's 640x480 for the drop's whole 8 s, and no picture came.)
            // Otherwise the lower of the last two seconds: one with a keyframe in it (after a loss)
            // sent ~20 % over a 170 kbit/s source's usual rate, and with 10 % loss the ladder
            // halved the picture for two seconds a few times a call.
            let steady = match (sent_bps, sent_before) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, _) => a,
            };
            // The link fell away under the picture (a deep drop): the pacer is backed up and the
            // target is under half of what the rung needs. That is a source held back now, not
            // after a second's figures: waiting for them, a 640x480 keyframe was made for a
            // 33 kbit/s target, and the picture froze for 3 s while it crawled out.
            let fell_away = congestion.queue_ms() > 2.0 * MAX_PACER_QUEUE_MS && ladder.far_above(target_bps);
            let used_bps = if held_back || fell_away {
                Some(sent_bps.map_or(target_bps, |s| s.max(target_bps)))
            } else {
                steady
            };
            congestion.set_source_idle(content == VideoContent::Camera && source_idle(used_bps, target_bps));
            // The camera follows the ladder (bitrate, then frame rate, then size); a shared screen
            // keeps its detail: frame rate first, down to 5 fps, then size.
            let wanted_scale = match content {
                VideoContent::Camera => {
                    let rung = ladder.update(captured, target_bps, used_bps);
                    counters.set_quality_limitation(QualityLimitation::of(
                        rung,
                        target_bps,
                        ladder.max_bps(),
                        counters.last_encode_ms(),
                        frame_duration.as_secs_f64() * 1000.0,
                        source_share,
                    ));
                    rung.scale
                }
                VideoContent::Screen => {
                    // A shared screen does not follow the congestion estimate yet (and goes out
                    // unpaced, see the pacer): its keyframes of text are hundreds of kB, and from the
                    // start rate the estimate, the picture and its frame rate collapsed (0.5 fps at a
                    // browser). Full picture, full rate, until screens are tuned under the estimate.
                    counters.set_quality_limitation(QualityLimitation::None);
                    1
                }
            };
            if wanted_scale != scale {
                tracing::info!(
                    target_kbps = target_bps / 1000,
                    from = scale,
                    to = wanted_scale,
                    "video picture rescaled for the link"
                );
                scale = wanted_scale;
                rescaled = true;
            }
            controls.target_bitrate_bps.store(u64::from(target_bps), Ordering::Relaxed);
            if content == VideoContent::Camera && !ladder.keep_frame() {
                continue; // this rung's frame rate
            }
            // A keyframe (asked for, or a new picture size) is never dropped here: it supersedes
            // what waits in the pacer (see below), so it goes out at once instead of behind it.
            if congestion.queue_ms() > MAX_PACER_QUEUE_MS && !keyframe_due && !rescaled {
                // Behind this much it would arrive late anyway; skipping it lets the queue drain.
                Counters::add(&counters.frames_dropped_queue, 1);
                continue;
            }
            let shrunk = (scale > 1).then(|| frame.downscaled(scale));
            let input = shrunk.as_ref().unwrap_or(&frame);
            if rescaled {
                // A fresh encoder for the new size, made at that size's own natural rate (lowered
                // to the target after its first frame, below). Left to reinitialise itself on the
                // smaller frames, openh264 kept the full picture's rate for the new keyframe: a
                // 160x120 keyframe of 5 kB at a deep drop's 33 kbit/s, 1.2 s of sending.
                let settings = EncoderSettings::for_content(content, input.width, input.height, fps);
                match new_encoder(codec, settings) {
                    Ok(fresh) => *enc = fresh,
                    Err(e) => tracing::warn!(%e, "no fresh encoder for the new size; the old one rescales"),
                }
            }
            let result = enc.encode(input);
            // After the first frame (a fresh encoder's rate is its size's natural one) or a move of
            // the target, the encoder is given what the ladder says.
            let wanted = match content {
                VideoContent::Camera => ladder.encoder_bps(target_bps, source_share),
                VideoContent::Screen => ladder.max_bps(),
            };
            let moved = wanted.abs_diff(encoder_bps) > encoder_bps / 20;
            if std::mem::take(&mut rescaled) || moved {
                match enc.set_bitrate(wanted) {
                    Ok(()) => encoder_bps = wanted,
                    Err(e) => tracing::warn!(%e, "could not change the video bitrate"),
                }
            }
            if let Ok(Some(encoded)) = &result {
                if content == VideoContent::Camera && encoded.keyframe && !first_keyframe_seen {
                    first_keyframe_seen = true;
                    if ladder.fit_first_keyframe(encoded.data.len(), target_bps) {
                        // Too big for the start's target (see `Ladder::fit_first_keyframe`): the
                        // next frame goes at the smaller size, a keyframe of a fresh encoder.
                        tracing::debug!(
                            bytes = encoded.data.len(),
                            target_bps,
                            to = ladder.rung().scale,
                            "video first keyframe too big for the target; not sent"
                        );
                        continue;
                    }
                }
            }
            match result {
                Ok(Some(encoded)) => {
                    Counters::add(&counters.frames_sent, 1);
                    Counters::add(&counters.keyframes_sent, encoded.keyframe as u64);
                    Counters::add(&counters.video_bytes_sent, encoded.data.len() as u64);
                    Counters::add(&counters.encode_us, encoded.encode_time.as_micros() as u64);
                    counters.last_encode_us.store(encoded.encode_time.as_micros() as u64, Ordering::Relaxed);
                    // Camera or screen (whose pictures come at a varying pace), the RTP clock
                    // follows capture times.
                    let duration = rtp_clock.duration(captured, frame_duration);
                    if encoded.keyframe {
                        tracing::debug!(bytes = encoded.data.len(), scale, target_bps, "video keyframe sent");
                        // The far side's decoder starts afresh here: what waits in the pacer from
                        // before this picture is of no use to it.
                        congestion.supersede_before(captured);
                        last_keyframe = Some(captured);
                        let rtt = controls.recovery.rtt();
                        answered_until =
                            Some(captured + keyframe_answered_for(rtt, encoded.data.len(), target_bps));
                    }
                    if !target.write(&rt, encoded.data, duration, captured) {
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

/// RTP timestamps that follow the capture times. The track stamps each sample with the sum of the
/// durations before it, so a fixed 1/fps drifts from the pictures' real times whenever the source is
/// late (a busy machine, a camera slowing in the dark, a dropped frame) — and the far side's playout
/// clock would read that drift as network delay and hold every frame longer. Each duration is chosen
/// so that the next timestamp lands where the next capture is due (this one's + one frame interval),
/// which corrects the last error at once instead of letting it add up.
#[derive(Default)]
struct RtpClock {
    /// The first frame's capture, and the time the durations given so far add up to.
    start: Option<Instant>,
    stamped: Duration,
}

impl RtpClock {
    /// The duration to give the frame captured at `captured`; `interval` is the source's frame interval.
    fn duration(&mut self, captured: Instant, interval: Duration) -> Duration {
        let start = *self.start.get_or_insert(captured);
        let next_due = captured.saturating_duration_since(start) + interval;
        // Never 0: two frames with one timestamp would be one frame to the far side.
        let duration = next_due.saturating_sub(self.stamped).max(Duration::from_millis(1));
        self.stamped += duration;
        duration
    }
}

/// The least time between two keyframes of a shared screen. A 1080p keyframe of dense text is up to
/// ~650 kB (the figures test) and takes openh264 100+ ms; answering every PLI while the last keyframe
/// was still in flight made a storm (measured on a 1080p share: 36 keyframes in 65 frames, 54 PLIs, 1.6 fps received).
/// The camera answers a PLI unless its last keyframe does (see `keyframe_answered_for`).
const SCREEN_KEYFRAME_SPACING: Duration = Duration::from_secs(1);

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
        let mut bitrate = Split::of(controls.congestion.target_bps().unwrap_or(START_BPS as u32)).audio_bps;
        let mut encoder = match OpusEncoder::new(bitrate as i32) {
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
            // Voice follows the estimate between its narrow and full rates (`Split`'s 4 kbit/s steps).
            let wanted = Split::of(controls.congestion.target_bps().unwrap_or(START_BPS as u32)).audio_bps;
            if wanted != bitrate {
                match encoder.set_bitrate(wanted as i32) {
                    Ok(()) => bitrate = wanted,
                    Err(e) => tracing::warn!(%e, "could not change the audio bitrate"),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_timestamps_follow_capture_times_without_drift() {
        let mut clock = RtpClock::default();
        let interval = Duration::from_millis(33);
        let t0 = Instant::now();
        // Captures on time, one 50 ms late, then on the schedule again, then a stall of a second.
        let captures = [0, 33, 66, 116, 132, 165, 1165, 1198];
        let mut stamped = Duration::ZERO;
        let mut stamps = Vec::new();
        for ms in captures {
            stamps.push(stamped.as_millis() as u64);
            stamped += clock.duration(t0 + Duration::from_millis(ms), interval);
        }
        // Each timestamp is where the frame was due: a late frame is early by its lateness once,
        // the error does not carry on.
        assert_eq!(stamps, [0, 33, 66, 99, 149, 165, 198, 1198]);
    }
}
