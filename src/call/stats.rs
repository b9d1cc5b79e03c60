//! Call statistics: lock-free counters the media threads bump, and the once-a-second summary.

use super::media::MediaControls;
use super::rate::QualityLimitation;
use crate::media::codec::VideoCodec;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};
use webrtc::peer_connection::{PeerConnection, RTCStatsReportEntry, StatsSelector};

/// Counters shared by one call's media threads and tasks.
#[derive(Default, Debug)]
pub struct Counters {
    /// Video frames encoded and handed to the packetizer.
    pub frames_sent: AtomicU64,
    /// Of those, IDRs.
    pub keyframes_sent: AtomicU64,
    /// PLI/FIR received from the far side.
    pub keyframe_requests_received: AtomicU64,
    /// Encoded video bytes sent.
    pub video_bytes_sent: AtomicU64,
    /// Opus packets sent.
    pub audio_packets_sent: AtomicU64,
    /// Total encoder time, µs.
    pub encode_us: AtomicU64,
    /// Video frames decoded into pictures.
    pub frames_decoded: AtomicU64,
    /// Of those, keyframes.
    pub keyframes_decoded: AtomicU64,
    /// Frames the decoder rejected or the assembler gave up on.
    pub frames_lost: AtomicU64,
    /// PLIs we sent.
    pub plis_sent: AtomicU64,
    /// RTP payload bytes of video received.
    pub video_bytes_received: AtomicU64,
    /// Opus packets received and decoded.
    pub audio_packets_received: AtomicU64,
    /// Total decoder time (with RGBA conversion), µs.
    pub decode_us: AtomicU64,
    /// Width and height of the last decoded picture, packed `w << 32 | h`.
    pub last_resolution: AtomicU64,
    /// Glass-to-glass latency of the last decoded synthetic frame, µs (0 when the far end is no pattern).
    pub last_latency_us: AtomicU64,
    /// When the last picture was decoded (µs since the epoch), and the longest gap between two
    /// pictures since the last stats sample: the freeze a person would see.
    pub last_frame_at_us: AtomicU64,
    /// See `last_frame_at_us`; reset by each stats sample.
    pub max_frame_gap_us: AtomicU64,
    /// 20 ms audio frames lost on the way and rebuilt (Opus FEC) or concealed (PLC).
    pub audio_concealed: AtomicU64,
    /// The frame number of the last stamp read from a decoded picture, plus one (0: none yet).
    pub last_stamp: AtomicU64,
    /// Frames the video sender dropped because the pacer's queue was long (`call::rate`).
    pub frames_dropped_queue: AtomicU64,
    /// Frames the encoder's rate control skipped.
    pub frames_skipped_encoder: AtomicU64,
    /// The last frame's encode time, µs.
    pub last_encode_us: AtomicU64,
    /// Why the sent video is below the full picture ([`QualityLimitation::code`]).
    pub quality_limitation: AtomicU8,
    /// The video codec we send and the one we receive (one byte per codec; 0 until known).
    pub codec_out: AtomicU8,
    /// See `codec_out`.
    pub codec_in: AtomicU8,
    /// The delay the video playout clock adds beyond the path's base delay now, µs.
    pub playout_target_us: AtomicU64,
    /// The audio playout buffer's depth at the last pull, µs (0 with no playout running).
    pub audio_playout_us: AtomicU64,
    /// Times the audio playout ran dry so far (its own count, across calls).
    pub audio_underruns: AtomicU64,
}

/// A codec as one byte, for the counters (0: none yet).
fn codec_code(codec: Option<VideoCodec>) -> u8 {
    match codec {
        None => 0,
        Some(VideoCodec::H264) => 1,
        Some(VideoCodec::Vp8) => 2,
        Some(VideoCodec::Vp9) => 3,
    }
}

fn codec_of(code: u8) -> Option<VideoCodec> {
    [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Vp9].into_iter().find(|c| codec_code(Some(*c)) == code)
}

impl Counters {
    /// Notes a decoded picture at `now_us`, for the freeze figure.
    pub fn frame_shown(&self, now_us: u64) {
        let previous = self.last_frame_at_us.swap(now_us, Ordering::Relaxed);
        if previous != 0 {
            self.max_frame_gap_us.fetch_max(now_us.saturating_sub(previous), Ordering::Relaxed);
        }
    }
}

impl Counters {
    /// Notes the codec we send video with.
    pub fn set_codec_out(&self, codec: VideoCodec) {
        self.codec_out.store(codec_code(Some(codec)), Ordering::Relaxed);
    }

    /// Notes the codec the far side's video comes in.
    pub fn set_codec_in(&self, codec: VideoCodec) {
        self.codec_in.store(codec_code(Some(codec)), Ordering::Relaxed);
    }

    /// Notes why the sent video is limited.
    pub fn set_quality_limitation(&self, why: QualityLimitation) {
        self.quality_limitation.store(why.code(), Ordering::Relaxed);
    }

    /// The last frame's encode time, ms.
    pub fn last_encode_ms(&self) -> f64 {
        self.last_encode_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters that the per-second figures are differences of.
    fn rates(&self) -> RateCounters {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RateCounters {
            frames_sent: l(&self.frames_sent),
            bytes_sent: l(&self.video_bytes_sent),
            encode_us: l(&self.encode_us),
            frames_decoded: l(&self.frames_decoded),
            bytes_received: l(&self.video_bytes_received),
            decode_us: l(&self.decode_us),
        }
    }
}

/// What [`StatsMeter`] takes differences of, from one sample to the next.
#[derive(Clone, Copy, Debug, Default)]
struct RateCounters {
    frames_sent: u64,
    bytes_sent: u64,
    encode_us: u64,
    frames_decoded: u64,
    bytes_received: u64,
    decode_us: u64,
}

/// One second of a call, as the stats line and the window's overlay show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallStats {
    /// The video codec we send with, once known.
    pub codec_out: Option<VideoCodec>,
    /// The video codec we receive, once known.
    pub codec_in: Option<VideoCodec>,
    /// Video frames sent per second.
    pub fps_out: f64,
    /// Video frames decoded per second.
    pub fps_in: f64,
    /// Video bitrate sent, kbit/s.
    pub kbps_out: f64,
    /// Video bitrate received, kbit/s.
    pub kbps_in: f64,
    /// Round-trip time of the selected candidate pair, ms.
    pub rtt_ms: Option<f64>,
    /// The type of our side of the selected candidate pair: `host`, `srflx`, `prflx` or `relay`.
    pub path: Option<String>,
    /// Packets lost on the way to us (cumulative, all streams).
    pub packets_lost: i64,
    /// Size of the received picture.
    pub resolution_in: Option<(u32, u32)>,
    /// Mean encode time per frame in the last second, ms.
    pub encode_ms: f64,
    /// Mean decode time per frame in the last second, ms.
    pub decode_ms: f64,
    /// Glass-to-glass latency of the last synthetic frame, ms.
    pub latency_ms: Option<f64>,
    /// Longest gap between two decoded pictures in the last second, ms (a freeze when large).
    pub max_frame_gap_ms: f64,
    /// Audio frames rebuilt by FEC or concealed so far.
    pub audio_concealed: u64,
    /// The encoder's target from the congestion controller (capped at the picture's natural rate), kbit/s.
    pub target_kbps: Option<f64>,
    /// The congestion controller's estimate of the path (uncapped), kbit/s.
    pub estimate_kbps: Option<f64>,
    /// What the far side acknowledged receiving lately (TWCC), kbit/s.
    pub acked_kbps: Option<f64>,
    /// The pacer's queue, ms to drain.
    pub pacer_queue_ms: f64,
    /// Overuse events (the path's queue grew) so far.
    pub overuses: u64,
    /// Retransmissions the pacer shed over its repair budget so far.
    pub repairs_shed: u64,
    /// Frames dropped at the sender behind a long pacer queue so far.
    pub frames_dropped_queue: u64,
    /// Frames the encoder's rate control skipped so far.
    pub frames_skipped_encoder: u64,
    /// Why the sent video is below the full picture, as browsers say it.
    pub quality_limitation: QualityLimitation,
    /// Totals since the call started: keyframes sent, keyframe requests received, PLIs sent,
    /// frames decoded, keyframes decoded, frames lost, audio packets in.
    pub keyframes_sent: u64,
    /// PLI/FIR received so far.
    pub keyframe_requests_received: u64,
    /// PLIs sent so far.
    pub plis_sent: u64,
    /// Frames decoded so far.
    pub frames_decoded: u64,
    /// Keyframes decoded so far.
    pub keyframes_decoded: u64,
    /// Frames lost so far.
    pub frames_lost: u64,
    /// Opus packets received so far.
    pub audio_packets_in: u64,
    /// Loss recovery so far: retransmissions we sent (packets, bytes), RTX packets received, and
    /// of those the ones that filled a hole.
    pub rtx_packets_sent: u64,
    /// See `rtx_packets_sent`.
    pub rtx_bytes_sent: u64,
    /// See `rtx_packets_sent`.
    pub rtx_received: u64,
    /// Bytes of the RTX packets received (RTP payload with the OSN).
    pub rtx_bytes_received: u64,
    /// See `rtx_packets_sent`.
    pub rtx_repaired: u64,
    /// Packets we asked for again (NACK), each ask counted.
    pub nacked_packets: u64,
    /// The round trip measured from RTCP that NACK and the frame wait are timed from, ms.
    pub rtcp_rtt_ms: Option<f64>,
    /// The frame number of the last stamp read from a decoded picture (synthetic sources).
    pub last_stamp: Option<u32>,
    /// The delay the video playout clock adds to ride out jitter and repairs, ms.
    pub video_playout_ms: f64,
    /// The audio playout buffer's depth, ms (`None` with no playout running).
    pub audio_playout_ms: Option<f64>,
    /// Times the audio playout ran dry (its own count, across calls).
    pub audio_underruns: u64,
}

impl fmt::Display for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out {:.0} fps {:.0} kbit/s", self.fps_out, self.kbps_out)?;
        if let Some(target) = self.target_kbps {
            write!(f, " (target {target:.0})")?;
        }
        write!(f, " | in {:.0} fps {:.0} kbit/s", self.fps_in, self.kbps_in)?;
        if let Some((w, h)) = self.resolution_in {
            write!(f, " {w}x{h}")?;
        }
        match self.rtt_ms {
            Some(rtt) => write!(f, " | rtt {rtt:.1} ms")?,
            None => write!(f, " | rtt -")?,
        }
        if let Some(path) = &self.path {
            write!(f, " via {path}")?;
        }
        write!(f, " | lost {} pkts", self.packets_lost)?;
        if let Some(l) = self.latency_ms {
            write!(f, " | glass-to-glass {l:.0} ms")?;
        }
        write!(f, " | max gap {:.0} ms | audio concealed {}", self.max_frame_gap_ms, self.audio_concealed)?;
        write!(f, " | enc {:.1} ms dec {:.1} ms", self.encode_ms, self.decode_ms)?;
        let name = |c: Option<VideoCodec>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
        write!(f, " | codec out {} in {}", name(self.codec_out), name(self.codec_in))?;
        write!(
            f,
            " | rtx sent {} pkts {:.0} kB | rtx in {} repaired {} | nack {}",
            self.rtx_packets_sent,
            self.rtx_bytes_sent as f64 / 1000.0,
            self.rtx_received,
            self.rtx_repaired,
            self.nacked_packets
        )?;
        match self.rtcp_rtt_ms {
            Some(rtt) => write!(f, " | rtcp rtt {rtt:.0} ms")?,
            None => write!(f, " | rtcp rtt -")?,
        }
        write!(f, " | pli sent {}", self.plis_sent)?;
        write!(f, " | playout video {:.0} ms", self.video_playout_ms)?;
        if let Some(audio) = self.audio_playout_ms {
            write!(f, " audio {audio:.0} ms ({} dry)", self.audio_underruns)?;
        }
        if let Some(stamp) = self.last_stamp {
            write!(f, " | stamp {stamp}")?;
        }
        let kbps = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        write!(
            f,
            " | cc estimate {} acked {} kbit/s pacer {:.0} ms overuse {} rtx shed {} dropped {} skipped {} limited {}",
            kbps(self.estimate_kbps),
            kbps(self.acked_kbps),
            self.pacer_queue_ms,
            self.overuses,
            self.repairs_shed,
            self.frames_dropped_queue,
            self.frames_skipped_encoder,
            self.quality_limitation.as_str()
        )?;
        Ok(())
    }
}

/// Turns successive counter snapshots into per-second figures.
#[derive(Default)]
pub struct StatsMeter {
    last: Option<(RateCounters, Instant)>,
}

impl StatsMeter {
    /// Figures since the previous call (the first call reports since the call started); the
    /// encoder's target comes from the call's `controls`.
    pub fn sample(&mut self, counters: &Counters, controls: &MediaControls) -> CallStats {
        let now = Instant::now();
        let cur = counters.rates();
        let (prev, then) = self.last.unwrap_or((RateCounters::default(), now - Duration::from_secs(1)));
        self.last = Some((cur, now));
        let secs = now.duration_since(then).as_secs_f64().max(1e-3);
        let d = |f: fn(&RateCounters) -> u64| f(&cur).saturating_sub(f(&prev)) as f64;
        let (frames_out, frames_in) = (d(|c| c.frames_sent), d(|c| c.frames_decoded));
        let per_frame_ms = |us: f64, frames: f64| if frames > 0.0 { us / frames / 1000.0 } else { 0.0 };
        let total = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let res = counters.last_resolution.load(Ordering::Relaxed);
        let latency = counters.last_latency_us.load(Ordering::Relaxed);
        let cc = controls.congestion.figures();
        CallStats {
            codec_out: codec_of(counters.codec_out.load(Ordering::Relaxed)),
            codec_in: codec_of(counters.codec_in.load(Ordering::Relaxed)),
            fps_out: frames_out / secs,
            fps_in: frames_in / secs,
            kbps_out: d(|c| c.bytes_sent) * 8.0 / 1000.0 / secs,
            kbps_in: d(|c| c.bytes_received) * 8.0 / 1000.0 / secs,
            rtt_ms: None,
            path: None,
            packets_lost: 0,
            resolution_in: (res != 0).then_some(((res >> 32) as u32, res as u32)),
            encode_ms: per_frame_ms(d(|c| c.encode_us), frames_out),
            decode_ms: per_frame_ms(d(|c| c.decode_us), frames_in),
            latency_ms: (latency != 0).then(|| latency as f64 / 1000.0),
            max_frame_gap_ms: counters.max_frame_gap_us.swap(0, Ordering::Relaxed) as f64 / 1000.0,
            audio_concealed: counters.audio_concealed.load(Ordering::Relaxed),
            target_kbps: match controls.target_bitrate_bps.load(Ordering::Relaxed) {
                0 => None,
                bps => Some(bps as f64 / 1000.0),
            },
            estimate_kbps: (cc.target_bps > 0).then(|| cc.target_bps as f64 / 1000.0),
            acked_kbps: (cc.acked_bps > 0).then(|| cc.acked_bps as f64 / 1000.0),
            pacer_queue_ms: cc.queue_ms,
            overuses: cc.overuses,
            repairs_shed: cc.repairs_shed,
            frames_dropped_queue: total(&counters.frames_dropped_queue),
            frames_skipped_encoder: total(&counters.frames_skipped_encoder),
            quality_limitation: QualityLimitation::from_code(
                counters.quality_limitation.load(Ordering::Relaxed),
            ),
            keyframes_sent: total(&counters.keyframes_sent),
            keyframe_requests_received: total(&counters.keyframe_requests_received),
            plis_sent: total(&counters.plis_sent),
            frames_decoded: cur.frames_decoded,
            keyframes_decoded: total(&counters.keyframes_decoded),
            frames_lost: total(&counters.frames_lost),
            audio_packets_in: total(&counters.audio_packets_received),
            rtx_packets_sent: total(&controls.recovery.retransmitted_packets),
            rtx_bytes_sent: total(&controls.recovery.retransmitted_bytes),
            rtx_received: total(&controls.recovery.rtx_received),
            rtx_bytes_received: total(&controls.recovery.rtx_bytes_received),
            rtx_repaired: total(&controls.recovery.rtx_repaired),
            nacked_packets: total(&controls.recovery.nacked_packets),
            rtcp_rtt_ms: controls.recovery.measured_rtt().map(|d| d.as_secs_f64() * 1000.0),
            last_stamp: match counters.last_stamp.load(Ordering::Relaxed) {
                0 => None,
                n => Some((n - 1) as u32),
            },
            video_playout_ms: counters.playout_target_us.load(Ordering::Relaxed) as f64 / 1000.0,
            audio_playout_ms: match counters.audio_playout_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(us as f64 / 1000.0),
            },
            audio_underruns: total(&counters.audio_underruns),
        }
    }
}

/// Adds what only the peer connection knows to `stats`: the selected pair's round trip and kind
/// (direct or relayed) and the packets lost on the way in. The engine's one task must never wedge
/// on a stats call, so a report slower than 300 ms is skipped (`stats` keeps its counters' figures).
pub async fn add_transport_stats(pc: &dyn PeerConnection, stats: &mut CallStats) {
    let report =
        tokio::time::timeout(Duration::from_millis(300), pc.get_stats(Instant::now(), StatsSelector::None));
    let Ok(report) = report.await else {
        tracing::warn!("the peer connection's stats took over 300 ms; skipped");
        return;
    };
    for entry in report.iter() {
        match entry {
            RTCStatsReportEntry::Transport(transport) => {
                let Some(RTCStatsReportEntry::IceCandidatePair(pair)) =
                    report.get(&transport.selected_candidate_pair_id)
                else {
                    continue;
                };
                stats.rtt_ms = Some(pair.current_round_trip_time * 1000.0);
                // webrtc 0.21 names the pair's candidate `candidate:X` but files the candidate's
                // own stats under `RTCLocalIceCandidate_candidate:X`.
                let id = &pair.local_candidate_id;
                let local = report.get(id).or_else(|| report.get(&format!("RTCLocalIceCandidate_{id}")));
                if let Some(RTCStatsReportEntry::LocalCandidate(local)) = local {
                    stats.path = Some(local.candidate_type.to_string());
                }
            }
            RTCStatsReportEntry::InboundRtp(inbound) => {
                // Retransmissions are counted by our RTX tap (`call::recovery`): it unwraps RTX
                // before the crate would count it.
                stats.packets_lost += inbound.received_rtp_stream_stats.packets_lost;
            }
            _ => {}
        }
    }
}
