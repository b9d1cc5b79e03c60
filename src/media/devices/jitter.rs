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
//!
//! The target follows the path: audio pushed with its arrival time ([`JitterBuffer::push_arrived`])
//! tells how late chunks come against their place in the stream, and the target covers 98 % of the
//! lateness seen in the last 10 s plus 20 ms (a chunk's length of slack for the device's own
//! period). It grows at once under jitter and shrinks back by 10 ms a second when the path calms,
//! between the configured depth and 300 ms.

use std::collections::VecDeque;

/// How far back the lateness of chunks is looked at.
const WINDOW_US: u64 = 10_000_000;
/// The share of recent chunks the target covers.
const COVERED: f64 = 0.98;
/// Slack above the lateness covered: the device's period and a chunk's granularity.
const SLACK_US: u64 = 20_000;
/// The target never passes this: longer, a conversation turns into walkie-talkie.
const MAX_TARGET_US: u64 = 300_000;
/// How fast the target comes back down when the path calms, per microsecond.
const SHRINK_PER_US: f64 = 0.01;
/// Audio that stops this long (an outage, a sender that went away) starts the estimate over: the
/// chunks before it say nothing of the path after it, and the missing stretch would read as lateness.
const RESTART_GAP_US: u64 = 500_000;
/// Depth above the target at which the surplus is skipped.
const HEADROOM_MS: u32 = 60;

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
    /// The target's floor (the configured depth), and samples per millisecond.
    min_target: usize,
    per_ms: usize,
    /// What the arrivals tell of the path (see the module's text).
    arrivals: Arrivals,
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
            high_water: target + per_ms * HEADROOM_MS as usize,
            fade: per_ms * 5,
            min_target: target,
            per_ms,
            arrivals: Arrivals::new(rate),
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

    /// Queues samples that arrived at `arrived_us` (a monotonic clock, µs) and moves the target to
    /// what the arrivals so far ask for.
    pub fn push_arrived(&mut self, samples: &[f32], arrived_us: u64) {
        let wanted_us = self.arrivals.arrived(samples.len(), arrived_us).min(MAX_TARGET_US);
        let wanted = (wanted_us as usize * self.per_ms / 1000).max(self.min_target);
        self.target = if wanted >= self.target {
            wanted
        } else {
            let shrink_us = self.arrivals.since_last_us as f64 * SHRINK_PER_US;
            self.target.saturating_sub(shrink_us as usize * self.per_ms / 1000).max(wanted)
        };
        self.high_water = self.target + self.per_ms * HEADROOM_MS as usize;
        self.push(samples.iter().copied());
    }

    /// The depth the buffer aims for now, ms.
    pub fn target_ms(&self) -> f64 {
        self.target as f64 / self.per_ms as f64
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

/// How late audio arrives against its place in the stream.
struct Arrivals {
    rate: u64,
    /// Samples pushed since the estimate (re)started: the stream position of the next chunk.
    position: u64,
    last_us: Option<u64>,
    /// Time between the last two arrivals, µs.
    since_last_us: u64,
    /// Recent chunks: arrival and transit (arrival − stream position, on unrelated clocks), µs.
    transits: VecDeque<(u64, i64)>,
    scratch: Vec<i64>,
}

impl Arrivals {
    fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate.max(1)),
            position: 0,
            last_us: None,
            since_last_us: 0,
            transits: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Notes `samples` arriving at `arrived_us`; returns the depth that covers recent lateness, µs.
    fn arrived(&mut self, samples: usize, arrived_us: u64) -> u64 {
        self.since_last_us = self.last_us.map_or(0, |last| arrived_us.saturating_sub(last));
        if self.since_last_us > RESTART_GAP_US {
            self.transits.clear();
            self.position = 0;
        }
        self.last_us = Some(arrived_us);
        let position_us = (self.position * 1_000_000 / self.rate) as i64;
        self.position += samples as u64;
        while self.transits.front().is_some_and(|&(at, _)| at + WINDOW_US < arrived_us) {
            self.transits.pop_front();
        }
        self.transits.push_back((arrived_us, arrived_us as i64 - position_us));
        let base = self.transits.iter().map(|&(_, t)| t).min().unwrap_or(0);
        self.scratch.clear();
        self.scratch.extend(self.transits.iter().map(|&(_, t)| t - base));
        self.scratch.sort_unstable();
        let rank = ((self.scratch.len() as f64 * COVERED).ceil() as usize).clamp(1, self.scratch.len());
        self.scratch[rank - 1].max(0) as u64 + SLACK_US
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

    /// Plays 20 ms chunks that arrive `late(i)` µs after their due time, pulling 10 ms every 10 ms;
    /// returns the underruns from `from` on and the target at the end.
    fn play(jb: &mut JitterBuffer, chunks: u64, from: u64, late: impl Fn(u64) -> u64) -> (u64, f64) {
        let mut arrivals: Vec<(u64, u64)> = (0..chunks).map(|i| (i * 20_000 + late(i), i)).collect();
        arrivals.sort();
        let mut next = arrivals.into_iter().peekable();
        let mut underruns_before = 0;
        let mut out = vec![0.0; 480];
        for tick in 0..chunks * 2 {
            let now = tick * 10_000;
            while let Some(&(at, i)) = next.peek() {
                if at > now {
                    break;
                }
                jb.push_arrived(&sine(960, i as usize * 960), at);
                next.next();
            }
            if tick == from * 2 {
                underruns_before = jb.stats().underruns;
            }
            jb.pull(&mut out);
        }
        (jb.stats().underruns - underruns_before, jb.target_ms())
    }

    #[test]
    fn the_target_grows_under_jitter_and_then_plays_without_gaps() {
        let mut jb = JitterBuffer::new(48_000, 40);
        // Up to 90 ms late, spread over the range: more than the 40 ms the buffer starts with.
        let (underruns, target) = play(&mut jb, 500, 100, |i| (i * 7919 % 10) * 10_000);
        assert_eq!(underruns, 0, "after the first seconds, the target covers the jitter");
        assert!((100.0..=130.0).contains(&target), "target {target} ms ≈ 90 ms lateness + 20 ms slack");
    }

    #[test]
    fn a_calm_path_keeps_the_configured_depth() {
        let mut jb = JitterBuffer::new(48_000, 40);
        let (underruns, target) = play(&mut jb, 300, 5, |i| i % 2 * 3_000);
        assert_eq!((underruns, target), (0, 40.0));
    }

    #[test]
    fn the_target_shrinks_back_when_the_jitter_ends() {
        let mut jb = JitterBuffer::new(48_000, 40);
        // 5 s of jitter up to 150 ms, then 25 s calm.
        let (_, target) = play(&mut jb, 1500, 0, |i| if i < 250 { (i * 7919 % 16) * 10_000 } else { 0 });
        assert_eq!(target, 40.0, "back to the configured depth");
        let mut jb = JitterBuffer::new(48_000, 40);
        let (_, target) = play(&mut jb, 250, 0, |i| (i * 7919 % 16) * 10_000);
        assert!(target >= 160.0, "under the jitter: {target} ms");
    }

    #[test]
    fn an_outage_does_not_read_as_lateness() {
        let mut jb = JitterBuffer::new(48_000, 40);
        // 2 s of audio, nothing for 3 s (the chunks of the outage never come), then 3 s of audio.
        for i in (0..400u64).filter(|i| !(100..250).contains(i)) {
            jb.push_arrived(&sine(960, 0), i * 20_000);
        }
        assert_eq!(jb.target_ms(), 40.0, "the 3 s without audio is not 3 s of jitter");
    }
}
