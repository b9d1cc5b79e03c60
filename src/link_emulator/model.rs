//! What one direction of an emulated link does to each packet: pure (no clock, no I/O: `now` comes
//! in), and deterministic for a seed, so its unit tests replay the same losses and delays every run.
//!
//! A packet meets, in this order:
//! 1. an outage (everything in a span of time is lost),
//! 2. random loss, then Gilbert-Elliott bursty loss (lost "upstream" of the bottleneck, so a lost
//!    packet takes no room in its queue),
//! 3. the bottleneck: a rate limit with a drop-tail queue (a packet leaves it when its last bit has
//!    been sent at that rate after everything accepted before it),
//! 4. the propagation delay plus jitter; without reordering a packet never departs before the one
//!    before it (a serial link), with it, jitter alone decides.
//!
//! The settings may change over time: a schedule of steps, each replacing the settings in force from
//! its moment on (counted from when the path was made or last reconfigured).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::ops::Range;
use std::time::{Duration, Instant};

/// How much each packet's delay varies around the base delay.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Jitter {
    /// Every packet waits exactly the base delay.
    #[default]
    None,
    /// Uniform in `base ± max`.
    Uniform {
        /// The largest deviation either way.
        max: Duration,
    },
    /// Normal around the base with this standard deviation, cut at ±3σ so that a delay has a bound
    /// (a test can then say "never later than").
    Normal {
        /// One standard deviation.
        std_dev: Duration,
    },
}

/// Bursty loss: a two-state Markov chain stepped once per packet (as netem's `gemodel` does). The
/// chain stays in the bad state for 1 / `p_bad_to_good` packets on average, and spends
/// `p_good_to_bad / (p_good_to_bad + p_bad_to_good)` of the packets there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Per packet, the chance of going from good to bad.
    pub p_good_to_bad: f64,
    /// Per packet, the chance of going from bad back to good.
    pub p_bad_to_good: f64,
    /// The loss in the good state (usually 0).
    pub loss_good: f64,
    /// The loss in the bad state (1.0 for the classic Gilbert model).
    pub loss_bad: f64,
}

/// How much the bottleneck's queue holds before it drops what arrives (drop-tail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    /// At most this many bytes waiting (the packet being sent counts until its last bit is out).
    Bytes(usize),
    /// At most this long a wait at the rate: a rate-relative depth, as a router's buffer is sized.
    Time(Duration),
}

/// A bottleneck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// The rate the bottleneck sends at, in bits per second of IP packet (what the TUN device carries).
    pub bits_per_second: u64,
    /// Its queue.
    pub queue: QueueLimit,
}

/// The settings in force at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairments {
    /// The one-way propagation delay (the mean when there is jitter).
    pub delay: Duration,
    /// Its variation.
    pub jitter: Jitter,
    /// Whether jitter may reorder packets. Without it a packet departs no earlier than the one before
    /// it, as on a serial link, so the delays only ever bunch up.
    pub reorder: bool,
    /// The chance of losing each packet, independently of the others (0.0–1.0).
    pub loss: f64,
    /// Bursty loss on top of it.
    pub burst_loss: Option<GilbertElliott>,
    /// A bottleneck, if any.
    pub rate: Option<RateLimit>,
}

/// From `at` on (since the path started), these settings replace those in force.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// When, counted from the path's start.
    pub at: Duration,
    /// The settings from then on.
    pub impairments: Impairments,
}

/// One direction's whole configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathConfig {
    /// The settings from the start.
    pub impairments: Impairments,
    /// Later changes, in any order (they are sorted by time).
    pub schedule: Vec<Step>,
    /// Spans (from the path's start) in which every packet is lost, whatever the settings.
    pub outages: Vec<Range<Duration>>,
    /// Seeds the random choices (loss, jitter): the same seed and packets give the same verdicts.
    pub seed: u64,
    /// TCP packets cross with the base delay only, never lost, jittered or queued: for cases about
    /// the media path alone. The signaling WebSocket crosses the same link, and TCP through heavy
    /// loss stalls for seconds (its retransmission timer doubles on each loss: at 30 % loss each way
    /// an answer once took over 10 s), which would test the signaling instead of the case.
    pub spare_tcp: bool,
}

impl PathConfig {
    /// A path with these settings throughout.
    pub fn new(impairments: Impairments) -> PathConfig {
        PathConfig { impairments, ..PathConfig::default() }
    }

    /// Adds a step: from `at` on, `impairments` are in force.
    pub fn at(mut self, at: Duration, impairments: Impairments) -> PathConfig {
        self.schedule.push(Step { at, impairments });
        self
    }

    /// Adds an outage of `len` starting at `from`.
    pub fn outage(mut self, from: Duration, len: Duration) -> PathConfig {
        self.outages.push(from..from + len);
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> PathConfig {
        self.seed = seed;
        self
    }

    /// Lets TCP cross untouched but for the base delay (see [`PathConfig::spare_tcp`]).
    pub fn sparing_tcp(mut self) -> PathConfig {
        self.spare_tcp = true;
        self
    }

    /// Why this configuration can't be used, if it can't.
    pub fn validate(&self) -> Result<(), ConfigError> {
        std::iter::once(&self.impairments)
            .chain(self.schedule.iter().map(|s| &s.impairments))
            .try_for_each(Impairments::validate)
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A probability outside 0.0–1.0 (or NaN).
    #[error("{what} must be a probability in 0.0..=1.0, not {value}")]
    Probability {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// A rate limit of 0 bit/s would never send anything.
    #[error("a rate limit must be above 0 bit/s")]
    ZeroRate,
}

impl Impairments {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut probabilities = vec![("loss", self.loss)];
        if let Some(ge) = &self.burst_loss {
            probabilities.extend([
                ("p_good_to_bad", ge.p_good_to_bad),
                ("p_bad_to_good", ge.p_bad_to_good),
                ("loss_good", ge.loss_good),
                ("loss_bad", ge.loss_bad),
            ]);
        }
        if let Some((what, value)) = probabilities.into_iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            return Err(ConfigError::Probability { what, value });
        }
        if self.rate.is_some_and(|r| r.bits_per_second == 0) {
            return Err(ConfigError::ZeroRate);
        }
        Ok(())
    }
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Independent random loss.
    RandomLoss,
    /// The Gilbert-Elliott chain lost it.
    BurstLoss,
    /// The bottleneck's queue was full.
    QueueOverflow,
    /// It came during an outage.
    Outage,
}

/// What happens to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It reaches the far end at this time.
    Deliver(Instant),
    /// It never does.
    Drop(DropReason),
}

/// What a path has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets that came to the path.
    pub offered: u64,
    /// Their bytes.
    pub offered_bytes: u64,
    /// Packets given a delivery time.
    pub delivered: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// The bytes of those that carried TCP (the rest, on a call's link, are the calls' UDP).
    pub delivered_tcp_bytes: u64,
    /// Packets lost to random loss.
    pub random_loss: u64,
    /// Packets lost to bursty loss.
    pub burst_loss: u64,
    /// Packets dropped by a full queue.
    pub queue_overflow: u64,
    /// Packets lost to an outage.
    pub outage: u64,
    /// The bytes of every dropped packet.
    pub dropped_bytes: u64,
    /// How long the delivered packets waited in the bottleneck's queue before their first bit was
    /// sent, summed, ns: over `delivered` between two readings, the queue the link really held (the
    /// ground truth for what a congestion controller reads from its feedback).
    pub queued_ns: u64,
}

impl Counters {
    /// Every dropped packet, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.random_loss + self.burst_loss + self.queue_overflow + self.outage
    }

    fn count_drop(&mut self, reason: DropReason, len: usize) {
        let slot = match reason {
            DropReason::RandomLoss => &mut self.random_loss,
            DropReason::BurstLoss => &mut self.burst_loss,
            DropReason::QueueOverflow => &mut self.queue_overflow,
            DropReason::Outage => &mut self.outage,
        };
        *slot += 1;
        self.dropped_bytes += len as u64;
    }
}

/// One direction of the link.
#[derive(Debug)]
pub struct Path {
    config: PathConfig,
    /// The schedule's and the outages' zero.
    start: Instant,
    rng: StdRng,
    /// The Gilbert-Elliott chain's state.
    in_bad_state: bool,
    /// When the bottleneck will have sent everything it accepted (its backlog ends then).
    bottleneck_free_at: Instant,
    /// The latest departure given so far (packets without reordering depart no earlier).
    last_departure: Instant,
    counters: Counters,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

impl Path {
    /// A path whose schedule starts at `start`.
    pub fn new(config: PathConfig, start: Instant) -> Result<Path, ConfigError> {
        config.validate()?;
        let mut path = Path {
            rng: StdRng::seed_from_u64(config.seed),
            config: PathConfig::default(),
            start,
            in_bad_state: false,
            bottleneck_free_at: start,
            last_departure: start,
            counters: Counters::default(),
        };
        path.install(config, start);
        Ok(path)
    }

    /// Starts over with `config` at `now`: its schedule and outages count from `now`, its random
    /// choices from its seed, the loss chain from the good state. What was already accepted keeps its
    /// time and the bottleneck's backlog stays (it is the same queue); the counters go on.
    pub fn reconfigure(&mut self, config: PathConfig, now: Instant) -> Result<(), ConfigError> {
        config.validate()?;
        self.install(config, now);
        Ok(())
    }

    fn install(&mut self, mut config: PathConfig, now: Instant) {
        config.schedule.sort_by_key(|s| s.at);
        self.rng = StdRng::seed_from_u64(config.seed);
        self.in_bad_state = false;
        self.start = now;
        self.config = config;
    }

    /// What the path has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The settings in force at `now`.
    pub fn impairments_at(&self, now: Instant) -> &Impairments {
        let elapsed = now.saturating_duration_since(self.start);
        let started = self.config.schedule.partition_point(|s| s.at <= elapsed);
        match started.checked_sub(1) {
            Some(i) => &self.config.schedule[i].impairments,
            None => &self.config.impairments,
        }
    }

    /// Decides the fate of a packet of `len` bytes that arrives at `now`.
    pub fn on_packet(&mut self, now: Instant, len: usize) -> Verdict {
        self.on_ip_packet(now, len, false)
    }

    /// Decides the fate of an IP packet of `len` bytes that arrives at `now`; `tcp` says whether it
    /// carries TCP, which a path configured to spare it passes with the base delay only.
    pub fn on_ip_packet(&mut self, now: Instant, len: usize, tcp: bool) -> Verdict {
        self.counters.offered += 1;
        self.counters.offered_bytes += len as u64;
        let verdict = if tcp && self.config.spare_tcp {
            Verdict::Deliver(now + self.impairments_at(now).delay)
        } else {
            self.decide(now, len)
        };
        match verdict {
            Verdict::Deliver(_) => {
                self.counters.delivered += 1;
                self.counters.delivered_bytes += len as u64;
                if tcp {
                    self.counters.delivered_tcp_bytes += len as u64;
                }
            }
            Verdict::Drop(reason) => self.counters.count_drop(reason, len),
        }
        verdict
    }

    fn decide(&mut self, now: Instant, len: usize) -> Verdict {
        let elapsed = now.saturating_duration_since(self.start);
        if self.config.outages.iter().any(|o| o.contains(&elapsed)) {
            return Verdict::Drop(DropReason::Outage);
        }
        let imp = *self.impairments_at(now);
        // Draw for random loss even when it is 0 so that the random sequence does not depend on the
        // settings (a schedule step changing only the delay leaves the later losses as they were).
        if self.rng.random::<f64>() < imp.loss {
            return Verdict::Drop(DropReason::RandomLoss);
        }
        if let Some(ge) = imp.burst_loss {
            // Step the chain, then lose by the state it is in.
            let flip = if self.in_bad_state { ge.p_bad_to_good } else { ge.p_good_to_bad };
            if self.rng.random::<f64>() < flip {
                self.in_bad_state = !self.in_bad_state;
            }
            let loss = if self.in_bad_state { ge.loss_bad } else { ge.loss_good };
            if self.rng.random::<f64>() < loss {
                return Verdict::Drop(DropReason::BurstLoss);
            }
        }
        let mut sent = now;
        if let Some(rate) = imp.rate {
            let bps = u128::from(rate.bits_per_second);
            let backlog = self.bottleneck_free_at.saturating_duration_since(now);
            // The bytes still queued, at the rate now in force.
            let backlog_bytes = backlog.as_nanos() * bps / 8 / NANOS_PER_SEC;
            let limit = match rate.queue {
                QueueLimit::Bytes(b) => b as u128,
                QueueLimit::Time(t) => t.as_nanos() * bps / 8 / NANOS_PER_SEC,
            };
            if backlog_bytes + len as u128 > limit {
                return Verdict::Drop(DropReason::QueueOverflow);
            }
            // Rounded up: the link is never faster than its rate.
            let send_nanos = (len as u128 * 8 * NANOS_PER_SEC).div_ceil(bps);
            let send_time = Duration::from_nanos(u64::try_from(send_nanos).unwrap_or(u64::MAX));
            sent = self.bottleneck_free_at.max(now) + send_time;
            self.bottleneck_free_at = sent;
            self.counters.queued_ns += u64::try_from(backlog.as_nanos()).unwrap_or(u64::MAX);
        }
        let mut at = sent + self.delay_sample(&imp);
        if !imp.reorder {
            at = at.max(self.last_departure);
        }
        self.last_departure = self.last_departure.max(at);
        Verdict::Deliver(at)
    }

    fn delay_sample(&mut self, imp: &Impairments) -> Duration {
        let base = imp.delay.as_secs_f64();
        let offset = match imp.jitter {
            Jitter::None => 0.0,
            Jitter::Uniform { max } => max.as_secs_f64() * self.rng.random_range(-1.0..=1.0),
            Jitter::Normal { std_dev } => std_dev.as_secs_f64() * self.standard_normal().clamp(-3.0, 3.0),
        };
        // Jitter larger than the delay would send packets back in time: they leave at once instead.
        Duration::from_secs_f64((base + offset).max(0.0))
    }

    /// Box-Muller: a normal sample from two uniform ones (rand 0.9 has no distributions of its own).
    fn standard_normal(&mut self) -> f64 {
        // 1 - [0, 1) is (0, 1]: ln never sees 0.
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn path(config: PathConfig) -> (Path, Instant) {
        let t0 = Instant::now();
        (Path::new(config, t0).expect("valid config"), t0)
    }

    fn delivered(v: Verdict) -> Instant {
        match v {
            Verdict::Deliver(at) => at,
            Verdict::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    #[test]
    fn a_clean_path_delivers_after_exactly_the_delay() {
        let (mut p, t0) = path(PathConfig::new(Impairments { delay: ms(25), ..Default::default() }));
        for i in 0..100 {
            let now = t0 + ms(i);
            assert_eq!(delivered(p.on_packet(now, 100)), now + ms(25));
        }
        let c = p.counters();
        assert_eq!((c.offered, c.delivered, c.delivered_bytes, c.dropped()), (100, 100, 10_000, 0));
    }

    /// A path that spares TCP loses every datagram but passes each TCP packet after the base delay.
    #[test]
    fn a_path_sparing_tcp_loses_only_the_rest() {
        let imp = Impairments { delay: ms(50), loss: 1.0, ..Default::default() };
        let (mut p, t0) = path(PathConfig::new(imp).sparing_tcp());
        for i in 0..50 {
            let now = t0 + ms(i);
            assert_eq!(delivered(p.on_ip_packet(now, 100, true)), now + ms(50));
            assert!(matches!(p.on_ip_packet(now, 100, false), Verdict::Drop(DropReason::RandomLoss)));
        }
        let (mut plain, t0) = path(PathConfig::new(imp));
        assert!(matches!(plain.on_ip_packet(t0, 100, true), Verdict::Drop(_)), "TCP is lost unless spared");
        let c = p.counters();
        assert_eq!((c.offered, c.delivered, c.dropped()), (100, 50, 50));
        assert_eq!((c.delivered_bytes, c.delivered_tcp_bytes), (5_000, 5_000), "only TCP was delivered");
    }

    /// The delays (ms) of 10,000 packets 1 ms apart on a path with this jitter, reordering allowed.
    fn jittered_delays_ms(delay: Duration, jitter: Jitter, seed: u64) -> Vec<f64> {
        let imp = Impairments { delay, jitter, reorder: true, ..Default::default() };
        let (mut p, t0) = path(PathConfig::new(imp).seed(seed));
        (0..10_000)
            .map(|i| {
                let now = t0 + ms(i);
                (delivered(p.on_packet(now, 100)) - now).as_secs_f64() * 1000.0
            })
            .collect()
    }

    /// Uniform jitter stays within ±max, covers most of it and averages to the base delay.
    #[test]
    fn uniform_jitter_stays_within_its_bounds() {
        let delays = jittered_delays_ms(ms(50), Jitter::Uniform { max: ms(10) }, 7);
        let (min, max) = delays.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!(min >= 40.0 && max <= 60.0, "delays {min}..{max} ms outside 40..60");
        assert!(min < 40.5 && max > 59.5, "10,000 draws should reach near both ends: {min}..{max}");
        // σ of a uniform ±10 is 5.77 ms; of a mean of 10,000, 0.058 ms: ±0.3 ms is over 5σ.
        assert!((mean - 50.0).abs() < 0.3, "mean {mean}");
    }

    /// Normal jitter: its spread matches σ and nothing goes past 3σ.
    #[test]
    fn normal_jitter_has_its_spread_and_a_bound() {
        let delays = jittered_delays_ms(ms(40), Jitter::Normal { std_dev: ms(5) }, 11);
        let n = delays.len() as f64;
        let mean = delays.iter().sum::<f64>() / n;
        let sd = (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(delays.iter().all(|d| (25.0..=55.0).contains(d)), "a delay past 3σ");
        assert!((mean - 40.0).abs() < 0.25, "mean {mean}");
        // Cutting at 3σ trims σ by about 1.4 %; 10,000 samples estimate it within ~1 %.
        assert!((4.7..5.1).contains(&sd), "σ {sd}");
    }

    /// With reordering allowed, jitter larger than the packet spacing does reorder; without it
    /// departures never go backwards, and still stay within the jitter's upper bound.
    #[test]
    fn without_reordering_departures_are_monotonic() {
        let jittery = |reorder| Impairments {
            delay: ms(30),
            jitter: Jitter::Uniform { max: ms(20) },
            reorder,
            ..Default::default()
        };
        let departures = |reorder| {
            let (mut p, t0) = path(PathConfig::new(jittery(reorder)).seed(3));
            (0..2_000u64).map(|i| (t0 + ms(i), delivered(p.on_packet(t0 + ms(i), 100)))).collect::<Vec<_>>()
        };
        let reordered = departures(true).windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(reordered > 100, "packets 1 ms apart with ±20 ms jitter should reorder: {reordered}");
        let serial = departures(false);
        assert!(serial.windows(2).all(|w| w[1].1 >= w[0].1), "a departure went backwards");
        assert!(serial.iter().all(|(sent, at)| *at - *sent <= ms(50)), "held past delay + jitter");
    }

    /// 10 % loss over 20,000 packets: σ of the count is 42, so ±200 is almost 5σ. The same seed
    /// gives the same losses.
    #[test]
    fn random_loss_hits_its_fraction() {
        let lossy = || PathConfig::new(Impairments { loss: 0.1, ..Default::default() }).seed(42);
        let run = || {
            let (mut p, t0) = path(lossy());
            let lost: Vec<bool> =
                (0..20_000).map(|i| matches!(p.on_packet(t0 + ms(i), 100), Verdict::Drop(_))).collect();
            (lost, p.counters())
        };
        let (lost, c) = run();
        assert!((1_800..=2_200).contains(&c.random_loss), "{} of 20,000 lost", c.random_loss);
        assert_eq!(c.random_loss as usize, lost.iter().filter(|l| **l).count());
        assert_eq!((c.delivered + c.random_loss, c.dropped_bytes), (20_000, c.random_loss * 100));
        assert_eq!(run().0, lost, "the same seed should lose the same packets");
    }

    /// The classic Gilbert model (lose all in bad, nothing in good): mean burst = 1 / p(bad→good),
    /// loss share = p(g→b) / (p(g→b) + p(b→g)).
    #[test]
    fn gilbert_elliott_bursts_have_their_mean_length() {
        let ge = GilbertElliott { p_good_to_bad: 0.01, p_bad_to_good: 0.25, loss_good: 0.0, loss_bad: 1.0 };
        let imp = Impairments { burst_loss: Some(ge), ..Default::default() };
        let (mut p, t0) = path(PathConfig::new(imp).seed(5));
        let lost: Vec<bool> =
            (0..200_000).map(|i| matches!(p.on_packet(t0 + ms(i), 100), Verdict::Drop(_))).collect();
        let mut bursts = Vec::new();
        let mut run = 0;
        for &l in &lost {
            if l {
                run += 1;
            } else if run > 0 {
                bursts.push(run);
                run = 0;
            }
        }
        let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
        let share = p.counters().burst_loss as f64 / lost.len() as f64;
        // ~1,900 bursts of geometric length (σ 3.5): the mean's σ is 0.08; ±0.4 is 5σ.
        assert!((mean - 4.0).abs() < 0.4, "mean burst {mean} packets ({} bursts)", bursts.len());
        let expected = 0.01 / 0.26;
        assert!((share - expected).abs() < 0.006, "loss share {share}, expected {expected}");
        assert_eq!(p.counters().random_loss, 0);
    }

    /// A 1 Mbit/s bottleneck sends 1,250-byte packets 10 ms apart, and a 50 ms queue holds five of
    /// them (the one being sent included): a burst of 20 keeps 5 and drops the rest.
    #[test]
    fn a_rate_limit_spaces_departures_and_overflows() {
        let rate = RateLimit { bits_per_second: 1_000_000, queue: QueueLimit::Time(ms(50)) };
        let imp = Impairments { delay: ms(5), rate: Some(rate), ..Default::default() };
        let (mut p, t0) = path(PathConfig::new(imp));
        let verdicts: Vec<Verdict> = (0..20).map(|_| p.on_packet(t0, 1_250)).collect();
        let times: Vec<Instant> = verdicts
            .iter()
            .filter_map(|v| if let Verdict::Deliver(at) = v { Some(*at) } else { None })
            .collect();
        assert_eq!(times.len(), 5);
        for (i, at) in times.iter().enumerate() {
            assert_eq!(*at, t0 + ms(10 * (i as u64 + 1)) + ms(5), "packet {i}");
        }
        let c = p.counters();
        assert_eq!((c.queue_overflow, c.dropped_bytes), (15, 15 * 1_250));
        assert_eq!(c.queued_ns, 100_000_000, "the five waited 0, 10, 20, 30 and 40 ms; the dropped none");
        // Once the queue has drained a slot there is room again: at 10 ms one packet has gone.
        assert!(matches!(p.on_packet(t0 + ms(10), 1_250), Verdict::Deliver(_)));
        assert_eq!(p.on_packet(t0 + ms(10), 1_250), Verdict::Drop(DropReason::QueueOverflow));
        // Paced below the rate nothing queues: each leaves one send time + delay after it came.
        let now = t0 + ms(1_000);
        assert_eq!(delivered(p.on_packet(now, 1_250)), now + ms(15));
    }

    /// Offered 3 Mbit/s for 10 s, a 1 Mbit/s bottleneck with a byte-bounded queue delivers 1 Mbit/s:
    /// what it accepts in the first 10 s leaves by 10 s + the queue's drain time.
    #[test]
    fn a_rate_limit_holds_a_flood_to_its_rate() {
        let rate = RateLimit { bits_per_second: 1_000_000, queue: QueueLimit::Bytes(12_500) };
        let (mut p, t0) = path(PathConfig::new(Impairments { rate: Some(rate), ..Default::default() }));
        // 1,000-byte packets every 8/3 ms = 3 Mbit/s.
        let mut last = t0;
        for i in 0..3_750u64 {
            if let Verdict::Deliver(at) = p.on_packet(t0 + Duration::from_micros(i * 8_000 / 3), 1_000) {
                last = at;
            }
        }
        let c = p.counters();
        let kbit_s = c.delivered_bytes as f64 * 8.0 / (last - t0).as_secs_f64() / 1000.0;
        assert!((995.0..=1_000.0).contains(&kbit_s), "{kbit_s} kbit/s");
        assert!((2_480..=2_520).contains(&c.queue_overflow), "{} overflowed", c.queue_overflow);
        assert!(last - t0 <= Duration::from_millis(10_100), "the queue held 100 ms at most");
    }

    /// Steps replace the settings at their times (in any order given), outages lose everything in
    /// their span, and reconfiguring restarts the clock of both.
    #[test]
    fn a_schedule_switches_settings_at_its_times() {
        let base = Impairments { delay: ms(10), ..Default::default() };
        let slow = Impairments { delay: ms(100), ..Default::default() };
        let config = PathConfig::new(base).at(ms(2_000), base).at(ms(1_000), slow).outage(ms(3_000), ms(500));
        let (mut p, t0) = path(config.clone());
        let delay_at = |p: &mut Path, t: u64| match p.on_packet(t0 + ms(t), 100) {
            Verdict::Deliver(at) => Some(at - (t0 + ms(t))),
            Verdict::Drop(_) => None,
        };
        assert_eq!(delay_at(&mut p, 999), Some(ms(10)));
        assert_eq!(delay_at(&mut p, 1_000), Some(ms(100)));
        assert_eq!(delay_at(&mut p, 1_999), Some(ms(100)));
        // Back to 10 ms, but a serial link does not let this one overtake the one sent 1 ms earlier.
        assert_eq!(delay_at(&mut p, 2_000), Some(ms(99)));
        assert_eq!(delay_at(&mut p, 2_500), Some(ms(10)));
        assert_eq!(delay_at(&mut p, 2_999), Some(ms(10)));
        assert_eq!(delay_at(&mut p, 3_000), None);
        assert_eq!(delay_at(&mut p, 3_499), None);
        assert_eq!(delay_at(&mut p, 3_500), Some(ms(10)));
        assert_eq!(p.counters().outage, 2);
        // Reconfigured at 10 s: the slow step comes 1 s later.
        p.reconfigure(config, t0 + ms(10_000)).expect("valid");
        assert_eq!(delay_at(&mut p, 10_500), Some(ms(10)));
        assert_eq!(delay_at(&mut p, 11_500), Some(ms(100)));
        assert_eq!(p.counters().offered, 11, "counters go on across a reconfiguration");
    }

    #[test]
    fn bad_settings_are_refused() {
        let lossy =
            PathConfig::new(Default::default()).at(ms(1), Impairments { loss: 1.5, ..Default::default() });
        assert_eq!(
            Path::new(lossy, Instant::now()).err(),
            Some(ConfigError::Probability { what: "loss", value: 1.5 })
        );
        let rate = RateLimit { bits_per_second: 0, queue: QueueLimit::Bytes(1) };
        let stuck = PathConfig::new(Impairments { rate: Some(rate), ..Default::default() });
        assert_eq!(stuck.validate(), Err(ConfigError::ZeroRate));
    }
}
