//! wss: the server with a self-signed certificate made by the test (rcgen); login, user list, the
//! page and `/healthz` over TLS, a client that does not trust the certificate refused, and a real
//! engine call whose signaling goes over wss.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peercall::call::{CallState, Command, Engine, EngineConfig};
use peercall::signaling::server::{Server, ServerConfig, ServerHandle};
use peercall::signaling::tls;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use crate::support::{users, Ws, WAIT};

/// A wss server on 127.0.0.1:0 with a fresh self-signed certificate for `127.0.0.1` and `localhost`,
/// written as PEM files into a directory of its own (removed on drop).
struct TlsServer {
    handle: ServerHandle,
    dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TlsServer {
    async fn start(tag: &str) -> Self {
        Self::start_with(tag, false).await
    }

    /// `ca_flagged`: the certificate says it is a CA, as `openssl req -x509` makes them; clients
    /// must still accept it when told to trust exactly it.
    async fn start_with(tag: &str, ca_flagged: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("peercall-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
        if ca_flagged {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        let mut config = ServerConfig::ephemeral();
        config.userlist_delay = Duration::from_millis(5);
        config.tls =
            Some(tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem")).expect("TLS config"));
        let server = Server::bind(config).await.expect("bind 127.0.0.1:0");
        Self { handle: server.spawn(), dir: TempDir(dir) }
    }

    fn cert(&self) -> PathBuf {
        self.dir.0.join("cert.pem")
    }

    fn url(&self, path: &str) -> String {
        format!("wss://{}{}", self.handle.local_addr(), path)
    }
}

/// Opens a wss connection to `url`, trusting `cert` (or only the public CAs when `None`).
async fn connect(url: &str, cert: Option<&Path>) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("json"));
    let connector = Connector::Rustls(tls::client_config(cert).expect("client TLS config"));
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector)).await?;
    Ok(ws)
}

/// The next text message as JSON (pings are answered by tungstenite itself).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            _ => continue,
        }
    }
}

/// Reads messages until a userlist that holds every name in `names`.
async fn wait_userlist(ws: &mut Ws, names: &[&str]) {
    loop {
        let msg = recv(ws).await;
        if msg["type"] == "userlist" {
            let list = users(&msg);
            if names.iter().all(|n| list.iter().any(|u| u.as_deref() == Some(*n))) {
                return;
            }
        }
    }
}

/// Connects, reads the id and registers `name`.
async fn login(server: &TlsServer, name: &str) -> Ws {
    let mut ws = connect(&server.url("/secure"), Some(&server.cert())).await.expect("wss connect");
    let id = recv(&mut ws).await;
    assert_eq!(id["type"], "id", "first message is the id: {id}");
    let login = json!({"type": "username", "name": name, "id": id["id"], "date": 1_732_358_400_000u64});
    ws.send(Message::text(login.to_string())).await.expect("send username");
    ws
}

#[tokio::test]
async fn login_userlist_and_relay_work_over_wss() {
    let server = TlsServer::start("login").await;
    let mut alice = login(&server, "alice").await;
    let mut bob = login(&server, "bob").await;
    wait_userlist(&mut alice, &["alice", "bob"]).await;
    wait_userlist(&mut bob, &["alice", "bob"]).await;
    let offer = json!({"type": "video-offer", "name": "alice", "target": "bob",
        "sdp": {"type": "offer", "sdp": "v=0\r\n"}});
    alice.send(Message::text(offer.to_string())).await.expect("send offer");
    loop {
        let msg = recv(&mut bob).await;
        if msg["type"] == "video-offer" {
            assert_eq!(msg["name"], "alice");
            assert_eq!(msg["sdp"]["sdp"], "v=0\r\n");
            break;
        }
    }
}

#[tokio::test]
async fn a_trusted_certificate_marked_as_a_ca_is_accepted_as_the_servers_own() {
    let server = TlsServer::start_with("ca-flagged", true).await;
    let mut alice = login(&server, "alice").await;
    wait_userlist(&mut alice, &["alice"]).await;
    // Without the pin it is refused like any unknown certificate.
    connect(&server.url("/"), None).await.expect_err("an untrusted certificate must fail");
}

#[tokio::test]
async fn bad_certificate_and_key_files_give_errors_that_name_the_file() {
    let server = TlsServer::start("files").await;
    let missing = server.dir.0.join("missing.pem");
    let error = tls::server_config(&missing, &server.dir.0.join("key.pem")).expect_err("missing certificate");
    assert!(error.to_string().contains("missing.pem"), "{error}");
    // A certificate where the key should be: no key in the file.
    let error = tls::server_config(&server.cert(), &server.cert()).expect_err("no key in a certificate file");
    assert!(error.to_string().contains("private key"), "{error}");
    let error = tls::client_config(Some(&missing)).expect_err("missing trusted certificate");
    assert!(error.to_string().contains("missing.pem"), "{error}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let server = TlsServer::start("untrusted").await;
    let error = connect(&server.url("/"), None).await.expect_err("an untrusted certificate must fail");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "the error names the certificate: {error}"
    );
    // The server lives on: a trusting client still gets in.
    let mut ws = connect(&server.url("/"), Some(&server.cert())).await.expect("trusted connect");
    assert_eq!(recv(&mut ws).await["type"], "id");
}

#[tokio::test]
async fn silent_and_plaintext_clients_do_not_hold_up_wss_clients() {
    let server = TlsServer::start("stray").await;
    let addr = server.handle.local_addr();
    // A connection that never starts its handshake: it must not stall the accept loop.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("tcp connect");
    // A plain-HTTP client on the TLS port: its "handshake" fails and only its connection ends.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("tcp connect");
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "no plaintext answer on the TLS port");
    let mut alice = login(&server, "alice").await;
    wait_userlist(&mut alice, &["alice"]).await;
    // Shutdown does not wait for the silent connection's handshake to time out.
    let TlsServer { handle, dir: _dir } = server;
    let started = std::time::Instant::now();
    handle.shutdown().await.expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
}

#[tokio::test]
async fn healthz_and_the_page_are_served_over_https() {
    let server = TlsServer::start("https").await;
    for (path, expect) in [("/healthz", "ok"), ("/team-a", "<html")] {
        let tcp = tokio::net::TcpStream::connect(server.handle.local_addr()).await.expect("tcp connect");
        let connector =
            tokio_rustls::TlsConnector::from(tls::client_config(Some(&server.cert())).expect("TLS"));
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let mut stream = connector.connect(name, tcp).await.expect("TLS handshake");
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut response = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
            .await
            .expect("response in time")
            .or_else(|e| {
                // rustls reports a peer that closes without close_notify; the body is complete anyway.
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Ok(0)
                } else {
                    Err(e)
                }
            })
            .expect("read response");
        let response = String::from_utf8_lossy(&response).to_lowercase();
        assert!(response.starts_with("http/1.1 200"), "{path}: {response}");
        assert!(response.contains(expect), "{path} answers with {expect}: {response}");
    }
}

/// Waits (up to 15 s) until `pred` holds for `engine`'s call state.
async fn wait_state(engine: &Engine, what: &str, pred: impl Fn(&CallState) -> bool) {
    let mut state = engine.state();
    let wait = async {
        while !pred(&state.borrow_and_update()) {
            state.changed().await.expect("engine alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait).await.unwrap_or_else(|_| panic!("timed out: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_call_each_other_through_a_wss_server() {
    let server = TlsServer::start("call").await;
    let engine = |name: &str, answer: bool| {
        let mut config = EngineConfig::new(name, server.url("/call")).with_pattern(160, 120, 15);
        config.peer.bind_addrs = vec!["127.0.0.1:0".to_owned()];
        config.trusted_cert = Some(server.cert());
        config.auto_answer = answer;
        Engine::start(config)
    };
    let alice = engine("alice", false);
    let bob = engine("bob", true);
    for who in [&alice, &bob] {
        let mut list = who.users();
        let wait = async {
            while !["alice", "bob"].iter().all(|n| list.borrow_and_update().iter().any(|u| u == n)) {
                list.changed().await.expect("engine alive");
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait).await.expect("both in the user list over wss");
    }
    assert!(alice.send(Command::Call("bob".into())));
    wait_state(&alice, "alice in call", |s| matches!(s, CallState::InCall { peer } if peer == "bob")).await;
    wait_state(&bob, "bob in call", |s| matches!(s, CallState::InCall { peer } if peer == "alice")).await;
    // Hang-up travels over wss too.
    assert!(alice.send(Command::HangUp));
    wait_state(&bob, "bob back to idle", |s| matches!(s, CallState::Idle)).await;
}
