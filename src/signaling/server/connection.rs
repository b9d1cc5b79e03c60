//! One WebSocket connection: a single task that reads the client, writes its outbox, and pings it.
//!
//! One task (not a reader and a writer) keeps an idle connection small; `select!` waits on the
//! socket, the outbox, the ping timer and shutdown at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::time::{interval_at, timeout, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::outbox::{Batch, Outbox};
use super::session::{Admission, Session};
use super::Shared;
use crate::signaling::protocol::{reason, Message};

/// Outgoing messages longer than this bypass the WebSocket library's write buffer, which keeps its
/// largest size for the life of the connection: it stays near this size on every idle connection.
pub(super) const DIRECT_WRITE_BYTES: usize = 1024;

/// How long a goodbye (close frame) may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection ended; decides the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed, or the socket failed.
    Gone,
    /// The server is shutting down.
    Shutdown,
    /// No frame, not even a pong, for two ping intervals.
    Silent,
    /// The client let its outbox overflow, or a write to it blocked too long.
    TooSlow,
    /// The client kept sending past its rate limit.
    Flooding,
    /// The client sent a message over the size limit.
    TooLarge,
    /// The client broke the WebSocket protocol (unmasked frame, bad UTF-8, ...).
    Protocol,
}

impl End {
    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Gone | End::Silent => return None,
            End::Shutdown => (CloseCode::Away, "server shutting down"),
            End::TooSlow => (CloseCode::Policy, "too slow: outgoing queue full"),
            End::Flooding => (CloseCode::Policy, "rate limit exceeded"),
            End::TooLarge => (CloseCode::Size, "message too large"),
            End::Protocol => (CloseCode::Protocol, "websocket protocol error"),
        };
        Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) })
    }
}

/// Serves one upgraded connection in room `room` until it ends.
pub(super) async fn serve<S>(mut ws: WebSocketStream<S>, room: String, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = shared.next_id();
    let limits = &shared.config.limits;
    let outbox = Arc::new(Outbox::new(limits.max_queued_messages, limits.max_queued_bytes));
    let Ok(joined) = shared.rooms.join(&room, id, Arc::clone(&outbox)) else {
        debug!(id, room, "room full");
        let full = Message::Full { room }.to_json();
        let close = CloseFrame { code: CloseCode::Again, reason: Utf8Bytes::from_static("room is full") };
        let _ = timeout(CLOSE_TIMEOUT, async {
            ws.send(WsMessage::Text(full.into())).await?;
            ws.close(Some(close)).await
        })
        .await;
        return;
    };
    debug!(id, room, "joined");
    outbox.push(Message::Id { id }.to_json().into());
    let mut session = Session::new(id, Arc::clone(&joined), Arc::clone(&outbox), limits, Instant::now());
    session.set_turn(shared.config.turn.clone());
    let end = drive(&mut ws, &mut session, &outbox, &shared).await;
    shared.rooms.leave(&joined, id);
    debug!(id, room, ?end, "left");
    if end == End::TooLarge {
        let error =
            Message::Error { reason: reason::TOO_LARGE.into(), text: Some("message too large".into()) };
        let _ = timeout(CLOSE_TIMEOUT, ws.send(WsMessage::Text(error.to_json().into()))).await;
    }
    if end != End::Silent {
        // After the client's close this only flushes tungstenite's reply; otherwise it says goodbye.
        let _ = timeout(CLOSE_TIMEOUT, ws.close(end.close_frame())).await;
    }
}

/// The connection's loop.
async fn drive<S>(ws: &mut WebSocketStream<S>, session: &mut Session, outbox: &Outbox, shared: &Shared) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut shutdown: watch::Receiver<bool> = shared.shutdown.clone();
    if *shutdown.borrow_and_update() {
        return End::Shutdown;
    }
    let ping_every = shared.config.ping_interval;
    let write_timeout = shared.config.limits.write_timeout;
    let mut ticker = interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Heard from the client since the last tick / a ping is out and unanswered.
    let (mut heard, mut pinged) = (false, false);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return End::Shutdown,
            () = outbox.wait() => {
                let batch = outbox.take();
                if batch.overflowed {
                    return End::TooSlow;
                }
                match timeout(write_timeout, write_batch(ws, batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return End::Gone,
                    Err(_) => return End::TooSlow,
                }
            }
            frame = ws.next() => {
                (heard, pinged) = (true, false);
                match frame {
                    None => return End::Gone,
                    Some(Ok(WsMessage::Text(text))) => match session.admit(Instant::now()) {
                        Admission::Admit => session.on_text(&text).await,
                        Admission::Drop => {}
                        Admission::Flooding => return End::Flooding,
                    },
                    Some(Ok(WsMessage::Binary(_))) => match session.admit(Instant::now()) {
                        Admission::Admit => session.on_binary(),
                        Admission::Drop => {}
                        Admission::Flooding => return End::Flooding,
                    },
                    // tungstenite answers pings itself; they still count against the rate limit.
                    Some(Ok(WsMessage::Ping(_))) => {
                        if session.admit(Instant::now()) == Admission::Flooding {
                            return End::Flooding;
                        }
                    }
                    Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                    Some(Ok(WsMessage::Close(_))) => return End::Gone,
                    Some(Err(WsError::Capacity(_))) => return End::TooLarge,
                    Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => return End::Protocol,
                    Some(Err(_)) => return End::Gone,
                }
            }
            _ = ticker.tick() => {
                if pinged {
                    return End::Silent;
                }
                if !heard {
                    pinged = true;
                    match timeout(write_timeout, ws.send(WsMessage::Ping(Bytes::new()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Gone,
                        Err(_) => return End::TooSlow,
                    }
                }
                heard = false;
            }
        }
    }
}

/// Writes a batch with one flush at the end, so many small messages share a syscall.
async fn write_batch<S>(ws: &mut WebSocketStream<S>, batch: Batch) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for message in batch.queue {
        feed_text(ws, message).await?;
    }
    if let Some(userlist) = batch.userlist {
        feed_text(ws, userlist).await?;
    }
    ws.flush().await
}

/// Queues one text message. A long one (a userlist of a large room, an SDP) skips tungstenite's
/// write buffer: it goes straight to the socket as one frame, with no copy and no buffer growth.
async fn feed_text<S>(ws: &mut WebSocketStream<S>, text: Utf8Bytes) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if text.len() <= DIRECT_WRITE_BYTES {
        return ws.feed(WsMessage::Text(text)).await;
    }
    // What tungstenite holds (earlier messages, a pong) goes first, so the socket sits at a frame boundary.
    ws.flush().await?;
    let mut frame = Bytes::from(text_frame_header(text.len())).chain(Bytes::from(text));
    ws.get_mut().write_all_buf(&mut frame).await.map_err(WsError::Io)
}

/// The header of an unmasked, final text frame of `len` bytes (RFC 6455 §5.2).
fn text_frame_header(len: usize) -> Vec<u8> {
    const FIN_TEXT: u8 = 0x81;
    let mut header = Vec::with_capacity(10);
    header.push(FIN_TEXT);
    match len {
        0..=125 => header.push(len as u8),
        126..=0xFFFF => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::text_frame_header;

    #[test]
    fn frame_headers() {
        assert_eq!(text_frame_header(5), [0x81, 5]);
        assert_eq!(text_frame_header(126), [0x81, 126, 0, 126]);
        assert_eq!(text_frame_header(70_000), [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
