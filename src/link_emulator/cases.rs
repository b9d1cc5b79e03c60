//! The links of issue 12, by name: what `net-bench` measures and `tests/netpath.rs` checks. Each is
//! the same both ways (the directions still draw different random sequences, see [`super::Link`]).

use super::model::{GilbertElliott, Impairments, Jitter, PathConfig, QueueLimit, RateLimit};
use std::time::Duration;

/// One emulated path for a call.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkCase {
    /// A short name for `--links` and test names.
    pub name: &'static str,
    /// What it is, in words (the table's first column).
    pub label: &'static str,
    /// Each direction's path.
    pub path: PathConfig,
    /// An outage of both directions during the call, if any.
    pub outage: Option<Outage>,
    /// The path's schedule counts from the caller's first remote picture rather than from the
    /// link's start (a rate step lands at the same point of every call, however long setup took).
    pub from_first_picture: bool,
    /// What else crosses the link during the call.
    pub sharing: Sharing,
}

/// What shares a case's link with its call ([`super::headless_call::run_shared`] places it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Nothing: one call.
    Alone,
    /// `calls` Peercall calls in all (every caller in A, every callee in B, so all their A→B video
    /// crosses the one bottleneck), each placed `stagger` after the previous one's first picture.
    Calls {
        /// How many calls (at least 1).
        calls: usize,
        /// From one call's first picture to the next call's click.
        stagger: Duration,
    },
    /// A TCP bulk transfer A → B (the caller's video's direction) from `after` the caller's first
    /// picture, writing for `length` ([`super::bulk::TcpBulk`]).
    TcpBulk {
        /// From the caller's first picture.
        after: Duration,
        /// How long the sender writes.
        length: Duration,
        /// Its congestion control (`None`: the system's; BBR on this project's machines).
        congestion: Option<&'static str>,
    },
}

/// Both directions lose everything for `length`, from `after` the caller's first remote picture on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// From the first picture.
    pub after: Duration,
    /// How long.
    pub length: Duration,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The base of every case: a one-way delay and nothing else.
fn delay(one_way: Duration) -> Impairments {
    Impairments { delay: one_way, ..Impairments::default() }
}

/// 50 ms ± 10 ms of jitter that reorders, and `loss` random loss.
fn reordering(loss: f64) -> Impairments {
    Impairments { jitter: Jitter::Uniform { max: ms(10) }, reorder: true, loss, ..delay(ms(50)) }
}

/// Gilbert-Elliott loss averaging `share` of the packets in bursts of `burst` packets on average
/// (everything lost in the bad state, nothing in the good one).
pub fn bursty(share: f64, burst: f64) -> GilbertElliott {
    let p_bad_to_good = 1.0 / burst;
    GilbertElliott {
        p_good_to_bad: share * p_bad_to_good / (1.0 - share),
        p_bad_to_good,
        loss_good: 0.0,
        loss_bad: 1.0,
    }
}

/// Every case of issue 12, in its order. `outage_after` places the outage case's 3 s outage in the call.
pub fn issue_12(outage_after: Duration) -> Vec<LinkCase> {
    let case = |name, label, impairments: Impairments| LinkCase {
        name,
        label,
        path: PathConfig::new(impairments).seed(12),
        outage: None,
        from_first_picture: false,
        sharing: Sharing::Alone,
    };
    vec![
        case("clean", "25 ms, no loss", delay(ms(25))),
        case("reorder5", "50 ± 10 ms jitter with reordering, 5 % random loss", reordering(0.05)),
        case(
            "bursty",
            "25 ms, Gilbert-Elliott loss (3 % in bursts of 3)",
            Impairments { burst_loss: Some(bursty(0.03, 3.0)), ..delay(ms(25)) },
        ),
        case(
            "jitter30",
            "50 ± 30 ms jitter, no reordering, no loss",
            Impairments { jitter: Jitter::Uniform { max: ms(30) }, reorder: false, ..delay(ms(50)) },
        ),
        case("loss10", "50 ± 10 ms jitter with reordering, 10 % random loss", reordering(0.10)),
        LinkCase {
            outage: Some(Outage { after: outage_after, length: ms(3000) }),
            ..case("outage", "25 ms, a 3 s outage both ways", delay(ms(25)))
        },
        case(
            "rate300k",
            "25 ms, 300 kbit/s with a 300 ms drop-tail queue",
            Impairments {
                rate: Some(RateLimit { bits_per_second: 300_000, queue: QueueLimit::Time(ms(300)) }),
                ..delay(ms(25))
            },
        ),
    ]
}

/// A media path that loses 20 % each way (50 ± 10 ms, reordering): setup must still finish. Every
/// handshake flight has a fair chance of being lost here, so the ICE and DTLS retransmission paths
/// run on most calls. The signaling's TCP crosses clean (50 ms): through 30 % loss its
/// retransmission backoff alone held an answer past the 10 s connect timeout; and at 30 % DTLS's
/// fixed 1 s retransmissions of multi-datagram flights now and then need more than 10 s (1 of 9
/// calls, patched rtc-dtls or not), while at 20 % 12 of 12 calls were set up within 3.9 s.
pub fn setup_under_heavy_loss() -> LinkCase {
    LinkCase {
        name: "loss20",
        label: "50 ± 10 ms jitter with reordering, 20 % random loss on UDP (TCP clean)",
        path: PathConfig::new(reordering(0.20)).seed(20).sparing_tcp(),
        outage: None,
        from_first_picture: false,
        sharing: Sharing::Alone,
    }
}

/// A bottleneck of `bps` behind a 300 ms drop-tail queue, `one_way` of delay.
fn bottleneck(bps: u64, one_way: Duration) -> Impairments {
    Impairments {
        rate: Some(RateLimit { bits_per_second: bps, queue: QueueLimit::Time(ms(300)) }),
        ..delay(one_way)
    }
}

/// The links of issue 13 (congestion control), meant for the camera-like source. The schedules count
/// from the caller's first picture; `t` scales their phases (tests use short ones, `net-bench` longer).
/// The last two share their link: a second call `t / 2` after the first one's first picture, or a
/// TCP bulk flow from `t / 2` for `1.5 t`.
pub fn issue_13(t: Duration) -> Vec<LinkCase> {
    let case = |name, label, path: PathConfig| LinkCase {
        name,
        label,
        path: path.seed(13),
        outage: None,
        from_first_picture: true,
        sharing: Sharing::Alone,
    };
    let wide = bottleneck(2_500_000, ms(50));
    vec![
        case("narrow", "25 ms, 300 kbit/s, 300 ms queue", PathConfig::new(bottleneck(300_000, ms(25)))),
        case(
            "step",
            "50 ms, 2.5 Mbit/s → 600 kbit/s → 2.5 Mbit/s",
            PathConfig::new(wide).at(t, bottleneck(600_000, ms(50))).at(t * 2, wide),
        ),
        case(
            "drop",
            "50 ms, 2.5 Mbit/s → 120 kbit/s → 2.5 Mbit/s",
            PathConfig::new(wide).at(t, bottleneck(120_000, ms(50))).at(t * 2, wide),
        ),
        case("rampup", "25 ms, 2.5 Mbit/s from the start", PathConfig::new(bottleneck(2_500_000, ms(25)))),
        LinkCase {
            sharing: Sharing::Calls { calls: 2, stagger: t / 2 },
            ..case(
                "twocalls",
                "two calls, 25 ms, 1 Mbit/s, 300 ms queue",
                PathConfig::new(bottleneck(1_000_000, ms(25))),
            )
        },
        LinkCase {
            sharing: Sharing::TcpBulk { after: t / 2, length: t * 3 / 2, congestion: None },
            ..case(
                "tcp",
                "a call and TCP A→B, 25 ms, 2 Mbit/s, 300 ms queue",
                PathConfig::new(bottleneck(2_000_000, ms(25))),
            )
        },
        // The same beside a loss-based TCP, which fills the buffer until it drops (net-bench only).
        LinkCase {
            sharing: Sharing::TcpBulk { after: t / 2, length: t * 3 / 2, congestion: Some("cubic") },
            ..case(
                "tcpcubic",
                "a call and TCP CUBIC A→B, 25 ms, 2 Mbit/s, 300 ms queue",
                PathConfig::new(bottleneck(2_000_000, ms(25))),
            )
        },
    ]
}

/// The bottleneck's rate of `case` at `at` from the first picture, bit/s (`None`: no limit).
pub fn rate_at(case: &LinkCase, at: Duration) -> Option<u64> {
    let mut now = &case.path.impairments;
    for step in case.path.schedule.iter().filter(|s| s.at <= at) {
        now = &step.impairments;
    }
    now.rate.map(|r| r.bits_per_second)
}

/// The cases named in `names` (comma-separated list items), in the order given; an unknown name is
/// an error that lists the known ones.
pub fn pick(all: Vec<LinkCase>, names: &[String]) -> Result<Vec<LinkCase>, String> {
    names
        .iter()
        .map(|name| {
            all.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|c| c.name).collect();
                format!("no link {name:?}; the links are {}", known.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursty_loss_averages_its_share_in_bursts_of_its_length() {
        let ge = bursty(0.03, 3.0);
        let share = ge.p_good_to_bad / (ge.p_good_to_bad + ge.p_bad_to_good);
        assert!((share - 0.03).abs() < 1e-12, "{share}");
        assert!((1.0 / ge.p_bad_to_good - 3.0).abs() < 1e-12);
    }

    #[test]
    fn every_case_is_valid_and_named_once() {
        let all = issue_12(ms(5000));
        assert_eq!(all.len(), 7);
        for case in &all {
            case.path.validate().unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(all.iter().filter(|c| c.name == case.name).count(), 1);
        }
        assert_eq!(all.iter().filter(|c| c.outage.is_some()).count(), 1);
        let cc = issue_13(ms(10_000));
        for case in &cc {
            case.path.validate().unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(cc.iter().filter(|c| c.name == case.name).count(), 1);
        }
        let sharing: Vec<Sharing> = cc.iter().map(|c| c.sharing).filter(|s| *s != Sharing::Alone).collect();
        assert_eq!(
            sharing,
            [
                Sharing::Calls { calls: 2, stagger: ms(5000) },
                Sharing::TcpBulk { after: ms(5000), length: ms(15_000), congestion: None },
                Sharing::TcpBulk { after: ms(5000), length: ms(15_000), congestion: Some("cubic") }
            ]
        );
        let rates: Vec<Option<u64>> = ["twocalls", "tcp", "tcpcubic"]
            .iter()
            .map(|n| rate_at(&pick(cc.clone(), &[n.to_string()]).expect("known")[0], ms(0)))
            .collect();
        assert_eq!(rates, [Some(1_000_000), Some(2_000_000), Some(2_000_000)]);
    }

    #[test]
    fn the_step_case_steps_down_and_back() {
        let step = pick(issue_13(ms(10_000)), &["step".into()]).expect("known").remove(0);
        let r = |s| rate_at(&step, Duration::from_secs(s));
        assert_eq!(
            (r(0), r(9), r(10), r(19), r(20), r(40)),
            (
                Some(2_500_000),
                Some(2_500_000),
                Some(600_000),
                Some(600_000),
                Some(2_500_000),
                Some(2_500_000)
            )
        );
    }

    #[test]
    fn cases_are_picked_by_name_in_the_order_asked() {
        let picked = pick(issue_12(ms(1)), &["rate300k".into(), "clean".into()]).expect("known");
        assert_eq!(picked.iter().map(|c| c.name).collect::<Vec<_>>(), ["rate300k", "clean"]);
        let err = pick(issue_12(ms(1)), &["nope".into()]).unwrap_err();
        assert!(err.contains("nope") && err.contains("bursty"), "{err}");
    }
}
