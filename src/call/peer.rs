//! Building a peer connection the way every Peercall call needs it: H.264 constrained baseline
//! (packetization-mode 1), VP8 and Opus, NACK both ways (bounded), RTCP reports, PLI/FIR delivered to the
//! sender, transport-wide congestion control both ways (`call::congestion`), and every event
//! forwarded to the engine tagged with its call so stale events are told apart.

use super::codecs::{self, CALL_CODECS};
use super::congestion::{self, Congestion};
use super::recovery::{Recovery, RttNackGenerator, RtxTap, RTX_TAP_SLOT, SENDER_HISTORY};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    Attribute, Interceptor, NackResponderBuilder, Packet as InterceptorPacket, Slot, StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers,
};
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

/// Payload type we offer for Opus (everyone's usual number).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// What a peer connection tells the engine, tagged with the call it belongs to.
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the far side.
    LocalCandidate(RTCIceCandidateInit),
    /// ICE moved.
    Ice(RTCIceConnectionState),
    /// The connection as a whole moved.
    Connection(RTCPeerConnectionState),
    /// Tracks were added: time to make an offer.
    NegotiationNeeded,
    /// The far side's track arrived.
    Track(Arc<dyn TrackRemote>),
}

impl PeerEvent {
    /// The event's name, for logs.
    pub fn name(&self) -> String {
        match self {
            PeerEvent::LocalCandidate(c) => format!("local candidate {}", c.candidate),
            PeerEvent::Ice(s) => format!("ice {s}"),
            PeerEvent::Connection(s) => format!("connection {s}"),
            PeerEvent::NegotiationNeeded => "negotiation needed".to_owned(),
            PeerEvent::Track(_) => "track".to_owned(),
        }
    }
}

/// How a peer connection is built.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// STUN/TURN servers.
    pub ice_servers: Vec<RTCIceServer>,
    /// Local addresses to gather host candidates on (`127.0.0.1:0` in tests; `0.0.0.0:0` skips loopback).
    pub bind_addrs: Vec<String>,
    /// Use TURN relays only (`--ice-transport-policy relay`): hides our addresses from the peer and
    /// proves the TURN path works.
    pub relay_only: bool,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self { ice_servers: Vec::new(), bind_addrs: vec!["0.0.0.0:0".to_owned()], relay_only: false }
    }
}

/// The codec we send and receive audio with.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A local track that packetizes encoded samples for one codec.
/// `stream_id` groups a call's audio and video into one stream: MDN's page shows
/// `event.streams[0]` of each track, so two streams would leave its video element audio-only.
pub fn local_track(
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    stream_id: &str,
) -> Result<Arc<TrackLocalStaticSample>, webrtc::error::Error> {
    let ssrc = rand_ssrc();
    let name = if kind == RtpCodecKind::Video { "video" } else { "audio" };
    // Track ids must be unique across both ends: webrtc 0.21 routes RTCP by track id and checks the
    // remote tracks first, so a far side using the same id as ours would swallow our PLIs.
    let track = MediaStreamTrack::new(
        stream_id.to_owned(),
        format!("peercall-{name}-{ssrc:08x}"),
        format!("peercall {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    );
    Ok(Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?))
}

/// A fresh stream id for one call's tracks.
pub fn new_stream_id() -> String {
    format!("peercall-{:08x}", rand_ssrc())
}

fn rand_ssrc() -> u32 {
    // SSRCs only need to differ between streams of one session; the clock's low bits mixed with a
    // process-wide counter are plenty and spare us a RNG dependency.
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    t.wrapping_mul(2_654_435_761).wrapping_add(COUNTER.fetch_add(0x9E37_79B9, Ordering::Relaxed)) | 1
}

/// A STUN/TURN server as the signaling protocol, the settings and the command line carry it, in the
/// form the peer connection takes.
impl From<crate::signaling::protocol::IceServer> for RTCIceServer {
    fn from(server: crate::signaling::protocol::IceServer) -> Self {
        RTCIceServer { urls: server.urls, username: server.username, credential: server.credential }
    }
}

/// A candidate as the peer connection gathered it, in the shape the signaling protocol trickles it.
impl From<RTCIceCandidateInit> for crate::signaling::protocol::IceCandidate {
    fn from(init: RTCIceCandidateInit) -> Self {
        Self {
            candidate: init.candidate,
            sdp_mid: init.sdp_mid,
            sdp_m_line_index: init.sdp_mline_index,
            username_fragment: init.username_fragment,
        }
    }
}

/// A trickled candidate from the far side, in the form the peer connection takes.
impl From<&crate::signaling::protocol::IceCandidate> for RTCIceCandidateInit {
    fn from(candidate: &crate::signaling::protocol::IceCandidate) -> Self {
        RTCIceCandidateInit {
            candidate: candidate.candidate.clone(),
            sdp_mid: candidate.sdp_mid.clone(),
            sdp_mline_index: candidate.sdp_m_line_index,
            username_fragment: candidate.username_fragment.clone(),
            ..Default::default()
        }
    }
}

/// Builds a peer connection whose events go to `events`, each tagged with `call_id`. The far side's
/// feedback on what we send steers `congestion` (the video sender's target).
pub async fn build(
    settings: &PeerSettings,
    call_id: u64,
    events: mpsc::UnboundedSender<(u64, PeerEvent)>,
    congestion: Arc<Congestion>,
    recovery: Arc<Recovery>,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let first = build_with(
        settings,
        call_id,
        events.clone(),
        Arc::clone(&congestion),
        Arc::clone(&recovery),
        MulticastDnsMode::QueryOnly,
    );
    match first.await {
        Ok(pc) => Ok(pc),
        Err(e) => {
            // The mDNS socket needs a multicast route; hosts and network namespaces without one fail
            // to build at all. Calls work without mDNS: only browsers' `.local` candidates go unresolved.
            tracing::warn!(%e, "peer connection failed with mDNS on; trying without (no .local candidates)");
            build_with(settings, call_id, events, congestion, recovery, MulticastDnsMode::Disabled).await
        }
    }
}

async fn build_with(
    settings: &PeerSettings,
    call_id: u64,
    events: mpsc::UnboundedSender<(u64, PeerEvent)>,
    congestion: Arc<Congestion>,
    recovery: Arc<Recovery>,
    mdns: MulticastDnsMode,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let mut media_engine = MediaEngine::default();
    for codec in CALL_CODECS {
        media_engine.register_codec(codecs::rtp_parameters(codec), RtpCodecKind::Video)?;
        // RTX (RFC 4588) for it, `apt=` its payload type, as browsers offer it: the crate then gives
        // our video an RTX SSRC (`a=ssrc-group:FID`) and its NACK responder resends on it.
        media_engine.register_codec(codecs::rtx_parameters(codec), RtpCodecKind::Video)?;
    }
    media_engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: OPUS_PAYLOAD_TYPE },
        RtpCodecKind::Audio,
    )?;
    // What the crate's `register_default_interceptors` sets up (NACK generator and responder, RTCP
    // sender/receiver reports, TWCC receiver feedback, simulcast header extensions), with loss
    // recovery of our own where the crate's falls short (see `recovery`): the NACK generator asks
    // once per measured round trip (the crate's every 100 ms), a bounded number of times (behind a
    // full bottleneck queue the retransmissions are lost too, and unbounded requests multiplied
    // until the link collapsed: 1,300 packets a second offered to a 200 kbit/s link carrying 80),
    // and RTX is undone before the generator and the reports see it. Our video lists `nack`.
    // TWCC both ways, with our estimator and pacer in the crate's congestion-control slots.
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().with_size(SENDER_HISTORY as u16).build())
        .with(Slot::NackGenerator, RttNackGenerator::new(Arc::clone(&recovery)))
        .with(Slot::from(RTX_TAP_SLOT), RtxTap::new(recovery));
    configure_simulcast_extension_headers(&mut media_engine)?;
    let registry = congestion::configure(registry, &mut media_engine, &congestion)?;
    let registry = configure_rtcp_reports(registry);
    // Application-most, so it sees RTCP after every interceptor has had its look.
    let registry = registry.with(Slot::from(14_000), RtcpTap::default());
    let policy = if settings.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(settings.ice_servers.clone())
        .with_ice_transport_policy(policy)
        .build();
    // Connectivity checks every 25 ms instead of the crate's 200 ms. Setup waits for two check rounds
    // (nomination, then the DTLS start on the next tick), so the interval is most of a LAN call's setup
    // time: 200 ms gave ~430 ms, 25 ms gives ~80 ms. A call checks a handful of pairs, so the extra STUN
    // traffic is a few packets (RFC 8445 allows Ta down to 5 ms). 56 attempts keep the crate's ~1.4 s of
    // patience per pair for slow paths.
    //
    // Peer-reflexive pairs are accepted at once rather than after the crate's 1 s: on a LAN the far
    // side's first check often overtakes its trickled candidate, so the working pair is prflx, and the
    // wait made a third of our loopback calls take 1.1 s to set up. Browsers don't wait either.
    let setting_engine = SettingEngineBuilder::new()
        .with_ice_connection_attempts(Some(Duration::from_millis(25)), Some(56))
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        // Notice a dead path in 2 s (the crate waits 5 s) so the caller can restart ICE while the
        // people are still waiting, rather than after they have given up.
        .with_ice_timeouts(
            Some(Duration::from_secs(2)),
            Some(Duration::from_secs(15)),
            Some(Duration::from_secs(1)),
        )
        .with_multicast_dns_mode(mdns)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { call_id, events }))
        .with_udp_addrs(settings.bind_addrs.clone())
        .build()
        .await?;
    Ok(Arc::new(pc))
}

struct Handler {
    call_id: u64,
    events: mpsc::UnboundedSender<(u64, PeerEvent)>,
}

impl Handler {
    fn send(&self, event: PeerEvent) {
        // The engine may have ended the call already; then nobody needs the event.
        let _ = self.events.send((self.call_id, event));
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_negotiation_needed(&self) {
        self.send(PeerEvent::NegotiationNeeded);
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => self.send(PeerEvent::LocalCandidate(init)),
            Err(e) => tracing::warn!(%e, "could not serialise a local ICE candidate"),
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        self.send(PeerEvent::Ice(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.send(PeerEvent::Connection(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.send(PeerEvent::Track(track));
    }
}

/// Marks the far side's PLI and FIR for delivery to the application (the local track's `poll`),
/// where the video sender turns them into IDRs. Without the mark the interceptor chain consumes all
/// RTCP.
#[derive(Default)]
struct RtcpTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> =
                packets.iter().filter(|p| is_keyframe_request(p.as_ref())).cloned().collect();
            if !requests.is_empty() {
                msg.message.packet = InterceptorPacket::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
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

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Whether an RTCP batch asks for a keyframe.
pub fn asks_for_keyframe(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| is_keyframe_request(p.as_ref()))
}
