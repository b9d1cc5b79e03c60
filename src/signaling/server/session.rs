//! One client's protocol state: its name, its rate limit, and what each of its messages does.
//!
//! The session never touches the socket: replies go to the client's own [`Outbox`], messages for
//! others to theirs, so every byte a client receives is written by its own connection task.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::limits::{check_name, TokenBucket};
use super::message::{parse, strip_tags, ClientMessage, Rejection};
use super::outbox::Outbox;
use super::room::{ConnId, Room, UnknownTarget};
use super::Limits;
use crate::signaling::protocol::{now_ms, reason, Message};
use crate::signaling::turn::TurnConfig;

/// The rate limit's decision on one incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Handle it.
    Admit,
    /// Drop it (the client was told it is rate-limited).
    Drop,
    /// The client keeps flooding past its rate limit: close the connection (policy violation).
    Flooding,
}

/// One client's protocol state.
#[derive(Debug)]
pub(super) struct Session {
    id: ConnId,
    room: Arc<Room>,
    outbox: Arc<Outbox>,
    name: Option<Arc<str>>,
    max_name_chars: usize,
    bucket: TokenBucket,
    /// Messages dropped by the rate limit in the current one-second window, and when it ends.
    dropped: u32,
    window_end: Instant,
    /// More drops than this in one window and the client is disconnected.
    max_dropped: u32,
    /// TURN servers to hand credentials for, if the server has any.
    turn: Option<Arc<TurnConfig>>,
}

impl Session {
    pub(super) fn new(
        id: ConnId,
        room: Arc<Room>,
        outbox: Arc<Outbox>,
        limits: &Limits,
        now: Instant,
    ) -> Self {
        Self {
            id,
            room,
            outbox,
            name: None,
            max_name_chars: limits.max_name_chars,
            bucket: TokenBucket::new(limits, now),
            dropped: 0,
            window_end: now,
            max_dropped: limits.burst.max(1),
            turn: None,
        }
    }

    /// Charges one incoming frame to the rate limit.
    pub(super) fn admit(&mut self, now: Instant) -> Admission {
        if self.bucket.try_take(now) {
            return Admission::Admit;
        }
        if now >= self.window_end {
            self.window_end = now + Duration::from_secs(1);
            self.dropped = 0;
        }
        self.dropped += 1;
        if self.dropped == 1 {
            // One error a window: answering every dropped message would let a flood amplify itself.
            self.reply_error(&Rejection::new(reason::RATE_LIMITED, "too many messages; slow down"));
        }
        if self.dropped > self.max_dropped {
            return Admission::Flooding;
        }
        Admission::Drop
    }

    /// Handles one text message (already admitted by the rate limit).
    pub(super) async fn on_text(&mut self, text: &str) {
        if let Err(rejection) = self.dispatch(text).await {
            self.reply_error(&rejection);
        }
    }

    /// Binary frames are not part of the protocol; say so and carry on.
    pub(super) fn on_binary(&mut self) {
        self.reply_error(&Rejection::new(reason::BINARY, "send JSON text frames, not binary ones"));
    }

    async fn dispatch(&mut self, text: &str) -> Result<(), Rejection> {
        match parse(text)? {
            ClientMessage::Username { name } => self.register(&name).await,
            ClientMessage::Chat { text } => {
                let name = self.logged_in_name()?;
                let chat = Message::Chat {
                    name: Some(name.to_string()),
                    text: strip_tags(&text).into_owned(),
                    id: Some(self.id),
                    date: Some(now_ms()),
                };
                self.room.broadcast(&Utf8Bytes::from(chat.to_json()));
                Ok(())
            }
            ClientMessage::Relay { kind, target, fields } => {
                let name = self.logged_in_name()?;
                let payload = Utf8Bytes::from(fields.to_json_with_name(name));
                self.room.relay(self.id, name, kind, &target, payload).map_err(|UnknownTarget| {
                    let shown: String = target.chars().take(80).collect();
                    Rejection::new(reason::UNKNOWN_TARGET, format!("no user named {shown:?} in this room"))
                })
            }
        }
    }

    async fn register(&mut self, wanted: &str) -> Result<(), Rejection> {
        check_name(wanted, self.max_name_chars).map_err(|why| Rejection::new(reason::BAD_NAME, why))?;
        // The room queues `rejectusername` itself when it picked another name.
        let Some((name, _renamed)) = self.room.register(self.id, wanted).await else { return Ok(()) };
        if let Some(turn) = &self.turn {
            let ice_servers = turn.ice_servers_for(&name, SystemTime::now());
            self.outbox.push(Message::IceServers { ice_servers }.to_json().into());
        }
        self.name = Some(name);
        Ok(())
    }

    /// Hands out credentials for these TURN servers after each login.
    pub(super) fn set_turn(&mut self, turn: Option<Arc<TurnConfig>>) {
        self.turn = turn;
    }

    fn logged_in_name(&self) -> Result<&str, Rejection> {
        self.name.as_deref().ok_or_else(|| Rejection::new(reason::NOT_LOGGED_IN, "send \"username\" first"))
    }

    fn reply_error(&self, rejection: &Rejection) {
        let error =
            Message::Error { reason: rejection.reason.to_owned(), text: Some(rejection.text.clone()) };
        self.outbox.push(error.to_json().into());
    }
}
