//! Helpers: start a server, connect and log in clients, wait for messages (with a timeout, never a sleep).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peercall::signaling::server::{Server, ServerConfig, ServerHandle};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server on an ephemeral loopback port; shut down when dropped.
pub struct TestServer {
    pub handle: ServerHandle,
}

impl TestServer {
    /// The default configuration with a short userlist delay (tests wait for lists often).
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::ephemeral();
        config.userlist_delay = Duration::from_millis(5);
        tweak(&mut config);
        let server = Server::bind(config).await.expect("bind 127.0.0.1:0");
        Self { handle: server.spawn() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.handle.local_addr(), path)
    }
}

/// A logged-in (or at least connected) client.
pub struct Client {
    pub ws: Ws,
    pub id: u64,
    pub name: String,
    /// The newest userlist this client has received.
    pub users: Option<Vec<Option<String>>>,
}

/// Connects to `path` offering the `json` subprotocol (as MDN's page does) and reads the `id`.
pub async fn connect(server: &TestServer, path: &str) -> Client {
    let mut request = server.url(path).into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("json"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    let mut client = Client::new(ws, "");
    let id = client.recv().await;
    assert_eq!(id["type"], "id", "first message is the id: {id}");
    client.id = id["id"].as_u64().expect("id is an integer");
    client
}

/// Connects to `path` and registers `name`; returns once a userlist holds the name the server gave.
pub async fn login(server: &TestServer, path: &str, name: &str) -> Client {
    let mut client = connect(server, path).await;
    client
        .send(json!({"type": "username", "name": name, "id": client.id, "date": 1_732_358_400_000u64}))
        .await;
    client.name = name.to_owned();
    loop {
        let msg = client.recv().await;
        match msg["type"].as_str() {
            Some("rejectusername") => client.name = msg["name"].as_str().expect("name").to_owned(),
            Some("userlist") if users(&msg).iter().any(|u| u.as_deref() == Some(&client.name)) => break,
            _ => {}
        }
    }
    client
}

/// The `users` of a userlist.
pub fn users(msg: &Value) -> Vec<Option<String>> {
    msg["users"].as_array().expect("users array").iter().map(|u| u.as_str().map(str::to_owned)).collect()
}

impl Client {
    pub fn new(ws: Ws, name: &str) -> Self {
        Self { ws, id: 0, name: name.to_owned(), users: None }
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text message, parsed; fails the test on timeout or close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no message within {WAIT:?}", self.name))
                .unwrap_or_else(|| panic!("{}: connection ended", self.name))
                .unwrap_or_else(|e| panic!("{}: connection failed: {e}", self.name));
            match frame {
                Message::Text(text) => {
                    let msg: Value = serde_json::from_str(&text).expect("server sends JSON");
                    if msg["type"] == "userlist" {
                        self.users = Some(users(&msg));
                    }
                    return msg;
                }
                Message::Close(frame) => panic!("{}: closed by server: {frame:?}", self.name),
                _ => {}
            }
        }
    }

    /// Skips messages until one matches; returns it and those skipped.
    pub async fn recv_until(&mut self, want: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let msg = self.recv().await;
            if want(&msg) {
                return (msg, skipped);
            }
            skipped.push(msg);
        }
    }

    /// The next message that is not a userlist.
    pub async fn recv_not_userlist(&mut self) -> Value {
        self.recv_until(|m| m["type"] != "userlist").await.0
    }

    /// Waits for an `error` with `reason`, failing if any other non-userlist message comes first.
    pub async fn expect_error(&mut self, reason: &str) -> Value {
        let msg = self.recv_not_userlist().await;
        assert_eq!(msg["type"], "error", "{}: expected error {reason}, got {msg}", self.name);
        assert_eq!(msg["reason"], reason, "{}: {msg}", self.name);
        assert!(msg["text"].as_str().is_some_and(|t| !t.is_empty()), "error carries words: {msg}");
        msg
    }

    /// Waits until the newest userlist satisfies `want` (it may already).
    pub async fn wait_userlist(&mut self, want: impl Fn(&[Option<String>]) -> bool) -> Vec<Option<String>> {
        if let Some(users) = self.users.as_ref().filter(|u| want(u)) {
            return users.clone();
        }
        let (msg, _) = self.recv_until(|m| m["type"] == "userlist" && want(&users(m))).await;
        users(&msg)
    }

    /// Keeps reading (so pings are answered) for `time`, failing on anything but a userlist; the
    /// newest list is kept in `users`.
    pub async fn idle_for(&mut self, time: Duration) {
        let deadline = tokio::time::Instant::now() + time;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let msg: Value = serde_json::from_str(&text).expect("server sends JSON");
                    assert_eq!(msg["type"], "userlist", "{}: {text}", self.name);
                    // Kept, so a test can check the newest list after the quiet spell.
                    self.users = Some(users(&msg));
                }
                Some(Ok(_)) => {}
                other => panic!("{}: connection ended while idle: {other:?}", self.name),
            }
        }
    }

    /// Reads until the server closes; returns its close frame (messages before it are returned too).
    pub async fn expect_close(&mut self) -> (Option<CloseFrame>, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("server closes in time") {
                Some(Ok(Message::Close(frame))) => return (frame, before),
                Some(Ok(Message::Text(text))) => before.push(serde_json::from_str(&text).expect("JSON")),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (None, before),
            }
        }
    }

    /// Proves nothing but `userlist`s (and other clients' markers) arrived for this client so far:
    /// sends itself a chat and checks it is the next such message. Order on one connection makes
    /// this sound without a sleep.
    pub async fn assert_nothing_pending(&mut self) {
        let marker = format!("marker-{}", self.id);
        self.send(json!({"type": "message", "text": marker})).await;
        let others_marker = |m: &Value| {
            m["type"] == "message"
                && m["text"].as_str().is_some_and(|t| t.starts_with("marker-") && t != marker)
        };
        let msg = self.recv_until(|m| m["type"] != "userlist" && !others_marker(m)).await.0;
        assert_eq!(msg["type"], "message", "{}: unexpected {msg}", self.name);
        assert_eq!(msg["text"], marker, "{}: unexpected {msg}", self.name);
    }
}
