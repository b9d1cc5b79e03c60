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

impl BitrateController {
    /// Starts at `max_bps` (the encoder's own choice for the picture size) and never goes below an eighth.
    pub fn new(max_bps: u32) -> Self {
        Self { min_bps: (max_bps / 8).max(100_000), max_bps, current_bps: max_bps }
    }

    /// The target now.
    pub fn target_bps(&self) -> u32 {
        self.current_bps
    }

    /// Takes one receiver report's loss fraction (0..=1) and returns the new target.
    pub fn on_loss_report(&mut self, fraction_lost: f64) -> u32 {
        let loss = fraction_lost.clamp(0.0, 1.0);
        let next = if loss > 0.10 {
            // Heavy loss: the path can't carry what we send; back off in proportion.
            self.current_bps as f64 * (1.0 - 0.5 * loss)
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
        assert_eq!(c.on_loss_report(0.0), 1_000_000, "never above the maximum");
        let after_loss = c.on_loss_report(0.20);
        assert_eq!(after_loss, 900_000);
        for _ in 0..20 {
            c.on_loss_report(0.5);
        }
        assert_eq!(c.target_bps(), 125_000, "never below an eighth");
        assert_eq!(c.on_loss_report(0.05), 125_000, "moderate loss holds");
        let up = c.on_loss_report(0.0);
        assert!(up > 125_000 && up < 140_000, "recovers gradually: {up}");
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
