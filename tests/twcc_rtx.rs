//! The transport-wide sequence numbers on retransmissions: rtc-interceptor 0.21.1's TWCC sender
//! numbered a stream's media SSRC only, so its RTX packets went out unnumbered, the far side never
//! reported them, and the congestion controller read a link busy with repairs as a queue its media
//! alone could not explain (through the emulator at the step to 600 kbit/s: a 270 ms queue with only
//! audio reported arriving, and a third cut to 118 kbit/s). Peercall builds a patched copy
//! (`patches/rtc-interceptor`); this test fails on the published crate.

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, RTPHeaderExtension, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal;
use std::time::Instant;

const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const EXT_ID: u8 = 5;

fn packet(ssrc: u32, sequence_number: u16) -> TaggedPacket {
    let mut p = rtc::rtp::Packet::default();
    p.header.version = 2;
    p.header.ssrc = ssrc;
    p.header.sequence_number = sequence_number;
    p.payload = vec![0u8; 4].into();
    TaggedPacket {
        now: Instant::now(),
        transport: Default::default(),
        message: AttributedPacket::new(Packet::Rtp(p)),
    }
}

fn transport_sequence(msg: &TaggedPacket) -> Option<u16> {
    let Packet::Rtp(rtp) = &msg.message.packet else { return None };
    let data = rtp.header.get_extension(EXT_ID)?;
    rtc::rtp::extension::transport_cc_extension::TransportCcExtension::unmarshal(&mut data.as_ref())
        .ok()
        .map(|e| e.transport_sequence)
}

#[test]
fn retransmissions_on_the_rtx_ssrc_are_numbered_with_the_media() {
    let mut sender = rtc::interceptor::TwccSenderBuilder::new().build();
    sender.bind_local_stream(&StreamInfo {
        ssrc: 1,
        ssrc_rtx: Some(2),
        rtp_header_extensions: vec![RTPHeaderExtension { uri: TWCC_URI.to_owned(), id: EXT_ID.into() }],
        ..Default::default()
    });
    let mut numbers = Vec::new();
    for (ssrc, seq) in [(1, 10), (2, 500), (1, 11)] {
        sender.handle_write(packet(ssrc, seq)).expect("written");
        while let Some(out) = sender.poll_write() {
            numbers.push(transport_sequence(&out));
        }
    }
    assert_eq!(numbers, [Some(0), Some(1), Some(2)], "the RTX packet (the second) carries the next number");
    // An SSRC the stream does not send on is still left alone.
    sender.handle_write(packet(3, 0)).expect("written");
    let out = sender.poll_write().expect("passes through");
    assert_eq!(transport_sequence(&out), None);
}
