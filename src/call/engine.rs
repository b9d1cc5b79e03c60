//! The engine's driver task and its handle. One task owns all call state; everything else (signaling
//! client, peer-connection callbacks, media threads, the user) talks to it through channels, so no
//! state is shared behind locks and events from a call that already ended are recognised by its id.

use super::media::{self, MediaControls, Sinks, TrackTarget};
use super::peer::{self, PeerEvent, PeerSettings};
use super::state::{self, CallState, Refusal, Step};
use super::stats::{CallStats, Counters, StatsMeter};
use crate::media::frame::{AudioChunk, RgbaFrame};
use crate::media::pattern::PatternSource;
use crate::media::source::{AudioSource, VideoSource};
use crate::media::tone::ToneSource;
use crate::signaling::client::{self, SignalingEvent, SignalingHandle};
use crate::signaling::protocol::{self, IceCandidate, Message, SessionDescription};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::Track;
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCIceConnectionState, RTCIceServer, RTCPeerConnectionState,
    RTCSessionDescription, RTCStatsReportEntry, StatsSelector,
};
use webrtc::rtp_transceiver::RtpSender;

/// Makes a fresh video source for each call.
pub type VideoSourceFactory = Arc<dyn Fn() -> Box<dyn VideoSource> + Send + Sync>;
/// Makes a fresh audio source for each call.
pub type AudioSourceFactory = Arc<dyn Fn() -> Box<dyn AudioSource> + Send + Sync>;

/// How an engine is set up.
#[derive(Clone)]
pub struct EngineConfig {
    /// The display name to register (the server may hand back a variant).
    pub name: String,
    /// The signaling server, e.g. `ws://127.0.0.1:6503/` (the path names the room).
    pub server_url: String,
    /// Accept incoming calls without asking.
    pub auto_answer: bool,
    /// ICE servers and local addresses.
    pub peer: PeerSettings,
    /// Where outgoing video comes from.
    pub video_source: VideoSourceFactory,
    /// Where outgoing audio comes from.
    pub audio_source: AudioSourceFactory,
    /// How long ICE may stay `disconnected` (while we try ICE restarts) before the call is given up.
    pub disconnected_grace: Duration,
    /// How long ICE stays `disconnected` before the caller restarts ICE (and again, as often, after that).
    pub ice_restart_after: Duration,
    /// How long an unanswered call rings before it is given up.
    pub ring_timeout: Duration,
    /// How long offer/answer may stay without a working connection before the call is given up.
    pub connect_timeout: Duration,
    /// For a `wss://` server with a self-signed certificate: a PEM file whose certificate to trust.
    pub trusted_cert: Option<std::path::PathBuf>,
}

impl EngineConfig {
    /// A config with synthetic media (640x480@30 pattern, 440 Hz tone) and default network settings.
    pub fn new(name: impl Into<String>, server_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            server_url: server_url.into(),
            auto_answer: false,
            peer: PeerSettings::default(),
            video_source: Arc::new(|| Box::new(PatternSource::new(640, 480, 30))),
            audio_source: Arc::new(|| Box::new(ToneSource::new(440.0, 0.25))),
            disconnected_grace: Duration::from_secs(15),
            ice_restart_after: Duration::from_secs(1),
            ring_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            trusted_cert: None,
        }
    }

    /// Uses the synthetic pattern at this size and rate.
    pub fn with_pattern(mut self, width: usize, height: usize, fps: u32) -> Self {
        self.video_source = Arc::new(move || Box::new(PatternSource::new(width, height, fps)));
        self
    }

    /// Uses a synthetic tone at this frequency.
    pub fn with_tone(mut self, frequency: f64) -> Self {
        self.audio_source = Arc::new(move || Box::new(ToneSource::new(frequency, 0.25)));
        self
    }
}

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
    /// Ask the far side for a keyframe now (refreshes a damaged picture).
    RequestKeyframe,
    /// Leave: end any call and stop the engine.
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
    /// The connection failed or was lost.
    Failed(String),
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
    Stats(CallStats),
    /// Something went wrong, in words.
    Error(String),
}

/// A handle to a running engine: cheap to clone; the engine stops when told to or when every handle is gone.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
    sinks: Sinks,
    state: watch::Receiver<CallState>,
    users: watch::Receiver<Vec<String>>,
    name: watch::Receiver<Option<String>>,
    counters: watch::Receiver<Option<Arc<Counters>>>,
}

impl Engine {
    /// Starts an engine: connects to the server, logs in, and waits for commands. Needs a Tokio runtime.
    #[must_use = "the engine stops when every handle is dropped"]
    pub fn start(config: EngineConfig) -> Engine {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let sinks = Sinks {
            remote_video: watch::channel(None).0,
            remote_audio: broadcast::channel(256).0,
            local_video: watch::channel(None).0,
        };
        let (state_tx, state) = watch::channel(CallState::Idle);
        let (users_tx, users) = watch::channel(Vec::new());
        let (name_tx, name) = watch::channel(None);
        let (counters_tx, counters) = watch::channel(None);
        let (signaling, signaling_rx) =
            client::spawn(config.server_url.clone(), config.name.clone(), config.trusted_cert.clone());
        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            config,
            events: events.clone(),
            sinks: sinks.clone(),
            state_tx,
            users_tx,
            name_tx,
            counters_tx,
            signaling,
            peer_tx,
            controls: Arc::new(MediaControls::default()),
            call: None,
            early_candidates: HashMap::new(),
            next_call_id: 1,
            server_ice_servers: Vec::new(),
        };
        tokio::spawn(driver.run(command_rx, signaling_rx, peer_rx));
        Engine { commands, events, sinks, state, users, name, counters }
    }

    /// Sends a command; returns `false` if the engine has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// A new listener for events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The latest decoded remote picture (changes wake the receiver).
    pub fn remote_video(&self) -> watch::Receiver<Option<RgbaFrame>> {
        self.sinks.remote_video.subscribe()
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
        self.state.clone()
    }

    /// The room's users now.
    pub fn users(&self) -> watch::Receiver<Vec<String>> {
        self.users.clone()
    }

    /// Our registered name, once the server has it.
    pub fn name(&self) -> watch::Receiver<Option<String>> {
        self.name.clone()
    }

    /// The current call's counters (frames, keyframes, PLIs...), `None` between calls.
    pub fn counters(&self) -> watch::Receiver<Option<Arc<Counters>>> {
        self.counters.clone()
    }
}

/// One call, from ring or dial to hang-up.
struct ActiveCall {
    id: u64,
    peer: String,
    pc: Option<Arc<dyn PeerConnection>>,
    /// The offer we were sent, kept while ringing.
    remote_offer: Option<SessionDescription>,
    remote_description_set: bool,
    /// Candidates that came before the remote description: applied right after it.
    queued_candidates: Vec<IceCandidate>,
    video: Option<(Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>)>,
    audio: Option<(Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>)>,
    offer_sent: bool,
    media_started: bool,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    /// Set to ask the far side for a keyframe (the video receiver sends the PLI).
    want_keyframe: Arc<std::sync::atomic::AtomicBool>,
    meter: StatsMeter,
    started: Instant,
    connecting_since: Option<Instant>,
    disconnected_since: Option<Instant>,
    /// The server told us the peer's signaling socket dropped while media still flowed.
    peer_signaling_lost: bool,
    /// We placed the call: we make the offers, ICE restarts included (one side only, so no glare).
    is_caller: bool,
    /// When we last restarted ICE, and how often we have.
    last_ice_restart: Option<Instant>,
    ice_restarts: u32,
}

/// Candidates from a peer we have no call with yet, at most this many per peer and this many peers.
const EARLY_CANDIDATES_PER_PEER: usize = 64;
const EARLY_CANDIDATE_PEERS: usize = 16;

struct Driver {
    config: EngineConfig,
    events: broadcast::Sender<Event>,
    sinks: Sinks,
    state_tx: watch::Sender<CallState>,
    users_tx: watch::Sender<Vec<String>>,
    name_tx: watch::Sender<Option<String>>,
    counters_tx: watch::Sender<Option<Arc<Counters>>>,
    signaling: SignalingHandle,
    peer_tx: mpsc::UnboundedSender<(u64, PeerEvent)>,
    controls: Arc<MediaControls>,
    call: Option<ActiveCall>,
    early_candidates: HashMap<String, Vec<IceCandidate>>,
    next_call_id: u64,
    /// STUN/TURN servers the signaling server handed us (with fresh TURN credentials).
    server_ice_servers: Vec<RTCIceServer>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut signaling: mpsc::UnboundedReceiver<SignalingEvent>,
        mut peer_events: mpsc::UnboundedReceiver<(u64, PeerEvent)>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_stats = Instant::now();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.on_command(command).await,
                },
                Some(event) = signaling.recv() => self.on_signaling(event).await,
                Some((call_id, event)) = peer_events.recv() => self.on_peer_event(call_id, event).await,
                _ = tick.tick() => {
                    let stats_due = last_stats.elapsed() >= Duration::from_secs(1);
                    if stats_due {
                        last_stats = Instant::now();
                    }
                    self.on_tick(stats_due).await;
                }
            }
        }
        self.end_call(EndReason::HungUp, true).await;
    }

    fn emit(&self, event: Event) {
        // No listener is not an error: a headless bot may not care.
        let _ = self.events.send(event);
    }

    fn me(&self) -> Option<String> {
        self.name_tx.borrow().clone()
    }

    fn state(&self) -> CallState {
        self.state_tx.borrow().clone()
    }

    fn set_state(&self, state: CallState) {
        if *self.state_tx.borrow() != state {
            tracing::debug!(me = ?self.me(), %state, "call state");
            self.state_tx.send_replace(state.clone());
            self.emit(Event::CallState(state));
        }
    }

    // ----- commands -----

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Call(target) => self.dial(target).await,
            Command::Accept => self.accept().await,
            Command::Decline => {
                if matches!(self.state(), CallState::Ringing { .. }) {
                    self.end_call(EndReason::WeDeclined, true).await;
                }
            }
            Command::HangUp => self.end_call(EndReason::HungUp, true).await,
            Command::Chat(text) => {
                let msg = Message::Chat { name: self.me(), text, id: None, date: Some(protocol::now_ms()) };
                self.signaling.send(msg);
            }
            Command::SetAudioMuted(muted) => self.controls.audio_muted.store(muted, Ordering::Relaxed),
            Command::SetVideoOff(off) => self.controls.video_off.store(off, Ordering::Relaxed),
            Command::RequestKeyframe => {
                if let Some(call) = &self.call {
                    call.want_keyframe.store(true, Ordering::Relaxed);
                }
            }
            Command::Shutdown => {}
        }
    }

    async fn dial(&mut self, target: String) {
        let Some(me) = self.me() else {
            return self.emit(Event::Error("not connected to the signaling server yet".into()));
        };
        if target == me {
            return self.emit(Event::Error("you can't call yourself".into()));
        }
        if !self.users_tx.borrow().contains(&target) {
            return self.emit(Event::Error(format!("{target} is not online")));
        }
        let next = match state::next(&self.state(), Step::Dial(target.clone())) {
            Ok(s) => s,
            Err(Refusal::Busy(s)) => {
                return self.emit(Event::Error(format!("finish the current call first ({s})")))
            }
            Err(e) => return self.emit(Event::Error(e.to_string())),
        };
        let mut call = self.new_call(target.clone());
        if let Err(e) = self.open_peer_connection(&mut call).await {
            return self.emit(Event::Error(format!("could not start the call: {e}")));
        }
        call.offer_sent = true;
        call.is_caller = true;
        self.call = Some(call);
        self.set_state(next);
        // MDN's page makes the offer in `onnegotiationneeded`. webrtc 0.21 queues that event inside its
        // driver and only delivers it when the driver next wakes (often not before the offer is wanted),
        // so we make the offer as soon as the tracks are added, which is the same moment in the flow.
        if let Err(e) = self.send_offer().await {
            self.end_call(EndReason::Failed(e), true).await;
        }
    }

    async fn accept(&mut self) {
        let Ok(next) = state::next(&self.state(), Step::Accept) else { return };
        let Some(mut call) = self.call.take() else { return };
        match self.answer(&mut call).await {
            Ok(()) => {
                self.call = Some(call);
                self.set_state(next);
            }
            Err(e) => {
                self.call = Some(call);
                self.end_call(EndReason::Failed(e), true).await;
            }
        }
    }

    async fn answer(&mut self, call: &mut ActiveCall) -> Result<(), String> {
        let offer = call.remote_offer.take().ok_or("no offer to answer")?;
        self.open_peer_connection(call).await.map_err(|e| e.to_string())?;
        let pc = call.pc.clone().ok_or("no peer connection")?;
        let desc = RTCSessionDescription::offer(offer.sdp)
            .map_err(|e| format!("the offer is not valid SDP: {e}"))?;
        pc.set_remote_description(desc).await.map_err(|e| format!("the offer was refused: {e}"))?;
        call.remote_description_set = true;
        let answer = pc.create_answer(None).await.map_err(|e| format!("could not answer: {e}"))?;
        let sdp = answer.sdp.clone();
        pc.set_local_description(answer).await.map_err(|e| format!("could not answer: {e}"))?;
        let me = self.me().unwrap_or_default();
        self.signaling.send(Message::VideoAnswer {
            name: me,
            target: call.peer.clone(),
            sdp: SessionDescription { kind: "answer".into(), sdp },
        });
        self.flush_candidates(call).await;
        Ok(())
    }

    fn new_call(&mut self, peer: String) -> ActiveCall {
        let id = self.next_call_id;
        self.next_call_id += 1;
        let counters = Arc::new(Counters::default());
        self.counters_tx.send_replace(Some(counters.clone()));
        ActiveCall {
            id,
            queued_candidates: self.early_candidates.remove(&peer).unwrap_or_default(),
            peer,
            pc: None,
            remote_offer: None,
            remote_description_set: false,
            video: None,
            audio: None,
            offer_sent: false,
            media_started: false,
            stop: watch::channel(false).0,
            counters,
            want_keyframe: Arc::default(),
            meter: StatsMeter::default(),
            started: Instant::now(),
            connecting_since: None,
            disconnected_since: None,
            peer_signaling_lost: false,
            is_caller: false,
            last_ice_restart: None,
            ice_restarts: 0,
        }
    }

    async fn open_peer_connection(&self, call: &mut ActiveCall) -> Result<(), webrtc::error::Error> {
        let mut settings = self.config.peer.clone();
        settings.ice_servers.extend(self.server_ice_servers.iter().cloned());
        let pc =
            peer::build(&settings, call.id, self.peer_tx.clone(), Arc::clone(&call.counters.loss_feedback))
                .await?;
        call.pc = Some(pc.clone());
        let stream_id = peer::new_stream_id();
        let video = peer::local_track(RtpCodecKind::Video, peer::h264_codec(), &stream_id)?;
        let video_sender = pc.add_track(video.clone() as Arc<dyn TrackLocal>).await?;
        call.video = Some((video, video_sender));
        let audio = peer::local_track(RtpCodecKind::Audio, peer::opus_codec(), &stream_id)?;
        let audio_sender = pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await?;
        call.audio = Some((audio, audio_sender));
        Ok(())
    }

    // ----- signaling -----

    async fn on_signaling(&mut self, event: SignalingEvent) {
        match event {
            SignalingEvent::Connected { id } => {
                self.emit(Event::SignalingConnected { id });
                // The server keeps our name unless it answers `rejectusername` with another.
                self.name_tx.send_replace(Some(self.config.name.clone()));
                self.emit(Event::Registered { name: self.config.name.clone() });
            }
            SignalingEvent::Disconnected { reason, retry_in } => {
                self.emit(Event::SignalingLost { reason, retry_in });
                // Without the server we don't know who is online; an old list would invite calls
                // that can't be placed. The server sends a fresh one after the next login.
                if !self.users_tx.borrow().is_empty() {
                    self.users_tx.send_replace(Vec::new());
                    self.emit(Event::UserList(Vec::new()));
                }
            }
            SignalingEvent::Message(message) => self.on_message(message).await,
        }
    }

    async fn on_message(&mut self, message: Message) {
        tracing::debug!(me = ?self.me(), ?message, "signaling in");
        match message {
            Message::RejectUsername { name, .. } => {
                self.name_tx.send_replace(Some(name.clone()));
                self.emit(Event::Registered { name });
            }
            Message::UserList { users } => {
                let users: Vec<String> = users.into_iter().flatten().collect();
                if let Some(call) = self.call.as_mut().filter(|c| users.contains(&c.peer)) {
                    // The peer is back on the server: its hang-up would reach us again, so a later
                    // ICE outage gets the usual grace (and a restart) rather than none.
                    call.peer_signaling_lost = false;
                }
                self.users_tx.send_replace(users.clone());
                self.emit(Event::UserList(users));
            }
            Message::Chat { name, text, .. } => {
                self.emit(Event::Chat { from: name.unwrap_or_default(), text });
            }
            Message::VideoOffer { name, sdp, .. } => self.on_offer(name, sdp).await,
            Message::VideoAnswer { name, sdp, .. } => self.on_answer(name, sdp).await,
            Message::NewIceCandidate { name, candidate, .. } => {
                self.on_remote_candidate(name, candidate).await
            }
            Message::HangUp { name, reason, .. } => self.on_hang_up(name, reason).await,
            Message::Error { reason, text } => {
                let calling =
                    matches!(self.state(), CallState::Calling { .. } | CallState::Connecting { .. });
                if reason == protocol::reason::UNKNOWN_TARGET && calling {
                    self.end_call(EndReason::NotOnline, false).await;
                } else {
                    self.emit(Event::Error(format!("server: {}", text.unwrap_or(reason))));
                }
            }
            Message::Full { room } => self.emit(Event::Error(format!("the room \"{room}\" is full"))),
            Message::IceServers { ice_servers } => {
                // Used from the next call on; TURN credentials from the server are short-lived and
                // arrive again with every login.
                self.server_ice_servers = ice_servers.into_iter().map(RTCIceServer::from).collect();
            }
            Message::Id { .. } | Message::Username { .. } => {}
        }
    }

    async fn on_offer(&mut self, from: String, sdp: SessionDescription) {
        let in_call_with_sender = self.call.as_ref().is_some_and(|c| c.peer == from && c.pc.is_some());
        if in_call_with_sender {
            // Renegotiation or ICE restart from our peer: answer on the same connection.
            if let Some(mut call) = self.call.take() {
                call.remote_offer = Some(sdp);
                let result = self.answer_renegotiation(&mut call).await;
                self.call = Some(call);
                if let Err(e) = result {
                    self.end_call(EndReason::Failed(e), true).await;
                }
            }
            return;
        }
        match state::next(&self.state(), Step::Offered(from.clone())) {
            Ok(next) => {
                let mut call = self.new_call(from.clone());
                call.remote_offer = Some(sdp);
                self.call = Some(call);
                self.set_state(next);
                self.emit(Event::IncomingCall { from });
                if self.config.auto_answer {
                    self.accept().await;
                }
            }
            Err(_) => {
                // One call at a time: tell the caller we're busy rather than leave it ringing.
                let me = self.me().unwrap_or_default();
                self.signaling.send(Message::HangUp {
                    name: me,
                    target: from,
                    reason: Some(protocol::HANGUP_REASON_BUSY.into()),
                });
            }
        }
    }

    async fn answer_renegotiation(&mut self, call: &mut ActiveCall) -> Result<(), String> {
        let offer = call.remote_offer.take().ok_or("no offer")?;
        let pc = call.pc.clone().ok_or("no peer connection")?;
        let desc = RTCSessionDescription::offer(offer.sdp).map_err(|e| e.to_string())?;
        pc.set_remote_description(desc).await.map_err(|e| e.to_string())?;
        let answer = pc.create_answer(None).await.map_err(|e| e.to_string())?;
        let sdp = answer.sdp.clone();
        pc.set_local_description(answer).await.map_err(|e| e.to_string())?;
        self.signaling.send(Message::VideoAnswer {
            name: self.me().unwrap_or_default(),
            target: call.peer.clone(),
            sdp: SessionDescription { kind: "answer".into(), sdp },
        });
        Ok(())
    }

    async fn on_answer(&mut self, from: String, sdp: SessionDescription) {
        let Ok(next) = state::next(&self.state(), Step::Answered(from.clone())) else {
            tracing::debug!(%from, "ignoring an answer we did not ask for");
            return;
        };
        let Some(mut call) = self.call.take() else { return };
        let result = async {
            let pc = call.pc.clone().ok_or("no peer connection")?;
            let desc = RTCSessionDescription::answer(sdp.sdp)
                .map_err(|e| format!("the answer is not valid SDP: {e}"))?;
            pc.set_remote_description(desc).await.map_err(|e| format!("the answer was refused: {e}"))?;
            Ok::<(), String>(())
        }
        .await;
        match result {
            Ok(()) => {
                call.remote_description_set = true;
                self.flush_candidates(&mut call).await;
                let connected = call.media_started;
                self.call = Some(call);
                self.set_state(next);
                if connected {
                    self.set_state(CallState::InCall { peer: from });
                }
            }
            Err(e) => {
                self.call = Some(call);
                self.end_call(EndReason::Failed(e), true).await;
            }
        }
    }

    async fn on_remote_candidate(&mut self, from: Option<String>, candidate: IceCandidate) {
        // MDN's server relays candidates without a name: then they are from whoever we're in a call with.
        let from = match (from, &self.call) {
            (Some(f), _) => f,
            (None, Some(call)) => call.peer.clone(),
            (None, None) => return,
        };
        if candidate.candidate.is_empty() {
            return; // end-of-candidates: nothing to add
        }
        match self.call.as_mut() {
            Some(call) if call.peer == from => {
                if call.remote_description_set {
                    if let Some(pc) = &call.pc {
                        if let Err(e) = pc.add_ice_candidate(to_init(&candidate)).await {
                            tracing::debug!(%e, candidate = %candidate.candidate, "a remote candidate was refused");
                        }
                    }
                } else {
                    call.queued_candidates.push(candidate);
                }
            }
            _ => {
                // Candidates may overtake the offer they belong to: keep a few per peer until it arrives.
                if self.early_candidates.len() >= EARLY_CANDIDATE_PEERS
                    && !self.early_candidates.contains_key(&from)
                {
                    return;
                }
                let list = self.early_candidates.entry(from).or_default();
                if list.len() < EARLY_CANDIDATES_PER_PEER {
                    list.push(candidate);
                }
            }
        }
    }

    async fn flush_candidates(&self, call: &mut ActiveCall) {
        let Some(pc) = call.pc.clone() else { return };
        for candidate in call.queued_candidates.drain(..) {
            if let Err(e) = pc.add_ice_candidate(to_init(&candidate)).await {
                tracing::debug!(%e, candidate = %candidate.candidate, "a queued remote candidate was refused");
            }
        }
    }

    async fn on_hang_up(&mut self, from: String, reason: Option<String>) {
        self.early_candidates.remove(&from);
        if self.call.as_ref().is_none_or(|c| c.peer != from) {
            return;
        }
        let reason = match reason.as_deref() {
            Some(protocol::HANGUP_REASON_BUSY) => EndReason::Busy,
            Some(protocol::HANGUP_REASON_DECLINED) => EndReason::Declined,
            Some(protocol::HANGUP_REASON_DISCONNECTED) => EndReason::PeerDisconnected,
            _ => EndReason::RemoteHungUp,
        };
        if reason == EndReason::PeerDisconnected {
            if let Some(call) =
                self.call.as_mut().filter(|c| c.media_started && c.disconnected_since.is_none())
            {
                // The server lost the peer's signaling socket, but media is peer to peer and still
                // flows: the peer may just be reconnecting to the server. Keep the call; if the peer
                // is really gone, ICE notices within seconds and the call ends without further grace.
                call.peer_signaling_lost = true;
                tracing::info!(peer = %from, "the peer's signaling dropped; the call goes on while media flows");
                return;
            }
        }
        self.end_call(reason, false).await;
    }

    // ----- peer connection -----

    async fn on_peer_event(&mut self, call_id: u64, event: PeerEvent) {
        tracing::debug!(me = ?self.me(), call_id, event = event.name(), "peer event");
        let (state, me, events) = (self.state(), self.me(), self.events.clone());
        let Some(call) = self.call.as_mut().filter(|c| c.id == call_id) else {
            return; // from a call that has ended
        };
        match event {
            PeerEvent::NegotiationNeeded => {
                let is_caller = matches!(state, CallState::Calling { .. });
                if is_caller && !call.offer_sent {
                    call.offer_sent = true;
                    if let Err(e) = self.send_offer().await {
                        self.end_call(EndReason::Failed(e), true).await;
                    }
                }
            }
            PeerEvent::LocalCandidate(init) => {
                let message = Message::NewIceCandidate {
                    name: me,
                    target: call.peer.clone(),
                    candidate: IceCandidate {
                        candidate: init.candidate,
                        sdp_mid: init.sdp_mid,
                        sdp_m_line_index: init.sdp_mline_index,
                        username_fragment: init.username_fragment,
                    },
                };
                self.signaling.send(message);
            }
            PeerEvent::Ice(ice) => {
                let _ = events.send(Event::Ice(ice.to_string()));
                match ice {
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed => {
                        call.disconnected_since = None;
                    }
                    RTCIceConnectionState::Disconnected => {
                        call.disconnected_since.get_or_insert_with(Instant::now);
                    }
                    RTCIceConnectionState::Failed if call.media_started => {
                        // A call that worked may come back by ICE restart; the grace timer ends it if not.
                        call.disconnected_since.get_or_insert_with(Instant::now);
                    }
                    RTCIceConnectionState::Failed => {
                        self.end_call(EndReason::Failed("the network path failed (ICE)".into()), true).await;
                    }
                    _ => {}
                }
            }
            PeerEvent::Connection(RTCPeerConnectionState::Connected) => {
                if !call.media_started {
                    call.media_started = true;
                    if let Err(e) = self.start_media().await {
                        return self.end_call(EndReason::Failed(e), true).await;
                    }
                }
                if let Ok(next) = state::next(&state, Step::Connected) {
                    self.set_state(next);
                }
            }
            PeerEvent::Connection(RTCPeerConnectionState::Failed) => {
                self.end_call(EndReason::Failed("the connection failed".into()), true).await;
            }
            PeerEvent::Connection(_) => {}
            PeerEvent::Track(track) => {
                let sinks = self.sinks.clone();
                let counters = call.counters.clone();
                let stop = call.stop.subscribe();
                let want_keyframe = call.want_keyframe.clone();
                tokio::spawn(media::receive_track(track, sinks, counters, want_keyframe, stop));
            }
        }
    }

    async fn send_offer(&mut self) -> Result<(), String> {
        let call = self.call.as_ref().ok_or("no call")?;
        let pc = call.pc.clone().ok_or("no peer connection")?;
        let offer = pc.create_offer(None).await.map_err(|e| format!("could not make an offer: {e}"))?;
        let sdp = offer.sdp.clone();
        pc.set_local_description(offer).await.map_err(|e| format!("could not make an offer: {e}"))?;
        self.signaling.send(Message::VideoOffer {
            name: self.me().unwrap_or_default(),
            target: call.peer.clone(),
            sdp: SessionDescription { kind: "offer".into(), sdp },
        });
        Ok(())
    }

    /// A new offer with fresh ICE credentials over signaling: how a call survives a network change.
    async fn restart_ice(&mut self) -> Result<(), String> {
        let call = self.call.as_ref().ok_or("no call")?;
        let pc = call.pc.clone().ok_or("no peer connection")?;
        pc.restart_ice().await.map_err(|e| e.to_string())?;
        self.send_offer().await
    }

    async fn start_media(&mut self) -> Result<(), String> {
        let call = self.call.as_ref().ok_or("no call")?;
        let rt = tokio::runtime::Handle::current();
        if let Some((track, sender)) = &call.video {
            let target = track_target(track, sender).await?;
            media::start_video_sender(
                rt.clone(),
                target,
                (self.config.video_source)(),
                self.controls.clone(),
                call.counters.clone(),
                self.sinks.local_video.clone(),
                call.stop.subscribe(),
            )
            .map_err(|e| format!("could not start the video thread: {e}"))?;
        }
        if let Some((track, sender)) = &call.audio {
            let target = track_target(track, sender).await?;
            media::start_audio_sender(
                rt,
                target,
                (self.config.audio_source)(),
                self.controls.clone(),
                call.counters.clone(),
                call.stop.subscribe(),
            )
            .map_err(|e| format!("could not start the audio thread: {e}"))?;
        }
        Ok(())
    }

    // ----- timers -----

    async fn on_tick(&mut self, stats_due: bool) {
        let state = self.state();
        let Some(call) = self.call.as_mut() else { return };
        let grace = if call.peer_signaling_lost { Duration::ZERO } else { self.config.disconnected_grace };
        if call.disconnected_since.is_some_and(|t| t.elapsed() > grace) {
            return self.end_call(EndReason::Failed("the connection was lost".into()), true).await;
        }
        let restart_due = call.is_caller
            && call.disconnected_since.is_some_and(|t| t.elapsed() > self.config.ice_restart_after)
            && call.last_ice_restart.is_none_or(|t| t.elapsed() > self.config.ice_restart_after * 4);
        if restart_due {
            call.last_ice_restart = Some(Instant::now());
            call.ice_restarts += 1;
            let attempt = call.ice_restarts;
            self.emit(Event::Ice(format!("restarting (attempt {attempt})")));
            if let Err(e) = self.restart_ice().await {
                tracing::warn!(%e, "ICE restart failed; trying again later");
            }
            return;
        }
        let waiting = matches!(state, CallState::Calling { .. } | CallState::Ringing { .. });
        if waiting && call.started.elapsed() > self.config.ring_timeout {
            return self.end_call(EndReason::NoAnswer, true).await;
        }
        // MDN's protocol has no call ids: an answer to a call we already hung up can be taken for the
        // answer to the next one, and ICE then never connects. Whatever the cause, a call that cannot
        // connect ends in words rather than hanging.
        let connecting = matches!(state, CallState::Connecting { .. });
        if !connecting {
            call.connecting_since = None;
        } else if call.connecting_since.get_or_insert_with(Instant::now).elapsed()
            > self.config.connect_timeout
        {
            let why = format!("could not connect to {} (no network path found)", call.peer);
            return self.end_call(EndReason::Failed(why), true).await;
        }
        if stats_due && matches!(state, CallState::InCall { .. }) {
            let mut stats = call.meter.sample(&call.counters);
            if let Some(pc) = &call.pc {
                // The engine's one task must never wedge on a stats call; skip this second's if it's slow.
                let report = tokio::time::timeout(
                    Duration::from_millis(300),
                    pc.get_stats(Instant::now(), StatsSelector::None),
                )
                .await;
                let Ok(report) = report else {
                    tracing::warn!("the peer connection's stats took over 300 ms; skipped");
                    self.emit(Event::Stats(stats));
                    return;
                };
                for entry in report.iter() {
                    match entry {
                        RTCStatsReportEntry::Transport(transport) => {
                            // The pair ICE selected: its round trip, and whether it is direct or relayed.
                            let Some(RTCStatsReportEntry::IceCandidatePair(pair)) =
                                report.get(&transport.selected_candidate_pair_id)
                            else {
                                continue;
                            };
                            stats.rtt_ms = Some(pair.current_round_trip_time * 1000.0);
                            // webrtc 0.21 names the pair's candidate `candidate:X` but files the
                            // candidate's own stats under `RTCLocalIceCandidate_candidate:X`.
                            let id = &pair.local_candidate_id;
                            let local =
                                report.get(id).or_else(|| report.get(&format!("RTCLocalIceCandidate_{id}")));
                            if let Some(RTCStatsReportEntry::LocalCandidate(local)) = local {
                                stats.path = Some(local.candidate_type.to_string());
                            }
                        }
                        RTCStatsReportEntry::InboundRtp(inbound) => {
                            stats.packets_lost += inbound.received_rtp_stream_stats.packets_lost;
                        }
                        _ => {}
                    }
                }
            }
            self.emit(Event::Stats(stats));
        }
    }

    /// Ends the call, if any: tells the peer when `notify`, stops media, closes the connection.
    async fn end_call(&mut self, reason: EndReason, notify: bool) {
        let Some(call) = self.call.take() else { return };
        tracing::debug!(me = ?self.me(), peer = %call.peer, %reason, "call ends");
        if notify {
            let decline = reason == EndReason::WeDeclined;
            self.signaling.send(Message::HangUp {
                name: self.me().unwrap_or_default(),
                target: call.peer.clone(),
                reason: decline.then(|| protocol::HANGUP_REASON_DECLINED.to_owned()),
            });
        }
        call.stop.send_replace(true);
        if let Some(pc) = &call.pc {
            if tokio::time::timeout(Duration::from_secs(2), pc.close()).await.is_err() {
                tracing::warn!("closing the peer connection took over 2 s");
            }
        }
        drop(call.video);
        drop(call.audio);
        drop(call.pc);
        self.sinks.remote_video.send_replace(None);
        self.counters_tx.send_replace(None);
        release_freed_memory();
        self.set_state(CallState::Idle);
        self.emit(Event::CallEnded { peer: call.peer, reason });
    }
}

/// Hands memory freed by the ended call back to the OS. A call's codec buffers are freed on threads
/// that have exited; glibc keeps such memory cached in per-thread arenas, so without this the process
/// would grow by a few MB with each of the first calls even though nothing leaks.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap structures; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn to_init(candidate: &IceCandidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate.clone(),
        sdp_mid: candidate.sdp_mid.clone(),
        sdp_mline_index: candidate.sdp_m_line_index,
        username_fragment: candidate.username_fragment.clone(),
        ..Default::default()
    }
}

async fn track_target(
    track: &Arc<TrackLocalStaticSample>,
    sender: &Arc<dyn RtpSender>,
) -> Result<TrackTarget, String> {
    let ssrc = *track.ssrcs().await.first().ok_or("the track has no SSRC")?;
    let params = sender.get_parameters().await.map_err(|e| format!("no negotiated codec: {e}"))?;
    let payload_type = params
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .ok_or("the far side accepted no codec we send")?;
    Ok(TrackTarget { track: track.clone(), ssrc, payload_type })
}
