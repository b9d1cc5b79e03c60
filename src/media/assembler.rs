//! Reassembles video frames (H.264 access units, VP8 frames) from RTP packets, completing a frame
//! on its last packet.
//!
//! A frame is done when its marker-bit packet has arrived and every packet before it since the previous
//! frame is present: no waiting for the next frame's first packet (the sample builder's habit, which adds
//! a whole frame interval of latency). Packets may arrive out of order or late (NACK retransmissions);
//! a frame whose packets stay missing past `max_wait` is given up, and the caller is told so that it
//! asks the sender for a keyframe.
//!
//! Two rules keep a burst of loss from turning into seconds of waiting (measured at a deep rate drop:
//! frames shown 7.5 s after capture):
//! - the wait for a hole is timed from when the hole showed (the first packet past it arrived), not
//!   from when its frame reached the head of the line, so ten damaged frames in a row wait once, not
//!   ten times `max_wait` one after another;
//! - a whole keyframe behind a hole is handed out at once, and everything before it dropped: nothing
//!   after a loss decodes without it, and nothing before it is needed once it is here (libwebrtc's
//!   frame buffer jumps to keyframes the same way).
//!
//! The payload formats come from the `rtc` crate: H.264 (RFC 6184, single NAL and FU-A) and VP8
//! (RFC 7741). VP9 is not carried yet: its frames come out as [`Assembled::Lost`].

use super::codec::VideoCodec;
use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packet::Packet;
use rtc::rtp::packetizer::Depacketizer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Packets held at most; more means the stream is broken beyond repair and we start over.
const MAX_BUFFERED: usize = 4096;

/// What the assembler hands back.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    /// A complete frame: an access unit in Annex-B for H.264, the frame itself for VP8.
    Frame {
        /// The bitstream (for H.264 the NAL units with start codes).
        data: Bytes,
        /// The RTP timestamp (90 kHz) of the frame.
        rtp_timestamp: u32,
        /// Whether the frame is a keyframe (read from its bitstream).
        keyframe: bool,
    },
    /// One or more frames were lost: the decoder's references are broken until the next keyframe.
    Lost,
}

/// A packet held, with when it arrived.
struct Held {
    at: Instant,
    packet: Packet,
}

/// The per-stream reassembly state.
pub struct FrameAssembler {
    codec: VideoCodec,
    packets: BTreeMap<u64, Held>,
    next_seq: Option<u64>,
    highest: Option<u64>,
    max_wait: Duration,
}

impl FrameAssembler {
    /// An assembler for `codec`'s payload format that gives up on a missing packet after `max_wait`
    /// (allow a NACK round trip or two).
    pub fn new(codec: VideoCodec, max_wait: Duration) -> Self {
        Self { codec, packets: BTreeMap::new(), next_seq: None, highest: None, max_wait }
    }

    /// Changes how long a frame may wait for a missing packet (it follows the measured round trip).
    pub fn set_max_wait(&mut self, max_wait: Duration) {
        self.max_wait = max_wait;
    }

    /// Extends a 16-bit sequence number to 64 bits, near the highest one seen.
    fn unwrap_seq(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Start high so that packets from just before the first one still fit below it.
            let ext = (1u64 << 32) + seq as u64;
            self.highest = Some(ext);
            return ext;
        };
        let delta = seq.wrapping_sub(highest as u16) as i16 as i64;
        let ext = (highest as i64 + delta) as u64;
        if ext > highest {
            self.highest = Some(ext);
        }
        ext
    }

    /// Takes one packet; returns the frames (and losses) it completes, in order.
    pub fn push(&mut self, now: Instant, packet: Packet) -> Vec<Assembled> {
        let ext = self.unwrap_seq(packet.header.sequence_number);
        let next = *self.next_seq.get_or_insert(ext);
        if ext < next {
            return Vec::new(); // a duplicate or a retransmission we no longer need
        }
        self.packets.insert(ext, Held { at: now, packet });
        let mut out = Vec::new();
        if self.packets.len() > MAX_BUFFERED {
            self.packets.clear();
            self.next_seq = None;
            out.push(Assembled::Lost);
            return out;
        }
        self.drain(now, &mut out);
        out
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<Assembled>) {
        loop {
            let Some(start) = self.next_seq else { return };
            if let Some(end) = self.complete_frame_from(start) {
                self.emit(start, end, out);
                continue;
            }
            // The head frame is not whole. Still arriving (no packet past a hole yet): wait.
            let Some(shown_at) = self.hole_shown_at(start) else { return };
            if let Some((key_start, key_end)) = self.whole_keyframe_after(start) {
                out.push(Assembled::Lost);
                self.packets.retain(|s, _| *s >= key_start);
                self.emit(key_start, key_end, out);
                continue;
            }
            if now.saturating_duration_since(shown_at) < self.max_wait {
                return;
            }
            // Give up on the damaged frame: skip to the packet after the next marker we hold.
            out.push(Assembled::Lost);
            let resume = self.packets.iter().find(|(_, h)| h.packet.header.marker).map(|(s, _)| s + 1);
            match resume {
                Some(r) => {
                    self.packets.retain(|s, _| *s >= r);
                    self.next_seq = Some(r);
                }
                None => {
                    self.packets.clear();
                    self.next_seq = None;
                    return;
                }
            }
        }
    }

    /// Hands out the frame in `start..=end` and moves the head past it.
    fn emit(&mut self, start: u64, end: u64, out: &mut Vec<Assembled>) {
        let frame: Vec<Packet> =
            (start..=end).filter_map(|s| self.packets.remove(&s)).map(|h| h.packet).collect();
        self.next_seq = Some(end + 1);
        out.push(depacketize(self.codec, &frame));
    }

    /// When the first hole from `start` on showed: the arrival of the first packet held past it.
    /// `None` while there is no hole (the packets so far are contiguous: the frame is on its way).
    fn hole_shown_at(&self, start: u64) -> Option<Instant> {
        (start..)
            .zip(self.packets.range(start..))
            .find(|(seq, (s, _))| *s != seq)
            .map(|(_, (_, held))| held.at)
    }

    /// The first keyframe past `start` whose packets are all here, as its first and last sequence
    /// numbers. A frame starts after a marker packet or a timestamp change, or — its predecessor
    /// missing — where its payload says a frame starts (see [`starts_keyframe`]).
    fn whole_keyframe_after(&self, start: u64) -> Option<(u64, u64)> {
        let mut before: Option<(u64, &Packet)> = None;
        for (&s, held) in self.packets.range(start + 1..) {
            let p = &held.packet;
            let starts = match before {
                Some((b, prev)) if b + 1 == s => {
                    prev.header.marker || prev.header.timestamp != p.header.timestamp
                }
                _ => false,
            };
            before = Some((s, p));
            if !starts_keyframe(self.codec, &p.payload, starts) {
                continue;
            }
            let Some(end) = self.complete_frame_from(s) else { continue };
            let frame: Vec<Packet> =
                (s..=end).filter_map(|q| self.packets.get(&q)).map(|h| h.packet.clone()).collect();
            if matches!(depacketize(self.codec, &frame), Assembled::Frame { keyframe: true, .. }) {
                return Some((s, end));
            }
        }
        None
    }

    /// The sequence number of the frame's last packet, if every packet from `start` to it is here.
    fn complete_frame_from(&self, start: u64) -> Option<u64> {
        let first = &self.packets.get(&start)?.packet;
        let mut seq = start;
        loop {
            let p = &self.packets.get(&seq)?.packet;
            if p.header.timestamp != first.header.timestamp {
                // The sender moved on without a marker bit: the frame ended just before.
                return Some(seq - 1);
            }
            if p.header.marker {
                return Some(seq);
            }
            seq += 1;
        }
    }
}

/// Whether a packet may be the first of a keyframe, from its payload alone: cheap, so that only
/// likely candidates are depacketized whole. `after_a_frame` says the packet before it ended a frame;
/// without that, only a payload that can only start a frame counts (H.264: an SPS, alone or first in
/// an STAP-A, as encoders put them before every IDR; VP8: the frame's first partition starting).
fn starts_keyframe(codec: VideoCodec, payload: &Bytes, after_a_frame: bool) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    match codec {
        VideoCodec::H264 => match payload.first().map(|b| b & 0x1f) {
            Some(SPS) => true,
            Some(IDR) => after_a_frame,
            Some(STAP_A) => {
                payload.get(3).is_some_and(|b| b & 0x1f == SPS || (after_a_frame && b & 0x1f == IDR))
            }
            // An FU-A's start bit and the fragment's type.
            Some(FU_A) => after_a_frame && payload.get(1).is_some_and(|b| b & 0x80 != 0 && b & 0x1f == IDR),
            _ => false,
        },
        VideoCodec::Vp8 => {
            let mut descriptor = Vp8Packet::default();
            match descriptor.depacketize(payload) {
                // The frame's start, and the VP8 header's P bit clear (a keyframe).
                Ok(head) => {
                    descriptor.s == 1 && descriptor.pid == 0 && head.first().is_some_and(|b| b & 1 == 0)
                }
                Err(_) => false,
            }
        }
        VideoCodec::Vp9 => false,
    }
}

fn depacketize(codec: VideoCodec, frame: &[Packet]) -> Assembled {
    let data = match codec {
        VideoCodec::H264 => h264_frame(frame),
        VideoCodec::Vp8 => vp8_frame(frame),
        VideoCodec::Vp9 => None,
    };
    let Some(data) = data else { return Assembled::Lost };
    let rtp_timestamp = frame.first().map(|p| p.header.timestamp).unwrap_or_default();
    let keyframe = codec.is_keyframe(&data);
    Assembled::Frame { data, rtp_timestamp, keyframe }
}

fn h264_frame(frame: &[Packet]) -> Option<Bytes> {
    let mut depacketizer = H264Packet::default();
    let mut data = BytesMut::new();
    for p in frame {
        if !stap_a_lengths_fit(&p.payload) {
            return None;
        }
        data.extend_from_slice(&depacketizer.depacketize(&p.payload).ok()?);
    }
    Some(data.freeze())
}

/// Whether an STAP-A packet's NAL unit lengths all fit in it (any other packet passes). rtc-rtp 0.21's
/// depacketizer reads a length's second byte without a bounds check, so a packet ending one byte into
/// a length field would panic the receive task: such a packet is a lost frame instead.
fn stap_a_lengths_fit(payload: &[u8]) -> bool {
    const STAP_A: u8 = 24;
    if payload.first().map(|b| b & 0x1f) != Some(STAP_A) {
        return true;
    }
    let mut offset = 1;
    while offset < payload.len() {
        let Some(size) = payload.get(offset..offset + 2) else { return false };
        offset += 2 + (usize::from(size[0]) << 8 | usize::from(size[1]));
    }
    offset == payload.len()
}

/// The VP8 frame in `frame`'s packets, if they hold a whole one: the first must start it (S bit set,
/// partition index 0), as RFC 7741 §4.4 says the first packet of every frame does; without that the
/// frame's start was lost (e.g. we joined mid-frame) and what follows cannot be decoded.
fn vp8_frame(frame: &[Packet]) -> Option<Bytes> {
    let first = frame.first()?;
    // A fresh descriptor for every packet: the crate's `Vp8Packet` keeps the extension flags of the
    // packet before when the next one has no extension byte (X = 0), and would misread it.
    let mut descriptor = Vp8Packet::default();
    let head = descriptor.depacketize(&first.payload).ok()?;
    if descriptor.s != 1 || descriptor.pid != 0 {
        return None;
    }
    if frame.len() == 1 {
        return Some(head);
    }
    let mut data = BytesMut::from(&head[..]);
    for p in &frame[1..] {
        data.extend_from_slice(&Vp8Packet::default().depacketize(&p.payload).ok()?);
    }
    Some(data.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;

    #[test]
    fn a_truncated_stap_a_is_a_lost_frame_not_a_panic() {
        // One NAL unit of length 0, then a length field cut after its first byte.
        let out = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100))
            .push(Instant::now(), pkt(1, 9, true, &[0x18, 0, 0, 0xab]));
        assert!(matches!(out[..], [Assembled::Lost]), "{} outputs", out.len());
        // A well-formed one (two NAL units: 2 and 1 bytes) still goes through.
        assert!(stap_a_lengths_fit(&[0x18, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        assert!(!stap_a_lengths_fit(&[0x18, 0, 9, 0x67]), "a length past the end");
    }

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Packet {
        Packet {
            header: Header { sequence_number: seq, timestamp: ts, marker, ..Default::default() },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// A single-NAL payload (type 1, non-IDR slice) with one distinguishing byte.
    fn nal(tag: u8) -> [u8; 3] {
        [0x41, tag, 0xAA]
    }

    #[test]
    fn completes_on_the_marker_packet_not_the_next_frame() {
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100));
        let t = Instant::now();
        assert!(a.push(t, pkt(10, 3000, false, &nal(1))).is_empty());
        let out = a.push(t, pkt(11, 3000, true, &nal(2)));
        assert_eq!(out.len(), 1, "the frame is out as soon as its marker packet arrives");
        match &out[0] {
            Assembled::Frame { data, rtp_timestamp, .. } => {
                assert_eq!(*rtp_timestamp, 3000);
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x41, 1, 0xAA, 0, 0, 0, 1, 0x41, 2, 0xAA]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reorders_and_waits_for_retransmissions() {
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100));
        let t = Instant::now();
        assert!(a.push(t, pkt(65534, 1, false, &nal(1))).is_empty());
        assert!(a.push(t, pkt(0, 1, true, &nal(3))).is_empty(), "65535 is missing");
        assert!(a.push(t, pkt(1, 2, true, &nal(4))).is_empty(), "frame 2 waits behind frame 1");
        let out = a.push(t + Duration::from_millis(50), pkt(65535, 1, false, &nal(2)));
        assert_eq!(out.len(), 2, "the retransmission completes both frames, across the wrap");
    }

    #[test]
    fn gives_up_after_max_wait_and_reports_loss() {
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100));
        let t = Instant::now();
        a.push(t, pkt(1, 1, true, &nal(1)));
        // seq 2 (frame 2's only packet) is lost for good.
        assert!(a.push(t, pkt(3, 3, true, &nal(3))).is_empty());
        let out = a.push(t + Duration::from_millis(150), pkt(4, 4, true, &nal(4)));
        assert_eq!(out.first(), Some(&Assembled::Lost));
        assert_eq!(out.len(), 2, "after the loss, the next whole frame comes out");
        assert!(matches!(out[1], Assembled::Frame { rtp_timestamp: 4, .. }));
    }

    #[test]
    fn a_run_of_damaged_frames_waits_once_not_once_each() {
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100));
        let t = Instant::now();
        a.push(t, pkt(1, 1, true, &nal(1)));
        // Frames 2 to 6 (two packets each) each lose their first packet; frame 7 is whole.
        for f in 2..=6u16 {
            assert!(a.push(t, pkt(2 * f + 1, f as u32, true, &nal(f as u8))).is_empty());
        }
        assert!(a.push(t, pkt(14, 7, true, &nal(7))).is_empty());
        // One wait past the first hole gives all five up together.
        let out = a.push(t + Duration::from_millis(150), pkt(15, 8, true, &nal(8)));
        let frames: Vec<u32> = out
            .iter()
            .filter_map(|o| match o {
                Assembled::Frame { rtp_timestamp, .. } => Some(*rtp_timestamp),
                Assembled::Lost => None,
            })
            .collect();
        assert_eq!(frames, vec![7, 8], "{out:?}");
        assert_eq!(out.iter().filter(|o| **o == Assembled::Lost).count(), 5);
    }

    #[test]
    fn a_whole_keyframe_behind_a_hole_comes_out_at_once() {
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_secs(5));
        let t = Instant::now();
        a.push(t, pkt(1, 1, true, &nal(1)));
        // Frame 2 lost its first packet; frame 3 is a keyframe: SPS, PPS in an STAP-A, then the IDR.
        assert!(a.push(t, pkt(3, 2, true, &nal(2))).is_empty());
        assert!(a.push(t, pkt(4, 3, false, &[0x18, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce])).is_empty());
        let out = a.push(t, pkt(5, 3, true, &[0x65, 0x88, 0x80]));
        assert!(
            matches!(out[..], [Assembled::Lost, Assembled::Frame { rtp_timestamp: 3, keyframe: true, .. }]),
            "{out:?}"
        );
        // The stream goes on from the keyframe; the missing packet, come late, is not wanted.
        assert!(a.push(t, pkt(2, 2, false, &nal(9))).is_empty());
        assert!(matches!(
            a.push(t, pkt(6, 4, true, &nal(4)))[..],
            [Assembled::Frame { rtp_timestamp: 4, .. }]
        ));
    }

    #[test]
    fn a_frame_still_arriving_is_not_given_up() {
        // A keyframe on a slow link: its packets come hundreds of ms apart, with no hole.
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100));
        let t = Instant::now();
        assert!(a.push(t, pkt(1, 1, false, &nal(1))).is_empty());
        assert!(a.push(t + Duration::from_millis(200), pkt(2, 1, false, &nal(2))).is_empty());
        let out = a.push(t + Duration::from_millis(400), pkt(3, 1, true, &nal(3)));
        assert!(matches!(out[..], [Assembled::Frame { rtp_timestamp: 1, .. }]), "{out:?}");
    }

    #[test]
    fn duplicates_and_junk_do_not_break_it() {
        let mut a = FrameAssembler::new(VideoCodec::H264, Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(a.push(t, pkt(5, 1, true, &nal(1))).len(), 1);
        assert!(a.push(t, pkt(5, 1, true, &nal(1))).is_empty(), "duplicate ignored");
        let out = a.push(t, pkt(6, 2, true, &[]));
        assert_eq!(out, vec![Assembled::Lost], "an empty payload is a broken frame, not a panic");
    }

    /// Real VP8 from our encoder, packetized by the crate's payloader as webrtc-rs sends it (picture
    /// id on, 1200-byte packets).
    mod vp8 {
        use super::*;
        use crate::media::codec::vpx::{VpxDecoder, VpxEncoder};
        use crate::media::codec::{EncoderSettings, VideoDecoder, VideoEncoder};
        use crate::media::pattern::{grainy, read_stamp, Stamp};
        use rtc::rtp::codec::vp8::Vp8Payloader;
        use rtc::rtp::packetizer::{new_packetizer, Packetizer};
        use rtc::rtp::sequence::new_fixed_sequencer;

        fn stamp(n: u32) -> Stamp {
            Stamp { frame_no: n, capture_us: n as u64 }
        }

        /// `count` frames of the 640x480 pattern, each as its RTP packets (keyframe `n` where asked).
        fn stream(count: u32, keyframes_at: &[u32]) -> Vec<Vec<Packet>> {
            let mut enc =
                VpxEncoder::new(VideoCodec::Vp8, EncoderSettings::for_size(640, 480, 30)).expect("encoder");
            let mut payloader = Vp8Payloader::default();
            payloader.enable_picture_id = true;
            // Starting near the wrap checks the sequence unwrapping on real traffic too.
            let mut packetizer = new_packetizer(
                Instant::now(),
                1200,
                96,
                1,
                Box::new(payloader),
                Box::new(new_fixed_sequencer(65_500)),
                90_000,
            );
            (0..count)
                .map(|n| {
                    if keyframes_at.contains(&n) {
                        enc.request_keyframe();
                    }
                    let frame = enc.encode(&grainy(stamp(n), 640, 480)).expect("encode").expect("frame");
                    packetizer.packetize(Instant::now(), &frame.data, 3000).expect("packetize")
                })
                .collect()
        }

        fn frames(out: Vec<Assembled>) -> Vec<(Bytes, bool)> {
            out.into_iter()
                .map(|a| match a {
                    Assembled::Frame { data, keyframe, .. } => (data, keyframe),
                    Assembled::Lost => panic!("nothing was lost"),
                })
                .collect()
        }

        #[test]
        fn real_vp8_reassembles_and_decodes_with_stamps_and_keyframes() {
            let packets = stream(10, &[5]);
            assert!(packets[0].len() > 1, "the keyframe spans several packets: {}", packets[0].len());
            let mut a = FrameAssembler::new(VideoCodec::Vp8, Duration::from_millis(100));
            let mut dec = VpxDecoder::new(VideoCodec::Vp8).expect("decoder");
            let t = Instant::now();
            for (n, frame) in packets.into_iter().enumerate() {
                let mut out = Vec::new();
                for p in frame {
                    out.extend(a.push(t, p));
                }
                let got = frames(out);
                assert_eq!(got.len(), 1, "frame {n} is out on its marker packet");
                let (data, keyframe) = &got[0];
                assert_eq!(*keyframe, n == 0 || n == 5, "frame {n}: the P bit tells keyframes apart");
                let picture = dec.decode_rgba(data).expect("decodes").expect("picture");
                assert_eq!(read_stamp(&picture), Some(stamp(n as u32)));
            }
        }

        #[test]
        fn a_lost_packet_gives_lost_and_the_decoder_waits_for_the_next_keyframe() {
            let mut packets = stream(10, &[8]);
            // Frame 3 loses its first packet for good.
            packets[3].remove(0);
            let mut a = FrameAssembler::new(VideoCodec::Vp8, Duration::from_millis(100));
            let mut dec = VpxDecoder::new(VideoCodec::Vp8).expect("decoder");
            let t = Instant::now();
            let mut shown = Vec::new();
            let mut lost = 0;
            for (n, frame) in packets.into_iter().enumerate() {
                // The frames come at 30 fps: by frame 8 the hole has waited past max_wait.
                let now = t + Duration::from_millis(33 * n as u64);
                for p in frame {
                    for out in a.push(now, p) {
                        match out {
                            Assembled::Lost => {
                                lost += 1;
                                dec.reference_lost();
                            }
                            Assembled::Frame { data, .. } => {
                                if let Some(picture) = dec.decode_rgba(&data).expect("no decode error") {
                                    shown.push(read_stamp(&picture).expect("stamp").frame_no);
                                }
                            }
                        }
                    }
                }
            }
            assert_eq!(lost, 1, "one loss reported");
            // 3 is lost; 4 to 7 reference it and are held back; 8 is the keyframe that repairs it.
            assert_eq!(shown, vec![0, 1, 2, 8, 9]);
        }

        #[test]
        fn real_vp8_keyframe_behind_a_hole_is_decoded_without_waiting() {
            let mut packets = stream(8, &[5]);
            packets[3].remove(0);
            // A wait far longer than the test: only the keyframe jump can get frame 5 out.
            let mut a = FrameAssembler::new(VideoCodec::Vp8, Duration::from_secs(10));
            let mut dec = VpxDecoder::new(VideoCodec::Vp8).expect("decoder");
            let t = Instant::now();
            let mut shown = Vec::new();
            for frame in packets {
                for p in frame {
                    for out in a.push(t, p) {
                        match out {
                            Assembled::Lost => dec.reference_lost(),
                            Assembled::Frame { data, .. } => {
                                if let Some(picture) = dec.decode_rgba(&data).expect("no decode error") {
                                    shown.push(read_stamp(&picture).expect("stamp").frame_no);
                                }
                            }
                        }
                    }
                }
            }
            assert_eq!(shown, vec![0, 1, 2, 5, 6, 7]);
        }

        #[test]
        fn a_stream_joined_mid_frame_is_not_decoded_from_the_middle() {
            let packets = stream(2, &[]);
            assert!(packets[0].len() > 1, "the keyframe spans several packets");
            let mut a = FrameAssembler::new(VideoCodec::Vp8, Duration::from_millis(100));
            let t = Instant::now();
            // The keyframe's first packet never came: its continuation must not pass for a frame.
            let mut out = Vec::new();
            for p in packets[0].iter().skip(1).chain(&packets[1]) {
                out.extend(a.push(t, p.clone()));
            }
            assert_eq!(out.first(), Some(&Assembled::Lost), "{} results", out.len());
            assert!(matches!(out.get(1), Some(Assembled::Frame { keyframe: false, .. })));
        }
    }
}
