//! End-to-end calls between two headless engines: real server on loopback, real WebRTC, real codecs.

mod common;

use common::*;
use peercall::call::{CallState, Command, EndReason, Event};
use peercall::media::pattern::{psnr_luma, read_stamp, render};
use peercall::media::tone::dominant_frequency;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The PSNR a correctly decoded frame must reach. A frame at our bitrate decodes at 35+ dB against the
/// frame that was sent; a frame compared with the wrong frame number (bars shifted, square moved) or a
/// torn picture lands below 25 dB (see `consecutive_frames_differ_and_psnr_tells_them_apart`), so 30 dB
/// separates "this is the frame that was sent" from everything else with margin on both sides.
const MIN_PSNR_DB: f64 = 30.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_calls_bob_and_both_decode_what_was_sent() {
    let (_server, url) = start_server().await;
    let (alice, bob) = pair(&url, "alice", "bob").await;
    let mut bob_audio = bob.remote_audio();
    let mut alice_audio = alice.remote_audio();

    assert!(alice.send(Command::Call("bob".into())));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { peer } if peer == "bob")).await;
    wait_state(&bob, "bob in call", |s| matches!(s, CallState::InCall { peer } if peer == "alice")).await;

    // Video, both ways: stamps readable, frame numbers increasing, pixels matching what was sent.
    for (who, engine) in [("bob", &bob), ("alice", &alice)] {
        let mut video = engine.remote_video();
        let mut seen = Vec::new();
        within(15, &format!("{who} decodes 30 frames"), async {
            while seen.len() < 30 {
                video.changed().await.expect("engine alive");
                let Some(frame) = video.borrow_and_update().clone() else { continue };
                let stamp =
                    read_stamp(&frame).unwrap_or_else(|| panic!("{who}: a decoded frame lost its stamp"));
                let sent = render(stamp, frame.width, frame.height);
                let psnr = psnr_luma(&frame, &sent);
                assert!(psnr > MIN_PSNR_DB, "{who}: frame {} PSNR {psnr:.1} dB", stamp.frame_no);
                seen.push(stamp.frame_no);
            }
        })
        .await;
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{who}: frame numbers must increase: {seen:?}");
        assert_eq!((320, 240), {
            let f = video.borrow().clone().expect("a frame");
            (f.width, f.height)
        });
    }

    // Both on auto: alice offers H.264 first and bob follows her order, so H.264 both ways.
    let h264 = Some(peercall::media::codec::VideoCodec::H264);
    assert_eq!(stats_codecs(&alice).await, (h264, h264), "alice's codecs out and in");
    assert_eq!(stats_codecs(&bob).await, (h264, h264), "bob's codecs out and in");

    // Audio, both ways: each hears the other's tone (alice sends 440 Hz, bob 660 Hz).
    for (who, rx, expected) in [("bob", &mut bob_audio, 440.0), ("alice", &mut alice_audio, 660.0)] {
        let mut pcm = Vec::new();
        within(10, &format!("{who} hears 1 s of audio"), async {
            while pcm.len() < 48_000 {
                match rx.recv().await {
                    Ok(chunk) => pcm.extend_from_slice(&chunk),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("{who}: audio ended: {e}"),
                }
            }
        })
        .await;
        let candidates = (2..40).map(|k| k as f64 * 55.0);
        assert_eq!(dominant_frequency(&pcm, candidates), Some(expected), "{who} hears the other's tone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_hangs_up_both_return_to_idle_and_a_second_call_works() {
    let (_server, url) = start_server().await;
    let (alice, bob) = pair(&url, "alice", "bob").await;
    let mut alice_events = alice.subscribe();
    for round in 0..2 {
        alice.send(Command::Call("bob".into()));
        wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;
        wait_frames(&alice, 5).await;
        wait_frames(&bob, 5).await;
        bob.send(Command::HangUp);
        let reason = wait_ended(&mut alice_events, "alice hears the hang-up").await;
        assert_eq!(reason, EndReason::RemoteHungUp, "round {round}");
        wait_state(&alice, "alice idle", CallState::is_idle).await;
        wait_state(&bob, "bob idle", CallState::is_idle).await;
        assert!(alice.remote_video().borrow().is_none(), "the remote picture is cleared");
        assert!(alice.counters().borrow().is_none(), "the call's resources are released");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_caller_gets_busy_and_calling_someone_gone_is_an_error() {
    let (_server, url) = start_server().await;
    let (alice, bob) = pair(&url, "alice", "bob").await;
    let carol = peercall::call::Engine::start(config("carol", &url));
    wait_users(&carol, &["alice", "bob", "carol"]).await;
    let mut carol_events = carol.subscribe();

    alice.send(Command::Call("bob".into()));
    wait_state(&bob, "bob in call", |s| matches!(s, CallState::InCall { .. })).await;
    carol.send(Command::Call("bob".into()));
    let reason = wait_ended(&mut carol_events, "carol's call ends").await;
    assert_eq!(reason, EndReason::Busy);
    assert!(
        matches!(bob.state().borrow().clone(), CallState::InCall { peer } if peer == "alice"),
        "bob's call goes on"
    );

    // dave logs in and leaves; calling him afterwards is an error, not a hang.
    let dave = peercall::call::Engine::start(config("dave", &url));
    wait_users(&carol, &["dave"]).await;
    dave.send(Command::Shutdown);
    drop(dave);
    within(5, "dave leaves carol's user list", async {
        let mut users = carol.users();
        while users.borrow().iter().any(|u| u == "dave") {
            users.changed().await.expect("engine alive");
        }
    })
    .await;
    carol.send(Command::Call("dave".into()));
    let error = wait_event(&mut carol_events, "an error about dave", |e| match e {
        Event::Error(error) => Some(error.to_string()),
        _ => None,
    })
    .await;
    assert!(error.contains("dave") && error.contains("not online"), "{error}");
    carol.send(Command::Call("carol".into()));
    let error = wait_event(&mut carol_events, "an error about calling yourself", |e| match e {
        Event::Error(error) => Some(error.to_string()),
        _ => None,
    })
    .await;
    assert!(error.contains("yourself"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_produces_an_idr_from_the_sender() {
    let (_server, url) = start_server().await;
    let (alice, bob) = pair(&url, "alice", "bob").await;
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;
    wait_frames(&bob, 10).await;
    let alice_counters = alice.counters().borrow().clone().expect("alice's call counters");
    let bob_counters = bob.counters().borrow().clone().expect("bob's call counters");
    // Let the start-up keyframe exchange settle, then ask once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idr_before = alice_counters.keyframes_sent.load(Ordering::Relaxed);
    let requests_before = alice_counters.keyframe_requests_received.load(Ordering::Relaxed);
    let decoded_idr_before = bob_counters.keyframes_decoded.load(Ordering::Relaxed);
    bob.send(Command::RequestKeyframe);
    within(5, "alice encodes an IDR and bob decodes it", async {
        loop {
            let idr = alice_counters.keyframes_sent.load(Ordering::Relaxed);
            let requests = alice_counters.keyframe_requests_received.load(Ordering::Relaxed);
            let decoded = bob_counters.keyframes_decoded.load(Ordering::Relaxed);
            if idr > idr_before && requests > requests_before && decoded > decoded_idr_before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A caller whose candidates overtake its offer: carol is a bare peer connection driven by hand over a
/// raw WebSocket, sending every candidate before the offer. bob must queue them and still connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_that_arrive_before_the_offer_still_connect() {
    use futures_util::{SinkExt, StreamExt};
    use peercall::call::media::{receive_track, CallMedia, Sinks};
    use peercall::call::peer::PeerEvent;
    use peercall::signaling::protocol::{IceCandidate, Message, SessionDescription};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use webrtc::peer_connection::RTCSessionDescription;

    let (_server, url) = start_server().await;
    let mut bob_config = config("bob", &url);
    bob_config.auto_answer = true;
    let bob = peercall::call::Engine::start(bob_config);
    wait_users(&bob, &["bob"]).await;

    // carol logs in over a raw socket, as a browser page would.
    let mut ws = raw_login(&url, "carol").await;
    let next_json = |text: &str| serde_json::from_str::<Message>(text).ok();
    wait_users(&bob, &["bob", "carol"]).await;

    // carol's peer connection: receives bob's video, sends nothing but an audio track (bob answers it).
    let (pc, mut rx) = hand_played_peer("carol").await;
    let offer = pc.create_offer(None).await.expect("offer");
    let offer_sdp = offer.sdp.clone();
    pc.set_local_description(offer).await.expect("local description");

    // Gather every candidate first.
    let mut candidates = Vec::new();
    within(10, "carol's candidates", async {
        loop {
            match rx.recv().await.expect("peer events") {
                (_, PeerEvent::LocalCandidate(c)) => candidates.push(c),
                (_, PeerEvent::Ice(_))
                | (_, PeerEvent::Connection(_))
                | (_, PeerEvent::NegotiationNeeded) => {}
                (_, PeerEvent::Track(_)) => {}
            }
            if !candidates.is_empty() && pc.local_description().await.is_some() {
                // One host candidate on loopback is all there is to gather here.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while let Ok((_, PeerEvent::LocalCandidate(c))) = rx.try_recv() {
                    candidates.push(c);
                }
                return;
            }
        }
    })
    .await;
    assert!(!candidates.is_empty(), "carol gathered no candidate");

    // Candidates first, then the offer, without the candidates in it.
    for c in &candidates {
        let msg = Message::NewIceCandidate {
            name: Some("carol".into()),
            target: "bob".into(),
            candidate: IceCandidate::from(c.clone()),
        };
        ws.send(Ws::text(msg.to_json())).await.expect("send candidate");
    }
    // What browsers also send: an mDNS host candidate (which no one here can resolve) and
    // end-of-candidates. Both must be taken without an error and without hurting the call.
    let mut bob_events = bob.subscribe();
    for candidate in
        ["candidate:1 1 udp 2122260223 6b5c1e0e-3f52-4c7e-9d7a-1c2b3a4d5e6f.local 54321 typ host", ""]
    {
        let msg = Message::NewIceCandidate {
            name: Some("carol".into()),
            target: "bob".into(),
            candidate: IceCandidate {
                candidate: candidate.into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
                username_fragment: None,
            },
        };
        ws.send(Ws::text(msg.to_json())).await.expect("send candidate");
    }
    assert!(!offer_sdp.contains("a=candidate"), "the offer must not carry the candidates itself");
    let offer_msg = Message::VideoOffer {
        name: "carol".into(),
        target: "bob".into(),
        sdp: SessionDescription { kind: "offer".into(), sdp: offer_sdp },
    };
    ws.send(Ws::text(offer_msg.to_json())).await.expect("send offer");

    // bob answers; carol applies the answer (bob's candidates are in flight too, but carol ignores
    // them: bob's connectivity checks reach carol through the candidates bob queued).
    let answer = within(10, "bob's answer", async {
        loop {
            let Some(Ok(Ws::Text(t))) = ws.next().await else { panic!("socket closed") };
            if let Some(Message::VideoAnswer { sdp, .. }) = next_json(&t) {
                return sdp;
            }
        }
    })
    .await;
    let answer = RTCSessionDescription::answer(answer.sdp).expect("valid answer");
    pc.set_remote_description(answer).await.expect("answer applies");

    wait_state(
        &bob,
        "bob in call with carol",
        |s| matches!(s, CallState::InCall { peer } if peer == "carol"),
    )
    .await;
    // And media flows: carol decodes bob's pattern.
    let sinks = Sinks::new();
    const CALL: u64 = 1;
    sinks.begin_call(CALL);
    let mut video = sinks.remote_video();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let media =
        CallMedia { call: CALL, controls: Default::default(), counters: Default::default(), stop: stop_rx };
    within(10, "a decoded frame from bob at carol", async {
        loop {
            tokio::select! {
                event = rx.recv() => {
                    if let Some((_, PeerEvent::Track(track))) = event {
                        tokio::spawn(receive_track(track, sinks.clone(), media.clone()));
                    }
                }
                changed = video.changed() => {
                    changed.expect("sink alive");
                    if video.borrow().is_some() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let frame = video.borrow().clone().expect("frame");
    assert!(read_stamp(&frame).is_some(), "carol decodes bob's stamped pattern");
    loop {
        use tokio::sync::broadcast::error::TryRecvError;
        match bob_events.try_recv() {
            Ok(event) => assert!(!matches!(event, peercall::call::Event::Error(_)), "bob reported {event:?}"),
            // Events dropped for a slow reader: read on, the newer ones still count.
            Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    pc.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_made_after_the_start_still_hears_the_login_and_the_user_list() {
    // The driver may connect, log in and get the user list before the caller of `start` subscribes
    // (a loaded machine): the first listener must still hear all of it, or a window shows nobody.
    let (_server, url) = start_server().await;
    let erin = peercall::call::Engine::start(config("erin", &url));
    wait_users(&erin, &["erin"]).await;
    let mut events = erin.subscribe();
    let mut seen = Vec::new();
    within(5, "erin's first events", async {
        while !seen.iter().any(|e| matches!(e, Event::UserList(_))) {
            seen.push(events.recv().await.expect("engine alive"));
        }
    })
    .await;
    assert!(matches!(seen.first(), Some(Event::SignalingConnected { .. })), "{seen:?}");
    assert!(seen.iter().any(|e| matches!(e, Event::Registered { name } if name == "erin")), "{seen:?}");
    // A second listener hears from its making on, as before.
    let mut later = erin.subscribe();
    assert!(later.try_recv().is_err(), "nothing new has happened");
}
