//! When to show each video frame: the receive side's playout clock.
//!
//! Frames reach a receiver unevenly: the path's jitter, a packet repaired by retransmission a round
//! trip later, and the frames held back behind it. Shown as they come, the picture stutters — a
//! freeze while a frame is repaired, then a burst. Shown at *capture time + a steady offset*, it
//! plays at the sender's pace. The offset is the smallest transit seen lately (the path's base delay,
//! so clock offset and drift cancel out) plus a target that covers nearly every frame's extra delay
//! seen lately: the 95th percentile over the last 10 s, repaired frames included, so on a clean path it
//! stays near zero and on a lossy one it grows towards a repair round. Not further: a frame later than
//! the target by less than ~115 ms shows as a hiccup, not a freeze (over 150 ms between pictures), so
//! covering the last few percent — a second repair round, a sender's stall, the first keyframe
//! squeezing through a narrow link — would cost every frame their delay to spare a few a short wait.
//! It grows at once when
//! frames come later than it and shrinks back slowly (30 ms per second, a 3 % speed-up nobody sees)
//! when the path calms; it never passes 400 ms, since past that a freeze is better than the lag.
//!
//! Pure: times are microseconds on the caller's monotonic clock, passed in.

use std::collections::VecDeque;

/// How far back the base delay and the target look.
const WINDOW_US: u64 = 10_000_000;
/// The share of recent frames the target covers.
const COVERED: f64 = 0.95;
/// The target never passes this: a longer wait costs more than the freeze it avoids.
const MAX_TARGET_US: u64 = 400_000;
/// How fast the target comes back down when the path calms, per microsecond passed.
const SHRINK_PER_US: f64 = 0.03;
/// An RTP timestamp that jumps this far (10 s at 90 kHz) belongs to a new stream (the sender
/// restarted its clock): what was learnt of the old one is dropped.
const TIMESTAMP_JUMP: i64 = 900_000;

/// The playout clock of one video stream.
#[derive(Debug, Default)]
pub struct PlayoutClock {
    /// The last RTP timestamp seen and its unwrapped value (90 kHz ticks).
    last_ts: Option<(u32, i64)>,
    /// Recent frames: arrival, and transit (arrival − capture, on the two unrelated clocks).
    transits: VecDeque<(u64, i64)>,
    /// The current target beyond the base delay.
    target_us: u64,
    /// When the target was last updated.
    updated_us: u64,
    /// Scratch for the percentile (kept to spare an allocation per frame).
    scratch: Vec<i64>,
}

impl PlayoutClock {
    /// A clock that has seen nothing: its first frame plays at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame with RTP timestamp `rtp_ts` (90 kHz) became whole at `arrived_us`: returns when to
    /// show it. A time before `arrived_us` means the frame is late and is shown at once; a frame is
    /// never held past `arrived_us` + 400 ms.
    pub fn frame(&mut self, rtp_ts: u32, arrived_us: u64) -> u64 {
        let ts = self.unwrap(rtp_ts);
        // 90 kHz ticks to microseconds.
        let captured_us = ts * 100 / 9;
        let transit = arrived_us as i64 - captured_us;
        while self.transits.front().is_some_and(|&(at, _)| at + WINDOW_US < arrived_us) {
            self.transits.pop_front();
        }
        self.transits.push_back((arrived_us, transit));
        let base = self.transits.iter().map(|&(_, t)| t).min().unwrap_or(transit);
        self.scratch.clear();
        self.scratch.extend(self.transits.iter().map(|&(_, t)| t - base));
        self.scratch.sort_unstable();
        let rank = ((self.scratch.len() as f64 * COVERED).ceil() as usize).clamp(1, self.scratch.len());
        let wanted = (self.scratch[rank - 1].max(0) as u64).min(MAX_TARGET_US);
        let elapsed = arrived_us.saturating_sub(self.updated_us);
        self.updated_us = arrived_us;
        self.target_us = if wanted >= self.target_us {
            wanted
        } else {
            let shrink = (elapsed as f64 * SHRINK_PER_US) as u64;
            self.target_us.saturating_sub(shrink).max(wanted)
        };
        let show = (captured_us + base + self.target_us as i64).max(0) as u64;
        show.min(arrived_us + MAX_TARGET_US)
    }

    /// The delay the clock adds beyond the path's base delay now, µs.
    pub fn target_us(&self) -> u64 {
        self.target_us
    }

    /// Unwraps a 32-bit timestamp against the last one; a jump starts the stream over.
    fn unwrap(&mut self, rtp_ts: u32) -> i64 {
        let ts = match self.last_ts {
            None => 0,
            Some((last, ext)) => {
                let step = i64::from(rtp_ts.wrapping_sub(last) as i32);
                if step.abs() > TIMESTAMP_JUMP {
                    self.transits.clear();
                    self.target_us = 0;
                    0
                } else {
                    ext + step
                }
            }
        };
        self.last_ts = Some((rtp_ts, ts));
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 fps: 3,000 ticks and 33,333 µs a frame.
    const TICKS: u32 = 3_000;
    const FRAME_US: u64 = 33_333;

    /// Frame `i`'s due time at 30 fps, exact (as the 90 kHz clock has it).
    fn due(i: u64) -> u64 {
        i * 100_000 / 3
    }

    #[test]
    fn a_steady_stream_plays_as_it_comes() {
        let mut clock = PlayoutClock::new();
        for i in 0..300u64 {
            let arrived = 5_000_000 + due(i);
            let show = clock.frame(7 + i as u32 * TICKS, arrived);
            assert!(show.abs_diff(arrived) <= 1, "frame {i}: shown {show}, arrived {arrived}");
        }
        assert_eq!(clock.target_us(), 0);
    }

    #[test]
    fn jittery_frames_are_shown_at_the_senders_pace() {
        let mut clock = PlayoutClock::new();
        let mut shows = Vec::new();
        for i in 0..300u64 {
            // Up to 60 ms late, in a pattern that repeats every 7 frames.
            let jitter = (i * 37 % 7) * 10_000;
            shows.push(clock.frame(i as u32 * TICKS, 1_000_000 + due(i) + jitter));
        }
        // Once the clock has seen the worst, frames are evenly spaced again.
        let gaps: Vec<u64> = shows[20..].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g.abs_diff(FRAME_US) <= 2), "gaps {gaps:?}");
        assert!((59_000..=61_000).contains(&clock.target_us()), "target {}", clock.target_us());
    }

    #[test]
    fn a_repaired_frame_is_waited_for_once_repairs_are_common() {
        let mut clock = PlayoutClock::new();
        let mut late_after_warmup = 0;
        for i in 0..600u64 {
            // Every 10th frame waits a 120 ms repair round; the frames queued behind it follow at once.
            let arrived = 1_000_000 + due(i);
            let repaired = i % 10 == 0;
            let arrived = if repaired { arrived + 120_000 } else { arrived };
            let show = clock.frame(i as u32 * TICKS, arrived);
            if i > 40 && show < arrived {
                late_after_warmup += 1;
            }
        }
        assert_eq!(late_after_warmup, 0, "10 % of frames repaired: the target covers them");
        assert!((119_000..=121_000).contains(&clock.target_us()));
    }

    #[test]
    fn the_target_shrinks_back_slowly_when_the_path_calms() {
        let mut clock = PlayoutClock::new();
        let mut play = |frames: std::ops::Range<u64>| {
            for i in frames {
                // For 5 s, one frame in 10 is 200 ms late (10 %: more than the 5 % left uncovered).
                let late = if i < 150 && i % 10 == 5 { 200_000 } else { 0 };
                clock.frame(i as u32 * TICKS, 1_000_000 + due(i) + late);
            }
            clock.target_us()
        };
        assert!(play(0..150) >= 199_000);
        // The first late frame leaves the 10 s window at 10.2 s: 14 of 300 (under 5 %) are left, and
        // from there the target comes down 30 ms a second.
        let at_13_5_s = play(150..405);
        assert!((80_000..=120_000).contains(&at_13_5_s), "target {at_13_5_s} at 13.5 s");
        assert_eq!(play(405..615), 0, "at 20.5 s, back to no delay");
    }

    /// A few frames late in a hundred are left uncovered: a frame that late is better shown late
    /// once than every frame held for it.
    #[test]
    fn a_few_late_frames_do_not_hold_the_others() {
        let mut clock = PlayoutClock::new();
        for i in 0..400u64 {
            let late = if i % 50 == 3 { 300_000 } else { 0 };
            clock.frame(i as u32 * TICKS, 1_000_000 + due(i) + late);
        }
        assert_eq!(clock.target_us(), 0);
    }

    #[test]
    fn the_wait_is_capped_and_a_new_stream_starts_over() {
        let mut clock = PlayoutClock::new();
        for i in 0..11u64 {
            clock.frame(i as u32 * TICKS, 1_000_000 + due(i) + if i == 10 { 2_000_000 } else { 0 });
        }
        assert_eq!(clock.target_us(), MAX_TARGET_US, "2 s late, in the first frames: covered, to the cap");
        let arrived = 9_000_000;
        assert!(clock.frame(30 * TICKS, arrived) <= arrived + MAX_TARGET_US);
        // The sender restarted: its timestamps jump; the old stream's delays are forgotten.
        assert_eq!(clock.frame(u32::MAX / 2, arrived + 50_000), arrived + 50_000);
        assert_eq!(clock.target_us(), 0);
    }

    #[test]
    fn timestamps_wrap_around() {
        let mut clock = PlayoutClock::new();
        let start = u32::MAX - 10 * TICKS;
        for i in 0..40u64 {
            let arrived = 2_000_000 + due(i);
            let show = clock.frame(start.wrapping_add(i as u32 * TICKS), arrived);
            assert!(show.abs_diff(arrived) <= 1, "frame {i} across the wrap");
        }
    }
}
