//! The signaling client the call engine uses: one task owns the WebSocket, logs in, reconnects with
//! backoff when the socket drops, and hands every message to the engine as a typed event.
//!
//! It speaks exactly what a page written for MDN's guide speaks: it offers the `json` subprotocol,
//! waits for `id`, answers with `username` (name, id, date), and then sends and receives [`Message`]s.

use super::protocol::{now_ms, Message};
use super::tls;
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::Connector;

/// What the client tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalingEvent {
    /// The socket is up and `username` has been sent.
    Connected {
        /// The connection id the server assigned.
        id: u64,
    },
    /// A message from the server.
    Message(Message),
    /// The socket dropped or could not be opened; the client retries after `retry_in`.
    Disconnected {
        /// What went wrong, in words.
        reason: String,
        /// When the next attempt happens.
        retry_in: Duration,
    },
}

/// The sending half: cheap to clone; messages sent while disconnected are dropped (the engine ends
/// calls that depend on them by its own timers).
#[derive(Clone)]
pub struct SignalingHandle {
    tx: mpsc::UnboundedSender<Message>,
}

impl SignalingHandle {
    /// Queues a message for the server. Returns `false` once the client has stopped.
    pub fn send(&self, message: Message) -> bool {
        self.tx.send(message).is_ok()
    }
}

/// The client's task, to wait for: once every [`SignalingHandle`] is dropped it sends what was
/// queued, closes the socket and finishes.
pub struct SignalingTask(tokio::task::JoinHandle<()>);

impl SignalingTask {
    /// Resolves when the client has finished (a panic inside it counts as finished).
    pub async fn finished(&mut self) {
        let _ = (&mut self.0).await;
    }
}

/// Starts the client task for `url` (`ws://` or `wss://`) under `name`. For `wss://`, the server's
/// certificate must chain to a public CA or to a certificate in the PEM file `trusted_cert` (a
/// self-signed deployment). It runs until every handle is dropped (then it flushes and closes) or
/// the event receiver is.
pub fn spawn(
    url: String,
    name: String,
    trusted_cert: Option<PathBuf>,
) -> (SignalingHandle, mpsc::UnboundedReceiver<SignalingEvent>, SignalingTask) {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let target = Target { url, trusted_cert };
    let task = tokio::spawn(run(target, name, out_rx, ev_tx));
    (SignalingHandle { tx: out_tx }, ev_rx, SignalingTask(task))
}

/// Where to connect and whom to trust there.
struct Target {
    url: String,
    trusted_cert: Option<PathBuf>,
}

impl Target {
    /// The TLS connector for a `wss://` URL, `None` for `ws://`. Built on each attempt, so a
    /// certificate file fixed while we retry is picked up.
    fn connector(&self) -> Result<Option<Connector>, String> {
        let is_tls = self.url.get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"));
        if !is_tls {
            return Ok(None);
        }
        match tls::client_config(self.trusted_cert.as_deref()) {
            Ok(config) => Ok(Some(Connector::Rustls(config))),
            Err(e) => Err(e.to_string()),
        }
    }
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

async fn run(
    target: Target,
    name: String,
    mut out_rx: mpsc::UnboundedReceiver<Message>,
    ev_tx: mpsc::UnboundedSender<SignalingEvent>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let outcome = session(&target, &name, &mut out_rx, &ev_tx, &mut backoff).await;
        let reason = match outcome {
            SessionEnd::OwnerGone => return,
            SessionEnd::Dropped(reason) => reason,
        };
        if ev_tx.send(SignalingEvent::Disconnected { reason, retry_in: backoff }).is_err() {
            return;
        }
        // Drop what was queued for the dead socket: offers and candidates are stale by the time we're back.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                msg = out_rx.recv() => if msg.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum SessionEnd {
    OwnerGone,
    Dropped(String),
}

async fn session(
    target: &Target,
    name: &str,
    out_rx: &mut mpsc::UnboundedReceiver<Message>,
    ev_tx: &mpsc::UnboundedSender<SignalingEvent>,
    backoff: &mut Duration,
) -> SessionEnd {
    let url = target.url.as_str();
    let connector = match target.connector() {
        Ok(connector) => connector,
        Err(e) => return SessionEnd::Dropped(format!("cannot set up TLS for {url}: {e}")),
    };
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return SessionEnd::Dropped(format!("bad server address {url}: {e}")),
    };
    // Browsers on MDN's page ask for the `json` subprotocol; so do we, to take the same path through servers.
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("json"));
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector),
    );
    let (ws, _) = match connect.await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return SessionEnd::Dropped(format!("cannot reach the signaling server at {url}: {e}")),
        Err(_) => return SessionEnd::Dropped(format!("the signaling server at {url} did not answer in 5 s")),
    };
    let (mut sink, mut stream) = ws.split();
    let mut logged_in = false;
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(frame))) => {
                        let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return SessionEnd::Dropped(format!("the server closed the connection {why}").trim_end().to_owned());
                    }
                    Some(Ok(_)) => continue, // pings are answered by tungstenite; binary is not ours
                    Some(Err(e)) => return SessionEnd::Dropped(format!("signaling connection lost: {e}")),
                    None => return SessionEnd::Dropped("signaling connection closed".to_owned()),
                };
                let message = match serde_json::from_str::<Message>(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(%e, %text, "ignoring a signaling message we don't understand");
                        continue;
                    }
                };
                if let Message::Id { id } = message {
                    if !logged_in {
                        logged_in = true;
                        *backoff = BACKOFF_START;
                        let login = Message::Username { name: name.to_owned(), id: Some(id), date: Some(now_ms()) };
                        if let Err(e) = sink.send(WsMessage::text(login.to_json())).await {
                            return SessionEnd::Dropped(format!("signaling connection lost: {e}"));
                        }
                        if ev_tx.send(SignalingEvent::Connected { id }).is_err() {
                            return SessionEnd::OwnerGone;
                        }
                    }
                    continue;
                }
                if ev_tx.send(SignalingEvent::Message(message)).is_err() {
                    return SessionEnd::OwnerGone;
                }
            }
            outgoing = out_rx.recv() => {
                let Some(message) = outgoing else {
                    // Everything queued went out before the channel reported its end: now say
                    // goodbye, so the server drops us from the room at once rather than at a timeout.
                    let _ = sink.close().await;
                    return SessionEnd::OwnerGone;
                };
                if let Err(e) = sink.send(WsMessage::text(message.to_json())).await {
                    return SessionEnd::Dropped(format!("signaling connection lost: {e}"));
                }
            }
        }
    }
}
