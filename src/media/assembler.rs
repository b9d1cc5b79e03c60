//! Reassembles H.264 access units from RTP packets, completing a frame on its last packet.
//!
//! A frame is done when its marker-bit packet has arrived and every packet before it since the previous
//! frame is present: no waiting for the next frame's first packet (the sample builder's habit, which adds
//! a whole frame interval of latency). Packets may arrive out of order or late (NACK retransmissions);
//! a frame whose packets stay missing past `max_wait` is given up, and the caller is told so that it
//! asks the sender for a keyframe.

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packet::Packet;
use rtc::rtp::packetizer::Depacketizer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Packets held at most; more means the stream is broken beyond repair and we start over.
const MAX_BUFFERED: usize = 4096;

/// What the assembler hands back.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    /// A complete access unit, Annex-B.
    Frame {
        /// The NAL units with start codes.
        data: Bytes,
        /// The RTP timestamp (90 kHz) of the frame.
        rtp_timestamp: u32,
    },
    /// One or more frames were lost: the decoder's references are broken until the next keyframe.
    Lost,
}

/// The per-stream reassembly state.
pub struct FrameAssembler {
    packets: BTreeMap<u64, Packet>,
    next_seq: Option<u64>,
    highest: Option<u64>,
    waiting_since: Option<Instant>,
    max_wait: Duration,
}

impl FrameAssembler {
    /// An assembler that gives up on a missing packet after `max_wait` (allow a NACK round trip or two).
    pub fn new(max_wait: Duration) -> Self {
        Self { packets: BTreeMap::new(), next_seq: None, highest: None, waiting_since: None, max_wait }
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
        self.packets.insert(ext, packet);
        let mut out = Vec::new();
        if self.packets.len() > MAX_BUFFERED {
            self.packets.clear();
            self.next_seq = None;
            self.waiting_since = None;
            out.push(Assembled::Lost);
            return out;
        }
        self.drain(now, &mut out);
        out
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<Assembled>) {
        loop {
            let Some(start) = self.next_seq else { return };
            match self.complete_frame_from(start) {
                Some(end) => {
                    self.waiting_since = None;
                    let frame: Vec<Packet> = (start..=end).filter_map(|s| self.packets.remove(&s)).collect();
                    self.next_seq = Some(end + 1);
                    out.push(depacketize(&frame));
                }
                None => {
                    if self.packets.is_empty() {
                        return;
                    }
                    let since = *self.waiting_since.get_or_insert(now);
                    if now.duration_since(since) < self.max_wait {
                        return;
                    }
                    // Give up on the damaged frame: skip to the packet after the next marker we hold.
                    self.waiting_since = None;
                    out.push(Assembled::Lost);
                    let resume = self.packets.iter().find(|(_, p)| p.header.marker).map(|(s, _)| s + 1);
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
        }
    }

    /// The sequence number of the frame's last packet, if every packet from `start` to it is here.
    fn complete_frame_from(&self, start: u64) -> Option<u64> {
        let first = self.packets.get(&start)?;
        let mut seq = start;
        loop {
            let p = self.packets.get(&seq)?;
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

fn depacketize(frame: &[Packet]) -> Assembled {
    let mut depacketizer = H264Packet::default();
    let mut data = BytesMut::new();
    for p in frame {
        match depacketizer.depacketize(&p.payload) {
            Ok(nal) => data.extend_from_slice(&nal),
            Err(_) => return Assembled::Lost,
        }
    }
    let rtp_timestamp = frame.first().map(|p| p.header.timestamp).unwrap_or_default();
    Assembled::Frame { data: data.freeze(), rtp_timestamp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;

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
        let mut a = FrameAssembler::new(Duration::from_millis(100));
        let t = Instant::now();
        assert!(a.push(t, pkt(10, 3000, false, &nal(1))).is_empty());
        let out = a.push(t, pkt(11, 3000, true, &nal(2)));
        assert_eq!(out.len(), 1, "the frame is out as soon as its marker packet arrives");
        match &out[0] {
            Assembled::Frame { data, rtp_timestamp } => {
                assert_eq!(*rtp_timestamp, 3000);
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x41, 1, 0xAA, 0, 0, 0, 1, 0x41, 2, 0xAA]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reorders_and_waits_for_retransmissions() {
        let mut a = FrameAssembler::new(Duration::from_millis(100));
        let t = Instant::now();
        assert!(a.push(t, pkt(65534, 1, false, &nal(1))).is_empty());
        assert!(a.push(t, pkt(0, 1, true, &nal(3))).is_empty(), "65535 is missing");
        assert!(a.push(t, pkt(1, 2, true, &nal(4))).is_empty(), "frame 2 waits behind frame 1");
        let out = a.push(t + Duration::from_millis(50), pkt(65535, 1, false, &nal(2)));
        assert_eq!(out.len(), 2, "the retransmission completes both frames, across the wrap");
    }

    #[test]
    fn gives_up_after_max_wait_and_reports_loss() {
        let mut a = FrameAssembler::new(Duration::from_millis(100));
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
    fn duplicates_and_junk_do_not_break_it() {
        let mut a = FrameAssembler::new(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(a.push(t, pkt(5, 1, true, &nal(1))).len(), 1);
        assert!(a.push(t, pkt(5, 1, true, &nal(1))).is_empty(), "duplicate ignored");
        let out = a.push(t, pkt(6, 2, true, &[]));
        assert_eq!(out, vec![Assembled::Lost], "an empty payload is a broken frame, not a panic");
    }
}
