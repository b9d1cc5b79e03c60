//! The microphone: cpal input at the device's own rate, channels and sample format, mixed to mono,
//! resampled to 48 kHz and cut into the 20 ms chunks Opus wants.
//!
//! cpal calls us on its own thread with whatever block size the device uses; that callback only
//! converts to `f32` mono and queues, so it never waits. The engine's audio thread calls
//! [`AudioSource::next_chunk`], which waits for enough samples, resamples and returns 960 of them.
//! The stream itself lives on a small thread of its own, which closes it when the [`Microphone`] is
//! dropped.

use super::clock::{ClockPoint, DeviceClock, RealTimeGuard};
use super::resample::MonoResampler;
use super::{open_audio_device, spawn_stream_thread, DeviceError};
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_RATE};
use crate::media::source::AudioSource;
use cpal::traits::DeviceTrait;
use cpal::{FromSample, Sample, SizedSample};
use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the queue may grow before the oldest audio is dropped: the encoder fell behind, and
/// sending stale audio late is worse than skipping it.
const MAX_QUEUED: Duration = Duration::from_millis(200);
/// No samples for this long means the device stopped (unplugged without an error, a stuck driver).
const STALL: Duration = Duration::from_secs(2);

/// What the cpal callback hands to the reader.
#[derive(Default)]
struct Queue {
    /// Mono samples at the device rate.
    samples: VecDeque<f32>,
    /// Set when the stream reported an error; the reader ends with it.
    error: Option<String>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// An open microphone; an [`AudioSource`] of 20 ms mono 48 kHz chunks.
pub struct Microphone {
    shared: Arc<Shared>,
    /// Dropping this closes the stream's thread.
    _stop: mpsc::Sender<()>,
    resampler: MonoResampler,
    /// 48 kHz samples ready to hand out.
    ready: VecDeque<f32>,
    /// Scratch for moving samples out of the shared queue.
    scratch: Vec<f32>,
    name: String,
    rate: u32,
    channels: u16,
    /// Why the microphone stopped, once it has.
    failure: Option<String>,
    clock: DeviceClock,
}

impl Microphone {
    /// Opens the microphone `id` (`None`: the system default) at its default configuration.
    pub fn open(id: Option<&str>) -> Result<Self, DeviceError> {
        let device = open_audio_device(true, id)?;
        let name = device.description().map(|d| d.name().to_owned()).unwrap_or_else(|_| "microphone".into());
        let supported =
            device.default_input_config().map_err(|e| DeviceError::from_cpal("microphone", &e))?;
        let (rate, channels) = (supported.sample_rate(), supported.channels());
        let resampler = MonoResampler::new(rate, AUDIO_RATE)
            .map_err(|e| DeviceError::NoFormat { kind: "microphone", detail: e.to_string() })?;
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), ready: Condvar::new() });
        let (stop, stop_rx) = mpsc::channel::<()>();
        let thread_shared = shared.clone();
        let clock = DeviceClock::default();
        let thread_clock = clock.clone();
        spawn_stream_thread(
            "microphone",
            move || build_stream(&device, supported, thread_shared, thread_clock),
            // Parked until the Microphone is dropped (its sender goes away).
            move || {
                let _ = stop_rx.recv();
            },
        )?;
        tracing::info!(%name, rate, channels, "microphone open");
        Ok(Self {
            shared,
            _stop: stop,
            resampler,
            ready: VecDeque::with_capacity(AUDIO_FRAME_SAMPLES * 3),
            scratch: Vec::new(),
            name,
            rate,
            channels,
            failure: None,
            clock,
        })
    }

    /// When the device captured which sample (at its own rate), for latency measurements.
    pub fn clock(&self) -> DeviceClock {
        self.clock.clone()
    }

    /// The device's own rate and channel count (before resampling and mixing).
    pub fn native_format(&self) -> (u32, u16) {
        (self.rate, self.channels)
    }

    /// Why the microphone stopped delivering, once it has (unplugged, driver error, stalled).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Waits for device samples and runs them through the resampler until a chunk is ready;
    /// `false` when the device has failed.
    fn fill(&mut self) -> bool {
        while self.ready.len() < AUDIO_FRAME_SAMPLES {
            let Ok(queue) = self.shared.queue.lock() else {
                self.failure = Some("the microphone's queue broke".into());
                return false;
            };
            let Ok((mut queue, timeout)) = self
                .shared
                .ready
                .wait_timeout_while(queue, STALL, |q| q.samples.is_empty() && q.error.is_none())
            else {
                self.failure = Some("the microphone's queue broke".into());
                return false;
            };
            if let Some(e) = queue.error.take() {
                self.failure = Some(e);
                return false;
            }
            if timeout.timed_out() {
                self.failure = Some(format!("the microphone \"{}\" stopped sending sound", self.name));
                return false;
            }
            self.scratch.clear();
            self.scratch.extend(queue.samples.drain(..));
            drop(queue);
            self.resampler.process(&self.scratch, &mut self.ready);
        }
        true
    }
}

impl AudioSource for Microphone {
    fn next_chunk(&mut self, out: &mut [i16]) -> bool {
        if self.failure.is_some() || !self.fill() {
            return false;
        }
        for (o, s) in out.iter_mut().zip(self.ready.drain(..AUDIO_FRAME_SAMPLES)) {
            *o = i16::from_sample(s.clamp(-1.0, 1.0));
        }
        true
    }

    fn describe(&self) -> String {
        format!("microphone \"{}\"", self.name)
    }
}

/// Builds the input stream in the device's own sample format.
fn build_stream(
    device: &cpal::Device,
    supported: cpal::SupportedStreamConfig,
    shared: Arc<Shared>,
    clock: DeviceClock,
) -> Result<cpal::Stream, DeviceError> {
    let config = supported.config();
    match supported.sample_format() {
        cpal::SampleFormat::F32 => build_typed::<f32>(device, config, shared, clock),
        cpal::SampleFormat::I16 => build_typed::<i16>(device, config, shared, clock),
        cpal::SampleFormat::I32 => build_typed::<i32>(device, config, shared, clock),
        cpal::SampleFormat::U16 => build_typed::<u16>(device, config, shared, clock),
        cpal::SampleFormat::U8 => build_typed::<u8>(device, config, shared, clock),
        cpal::SampleFormat::F64 => build_typed::<f64>(device, config, shared, clock),
        other => Err(DeviceError::NoFormat { kind: "microphone", detail: format!("sample format {other}") }),
    }
}

fn build_typed<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    shared: Arc<Shared>,
    clock: DeviceClock,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = config.channels.max(1) as usize;
    let max_queued = (config.sample_rate as u128 * MAX_QUEUED.as_millis() / 1000) as usize;
    let on_error = {
        let shared = shared.clone();
        move |e: cpal::Error| {
            if let Ok(mut q) = shared.queue.lock() {
                q.error = Some(format!("the microphone stopped: {e}"));
            }
            shared.ready.notify_one();
        }
    };
    let rate = config.sample_rate;
    let mut guard = RealTimeGuard::new(rate);
    let mut captured: u64 = 0;
    let on_data = move |data: &[T], _: &cpal::InputCallbackInfo| {
        let frames = data.len() / channels;
        captured += frames as u64;
        let at = std::time::Instant::now();
        let Ok(mut q) = shared.queue.lock() else { return };
        // Mono by averaging the channels: a stereo mic's two sides are the same voice.
        let scale = 1.0 / channels as f32;
        let mut peak = 0.0f32;
        q.samples.extend(data.chunks(channels).map(|frame| {
            let s = frame.iter().map(|&s| s.to_sample::<f32>()).sum::<f32>() * scale;
            peak = peak.max(s.abs());
            s
        }));
        // The block ends with the newest sample, captured about now.
        clock.set(ClockPoint { frame: captured, at, rate, peak });
        let excess = q.samples.len().saturating_sub(max_queued);
        q.samples.drain(..excess);
        drop(q);
        shared.ready.notify_one();
        guard.after(frames);
    };
    device
        .build_input_stream::<T, _, _>(config, on_data, on_error, None)
        .map_err(|e| DeviceError::from_cpal("microphone", &e))
}
