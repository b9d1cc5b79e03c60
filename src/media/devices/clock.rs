//! Device clocks: which sample a microphone or speaker moved when and how loud, and a guard that holds a device
//! running faster than real time to the wall clock.
//!
//! Real devices are paced by their own hardware clock. Virtual ones need not be: ALSA's `null` and
//! `file` plugins (the test rig on a machine with no sound card) hand over or swallow samples as
//! fast as they are asked, which would read a microphone file in milliseconds and write a speaker
//! file at gigabytes a second. The guard notices a device that gets far ahead of the wall clock
//! (no real device can) and from then on sleeps in its callback to keep it at a small lead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lead over the wall clock beyond which a device counts as free-running; far above any real
/// device's buffer at start, far below what a free-running one reaches in its first burst.
const FREE_RUN_LEAD: Duration = Duration::from_millis(250);
/// The lead a free-running device is held to: one typical device period.
const HELD_LEAD: Duration = Duration::from_millis(20);
/// A real device's clock drifts from the wall clock by parts per million; measuring in windows
/// this long keeps that drift far below `FREE_RUN_LEAD`.
const WINDOW: Duration = Duration::from_secs(10);

/// One point of a device's clock: sample `frame` was captured (microphone) or handed to the device
/// (speaker) at `at`. Later samples follow at the device rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockPoint {
    /// Sample index, counted from the stream's start, at the device rate.
    pub frame: u64,
    /// When.
    pub at: Instant,
    /// The device rate.
    pub rate: u32,
    /// Peak level (0..=1) of the block that ended at `frame`: a level meter for the window, and how
    /// a test sees a sound's onset pass through a device.
    pub peak: f32,
}

impl ClockPoint {
    /// When sample `frame` was (or will be) moved, assuming the steady rate since this point.
    pub fn time_of(&self, frame: u64) -> Instant {
        let offset =
            Duration::from_secs_f64((frame as f64 - self.frame as f64).abs() / self.rate.max(1) as f64);
        if frame >= self.frame {
            self.at + offset
        } else {
            self.at.checked_sub(offset).unwrap_or(self.at)
        }
    }
}

/// The latest clock point of a device, shared between its callback and whoever asks.
#[derive(Clone, Default)]
pub struct DeviceClock(Arc<Mutex<Option<ClockPoint>>>);

impl DeviceClock {
    /// The latest point, once the device has moved samples.
    pub fn now(&self) -> Option<ClockPoint> {
        self.0.lock().ok().and_then(|p| *p)
    }

    pub(crate) fn set(&self, point: ClockPoint) {
        if let Ok(mut p) = self.0.lock() {
            *p = Some(point);
        }
    }
}

/// Counts what a device callback moves against the wall clock; see the module notes.
pub(crate) struct RealTimeGuard {
    rate: f64,
    window_start: Option<Instant>,
    window_frames: u64,
    free_running: bool,
}

impl RealTimeGuard {
    pub(crate) fn new(rate: u32) -> Self {
        Self { rate: rate.max(1) as f64, window_start: None, window_frames: 0, free_running: false }
    }

    /// Accounts for `frames` just moved and sleeps if a free-running device is ahead of its lead.
    pub(crate) fn after(&mut self, frames: usize) {
        let now = Instant::now();
        let start = *self.window_start.get_or_insert(now);
        self.window_frames += frames as u64;
        let media = Duration::from_secs_f64(self.window_frames as f64 / self.rate);
        let wall = now - start;
        if !self.free_running {
            if media > wall + FREE_RUN_LEAD {
                self.free_running = true;
                tracing::info!(
                    "audio device runs faster than real time (a virtual device?); pacing it to the clock"
                );
                // Start a fresh window here, so pacing holds the lead from now on and the burst is
                // not paid back as a long silence.
                self.window_start = Some(now);
                self.window_frames = 0;
            } else if wall > WINDOW {
                self.window_start = Some(now);
                self.window_frames = 0;
            }
            return;
        }
        if media > wall + HELD_LEAD {
            std::thread::sleep(media - wall - HELD_LEAD);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_time_device_is_never_held_back() {
        // 10 ms blocks at 48 kHz, delivered in real time (plus a 60 ms start-up buffer, as a sound
        // card's first callbacks fill its buffer): the guard must never sleep.
        let mut guard = RealTimeGuard::new(48_000);
        guard.after(2880);
        let started = Instant::now();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(10));
            let before = Instant::now();
            guard.after(480);
            assert!(before.elapsed() < Duration::from_millis(5), "the guard slept on a real-time device");
        }
        assert!(!guard.free_running);
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn a_free_running_device_is_held_to_the_clock() {
        let mut guard = RealTimeGuard::new(48_000);
        let started = Instant::now();
        // 2 s of audio as fast as it can go: the first ~250 ms pass at once, the rest in real time.
        for _ in 0..200 {
            guard.after(480);
        }
        assert!(guard.free_running);
        let took = started.elapsed();
        assert!(took > Duration::from_millis(1600) && took < Duration::from_millis(2000), "took {took:?}");
    }

    #[test]
    fn a_clock_point_maps_samples_to_times_both_ways() {
        let at = Instant::now() + Duration::from_secs(10);
        let point = ClockPoint { frame: 48_000, at, rate: 48_000, peak: 0.0 };
        assert_eq!(point.time_of(96_000), at + Duration::from_secs(1));
        assert_eq!(point.time_of(24_000), at - Duration::from_millis(500));
    }
}
