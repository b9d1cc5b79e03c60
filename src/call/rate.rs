//! Loss-based sending bitrate: the far side's receiver reports say what share of our video packets was
//! lost; the encoder's target follows, down quickly under heavy loss, back up slowly when the path is
//! clean (the shape of the loss-based half of Google's congestion control).

use std::sync::atomic::{AtomicU64, Ordering};

/// The encoder's target bitrate, steered by reported loss.
#[derive(Clone, Debug)]
pub struct BitrateController {
    min_bps: u32,
    max_bps: u32,
    current_bps: u32,
}

/// The lowest target at any picture size.
pub const MIN_BPS: u32 = 50_000;

impl BitrateController {
    /// Starts at `max_bps` (the encoder's own choice for the full picture); never goes below a
    /// 32nd of it (a quarter-size picture at half its rate, see [`picture_scale`]) nor [`MIN_BPS`].
    pub fn new(max_bps: u32) -> Self {
        Self { min_bps: (max_bps / 32).max(MIN_BPS).min(max_bps), max_bps, current_bps: max_bps }
    }

    /// The target for the full picture on a clean path.
    pub fn max_bps(&self) -> u32 {
        self.max_bps
    }

    /// The target now.
    pub fn target_bps(&self) -> u32 {
        self.current_bps
    }

    /// Takes one receiver report's loss fraction (0..=1) and what we actually sent since the last
    /// report (bit/s, when known), and returns the new target.
    pub fn on_loss_report(&mut self, fraction_lost: f64, sent_bps: Option<u32>) -> u32 {
        let loss = fraction_lost.clamp(0.0, 1.0);
        let next = if loss > 0.10 {
            // Heavy loss: the path can't carry what we send; back off in proportion, from what was
            // really sent: a simple picture sends far below its target, and backing off from the
            // target alone would take many reports before the encoder's output changed at all.
            let base = sent_bps.filter(|&s| s > 0).map_or(self.current_bps, |s| s.min(self.current_bps));
            base as f64 * (1.0 - 0.5 * loss)
        } else if loss < 0.02 {
            // Clean: probe upwards, 8 % a report.
            self.current_bps as f64 * 1.08 + 1_000.0
        } else {
            self.current_bps as f64 // moderate loss: NACK and FEC cope; hold
        };
        self.current_bps = (next as u32).clamp(self.min_bps, self.max_bps);
        self.current_bps
    }
}

/// The lowest frame rate a shared screen falls to before it gives up resolution.
pub const SCREEN_MIN_FPS: u32 = 5;

/// A shared screen's answer to a narrow link: `(frame rate, picture scale)` for a target of
/// `target_bps` out of `max_bps`, captured at `full_fps`, coming from scale `current`. Text must stay
/// readable, so the frame rate falls first, in proportion to the target, down to [`SCREEN_MIN_FPS`]
/// (15 → 5 fps buys a third of the rate); only below that does the picture shrink, by
/// [`picture_scale`] on the rate per frame that is left.
pub fn screen_ladder(current: usize, target_bps: u32, max_bps: u32, full_fps: u32) -> (u32, usize) {
    let full_fps = full_fps.max(SCREEN_MIN_FPS);
    let share = f64::from(target_bps) / f64::from(max_bps.max(1));
    let fps = ((f64::from(full_fps) * share).round() as u32).clamp(SCREEN_MIN_FPS, full_fps);
    let per_frame = u64::from(target_bps) * u64::from(full_fps) / u64::from(SCREEN_MIN_FPS);
    (fps, picture_scale(current, per_frame.min(u64::from(u32::MAX)) as u32, max_bps))
}

/// How much to shrink the picture (1, 2 or 4 each way) for a target of `target_bps` out of the full
/// picture's `max_bps`, coming from `current`. Below about an eighth of a picture's natural rate
/// openh264 stops following the target (it skips frames instead and its keyframes stay large), so a
/// narrow link gets a smaller picture, as browsers do. Shrinking is at once; growing back waits for
/// the target to clear the threshold by a margin, so the picture does not flap at the edge.
pub fn picture_scale(current: usize, target_bps: u32, max_bps: u32) -> usize {
    let share = f64::from(target_bps) / f64::from(max_bps.max(1));
    let shrink_to = if share < 1.0 / 16.0 {
        4
    } else if share < 0.25 {
        2
    } else {
        1
    };
    let grow_to = if share > 0.4 {
        1
    } else if share > 0.1 {
        2
    } else {
        4
    };
    if shrink_to > current {
        shrink_to
    } else {
        grow_to.min(current)
    }
}

/// The latest loss report, handed from the engine (which reads RTCP stats) to the video sender thread.
#[derive(Debug, Default)]
pub struct LossFeedback {
    /// Report count in the high half, loss in parts per million in the low half.
    report: AtomicU64,
}

impl LossFeedback {
    /// Publishes a new report.
    pub fn publish(&self, fraction_lost: f64) {
        let ppm = (fraction_lost.clamp(0.0, 1.0) * 1e6) as u64;
        let seq = (self.report.load(Ordering::Relaxed) >> 32) + 1;
        self.report.store((seq << 32) | ppm, Ordering::Relaxed);
    }

    /// The loss of a report newer than `*seen`, if there is one.
    pub fn take_new(&self, seen: &mut u64) -> Option<f64> {
        let report = self.report.load(Ordering::Relaxed);
        let seq = report >> 32;
        (seq != *seen).then(|| {
            *seen = seq;
            (report & 0xFFFF_FFFF) as f64 / 1e6
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_under_loss_and_recovers_slowly() {
        let mut c = BitrateController::new(1_000_000);
        assert_eq!(c.on_loss_report(0.0, None), 1_000_000, "never above the maximum");
        let after_loss = c.on_loss_report(0.20, None);
        assert_eq!(after_loss, 900_000);
        for _ in 0..20 {
            c.on_loss_report(0.5, None);
        }
        assert_eq!(c.target_bps(), MIN_BPS, "never below the floor");
        assert_eq!(c.on_loss_report(0.05, None), MIN_BPS, "moderate loss holds");
        let up = c.on_loss_report(0.0, None);
        assert!(up > MIN_BPS && up < MIN_BPS * 12 / 10, "recovers gradually: {up}");
    }

    #[test]
    fn backs_off_from_what_was_really_sent() {
        let mut c = BitrateController::new(2_000_000);
        // The encoder sent 300 kbit/s of a 2 Mbit/s target, and half of it was lost.
        assert_eq!(c.on_loss_report(0.5, Some(300_000)), 225_000);
        // A report with nothing sent (a paused camera) backs off from the target.
        let mut d = BitrateController::new(2_000_000);
        assert_eq!(d.on_loss_report(0.5, Some(0)), 1_500_000);
    }

    #[test]
    fn the_picture_shrinks_on_narrow_links_and_grows_back_with_a_margin() {
        let max = 3_200_000;
        assert_eq!(picture_scale(1, max, max), 1);
        assert_eq!(picture_scale(1, 900_000, max), 1, "above a quarter: full size");
        assert_eq!(picture_scale(1, 700_000, max), 2);
        assert_eq!(picture_scale(1, 150_000, max), 4);
        assert_eq!(picture_scale(2, 1_000_000, max), 2, "not back at the first step over a quarter");
        assert_eq!(picture_scale(2, 1_400_000, max), 1);
        assert_eq!(picture_scale(4, 250_000, max), 4, "a hair above a 16th stays small");
        assert_eq!(picture_scale(4, 400_000, max), 2);
        assert_eq!(picture_scale(4, 2_000_000, max), 1);
    }

    #[test]
    fn a_shared_screen_gives_up_frame_rate_before_resolution() {
        let max = 3_000_000;
        assert_eq!(screen_ladder(1, max, max, 15), (15, 1));
        assert_eq!(screen_ladder(1, max / 2, max, 15), (8, 1));
        assert_eq!(screen_ladder(1, max / 3, max, 15), (5, 1));
        // At 5 fps the full picture holds down to a twelfth of the rate (a quarter per frame)...
        assert_eq!(screen_ladder(1, max / 10, max, 15), (5, 1));
        // ...and only then shrinks.
        assert_eq!(screen_ladder(1, max / 14, max, 15), (5, 2));
        assert_eq!(screen_ladder(2, max, max, 15), (15, 1));
    }

    #[test]
    fn feedback_hands_over_each_report_once() {
        let f = LossFeedback::default();
        let mut seen = 0;
        assert_eq!(f.take_new(&mut seen), None);
        f.publish(0.125);
        assert_eq!(f.take_new(&mut seen), Some(0.125));
        assert_eq!(f.take_new(&mut seen), None);
    }
}
