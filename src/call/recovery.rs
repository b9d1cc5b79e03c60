//! Loss recovery the way browsers do it (issue 12): NACK timed from the measured round trip, RTX
//! (RFC 4588) both ways, and the figures of it for the stats line.
//!
//! Two interceptors replace or complete what `rtc-interceptor` 0.21.1 has:
//!
//! - [`RttNackGenerator`] stands in for the crate's `NackGeneratorInterceptor`, which asks for every
//!   missing packet on a fixed timer (100 ms by default) whatever the path's round trip: on a 50 ms
//!   round trip a lost packet waits up to 100 ms for its first NACK, and is asked for again before its
//!   retransmission could have come back on longer paths. Ours asks as soon as a gap shows, asks
//!   again only one round trip (plus a margin) after the last ask, a bounded number of times, and
//!   measures the round trip itself from RTCP (our sender reports echoed in the far side's reception
//!   reports: LSR/DLSR, RFC 3550 §6.4.1).
//! - [`RtxTap`] turns an RTX packet back into the packet it repairs (OSN and payload onto the media
//!   stream, RFC 4588 §4) *before* the NACK generator and the reception statistics see it. The crate
//!   does undo RTX, but only in its endpoint, after the whole interceptor chain: its NACK generator
//!   never sees a repaired packet on the media SSRC, so it asks for the same packet again on every tick
//!   until its per-packet limit (measured in `tests::the_crates_generator_asks_again_for_a_repaired_packet`).
//!   The tap also counts retransmissions sent and RTX packets received and repaired.
//!
//! Both are shaped as upstream patches would be: self-contained interceptors at the crate's slots.

use rtc::interceptor::{Attribute, Interceptor, Packet as InterceptorPacket, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::shared::TransportContext;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The round trip assumed until one is measured (libwebrtc's default too).
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// How often one lost packet is asked for at most: enough to repair random loss on a clean path,
/// bounded so that loss from congestion cannot feed itself with retransmissions (on the veth tests
/// ten let retransmissions choke a 200 kbit/s bottleneck).
pub const NACKS_PER_PACKET: u16 = 5;

/// A missing packet older than this is not asked for any more: no frame waits that long for it.
const MAX_NACK_AGE: Duration = Duration::from_millis(1_000);

/// A gap that follows a silence longer than this (an outage, a stalled path) is not asked for at
/// all: its packets were sent that long ago, the frames they carry are stale, and repairing them
/// would replay seconds-old pictures (after a 3 s outage, 3.5 s glass-to-glass) before the live
/// ones; the receiver asks for a keyframe instead.
const MAX_GAP_AGE: Duration = Duration::from_millis(500);

/// Packets the sender keeps for retransmission (the crate's NACK responder's default, 1024):
/// a hole further back than that cannot be repaired, and asking for it is wasted.
pub const SENDER_HISTORY: u64 = 1024;

/// The margin on top of a round trip for the far side to answer and for the path's jitter.
fn margin(rtt: Duration) -> Duration {
    (rtt / 4).max(Duration::from_millis(20))
}

/// How long after the last NACK for a packet it is asked for again: one round trip and a margin,
/// so a retransmission on its way is not asked for twice.
pub fn nack_retry_interval(rtt: Duration) -> Duration {
    rtt + margin(rtt)
}

/// How long a frame with a hole waits for its repair before it is given up (and a keyframe asked
/// for): two retransmission rounds, i.e. twice the round trip, the far side's answer and the path's
/// jitter. One round was not enough on lossy paths: a retransmission is lost as often as the
/// original (10 % on the 10 %-loss netpath test), and each such frame became a keyframe recovery of
/// ~700 ms; a second round freezes ~250 ms at most and keeps the stream going. At least 80 ms (a
/// packet's ask and answer cost a few milliseconds of processing each way even on a LAN), at most
/// 800 ms (past that a keyframe is the faster repair).
pub fn frame_wait(rtt: Duration) -> Duration {
    (2 * nack_retry_interval(rtt) + Duration::from_millis(30))
        .clamp(Duration::from_millis(80), Duration::from_millis(800))
}

/// The least time between two keyframe requests we send, and between two keyframes the camera sends
/// in answer (libwebrtc's minimum keyframe send interval is 300 ms too).
pub const MIN_KEYFRAME_SPACING: Duration = Duration::from_millis(300);

/// How long after sending a keyframe the sender takes a keyframe request as asked before that
/// keyframe could have arrived: the request's round trip, plus the time the keyframe takes to leave
/// at the target. Answering those made a storm on a deep drop (RTT 600 ms, PLIs every 300 ms: a new
/// keyframe, each seconds long at 60 kbit/s, before the last one was through, and none arrived
/// whole). The far side asks again if it still has none.
///
/// Not the time the pacer's queue takes to drain: a keyframe supersedes the video and repairs that
/// wait there (see `congestion::pacer`), so only audio goes ahead of it. Counted in, at a deep drop
/// the queue of old 640x480 frames (about to be superseded) made the window 3 s; the 160x120
/// keyframe was lost in the link's overflowing queue, and the far side's requests went unanswered
/// for those 3 s.
pub fn keyframe_answered_for(rtt: Duration, keyframe_bytes: usize, target_bps: u32) -> Duration {
    let sending = Duration::from_secs_f64(keyframe_bytes as f64 * 8.0 / f64::from(target_bps.max(1)));
    (rtt + sending.min(Duration::from_secs(5))).max(MIN_KEYFRAME_SPACING)
}

/// How often the receiver asks for a keyframe while it needs one: once per round trip (a request
/// sooner asks again for the keyframe already on its way), at least [`MIN_KEYFRAME_SPACING`] apart.
pub fn keyframe_request_interval(rtt: Duration) -> Duration {
    rtt.max(MIN_KEYFRAME_SPACING)
}

/// What the recovery machinery measured and did, shared by the interceptors, the receive task and
/// the stats line. Lock-free: the interceptors run on the peer connection's task.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Smoothed RTCP round trip, µs (0 until measured).
    rtt_us: AtomicU64,
    /// Retransmissions sent (RTX or, to a peer without RTX, the packet again).
    pub retransmitted_packets: AtomicU64,
    /// Their bytes (RTP payload, with the OSN for RTX).
    pub retransmitted_bytes: AtomicU64,
    /// RTX packets received.
    pub rtx_received: AtomicU64,
    /// Their bytes (RTP payload, with the OSN).
    pub rtx_bytes_received: AtomicU64,
    /// Of those, the ones that filled a hole (not duplicates of a packet already here).
    pub rtx_repaired: AtomicU64,
    /// Packets we asked for (each ask of each packet counts).
    pub nacked_packets: AtomicU64,
    /// Missing packets we stopped asking for: asked too often, too old, or out of the sender's history.
    pub given_up_packets: AtomicU64,
}

impl Recovery {
    /// The measured round trip, if any yet.
    pub fn measured_rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The round trip to plan with: measured, or [`DEFAULT_RTT`].
    pub fn rtt(&self) -> Duration {
        self.measured_rtt().unwrap_or(DEFAULT_RTT)
    }

    fn set_rtt(&self, rtt: Duration) {
        self.rtt_us.store((rtt.as_micros() as u64).max(1), Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The round trip from RTCP (RFC 3550 §6.4.1): the middle 32 bits of the NTP time of each sender
/// report we send, and when it went; a reception report naming one (LSR) with the far side's delay
/// since (DLSR) gives `now - sent - DLSR`. Smoothed as TCP does (⅞ old, ⅛ new).
#[derive(Debug, Default)]
pub struct RttEstimator {
    sent: VecDeque<(u32, Instant)>,
    smoothed: Option<Duration>,
}

impl RttEstimator {
    /// Notes a sender report we send, by its 64-bit NTP time.
    pub fn on_sender_report_sent(&mut self, ntp_time: u64, now: Instant) {
        let middle = (ntp_time >> 16) as u32;
        self.sent.push_back((middle, now));
        while self.sent.len() > 16 {
            self.sent.pop_front();
        }
    }

    /// Takes a reception report's LSR and DLSR (1/65536 s); returns the smoothed round trip when
    /// the report names a sender report of ours.
    pub fn on_report(&mut self, lsr: u32, dlsr: u32, now: Instant) -> Option<Duration> {
        if lsr == 0 {
            return None; // the far side has no sender report of ours yet
        }
        let &(_, sent) = self.sent.iter().find(|(middle, _)| *middle == lsr)?;
        let held = Duration::from_micros(u64::from(dlsr) * 1_000_000 / 65_536);
        let sample = now.checked_duration_since(sent)?.checked_sub(held)?;
        let smoothed = match self.smoothed {
            None => sample,
            Some(old) => (old * 7 + sample) / 8,
        };
        self.smoothed = Some(smoothed);
        Some(smoothed)
    }
}

/// One missing packet: when its gap showed, when it was last asked for and how often.
#[derive(Clone, Copy, Debug)]
struct Missing {
    since: Instant,
    last_ask: Option<Instant>,
    asks: u16,
}

/// Which packets of one stream are missing and when each is due to be asked for. Pure: packets and
/// `now` in, sequence numbers to NACK out.
#[derive(Debug, Default)]
pub struct NackSchedule {
    highest: Option<u64>,
    /// When the highest packet so far arrived: a gap after it was sent since then.
    highest_at: Option<Instant>,
    missing: BTreeMap<u64, Missing>,
    /// Packets given up since the last look (for the counters).
    given_up: u64,
}

impl NackSchedule {
    fn unwrap_seq(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1u64 << 32) + u64::from(seq),
            Some(highest) => {
                let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
                (highest as i64 + delta) as u64
            }
        }
    }

    /// Notes an arrival (original or repaired).
    pub fn on_packet(&mut self, now: Instant, seq: u16) {
        let ext = self.unwrap_seq(seq);
        let Some(highest) = self.highest else {
            self.highest = Some(ext);
            self.highest_at = Some(now);
            return;
        };
        if ext <= highest {
            self.missing.remove(&ext);
            return;
        }
        let silence = self.highest_at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.highest_at = Some(now);
        // Everything between the highest so far and this one is missing, but never more than the
        // sender still holds, and nothing from a silence too long to be worth repairing.
        let oldest_repairable =
            if silence > MAX_GAP_AGE { ext } else { (ext + 1).saturating_sub(SENDER_HISTORY) };
        let from = (highest + 1).max(oldest_repairable);
        self.given_up += from - (highest + 1);
        for s in from..ext {
            self.missing.insert(s, Missing { since: now, last_ask: None, asks: 0 });
        }
        self.highest = Some(ext);
        let before = self.missing.len();
        self.missing.retain(|s, _| *s >= oldest_repairable);
        self.given_up += (before - self.missing.len()) as u64;
    }

    /// The packets to ask for now (each one asked at once when its gap shows, then again every
    /// [`nack_retry_interval`] up to [`NACKS_PER_PACKET`] times and for at most [`MAX_NACK_AGE`]).
    pub fn due(&mut self, now: Instant, rtt: Duration) -> Vec<u16> {
        let retry = nack_retry_interval(rtt);
        let mut due = Vec::new();
        let mut given_up = 0;
        self.missing.retain(|&seq, m| {
            let exhausted = m.asks >= NACKS_PER_PACKET && m.last_ask.is_some_and(|l| now >= l + retry);
            if exhausted || now.duration_since(m.since) > MAX_NACK_AGE {
                given_up += 1;
                return false;
            }
            if m.asks < NACKS_PER_PACKET && m.last_ask.is_none_or(|l| now >= l + retry) {
                m.asks += 1;
                m.last_ask = Some(now);
                due.push(seq as u16);
            }
            true
        });
        self.given_up += given_up;
        due
    }

    /// When [`due`](Self::due) has something to do next, if ever.
    pub fn next_deadline(&self, rtt: Duration) -> Option<Instant> {
        let retry = nack_retry_interval(rtt);
        self.missing
            .values()
            .map(|m| match m.last_ask {
                None => m.since,
                Some(l) => (l + retry).min(m.since + MAX_NACK_AGE),
            })
            .min()
    }

    /// Packets missing now.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    fn take_given_up(&mut self) -> u64 {
        std::mem::take(&mut self.given_up)
    }
}

/// The NACK generator, timed from the round trip (see the module docs). At `Slot::NackGenerator`.
pub struct RttNackGenerator {
    recovery: std::sync::Arc<Recovery>,
    rtt: RttEstimator,
    sender_ssrc: u32,
    streams: HashMap<u32, NackSchedule>,
    /// RTX SSRCs of remote streams: the crate binds them as streams of their own, but their gaps
    /// are not ours to ask for (the sender resends media packets, not retransmissions).
    rtx_ssrcs: HashSet<u32>,
    /// Our own streams' SSRCs: reception reports about them carry the round trip.
    local_ssrcs: HashSet<u32>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RttNackGenerator {
    /// A generator publishing what it measures and does to `recovery`.
    pub fn new(recovery: std::sync::Arc<Recovery>) -> Self {
        Self {
            recovery,
            rtt: RttEstimator::default(),
            sender_ssrc: rand::random(),
            streams: HashMap::new(),
            rtx_ssrcs: HashSet::new(),
            local_ssrcs: HashSet::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn take_reports(&mut self, reports: &[ReceptionReport], now: Instant) {
        for r in reports.iter().filter(|r| self.local_ssrcs.contains(&r.ssrc)) {
            if let Some(rtt) = self.rtt.on_report(r.last_sender_report, r.delay, now) {
                self.recovery.set_rtt(rtt);
            }
        }
    }
}

fn supports_nack(info: &StreamInfo) -> bool {
    info.rtcp_feedback.iter().any(|fb| fb.typ == "nack" && fb.parameter.is_empty())
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for RttNackGenerator {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            InterceptorPacket::Rtp(p) => {
                if let Some(schedule) = self.streams.get_mut(&p.header.ssrc) {
                    schedule.on_packet(msg.now, p.header.sequence_number);
                }
            }
            InterceptorPacket::Rtcp(packets) => {
                let now = msg.now;
                for packet in packets {
                    let any = packet.as_any();
                    if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                        self.take_reports(&rr.reports, now);
                    } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                        self.take_reports(&sr.reports, now);
                    }
                }
            }
            _ => {}
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                if let Some(sr) = packet.as_any().downcast_ref::<SenderReport>() {
                    self.rtt.on_sender_report_sent(sr.ntp_time, msg.now);
                }
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        let rtt = self.recovery.rtt();
        for (&ssrc, schedule) in self.streams.iter_mut() {
            let due = schedule.due(now, rtt);
            Recovery::add(&self.recovery.given_up_packets, schedule.take_given_up());
            if due.is_empty() {
                continue;
            }
            Recovery::add(&self.recovery.nacked_packets, due.len() as u64);
            let nack = TransportLayerNack {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: ssrc,
                nacks: nack_pairs_from_sequence_numbers(&due),
            };
            self.write.push_back(TaggedPacket {
                now,
                transport: TransportContext::default(),
                message: rtc::interceptor::AttributedPacket::new(InterceptorPacket::Rtcp(vec![Box::new(
                    nack,
                )])),
            });
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        let rtt = self.recovery.rtt();
        self.streams.values().filter_map(|s| s.next_deadline(rtt)).min()
    }
}

impl Interceptor for RttNackGenerator {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_ssrcs.insert(rtx);
            self.streams.remove(&rtx);
        }
        if supports_nack(info) && !self.rtx_ssrcs.contains(&info.ssrc) {
            self.streams.entry(info.ssrc).or_default();
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.local_ssrcs.insert(info.ssrc);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local_ssrcs.remove(&info.ssrc);
    }
}

/// Which packets of one stream have arrived, over the last [`SENDER_HISTORY`] sequence numbers: an
/// RTX packet for one that has not is a repair, for one that has a duplicate.
#[derive(Debug)]
struct Arrivals {
    highest: Option<u64>,
    seen: Vec<bool>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self { highest: None, seen: vec![false; SENDER_HISTORY as usize] }
    }
}

impl Arrivals {
    /// Notes `seq`; whether it is new (not here before, and not too old to tell).
    fn note(&mut self, seq: u16) -> bool {
        let n = SENDER_HISTORY;
        let Some(highest) = self.highest else {
            let ext = (1u64 << 32) + u64::from(seq);
            self.highest = Some(ext);
            self.seen[(ext % n) as usize] = true;
            return true;
        };
        let ext = (highest as i64 + i64::from(seq.wrapping_sub(highest as u16) as i16)) as u64;
        if ext > highest {
            // The window slides: forget what it passes, and note this one.
            for s in (highest + 1).max((ext + 1).saturating_sub(n))..ext {
                self.seen[(s % n) as usize] = false;
            }
            self.seen[(ext % n) as usize] = true;
            self.highest = Some(ext);
            return true;
        }
        if ext + n <= highest {
            return false; // too old to know
        }
        let slot = &mut self.seen[(ext % n) as usize];
        !std::mem::replace(slot, true)
    }
}

/// One remote stream's RTX association, from the SDP (`a=ssrc-group:FID`, `apt=`).
#[derive(Debug)]
struct RtxStream {
    primary_ssrc: u32,
    primary_payload_type: u8,
    rtx_payload_type: u8,
}

/// Undoes RTX on arrival and counts retransmissions both ways (see the module docs). At a slot
/// between the pacer and the NACK responder (3_500): on the read leg it comes before the NACK
/// generator (7_000) and the reports, on the write leg after the responder (4_000) has made its
/// retransmissions.
pub struct RtxTap {
    recovery: std::sync::Arc<Recovery>,
    rtx: HashMap<u32, RtxStream>,
    arrivals: HashMap<u32, Arrivals>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

/// Where [`RtxTap`] sits in the interceptor chain.
pub const RTX_TAP_SLOT: usize = 3_500;

impl RtxTap {
    /// A tap counting into `recovery`.
    pub fn new(recovery: std::sync::Arc<Recovery>) -> Self {
        Self {
            recovery,
            rtx: HashMap::new(),
            arrivals: HashMap::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

/// RFC 4588 §4: the packet an RTX packet carries, on the stream it repairs; `None` for one without
/// an OSN (a padding-only probe), which carries nothing.
pub fn unwrap_rtx(
    mut packet: rtc::rtp::packet::Packet,
    primary_ssrc: u32,
    primary_payload_type: u8,
) -> Option<rtc::rtp::packet::Packet> {
    if packet.payload.len() < 2 {
        return None;
    }
    packet.header.sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
    packet.header.ssrc = primary_ssrc;
    packet.header.payload_type = primary_payload_type;
    packet.header.padding = false;
    packet.payload = packet.payload.slice(2..);
    Some(packet)
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for RtxTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtp(p) = &mut msg.message.packet {
            let ssrc = p.header.ssrc;
            if let Some(rtx) = self.rtx.get(&ssrc).filter(|r| r.rtx_payload_type == p.header.payload_type) {
                Recovery::add(&self.recovery.rtx_received, 1);
                Recovery::add(&self.recovery.rtx_bytes_received, p.payload.len() as u64);
                let (primary_ssrc, primary_pt) = (rtx.primary_ssrc, rtx.primary_payload_type);
                let Some(original) = unwrap_rtx(std::mem::take(p), primary_ssrc, primary_pt) else {
                    return Ok(()); // a probe: nothing to deliver
                };
                if self.arrivals.entry(primary_ssrc).or_default().note(original.header.sequence_number) {
                    Recovery::add(&self.recovery.rtx_repaired, 1);
                }
                *p = original;
            } else if let Some(arrivals) = self.arrivals.get_mut(&ssrc) {
                arrivals.note(p.header.sequence_number);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtp(p) = &msg.message.packet {
            if msg.message.has(&Attribute::Retransmission) {
                Recovery::add(&self.recovery.retransmitted_packets, 1);
                Recovery::add(&self.recovery.retransmitted_bytes, p.payload.len() as u64);
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for RtxTap {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let (Some(rtx_ssrc), Some(rtx_payload_type)) = (info.ssrc_rtx, info.payload_type_rtx) {
            self.rtx.insert(
                rtx_ssrc,
                RtxStream {
                    primary_ssrc: info.ssrc,
                    primary_payload_type: info.payload_type,
                    rtx_payload_type,
                },
            );
            self.arrivals.entry(info.ssrc).or_default();
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx.remove(&rtx);
        }
        self.arrivals.remove(&info.ssrc);
    }
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, NackGeneratorBuilder, RTCPFeedback};
    use rtc::rtp::header::Header;
    use rtc::sansio::Protocol;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_keyframe_answers_the_requests_sent_before_it_could_arrive() {
        // Deep drop: 600 ms round trip, a 4.5 kB keyframe at 60 kbit/s (600 ms).
        assert_eq!(keyframe_answered_for(600 * MS, 4_500, 60_000), 1_200 * MS);
        // A clean LAN: the floor.
        assert_eq!(keyframe_answered_for(2 * MS, 20_000, 2_500_000), MIN_KEYFRAME_SPACING);
        // No target yet, or an absurd keyframe: bounded, no panic.
        assert!(keyframe_answered_for(100 * MS, 1 << 30, 0) <= 5_100 * MS);
        assert_eq!(keyframe_request_interval(50 * MS), MIN_KEYFRAME_SPACING);
        assert_eq!(keyframe_request_interval(650 * MS), 650 * MS);
    }

    #[test]
    fn a_gap_is_asked_for_at_once_and_again_only_after_a_round_trip() {
        let (t, rtt) = (Instant::now(), 50 * MS);
        let mut s = NackSchedule::default();
        s.on_packet(t, 10);
        s.on_packet(t, 13); // 11 and 12 lost
        assert_eq!(s.next_deadline(rtt), Some(t), "due at once");
        assert_eq!(s.due(t, rtt), vec![11, 12]);
        assert!(s.due(t + 30 * MS, rtt).is_empty(), "the retransmission may be on its way");
        assert_eq!(s.next_deadline(rtt), Some(t + nack_retry_interval(rtt)));
        s.on_packet(t + 55 * MS, 11); // repaired
        assert_eq!(s.due(t + nack_retry_interval(rtt), rtt), vec![12], "only what is still missing");
        assert_eq!(nack_retry_interval(rtt), 70 * MS, "50 ms + 20 ms margin");
        assert_eq!(nack_retry_interval(400 * MS), 500 * MS, "a quarter of a long round trip");
    }

    #[test]
    fn asks_are_bounded_in_number_and_age() {
        let (t, rtt) = (Instant::now(), 50 * MS);
        let mut s = NackSchedule::default();
        s.on_packet(t, 1);
        s.on_packet(t, 3);
        let mut asks = 0;
        let mut now = t;
        while now < t + 2 * MAX_NACK_AGE {
            asks += s.due(now, rtt).len();
            now += 10 * MS;
        }
        assert_eq!(asks, usize::from(NACKS_PER_PACKET));
        assert_eq!((s.missing(), s.take_given_up()), (0, 1), "given up once asked enough");
        // A slow path: five asks 1.3 s apart would outlive the age limit.
        let mut s = NackSchedule::default();
        s.on_packet(t, 1);
        s.on_packet(t, 3);
        let mut asks = 0;
        let mut now = t;
        while now < t + 3 * MAX_NACK_AGE {
            asks += s.due(now, Duration::from_millis(1_000)).len();
            now += 10 * MS;
        }
        assert_eq!(asks, 1, "after 1 s nobody waits for it");
        assert_eq!(s.next_deadline(Duration::from_millis(1_000)), None);
    }

    #[test]
    fn a_gap_after_an_outage_is_not_asked_for() {
        let t0 = Instant::now();
        let mut schedule = NackSchedule::default();
        schedule.on_packet(t0, 100);
        // Two seconds of nothing, then the stream resumes 300 packets on: stale, not repaired.
        schedule.on_packet(t0 + MS * 2_000, 400);
        assert_eq!(schedule.missing(), 0);
        assert!(schedule.due(t0 + MS * 2_000, MS * 50).is_empty());
        assert_eq!(schedule.take_given_up(), 299);
        // A short gap right after is asked for as usual.
        schedule.on_packet(t0 + MS * 2_010, 403);
        assert_eq!(schedule.due(t0 + MS * 2_010, MS * 50), vec![401, 402]);
    }

    #[test]
    fn holes_beyond_the_senders_history_are_not_asked_for() {
        let t = Instant::now();
        let mut s = NackSchedule::default();
        s.on_packet(t, 65_000);
        s.on_packet(t, 65_000u16.wrapping_add(3_001)); // an outage: 3,000 lost, across the wrap
        assert_eq!(s.missing() as u64, SENDER_HISTORY - 1);
        assert_eq!(s.take_given_up(), 3_000 - (SENDER_HISTORY - 1));
        s.on_packet(t, 65_001); // an ancient one turning up changes nothing
        assert_eq!(s.missing() as u64, SENDER_HISTORY - 1);
    }

    #[test]
    fn the_frame_wait_is_two_retransmission_rounds() {
        assert_eq!(frame_wait(50 * MS), 170 * MS, "2 × (50 ms + 20 ms) + 30 ms");
        assert_eq!(frame_wait(MS), 80 * MS, "a LAN still allows a round");
        assert_eq!(frame_wait(200 * MS), 530 * MS);
        assert_eq!(frame_wait(Duration::from_secs(2)), 800 * MS, "past that a keyframe is faster");
        assert!(frame_wait(50 * MS) > 2 * nack_retry_interval(50 * MS), "the second repair can arrive");
    }

    #[test]
    fn the_round_trip_comes_from_lsr_and_dlsr() {
        let t = Instant::now();
        let mut e = RttEstimator::default();
        let ntp: u64 = 0x1234_5678_9abc_def0;
        e.on_sender_report_sent(ntp, t);
        let lsr = (ntp >> 16) as u32;
        // The far side held it 20 ms (1310.72 units of 1/65536 s); it came back 70 ms after it left.
        let rtt = e.on_report(lsr, 1311, t + 70 * MS).expect("a sample");
        assert!((rtt.as_secs_f64() - 0.050).abs() < 0.000_1, "{rtt:?}");
        assert_eq!(e.on_report(0, 0, t + 80 * MS), None, "no SR of ours seen yet");
        assert_eq!(e.on_report(lsr ^ 1, 0, t + 80 * MS), None, "not one of ours");
        let rtt = e.on_report(lsr, 1311, t + 150 * MS).expect("a sample");
        assert!((rtt.as_secs_f64() - 0.060).abs() < 0.000_1, "smoothed: {rtt:?}");
    }

    fn video_info(ssrc: u32, rtx: Option<(u32, u8)>) -> StreamInfo {
        StreamInfo {
            ssrc,
            payload_type: 96,
            ssrc_rtx: rtx.map(|r| r.0),
            payload_type_rtx: rtx.map(|r| r.1),
            clock_rate: 90_000,
            rtcp_feedback: vec![RTCPFeedback { typ: "nack".into(), parameter: "".into() }],
            ..Default::default()
        }
    }

    fn rtp(ssrc: u32, pt: u8, seq: u16, payload: &[u8]) -> rtc::rtp::packet::Packet {
        rtc::rtp::packet::Packet {
            header: Header {
                ssrc,
                payload_type: pt,
                sequence_number: seq,
                timestamp: 9,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(payload),
        }
    }

    fn tagged(now: Instant, p: rtc::rtp::packet::Packet) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(InterceptorPacket::Rtp(p)),
        }
    }

    /// An RTX packet for `seq` on `rtx_ssrc`, as the crate's responder makes them.
    fn rtx_of(rtx_ssrc: u32, rtx_seq: u16, seq: u16, payload: &[u8]) -> rtc::rtp::packet::Packet {
        let mut body = seq.to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        rtp(rtx_ssrc, 97, rtx_seq, &body)
    }

    /// The NACKed sequence numbers a generator wrote by `until`, stepping its timer every 10 ms.
    fn nacked(generator: &mut dyn Interceptor, from: Instant, until: Instant) -> Vec<u16> {
        let mut seqs = Vec::new();
        let mut now = from;
        while now <= until {
            generator.handle_timeout(now).expect("timeout");
            while let Some(out) = generator.poll_write() {
                if let InterceptorPacket::Rtcp(packets) = out.message.packet {
                    for p in packets {
                        if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                            for pair in &nack.nacks {
                                seqs.extend(pair.packet_list());
                            }
                        }
                    }
                }
            }
            now += 10 * MS;
        }
        seqs
    }

    /// The gap in rtc-interceptor 0.21.1 this module fills, measured: the crate undoes RTX only in
    /// its endpoint, after the chain, so its NACK generator never learns that a retransmission
    /// arrived and asks for the same packet again on each tick up to its limit.
    #[test]
    fn the_crates_generator_asks_again_for_a_repaired_packet() {
        let t = Instant::now();
        let mut generator = NackGeneratorBuilder::new().with_max_nacks_per_packet(NACKS_PER_PACKET).build();
        generator.bind_remote_stream(&video_info(1000, Some((2000, 97))));
        for seq in [1, 2, 4] {
            generator.handle_read(tagged(t, rtp(1000, 96, seq, &[seq as u8]))).expect("read");
        }
        let first = nacked(&mut generator, t, t + 100 * MS);
        assert_eq!(first, vec![3], "the crate asks for 3 on its first 100 ms tick");
        // 3 comes back as RTX, as the crate's own responder sends it.
        generator.handle_read(tagged(t + 150 * MS, rtx_of(2000, 0, 3, &[3]))).expect("read");
        while generator.poll_read().is_some() {}
        let again = nacked(&mut generator, t + 110 * MS, t + 1_000 * MS);
        assert_eq!(again.len(), usize::from(NACKS_PER_PACKET) - 1, "asked again though repaired: {again:?}");

        // With the tap before it, the repaired packet is on the media stream: nothing more is asked.
        let recovery = std::sync::Arc::new(Recovery::default());
        let mut tap = RtxTap::new(recovery.clone());
        let mut generator = NackGeneratorBuilder::new().with_max_nacks_per_packet(NACKS_PER_PACKET).build();
        for i in [&mut tap as &mut dyn Interceptor, &mut generator] {
            i.bind_remote_stream(&video_info(1000, Some((2000, 97))));
        }
        let mut through = |now: Instant, p: rtc::rtp::packet::Packet, generator: &mut dyn Interceptor| {
            tap.handle_read(tagged(now, p)).expect("tap");
            let out = tap.poll_read();
            if let Some(out) = out {
                generator.handle_read(out).expect("generator");
            }
            while generator.poll_read().is_some() {}
        };
        for seq in [1, 2, 4] {
            through(t, rtp(1000, 96, seq, &[seq as u8]), &mut generator);
        }
        assert_eq!(nacked(&mut generator, t, t + 100 * MS), vec![3]);
        through(t + 150 * MS, rtx_of(2000, 0, 3, &[3]), &mut generator);
        assert!(nacked(&mut generator, t + 110 * MS, t + 1_000 * MS).is_empty());
        assert_eq!(recovery.rtx_received.load(Ordering::Relaxed), 1);
        assert_eq!(recovery.rtx_repaired.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_tap_restores_the_original_and_tells_repairs_from_duplicates() {
        let t = Instant::now();
        let recovery = std::sync::Arc::new(Recovery::default());
        let mut tap = RtxTap::new(recovery.clone());
        tap.bind_remote_stream(&video_info(1000, Some((2000, 97))));
        let mut pass = |p| {
            tap.handle_read(tagged(t, p)).expect("tap");
            tap.poll_read().map(|out| match out.message.packet {
                InterceptorPacket::Rtp(p) => p,
                _ => panic!("not RTP"),
            })
        };
        pass(rtp(1000, 96, 65_535, b"a")).expect("media passes");
        pass(rtp(1000, 96, 1, b"c")).expect("media passes");
        let repaired = pass(rtx_of(2000, 7, 0, b"b")).expect("repaired");
        assert_eq!(
            (repaired.header.ssrc, repaired.header.payload_type, repaired.header.sequence_number),
            (1000, 96, 0)
        );
        assert_eq!(&repaired.payload[..], b"b");
        assert_eq!(repaired.header.timestamp, 9, "timestamp as sent");
        pass(rtx_of(2000, 8, 1, b"c")).expect("a duplicate still passes");
        assert!(pass(rtp(2000, 97, 9, &[])).is_none(), "a probe without OSN carries nothing");
        pass(rtp(3000, 97, 1, b"x")).expect("other streams untouched");
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!((l(&recovery.rtx_received), l(&recovery.rtx_repaired)), (3, 1));
    }

    #[test]
    fn our_generator_asks_per_round_trip_and_measures_it() {
        let t = Instant::now();
        let recovery = std::sync::Arc::new(Recovery::default());
        let mut g = RttNackGenerator::new(recovery.clone());
        g.bind_local_stream(&video_info(5, None));
        g.bind_remote_stream(&video_info(1000, Some((2000, 97))));
        g.bind_remote_stream(&StreamInfo { ssrc: 2000, ..video_info(2000, None) });
        // Our SR goes out; the far side's RR names it 60 ms later after holding it 10 ms: 50 ms.
        let ntp = 0x0000_1111_2222_0000u64;
        let sr = SenderReport { ssrc: 5, ntp_time: ntp, ..Default::default() };
        g.handle_write(TaggedPacket {
            now: t,
            transport: TransportContext::default(),
            message: AttributedPacket::new(InterceptorPacket::Rtcp(vec![Box::new(sr)])),
        })
        .expect("write");
        while g.poll_write().is_some() {}
        let report = ReceptionReport {
            ssrc: 5,
            last_sender_report: (ntp >> 16) as u32,
            delay: 656, // 10.01 ms: the round trip is a hair under 50 ms
            ..Default::default()
        };
        let rr = ReceiverReport { ssrc: 9, reports: vec![report], ..Default::default() };
        g.handle_read(TaggedPacket {
            now: t + 60 * MS,
            transport: TransportContext::default(),
            message: AttributedPacket::new(InterceptorPacket::Rtcp(vec![Box::new(rr)])),
        })
        .expect("read");
        let rtt = recovery.measured_rtt().expect("measured");
        assert!((rtt.as_secs_f64() - 0.050).abs() < 0.001, "{rtt:?}");
        for (ssrc, seq) in [(1000, 1), (1000, 4), (2000, 1), (2000, 5)] {
            g.handle_read(tagged(t + 60 * MS, rtp(ssrc, 96, seq, &[0]))).expect("read");
        }
        while g.poll_read().is_some() {}
        assert_eq!(g.poll_timeout(), Some(t + 60 * MS), "a NACK due at once");
        // Over 200 ms at a 50 ms round trip (70 ms between asks): asked at 60, 130 and 200 ms.
        let asked = nacked(&mut g, t + 60 * MS, t + 200 * MS);
        assert_eq!(asked, vec![2, 3, 2, 3, 2, 3], "the RTX stream's own gaps are not asked for");
        assert_eq!(recovery.nacked_packets.load(Ordering::Relaxed), 6);
    }
}
