//! Shared helpers for the end-to-end tests: a real server on a loopback port, real engines, and
//! waiting for things with a deadline instead of sleeping.

#![allow(dead_code)]

pub mod browser;
pub mod desktop;
pub mod process;
pub mod testnet;
pub mod xpicture;

use peercall::call::{CallState, EndReason, Engine, EngineConfig, Event};
use peercall::media::codec::VideoCodec;
use peercall::signaling::server::{Server, ServerConfig, ServerHandle};
use std::future::Future;
use std::time::Duration;

/// Starts the signaling server on 127.0.0.1 and a free port.
pub async fn start_server() -> (ServerHandle, String) {
    init_tracing();
    let server = Server::bind(ServerConfig::ephemeral()).await.expect("server binds");
    let url = format!("ws://{}/", server.local_addr());
    (server.spawn(), url)
}

/// RUST_LOG=peercall=debug shows what the engines and the server do; off by default.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An engine config for tests: loopback only, small synthetic video so parallel tests fit two cores.
pub fn config(name: &str, url: &str) -> EngineConfig {
    let mut config = EngineConfig::new(name, url).with_pattern(320, 240, 30);
    config.peer.bind_addrs = vec!["127.0.0.1:0".to_owned()];
    config
}

/// Runs `fut` with a deadline, failing the test with `what` when it passes.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// Waits until `engine`'s user list holds every name in `names`.
pub async fn wait_users(engine: &Engine, names: &[&str]) {
    let mut users = engine.users();
    within(10, &format!("user list {names:?}"), async {
        loop {
            if names.iter().all(|n| users.borrow().iter().any(|u| u == n)) {
                return;
            }
            if users.changed().await.is_err() {
                panic!("engine stopped");
            }
        }
    })
    .await
}

/// Waits until `engine`'s call state satisfies `pred`.
pub async fn wait_state(engine: &Engine, what: &str, pred: impl Fn(&CallState) -> bool) -> CallState {
    let mut state = engine.state();
    within(10, what, async {
        loop {
            let now = state.borrow().clone();
            if pred(&now) {
                return now;
            }
            if state.changed().await.is_err() {
                panic!("engine stopped");
            }
        }
    })
    .await
}

/// Waits for the next event that `pick` maps to `Some`.
pub async fn wait_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    within(10, what, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(v) = pick(&e) {
                        return v;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
}

/// Waits for the next call to end; returns why.
pub async fn wait_ended(events: &mut tokio::sync::broadcast::Receiver<Event>, what: &str) -> EndReason {
    wait_event(events, what, |e| match e {
        Event::CallEnded { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Waits for a stats line naming the codec received; returns the codecs it names, out and in.
pub async fn stats_codecs(engine: &Engine) -> (Option<VideoCodec>, Option<VideoCodec>) {
    let mut events = engine.subscribe();
    wait_event(&mut events, "a stats line naming the codec received", |e| match e {
        Event::Stats(s) if s.codec_in.is_some() => Some((s.codec_out, s.codec_in)),
        _ => None,
    })
    .await
}

/// Waits until `engine` has decoded at least `n` remote frames in the current call.
pub async fn wait_frames(engine: &Engine, n: u64) {
    let mut counters = engine.counters();
    within(15, &format!("{n} decoded frames"), async {
        loop {
            let decoded = counters
                .borrow()
                .as_ref()
                .map(|c| c.frames_decoded.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0);
            if decoded >= n {
                return;
            }
            tokio::select! {
                _ = counters.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await
}

/// Starts two engines on one server, both logged in and seeing each other; `b` answers by itself.
pub async fn pair(url: &str, a: &str, b: &str) -> (Engine, Engine) {
    let ea = Engine::start(config(a, url).with_tone(440.0));
    let mut cb = config(b, url).with_tone(660.0);
    cb.auto_answer = true;
    let eb = Engine::start(cb);
    wait_users(&ea, &[a, b]).await;
    wait_users(&eb, &[a, b]).await;
    (ea, eb)
}

/// A client socket that logged in as `name` the way a browser page does (waits for `id`, answers
/// `username`), for tests that play a peer by hand.
pub async fn raw_login(
    url: &str,
    name: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    use peercall::signaling::protocol::Message;
    use tokio_tungstenite::tungstenite::Message as Ws;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("a raw client connects");
    let id = loop {
        let Some(Ok(Ws::Text(t))) = ws.next().await else { panic!("no id message") };
        if let Ok(Message::Id { id }) = serde_json::from_str::<Message>(&t) {
            break id;
        }
    };
    let login = Message::Username { name: name.into(), id: Some(id), date: None };
    ws.send(Ws::text(login.to_json())).await.expect("login");
    ws
}

/// A bare peer connection on loopback, as a browser page would make it for a call: one audio track
/// (so the far side has something to answer) and a video transceiver; its events come on the receiver.
pub async fn hand_played_peer(
    name: &str,
) -> (
    std::sync::Arc<dyn webrtc::peer_connection::PeerConnection>,
    tokio::sync::mpsc::UnboundedReceiver<(u64, peercall::call::peer::PeerEvent)>,
) {
    use peercall::call::peer::{self, PeerSettings};
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    use webrtc::media_stream::track_local::TrackLocal;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = PeerSettings { bind_addrs: vec!["127.0.0.1:0".into()], ..Default::default() };
    let pc = peer::build(&settings, 1, tx, Default::default(), Default::default())
        .await
        .expect("a bare peer connection");
    let audio = peer::local_track(RtpCodecKind::Audio, peer::opus_codec(), name).expect("track");
    pc.add_track(audio as std::sync::Arc<dyn TrackLocal>).await.expect("add track");
    pc.add_transceiver_from_kind(RtpCodecKind::Video, None).await.expect("video transceiver");
    (pc, rx)
}

/// Alice, taking her media from `devices`, and Bob (synthetic, answering by himself), both online.
pub async fn alice_with_devices_and_bob(
    url: &str,
    devices: &peercall::media::devices::MediaDevices,
) -> (Engine, Engine) {
    let mut alice_config = config("alice", url);
    alice_config.video_source = devices.video_factory();
    alice_config.audio_source = devices.audio_factory();
    let alice = Engine::start(alice_config);
    let mut bob_config = config("bob", url);
    bob_config.auto_answer = true;
    let bob = Engine::start(bob_config);
    wait_users(&alice, &["alice", "bob"]).await;
    wait_users(&bob, &["alice", "bob"]).await;
    (alice, bob)
}
