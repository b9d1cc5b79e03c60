//! The speaker: the engine's decoded audio (20 ms mono 48 kHz chunks) played through cpal at the
//! device's own rate, channel count and sample format, through the jitter buffer.
//!
//! One thread per speaker owns the cpal stream and receives the engine's audio; it resamples each
//! chunk to the device rate and pushes it into the jitter buffer, which the device's callback
//! drains. The callback only locks, copies and fans mono out to every channel, so it never waits
//! for the network.

use super::clock::{ClockPoint, DeviceClock, RealTimeGuard};
use super::jitter::{JitterBuffer, JitterStats};
use super::resample::MonoResampler;
use super::{open_audio_device, spawn_stream_thread, DeviceError};
use crate::media::frame::{AudioChunk, AUDIO_RATE};
use crate::media::processing::EchoReference;
use cpal::traits::DeviceTrait;
use cpal::{FromSample, SizedSample};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// Depth the jitter buffer fills to before playing: within the 40–60 ms a call can afford, and
/// enough to ride out the usual burstiness of 20 ms packets on a real network.
pub const JITTER_TARGET_MS: u32 = 50;

/// The format the speaker was opened with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFormat {
    /// Samples per second per channel.
    pub rate: u32,
    /// Channels (each gets the same mono signal).
    pub channels: u16,
    /// The device's sample format, e.g. `i16` or `f32`.
    pub sample_format: String,
}

/// A playing speaker; stops when dropped.
pub struct Speaker {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    jitter: Arc<Mutex<JitterBuffer>>,
    format: OutputFormat,
    name: String,
    failure: Arc<Mutex<Option<String>>>,
    clock: DeviceClock,
}

impl Speaker {
    /// Opens the speaker `id` (`None`: the system default) and plays everything `audio` carries
    /// (e.g. [`Engine::remote_audio`](crate::call::Engine::remote_audio)) until dropped or until the
    /// sender goes away.
    pub fn play(id: Option<&str>, audio: broadcast::Receiver<AudioChunk>) -> Result<Self, DeviceError> {
        Self::play_with_reference(id, audio, None)
    }

    /// As [`play`](Self::play), telling `reference` everything handed to the device (after the
    /// jitter buffer, at the device's rate): the echo canceller's far end
    /// ([`MediaDevices::processing`](super::MediaDevices::processing)).
    pub fn play_with_reference(
        id: Option<&str>,
        audio: broadcast::Receiver<AudioChunk>,
        reference: Option<EchoReference>,
    ) -> Result<Self, DeviceError> {
        let device = open_audio_device(false, id)?;
        let name = device.description().map(|d| d.name().to_owned()).unwrap_or_else(|_| "speaker".into());
        let supported = device.default_output_config().map_err(|e| DeviceError::from_cpal("speaker", &e))?;
        let format = OutputFormat {
            rate: supported.sample_rate(),
            channels: supported.channels(),
            sample_format: supported.sample_format().to_string(),
        };
        let resampler = MonoResampler::new(AUDIO_RATE, format.rate)
            .map_err(|e| DeviceError::NoFormat { kind: "speaker", detail: e.to_string() })?;
        let jitter = Arc::new(Mutex::new(JitterBuffer::new(format.rate, JITTER_TARGET_MS)));
        let failure = Arc::new(Mutex::new(None));
        let (stop, stop_rx) = watch::channel(false);
        let (thread_jitter, thread_failure) = (jitter.clone(), failure.clone());
        let feed_jitter = jitter.clone();
        let clock = DeviceClock::default();
        let thread_clock = clock.clone();
        let thread = spawn_stream_thread(
            "speaker",
            move || build_stream(&device, supported, thread_jitter, thread_failure, thread_clock, reference),
            move || feed(audio, resampler, &feed_jitter, stop_rx),
        )?;
        tracing::info!(%name, ?format, "speaker open");
        Ok(Self { stop, thread: Some(thread), jitter, format, name, failure, clock })
    }

    /// The format the device plays at.
    pub fn format(&self) -> &OutputFormat {
        &self.format
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The jitter buffer's counters (played, concealed, dropped, underruns).
    pub fn stats(&self) -> JitterStats {
        self.jitter.lock().map(|j| j.stats()).unwrap_or_default()
    }

    /// When which output sample (at the device rate, counted per channel) went to the device: after
    /// the stream stops, its `frame` is the total handed over.
    pub fn clock(&self) -> DeviceClock {
        self.clock.clone()
    }

    /// Why the device stopped playing, if it has (unplugged, driver error).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves the engine's audio into the jitter buffer until told to stop or the engine goes away.
fn feed(
    mut audio: broadcast::Receiver<AudioChunk>,
    mut resampler: MonoResampler,
    jitter: &Mutex<JitterBuffer>,
    mut stop: watch::Receiver<bool>,
) {
    // A one-thread runtime just to wait on "audio or stop" without polling.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        tracing::error!("speaker: no runtime for its feeder; nothing will play");
        return;
    };
    let mut mono = Vec::with_capacity(2048);
    // Arrival times for the jitter buffer's target, on a monotonic clock.
    let epoch = std::time::Instant::now();
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                chunk = audio.recv() => match chunk {
                    Ok(chunk) => {
                        let pcm: Vec<f32> = chunk.iter().map(|&s| s as f32 / 32768.0).collect();
                        mono.clear();
                        resampler.process(&pcm, &mut mono);
                        let arrived_us = epoch.elapsed().as_micros() as u64;
                        if let Ok(mut j) = jitter.lock() {
                            j.push_arrived(&mono, arrived_us);
                        }
                    }
                    // We fell behind by more than the channel holds: the jitter buffer conceals it.
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(n, "speaker lagged"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
}

fn build_stream(
    device: &cpal::Device,
    supported: cpal::SupportedStreamConfig,
    jitter: Arc<Mutex<JitterBuffer>>,
    failure: Arc<Mutex<Option<String>>>,
    clock: DeviceClock,
    reference: Option<EchoReference>,
) -> Result<cpal::Stream, DeviceError> {
    let config = supported.config();
    let s = Stream { jitter, failure, clock, reference };
    match supported.sample_format() {
        cpal::SampleFormat::F32 => build_typed::<f32>(device, config, s),
        cpal::SampleFormat::I16 => build_typed::<i16>(device, config, s),
        cpal::SampleFormat::I32 => build_typed::<i32>(device, config, s),
        cpal::SampleFormat::U16 => build_typed::<u16>(device, config, s),
        cpal::SampleFormat::U8 => build_typed::<u8>(device, config, s),
        cpal::SampleFormat::F64 => build_typed::<f64>(device, config, s),
        other => Err(DeviceError::NoFormat { kind: "speaker", detail: format!("sample format {other}") }),
    }
}

/// What the device callback shares with the speaker.
struct Stream {
    jitter: Arc<Mutex<JitterBuffer>>,
    failure: Arc<Mutex<Option<String>>>,
    clock: DeviceClock,
    reference: Option<EchoReference>,
}

fn build_typed<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    s: Stream,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + FromSample<f32>,
{
    let Stream { jitter, failure, clock, reference } = s;
    let channels = config.channels.max(1) as usize;
    let mut mono = Vec::new();
    let rate = config.sample_rate;
    let mut guard = RealTimeGuard::new(rate);
    let mut written: u64 = 0;
    let on_data = move |out: &mut [T], _: &cpal::OutputCallbackInfo| {
        let frames = out.len() / channels;
        mono.resize(frames, 0.0);
        match jitter.lock() {
            Ok(mut j) => j.pull(&mut mono),
            Err(_) => mono.fill(0.0),
        }
        for (frame, &s) in out.chunks_mut(channels).zip(&mono) {
            frame.fill(T::from_sample(s.clamp(-1.0, 1.0)));
        }
        if let Some(r) = &reference {
            r.played(rate, &mono);
        }
        written += frames as u64;
        let peak = mono.iter().fold(0.0f32, |p, s| p.max(s.abs()));
        // Samples before `written` have been handed over by now.
        clock.set(ClockPoint { frame: written, at: std::time::Instant::now(), rate, peak });
        guard.after(frames);
    };
    let on_error = move |e: cpal::Error| {
        tracing::warn!(%e, "speaker error");
        if let Ok(mut f) = failure.lock() {
            *f = Some(format!("the speaker stopped: {e}"));
        }
    };
    device
        .build_output_stream::<T, _, _>(config, on_data, on_error, None)
        .map_err(|e| DeviceError::from_cpal("speaker", &e))
}
