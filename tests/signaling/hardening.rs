//! What a hostile or broken client can do, and that it never harms the server or the others.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{connect, login, users, Client, TestServer, WAIT};

/// alice and bob logged in to the lobby; after any abuse, bob → alice must still work.
async fn pair(server: &TestServer) -> (Client, Client) {
    let alice = login(server, "/", "alice").await;
    let bob = login(server, "/", "bob").await;
    (alice, bob)
}

async fn assert_relay_works(from: &mut Client, to: &mut Client) {
    let text = format!("candidate:{}", from.id);
    from.send(json!({"type": "new-ice-candidate", "target": to.name, "candidate": {"candidate": text}}))
        .await;
    let (got, _) = to.recv_until(|m| m["type"] == "new-ice-candidate").await;
    assert_eq!(got["candidate"]["candidate"], text);
    assert_eq!(got["name"], from.name.as_str());
}

#[tokio::test]
async fn a_message_over_64_kib_gets_an_error_and_a_close_but_a_large_one_under_it_is_relayed_whole() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    // 60 KiB of SDP with multi-byte characters: goes out in several frames, must arrive intact.
    let sdp = "a=x-é€😀\r\n".repeat(60 * 1024 / 16);
    alice.send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": sdp}})).await;
    let (offer, _) = bob.recv_until(|m| m["type"] == "video-offer").await;
    assert_eq!(offer["sdp"]["sdp"], sdp.as_str());
    let mut mallory = login(&server, "/", "mallory").await;
    let huge = json!({"type": "message", "text": "x".repeat(64 * 1024)}).to_string();
    mallory.send_text(&huge).await;
    let (close, before) = mallory.expect_close().await;
    assert!(before.iter().any(|m| m["type"] == "error" && m["reason"] == "too-large"), "{before:?}");
    assert_eq!(close.expect("close frame").code, CloseCode::Size);
    assert_relay_works(&mut bob, &mut alice).await;
}

#[tokio::test]
async fn invalid_json_gets_an_error_and_the_connection_lives() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    for junk in
        ["{", "not json", "[1,2]", "null", "\"text\"", "{\"type\":\"hang-up\",\"target\":\"bob\",}", ""]
    {
        alice.send_text(junk).await;
        alice.expect_error("invalid-json").await;
    }
    // Two `target`s: the server and the browser could read different ones; refused.
    alice.send_text(r#"{"type":"hang-up","target":"bob","target":"carol"}"#).await;
    alice.expect_error("invalid-json").await;
    assert_relay_works(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn unknown_types_are_refused() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    for message in [
        json!({"type": "bogus", "target": "bob"}),
        json!({"type": "userlist", "users": []}),
        json!({"target": "bob"}),
    ] {
        alice.send(message).await;
        alice.expect_error("unknown-type").await;
    }
    bob.assert_nothing_pending().await;
}

#[tokio::test]
async fn binary_frames_are_refused_and_the_connection_lives() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    alice.ws.send(Message::binary(br#"{"type":"hang-up","target":"bob"}"#.to_vec())).await.expect("send");
    alice.expect_error("binary-not-supported").await;
    bob.assert_nothing_pending().await;
    assert_relay_works(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn missing_or_mistyped_fields_are_named() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    for message in [
        json!({"type": "username"}),
        json!({"type": "username", "name": 42}),
        json!({"type": "message"}),
        json!({"type": "video-offer", "sdp": {"type": "offer", "sdp": ""}}),
        json!({"type": "video-offer", "target": "bob"}),
        json!({"type": "video-answer", "target": "bob", "sdp": null}),
        json!({"type": "new-ice-candidate", "target": "bob"}),
        json!({"type": "hang-up", "target": ["bob"]}),
        json!({"type": 7}),
    ] {
        alice.send(message.clone()).await;
        let error = alice.expect_error("missing-field").await;
        assert!(error["text"].as_str().is_some_and(|t| t.contains('"')), "names the field: {error}");
    }
    bob.assert_nothing_pending().await;
}

#[tokio::test]
async fn an_unknown_target_gets_an_error() {
    let server = TestServer::start().await;
    let (mut alice, _bob) = pair(&server).await;
    alice.send(json!({"type": "video-offer", "target": "nobody", "sdp": {"type": "offer", "sdp": ""}})).await;
    let error = alice.expect_error("unknown-target").await;
    assert!(error["text"].as_str().is_some_and(|t| t.contains("nobody")));
}

#[tokio::test]
async fn nothing_but_username_before_username() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    let mut anon = connect(&server, "/").await;
    anon.send(json!({"type": "message", "text": "hi"})).await;
    anon.expect_error("not-logged-in").await;
    anon.send(
        json!({"type": "video-offer", "name": "alice", "target": "bob", "sdp": {"type": "offer", "sdp": ""}}),
    )
    .await;
    anon.expect_error("not-logged-in").await;
    bob.assert_nothing_pending().await;
    alice.recv_until(|m| m["type"] == "message" && m["name"] == "bob").await;
    alice.assert_nothing_pending().await;
}

#[tokio::test]
async fn bad_names_are_refused() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut anon = connect(&server, "/").await;
    for bad in ["", "   ", "a\nb", "tab\there", "nul\u{0}", "bell\u{7}", "del\u{7f}", &"x".repeat(65)] {
        anon.send(json!({"type": "username", "name": bad})).await;
        anon.expect_error("bad-name").await;
    }
    anon.send(json!({"type": "message", "text": "still anonymous"})).await;
    anon.expect_error("not-logged-in").await;
    let longest = "é".repeat(64);
    anon.send(json!({"type": "username", "name": longest})).await;
    let list = alice.wait_userlist(|u| u.len() == 2 && u[1].is_some()).await;
    assert_eq!(list[1].as_deref(), Some(longest.as_str()));
}

#[tokio::test]
async fn nobody_can_speak_as_someone_else() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    let mut mallory = login(&server, "/", "mallory").await;
    mallory.send(json!({"type": "video-offer", "name": "alice", "target": "bob", "sdp": {"type": "offer", "sdp": ""}})).await;
    assert_eq!(bob.recv_not_userlist().await["name"], "mallory");
    mallory.send(json!({"type": "hang-up", "name": "alice", "target": "bob"})).await;
    assert_eq!(bob.recv_not_userlist().await["name"], "mallory");
    mallory.send(json!({"type": "message", "name": "alice", "text": "I am alice", "id": alice.id})).await;
    for who in [&mut alice, &mut bob] {
        let chat = who.recv_until(|m| m["type"] == "message").await.0;
        assert_eq!((chat["name"].as_str(), chat["id"].as_u64()), (Some("mallory"), Some(mallory.id)));
    }
    // Taking alice's name yields a variant, and escapes do not get around it.
    mallory.send_text(r#"{"type":"username","name":"\u0061lice"}"#).await;
    let reply = mallory.recv_until(|m| m["type"] == "rejectusername").await.0;
    assert_eq!(reply["type"], "rejectusername");
    assert_ne!(reply["name"], "alice");
    mallory.name = reply["name"].as_str().expect("name").to_owned();
    assert_relay_works(&mut mallory, &mut alice).await;
}

#[tokio::test]
async fn a_flooding_client_is_limited_then_closed_and_the_others_carry_on() {
    let server = TestServer::with(|c| {
        c.limits.messages_per_second = 50;
        c.limits.burst = 100;
    })
    .await;
    let (mut alice, mut bob) = pair(&server).await;
    let mut flood = login(&server, "/", "flood").await;
    let frames = futures_util::stream::iter((0..2000).map(|i| {
        Ok(Message::text(
            json!({"type": "new-ice-candidate", "target": "bob", "candidate": {"candidate": i.to_string()}})
                .to_string(),
        ))
    }));
    // The server may close mid-flood; that is the point.
    let _ = flood.ws.send_all(&mut frames.map(|m| m)).await;
    let (close, before) = flood.expect_close().await;
    let errors: Vec<_> = before.iter().filter(|m| m["type"] == "error").collect();
    assert!(!errors.is_empty() && errors.iter().all(|m| m["reason"] == "rate-limited"), "{errors:?}");
    assert!(errors.len() <= 3, "one error a window, not one a message: {}", errors.len());
    assert_eq!(close.expect("close frame").code, CloseCode::Policy);
    // bob got at most the burst (plus what refilled meanwhile) and the others still talk.
    let (_, skipped) = bob.recv_until(|m| m["type"] == "userlist" && users(m).len() == 2).await;
    let relayed = skipped.iter().filter(|m| m["type"] == "new-ice-candidate").count();
    assert!((90..=300).contains(&relayed), "relayed {relayed} of the flood");
    assert_relay_works(&mut alice, &mut bob).await;
    assert_relay_works(&mut bob, &mut alice).await;
}

#[tokio::test]
async fn a_reader_that_stalls_is_dropped_without_stalling_the_room() {
    let server = TestServer::with(|c| {
        c.limits.max_queued_messages = 64;
        c.limits.messages_per_second = 100_000;
        c.limits.burst = 100_000;
        c.limits.write_timeout = Duration::from_secs(2);
    })
    .await;
    let (mut alice, mut carol) = pair(&server).await;
    carol.name = "bob".into();
    // A client with a small receive window that logs in and then never reads again.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(
        socket.connect(server.handle.local_addr()).await.expect("connect"),
    );
    let (ws, _) = tokio_tungstenite::client_async(server.url("/"), tcp).await.expect("handshake");
    let mut stalled = Client::new(ws, "stalled");
    stalled.send(json!({"type": "username", "name": "stalled"})).await;
    alice.wait_userlist(|u| u.len() == 3).await;
    let blob = "s".repeat(32 * 1024);
    for i in 0..300 {
        alice.send(json!({"type": "new-ice-candidate", "target": "stalled", "candidate": {"candidate": blob, "i": i}})).await;
        if i % 50 == 0 {
            // Meanwhile the room is served promptly.
            assert_relay_works(&mut alice, &mut carol).await;
        }
    }
    let list = alice.wait_userlist(|u| u.len() == 2).await;
    assert!(!list.contains(&Some("stalled".into())));
    assert_relay_works(&mut carol, &mut alice).await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_its_peer_hung_up() {
    let server = TestServer::with(|c| c.ping_interval = Duration::from_millis(250)).await;
    let mut alice = login(&server, "/", "alice").await;
    let mut ghost = login(&server, "/", "ghost").await;
    ghost.send(json!({"type": "video-offer", "target": "alice", "sdp": {"type": "offer", "sdp": ""}})).await;
    alice.recv_until(|m| m["type"] == "video-offer").await;
    // ghost's socket stays open but nobody reads it, so its pings go unanswered. alice keeps reading
    // (tungstenite answers pings while reading), so she stays.
    let (hang_up, _) = alice.recv_until(|m| m["type"] == "hang-up").await;
    assert_eq!(
        hang_up,
        json!({"type": "hang-up", "name": "ghost", "target": "alice", "reason": "disconnected"})
    );
    assert_eq!(alice.wait_userlist(|u| u.len() == 1).await, vec![Some("alice".to_owned())]);
    // Well past several ping intervals, alice is still served.
    alice.idle_for(Duration::from_millis(1200)).await;
    alice.assert_nothing_pending().await;
    drop(ghost.ws);
}

#[tokio::test]
async fn broken_websocket_and_http_garbage_do_not_hurt_the_server() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = pair(&server).await;
    // Garbage instead of HTTP.
    let mut tcp = TcpStream::connect(server.handle.local_addr()).await.expect("connect");
    tcp.write_all(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut buf)).await.expect("server answers or closes");
    // A proper handshake, then an unmasked (client frames must be masked) text frame.
    let (ws, _) = tokio_tungstenite::connect_async(server.url("/")).await.expect("handshake");
    let mut tcp = ws.into_inner();
    let tcp = match &mut tcp {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("plain ws"),
    };
    tcp.write_all(&[0x81, 0x02, b'{', b'}']).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut buf)).await.expect("server closes");
    // A bad WebSocket version.
    let mut tcp = TcpStream::connect(server.handle.local_addr()).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n").await.expect("write");
    let mut head = vec![0; 64];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut head)).await.expect("answer").expect("read");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 426"));
    assert_relay_works(&mut alice, &mut bob).await;
}
