//! Calls that survive real networks: signaling drops, and more (see the issue on TURN, loss and ICE restart).

mod common;

use common::*;
use peercall::call::{CallState, Command};
use peercall::signaling::server::{Server, ServerConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Frames `engine` decoded so far in its call.
fn decoded(engine: &peercall::call::Engine) -> u64 {
    engine.counters().borrow().as_ref().map(|c| c.frames_decoded.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Kill the signaling server mid-call and start it again: media keeps flowing the whole time (it is
/// peer to peer), both clients log back in by themselves, and the call is still on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_survives_a_signaling_server_restart() {
    let (server, url) = start_server().await;
    let addr = server.local_addr();
    let (alice, bob) = pair(&url, "alice", "bob").await;
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;
    wait_frames(&bob, 10).await;

    server.shutdown().await.expect("the server stops");
    within(5, "alice to notice the server is gone", async {
        let mut users = alice.users();
        while !users.borrow_and_update().is_empty() {
            users.changed().await.expect("engine alive");
        }
    })
    .await;
    let before = (decoded(&alice), decoded(&bob));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = (decoded(&alice), decoded(&bob));
    assert!(
        during.0 > before.0 + 30 && during.1 > before.1 + 30,
        "media stalled without signaling: {before:?} → {during:?}"
    );

    let server = Server::bind(ServerConfig { listen: addr, ..ServerConfig::default() })
        .await
        .expect("same address again");
    let _server = server.spawn();
    // Both log in again by themselves (backoff tops out at 5 s) and see each other.
    let mut users = alice.users();
    within(15, "alice and bob back in the user list", async {
        loop {
            {
                let list = users.borrow_and_update();
                if list.iter().any(|u| u == "alice") && list.iter().any(|u| u == "bob") && list.len() == 2 {
                    return;
                }
            }
            users.changed().await.expect("engine alive");
        }
    })
    .await;
    assert_eq!(alice.name().borrow().as_deref(), Some("alice"), "alice kept her name");
    assert_eq!(bob.name().borrow().as_deref(), Some("bob"), "bob kept his name");
    assert!(matches!(alice.state().borrow().clone(), CallState::InCall { .. }), "the call is still on");
    let after = decoded(&bob);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(decoded(&bob) > after + 5, "media still flows after the restart");
    // And the call can still be ended normally over the new signaling connection.
    bob.send(Command::HangUp);
    wait_state(&alice, "alice idle", CallState::is_idle).await;
}

/// A TCP forwarder between one client and the server whose connections the test can cut, like a
/// Wi-Fi hiccup that breaks one laptop's signaling socket and nothing else.
struct CuttableLink {
    url: String,
    cut: tokio::sync::watch::Sender<u64>,
}

impl CuttableLink {
    async fn start(server: std::net::SocketAddr) -> CuttableLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let url = format!("ws://{}/", listener.local_addr().expect("proxy address"));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(server).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cuts.changed() => {} // dropping both sockets cuts the link
                    }
                });
            }
        });
        CuttableLink { url, cut }
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// One client's signaling socket breaks mid-call. The server tells its partner `hang-up` (reason
/// `disconnected`), but media is peer to peer and still flows, so the partner keeps the call; the
/// client logs back in under the same name, and the call can be ended normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_signaling_drop_does_not_end_a_flowing_call() {
    let (server, url) = start_server().await;
    let link = CuttableLink::start(server.local_addr()).await;
    let alice = peercall::call::Engine::start(config("alice", &url));
    let mut bob_config = config("bob", &link.url);
    bob_config.auto_answer = true;
    let bob = peercall::call::Engine::start(bob_config);
    wait_users(&alice, &["alice", "bob"]).await;
    wait_users(&bob, &["alice", "bob"]).await;
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { .. })).await;
    wait_frames(&alice, 10).await;

    let mut alice_users = alice.users();
    alice_users.borrow_and_update();
    link.cut();
    within(5, "bob to leave alice's user list", async {
        while alice_users.borrow_and_update().iter().any(|u| u == "bob") {
            alice_users.changed().await.expect("engine alive");
        }
    })
    .await;
    // The server has told alice; the call stays up and media keeps coming.
    let before = decoded(&alice);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(matches!(alice.state().borrow().clone(), CallState::InCall { .. }), "alice kept the call");
    assert!(decoded(&alice) > before + 10, "media flows while bob's signaling is down");
    wait_users(&alice, &["alice", "bob"]).await;
    assert_eq!(bob.name().borrow().as_deref(), Some("bob"), "bob is back under his own name");
    alice.send(Command::HangUp);
    wait_state(&bob, "bob idle after alice hangs up", CallState::is_idle).await;
}

/// coturn from Debian's package on loopback, with `use-auth-secret`; killed when dropped.
struct Coturn {
    child: std::process::Child,
    url: String,
}

impl Coturn {
    fn start(secret: &str) -> Coturn {
        assert!(
            std::path::Path::new("/usr/bin/turnserver").exists(),
            "coturn is missing: run `make test-deps` (scripts/install-deps.sh test)"
        );
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("/usr/bin/turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log", "--log-file=stdout"])
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--realm=peercall.test"])
            .arg(format!("--listening-port={port}"))
            .args(["--use-auth-secret", &format!("--static-auth-secret={secret}")])
            // Both engines live on loopback here; coturn refuses to relay to loopback peers otherwise.
            .arg("--allow-loopback-peers")
            .args(["--min-port=40000", "--max-port=40999"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("turnserver starts");
        Coturn { child, url: format!("turn:127.0.0.1:{port}?transport=udp") }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay-only call through coturn, with the TURN credentials the signaling server hands out after
/// login (TURN REST scheme): it connects, media flows, and the selected pair is a relay one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_call_goes_through_turn_with_server_issued_credentials() {
    init_tracing();
    let secret = "peercall-test-secret";
    let turn = Coturn::start(secret);
    let server_config = ServerConfig {
        turn: Some(std::sync::Arc::new(peercall::signaling::turn::TurnConfig {
            secret: secret.into(),
            urls: vec![turn.url.clone()],
            ttl: Duration::from_secs(600),
        })),
        ..ServerConfig::ephemeral()
    };
    let server = Server::bind(server_config).await.expect("server binds");
    let url = format!("ws://{}/", server.local_addr());
    let _server = server.spawn();
    // Give coturn a moment to open its port (it logs nothing we wait on).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let relay = |name: &str, answer: bool| {
        let mut c = config(name, &url);
        c.peer.relay_only = true;
        c.auto_answer = answer;
        peercall::call::Engine::start(c)
    };
    let (alice, bob) = (relay("alice", false), relay("bob", true));
    wait_users(&alice, &["alice", "bob"]).await;
    wait_users(&bob, &["alice", "bob"]).await;
    let mut events = alice.subscribe();
    alice.send(Command::Call("bob".into()));
    wait_state(&alice, "a call through the relay", |s| matches!(s, CallState::InCall { .. })).await;
    wait_frames(&alice, 10).await;
    wait_frames(&bob, 10).await;
    let path = wait_event(&mut events, "stats naming the path", |e| match e {
        peercall::call::Event::Stats(s) => s.path.clone(),
        _ => None,
    })
    .await;
    assert_eq!(path, "relay", "relay-only media must go through TURN");
}
