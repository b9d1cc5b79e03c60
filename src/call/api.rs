//! What the engine's users see: the [`Engine`] handle (cheap to clone), the [`Command`]s they send,
//! the [`Event`]s they read, and why a call ended ([`EndReason`]).

use super::codecs::VideoPreference;
use super::config::EngineConfig;
use super::driver::{self, Driver};
use super::error::{CallError, EngineError};
use super::media::Sinks;
use super::state::CallState;
use super::stats::{CallStats, Counters};
use crate::media::frame::{AudioChunk, RgbaFrame};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// What the user (window, CLI, test) asks the engine to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Call a user by name.
    Call(String),
    /// Accept the ringing call.
    Accept,
    /// Decline the ringing call (the caller is told).
    Decline,
    /// End the current call (or stop calling).
    HangUp,
    /// Send a chat message to the room.
    Chat(String),
    /// Send silence instead of the microphone.
    SetAudioMuted(bool),
    /// Send black instead of the camera.
    SetVideoOff(bool),
    /// Accept incoming calls by ourselves (a call ringing now included), or stop doing so.
    SetAutoAnswer(bool),
    /// Put this video codec first from the next call on (a call keeps what it negotiated).
    SetVideoCodec(VideoPreference),
    /// Ask the far side for a keyframe now (refreshes a damaged picture).
    RequestKeyframe,
    /// Leave: end any call and stop the engine ([`Engine::shutdown`] also waits until it has).
    Shutdown,
}

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up.
    HungUp,
    /// The other side hung up.
    RemoteHungUp,
    /// The callee is in another call.
    Busy,
    /// The callee declined.
    Declined,
    /// We declined the incoming call.
    WeDeclined,
    /// The callee is not online.
    NotOnline,
    /// The other side vanished (server's hang-up on disconnect).
    PeerDisconnected,
    /// Nobody answered in time.
    NoAnswer,
    /// The call could not be set up, or its connection failed or was lost.
    Failed(CallError),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::HungUp => write!(f, "you hung up"),
            EndReason::RemoteHungUp => write!(f, "the other side hung up"),
            EndReason::Busy => write!(f, "busy in another call"),
            EndReason::Declined => write!(f, "declined the call"),
            EndReason::WeDeclined => write!(f, "you declined the call"),
            EndReason::NotOnline => write!(f, "not online"),
            EndReason::PeerDisconnected => write!(f, "the other side disconnected"),
            EndReason::NoAnswer => write!(f, "no answer"),
            EndReason::Failed(why) => write!(f, "call failed: {why}"),
        }
    }
}

/// What the engine tells its users.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The signaling socket is up (connection id from the server).
    SignalingConnected {
        /// The connection id.
        id: u64,
    },
    /// The name we have in the room (the one asked for, or the server's variant).
    Registered {
        /// Our name.
        name: String,
    },
    /// The signaling socket dropped; the engine reconnects by itself. Calls in progress go on.
    SignalingLost {
        /// What went wrong.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The room's users (ours included), in join order.
    UserList(Vec<String>),
    /// A chat message.
    Chat {
        /// The sender's name (set by the server).
        from: String,
        /// The text.
        text: String,
    },
    /// Someone calls; answer with [`Command::Accept`] or [`Command::Decline`].
    IncomingCall {
        /// The caller.
        from: String,
    },
    /// The call slot changed.
    CallState(CallState),
    /// ICE changed (`checking`, `connected`, `disconnected`, ...).
    Ice(String),
    /// A call ended.
    CallEnded {
        /// The other side.
        peer: String,
        /// Why.
        reason: EndReason,
    },
    /// Once a second during a call.
    Stats(Box<CallStats>),
    /// Something went wrong that did not end a call.
    Error(EngineError),
}

/// A handle to a running engine: cheap to clone; the engine stops when told to or when every handle is gone.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
    sinks: Sinks,
    watches: driver::Watches,
    /// Becomes `true` (or closes) once the driver has finished: call ended, signaling flushed.
    stopped: watch::Receiver<bool>,
    /// A listener made before the driver started, for the first [`Engine::subscribe`]: one made
    /// after `start` returned missed the connection, the login and the first user list whenever the
    /// driver got there first (a loaded 2-core machine: a headless caller waited 20 s for a user
    /// list that had come and gone, and a window would have shown nobody online).
    first_listener: Arc<std::sync::Mutex<Option<broadcast::Receiver<Event>>>>,
}

impl Engine {
    /// Starts an engine: connects to the server, logs in, and waits for commands. Needs a Tokio runtime.
    #[must_use = "the engine stops when every handle is dropped"]
    pub fn start(config: EngineConfig) -> Engine {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, first_listener) = broadcast::channel(1024);
        let (stopped_tx, stopped) = watch::channel(false);
        let sinks = Sinks::new();
        let (watches, publish) = driver::watches();
        let driver = Driver::new(config, events.clone(), sinks.clone(), publish);
        tokio::spawn(async move {
            driver.run(command_rx).await;
            stopped_tx.send_replace(true);
        });
        let first_listener = Arc::new(std::sync::Mutex::new(Some(first_listener)));
        Engine { commands, events, sinks, watches, stopped, first_listener }
    }

    /// Sends a command; returns `false` if the engine has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Ends any call (the far side is told), leaves the server, and returns once all of that is done.
    pub async fn shutdown(&self) {
        self.send(Command::Shutdown);
        let mut stopped = self.stopped.clone();
        // An error means the driver is gone already, which is what we wait for.
        let _ = stopped.wait_for(|done| *done).await;
    }

    /// A new listener for events from now on; the first one made hears every event since the
    /// engine started.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        let first =
            self.first_listener.lock().map(|mut f| f.take()).unwrap_or_else(|p| p.into_inner().take());
        first.unwrap_or_else(|| self.events.subscribe())
    }

    /// The latest decoded remote picture (changes wake the receiver); `None` between calls.
    pub fn remote_video(&self) -> watch::Receiver<Option<RgbaFrame>> {
        self.sinks.remote_video()
    }

    /// Every remote picture shown from now on: when, its size and stamp (for the receiver's figures,
    /// [`super::quality`]). A reader more than 256 pictures behind is told how many it missed.
    pub fn frames_shown(&self) -> broadcast::Receiver<super::quality::ShownFrame> {
        self.sinks.shown.subscribe()
    }

    /// A small preview of the video we send (a few frames a second, only while a receiver exists).
    pub fn local_video(&self) -> watch::Receiver<Option<RgbaFrame>> {
        self.sinks.local_video.subscribe()
    }

    /// Decoded remote audio from now on.
    pub fn remote_audio(&self) -> broadcast::Receiver<AudioChunk> {
        self.sinks.remote_audio.subscribe()
    }

    /// The call slot now.
    pub fn state(&self) -> watch::Receiver<CallState> {
        self.watches.state.clone()
    }

    /// The room's users now.
    pub fn users(&self) -> watch::Receiver<Vec<String>> {
        self.watches.users.clone()
    }

    /// Our registered name, once the server has it.
    pub fn name(&self) -> watch::Receiver<Option<String>> {
        self.watches.name.clone()
    }

    /// The current call's counters (frames, keyframes, PLIs...), `None` between calls.
    pub fn counters(&self) -> watch::Receiver<Option<Arc<Counters>>> {
        self.watches.counters.clone()
    }
}
