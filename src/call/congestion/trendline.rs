//! Whether the path's queue is growing, from the delay between packet groups: libwebrtc's
//! trendline filter and its overuse detector (`trendline_estimator.cc`), in the shape of a patch
//! beside rtc-interceptor's `SlopeEstimator`, fed by the crate's `ArrivalGroupAccumulator`.
//!
//! Why not the crate's `SlopeEstimator` and `OveruseDetector`: they follow the GCC draft, which
//! compares the Kalman estimate of one group's delay gradient (ms per group) with a 12.5 ms
//! threshold. Groups come every 5-30 ms, so a queue has to grow by about half the sending time
//! before that fires: through the link emulator it never did (`slope_usage=Normal` on every
//! decrease in session 11's logs, the narrow link's queue reaching 150 ms), and
//! `tests::the_crates_detector_misses_a_fifth_of_overuse` shows it on a simulated path. libwebrtc
//! reads the slope of the accumulated delay over the last 20 groups and scales it by the number of
//! deltas seen (up to 60) and a gain of 4 before the same kind of threshold, so 5 % of overuse
//! shows within a few hundred milliseconds.

use rtc::interceptor::{InterGroupDelay, Usage};
use std::collections::VecDeque;
use std::time::Instant;

/// Groups the slope is fitted over (libwebrtc's `kDefaultTrendlineWindowSize`).
const WINDOW: usize = 20;
/// The accumulated delay is smoothed by this much before the fit (`kDefaultTrendlineSmoothingCoeff`).
const SMOOTHING: f64 = 0.9;
/// The fitted slope is scaled by this (`kDefaultTrendlineThresholdGain`)...
const GAIN: f64 = 4.0;
/// ...and by the number of deltas seen, up to this many (`kMinNumDeltas`): the first groups of a
/// call say little.
const MAX_DELTAS: f64 = 60.0;
/// The threshold starts here (ms of scaled slope) and adapts to the path's noise within these bounds.
const THRESHOLD_START: f64 = 12.5;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
/// It follows the scaled slope up at this gain and down at this one (per ms, libwebrtc's `k_up`
/// and `k_down`): down faster, so a noisy stretch does not leave the detector deaf.
const THRESHOLD_UP: f64 = 0.0087;
const THRESHOLD_DOWN: f64 = 0.039;
/// A slope this far past the threshold is a real change, not noise: the threshold does not follow it
/// (`kMaxAdaptOffsetMs`).
const THRESHOLD_MAX_ADAPT: f64 = 15.0;
/// Over the threshold for this long (of sending time) and more than once is overuse
/// (`kOverUsingTimeThreshold`).
const OVERUSE_TIME_MS: f64 = 10.0;

/// The trendline filter and its detector.
#[derive(Debug)]
pub struct Trendline {
    /// (arrival ms, smoothed accumulated delay ms) of the last [`WINDOW`] groups.
    history: VecDeque<(f64, f64)>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas: f64,
    epoch: Option<Instant>,
    previous_at: Option<Instant>,
    threshold: f64,
    last_threshold_update_ms: Option<f64>,
    /// Sending time over the threshold so far, ms, and how many groups.
    over_ms: Option<f64>,
    over_count: u32,
    previous_trend: f64,
    usage: Usage,
    /// The last scaled slope, for logs.
    modified: f64,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            history: VecDeque::with_capacity(WINDOW + 1),
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas: 0.0,
            epoch: None,
            previous_at: None,
            threshold: THRESHOLD_START,
            last_threshold_update_ms: None,
            over_ms: None,
            over_count: 0,
            previous_trend: 0.0,
            usage: Usage::Normal,
            modified: 0.0,
        }
    }
}

impl Trendline {
    /// A detector that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the last group said.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The last scaled slope and the threshold it was held against, ms.
    pub fn modified_trend(&self) -> (f64, f64) {
        (self.modified, self.threshold)
    }

    /// Takes the delay between two groups; says whether the queue is growing.
    pub fn update(&mut self, delay: &InterGroupDelay) -> Usage {
        let epoch = *self.epoch.get_or_insert(delay.at);
        let sent_ms = delay.at.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
        let send_delta_ms =
            self.previous_at.map_or(0.0, |p| delay.at.saturating_duration_since(p).as_secs_f64() * 1000.0);
        self.previous_at = Some(delay.at);
        self.deltas = (self.deltas + 1.0).min(1000.0);
        self.accumulated_ms += delay.delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        // The group's arrival, up to a constant: its sending plus the delay accumulated since the
        // first (libwebrtc fits against arrival time).
        let arrival_ms = sent_ms + self.accumulated_ms;
        self.history.push_back((arrival_ms, self.smoothed_ms));
        if self.history.len() > WINDOW {
            self.history.pop_front();
        }
        let trend = if self.history.len() == WINDOW {
            slope(&self.history).unwrap_or(self.previous_trend)
        } else {
            self.previous_trend
        };
        self.detect(trend, send_delta_ms, arrival_ms);
        self.usage
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        let modified = self.deltas.min(MAX_DELTAS) * trend * GAIN;
        self.modified = modified;
        if modified > self.threshold {
            let over = match self.over_ms {
                // The first group over counts half its interval (libwebrtc's guess at when it began).
                None => send_delta_ms / 2.0,
                Some(ms) => ms + send_delta_ms,
            };
            self.over_ms = Some(over);
            self.over_count += 1;
            if over > OVERUSE_TIME_MS && self.over_count > 1 && trend >= self.previous_trend {
                self.over_ms = Some(0.0);
                self.over_count = 0;
                self.usage = Usage::Over;
            }
        } else {
            self.over_ms = None;
            self.over_count = 0;
            self.usage = if modified < -self.threshold { Usage::Under } else { Usage::Normal };
        }
        self.previous_trend = trend;
        self.adapt_threshold(modified, now_ms);
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_update_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold + THRESHOLD_MAX_ADAPT {
            // A spike: leave the threshold where it is (and the clock, as libwebrtc does).
            self.last_threshold_update_ms = Some(now_ms);
            return;
        }
        let gain = if modified.abs() < self.threshold { THRESHOLD_DOWN } else { THRESHOLD_UP };
        let elapsed = (now_ms - last).clamp(0.0, 100.0);
        self.threshold = (self.threshold + gain * (modified.abs() - self.threshold) * elapsed)
            .clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        self.last_threshold_update_ms = Some(now_ms);
    }
}

/// The least-squares slope of y over x, if x varies.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points
        .iter()
        .fold((0.0, 0.0), |(num, den), &(x, y)| (num + (x - mx) * (y - my), den + (x - mx) * (x - mx)));
    (den != 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{ArrivalGroupAccumulator, OveruseDetector, PacketReport, SlopeEstimator};
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;
    use std::time::Duration;

    /// 1200-byte packets over a link that serves one every `service_ms` (a queue without limit):
    /// `phases` of (count, sending gap ms), one after the other; their reports, in order, with
    /// `jitter_ms` of noise (a fixed, repeatable pattern) added to each arrival on top of the queue.
    fn reports(phases: &[(usize, f64)], service_ms: f64, jitter_ms: f64) -> Vec<PacketReport> {
        let epoch = Instant::now();
        let (mut sent, mut busy_until, mut last_arrival) = (0.0_f64, 0.0_f64, 0.0_f64);
        let gaps = phases.iter().flat_map(|&(count, gap)| std::iter::repeat_n(gap, count));
        gaps.enumerate()
            .map(|(i, gap)| {
                busy_until = busy_until.max(sent) + service_ms;
                // A pseudo-random pattern in [-1, 1): the same on every run.
                let noise = ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0 - 1.0;
                // Jitter without reordering: a packet never arrives before the one sent before it.
                let arrival = (busy_until + 25.0 + jitter_ms * noise).max(last_arrival);
                last_arrival = arrival;
                let report = PacketReport {
                    ssrc: 1,
                    id: i as u64,
                    rtp_sequence_number: i as u16,
                    is_twcc: true,
                    twcc_sequence_number: i as u16,
                    size: 1200,
                    arrived: true,
                    departure: epoch + Duration::from_secs_f64(sent / 1000.0),
                    arrival: Some(Duration::from_secs_f64(arrival / 1000.0)),
                    ecn: Ecn::default(),
                };
                sent += gap;
                report
            })
            .collect()
    }

    /// What the trendline said at each group.
    fn usages(reports: &[PacketReport]) -> Vec<Usage> {
        let mut groups = ArrivalGroupAccumulator::default();
        let mut trendline = Trendline::new();
        reports.iter().filter_map(|r| groups.accumulate(r)).map(|d| trendline.update(&d)).collect()
    }

    /// The first report at which each detector said overuse, if any.
    fn first_overuse(reports: &[PacketReport]) -> (Option<usize>, Option<usize>) {
        let mut groups = ArrivalGroupAccumulator::default();
        let mut trendline = Trendline::new();
        let mut slope = SlopeEstimator::new();
        let mut detector = OveruseDetector::new();
        let (mut ours, mut crates) = (None, None);
        for (i, r) in reports.iter().enumerate() {
            if let Some(delay) = groups.accumulate(r) {
                if trendline.update(&delay) == Usage::Over {
                    ours.get_or_insert(i);
                }
            }
            if let Some(trend) = slope.accumulate(r) {
                if detector.update(trend.at, trend.estimate_ms) == Usage::Over {
                    crates.get_or_insert(i);
                }
            }
        }
        (ours, crates)
    }

    #[test]
    fn the_crates_detector_misses_a_fifth_of_overuse() {
        // 1 Mbit/s into 833 kbit/s for 3 s: the queue grows 200 ms a second, 600 ms in all.
        let sent = reports(&[(312, 9.6)], 11.52, 0.0);
        let (ours, crates) = first_overuse(&sent);
        assert_eq!(crates, None, "the crate's GCC-draft detector");
        // Within the window's 20 groups and a few more (~250 ms of sending; 50 ms of queue).
        let at = ours.expect("the trendline says overuse");
        assert!(at < 30, "after {at} packets");
    }

    #[test]
    fn five_percent_of_overuse_shows_within_half_a_second() {
        let sent = reports(&[(400, 9.6)], 10.08, 0.0);
        let at = first_overuse(&sent).0.expect("the trendline says overuse");
        // 37 packets here: 360 ms of sending, 17 ms of queue.
        assert!(at < 50, "after {at} packets");
    }

    #[test]
    fn a_path_with_room_and_jitter_is_not_overuse() {
        // 1 Mbit/s over 2 Mbit/s, ±10 ms of jitter on every packet, for 10 s.
        let sent = reports(&[(1040, 9.6)], 4.8, 10.0);
        assert_eq!(first_overuse(&sent).0, None);
    }

    #[test]
    fn overuse_needs_two_groups_over_the_threshold_in_one_run() {
        let mut t = Trendline::new();
        t.deltas = MAX_DELTAS;
        // One group over (0.1 × 60 × 4 = 24 against 12.5), then one back under, then one over again:
        // two groups over, but not in one run, so not overuse (libwebrtc resets its count).
        t.detect(0.1, 30.0, 0.0);
        t.detect(0.0, 30.0, 30.0);
        t.detect(0.1, 30.0, 60.0);
        assert_eq!(t.usage(), Usage::Normal);
        t.detect(0.1, 30.0, 90.0);
        assert_eq!(t.usage(), Usage::Over);
    }

    #[test]
    fn a_draining_queue_is_underuse() {
        // 2 s of 1 Mbit/s into 833 kbit/s (380 ms of queue), then half the link's rate: it drains
        // in ~0.8 s.
        let u = usages(&reports(&[(200, 9.6), (100, 23.04)], 11.52, 0.0));
        assert!(u[..200].contains(&Usage::Over));
        assert!(u[220..260].contains(&Usage::Under), "{:?}", &u[200..]);
    }
}
