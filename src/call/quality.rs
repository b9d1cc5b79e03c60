//! A call's receiver-side figures, as a person would judge the call: frame rate, freezes, latency
//! from the stamp, whether the picture kept its size, setup time. Pure arithmetic: every time comes
//! in as an argument (µs on the host clock, the same clock the far side stamps with when both run on
//! one machine, so stamp age is true glass-to-glass), so its tests replay exact sequences.
//!
//! Fed per shown picture ([`CallQuality::frame`]), per stats second ([`CallQuality::second`]) and at
//! the end ([`CallQuality::summary`]); the [`QualitySummary`] prints as one `key=value` line and
//! parses back from it ([`QualitySummary::parse`]), which is how benchmarks and tests read it from
//! `peercall --headless`.

use super::stats::CallStats;
use crate::media::pattern::Stamp;
use std::collections::BTreeMap;
use std::fmt;

/// The shortest gap between two shown pictures that counts as a freeze, whatever the frame rate.
pub const MIN_FREEZE_US: u64 = 150_000;
/// A gap longer than this many frame intervals is a freeze (when that is above [`MIN_FREEZE_US`]).
pub const FREEZE_INTERVALS: u64 = 3;

/// One picture the receiver showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShownFrame {
    /// When it was decoded and handed to the screen, µs since the Unix epoch.
    pub at_us: u64,
    /// Its size.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// The stamp it carries, when it is a stamped picture and the stamp read back intact.
    pub stamp: Option<Stamp>,
}

/// What the receiver expects of the far side's video: the size and rate it sends at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    /// The size the sender captures at (a smaller picture is the encoder backing off).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Frames per second sent.
    pub fps: f64,
}

impl Expected {
    /// The gap between two pictures that is a freeze: over max(3 frame intervals, 150 ms).
    pub fn freeze_threshold_us(&self) -> u64 {
        let interval = if self.fps > 0.0 { (1e6 / self.fps) as u64 } else { 0 };
        (FREEZE_INTERVALS * interval).max(MIN_FREEZE_US)
    }
}

/// Accumulates one call's figures.
#[derive(Clone, Debug)]
pub struct CallQuality {
    expected: Expected,
    clicked_at_us: Option<u64>,
    first_at_us: Option<u64>,
    last_at_us: Option<u64>,
    frames: u64,
    at_size: u64,
    freezes: u64,
    frozen_us: u64,
    longest_gap_us: u64,
    latencies_us: Vec<u64>,
    last_frame_no: Option<u32>,
    unstamped: u64,
    backwards: u64,
    rtts_ms: Vec<f64>,
    audio_playout_ms: Vec<f64>,
    /// The audio playout's dry count at the first and the last second seen.
    audio_dry: Option<(u64, u64)>,
}

impl CallQuality {
    /// A call whose far side sends `expected`.
    pub fn new(expected: Expected) -> CallQuality {
        CallQuality {
            expected,
            clicked_at_us: None,
            first_at_us: None,
            last_at_us: None,
            frames: 0,
            at_size: 0,
            freezes: 0,
            frozen_us: 0,
            longest_gap_us: 0,
            latencies_us: Vec::new(),
            last_frame_no: None,
            unstamped: 0,
            backwards: 0,
            rtts_ms: Vec::new(),
            audio_playout_ms: Vec::new(),
            audio_dry: None,
        }
    }

    /// The user asked for the call at `at_us` (setup counts from here).
    pub fn clicked(&mut self, at_us: u64) {
        self.clicked_at_us = Some(at_us);
    }

    /// Notes a shown picture.
    pub fn frame(&mut self, frame: &ShownFrame) {
        if let Some(last) = self.last_at_us {
            self.gap(frame.at_us.saturating_sub(last));
        } else {
            self.first_at_us = Some(frame.at_us);
        }
        self.last_at_us = Some(frame.at_us);
        self.frames += 1;
        if (frame.width, frame.height) == (self.expected.width, self.expected.height) {
            self.at_size += 1;
        }
        let Some(stamp) = frame.stamp else {
            self.unstamped += 1;
            return;
        };
        match self.last_frame_no {
            // A picture shown again (the decoder gave the same frame twice) has no new latency.
            Some(last) if stamp.frame_no == last => {}
            Some(last) if stamp.frame_no < last => self.backwards += 1,
            _ => self.latencies_us.push(stamp.age_us(frame.at_us)),
        }
        self.last_frame_no = Some(self.last_frame_no.map_or(stamp.frame_no, |l| l.max(stamp.frame_no)));
    }

    fn gap(&mut self, gap_us: u64) {
        let (longest, freezes, frozen) = self.with_gap(gap_us);
        (self.longest_gap_us, self.freezes, self.frozen_us) = (longest, freezes, frozen);
    }

    /// Longest gap, freezes and frozen time, were a gap of `gap_us` added.
    fn with_gap(&self, gap_us: u64) -> (u64, u64, u64) {
        let freeze = gap_us > self.expected.freeze_threshold_us();
        (
            self.longest_gap_us.max(gap_us),
            self.freezes + u64::from(freeze),
            self.frozen_us + if freeze { gap_us } else { 0 },
        )
    }

    /// Notes one second's engine stats (the round trip it measured, the audio playout's depth).
    pub fn second(&mut self, stats: &CallStats) {
        if let Some(rtt) = stats.rtt_ms.filter(|r| r.is_finite() && *r > 0.0) {
            self.rtts_ms.push(rtt);
        }
        if let Some(depth) = stats.audio_playout_ms {
            self.audio_playout_ms.push(depth);
            let first = self.audio_dry.map_or(stats.audio_underruns, |(first, _)| first);
            self.audio_dry = Some((first, stats.audio_underruns));
        }
    }

    /// The figures at `end_us` (a picture still missing then counts as a freeze going on), with the
    /// engine's totals: video payload bytes received and, when the engine can tell them apart,
    /// retransmitted bytes.
    pub fn summary(&self, end_us: u64, video_bytes: u64, rtx_bytes: Option<u64>) -> QualitySummary {
        // A picture still missing at the end is a gap going on.
        let tail = self.last_at_us.map_or(0, |last| end_us.saturating_sub(last));
        let (longest_gap_us, freezes, frozen_us) = self.with_gap(tail);
        let span_us = self.first_at_us.map_or(0, |f| end_us.saturating_sub(f));
        let per_second = |n: f64| if span_us > 0 { n * 1e6 / span_us as f64 } else { 0.0 };
        let ms = |us: u64| us as f64 / 1000.0;
        let mut latencies: Vec<f64> = self.latencies_us.iter().map(|&us| ms(us)).collect();
        let mut rtts = self.rtts_ms.clone();
        let mut audio = self.audio_playout_ms.clone();
        QualitySummary {
            setup_ms: self.clicked_at_us.zip(self.first_at_us).map(|(c, f)| ms(f.saturating_sub(c))),
            seconds: span_us as f64 / 1e6,
            frames: self.frames,
            fps: per_second(self.frames as f64),
            freezes,
            frozen_ms: ms(frozen_us),
            longest_freeze_ms: if freezes > 0 { ms(longest_gap_us) } else { 0.0 },
            max_gap_ms: ms(longest_gap_us),
            g2g_p50_ms: percentile(&mut latencies, 50.0),
            g2g_p95_ms: percentile(&mut latencies, 95.0),
            size_held: (self.frames > 0).then(|| self.at_size as f64 / self.frames as f64),
            kbps: per_second(video_bytes as f64 * 8.0 / 1000.0),
            rtt_p50_ms: percentile(&mut rtts, 50.0),
            rtt_p95_ms: percentile(&mut rtts, 95.0),
            rtx_kb: rtx_bytes.map(|b| b as f64 / 1000.0),
            audio_p50_ms: percentile(&mut audio, 50.0),
            audio_p95_ms: percentile(&mut audio, 95.0),
            audio_dry: self.audio_dry.map(|(first, last)| last.saturating_sub(first)),
            stamped: self.latencies_us.len() as u64,
            unstamped: self.unstamped,
            backwards: self.backwards,
            last_frame_no: self.last_frame_no,
        }
    }
}

/// The nearest-rank percentile `p` (0–100) of `values` (sorted in place), `None` when empty.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// One call's figures; see [`CallQuality::summary`]. Printed as `key=value` pairs, `-` for unknown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QualitySummary {
    /// Click (`--call`) to the first remote picture, ms; `None` for the callee.
    pub setup_ms: Option<f64>,
    /// From the first picture to the end, s.
    pub seconds: f64,
    /// Pictures shown.
    pub frames: u64,
    /// Pictures shown per second.
    pub fps: f64,
    /// Gaps over the freeze threshold.
    pub freezes: u64,
    /// Their total length, ms.
    pub frozen_ms: f64,
    /// The longest freeze, ms (0 with none).
    pub longest_freeze_ms: f64,
    /// The longest gap between pictures, freeze or not, ms.
    pub max_gap_ms: f64,
    /// Glass-to-glass latency of stamped pictures, median, ms.
    pub g2g_p50_ms: Option<f64>,
    /// The same, 95th percentile.
    pub g2g_p95_ms: Option<f64>,
    /// The share of pictures at the size sent (0–1).
    pub size_held: Option<f64>,
    /// Video payload received, kbit/s.
    pub kbps: f64,
    /// Round trip the engine measured, median of its per-second samples, ms.
    pub rtt_p50_ms: Option<f64>,
    /// The same, 95th percentile.
    pub rtt_p95_ms: Option<f64>,
    /// Retransmitted kB received, when the engine can tell retransmissions apart (an RTX stream).
    pub rtx_kb: Option<f64>,
    /// The audio playout buffer's depth (the delay it adds to mouth-to-ear), median of per-second
    /// samples, ms; `None` with no playout running.
    pub audio_p50_ms: Option<f64>,
    /// The same, 95th percentile.
    pub audio_p95_ms: Option<f64>,
    /// Times the audio playout ran dry (a gap heard).
    pub audio_dry: Option<u64>,
    /// Pictures with a new, intact stamp.
    pub stamped: u64,
    /// Pictures without an intact stamp.
    pub unstamped: u64,
    /// Pictures whose frame number went back (shown out of order).
    pub backwards: u64,
    /// The highest frame number shown.
    pub last_frame_no: Option<u32>,
}

impl fmt::Display for QualitySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
        write!(
            f,
            "setup_ms={} seconds={:.1} frames={} fps={:.1}",
            opt(self.setup_ms, 0),
            self.seconds,
            self.frames,
            self.fps
        )?;
        write!(
            f,
            " freezes={} frozen_ms={:.0} longest_freeze_ms={:.0} max_gap_ms={:.0}",
            self.freezes, self.frozen_ms, self.longest_freeze_ms, self.max_gap_ms
        )?;
        write!(f, " g2g_p50_ms={} g2g_p95_ms={}", opt(self.g2g_p50_ms, 1), opt(self.g2g_p95_ms, 1))?;
        write!(f, " size_held={} kbps={:.0}", opt(self.size_held, 3), self.kbps)?;
        write!(f, " rtt_p50_ms={} rtt_p95_ms={}", opt(self.rtt_p50_ms, 1), opt(self.rtt_p95_ms, 1))?;
        write!(f, " rtx_kB={}", opt(self.rtx_kb, 1))?;
        let dry = self.audio_dry.map_or_else(|| "-".to_owned(), |n| n.to_string());
        write!(
            f,
            " audio_p50_ms={} audio_p95_ms={} audio_dry={dry}",
            opt(self.audio_p50_ms, 0),
            opt(self.audio_p95_ms, 0)
        )?;
        let last = self.last_frame_no.map_or_else(|| "-".to_owned(), |n| n.to_string());
        write!(
            f,
            " stamped={} unstamped={} backwards={} last_frame_no={last}",
            self.stamped, self.unstamped, self.backwards
        )
    }
}

/// Why a summary line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A key the line must have is missing.
    #[error("summary line lacks `{0}`")]
    Missing(&'static str),
    /// A value is not a number.
    #[error("summary value `{key}={value}` is not a number")]
    NotANumber {
        /// The key.
        key: &'static str,
        /// What stood there.
        value: String,
    },
}

impl QualitySummary {
    /// Reads a line [`Display`](fmt::Display) wrote (with or without a leading `summary: `).
    pub fn parse(line: &str) -> Result<QualitySummary, ParseError> {
        let line = line.strip_prefix("summary: ").unwrap_or(line);
        let pairs: BTreeMap<&str, &str> =
            line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
        let opt = |key: &'static str| -> Result<Option<f64>, ParseError> {
            match *pairs.get(key).ok_or(ParseError::Missing(key))? {
                "-" => Ok(None),
                v => v.parse().map(Some).map_err(|_| ParseError::NotANumber { key, value: v.to_owned() }),
            }
        };
        let num = |key: &'static str| opt(key)?.ok_or(ParseError::Missing(key));
        let count = |key: &'static str| num(key).map(|v| v as u64);
        Ok(QualitySummary {
            setup_ms: opt("setup_ms")?,
            seconds: num("seconds")?,
            frames: count("frames")?,
            fps: num("fps")?,
            freezes: count("freezes")?,
            frozen_ms: num("frozen_ms")?,
            longest_freeze_ms: num("longest_freeze_ms")?,
            max_gap_ms: num("max_gap_ms")?,
            g2g_p50_ms: opt("g2g_p50_ms")?,
            g2g_p95_ms: opt("g2g_p95_ms")?,
            size_held: opt("size_held")?,
            kbps: num("kbps")?,
            rtt_p50_ms: opt("rtt_p50_ms")?,
            rtt_p95_ms: opt("rtt_p95_ms")?,
            rtx_kb: opt("rtx_kB")?,
            audio_p50_ms: opt("audio_p50_ms")?,
            audio_p95_ms: opt("audio_p95_ms")?,
            audio_dry: opt("audio_dry")?.map(|n| n as u64),
            stamped: count("stamped")?,
            unstamped: count("unstamped")?,
            backwards: count("backwards")?,
            last_frame_no: opt("last_frame_no")?.map(|n| n as u32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGA30: Expected = Expected { width: 640, height: 480, fps: 30.0 };
    const T0: u64 = 1_700_000_000_000_000;

    fn shown(at_ms: u64, frame_no: u32, capture_ms: u64) -> ShownFrame {
        ShownFrame {
            at_us: T0 + at_ms * 1000,
            width: 640,
            height: 480,
            stamp: Some(Stamp { frame_no, capture_us: (T0 + capture_ms * 1000) & 0xFFFF_FFFF_FFFF }),
        }
    }

    #[test]
    fn the_freeze_threshold_is_three_intervals_but_never_under_150_ms() {
        assert_eq!(VGA30.freeze_threshold_us(), 150_000);
        assert_eq!(Expected { fps: 10.0, ..VGA30 }.freeze_threshold_us(), 300_000);
        assert_eq!(Expected { fps: 0.0, ..VGA30 }.freeze_threshold_us(), 150_000);
    }

    #[test]
    fn a_steady_call_has_its_rate_latency_and_setup() {
        let mut q = CallQuality::new(VGA30);
        q.clicked(T0 - 500_000);
        // 30 frames 33 ms apart over about a second, each shown 40 ms after capture.
        for n in 0..30u32 {
            let at = n as u64 * 33;
            q.frame(&shown(at, n, at.saturating_sub(40)));
        }
        // Latency of frame 0 is 0 (capture clamped); the rest 40 ms.
        let s = q.summary(T0 + 990_000, 20_000, None);
        assert_eq!(s.setup_ms, Some(500.0));
        assert_eq!(s.frames, 30);
        assert!((s.fps - 30.0 / 0.99).abs() < 1e-9, "{}", s.fps);
        assert_eq!((s.freezes, s.frozen_ms, s.longest_freeze_ms, s.max_gap_ms), (0, 0.0, 0.0, 33.0));
        assert_eq!((s.g2g_p50_ms, s.g2g_p95_ms), (Some(40.0), Some(40.0)));
        assert_eq!(s.size_held, Some(1.0));
        // 20 kB over 0.99 s.
        assert!((s.kbps - 160.0 / 0.99).abs() < 1e-9);
        assert_eq!((s.stamped, s.unstamped, s.backwards, s.last_frame_no), (30, 0, 0, Some(29)));
        assert_eq!(s.rtx_kb, None);
    }

    #[test]
    fn gaps_over_the_threshold_are_freezes_and_a_missing_tail_counts() {
        let mut q = CallQuality::new(VGA30);
        for (at, n) in [(0, 0), (33, 1), (183, 2), (334, 3), (367, 4)] {
            q.frame(&shown(at, n, at));
        }
        // 150 ms exactly is no freeze, 151 ms is; and 400 ms without a picture at the end is another.
        let s = q.summary(T0 + 767_000, 0, Some(12_500));
        assert_eq!(s.freezes, 2);
        assert_eq!((s.frozen_ms, s.longest_freeze_ms, s.max_gap_ms), (551.0, 400.0, 400.0));
        assert_eq!(s.setup_ms, None, "the callee clicked nothing");
        assert_eq!(s.rtx_kb, Some(12.5));
    }

    #[test]
    fn smaller_pictures_out_of_order_repeats_and_unstamped_ones_are_told_apart() {
        let mut q = CallQuality::new(VGA30);
        q.frame(&shown(0, 10, 0));
        q.frame(&ShownFrame { width: 320, height: 240, ..shown(33, 11, 0) });
        q.frame(&shown(66, 11, 0)); // repeated
        q.frame(&shown(99, 9, 0)); // backwards
        q.frame(&ShownFrame { stamp: None, ..shown(132, 0, 0) });
        let s = q.summary(T0 + 132_000, 0, None);
        assert_eq!(s.size_held, Some(0.8));
        assert_eq!((s.stamped, s.unstamped, s.backwards, s.last_frame_no), (2, 1, 1, Some(11)));
    }

    #[test]
    fn nothing_shown_gives_no_figures_but_zeroes() {
        let s = CallQuality::new(VGA30).summary(T0, 5_000, None);
        assert_eq!((s.frames, s.fps, s.kbps, s.freezes), (0, 0.0, 0.0, 0));
        assert_eq!((s.setup_ms, s.g2g_p50_ms, s.size_held, s.last_frame_no), (None, None, None, None));
    }

    #[test]
    fn rtt_percentiles_come_from_the_seconds_that_measured_one() {
        let mut q = CallQuality::new(VGA30);
        for rtt in [Some(50.0), None, Some(52.0), Some(0.0), Some(90.0), Some(51.0)] {
            q.second(&CallStats { rtt_ms: rtt, ..CallStats::default() });
        }
        let s = q.summary(T0, 0, None);
        assert_eq!((s.rtt_p50_ms, s.rtt_p95_ms), (Some(51.0), Some(90.0)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 95.0), Some(95.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn a_summary_line_reads_back_as_printed() {
        let mut q = CallQuality::new(VGA30);
        q.clicked(T0 - 812_000);
        for n in 0..10u32 {
            q.frame(&shown(n as u64 * 33, n, (n as u64 * 33).saturating_sub(25)));
        }
        q.second(&CallStats { rtt_ms: Some(50.4), ..CallStats::default() });
        for summary in
            [q.summary(T0 + 500_000, 9_000, Some(1_500)), CallQuality::new(VGA30).summary(T0, 0, None)]
        {
            let line = format!("summary: {summary}");
            let back = QualitySummary::parse(&line).expect("parses");
            assert_eq!(back.to_string(), summary.to_string(), "{line}");
            assert_eq!(
                (back.frames, back.freezes, back.setup_ms.is_some()),
                (summary.frames, summary.freezes, summary.setup_ms.is_some())
            );
        }
        assert_eq!(QualitySummary::parse("summary: fps=3"), Err(ParseError::Missing("setup_ms")));
        let bad = q.summary(T0, 0, None).to_string().replace("fps=", "fps=x");
        assert!(matches!(QualitySummary::parse(&bad), Err(ParseError::NotANumber { key: "fps", .. })));
    }
}
