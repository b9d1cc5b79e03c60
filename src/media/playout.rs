//! When to show each video frame: the receive side's playout clock.
//!
//! Frames reach a receiver unevenly: the path's jitter, a packet repaired by retransmission a round
//! trip later, and the frames held back behind it. Shown as they come, the picture stutters — a
//! freeze while a frame is repaired, then a burst. Shown at *capture time + a steady offset*, it
//! plays at the sender's pace. The offset is the path's delay *level* (the smallest transit of the
//! last second, so clock offset and drift cancel out, and a standing queue on the path moves it)
//! plus a target that covers nearly every frame's extra delay over its level seen lately: the 95th
//! percentile over the last 10 s, repaired frames included, so on a clean path it stays near zero
//! and on a lossy one it grows towards a repair round. Not further: a frame later than the target by
//! less than ~115 ms shows as a hiccup, not a freeze (over 150 ms between pictures), so covering the
//! last few percent — a second repair round, a sender's stall, the first keyframe squeezing through
//! a narrow link — would cost every frame their delay to spare a few a short wait.
//!
//! A delay that lasts is the path's, not jitter. A congested link's queue raises every frame's
//! transit by hundreds of ms for seconds: measured against the smallest transit of 10 s, that held
//! the target at its cap during a deep drop and for ~20 s after the link came back (glass-to-glass
//! p50 ~460 ms). So a frame's extra delay is taken over the highest level confirmed within a second
//! after it: a repaired frame stands out of the frames around it, a frame of a risen level does not
//! once the level is confirmed, and a frame before a fall had its own level. When the level rises,
//! the target gives way by as much, so the offset (level + target) never jumps ahead of a frame
//! because the path's delay moved.
//!
//! The target grows at once when frames come later than it and shrinks back slowly (30 ms per
//! second, a 3 % speed-up nobody sees) when the path calms; it never passes 400 ms, since past that
//! a freeze is better than the lag.
//!
//! Pure: times are microseconds on the caller's monotonic clock, passed in.

use std::collections::VecDeque;

/// How far back the target looks.
const WINDOW_US: u64 = 10_000_000;
/// The path's delay level is the smallest transit over this much of arrivals: long enough to hold
/// a frame that was not delayed on a jittery path (30 of them at 30 fps), short enough to follow a
/// standing queue within a second.
const LEVEL_US: u64 = 1_000_000;
/// The share of recent frames the target covers.
const COVERED: f64 = 0.95;
/// The target never passes this: a longer wait costs more than the freeze it avoids.
const MAX_TARGET_US: u64 = 400_000;
/// How fast the target comes back down when the path calms, per microsecond passed.
const SHRINK_PER_US: f64 = 0.03;
/// An RTP timestamp that jumps this far (10 s at 90 kHz) belongs to a new stream (the sender
/// restarted its clock): what was learnt of the old one is dropped.
const TIMESTAMP_JUMP: i64 = 900_000;

/// One frame seen: when it became whole, and its transit (arrival − capture, on the two unrelated
/// clocks), µs.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: u64,
    transit: i64,
}

/// The playout clock of one video stream.
#[derive(Debug, Default)]
pub struct PlayoutClock {
    /// The last RTP timestamp seen and its unwrapped value (90 kHz ticks).
    last_ts: Option<(u32, i64)>,
    /// Frames of the last [`WINDOW_US`] + [`LEVEL_US`], oldest first (the oldest ones only give
    /// the level for those after them).
    samples: VecDeque<Sample>,
    /// The level at the last frame.
    level: Option<i64>,
    /// The current target beyond the level.
    target_us: u64,
    /// When the target was last updated.
    updated_us: u64,
    /// Scratch (kept to spare allocations per frame): each sample's level, then its extra delay.
    levels: Vec<i64>,
    extras: Vec<i64>,
    window: VecDeque<usize>,
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
        while self.samples.front().is_some_and(|s| s.at + WINDOW_US + LEVEL_US < arrived_us) {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at: arrived_us, transit });
        self.measure_levels();
        let level = self.levels.last().copied().unwrap_or(transit);
        let wanted = self.wanted(arrived_us);

        let elapsed = arrived_us.saturating_sub(self.updated_us);
        self.updated_us = arrived_us;
        // The level rose (a standing queue): the target gives way by as much, so the frames of the
        // new level keep their offset instead of being held back by the rise.
        if let Some(rise) = self.level.map(|old| level - old).filter(|&r| r > 0) {
            self.target_us = self.target_us.saturating_sub(rise as u64);
        }
        self.level = Some(level);
        self.target_us = if wanted >= self.target_us {
            wanted
        } else {
            let shrink = (elapsed as f64 * SHRINK_PER_US) as u64;
            self.target_us.saturating_sub(shrink).max(wanted)
        };
        let show = (captured_us + level + self.target_us as i64).max(0) as u64;
        show.min(arrived_us + MAX_TARGET_US)
    }

    /// The delay the clock adds beyond the path's delay level now, µs.
    pub fn target_us(&self) -> u64 {
        self.target_us
    }

    /// Each sample's level: the smallest transit over the [`LEVEL_US`] of arrivals ending at it
    /// (a sliding minimum, O(n)).
    fn measure_levels(&mut self) {
        self.levels.clear();
        self.window.clear();
        for (i, s) in self.samples.iter().enumerate() {
            while self.window.back().is_some_and(|&j| self.samples[j].transit >= s.transit) {
                self.window.pop_back();
            }
            self.window.push_back(i);
            while self.window.front().is_some_and(|&j| self.samples[j].at + LEVEL_US < s.at) {
                self.window.pop_front();
            }
            self.levels.push(self.window.front().map_or(s.transit, |&j| self.samples[j].transit));
        }
    }

    /// The extra delay the frames of the last [`WINDOW_US`] had over the highest level confirmed
    /// within [`LEVEL_US`] after each, at the share [`COVERED`], capped.
    fn wanted(&mut self, now_us: u64) -> u64 {
        self.extras.clear();
        self.window.clear();
        // From the newest back: a sliding maximum of the levels of the frames that followed each
        // one within a second (its own included).
        for i in (0..self.samples.len()).rev() {
            let s = self.samples[i];
            while self.window.back().is_some_and(|&j| self.levels[j] <= self.levels[i]) {
                self.window.pop_back();
            }
            self.window.push_back(i);
            while self.window.front().is_some_and(|&j| self.samples[j].at > s.at + LEVEL_US) {
                self.window.pop_front();
            }
            if s.at + WINDOW_US < now_us {
                break;
            }
            let confirmed = self.window.front().map_or(self.levels[i], |&j| self.levels[j]);
            self.extras.push(s.transit - confirmed);
        }
        if self.extras.is_empty() {
            return 0;
        }
        self.extras.sort_unstable();
        let rank = ((self.extras.len() as f64 * COVERED).ceil() as usize).clamp(1, self.extras.len());
        (self.extras[rank - 1].max(0) as u64).min(MAX_TARGET_US)
    }

    /// Unwraps a 32-bit timestamp against the last one; a jump starts the stream over.
    fn unwrap(&mut self, rtp_ts: u32) -> i64 {
        let ts = match self.last_ts {
            None => 0,
            Some((last, ext)) => {
                let step = i64::from(rtp_ts.wrapping_sub(last) as i32);
                if step.abs() > TIMESTAMP_JUMP {
                    self.samples.clear();
                    self.level = None;
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
            clock.frame(i as u32 * TICKS, 1_000_000 + due(i) + if i == 10 { 800_000 } else { 0 });
        }
        assert_eq!(clock.target_us(), MAX_TARGET_US, "800 ms late, in the first frames: covered, to the cap");
        let arrived = 9_000_000;
        assert!(clock.frame(30 * TICKS, arrived) <= arrived + MAX_TARGET_US);
        // The sender restarted: its timestamps jump; the old stream's delays are forgotten.
        assert_eq!(clock.frame(u32::MAX / 2, arrived + 50_000), arrived + 50_000);
        assert_eq!(clock.target_us(), 0);
    }

    /// A congested link: 300 ms of queue builds at once and stands for 8 s, then drains at once.
    fn standing_queue(i: u64) -> u64 {
        if (300..540).contains(&i) {
            300_000
        } else {
            0
        }
    }

    #[test]
    fn a_standing_queue_is_the_paths_delay_not_jitter() {
        let mut clock = PlayoutClock::new();
        let mut held = Vec::new();
        for i in 0..900u64 {
            let arrived = 1_000_000 + due(i) + standing_queue(i);
            let show = clock.frame(i as u32 * TICKS, arrived);
            held.push((show.saturating_sub(arrived), clock.target_us()));
        }
        // Within a second of the queue forming, frames are shown as they come again.
        for (i, &(wait, target)) in held.iter().enumerate().take(540).skip(335) {
            assert!(
                wait <= 1_000 && target <= 1_000,
                "frame {i} in the queue: held {wait} µs, target {target}"
            );
        }
        // And at once when it drains: no wait left over from the queue.
        for (i, &(wait, target)) in held.iter().enumerate().skip(540) {
            assert!(
                wait <= 1_000 && target <= 1_000,
                "frame {i} after the queue: held {wait} µs, target {target}"
            );
        }
    }

    #[test]
    fn a_queue_that_grows_steadily_is_not_jitter() {
        let mut clock = PlayoutClock::new();
        for i in 0..600u64 {
            // From 5 s on, each frame 3 ms later than the one before for 3 s (a queue growing 90 ms
            // a second, to 270 ms), then standing.
            let queue = i.saturating_sub(150).min(90) * 3_000;
            clock.frame(i as u32 * TICKS, 1_000_000 + due(i) + queue);
            // While it grows, the last second's frames are not confirmed yet and count as late by
            // up to 90 ms (a sixth of them at the 95 % rank): a fraction of the queue, for a while.
            let limit = if (150..285).contains(&i) { 60_000 } else { 5_000 };
            assert!(clock.target_us() <= limit, "frame {i}: target {}", clock.target_us());
        }
    }

    #[test]
    fn jitter_on_top_of_a_standing_queue_is_still_covered() {
        let mut clock = PlayoutClock::new();
        let mut late_after_warmup = 0;
        for i in 0..900u64 {
            let jitter = (i * 37 % 7) * 10_000;
            let arrived = 1_000_000 + due(i) + standing_queue(i) + jitter;
            let show = clock.frame(i as u32 * TICKS, arrived);
            // Settled (a second after each change of the queue): no frame shown late.
            let settled = (40..300).contains(&i) || (340..540).contains(&i) || i >= 580;
            late_after_warmup += u32::from(settled && show < arrived);
        }
        assert_eq!(late_after_warmup, 0);
        assert!((59_000..=61_000).contains(&clock.target_us()), "target {}", clock.target_us());
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
