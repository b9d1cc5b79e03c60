//! A speaker without a device: the far side's audio through the same jitter buffer as a real
//! speaker, drained at the real-time pace into nothing. Headless runs (benchmarks, tests over an
//! emulated link) have no sound card, yet what a listener would hear — how deep the buffer had to
//! grow, how often it ran dry — is a figure of the call like the picture's freezes.

use super::jitter::{JitterBuffer, JitterStats};
use super::speaker::JITTER_TARGET_MS;
use crate::media::frame::{AudioChunk, AUDIO_RATE};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// What one pull found: the buffer's depth and target, and its counters so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlayoutLevel {
    /// Audio queued after the pull, ms: the delay the buffer adds now.
    pub depth_ms: f64,
    /// The depth the buffer aims for, ms.
    pub target_ms: f64,
    /// Played, concealed, dropped, underruns.
    pub stats: JitterStats,
}

/// Plays into nothing until dropped or until the audio's sender goes away.
pub struct PacedPlayout {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A device's period: what a sound card's callback typically takes at a time.
const PULL: Duration = Duration::from_millis(10);

impl PacedPlayout {
    /// Starts playing `audio` (e.g. the engine's remote audio); `report` hears the level after
    /// every 10 ms pull.
    pub fn start(
        audio: broadcast::Receiver<AudioChunk>,
        report: impl FnMut(PlayoutLevel) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("paced-playout".into())
            .spawn(move || run(audio, report, stop_rx))?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for PacedPlayout {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut audio: broadcast::Receiver<AudioChunk>,
    mut report: impl FnMut(PlayoutLevel),
    mut stop: watch::Receiver<bool>,
) {
    // A one-thread runtime to wait on "audio, the next pull, or stop" at once: chunks are pushed
    // the moment they arrive (their arrival times set the buffer's target), pulls keep the pace.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
        tracing::error!("paced playout: no runtime; the far side's audio is not measured");
        return;
    };
    let mut jitter = JitterBuffer::new(AUDIO_RATE, JITTER_TARGET_MS);
    let epoch = Instant::now();
    let per_pull = (AUDIO_RATE as usize / 1000) * PULL.as_millis() as usize;
    let (mut pcm, mut out) = (Vec::with_capacity(960), vec![0.0f32; per_pull]);
    rt.block_on(async {
        let mut pulls = tokio::time::interval(PULL);
        pulls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = pulls.tick() => {
                    jitter.pull(&mut out);
                    report(PlayoutLevel {
                        depth_ms: jitter.depth() as f64 * 1000.0 / AUDIO_RATE as f64,
                        target_ms: jitter.target_ms(),
                        stats: jitter.stats(),
                    });
                }
                chunk = audio.recv() => match chunk {
                    Ok(chunk) => {
                        pcm.clear();
                        pcm.extend(chunk.iter().map(|&s| f32::from(s) / 32768.0));
                        jitter.push_arrived(&pcm, epoch.elapsed().as_micros() as u64);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(n, "paced playout lagged"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn plays_what_arrives_at_the_real_time_pace() {
        let (tx, rx) = broadcast::channel(64);
        let levels = Arc::new(Mutex::new(Vec::new()));
        let seen = levels.clone();
        let playout = PacedPlayout::start(rx, move |l| seen.lock().unwrap().push(l)).unwrap();
        // 0.5 s of audio sent at its pace.
        let chunk: AudioChunk = vec![1000i16; 960].into();
        let start = Instant::now();
        for i in 1..=25u32 {
            tx.send(chunk.clone()).unwrap();
            std::thread::sleep(
                (start + Duration::from_millis(20) * i).saturating_duration_since(Instant::now()),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        drop(playout);
        let levels = levels.lock().unwrap();
        let last = levels.last().copied().unwrap_or_default();
        // At least 0.7 s of 10 ms pulls (more when the machine is slow); every one of the 24,000
        // samples sent was played, or skipped had the pulls fallen behind a burst.
        assert!(levels.len() >= 55, "{} pulls in 0.7 s", levels.len());
        assert_eq!(last.stats.played + last.stats.dropped, 24_000, "{last:?}");
        assert!(levels.iter().any(|l| l.depth_ms >= 40.0), "the buffer filled to its target first");
    }
}
