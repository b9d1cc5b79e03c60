//! A call's second-by-second figures, read back from a headless peer's `stats:` lines, and what
//! issue 13's tests and `net-bench` rows make of them: the link's use, the round trip against the
//! path's base, how fast the rate came back after a step, and the picture size and frame rate over
//! time.

use std::fmt;

/// One `stats:` line's figures that congestion control is judged by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    /// Video sent, frames/s and kbit/s, and the encoder's target.
    pub fps_out: f64,
    /// See `fps_out`.
    pub kbps_out: f64,
    /// See `fps_out`.
    pub target_kbps: Option<f64>,
    /// Video received: frames/s, kbit/s, picture size.
    pub fps_in: f64,
    /// See `fps_in`.
    pub kbps_in: f64,
    /// See `fps_in`.
    pub size_in: Option<(u32, u32)>,
    /// The selected pair's round trip, ms.
    pub rtt_ms: Option<f64>,
    /// The congestion controller's estimate, kbit/s.
    pub estimate_kbps: Option<f64>,
    /// The pacer's queue, ms.
    pub pacer_ms: Option<f64>,
    /// Why quality is limited (`none`, `bandwidth`, `cpu`).
    pub limited: Option<String>,
}

fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(key).nth(1)
}

fn number(s: Option<&str>) -> Option<f64> {
    s?.split_whitespace().next()?.trim_end_matches(')').parse().ok()
}

impl Second {
    /// Reads one `stats:` line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Second> {
        let line = line.strip_prefix("stats: ")?;
        let out = after(line, "out ")?;
        let inbound = after(line, " | in ")?.split(" | ").next()?;
        let mut words = inbound.split_whitespace();
        let fps_in = words.next()?.parse().ok()?;
        let kbps_in = words.nth(1)?.parse().ok()?;
        let size_in = words.nth(1).and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        });
        let mut o = out.split_whitespace();
        Some(Second {
            fps_out: o.next()?.parse().ok()?,
            kbps_out: o.nth(1)?.parse().ok()?,
            target_kbps: number(after(line, "(target ")),
            fps_in,
            kbps_in,
            size_in,
            rtt_ms: number(after(line, " | rtt ")),
            estimate_kbps: number(after(line, "cc estimate ")),
            pacer_ms: number(after(line, " pacer ")),
            limited: after(line, " limited ").and_then(|s| s.split_whitespace().next()).map(str::to_owned),
        })
    }
}

/// A call's seconds, in order; second 0 is the first with a picture in.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// The seconds.
    pub seconds: Vec<Second>,
}

/// The p-th percentile (nearest rank) of `values`.
fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize - 1;
    values.get(rank.min(values.len() - 1)).copied()
}

impl Timeline {
    /// The seconds of a peer's output, from its first picture in.
    pub fn from_lines(lines: &[String]) -> Timeline {
        let seconds: Vec<Second> = lines.iter().filter_map(|l| Second::parse(l)).collect();
        let first = seconds.iter().position(|s| s.fps_in > 0.0).unwrap_or(seconds.len());
        Timeline { seconds: seconds[first..].to_vec() }
    }

    fn span(&self, from: usize, to: usize) -> &[Second] {
        let to = to.min(self.seconds.len());
        &self.seconds[from.min(to)..to]
    }

    /// Mean video kbit/s received in seconds `from..to`.
    pub fn kbps_in(&self, from: usize, to: usize) -> f64 {
        let s = self.span(from, to);
        s.iter().map(|s| s.kbps_in).sum::<f64>() / s.len().max(1) as f64
    }

    /// Round trip p50 and p95 over seconds `from..to`, ms.
    pub fn rtt(&self, from: usize, to: usize) -> (Option<f64>, Option<f64>) {
        let mut r: Vec<f64> = self.span(from, to).iter().filter_map(|s| s.rtt_ms).collect();
        (percentile(&mut r, 50.0), percentile(&mut r, 95.0))
    }

    /// The highest round trip over seconds `from..to`, ms.
    pub fn rtt_max(&self, from: usize, to: usize) -> Option<f64> {
        self.span(from, to).iter().filter_map(|s| s.rtt_ms).reduce(f64::max)
    }

    /// Seconds from `from` until the received rate first reaches `kbps` (`None`: not by the end).
    pub fn seconds_to_reach(&self, from: usize, kbps: f64) -> Option<usize> {
        self.seconds.iter().skip(from).position(|s| s.kbps_in >= kbps)
    }

    /// Picture size and frame rate in, every `every` seconds: "0s 640x480@30 …".
    pub fn pictures(&self, every: usize) -> String {
        let mut out = Vec::new();
        for (i, s) in self.seconds.iter().enumerate().step_by(every.max(1)) {
            let size = s.size_in.map_or_else(|| "-".to_owned(), |(w, h)| format!("{w}x{h}"));
            out.push(format!("{i}s {size}@{:.0}", s.fps_in));
        }
        out.join(" ")
    }
}

impl fmt::Display for Timeline {
    /// One line a second: in kbit/s, target, estimate, rtt, pacer, picture.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for (i, s) in self.seconds.iter().enumerate() {
            let size = s.size_in.map_or_else(|| "-".to_owned(), |(w, h)| format!("{w}x{h}"));
            writeln!(
                f,
                "  {i:>3}s in {:>5.0} kbit/s {:>3.0} fps {size:>7} | target {:>5} est {:>5} | rtt {:>4} | pacer {:>4} ms | {}",
                s.kbps_in,
                s.fps_in,
                o(s.target_kbps),
                o(s.estimate_kbps),
                o(s.rtt_ms),
                o(s.pacer_ms),
                s.limited.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallStats;

    #[test]
    fn a_stats_line_reads_back() {
        let stats = CallStats {
            fps_out: 20.0,
            kbps_out: 250.0,
            target_kbps: Some(260.0),
            fps_in: 19.0,
            kbps_in: 240.0,
            resolution_in: Some((320, 240)),
            rtt_ms: Some(61.5),
            estimate_kbps: Some(270.0),
            pacer_queue_ms: 12.0,
            quality_limitation: crate::call::rate::QualityLimitation::Bandwidth,
            ..CallStats::default()
        };
        let s = Second::parse(&format!("stats: {stats}")).expect("a stats line");
        assert_eq!(
            s,
            Second {
                fps_out: 20.0,
                kbps_out: 250.0,
                target_kbps: Some(260.0),
                fps_in: 19.0,
                kbps_in: 240.0,
                size_in: Some((320, 240)),
                rtt_ms: Some(61.5),
                estimate_kbps: Some(270.0),
                pacer_ms: Some(12.0),
                limited: Some("bandwidth".into()),
            }
        );
        assert_eq!(Second::parse("summary: x"), None);
    }

    #[test]
    fn phases_are_measured_from_the_first_picture() {
        let line = |kbps: f64, rtt: f64| {
            let s = CallStats {
                fps_in: if kbps > 0.0 { 30.0 } else { 0.0 },
                kbps_in: kbps,
                rtt_ms: Some(rtt),
                ..CallStats::default()
            };
            format!("stats: {s}")
        };
        let lines: Vec<String> = [(0.0, 50.0), (100.0, 50.0), (500.0, 60.0), (900.0, 150.0), (1000.0, 55.0)]
            .iter()
            .map(|&(k, r)| line(k, r))
            .collect();
        let t = Timeline::from_lines(&lines);
        assert_eq!(t.seconds.len(), 4);
        assert_eq!(t.kbps_in(1, 3), 700.0);
        assert_eq!(t.rtt(0, 4), (Some(55.0), Some(150.0)), "nearest rank");
        assert_eq!(t.seconds_to_reach(0, 800.0), Some(2));
        assert_eq!(t.seconds_to_reach(0, 2000.0), None);
        assert!(t.pictures(2).starts_with("0s -@30"), "{}", t.pictures(2));
    }
}
