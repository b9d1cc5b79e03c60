//! The playback jitter buffer: decoded audio goes in as it arrives, the speaker takes it out at its
//! own steady pace, and gaps are concealed without clicks.
//!
//! Network audio arrives in bursts and the speaker's clock drifts from the sender's, so playback
//! waits until a target depth (40–60 ms) is buffered, then plays from it. When it runs dry it plays
//! the last few milliseconds backwards while fading to zero (the mirror keeps the waveform
//! continuous where a plain repeat would jump and click), then silence; when audio comes back it
//! fades in. When it holds far more than the target (a burst, or a sender clock that runs fast) it
//! skips the surplus with a short crossfade, so latency stays bounded and the skip is inaudible.
//! Samples are mono at the speaker's rate; the speaker copies each to all its channels.

use std::collections::VecDeque;

/// Counters a test or the stats overlay can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Samples played from received audio.
    pub played: u64,
    /// Samples of concealment (mirrored fade-out) and silence played while dry.
    pub concealed: u64,
    /// Samples dropped to cut latency back to the target.
    pub dropped: u64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
}

/// Whether the buffer is filling up or playing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the target depth before (re)starting; plays silence.
    Buffering,
    /// Playing from the queue.
    Playing,
}

/// A jitter buffer for mono samples at one rate.
pub struct JitterBuffer {
    queue: VecDeque<f32>,
    phase: Phase,
    /// Depth to reach before playing.
    target: usize,
    /// Depth above which the surplus is skipped.
    high_water: usize,
    /// Length of fades and crossfades.
    fade: usize,
    /// The most recent samples played (for the mirrored concealment), oldest first.
    history: VecDeque<f32>,
    /// How many samples `history` keeps.
    history_len: usize,
    /// Where we are in the concealment after an underrun; `None` while playing real audio.
    concealing: Option<usize>,
    /// Samples left of the fade-in after a restart.
    fade_in_left: usize,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer at `rate` Hz that starts playing at `target_ms` of depth and skips audio beyond
    /// `target_ms + 60 ms`.
    pub fn new(rate: u32, target_ms: u32) -> Self {
        let per_ms = (rate / 1000).max(1) as usize;
        let target = per_ms * target_ms as usize;
        Self {
            queue: VecDeque::with_capacity(target * 4),
            phase: Phase::Buffering,
            target,
            high_water: target + per_ms * 60,
            fade: per_ms * 5,
            // 10 ms: long enough to hide a short gap, short enough to fade out before it repeats.
            history: VecDeque::with_capacity(per_ms * 10),
            history_len: per_ms * 10,
            concealing: None,
            fade_in_left: 0,
            stats: JitterStats::default(),
        }
    }

    /// Queues received samples (full scale ±1.0).
    pub fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        self.queue.extend(samples);
        if self.queue.len() > self.high_water {
            self.skip_surplus();
        }
        if self.phase == Phase::Buffering && self.queue.len() >= self.target {
            self.phase = Phase::Playing;
            // Coming out of silence or a faded concealment: ramp up from zero.
            self.fade_in_left = self.fade;
        }
    }

    /// Samples queued now.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// What has been played, concealed and dropped so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Fills `out` with the next samples to play.
    pub fn pull(&mut self, out: &mut [f32]) {
        for o in out.iter_mut() {
            *o = self.next_sample();
        }
    }

    fn next_sample(&mut self) -> f32 {
        // A concealment runs to its end (at most 10 ms) even when audio is back: cutting it short
        // would jump from its faded level to the fade-in's zero.
        if self.phase == Phase::Playing && self.concealing.is_none() {
            if let Some(s) = self.queue.pop_front() {
                self.stats.played += 1;
                let s = if self.fade_in_left > 0 {
                    let gain = 1.0 - self.fade_in_left as f32 / self.fade as f32;
                    self.fade_in_left -= 1;
                    s * gain
                } else {
                    s
                };
                self.remember(s);
                return s;
            }
            // Dry: conceal, and wait for the target depth again before playing on.
            self.stats.underruns += 1;
            self.phase = Phase::Buffering;
            self.concealing = Some(0);
        }
        self.stats.concealed += 1;
        self.conceal()
    }

    /// The mirrored fade-out: the history played backwards, from the newest sample, with a gain
    /// falling linearly to zero over the history's length; silence after that.
    fn conceal(&mut self) -> f32 {
        let Some(i) = self.concealing else { return 0.0 };
        let n = self.history.len();
        if i >= n {
            self.concealing = None;
            return 0.0;
        }
        self.concealing = Some(i + 1);
        let gain = 1.0 - (i + 1) as f32 / n as f32;
        self.history[n - 1 - i] * gain
    }

    fn remember(&mut self, s: f32) {
        if self.history.len() >= self.history_len {
            self.history.pop_front();
        }
        self.history.push_back(s);
    }

    /// Drops queued audio down to the target depth, crossfading across the cut so no step is heard.
    fn skip_surplus(&mut self) {
        let surplus = self.queue.len() - self.target;
        let fade = self.fade.min(self.target);
        // Blend the samples that would have played next into the ones after the cut.
        for k in 0..fade {
            let a = k as f32 / fade as f32;
            let kept = self.queue[surplus + k];
            self.queue[surplus + k] = self.queue[k] * (1.0 - a) + kept * a;
        }
        self.queue.drain(..surplus);
        self.stats.dropped += surplus as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, start: usize) -> Vec<f32> {
        (start..start + n).map(|i| (i as f32 * 0.05).sin() * 0.5).collect()
    }

    /// The largest step between neighbouring samples: a click shows up as a big step.
    fn max_step(s: &[f32]) -> f32 {
        s.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn waits_for_the_target_then_plays_in_order() {
        let mut jb = JitterBuffer::new(48_000, 50);
        jb.push(sine(960, 0));
        let mut out = vec![1.0; 480];
        jb.pull(&mut out);
        assert!(out.iter().all(|&s| s == 0.0), "silence until 50 ms are buffered");
        jb.push(sine(960, 960));
        jb.push(sine(960, 1920));
        let mut out = vec![0.0; 2880];
        jb.pull(&mut out);
        let want = sine(2880, 0);
        // After the 5 ms fade-in, the samples are the ones sent.
        assert_eq!(&out[240..], &want[240..]);
        assert_eq!(jb.stats().played, 2880);
    }

    #[test]
    fn a_gap_fades_out_and_back_in_without_a_click() {
        let mut jb = JitterBuffer::new(48_000, 40);
        let mut out = Vec::new();
        let mut t = 0;
        // Steady flow, then a 60 ms gap, then the flow again.
        for step in 0..30 {
            if !(10..13).contains(&step) {
                jb.push(sine(960, t));
            }
            t += 960;
            let mut chunk = vec![0.0; 960];
            jb.pull(&mut chunk);
            out.extend(chunk);
        }
        let sine_step = max_step(&sine(960, 0));
        assert!(max_step(&out) <= sine_step * 1.5, "step {} vs the sine's own {}", max_step(&out), sine_step);
        assert!(jb.stats().underruns >= 1 && jb.stats().concealed > 0);
    }

    #[test]
    fn a_burst_is_cut_back_to_the_target_smoothly() {
        let mut jb = JitterBuffer::new(48_000, 50);
        let burst = sine(48_000, 0);
        let mut fed = 0;
        for chunk in burst.chunks(960).take(10) {
            jb.push(chunk.iter().copied());
            fed += chunk.len();
        }
        assert!(jb.depth() <= 2400 + 2880, "depth {} stays near the target", jb.depth());
        assert!(jb.stats().dropped > 0);
        let mut out = vec![0.0; 4000];
        jb.pull(&mut out);
        assert!(max_step(&out[240..]) < 0.1, "no click at the cut");
        assert!(fed > 0);
    }
}
