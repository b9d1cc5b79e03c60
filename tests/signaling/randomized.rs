//! Many clients at once send thousands of random and mutated messages; the server must still serve
//! a normal login and relay afterwards.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{connect, login, TestServer};

const CLIENTS: usize = 20;
const MESSAGES_PER_CLIENT: usize = 300;

/// A valid message of every kind, to be mutated.
fn templates(me: &str, peer: &str) -> Vec<Value> {
    vec![
        json!({"type": "username", "name": me, "id": 1, "date": 2}),
        json!({"type": "message", "text": "<i>hello</i>", "id": 1, "date": 2}),
        json!({"type": "video-offer", "name": me, "target": peer, "sdp": {"type": "offer", "sdp": "v=0\r\n"}}),
        json!({"type": "video-answer", "name": me, "target": peer, "sdp": {"type": "answer", "sdp": "v=0\r\n"}}),
        json!({"type": "new-ice-candidate", "target": peer, "candidate": {"candidate": "candidate:1", "sdpMid": "0"}}),
        json!({"type": "hang-up", "name": me, "target": peer}),
    ]
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>()),
        4 => json!(random_string(rng)),
        5 => Value::Array((0..rng.random_range(0..4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => Value::Object(
            (0..rng.random_range(0..4)).map(|_| (random_string(rng), random_value(rng, depth + 1))).collect(),
        ),
    }
}

fn random_string(rng: &mut StdRng) -> String {
    let max = if rng.random_ratio(1, 20) { 200 } else { 12 };
    let len = rng.random_range(0..max);
    (0..len)
        .map(|_| if rng.random_ratio(1, 4) { rng.random::<char>() } else { rng.random_range(' '..='~') })
        .collect()
}

/// A frame: a mutated template, random JSON, truncated JSON, junk text or a binary frame.
fn random_frame(rng: &mut StdRng, me: &str, peer: &str) -> Message {
    let templates = templates(me, peer);
    let mut msg = templates[rng.random_range(0..templates.len())].clone();
    match rng.random_range(0..10) {
        0..=4 => {
            let map = msg.as_object_mut().expect("object");
            for _ in 0..rng.random_range(1..4) {
                let keys: Vec<String> = map.keys().cloned().collect();
                match rng.random_range(0..3) {
                    0 if !keys.is_empty() => {
                        map.remove(&keys[rng.random_range(0..keys.len())]);
                    }
                    1 if !keys.is_empty() => {
                        map.insert(keys[rng.random_range(0..keys.len())].clone(), random_value(rng, 0));
                    }
                    _ => {
                        map.insert(random_string(rng), random_value(rng, 0));
                    }
                }
            }
            Message::text(msg.to_string())
        }
        5 => Message::text(random_value(rng, 0).to_string()),
        6 => {
            let text = msg.to_string();
            let cut = rng.random_range(0..text.len());
            Message::text(text.chars().take(cut).collect::<String>())
        }
        7 => Message::text(random_string(rng)),
        8 => Message::binary((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()),
        _ => Message::text(msg.to_string()),
    }
}

#[tokio::test]
async fn random_and_mutated_messages_from_many_clients_leave_the_server_serving() {
    let server = TestServer::with(|c| c.limits.messages_per_second = 2000).await;
    let seed: u64 = rand::rng().random();
    println!("randomized seed: {seed}");
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let room = if c % 2 == 0 { "/" } else { "/fuzz" };
        let client = connect(&server, room).await;
        let me = format!("f{c}");
        let peer = format!("f{}", (c + 2) % CLIENTS);
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
        let (mut sink, mut stream) = client.ws.split();
        // Read everything the server sends, so this client is never the slow one.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        tasks.push(tokio::spawn(async move {
            let _ = sink.send(Message::text(json!({"type": "username", "name": me}).to_string())).await;
            for _ in 0..MESSAGES_PER_CLIENT {
                let frame = random_frame(&mut rng, &me, &peer);
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("fuzz client finishes")
            .expect("no panic");
    }
    // The server still does its job, in both rooms.
    for room in ["/", "/fuzz"] {
        let mut alice = login(&server, room, "alice").await;
        let mut bob = login(&server, room, "bob").await;
        let offer = json!({"type": "video-offer", "name": "bob", "target": "alice", "sdp": {"type": "offer", "sdp": "v=0\r\n"}});
        bob.send(offer.clone()).await;
        let (got, _) = alice.recv_until(|m| m["type"] == "video-offer").await;
        assert_eq!(got, offer);
        alice.send(json!({"type": "message", "text": "still here"})).await;
        let (chat, _) = bob.recv_until(|m| m["type"] == "message" && m["name"] == "alice").await;
        assert_eq!(chat["text"], "still here");
        let list = alice.wait_userlist(|u| u.contains(&Some("bob".into()))).await;
        assert_eq!(list, vec![Some("alice".to_owned()), Some("bob".to_owned())]);
    }
}
