//! Video codecs between real engines: VP8 calls carry the same content as H.264 ones, each side
//! follows what was negotiated, and a peer with no codec of ours still gets an audio call with the
//! reason in words.

mod common;

use common::*;
use peercall::call::{CallState, Command, Counters, Engine, EngineError, Event, VideoPreference};
use peercall::media::codec::VideoCodec;
use peercall::media::frame::I420Frame;
use peercall::media::pattern::{psnr_luma, read_stamp, render};
use peercall::media::scene::{Scene, DEFAULT_SEED};
use peercall::media::y4m::Y4mClip;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// As in `call.rs`: a frame decoded right is 35+ dB against the frame that was sent, the wrong frame
/// or a torn one is under 25 dB. libvpx's real-time mode at our bitrate lands 36–40 dB on the pattern.
const MIN_PSNR_DB: f64 = 30.0;

async fn engines(url: &str, alice: VideoPreference, bob: VideoPreference) -> (Engine, Engine) {
    let a = Engine::start(config("alice", url).with_video_codec(alice));
    let mut b = config("bob", url).with_video_codec(bob);
    b.auto_answer = true;
    let b = Engine::start(b);
    wait_users(&a, &["alice", "bob"]).await;
    wait_users(&b, &["alice", "bob"]).await;
    (a, b)
}

/// Reads 20 pictures and checks each is the frame that was sent.
async fn decodes_the_pattern(who: &str, engine: &Engine) {
    let mut video = engine.remote_video();
    let mut seen = Vec::new();
    within(15, &format!("{who} decodes 20 frames"), async {
        while seen.len() < 20 {
            video.changed().await.expect("engine alive");
            let Some(frame) = video.borrow_and_update().clone() else { continue };
            let stamp = read_stamp(&frame).unwrap_or_else(|| panic!("{who}: a decoded frame lost its stamp"));
            let psnr = psnr_luma(&frame, &render(stamp, frame.width, frame.height));
            assert!(psnr > MIN_PSNR_DB, "{who}: frame {} PSNR {psnr:.1} dB", stamp.frame_no);
            seen.push(stamp.frame_no);
        }
    })
    .await;
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{who}: frame numbers must increase: {seen:?}");
}

fn counters(engine: &Engine) -> Arc<Counters> {
    engine.counters().borrow().clone().expect("a call's counters")
}

fn codecs(engine: &Engine) -> (u8, u8) {
    let c = counters(engine);
    (c.codec_out.load(Ordering::Relaxed), c.codec_in.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_call_carries_the_pattern_both_ways_and_answers_keyframe_requests() {
    let (_server, url) = start_server().await;
    let (alice, bob) = engines(&url, VideoPreference::Vp8, VideoPreference::Auto).await;
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;
    decodes_the_pattern("bob", &bob).await;
    decodes_the_pattern("alice", &alice).await;
    // alice offers VP8 first; bob, on auto, follows the caller's order: VP8 both ways.
    assert_eq!(stats_codecs(&alice).await, (Some(VideoCodec::Vp8), Some(VideoCodec::Vp8)));
    assert_eq!(stats_codecs(&bob).await, (Some(VideoCodec::Vp8), Some(VideoCodec::Vp8)));

    // PLI → a VP8 keyframe, decoded on the far side.
    let (a, b) = (counters(&alice), counters(&bob));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idr, decoded) =
        (a.keyframes_sent.load(Ordering::Relaxed), b.keyframes_decoded.load(Ordering::Relaxed));
    bob.send(Command::RequestKeyframe);
    within(5, "alice encodes a keyframe and bob decodes it", async {
        while a.keyframes_sent.load(Ordering::Relaxed) <= idr
            || b.keyframes_decoded.load(Ordering::Relaxed) <= decoded
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let mut bob_events = bob.subscribe();
    alice.send(Command::HangUp);
    wait_event(&mut bob_events, "bob hears the hang-up", |e| {
        matches!(e, Event::CallEnded { .. }).then_some(())
    })
    .await;
    wait_state(&bob, "bob idle", CallState::is_idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_sends_in_a_negotiated_codec_when_preferences_differ() {
    let (_server, url) = start_server().await;
    // alice puts H.264 first; bob asked for VP8 and has it in alice's offer, so answers with it.
    let (alice, bob) = engines(&url, VideoPreference::H264, VideoPreference::Vp8).await;
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;
    decodes_the_pattern("bob", &bob).await;
    decodes_the_pattern("alice", &alice).await;
    let (alice_out, alice_in) = stats_codecs(&alice).await;
    let (bob_out, bob_in) = stats_codecs(&bob).await;
    assert_eq!(bob_out, Some(VideoCodec::Vp8), "bob sends what he asked for");
    assert_eq!((alice_out, alice_in), (bob_in, bob_out), "what one sends is what the other decodes");
}

/// carol offers video only in codecs we lack (AV1, VP9): bob answers audio only and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_our_codecs_gets_an_audio_call_and_the_reason() {
    use futures_util::{SinkExt, StreamExt};
    use peercall::call::peer::PeerEvent;
    use peercall::signaling::protocol::{IceCandidate, Message, SessionDescription};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use webrtc::peer_connection::RTCSessionDescription;

    let (_server, url) = start_server().await;
    let mut bob_config = config("bob", &url);
    bob_config.auto_answer = true;
    let bob = Engine::start(bob_config);
    let mut bob_events = bob.subscribe();
    wait_users(&bob, &["bob"]).await;
    let mut ws = raw_login(&url, "carol").await;
    let next_json = |text: &str| serde_json::from_str::<Message>(text).ok();
    wait_users(&bob, &["bob", "carol"]).await;

    let (pc, mut rx) = hand_played_peer("carol").await;
    let offer = pc.create_offer(None).await.expect("offer");
    // What an AV1-and-VP9-only browser would list, under our payload numbers.
    let sdp = offer.sdp.replace("H264/90000", "AV1/90000").replace("VP8/90000", "VP9/90000");
    pc.set_local_description(offer).await.expect("local description");
    let offer_msg = Message::VideoOffer {
        name: "carol".into(),
        target: "bob".into(),
        sdp: SessionDescription { kind: "offer".into(), sdp },
    };
    ws.send(Ws::text(offer_msg.to_json())).await.expect("send offer");
    // carol's candidates (one host candidate on loopback) go to bob: he then reaches her.
    let candidate = within(10, "carol's candidate", async {
        loop {
            if let Some((_, PeerEvent::LocalCandidate(c))) = rx.recv().await {
                return c;
            }
        }
    })
    .await;
    let candidate = IceCandidate::from(candidate);
    let msg = Message::NewIceCandidate { name: Some("carol".into()), target: "bob".into(), candidate };
    ws.send(Ws::text(msg.to_json())).await.expect("send candidate");

    let notice = wait_event(&mut bob_events, "bob's notice", |e| match e {
        Event::Error(e @ EngineError::NoCommonVideoCodec(_)) => Some(e.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(
        notice,
        "no common video codec: they offer AV1, VP9, we have H.264, VP8; the call goes on with audio only"
    );
    let answer = within(10, "bob's answer", async {
        loop {
            let Some(Ok(Ws::Text(t))) = ws.next().await else { panic!("socket closed") };
            if let Some(Message::VideoAnswer { sdp, .. }) = next_json(&t) {
                return sdp.sdp;
            }
        }
    })
    .await;
    let video_line = answer.lines().find(|l| l.starts_with("m=video")).expect("a video section");
    assert!(video_line.starts_with("m=video 0 "), "video turned down: {video_line}");
    let answer = RTCSessionDescription::answer(answer).expect("valid answer");
    pc.set_remote_description(answer).await.expect("answer applies");
    wait_state(&bob, "bob in an audio call with carol", |s| matches!(s, CallState::InCall { .. })).await;
    assert_eq!(codecs(&bob).0, 0, "bob sends no video");
    pc.close().await.ok();
}

/// A Y4M clip of `frames` distinct frames at 160x120@15: gradients whose slope and offset differ by frame.
fn write_clip(path: &std::path::Path, frames: usize) {
    let (w, h) = (160, 120);
    let mut bytes = format!("YUV4MPEG2 W{w} H{h} F15:1 Ip A1:1 C420jpeg\n").into_bytes();
    for n in 0..frames {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend((0..w * h).map(|i| (40 + (i % w + i / w * (n + 1)) % 160 + n * 4) as u8));
        bytes.extend(std::iter::repeat_n(128u8, w * h / 2));
    }
    std::fs::write(path, bytes).expect("clip written");
}

/// alice sends the camera-like scene, bob a Y4M clip: each side gets what the other sent (the scene
/// redrawn from its stamp; the clip at its own size, each picture one of its frames).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_like_scene_and_a_y4m_clip_cross_a_call_as_sent() {
    let (_server, url) = start_server().await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("codecs-clip.y4m");
    write_clip(&path, 6);
    let alice = Engine::start(config("alice", &url).with_camera_like(320, 240, 30));
    let mut b = config("bob", &url).with_video_file(&path).expect("the clip is good");
    b.auto_answer = true;
    let bob = Engine::start(b);
    wait_users(&alice, &["alice", "bob"]).await;
    wait_users(&bob, &["alice", "bob"]).await;
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;

    let scene = Scene::new(320, 240, DEFAULT_SEED);
    let mut video = bob.remote_video();
    let mut psnrs = Vec::new();
    within(20, "bob decodes 20 frames of the scene", async {
        while psnrs.len() < 20 {
            video.changed().await.expect("engine alive");
            let Some(frame) = video.borrow_and_update().clone() else { continue };
            let stamp = read_stamp(&frame).expect("a decoded scene frame keeps its stamp");
            psnrs.push(psnr_luma(&frame, &scene.render(stamp)));
        }
    })
    .await;
    let worst = psnrs.iter().cloned().fold(f64::MAX, f64::min);
    assert!(worst > 26.0, "the scene as redrawn from its stamps: {psnrs:.1?}");

    let clip = std::sync::Arc::new(Y4mClip::open(&path).expect("clip"));
    let mut reader = clip.reader().expect("reader");
    let sent: Vec<I420Frame> = (0..clip.frames()).map(|n| reader.frame(n).expect("frame")).collect();
    let mut video = alice.remote_video();
    let mut matched = std::collections::BTreeSet::new();
    within(20, "alice decodes every frame of bob's clip", async {
        while matched.len() < sent.len() {
            video.changed().await.expect("engine alive");
            let Some(frame) = video.borrow_and_update().clone() else { continue };
            assert_eq!((frame.width, frame.height), clip.size(), "the clip goes out at its own size");
            let (best, psnr) = sent
                .iter()
                .enumerate()
                .map(|(n, f)| (n, psnr_luma(&frame, f)))
                .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
            assert!(psnr > 30.0, "a picture that is none of the clip's frames (best {best}: {psnr:.1} dB)");
            matched.insert(best);
        }
    })
    .await;
    alice.send(Command::HangUp);
}
