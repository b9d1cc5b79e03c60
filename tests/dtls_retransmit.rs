//! The DTLS handshake's retransmission, on the crate webrtc-rs uses (`rtc-dtls`, built from
//! `patches/rtc-dtls`): two sans-I/O endpoints in one thread, datagrams carried by hand so that
//! the test decides which are lost, and time passed in. No sockets, no clock.
//!
//! rtc-dtls 0.21.1 as published stopped a side's retransmit timer whenever a handshake record
//! arrived, even one that did not advance the handshake. A server whose flight 4 was lost then got
//! the client's repeated flight 3, stopped its timer and never sent flight 4 again; the client gave
//! up after its retries and the call failed "could not connect". This test fails on that crate
//! (the server is left without a timer) and passes on the patch.

use rtc::dtls::cipher_suite::CipherSuiteId;
use rtc::dtls::config::{ConfigBuilder, HandshakeConfig};
use rtc::dtls::crypto::Certificate;
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::shared::TransportProtocol;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

const SUITE: CipherSuiteId = CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256;

fn client_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 5000))
}

fn server_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 2], 5000))
}

fn config(is_client: bool) -> Arc<HandshakeConfig> {
    let provider = rtc::crypto::default_provider().expect("webrtc-rs builds a crypto provider");
    let mut builder = ConfigBuilder::default()
        .with_crypto_provider(provider.clone())
        .with_cipher_suites(vec![SUITE])
        .with_insecure_skip_verify(true);
    if !is_client {
        let cert = Certificate::generate_self_signed(vec!["peercall".to_owned()], provider.crypto())
            .expect("a self-signed certificate");
        builder = builder.with_certificates(vec![cert]);
    }
    Arc::new(builder.build(is_client, None).expect("a valid DTLS config"))
}

/// Delivers everything `from` has to send to `to` at `now`; returns how many datagrams went and
/// whether `to` finished its handshake.
fn carry(from: &mut Endpoint, from_addr: SocketAddr, to: &mut Endpoint, now: Instant) -> (usize, bool) {
    let (mut sent, mut complete) = (0, false);
    while let Some(t) = from.poll_transmit() {
        sent += 1;
        let events = to.read(now, from_addr, None, t.message).expect("a well-formed handshake datagram");
        complete |= events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete));
    }
    (sent, complete)
}

/// Drops everything `from` has to send; returns how many datagrams were lost.
fn lose(from: &mut Endpoint) -> usize {
    std::iter::from_fn(|| from.poll_transmit()).count()
}

#[test]
fn a_server_whose_flight_4_was_lost_resends_it_after_the_client_repeats_flight_3() {
    let mut now = Instant::now();
    let mut client = Endpoint::new(client_addr(), TransportProtocol::UDP, None);
    let mut server = Endpoint::new(server_addr(), TransportProtocol::UDP, Some(config(false)));
    client.connect(now, server_addr(), config(true), None).expect("the client starts");

    // Flight 1 (ClientHello), flight 2 (HelloVerifyRequest), flight 3 (ClientHello with the cookie).
    assert!(carry(&mut client, client_addr(), &mut server, now).0 > 0, "flight 1");
    assert!(carry(&mut server, server_addr(), &mut client, now).0 > 0, "flight 2");
    assert!(carry(&mut client, client_addr(), &mut server, now).0 > 0, "flight 3");
    // Flight 4 (ServerHello … ServerHelloDone) is lost on the way.
    assert!(lose(&mut server) > 0, "the server sent flight 4");
    assert!(server.poll_timeout(&client_addr()).is_some(), "the server waits for flight 5");

    // The client's timer fires first (or flight 4's datagrams were what it lost): flight 3 again.
    now = client.poll_timeout(&server_addr()).expect("the client waits for flight 4");
    client.handle_timeout(server_addr(), now).expect("a first retransmission");
    assert!(carry(&mut client, client_addr(), &mut server, now).0 > 0, "flight 3, repeated");

    // The repeat is nothing new to the server, but its flight 4 is still unanswered: it must keep a
    // timer for it (the published crate cleared it here and waited for ever).
    let timer = server
        .poll_timeout(&client_addr())
        .expect("the server stopped its retransmit timer on a repeated flight 3");
    now = timer.max(now);
    server.handle_timeout(client_addr(), now).expect("the server's retransmission");
    let (resent, _) = carry(&mut server, server_addr(), &mut client, now);
    assert!(resent > 0, "the server resent flight 4");

    // From here nothing is lost: flights 5 and 6 complete both sides.
    let (_, server_done) = carry(&mut client, client_addr(), &mut server, now);
    let (_, client_done) = carry(&mut server, server_addr(), &mut client, now);
    assert!(
        server_done && client_done,
        "the handshake completes (server {server_done}, client {client_done})"
    );

    // And the keys both sides derived agree: a record the client encrypts, the server reads.
    client.write(now, server_addr(), b"after a lost flight 4").expect("application data after the handshake");
    let mut received = Vec::new();
    while let Some(t) = client.poll_transmit() {
        for event in server.read(now, client_addr(), None, t.message).expect("an application record") {
            if let EndpointEvent::ApplicationData(data) = event {
                received.extend_from_slice(&data);
            }
        }
    }
    assert_eq!(received, b"after a lost flight 4");
}
