//! What the window knows about the session, built only from the engine's events: pure, no egui and
//! no clock of its own (time comes in as an argument), so tests feed it events and look at the result.

use crate::call::{CallState, CallStats, EndReason, Event};
use std::time::{Duration, Instant};

/// Chat lines kept; older ones scroll away for good.
const CHAT_KEEP: usize = 500;

/// The signaling link as the user should understand it.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// Opening the socket for the first time.
    Connecting,
    /// Up (and registered once `Model::me` is set).
    Connected,
    /// Dropped; the engine retries by itself.
    Reconnecting {
        /// What went wrong, as the engine said it.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
}

/// One chat message.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatLine {
    /// The sender's name.
    pub from: String,
    /// The text.
    pub text: String,
    /// Whether we sent it.
    pub mine: bool,
}

/// A sentence for the status line: the last thing that went wrong, or that the user should know.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The sentence.
    pub text: String,
    /// Drawn in the error colour.
    pub is_error: bool,
}

/// Everything the views draw, apart from pictures.
#[derive(Clone, Debug)]
pub struct Model {
    /// The name we asked for.
    pub asked_name: String,
    /// The server URL we joined.
    pub server: String,
    /// The name the server gave us, once registered.
    pub me: Option<String>,
    /// The room's users, ours included, in join order.
    pub users: Vec<String>,
    /// The signaling link.
    pub link: Link,
    /// The call slot.
    pub call: CallState,
    /// The last ICE state of the current call.
    pub ice: Option<String>,
    /// When media started flowing in the current call.
    pub in_call_since: Option<Instant>,
    /// The room's chat, oldest first.
    pub chat: Vec<ChatLine>,
    /// The last notice.
    pub notice: Option<Notice>,
    /// The last second of call statistics.
    pub stats: Option<CallStats>,
    /// Our microphone is muted (the engine sends silence).
    pub muted: bool,
    /// Our camera is off (the engine sends black).
    pub camera_off: bool,
}

impl Model {
    /// A fresh session: joining `server` as `asked_name`.
    pub fn new(asked_name: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            asked_name: asked_name.into(),
            server: server.into(),
            me: None,
            users: Vec::new(),
            link: Link::Connecting,
            call: CallState::Idle,
            ice: None,
            in_call_since: None,
            chat: Vec::new(),
            notice: None,
            stats: None,
            muted: false,
            camera_off: false,
        }
    }

    /// Takes in one engine event that happened at `now`.
    pub fn apply(&mut self, event: Event, now: Instant) {
        match event {
            Event::SignalingConnected { .. } => self.link = Link::Connected,
            Event::Registered { name } => {
                if name != self.asked_name {
                    self.notice = Some(Notice {
                        text: format!(
                            "the name \u{201c}{}\u{201d} was taken: you are \u{201c}{name}\u{201d}",
                            self.asked_name
                        ),
                        is_error: false,
                    });
                }
                self.link = Link::Connected;
                self.me = Some(name);
            }
            Event::SignalingLost { reason, retry_in } => self.link = Link::Reconnecting { reason, retry_in },
            Event::UserList(users) => self.users = users,
            Event::Chat { from, text } => {
                let mine = self.me.as_deref() == Some(from.as_str());
                self.chat.push(ChatLine { from, text, mine });
                if self.chat.len() > CHAT_KEEP {
                    self.chat.drain(..self.chat.len() - CHAT_KEEP);
                }
            }
            Event::IncomingCall { .. } => {}
            Event::CallState(state) => self.set_call(state, now),
            Event::Ice(ice) => self.ice = Some(ice),
            Event::CallEnded { peer, reason } => {
                self.set_call(CallState::Idle, now);
                self.notice = Some(ended_notice(&peer, &reason));
            }
            Event::Stats(stats) => self.stats = Some(*stats),
            Event::Error(error) => self.notice = Some(Notice { text: error.to_string(), is_error: true }),
        }
    }

    fn set_call(&mut self, state: CallState, now: Instant) {
        match &state {
            CallState::InCall { .. } => {
                self.in_call_since.get_or_insert(now);
            }
            CallState::Idle => {
                self.in_call_since = None;
                self.ice = None;
                self.stats = None;
            }
            CallState::Calling { .. } | CallState::Ringing { .. } => {
                // A new call: the last call's outcome no longer matters.
                self.notice = None;
            }
            CallState::Connecting { .. } => {}
        }
        self.call = state;
    }
}

/// How a call's end reads in the status line.
fn ended_notice(peer: &str, reason: &EndReason) -> Notice {
    let (text, is_error) = match reason {
        EndReason::HungUp => (format!("call with {peer} ended"), false),
        EndReason::RemoteHungUp => (format!("{peer} hung up"), false),
        EndReason::Busy => (format!("{peer} is busy in another call"), false),
        EndReason::Declined => (format!("{peer} declined the call"), false),
        EndReason::WeDeclined => (format!("you declined {peer}'s call"), false),
        EndReason::NotOnline => (format!("{peer} is not online"), true),
        EndReason::PeerDisconnected => (format!("{peer} disconnected"), true),
        EndReason::NoAnswer => (format!("{peer} did not answer"), false),
        EndReason::Failed(why) => (format!("the call with {peer} failed: {why}"), true),
    };
    Notice { text, is_error }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined() -> Model {
        let mut m = Model::new("ada", "ws://127.0.0.1:6503/");
        let now = Instant::now();
        m.apply(Event::SignalingConnected { id: 1 }, now);
        m.apply(Event::Registered { name: "ada".into() }, now);
        m.apply(Event::UserList(vec!["ada".into(), "bob".into()]), now);
        m
    }

    #[test]
    fn a_taken_name_is_told_with_the_name_we_got() {
        let mut m = Model::new("ada", "ws://x/");
        m.apply(Event::Registered { name: "ada2".into() }, Instant::now());
        assert_eq!(m.me.as_deref(), Some("ada2"));
        let notice = m.notice.expect("a notice");
        assert!(notice.text.contains("ada2"), "{}", notice.text);
    }

    #[test]
    fn call_duration_starts_when_media_flows_and_clears_at_the_end() {
        let mut m = joined();
        let t0 = Instant::now();
        m.apply(Event::CallState(CallState::Calling { peer: "bob".into() }), t0);
        assert!(m.in_call_since.is_none());
        m.apply(Event::CallState(CallState::InCall { peer: "bob".into() }), t0 + Duration::from_secs(1));
        assert_eq!(m.in_call_since, Some(t0 + Duration::from_secs(1)));
        m.apply(Event::Ice("connected".into()), t0);
        m.apply(Event::CallEnded { peer: "bob".into(), reason: EndReason::RemoteHungUp }, t0);
        assert!(m.call.is_idle());
        assert!(m.in_call_since.is_none() && m.ice.is_none());
        assert_eq!(m.notice.expect("notice").text, "bob hung up");
    }

    #[test]
    fn a_decline_reaches_the_caller_in_words() {
        let mut m = joined();
        let now = Instant::now();
        m.apply(Event::CallState(CallState::Calling { peer: "bob".into() }), now);
        m.apply(Event::CallEnded { peer: "bob".into(), reason: EndReason::Declined }, now);
        assert_eq!(m.notice.expect("notice").text, "bob declined the call");
    }

    #[test]
    fn own_chat_lines_are_marked_and_the_log_is_bounded() {
        let mut m = joined();
        let now = Instant::now();
        m.apply(Event::Chat { from: "ada".into(), text: "hi".into() }, now);
        m.apply(Event::Chat { from: "bob".into(), text: "hello".into() }, now);
        assert!(m.chat[0].mine && !m.chat[1].mine);
        for i in 0..CHAT_KEEP + 10 {
            m.apply(Event::Chat { from: "bob".into(), text: i.to_string() }, now);
        }
        assert_eq!(m.chat.len(), CHAT_KEEP);
        assert_eq!(m.chat.last().map(|l| l.text.as_str()), Some((CHAT_KEEP + 9).to_string().as_str()));
    }

    #[test]
    fn lost_signaling_shows_reconnecting_then_connected() {
        let mut m = joined();
        let now = Instant::now();
        m.apply(Event::SignalingLost { reason: "refused".into(), retry_in: Duration::from_secs(2) }, now);
        assert!(matches!(m.link, Link::Reconnecting { .. }));
        m.apply(Event::SignalingConnected { id: 2 }, now);
        assert_eq!(m.link, Link::Connected);
    }
}
