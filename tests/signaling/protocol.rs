//! Every protocol rule of DESIGN.md §4, as MDN's webrtc-from-chat page would exercise it.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{connect, login, users, TestServer, WAIT};
use peercall::signaling::protocol::now_ms;

fn names(list: &[&str]) -> Vec<Option<String>> {
    list.iter().map(|n| Some((*n).to_owned())).collect()
}

#[tokio::test]
async fn ids_count_up_from_start_time_and_userlist_keeps_join_order_with_null_for_unnamed() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let id = alice.id;
    assert!(id.abs_diff(now_ms()) < 60_000, "id {id} is the server's start time in ms");
    let unnamed = connect(&server, "/").await;
    assert_eq!(unnamed.id, id + 1, "ids increment");
    let bob = login(&server, "/", "bob").await;
    assert_eq!(bob.id, id + 2);
    let list = alice.wait_userlist(|u| u.len() == 3).await;
    assert_eq!(list, vec![Some("alice".into()), None, Some("bob".into())]);
    drop(unnamed);
    let list = alice.wait_userlist(|u| u.len() == 2).await;
    assert_eq!(list, names(&["alice", "bob"]));
}

#[tokio::test]
async fn json_subprotocol_is_echoed_and_optional() {
    let server = TestServer::start().await;
    for (offered, echoed) in [(Some("json"), Some("json")), (Some("chat, json"), Some("json")), (None, None)]
    {
        let mut request = server.url("/").into_client_request().expect("request");
        if let Some(offered) = offered {
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(offered));
        }
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("handshake");
        let got = response.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().expect("ascii"));
        assert_eq!(got, echoed, "offered {offered:?}");
        let first = futures_util::StreamExt::next(&mut ws).await.expect("a message").expect("ok");
        assert!(first.to_text().expect("text").contains(r#""type":"id""#));
    }
}

#[tokio::test]
async fn a_taken_name_gets_a_numbered_variant_and_rejectusername() {
    let server = TestServer::start().await;
    let mut first = login(&server, "/", "alice").await;
    let mut second = connect(&server, "/").await;
    second.send(json!({"type": "username", "name": "alice", "id": second.id})).await;
    let reply = second.recv_not_userlist().await;
    assert_eq!(reply, json!({"type": "rejectusername", "id": second.id, "name": "alice1"}));
    let third = login(&server, "/", "alice").await;
    assert_eq!(third.name, "alice2");
    let list = first.wait_userlist(|u| u.len() == 3).await;
    assert_eq!(list, names(&["alice", "alice1", "alice2"]));
    // Keeping one's own name is not a clash.
    second.send(json!({"type": "username", "name": "alice1"})).await;
    second.assert_nothing_pending().await;
}

#[tokio::test]
async fn chat_goes_to_the_whole_room_with_server_name_date_and_no_tags() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/", "bob").await;
    let before = now_ms();
    let bob_id = bob.id;
    bob.send(json!({"type": "message", "text": "<b>hi</b> there <img src=x onerror=alert(1)>", "name": "alice", "id": 1, "date": 0}))
        .await;
    for who in [&mut alice, &mut bob] {
        let msg = who.recv_not_userlist().await;
        assert_eq!(msg["type"], "message");
        assert_eq!(msg["name"], "bob", "the server names the sender");
        assert_eq!(msg["text"], "hi there ");
        assert_eq!(msg["id"], bob_id);
        let date = msg["date"].as_u64().expect("date");
        assert!(date >= before && date <= now_ms(), "server date {date}");
    }
}

#[tokio::test]
async fn targeted_messages_reach_the_target_only_untouched_but_for_name() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/", "bob").await;
    let mut carol = login(&server, "/", "carol").await;
    let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let sent = [
        json!({"type": "video-offer", "name": "carol", "target": "bob", "sdp": {"type": "offer", "sdp": sdp}, "extra": [1, {"k": null}]}),
        json!({"type": "new-ice-candidate", "target": "bob", "candidate": {"candidate": "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"}}),
        json!({"type": "hang-up", "name": "alice", "target": "bob", "reason": "declined"}),
        json!({"type": "video-answer", "name": "x", "target": "bob", "sdp": {"type": "answer", "sdp": sdp}}),
    ];
    for message in &sent {
        alice.send(message.clone()).await;
        let got = bob.recv_not_userlist().await;
        let mut expected = message.clone();
        expected["name"] = json!("alice");
        assert_eq!(got, expected, "relayed as sent, name set by the server");
    }
    // Byte for byte: fields keep their order and spelling, escapes included.
    let raw = r#"{"type":"new-ice-candidate","target":"bob","candidate":{"candidate":"a\u0062\"c","sdpMid":"0"},"z":1.50}"#;
    alice.send_text(raw).await;
    let got = bob.ws.next_text().await;
    let expected = r#"{"type":"new-ice-candidate","target":"bob","candidate":{"candidate":"a\u0062\"c","sdpMid":"0"},"z":1.50,"name":"alice"}"#;
    assert_eq!(got, expected);
    carol.assert_nothing_pending().await;
    alice.assert_nothing_pending().await;
}

#[tokio::test]
async fn a_vanished_caller_gets_its_peer_a_hang_up() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/", "bob").await;
    alice.send(json!({"type": "video-offer", "name": "alice", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0"}})).await;
    bob.recv_until(|m| m["type"] == "video-offer").await;
    bob.send(json!({"type": "video-answer", "name": "bob", "target": "alice", "sdp": {"type": "answer", "sdp": "v=0"}})).await;
    alice.recv_until(|m| m["type"] == "video-answer").await;
    // Not even a close frame: the TCP connection just goes away.
    drop(alice);
    let (hang_up, _) = bob.recv_until(|m| m["type"] == "hang-up").await;
    assert_eq!(
        hang_up,
        json!({"type": "hang-up", "name": "alice", "target": "bob", "reason": "disconnected"})
    );
    assert_eq!(bob.wait_userlist(|u| u.len() == 1).await, names(&["bob"]));
}

#[tokio::test]
async fn a_callee_that_closes_mid_offer_hangs_up_on_the_caller() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/", "bob").await;
    alice.send(json!({"type": "video-offer", "name": "alice", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0"}})).await;
    bob.recv_until(|m| m["type"] == "video-offer").await;
    bob.ws.close(None).await.expect("close");
    let (hang_up, _) = alice.recv_until(|m| m["type"] == "hang-up").await;
    assert_eq!(
        hang_up,
        json!({"type": "hang-up", "name": "bob", "target": "alice", "reason": "disconnected"})
    );
}

#[tokio::test]
async fn a_relayed_hang_up_ends_the_pair() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/", "bob").await;
    alice.send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0"}})).await;
    bob.recv_until(|m| m["type"] == "video-offer").await;
    alice.send(json!({"type": "hang-up", "target": "bob"})).await;
    bob.recv_until(|m| m["type"] == "hang-up").await;
    drop(alice);
    let (_, skipped) = bob.recv_until(|m| m["type"] == "userlist" && users(m).len() == 1).await;
    assert!(skipped.iter().all(|m| m["type"] == "userlist"), "no second hang-up: {skipped:?}");
    bob.assert_nothing_pending().await;
}

#[tokio::test]
async fn taking_another_name_mid_call_hangs_up_under_the_old_name() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/", "bob").await;
    alice.send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0"}})).await;
    bob.recv_until(|m| m["type"] == "video-offer").await;
    alice.send(json!({"type": "username", "name": "alicia"})).await;
    let (hang_up, _) = bob.recv_until(|m| m["type"] == "hang-up").await;
    assert_eq!(
        hang_up,
        json!({"type": "hang-up", "name": "alice", "target": "bob", "reason": "disconnected"})
    );
    assert_eq!(bob.wait_userlist(|u| u.contains(&Some("alicia".into()))).await, names(&["alicia", "bob"]));
    // The old name is free again and the new one is reachable.
    bob.send(json!({"type": "hang-up", "target": "alicia"})).await;
    assert_eq!(alice.recv_not_userlist().await["name"], "bob");
}

#[tokio::test]
async fn rooms_never_see_each_other() {
    let server = TestServer::start().await;
    let mut a_alice = login(&server, "/team-a", "alice").await;
    let mut a_bob = login(&server, "/team-a", "bob").await;
    // The same name is free in another room.
    let mut b_alice = login(&server, "/team-b", "alice").await;
    assert_eq!(b_alice.name, "alice");
    let mut lobby = login(&server, "/", "carol").await;
    assert_eq!(a_alice.wait_userlist(|u| u.len() == 2).await, names(&["alice", "bob"]));
    assert_eq!(b_alice.wait_userlist(|u| !u.is_empty()).await, names(&["alice"]));
    assert_eq!(lobby.wait_userlist(|u| !u.is_empty()).await, names(&["carol"]));
    a_bob.send(json!({"type": "message", "text": "team-a only"})).await;
    assert_eq!(a_alice.recv_not_userlist().await["text"], "team-a only");
    b_alice
        .send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0"}}))
        .await;
    b_alice.expect_error("unknown-target").await;
    lobby.send(json!({"type": "new-ice-candidate", "target": "alice", "candidate": {"candidate": ""}})).await;
    lobby.expect_error("unknown-target").await;
    b_alice.assert_nothing_pending().await;
    lobby.assert_nothing_pending().await;
    assert_eq!(a_bob.recv_not_userlist().await["text"], "team-a only");
    a_bob.assert_nothing_pending().await;
}

#[tokio::test]
async fn a_capped_room_turns_the_next_joiner_away_cleanly() {
    let server = TestServer::with(|c| c.room_cap = Some(2)).await;
    let mut alice = login(&server, "/duo", "alice").await;
    let bob = login(&server, "/duo", "bob").await;
    let (ws, _) = tokio_tungstenite::connect_async(server.url("/duo")).await.expect("handshake");
    let mut third = crate::support::Client::new(ws, "third");
    let (close, before) = third.expect_close().await;
    assert_eq!(before, vec![json!({"type": "full", "room": "duo"})]);
    assert_eq!(close.expect("close frame").code, CloseCode::Again);
    // Another room is not affected; the room takes someone again once a member leaves.
    login(&server, "/other", "carol").await;
    drop(bob);
    alice.wait_userlist(|u| u.len() == 1).await;
    // dave stays connected: a join and leave inside one user-list window reach alice as neither.
    let _dave = login(&server, "/duo", "dave").await;
    alice.wait_userlist(|u| u.len() == 2).await;
}

#[tokio::test]
async fn healthz_answers_200_and_a_plain_get_serves_the_browser_client() {
    let server = TestServer::start().await;
    for (path, status, body) in
        [("/healthz", "200", "ok\n"), ("/team-a", "200", "new WebSocket("), ("/", "200", "video-offer")]
    {
        let mut tcp = TcpStream::connect(server.handle.local_addr()).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await.expect("in time").expect("read");
        assert!(response.starts_with(&format!("HTTP/1.1 {status}")), "{path}: {response}");
        assert!(response.contains(body), "{path}: {response}");
    }
}

#[tokio::test]
async fn shutdown_says_going_away_to_every_client() {
    let server = TestServer::start().await;
    let mut alice = login(&server, "/", "alice").await;
    let mut bob = login(&server, "/x", "bob").await;
    let started = std::time::Instant::now();
    server.handle.shutdown().await.expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
    for client in [&mut alice, &mut bob] {
        let (close, _) = client.expect_close().await;
        assert_eq!(close.expect("close frame").code, CloseCode::Away);
    }
}

/// The raw text of the next text frame.
trait NextText {
    async fn next_text(&mut self) -> String;
}

impl NextText for crate::support::Ws {
    async fn next_text(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(WAIT, futures_util::StreamExt::next(self))
                .await
                .expect("in time")
                .expect("open")
                .expect("ok");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).expect("json");
                if value["type"] != "userlist" {
                    return text.to_string();
                }
            }
        }
    }
}
