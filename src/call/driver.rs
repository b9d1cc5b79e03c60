//! The engine's one task: it feeds the [`CallMachine`] what arrives (commands, signaling, peer
//! connection events, its timeouts) and carries out the actions it asks for, with the real peer
//! connection, media threads and signaling client. It decides nothing about calls itself; its own
//! business is plumbing that holds no decision: chat (stamped with the wall clock), remote tracks
//! (handed to the receive pipelines) and the watches the [`Engine`](super::Engine) handle reads.

use super::config::EngineConfig;
use super::error::{CallError, EngineError};
use super::machine::{Action, CallId, CallMachine, Input, PeerInput};
use super::media::{self, CallMedia, MediaControls, Sinks, TrackTarget};
use super::negotiation::{self, Answered, Answering, VideoTrack};
use super::peer::{self, PeerEvent};
use super::state::CallState;
use super::stats::{add_transport_stats, Counters, StatsMeter};
use super::{Command, Event};
use crate::signaling::client::{self, SignalingHandle, SignalingTask};
use crate::signaling::protocol::{self, Message};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::Track;
use webrtc::peer_connection::{PeerConnection, RTCIceServer, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

/// How long leaving may wait for the hang-up and the WebSocket close to go out.
const SIGNALING_FLUSH: Duration = Duration::from_secs(2);
/// How long closing a peer connection may take before we stop waiting for it.
const PEER_CLOSE: Duration = Duration::from_secs(2);

/// What the handle reads: the latest of each, so a late subscriber still knows where things stand.
#[derive(Clone)]
pub(super) struct Watches {
    pub state: watch::Receiver<CallState>,
    pub users: watch::Receiver<Vec<String>>,
    pub name: watch::Receiver<Option<String>>,
    pub counters: watch::Receiver<Option<Arc<Counters>>>,
}

/// The driver's side of [`Watches`].
pub(super) struct Publish {
    state: watch::Sender<CallState>,
    users: watch::Sender<Vec<String>>,
    name: watch::Sender<Option<String>>,
    counters: watch::Sender<Option<Arc<Counters>>>,
}

pub(super) fn watches() -> (Watches, Publish) {
    let (state, state_rx) = watch::channel(CallState::Idle);
    let (users, users_rx) = watch::channel(Vec::new());
    let (name, name_rx) = watch::channel(None);
    let (counters, counters_rx) = watch::channel(None);
    let watches = Watches { state: state_rx, users: users_rx, name: name_rx, counters: counters_rx };
    (watches, Publish { state, users, name, counters })
}

/// What one call holds while its peer connection exists.
struct CallResources {
    id: CallId,
    pc: Arc<dyn PeerConnection>,
    /// Made with the offer (caller) or once the offer is read (callee); `None` in an audio-only call.
    video: Option<VideoTrack>,
    audio: (Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>),
    /// Groups the call's audio and video into one stream (MDN's page shows `streams[0]`).
    stream_id: String,
    stop: watch::Sender<bool>,
    controls: Arc<MediaControls>,
    counters: Arc<Counters>,
    meter: StatsMeter,
}

impl CallResources {
    fn media(&self) -> CallMedia {
        CallMedia {
            call: self.id,
            controls: self.controls.clone(),
            counters: self.counters.clone(),
            stop: self.stop.subscribe(),
        }
    }
}

pub(super) struct Driver {
    config: EngineConfig,
    machine: CallMachine,
    events: broadcast::Sender<Event>,
    sinks: Sinks,
    publish: Publish,
    signaling: SignalingHandle,
    signaling_task: SignalingTask,
    signaling_rx: mpsc::UnboundedReceiver<client::SignalingEvent>,
    peer_tx: mpsc::UnboundedSender<(CallId, PeerEvent)>,
    peer_rx: mpsc::UnboundedReceiver<(CallId, PeerEvent)>,
    call: Option<CallResources>,
    /// Peer connections of ended calls still saying goodbye (DTLS close, SCTP abort): the call is
    /// over for the user at once, and shutting down waits for these to finish.
    closing: JoinSet<()>,
    /// STUN/TURN servers the signaling server handed us (with fresh TURN credentials).
    server_ice_servers: Vec<RTCIceServer>,
    /// The user's switches, for calls that start later.
    audio_muted: bool,
    video_off: bool,
}

impl Driver {
    pub fn new(
        config: EngineConfig,
        events: broadcast::Sender<Event>,
        sinks: Sinks,
        publish: Publish,
    ) -> Self {
        let (signaling, signaling_rx, signaling_task) =
            client::spawn(config.server_url.clone(), config.name.clone(), config.trusted_cert.clone());
        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        Self {
            machine: CallMachine::new(config.machine()),
            config,
            events,
            sinks,
            publish,
            signaling,
            signaling_task,
            signaling_rx,
            peer_tx,
            peer_rx,
            call: None,
            closing: JoinSet::new(),
            server_ice_servers: Vec::new(),
            audio_muted: false,
            video_off: false,
        }
    }

    /// Runs until told to shut down or until every handle is gone; then ends any call, tells the
    /// server, and returns once the signaling client has flushed and closed.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.carry_out().await;
            let deadline = self.machine.poll_timeout();
            let timeout = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::Chat(text)) => {
                        self.chat(text);
                        continue;
                    }
                    Some(command) => Input::Command(command),
                },
                Some(event) = self.signaling_rx.recv() => Input::Signaling(event),
                Some((call, event)) = self.peer_rx.recv() => match self.peer_input(call, event) {
                    Some(event) => Input::Peer { call, event },
                    None => continue,
                },
                () = timeout => Input::Timeout,
            };
            self.machine.handle(input, Instant::now());
        }
        self.machine.handle(Input::Command(Command::Shutdown), Instant::now());
        self.carry_out().await;
        // Dropping the last sender lets the client send what is queued (the hang-up), close the
        // socket and end: that is what a caller of `Engine::shutdown` waits for, together with
        // the peer connections still closing (each bounded by PEER_CLOSE).
        drop(self.signaling);
        let mut closing = std::mem::take(&mut self.closing);
        let peers_closed = async { while closing.join_next().await.is_some() {} };
        let flushed = tokio::time::timeout(SIGNALING_FLUSH, self.signaling_task.finished());
        if tokio::join!(flushed, peers_closed).0.is_err() {
            tracing::warn!("the signaling client did not finish within {SIGNALING_FLUSH:?}");
        }
    }

    fn chat(&self, text: String) {
        let name = self.machine.me().map(str::to_owned);
        self.signaling.send(Message::Chat { name, text, id: None, date: Some(protocol::now_ms()) });
    }

    /// The machine's view of a peer connection event; remote tracks are handled here.
    fn peer_input(&self, call: CallId, event: PeerEvent) -> Option<PeerInput> {
        tracing::debug!(me = ?self.machine.me(), call, event = event.name(), "peer event");
        match event {
            PeerEvent::LocalCandidate(init) => Some(PeerInput::LocalCandidate(init.into())),
            PeerEvent::Ice(state) => Some(PeerInput::Ice(state)),
            PeerEvent::Connection(state) => Some(PeerInput::Connection(state)),
            // The caller's offer is made as soon as its tracks are added (see the machine's dial).
            PeerEvent::NegotiationNeeded => None,
            PeerEvent::Track(track) => {
                let resources = self.call.as_ref().filter(|c| c.id == call)?;
                tokio::spawn(media::receive_track(track, self.sinks.clone(), resources.media()));
                None
            }
        }
    }

    /// Carries out every action the machine has queued, feeding back what each one produced.
    async fn carry_out(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            if let Some(input) = self.perform(action).await {
                self.machine.handle(input, Instant::now());
            }
        }
    }

    async fn perform(&mut self, action: Action) -> Option<Input> {
        let outcome = match action {
            Action::Signal(message) => {
                tracing::debug!(me = ?self.machine.me(), ?message, "signaling out");
                self.signaling.send(message);
                return None;
            }
            Action::Emit(event) => {
                self.emit(event);
                return None;
            }
            Action::OpenPeer { call } => (call, self.open_peer(call).await.map(|()| None)),
            Action::MakeOffer { call, ice_restart, first } => {
                let made = self
                    .make_offer(call, ice_restart, first)
                    .await
                    .map(|sdp| Some(PeerInput::LocalOffer(sdp)));
                match made {
                    Err(CallError::Offer(why)) if ice_restart => {
                        (call, Ok(Some(PeerInput::RestartFailed(why))))
                    }
                    made => (call, made),
                }
            }
            Action::ApplyOffer { call, sdp, first } => {
                (call, self.apply_offer(call, sdp, first).await.map(|sdp| Some(PeerInput::LocalAnswer(sdp))))
            }
            Action::ApplyAnswer { call, sdp, first } => (call, self.apply_answer(call, sdp, first).await),
            Action::AddCandidate { call, candidate } => {
                if let Some(pc) = self.pc(call) {
                    if let Err(e) = pc.add_ice_candidate((&candidate).into()).await {
                        tracing::debug!(%e, candidate = %candidate.candidate, "a remote candidate was refused");
                    }
                }
                return None;
            }
            Action::StartMedia { call } => (call, self.start_media(call).await.map(|()| None)),
            Action::ClosePeer { call } => {
                self.close_peer(call);
                return None;
            }
            Action::RequestKeyframe { call } => {
                if let Some(resources) = self.call.as_ref().filter(|c| c.id == call) {
                    resources.controls.keyframe_wanted.store(true, Ordering::Relaxed);
                }
                return None;
            }
            Action::SampleStats { call } => {
                self.sample_stats(call).await;
                return None;
            }
            Action::SetAudioMuted(muted) => {
                self.audio_muted = muted;
                if let Some(resources) = &self.call {
                    resources.controls.audio_muted.store(muted, Ordering::Relaxed);
                }
                return None;
            }
            Action::SetVideoOff(off) => {
                self.video_off = off;
                if let Some(resources) = &self.call {
                    resources.controls.video_off.store(off, Ordering::Relaxed);
                }
                return None;
            }
            Action::UseVideoCodec(preference) => {
                self.config.video_codec = preference;
                return None;
            }
            Action::UseIceServers(servers) => {
                // Used from the next call on; TURN credentials from the server are short-lived and
                // arrive again with every login.
                self.server_ice_servers = servers.into_iter().map(RTCIceServer::from).collect();
                return None;
            }
        };
        match outcome {
            (_, Ok(None)) => None,
            (call, Ok(Some(event))) => Some(Input::Peer { call, event }),
            (call, Err(error)) => Some(Input::Peer { call, event: PeerInput::Failed(error) }),
        }
    }

    /// Tells the users, and keeps the handle's watches in step with what was said.
    fn emit(&self, event: Event) {
        match &event {
            Event::CallState(state) => {
                tracing::debug!(me = ?self.machine.me(), %state, "call state");
                self.publish.state.send_replace(state.clone());
            }
            Event::UserList(users) => {
                self.publish.users.send_replace(users.clone());
            }
            Event::Registered { name } => {
                self.publish.name.send_replace(Some(name.clone()));
            }
            _ => {}
        }
        // No listener is not an error: a headless bot may not care.
        let _ = self.events.send(event);
    }

    fn pc(&self, call: CallId) -> Option<Arc<dyn PeerConnection>> {
        self.call.as_ref().filter(|c| c.id == call).map(|c| c.pc.clone())
    }

    /// The call's peer connection, or why there is none (it failed to build: already reported).
    fn pc_for(
        &self,
        call: CallId,
        fail: fn(String) -> CallError,
    ) -> Result<Arc<dyn PeerConnection>, CallError> {
        self.pc(call).ok_or_else(|| fail("no peer connection".to_owned()))
    }

    async fn open_peer(&mut self, call: CallId) -> Result<(), CallError> {
        let mut settings = self.config.peer.clone();
        settings.ice_servers.extend(self.server_ice_servers.iter().cloned());
        let controls = Arc::new(MediaControls::default());
        controls.audio_muted.store(self.audio_muted, Ordering::Relaxed);
        controls.video_off.store(self.video_off, Ordering::Relaxed);
        let setup = |e: webrtc::error::Error| CallError::Setup(e.to_string());
        let pc = peer::build(
            &settings,
            call,
            self.peer_tx.clone(),
            Arc::clone(&controls.congestion),
            Arc::clone(&controls.recovery),
        )
        .await
        .map_err(setup)?;
        let stream_id = peer::new_stream_id();
        let audio = peer::local_track(RtpCodecKind::Audio, peer::opus_codec(), &stream_id).map_err(setup)?;
        let audio_sender = pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await.map_err(setup)?;
        let counters = Arc::new(Counters::default());
        self.publish.counters.send_replace(Some(counters.clone()));
        self.sinks.begin_call(call);
        self.call = Some(CallResources {
            id: call,
            pc,
            video: None,
            audio: (audio, audio_sender),
            stream_id,
            stop: watch::channel(false).0,
            controls,
            counters,
            meter: StatsMeter::default(),
        });
        Ok(())
    }

    async fn make_offer(
        &mut self,
        call: CallId,
        ice_restart: bool,
        first: bool,
    ) -> Result<String, CallError> {
        let pc = self.pc_for(call, CallError::Offer)?;
        let offer_error = |e: webrtc::error::Error| CallError::Offer(e.to_string());
        // Our track goes with the call's first offer; later offers keep what that settled.
        if let Some(resources) = self.call.as_mut().filter(|_| first) {
            let video =
                negotiation::add_offered_video(pc.as_ref(), self.config.video_codec, &resources.stream_id);
            resources.video = Some(video.await?);
        }
        if ice_restart {
            pc.restart_ice().await.map_err(offer_error)?;
        }
        let offer = pc.create_offer(None).await.map_err(offer_error)?;
        let sdp = offer.sdp.clone();
        pc.set_local_description(offer).await.map_err(offer_error)?;
        Ok(sdp)
    }

    async fn apply_offer(&mut self, call: CallId, sdp: String, first: bool) -> Result<String, CallError> {
        let pc = self.pc_for(call, CallError::Answer)?;
        let refused = |e: webrtc::error::Error| CallError::OfferRefused(e.to_string());
        // The first offer of a call settles our video; later ones (ICE restarts) change nothing of it.
        let answering = first.then(|| negotiation::answering(&sdp, self.config.video_codec));
        let offer = RTCSessionDescription::offer(sdp).map_err(refused)?;
        pc.set_remote_description(offer).await.map_err(refused)?;
        if let (Some(resources), Some(answering)) = (self.call.as_mut(), answering) {
            // Our track only now, in the codec the offer leads with: see `negotiation`.
            match answering {
                Answering::With(codec) => {
                    let video = negotiation::add_video(pc.as_ref(), codec, &resources.stream_id);
                    resources.video = Some(video.await?);
                }
                Answering::AudioOnly => {}
                Answering::NothingInCommon(none) => {
                    self.emit(Event::Error(EngineError::NoCommonVideoCodec(none)))
                }
            }
        }
        let answer_error = |e: webrtc::error::Error| CallError::Answer(e.to_string());
        let answer = pc.create_answer(None).await.map_err(answer_error)?;
        let sdp = answer.sdp.clone();
        pc.set_local_description(answer).await.map_err(answer_error)?;
        Ok(sdp)
    }

    /// Applies the answer; asks for one more round if it left out our track's codec.
    async fn apply_answer(
        &mut self,
        call: CallId,
        sdp: String,
        first: bool,
    ) -> Result<Option<PeerInput>, CallError> {
        let pc = self.pc_for(call, CallError::AnswerRefused)?;
        let refused = |e: webrtc::error::Error| CallError::AnswerRefused(e.to_string());
        // Only the call's first answer decides our video (see `make_offer`).
        let ours = self.call.as_ref().and_then(|c| c.video.as_ref()).filter(|_| first);
        let verdict = ours.map(|v| negotiation::answered(&sdp, v.codec));
        let answer = RTCSessionDescription::answer(sdp).map_err(refused)?;
        pc.set_remote_description(answer).await.map_err(refused)?;
        let Some(resources) = self.call.as_mut() else { return Ok(None) };
        match verdict {
            None | Some(Answered::Agreed) => Ok(None),
            Some(Answered::Switch(codec)) => {
                tracing::info!(%codec, "the answer takes another video codec than our track's; switching");
                if let Some(old) = resources.video.take() {
                    pc.remove_track(&old.sender).await.map_err(|e| CallError::Setup(e.to_string()))?;
                }
                let video = negotiation::add_video(pc.as_ref(), codec, &resources.stream_id);
                resources.video = Some(video.await?);
                Ok(Some(PeerInput::RenegotiationNeeded))
            }
            Some(Answered::Refused) => {
                resources.video = None;
                self.emit(Event::Error(EngineError::VideoDeclined));
                Ok(None)
            }
        }
    }

    async fn start_media(&self, call: CallId) -> Result<(), CallError> {
        let resources = self.call.as_ref().filter(|c| c.id == call);
        let resources = resources.ok_or_else(|| CallError::Media("no peer connection".to_owned()))?;
        let rt = tokio::runtime::Handle::current();
        let thread_error =
            |e: std::io::Error| CallError::Media(format!("could not start a media thread: {e}"));
        if let Some(video) = &resources.video {
            let payload_type = negotiation::payload_type_for(video.sender.as_ref(), video.codec).await?;
            let target =
                TrackTarget { track: video.track.clone(), ssrc: ssrc_of(&video.track).await?, payload_type };
            let source = (self.config.video_source)();
            let preview = self.sinks.local_video.clone();
            media::start_video_sender(rt.clone(), target, video.codec, source, resources.media(), preview)
                .map_err(thread_error)?;
        }
        let (audio, audio_sender) = &resources.audio;
        let target = track_target(audio, audio_sender).await?;
        let source = (self.config.audio_source)();
        media::start_audio_sender(rt, target, source, resources.media()).map_err(thread_error)
    }

    async fn sample_stats(&mut self, call: CallId) {
        let Some(resources) = self.call.as_mut().filter(|c| c.id == call) else { return };
        let mut stats = resources.meter.sample(&resources.counters, &resources.controls);
        add_transport_stats(resources.pc.as_ref(), &mut stats).await;
        self.emit(Event::Stats(Box::new(stats)));
    }

    /// Stops the call's media and closes its connection; the picture and counters go with it.
    /// The close itself runs on its own: webrtc-rs's `close` can take a second or more (its DTLS and
    /// SCTP goodbyes, its tasks), and the user must see the call end the moment it ends — the Idle
    /// state is emitted after this action (a browser's hang-up reached Idle after 140-155 ms on an
    /// idle machine while this waited, and once after 1.09 s under a full `make test`).
    fn close_peer(&mut self, call: CallId) {
        let Some(resources) = self.call.take_if(|c| c.id == call) else { return };
        resources.stop.send_replace(true);
        self.sinks.end_call();
        self.publish.counters.send_replace(None);
        while self.closing.try_join_next().is_some() {} // reap the ones already done
        self.closing.spawn(async move {
            if tokio::time::timeout(PEER_CLOSE, resources.pc.close()).await.is_err() {
                tracing::warn!("closing the peer connection took over {PEER_CLOSE:?}");
            }
            drop(resources);
            release_freed_memory();
        });
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

async fn ssrc_of(track: &TrackLocalStaticSample) -> Result<u32, CallError> {
    track.ssrcs().await.first().copied().ok_or_else(|| CallError::Media("the track has no SSRC".into()))
}

/// Where the audio sender writes: the track's SSRC and the payload type negotiated for Opus.
async fn track_target(
    track: &Arc<TrackLocalStaticSample>,
    sender: &Arc<dyn RtpSender>,
) -> Result<TrackTarget, CallError> {
    let ssrc = ssrc_of(track).await?;
    let params =
        sender.get_parameters().await.map_err(|e| CallError::Media(format!("no negotiated codec: {e}")))?;
    let payload_type = params
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .ok_or_else(|| CallError::Media("the far side accepted no codec we send".into()))?;
    Ok(TrackTarget { track: track.clone(), ssrc, payload_type })
}
