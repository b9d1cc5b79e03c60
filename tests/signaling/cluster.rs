//! Several signaling nodes sharing one real Redis (Debian's `redis-server`, started here on a
//! loopback port): one user list, names unique across nodes, relays, chat, hang-up on disconnect,
//! a node killed with SIGKILL, Redis stopped and restarted under load, and a real engine call
//! whose two ends sit on different nodes.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use peercall::call::{CallState, Command, Engine, EngineConfig};
use peercall::media::pattern::{psnr_luma, read_stamp, render};
use peercall::signaling::server::{ClusterConfig, Server, ServerConfig, ServerError};
use serde_json::json;

use crate::support::{connect, login, Client, TestServer};
use crate::userlist::{assert_coalesced, burst};

/// A `redis-server` of our own on a free loopback port, without persistence; killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let mut redis = Self { port: free_port(), child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port: a restarted Redis has forgotten everything.
    fn restart(&mut self) {
        let child = Process::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (make test installs Debian's redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not come up on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many keys match `pattern` (`KEYS`, read as a RESP array header).
    fn count_keys(&self, pattern: &str) -> usize {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        stream.write_all(format!("KEYS {pattern}\r\n").as_bytes()).expect("send KEYS");
        let mut reply = [0u8; 4096];
        let n = stream.read(&mut reply).expect("KEYS reply");
        let text = String::from_utf8_lossy(&reply[..n]);
        let header = text.strip_prefix('*').and_then(|rest| rest.split("\r\n").next());
        header
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("unexpected KEYS reply {text:?}"))
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The nodes' logs in the test's output (shown when a test fails): a cluster's trouble is in them.
fn trace() {
    let _ = tracing_subscriber::fmt().with_env_filter("peercall=info").with_test_writer().try_init();
}

/// Short heartbeats so that a dead node is noticed within about a second.
fn cluster(redis: &Redis) -> ClusterConfig {
    ClusterConfig {
        heartbeat: Duration::from_millis(200),
        node_ttl: Duration::from_millis(800),
        ..ClusterConfig::new(redis.url())
    }
}

async fn node(redis: &Redis) -> TestServer {
    let config = cluster(redis);
    TestServer::with(|c| c.cluster = Some(config)).await
}

/// Waits until `client`'s newest userlist is exactly `names` (in any order).
async fn wait_users(client: &mut Client, names: &[&str]) {
    let mut want: Vec<&str> = names.to_vec();
    want.sort_unstable();
    client
        .wait_userlist(|users| {
            let mut got: Vec<&str> = users.iter().flatten().map(String::as_str).collect();
            got.sort_unstable();
            got == want
        })
        .await;
}

/// `/healthz` of a node, as text.
fn healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect for /healthz");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_three_nodes_share_one_list_chat_and_relay_to_each_other() {
    trace();
    let redis = Redis::start();
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut alice = login(&a, "/team", "alice").await;
    let mut bob = login(&b, "/team", "bob").await;
    let mut carol = login(&c, "/team", "carol").await;
    // Someone in another room, on a node with team members: rooms stay apart across nodes too.
    let mut dave = login(&b, "/other", "dave").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        wait_users(client, &["alice", "bob", "carol"]).await;
    }
    wait_users(&mut dave, &["dave"]).await;

    // Chat reaches the whole room on every node, with the sender's name set by its node.
    alice.send(json!({"type": "message", "text": "hello <b>team</b>", "name": "mallory"})).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        let chat = client.recv_not_userlist().await;
        assert_eq!(chat["type"], "message", "{}: {chat}", client.name);
        assert_eq!((chat["name"].as_str(), chat["text"].as_str()), (Some("alice"), Some("hello team")));
    }

    // Offer, candidate and answer cross nodes byte for byte, with `name` stamped by the sender's node.
    let sdp = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    alice.send(json!({"type": "video-offer", "name": "carol", "target": "bob", "sdp": sdp})).await;
    let offer = bob.recv_not_userlist().await;
    assert_eq!(offer["type"], "video-offer");
    assert_eq!(offer["name"], "alice", "the sender's node stamps the registered name");
    assert_eq!(offer["sdp"], sdp);
    let candidate = json!({"candidate": "candidate:1 1 UDP 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    alice.send(json!({"type": "new-ice-candidate", "target": "bob", "candidate": candidate})).await;
    let got = bob.recv_not_userlist().await;
    assert_eq!((got["type"].as_str(), &got["candidate"]), (Some("new-ice-candidate"), &candidate));
    bob.send(json!({"type": "video-answer", "target": "alice", "sdp": {"type": "answer", "sdp": "v=0\r\n"}}))
        .await;
    let answer = alice.recv_not_userlist().await;
    assert_eq!((answer["type"].as_str(), answer["name"].as_str()), (Some("video-answer"), Some("bob")));
    // Unknown names are still refused in words, and dave never heard any of it.
    carol.send(json!({"type": "video-offer", "target": "dave", "sdp": sdp})).await;
    carol.expect_error("unknown-target").await;
    dave.assert_nothing_pending().await;

    // Hang-up on disconnect crosses nodes: alice goes, bob (her partner on node b) is told.
    drop(alice);
    let hang_up = bob.recv_not_userlist().await;
    assert_eq!(hang_up["type"], "hang-up", "{hang_up}");
    assert_eq!((hang_up["name"].as_str(), hang_up["target"].as_str()), (Some("alice"), Some("bob")));
    for client in [&mut bob, &mut carol] {
        wait_users(client, &["bob", "carol"]).await;
    }
    carol.assert_nothing_pending().await;
    assert!(healthz(a.handle.local_addr()).contains("cluster: joined"), "healthz names the cluster state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_unique_across_nodes_even_when_claimed_at_once() {
    trace();
    let redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let first = login(&a, "/", "sam").await;
    assert_eq!(first.name, "sam");
    let mut second = connect(&b, "/").await;
    second.send(json!({"type": "username", "name": "sam"})).await;
    let reply = second.recv_not_userlist().await;
    assert_eq!(reply["type"], "rejectusername", "{reply}");
    let variant = reply["name"].as_str().expect("a variant").to_owned();
    assert!(variant.starts_with("sam") && variant != "sam", "{variant}");

    // Twenty clients, ten per node, all want "kim" at the same instant: twenty different names.
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(connect(if i % 2 == 0 { &a } else { &b }, "/race").await);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(json!({"type": "username", "name": "kim"})).await;
        // A chat sent after the username carries the name the server gave (one session, in order).
        client.send(json!({"type": "message", "text": format!("who-am-i {i}")})).await;
    }
    let mut names = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let marker = format!("who-am-i {i}");
        let (chat, _) = client.recv_until(|m| m["type"] == "message" && m["text"] == marker.as_str()).await;
        names.push(chat["name"].as_str().expect("a name").to_owned());
    }
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 20, "every client got its own name: {names:?}");
    assert_eq!(names.iter().filter(|n| *n == "kim").count(), 1, "exactly one got the name itself: {names:?}");
    let everyone: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_users(&mut clients[0], &everyone).await;
    wait_users(&mut clients[1], &everyone).await;
    // A name freed on one node can be taken on the other, once the other node has seen its holder go.
    drop(first);
    wait_users(&mut second, &[&variant]).await;
    let again = login(&b, "/", "sam").await;
    assert_eq!(again.name, "sam", "the name came free when its holder left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_back_and_forth_keeps_the_name_claimed() {
    trace();
    let redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut sam = connect(&a, "/").await;
    // bob → carl → bob in one burst: the release of the first "bob" must not undo the last claim.
    for name in ["bob", "carl", "bob"] {
        sam.send(json!({"type": "username", "name": name})).await;
    }
    sam.send(json!({"type": "message", "text": "who am I"})).await;
    let chat = sam.recv_until(|m| m["type"] == "message").await.0;
    assert_eq!(chat["name"], "bob");
    let other = login(&b, "/", "bob").await;
    assert_ne!(other.name, "bob", "the name is still held by sam on node a");
    let other_carl = login(&b, "/", "carl").await;
    assert_eq!(other_carl.name, "carl", "sam's old name came free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_the_lists_and_its_call_partners_get_hang_up() {
    trace();
    let redis = Redis::start();
    let survivor = node(&redis).await;
    // The node to kill is a real peercall-server process, so SIGKILL leaves no goodbye behind.
    let port = free_port();
    let mut victim = Process::new(env!("CARGO_BIN_EXE_peercall-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--redis", &redis.url(), "--node-ttl", "0.9"])
        .args(["--userlist-delay-ms", "5"])
        .stderr(Stdio::null())
        .spawn()
        .expect("start peercall-server");
    let victim_url = format!("ws://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "peercall-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut doomed = Client::new(
        tokio_tungstenite::connect_async(format!("{victim_url}/team"))
            .await
            .expect("connect to the victim")
            .0,
        "doomed",
    );
    doomed.recv().await; // id
    doomed.send(json!({"type": "username", "name": "doomed"})).await;
    let mut bob = login(&survivor, "/team", "bob").await;
    let mut carol = login(&survivor, "/team", "carol").await;
    wait_users(&mut bob, &["bob", "carol", "doomed"]).await;
    wait_users(&mut doomed, &["bob", "carol", "doomed"]).await;
    // doomed calls bob: bob is its partner.
    doomed
        .send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0\r\n"}}))
        .await;
    assert_eq!(bob.recv_not_userlist().await["type"], "video-offer");

    let killed = Instant::now();
    victim.kill().expect("kill -9 the node");
    let _ = victim.wait();
    let hang_up = bob.recv_not_userlist().await;
    assert_eq!(hang_up["type"], "hang-up", "{hang_up}");
    assert_eq!(hang_up["name"], "doomed");
    wait_users(&mut bob, &["bob", "carol"]).await;
    wait_users(&mut carol, &["bob", "carol"]).await;
    carol.assert_nothing_pending().await;
    println!(
        "FIGURE cluster: a killed node's users left the other node's list {:?} after SIGKILL",
        killed.elapsed()
    );
    // Its name is free again.
    let again = login(&survivor, "/team", "doomed").await;
    assert_eq!(again.name, "doomed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_survive_redis_stopping_and_resume_when_it_returns() {
    trace();
    let mut redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = login(&a, "/", "alice").await;
    let mut amy = login(&a, "/", "amy").await;
    let mut bob = login(&b, "/", "bob").await;
    wait_users(&mut bob, &["alice", "amy", "bob"]).await;
    // Node a knows bob too: amy's next list without him is the outage's.
    wait_users(&mut amy, &["alice", "amy", "bob"]).await;

    // Load across nodes while Redis goes away and comes back: a chat and a candidate to bob (on the
    // other node) every 4 ms, about 500 messages a second.
    let load = tokio::spawn(async move {
        for i in 0..400 {
            alice.send(json!({"type": "message", "text": format!("load {i}")})).await;
            let candidate =
                json!({"candidate": format!("candidate:{i} 1 UDP 1 127.0.0.1 5000 typ host"), "sdpMid": "0"});
            alice.send(json!({"type": "new-ice-candidate", "target": "bob", "candidate": candidate})).await;
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        alice
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    // Each node keeps serving its own clients, says so, and lists only them.
    wait_users(&mut amy, &["alice", "amy"]).await;
    wait_users(&mut bob, &["bob"]).await;
    let health = healthz(a.handle.local_addr());
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("detached"), "{health}");
    // A newcomer can still log in while Redis is away (decided by the node alone), and a node
    // relays between its own clients.
    let mut zoe = login(&b, "/", "zoe").await;
    zoe.send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0\r\n"}}))
        .await;
    let offer = bob.recv_until(|m| m["type"] == "video-offer").await.0;
    assert_eq!(offer["name"], "zoe", "a node relays between its own clients without Redis");

    redis.restart();
    let mut alice = load.await.expect("the load ran through the outage");
    for client in [&mut amy, &mut bob, &mut zoe] {
        wait_users(client, &["alice", "amy", "bob", "zoe"]).await;
    }
    assert!(healthz(b.handle.local_addr()).contains("cluster: joined"));
    // Cross-node relay and chat work again.
    zoe.send(json!({"type": "video-offer", "target": "alice", "sdp": {"type": "offer", "sdp": "v=0\r\n"}}))
        .await;
    let offer = alice.recv_until(|m| m["type"] == "video-offer").await.0;
    assert_eq!(offer["name"], "zoe");
    bob.send(json!({"type": "message", "text": "back"})).await;
    let chat = amy.recv_until(|m| m["type"] == "message" && m["text"] == "back").await.0;
    assert_eq!(chat["name"], "bob");
    // Names are claimed again after the restart: a second "bob" on node a gets a variant.
    let bob_again = login(&a, "/", "bob").await;
    assert_ne!(bob_again.name, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_takes_its_users_with_it_at_once() {
    trace();
    let redis = Redis::start();
    // A long TTL: only a clean goodbye can clear the list within the wait below.
    let slow = ClusterConfig { node_ttl: Duration::from_secs(60), ..cluster(&redis) };
    let a = TestServer::with(|c| c.cluster = Some(slow.clone())).await;
    let b = TestServer::with(|c| c.cluster = Some(slow)).await;
    let mut alice = login(&a, "/", "alice").await;
    let mut bob = login(&b, "/", "bob").await;
    // Each node learns of the other's user on its own: alice calls bob once her node lists him.
    wait_users(&mut bob, &["alice", "bob"]).await;
    wait_users(&mut alice, &["alice", "bob"]).await;
    alice
        .send(json!({"type": "video-offer", "target": "bob", "sdp": {"type": "offer", "sdp": "v=0\r\n"}}))
        .await;
    assert_eq!(bob.recv_not_userlist().await["type"], "video-offer");
    a.handle.shutdown().await.expect("node a stops cleanly");
    let hang_up = bob.recv_not_userlist().await;
    assert_eq!((hang_up["type"].as_str(), hang_up["name"].as_str()), (Some("hang-up"), Some("alice")));
    wait_users(&mut bob, &["bob"]).await;
    // And the name is free on the other node.
    assert_eq!(login(&b, "/", "alice").await.name, "alice");
    // The stopped node said goodbye (within a heartbeat) instead of beating on, or leaving its
    // heartbeat key to expire.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.count_keys("peercall:alive:*") != 1 {
        assert!(Instant::now() < deadline, "the stopped node's heartbeat key is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_a_clear_error() {
    trace();
    let port = free_port();
    let config = ServerConfig {
        cluster: Some(ClusterConfig::new(format!("redis://127.0.0.1:{port}"))),
        ..ServerConfig::ephemeral()
    };
    let error = Server::bind(config).await.expect_err("no Redis there");
    assert!(matches!(error, ServerError::Cluster(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("cannot reach Redis") && text.contains(&port.to_string()), "{text}");
    let bad = ServerConfig { cluster: Some(ClusterConfig::new("http://nope")), ..ServerConfig::ephemeral() };
    let text = Server::bind(bad).await.expect_err("not a Redis URL").to_string();
    assert!(text.contains("not a Redis URL"), "{text}");
}

/// A real engine call whose ends log in on different nodes: media flows, the frames are the ones sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_different_nodes_call_each_other() {
    trace();
    let redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let engine = |name: &str, url: String, answer: bool| {
        let mut config = EngineConfig::new(name, url).with_pattern(320, 240, 15);
        config.peer.bind_addrs = vec!["127.0.0.1:0".to_owned()];
        config.auto_answer = answer;
        Engine::start(config)
    };
    let alice = engine("alice", a.url("/call"), false);
    let bob = engine("bob", b.url("/call"), true);
    for who in [&alice, &bob] {
        let mut list = who.users();
        let wait = async {
            while !["alice", "bob"].iter().all(|n| list.borrow_and_update().iter().any(|u| u == n)) {
                list.changed().await.expect("engine alive");
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait).await.expect("both see each other across nodes");
    }
    let mut video = bob.remote_video();
    assert!(alice.send(Command::Call("bob".into())));
    let mut frames = Vec::new();
    let receive = async {
        while frames.len() < 15 {
            video.changed().await.expect("engine alive");
            let Some(frame) = video.borrow_and_update().clone() else { continue };
            let stamp = read_stamp(&frame).expect("a decoded frame keeps its stamp");
            let psnr = psnr_luma(&frame, &render(stamp, frame.width, frame.height));
            assert!(psnr > 30.0, "frame {} arrived at {psnr:.1} dB", stamp.frame_no);
            frames.push(stamp.frame_no);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), receive).await.expect("bob decodes alice's frames");
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "frame numbers increase: {frames:?}");
    assert!(matches!(&*alice.state().borrow(), CallState::InCall { peer } if peer == "bob"));
    // Hang-up crosses nodes too.
    assert!(bob.send(Command::HangUp));
    let mut state = alice.state();
    let idle = async {
        while !matches!(&*state.borrow_and_update(), CallState::Idle) {
            state.changed().await.expect("engine alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .expect("alice hears bob's hang-up across nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_across_two_nodes_is_coalesced_and_its_last_change_kept() {
    trace();
    let redis = Redis::start();
    let window = Duration::from_millis(20);
    let config = cluster(&redis);
    let on_redis = |c: &mut ServerConfig| {
        c.cluster = Some(config.clone());
        c.userlist_delay = window;
    };
    let (a, b) = (TestServer::with(on_redis).await, TestServer::with(on_redis).await);
    let (mut members, took) = burst(&[a.url(""), b.url("")], "/crowd", 400, 32).await;
    assert_coalesced(&members, took, window);
    // Right behind the burst, one member of each node leaves: every list ends without them.
    drop(members.split_off(398));
    let names: Vec<String> = (0..398).map(|k| format!("b{k}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for member in &mut members {
        wait_users(&mut member.client, &names).await;
    }
}
