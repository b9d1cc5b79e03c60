//! The pacer: outgoing RTP leaves at a multiple of the congestion controller's target, audio first,
//! then retransmissions, then video, at `Slot::Pacer` in place of the crate's `PacerInterceptor`.
//!
//! The crate's pacer is one FIFO at 1.0 × the target with a burst of 100 ms: audio waits behind a
//! keyframe, a retransmission behind the frames that followed the loss, and at 1.0 × every frame
//! leaves no faster than the link drains it, so a frame's last packet waits a frame's worth of
//! link time in our own queue. Here two of the crate's leaky buckets gate each packet:
//! - a short one at [`PACING_FACTOR`] × the target with a 20 ms burst (browsers pace at 2.5 ×): a
//!   normal frame goes out in a fraction of its interval;
//! - a long one at [`LONG_TERM_FACTOR`] × the target with [`LONG_TERM_BURST`] of it: what exceeds
//!   the target for longer (a keyframe) is spread over a few hundred ms instead of flooding a narrow
//!   link's queue (a 300 ms drop-tail queue overflowed under each IDR); at 1.0 × for
//!   [`DRAIN_HOLD`] after the target falls (see there).
//!
//! What waits, and how long it takes to drain, goes to [`super::Congestion`]: the video sender
//! drops frames while it is long (see `call::rate`).

use super::Congestion;
use rtc::interceptor::{Attribute, Interceptor, Pacer as LeakyBucket, Packet, StreamInfo, TaggedPacket};
use rtc::shared::marshal::MarshalSize;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Short-term pacing rate over the target (libwebrtc's pacing factor).
pub const PACING_FACTOR: f64 = 2.5;
/// Long-term rate over the target: a little above it, so a queue left by an encoder's overshoot
/// drains.
pub const LONG_TERM_FACTOR: f64 = 1.2;
/// How long after the target falls the long-term rate is the target itself. A fall answers a
/// queue at the bottleneck, which drains only by what the sender leaves of the link's rate: the
/// estimator cuts to 0.85 of it, and at 1.2 × that the pacer let out the encoder's overshoot at 1.02
/// × the link. At the step from 2.5 Mbit/s to 600 kbit/s the queue stood at 250 ms a second after
/// the first cut, 8 % was lost and the second cut halved the rate. Two seconds drain a 300 ms queue
/// at 15 % of the link; what the encoder makes over the target meanwhile waits here, and past
/// [`MAX_VIDEO_BACKLOG`] its frames are dropped, at the sender rather than at the bottleneck.
pub const DRAIN_HOLD: Duration = Duration::from_secs(2);
/// A fall to under this share of the target starts the hold: a queue's (the estimator cuts by 15 %
/// or more), not random loss's (a percent or two, which would hold a lossy link at 1.0 × for good).
const DRAIN_FALL: f64 = 0.95;
/// What may leave above the long-term rate at once, in time at the target.
pub const LONG_TERM_BURST: Duration = Duration::from_millis(100);
/// The short bucket's burst, in time at its own rate.
const SHORT_BURST: Duration = Duration::from_millis(20);
/// Packets held before new video is refused (the sender drops frames long before this).
const QUEUE_LIMIT: usize = 2_000;
/// A retransmission that waited this long is discarded: its frame has been given up by now (the
/// receiver waits one repair round), and after a deep drop (2.5 Mbit/s to 120 kbit/s) 400 kB of
/// retransmissions queued at a 60 kbit/s target held the video back for 45 s.
const MAX_REPAIR_AGE: Duration = Duration::from_millis(500);
/// A video frame that waited this long before its first packet left is discarded whole, and the
/// sender makes a keyframe (it watches `Congestion::frames_discarded`). A frame already under way is finished: cutting its tail wastes what
/// went out, and at a deep drop (60 kbit/s) every keyframe took longer than this and none arrived whole.
const MAX_VIDEO_AGE: Duration = Duration::from_millis(1_500);
/// Video waiting may take at most this long to leave at the target; older frames past it are
/// discarded whole (never the one under way). When the target falls tenfold (a deep drop), what
/// was queued at the old rate would take seconds: at 2.5 Mbit/s → 120 kbit/s, 2.5 s of frames
/// made for the old rate sat ahead of the first small picture. libwebrtc bounds its pacer's
/// queue too (2 s), by raising the pacing rate, which a narrow link cannot take.
const MAX_VIDEO_BACKLOG: Duration = Duration::from_millis(500);
/// Retransmissions waiting may add up to this much of sending at the target; more are shed. At a
/// deep drop (2.5 Mbit/s to 120 kbit/s) the far side asked for ~270 lost packets at once and 236 kB
/// of retransmissions queued ahead of the video at a 60 kbit/s target: 26 s of sending, of which
/// the age limit above let ~30 kB out before each one went stale — nothing else left for 7 s, and
/// no new picture came until the link returned. libwebrtc bounds its retransmissions' rate too.
const REPAIR_BUDGET: Duration = Duration::from_millis(250);
/// ...but never fewer bytes than this (two full packets), so a slow link still repairs.
const MIN_REPAIR_BUDGET: u64 = 2_400;

/// Which queue a packet waits in, in release order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Audio,
    Repair,
    Video,
}

/// The pacer interceptor. See the module docs.
pub struct PriorityPacer {
    target_bps: f64,
    /// The end of the [`DRAIN_HOLD`] after the target last fell (the long-term rate is the target
    /// until then).
    drain_until: Option<Instant>,
    short: LeakyBucket,
    long: LeakyBucket,
    queues: [VecDeque<TaggedPacket>; 3],
    /// Bytes waiting in each class's queue.
    class_bytes: [u64; 3],
    /// The video frame (SSRC, RTP timestamp) whose packets have started to leave.
    under_way: Option<(u32, u32)>,
    audio_ssrcs: HashSet<u32>,
    rtx_ssrcs: HashSet<u32>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    congestion: Arc<Congestion>,
    /// Video packets refused because the queue was full.
    pub refused: u64,
    /// Packets discarded because they waited too long.
    pub stale: u64,
    /// Retransmissions shed over [`REPAIR_BUDGET`].
    pub shed: u64,
    /// Video frames discarded whole (stale or over [`MAX_VIDEO_BACKLOG`]).
    pub frames_discarded: u64,
    /// Video and repair packets dropped because a keyframe came after them.
    pub superseded: u64,
    /// A keyframe was made from a picture captured at this instant; its RTP timestamp is not known
    /// until its first packet comes (the first video packet enqueued after the instant).
    keyframe_after: Option<Instant>,
    /// The RTP timestamp of the last keyframe: repairs of older frames are refused.
    keyframe_ts: Option<u32>,
}

/// Whether RTP timestamp `a` comes before `b` (wrapping: within half the 32-bit range).
fn precedes(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

fn bits_of(packet: &TaggedPacket) -> f64 {
    match &packet.message.packet {
        Packet::Rtp(rtp) => (rtp.marshal_size() * 8) as f64,
        _ => 0.0,
    }
}

/// The frame a video packet belongs to: its SSRC and RTP timestamp.
fn frame_of(packet: &TaggedPacket) -> Option<(u32, u32)> {
    match &packet.message.packet {
        Packet::Rtp(rtp) => Some((rtp.header.ssrc, rtp.header.timestamp)),
        _ => None,
    }
}

fn buckets(target_bps: f64, long_rate: f64) -> (LeakyBucket, LeakyBucket) {
    let short_rate = target_bps * PACING_FACTOR;
    (
        LeakyBucket::new(short_rate).with_burst_bits(short_rate * SHORT_BURST.as_secs_f64()),
        LeakyBucket::new(long_rate).with_burst_bits(target_bps * LONG_TERM_BURST.as_secs_f64()),
    )
}

impl PriorityPacer {
    /// A pacer starting at `target_bps`, publishing its queue into `congestion`.
    pub fn new(target_bps: f64, congestion: Arc<Congestion>) -> Self {
        let (short, long) = buckets(target_bps, target_bps * LONG_TERM_FACTOR);
        Self {
            target_bps,
            drain_until: None,
            short,
            long,
            queues: Default::default(),
            class_bytes: [0; 3],
            under_way: None,
            audio_ssrcs: HashSet::new(),
            rtx_ssrcs: HashSet::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
            congestion,
            refused: 0,
            stale: 0,
            shed: 0,
            frames_discarded: 0,
            superseded: 0,
            keyframe_after: None,
            keyframe_ts: None,
        }
    }

    fn set_target(&mut self, now: Instant, bps: f64) {
        if bps <= 0.0 || (bps - self.target_bps).abs() < 1.0 {
            return;
        }
        self.drain_hold_ended(now);
        if bps < self.target_bps * DRAIN_FALL {
            self.drain_until = Some(now + DRAIN_HOLD);
        }
        self.target_bps = bps;
        self.rebuild_buckets(now);
    }

    /// Whether a drain hold has just ended at `now` (and clears it).
    fn drain_hold_ended(&mut self, now: Instant) -> bool {
        let ended = self.drain_until.is_some_and(|t| now >= t);
        if ended {
            self.drain_until = None;
        }
        ended
    }

    /// The long-term rate, bit/s.
    fn long_rate(&self) -> f64 {
        self.target_bps * if self.drain_until.is_some() { 1.0 } else { LONG_TERM_FACTOR }
    }

    fn rebuild_buckets(&mut self, now: Instant) {
        // New buckets start full: one extra burst (20 ms) at a change, against keeping a budget
        // sized for the old rate.
        let (mut short, mut long) = buckets(self.target_bps, self.long_rate());
        short.refill(now);
        long.refill(now);
        self.short = short;
        self.long = long;
    }

    fn class(&self, packet: &TaggedPacket) -> Class {
        let Packet::Rtp(rtp) = &packet.message.packet else { return Class::Audio };
        if self.audio_ssrcs.contains(&rtp.header.ssrc) {
            Class::Audio
        } else if packet.message.has(&Attribute::Retransmission) || self.rtx_ssrcs.contains(&rtp.header.ssrc)
        {
            Class::Repair
        } else {
            Class::Video
        }
    }

    /// The class of the next packet out, in release order.
    fn head_class(&self) -> Option<Class> {
        [Class::Audio, Class::Repair, Class::Video].into_iter().find(|&c| !self.queues[c as usize].is_empty())
    }

    fn head(&self) -> Option<&TaggedPacket> {
        self.queues[self.head_class()? as usize].front()
    }

    fn publish(&self) {
        let queued_bytes = self.queued_bytes();
        let drain = queued_bytes as f64 * 8.0 / self.long_rate().max(1.0);
        self.congestion.publish_queue(queued_bytes, (drain * 1e6) as u64, self.shed, self.frames_discarded);
    }

    fn queued_bytes(&self) -> u64 {
        self.class_bytes.iter().sum()
    }

    /// Takes `packet` off its class's byte count.
    fn account_out(&mut self, class: Class, packet: &TaggedPacket) {
        let bytes = &mut self.class_bytes[class as usize];
        *bytes = bytes.saturating_sub((bits_of(packet) / 8.0) as u64);
    }

    /// Drops what waited past its use (packets keep their enqueue instant until released):
    /// retransmissions one by one, video a whole frame at a time and never the one under way.
    fn discard_stale(&mut self, now: Instant) {
        let stale = |p: &TaggedPacket, age| now.saturating_duration_since(p.now) > age;
        while self.queues[Class::Repair as usize].front().is_some_and(|p| stale(p, MAX_REPAIR_AGE)) {
            if let Some(p) = self.queues[Class::Repair as usize].pop_front() {
                self.account_out(Class::Repair, &p);
                self.stale += 1;
            }
        }
        while let Some((frame, at)) = self.next_discardable(false) {
            if now.saturating_duration_since(at) <= MAX_VIDEO_AGE {
                break;
            }
            self.discard_frame(frame);
        }
        // The backlog: video waiting over what leaves in MAX_VIDEO_BACKLOG at the target goes,
        // oldest frames first.
        let budget = (self.long_rate() / 8.0 * MAX_VIDEO_BACKLOG.as_secs_f64()) as u64;
        while self.class_bytes[Class::Video as usize] > budget {
            let Some((frame, _)) = self.next_discardable(true) else { break };
            self.discard_frame(frame);
        }
    }

    /// The oldest video frame waiting, and when its first packet came, but not the one under way,
    /// nor with `spare_newest` the newest: that one the encoder made for the target now (a keyframe
    /// larger than the backlog bound would be discarded every time), and its packets may still be
    /// coming in.
    fn next_discardable(&self, spare_newest: bool) -> Option<(Option<(u32, u32)>, Instant)> {
        let video = &self.queues[Class::Video as usize];
        let newest = video.back().map(frame_of)?;
        video
            .iter()
            .map(|p| (frame_of(p), p.now))
            .find(|(frame, _)| frame.is_none() || *frame != self.under_way)
            .filter(|(frame, _)| !spare_newest || *frame != newest)
    }

    /// Discards every waiting packet of `frame`.
    fn discard_frame(&mut self, frame: Option<(u32, u32)>) {
        let (mut bytes, mut packets) = (0u64, 0u64);
        self.queues[Class::Video as usize].retain(|p| {
            let keep = frame_of(p) != frame;
            if !keep {
                bytes += (bits_of(p) / 8.0) as u64;
                packets += 1;
            }
            keep
        });
        let video = &mut self.class_bytes[Class::Video as usize];
        *video = video.saturating_sub(bytes);
        self.stale += packets;
        self.frames_discarded += 1;
    }

    /// Drops the video and repairs that came before a keyframe the sender made (whole frames, the
    /// one under way too): the far side's decoder starts afresh at the keyframe, and at a deep drop
    /// (2.5 Mbit/s to 120 kbit/s) what waited of the old 640x480 frames held the new 160x120
    /// keyframe back for two seconds, the sender dropping every frame behind them.
    fn discard_superseded(&mut self) {
        let Some(before) = self.congestion.take_superseded() else { return };
        self.keyframe_after = Some(before);
        for class in [Class::Repair, Class::Video] {
            let queue = std::mem::take(&mut self.queues[class as usize]);
            let (old, kept): (VecDeque<_>, VecDeque<_>) = queue.into_iter().partition(|p| p.now < before);
            for p in &old {
                self.account_out(class, p);
            }
            if class == Class::Video && !old.is_empty() {
                self.under_way = None;
            }
            self.superseded += old.len() as u64;
            self.queues[class as usize] = kept;
        }
    }

    fn release(&mut self, now: Instant) {
        if self.drain_hold_ended(now) {
            self.rebuild_buckets(now);
        }
        self.discard_stale(now);
        self.short.refill(now);
        self.long.refill(now);
        // A shared screen goes out unpaced for now: its 300–650 kB keyframes of text, paced from the
        // start rate, took seconds, the delay they built brought the estimate down and the picture
        // with it, and the screen tests never saw a whole picture. Pacing screens is left to do.
        let unpaced = self.congestion.screen();
        while let Some(class) = self.head_class() {
            let Some(bits) = self.head().map(bits_of) else { break };
            let paced_ok = self.short.can_release(bits) && self.long.can_release(bits);
            if !(unpaced || paced_ok) {
                break;
            }
            let Some(mut packet) = self.queues[class as usize].pop_front() else { break };
            self.short.consume(bits);
            self.long.consume(bits);
            self.account_out(class, &packet);
            if class == Class::Video {
                self.under_way = frame_of(&packet);
            }
            // The release instant: the send history below records it, not the enqueue one.
            packet.now = now;
            self.write.push_back(packet);
        }
        self.publish();
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for PriorityPacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        // The estimate rides the feedback packet that produced it (see the crate's
        // `CongestionControlInterceptor`, wire-ward of here).
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged { bits_per_second: 0.0 })
        {
            let bps = *bits_per_second;
            self.set_target(msg.now, bps);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if matches!(msg.message.packet, Packet::Rtcp(_)) {
            // Feedback is only useful fresh, and is small: never paced.
            self.write.push_back(msg);
            return Ok(());
        }
        let class = self.class(&msg);
        // Take the supersession first, so a repair that comes with it is judged by it.
        self.discard_superseded();
        match (class, frame_of(&msg)) {
            (Class::Video, Some((_, ts))) if self.keyframe_after.is_some_and(|t| msg.now >= t) => {
                self.keyframe_after = None;
                self.keyframe_ts = Some(ts);
            }
            // A repair of a frame before the last keyframe is of no use to the far side's decoder
            // (it starts afresh at the keyframe). At a deep drop the far side asked for ~500 lost
            // packets over two seconds, and their repairs, going out ahead of the video, held the
            // new keyframe back as long: nothing new arrived for 3 s.
            (Class::Repair, Some((_, ts))) if self.keyframe_ts.is_some_and(|k| precedes(ts, k)) => {
                self.superseded += 1;
                return Ok(());
            }
            _ => {}
        }
        if class == Class::Video && self.queues[Class::Video as usize].len() >= QUEUE_LIMIT {
            self.refused += 1;
            return Ok(());
        }
        let now = msg.now;
        let bytes = (bits_of(&msg) / 8.0) as u64;
        if class == Class::Repair {
            let budget =
                ((self.target_bps / 8.0 * REPAIR_BUDGET.as_secs_f64()) as u64).max(MIN_REPAIR_BUDGET);
            if self.class_bytes[Class::Repair as usize] + bytes > budget {
                self.shed += 1;
                self.publish();
                return Ok(());
            }
        }
        self.class_bytes[class as usize] += bytes;
        self.queues[class as usize].push_back(msg);
        self.release(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.discard_superseded();
        self.release(now);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        let bits = self.head().map(bits_of)?;
        // When both buckets let the head go; a bucket never refilled yet has no deadline, and the
        // next write refills it.
        let at = match (self.short.releasable_at(bits), self.long.releasable_at(bits)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // A microsecond late: the buckets' float arithmetic can leave a refill at the exact instant
        // a hair short of the packet, and a deadline that releases nothing would be asked again at once.
        at.map(|t| t + Duration::from_micros(1))
    }
}

impl Interceptor for PriorityPacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.eq_ignore_ascii_case("audio/opus") {
            self.audio_ssrcs.insert(info.ssrc);
        }
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_ssrcs.insert(rtx);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio_ssrcs.remove(&info.ssrc);
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_ssrcs.remove(&rtx);
        }
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::sansio::Protocol;

    fn rtp(ssrc: u32, seq: u16, payload: usize, now: Instant) -> TaggedPacket {
        let mut p = rtc::rtp::Packet::default();
        p.header.ssrc = ssrc;
        p.header.sequence_number = seq;
        p.payload = vec![0u8; payload].into();
        TaggedPacket { now, transport: Default::default(), message: AttributedPacket::new(Packet::Rtp(p)) }
    }

    fn audio_info() -> StreamInfo {
        StreamInfo { ssrc: 7, mime_type: "audio/opus".into(), clock_rate: 48_000, ..Default::default() }
    }

    /// Runs the pacer's timers until `until`, returning (when, ssrc) of each packet out.
    fn drain(p: &mut PriorityPacer, until: Instant) -> Vec<(Instant, u32)> {
        let mut out = Vec::new();
        loop {
            while let Some(m) = p.poll_write() {
                if let Packet::Rtp(r) = &m.message.packet {
                    out.push((m.now, r.header.ssrc));
                }
            }
            match p.poll_timeout() {
                Some(t) if t <= until => p.handle_timeout(t).expect("pacer"),
                _ => return out,
            }
        }
    }

    #[test]
    fn a_frame_leaves_at_two_and_a_half_times_the_target_and_audio_overtakes_it() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(1_000_000.0, Arc::clone(&congestion));
        p.bind_local_stream(&audio_info());
        let t0 = Instant::now();
        // A 12 kB frame (96 kbit: 96 ms at the target) and, just after it, one audio packet.
        for seq in 0..10 {
            p.handle_write(rtp(1, seq, 1188, t0)).expect("pacer");
        }
        assert!(congestion.figures().queued_bytes > 0, "the frame waits: {:?}", congestion.figures());
        p.handle_write(rtp(7, 0, 100, t0 + Duration::from_millis(1))).expect("pacer");
        let out = drain(&mut p, t0 + Duration::from_secs(1));
        assert_eq!(out.len(), 11);
        let audio_at = out.iter().position(|&(_, s)| s == 7).expect("audio sent");
        // The first 20 ms burst (five packets) left before the audio came; it goes next.
        assert!(audio_at <= 6, "audio went out behind {audio_at} video packets");
        let last = out.iter().map(|&(t, _)| t).max().expect("sent") - t0;
        // 96 kbit at 2.5 Mbit/s less a 20 ms burst: ~20 ms (1.0 × would take 96 ms).
        assert!(last < Duration::from_millis(45), "the frame took {last:?}");
        assert_eq!(congestion.figures().queued_bytes, 0);
    }

    #[test]
    fn a_keyframe_is_spread_over_the_long_term_rate() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(300_000.0, Arc::clone(&congestion));
        let t0 = Instant::now();
        // 30 kB: 800 ms of a 300 kbit/s link.
        for seq in 0..25 {
            p.handle_write(rtp(1, seq, 1188, t0)).expect("pacer");
        }
        assert!(congestion.queue_ms() > 500.0, "{}", congestion.queue_ms());
        let out = drain(&mut p, t0 + Duration::from_secs(2));
        assert_eq!(out.len(), 25);
        let last = out.iter().map(|&(t, _)| t).max().expect("sent") - t0;
        // (240 kbit − a 30 kbit burst) at 360 kbit/s ≈ 580 ms; at 2.5 × it would be ~300 ms.
        assert!(last > Duration::from_millis(500) && last < Duration::from_millis(700), "{last:?}");
    }

    /// When the last of 25 full packets (30 kB) written at `at` leaves.
    fn last_of_a_burst(p: &mut PriorityPacer, at: Instant) -> Duration {
        for seq in 0..25 {
            p.handle_write(rtp(1, seq, 1188, at)).expect("pacer");
        }
        let out = drain(p, at + Duration::from_secs(2));
        assert_eq!(out.len(), 25);
        out.iter().map(|&(t, _)| t).max().expect("sent") - at
    }

    #[test]
    fn after_a_fall_of_the_target_the_long_term_rate_is_the_target_until_the_hold_ends() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(600_000.0, Arc::clone(&congestion));
        let t0 = Instant::now();
        p.set_target(t0, 300_000.0);
        // (240 kbit − a 30 kbit burst) at 300 kbit/s: 700 ms (at 1.2 ×, 580 ms).
        let held = last_of_a_burst(&mut p, t0);
        assert!(held > Duration::from_millis(660), "{held:?}");
        let after = last_of_a_burst(&mut p, t0 + DRAIN_HOLD + Duration::from_millis(10));
        assert!(after < Duration::from_millis(620), "{after:?}");
        // A small fall (random loss's) does not hold.
        p.set_target(t0 + Duration::from_secs(5), 290_000.0);
        let small = last_of_a_burst(&mut p, t0 + Duration::from_secs(5));
        assert!(small < Duration::from_millis(640), "{small:?}");
    }

    fn video(seq: u16, timestamp: u32, now: Instant) -> TaggedPacket {
        let mut p = rtp(1, seq, 1188, now);
        if let Packet::Rtp(r) = &mut p.message.packet {
            r.header.timestamp = timestamp;
        }
        p
    }

    #[test]
    fn stale_video_is_discarded_whole_frames_at_a_time() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(100_000.0, Arc::clone(&congestion));
        let t0 = Instant::now();
        // Ten frames of five packets, 60 kB at 100 kbit/s: 4.8 s to drain; what cannot leave within
        // the backlog bound (500 ms) or the age limit is given up, whole frames at a time.
        for seq in 0..50 {
            p.handle_write(video(seq, u32::from(seq / 5) * 3000, t0)).expect("pacer");
        }
        let out = drain(&mut p, t0 + Duration::from_secs(3));
        assert!(out.len() < 25, "{} sent", out.len());
        assert_eq!(out.len() % 5, 0, "whole frames only: {} packets sent", out.len());
        assert_eq!(p.stale as usize, 50 - out.len());
        assert_eq!(congestion.figures().queued_bytes, 0);
    }

    #[test]
    fn a_fall_of_the_target_discards_the_backlog_but_not_the_newest_frame() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(2_000_000.0, Arc::clone(&congestion));
        let t0 = Instant::now();
        // Twenty frames of five packets queued at 2 Mbit/s (120 kB: well within its budget).
        for seq in 0..100 {
            p.handle_write(video(seq, u32::from(seq / 5) * 3000, t0)).expect("pacer");
        }
        assert_eq!(p.frames_discarded, 0);
        let waiting = p.queues[Class::Video as usize].len();
        while p.poll_write().is_some() {}
        // The target falls to 100 kbit/s: 500 ms of it (at 1.0 ×, see DRAIN_HOLD) is 6.25 kB,
        // about one frame.
        p.set_target(t0, 100_000.0);
        p.handle_write(video(100, 20 * 3000, t0)).expect("pacer");
        assert!(p.frames_discarded >= 15, "{} frames discarded of {waiting} packets", p.frames_discarded);
        assert_eq!(congestion.frames_discarded(), p.frames_discarded);
        let mut frames: std::collections::BTreeSet<u32> =
            p.queues[Class::Video as usize].iter().filter_map(|q| frame_of(q).map(|(_, ts)| ts)).collect();
        // The newest frame stays: waiting, or gone out on the new buckets' burst.
        frames.extend(std::iter::from_fn(|| p.poll_write()).filter_map(|q| frame_of(&q).map(|(_, ts)| ts)));
        assert!(frames.contains(&(20 * 3000)), "the newest frame stays: {frames:?}");
        assert!(frames.len() <= 3, "{frames:?}");
    }

    #[test]
    fn a_keyframe_supersedes_the_video_and_repairs_waiting_before_it() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(60_000.0, Arc::clone(&congestion));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Two frames of the old size wait at a deep drop's 60 kbit/s, the first under way.
        for seq in 0..10 {
            p.handle_write(video(seq, u32::from(seq / 5) * 3000, t0)).expect("pacer");
        }
        let first_out = drain(&mut p, t0 + ms(10)).len();
        assert!(first_out > 0 && first_out < 5, "the first frame is under way: {first_out} out");
        // The sender makes a keyframe of a picture captured at 20 ms; its packets come at 30 ms.
        congestion.supersede_before(t0 + ms(20));
        for seq in 10..13 {
            p.handle_write(video(seq, 9000, t0 + ms(30))).expect("pacer");
        }
        let waiting: Vec<u32> =
            p.queues[Class::Video as usize].iter().filter_map(|q| frame_of(q).map(|(_, ts)| ts)).collect();
        assert!(waiting.iter().all(|&ts| ts == 9000), "only the keyframe waits: {waiting:?}");
        assert_eq!(p.superseded, 10 - first_out as u64);
        assert_eq!(p.frames_discarded, 0, "no new keyframe is asked for: this one answers");
        // Repairs of frames before the keyframe are refused; of the keyframe and after, not.
        let repair = |seq, ts| {
            let mut r = video(seq, ts, t0 + ms(35));
            r.message = r.message.with(Attribute::Retransmission);
            r
        };
        let superseded = p.superseded;
        p.handle_write(repair(3, 3000)).expect("pacer");
        assert_eq!(p.superseded, superseded + 1, "a repair of the old frame is refused");
        p.handle_write(repair(11, 9000)).expect("pacer");
        assert_eq!(p.superseded, superseded + 1, "a repair of the keyframe is not");
        assert_eq!(p.queues[Class::Repair as usize].len(), 1);
        // A supersession is taken once: the frame after the keyframe stays.
        let superseded = p.superseded;
        p.handle_write(video(13, 12_000, t0 + ms(40))).expect("pacer");
        assert_eq!(p.superseded, superseded);
        assert!(p.queues[Class::Video as usize].iter().any(|q| frame_of(q) == Some((1, 12_000))));
    }

    #[test]
    fn rtp_timestamps_compare_across_the_wrap() {
        assert!(precedes(1, 2));
        assert!(!precedes(2, 1));
        assert!(!precedes(5, 5));
        assert!(precedes(u32::MAX - 10, 20), "just before the wrap comes before just after it");
    }

    #[test]
    fn a_keyframe_under_way_is_finished_past_the_age_limit() {
        let mut p = PriorityPacer::new(100_000.0, Arc::new(Congestion::default()));
        let t0 = Instant::now();
        // A 30 kB keyframe at 100 kbit/s: 2.4 s, longer than the age limit. Then a frame behind it.
        for seq in 0..25 {
            p.handle_write(video(seq, 0, t0)).expect("pacer");
        }
        p.handle_write(video(25, 3000, t0 + Duration::from_millis(30))).expect("pacer");
        let out = drain(&mut p, t0 + Duration::from_secs(4));
        assert_eq!(out.len(), 25, "the keyframe went whole; the frame behind it went stale");
        assert_eq!(p.stale, 1);
    }

    #[test]
    fn retransmissions_past_the_repair_budget_are_shed_and_video_still_flows() {
        let congestion = Arc::new(Congestion::default());
        let mut p = PriorityPacer::new(60_000.0, Arc::clone(&congestion));
        let t0 = Instant::now();
        // The far side asks for 200 lost packets at once (a deep drop): 240 kB, 32 s at 60 kbit/s.
        for seq in 0..200 {
            let mut repair = rtp(1, seq, 1188, t0);
            repair.message.add(Attribute::Retransmission);
            p.handle_write(repair).expect("pacer");
        }
        // 250 ms at 60 kbit/s is 1.9 kB: the two-packet floor holds (and the first left at once,
        // on the buckets' burst).
        assert_eq!(p.shed, 197);
        assert_eq!(congestion.figures().repairs_shed, 197);
        // A new frame right behind them leaves within its own pacing time, not after the flood.
        for seq in 1000..1003 {
            p.handle_write(rtp(1, seq, 1188, t0 + Duration::from_millis(1))).expect("pacer");
        }
        let out = drain(&mut p, t0 + Duration::from_secs(2));
        assert_eq!(out.len(), 6);
        let last = out.iter().map(|&(t, _)| t).max().expect("sent") - t0;
        // 6 × 9.6 kbit less the 6 kbit burst at 72 kbit/s ≈ 720 ms.
        assert!(last < Duration::from_millis(850), "{last:?}");
    }

    #[test]
    fn retransmissions_go_before_waiting_video() {
        let mut p = PriorityPacer::new(300_000.0, Arc::new(Congestion::default()));
        let t0 = Instant::now();
        for seq in 0..10 {
            p.handle_write(rtp(1, seq, 1188, t0)).expect("pacer");
        }
        let mut repair = rtp(1, 99, 1188, t0);
        repair.message.add(Attribute::Retransmission);
        p.handle_write(repair).expect("pacer");
        let mut seqs = Vec::new();
        loop {
            while let Some(m) = p.poll_write() {
                if let Packet::Rtp(r) = &m.message.packet {
                    seqs.push(r.header.sequence_number);
                }
            }
            match p.poll_timeout() {
                Some(t) => p.handle_timeout(t).expect("pacer"),
                None => break,
            }
        }
        let at = seqs.iter().position(|&s| s == 99).expect("sent");
        assert!(at < 4, "{seqs:?}");
    }
}
