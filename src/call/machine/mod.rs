//! The whole life of a call as a state machine that does no I/O and never reads the clock, in the
//! style of quinn-proto and str0m: the driver feeds it [`Input`]s with `now` ([`CallMachine::handle`]),
//! carries out the [`Action`]s it asks for ([`CallMachine::poll_action`]), and sleeps until
//! [`CallMachine::poll_timeout`]. Role, SDP phase, queued candidates, timers and restart counts live
//! here, once; the tests walk whole calls step by step with a made-up clock.
//!
//! The driver carries out actions in order, awaiting each, and reports what the peer connection
//! made of them as [`PeerInput`]s. So once [`Action::ApplyOffer`] or [`Action::ApplyAnswer`] is
//! queued, candidates queued after it reach a connection that has the remote description.

mod action;
mod call;
mod input;
#[cfg(test)]
mod tests;

pub use self::action::Action;
use self::call::{Call, Phase, Role, Sdp};
pub use self::input::{Input, PeerInput};
use super::error::{CallError, EngineError};
use super::state::CallState;
use super::{Command, EndReason, Event};
use crate::signaling::client::SignalingEvent;
use crate::signaling::protocol::{self, IceCandidate, Message, SessionDescription};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use webrtc::peer_connection::{RTCIceConnectionState, RTCPeerConnectionState};

/// Tells one call's peer connection and media apart from the next call's.
pub type CallId = u64;

/// The machine's settings: who we are and how patient to be.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// The name we ask the server for (it may hand back a variant).
    pub name: String,
    /// Accept incoming calls without asking.
    pub auto_answer: bool,
    /// How long an unanswered call rings before it is given up.
    pub ring_timeout: Duration,
    /// How long offer/answer may stay without a working connection before the call is given up.
    pub connect_timeout: Duration,
    /// How long ICE may stay `disconnected` (while the caller restarts it) before the call is given up.
    pub disconnected_grace: Duration,
    /// How long ICE stays `disconnected` before the caller restarts it; later restarts come
    /// [`RESTART_SPACING`] times this apart.
    pub ice_restart_after: Duration,
    /// How often a call in progress reports its statistics.
    pub stats_interval: Duration,
}

/// Later ICE restarts of one outage come this many `ice_restart_after`s apart: each needs an offer
/// and an answer over signaling, then fresh checks, which take a few round trips on a bad path.
pub const RESTART_SPACING: u32 = 4;

/// Candidates from a peer we have no call with yet (they may overtake their offer): at most this
/// many per peer and this many peers, so a stranger cannot fill our memory.
const EARLY_CANDIDATES_PER_PEER: usize = 64;
const EARLY_CANDIDATE_PEERS: usize = 16;

/// The engine's call logic: one call slot, the room's users, and what arrives early.
#[derive(Debug)]
pub struct CallMachine {
    config: MachineConfig,
    /// The name the server registered for us.
    me: Option<String>,
    users: Vec<String>,
    call: Option<Call>,
    early_candidates: HashMap<String, Vec<IceCandidate>>,
    next_call_id: CallId,
    actions: VecDeque<Action>,
}

impl CallMachine {
    /// A machine with no call, not yet registered.
    pub fn new(config: MachineConfig) -> Self {
        Self {
            config,
            me: None,
            users: Vec::new(),
            call: None,
            early_candidates: HashMap::new(),
            next_call_id: 1,
            actions: VecDeque::new(),
        }
    }

    /// The call slot now.
    pub fn state(&self) -> CallState {
        self.call.as_ref().map_or(CallState::Idle, Call::state)
    }

    /// The name the server registered for us, once it has.
    pub fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// The current call's id, if there is a call.
    pub fn call_id(&self) -> Option<CallId> {
        self.call.as_ref().map(|c| c.id)
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to feed [`Input::Timeout`] next, if anything is waiting on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let call = self.call.as_ref()?;
        let grace = self.grace(call);
        [
            call.ring_deadline(self.config.ring_timeout),
            call.connect_deadline(self.config.connect_timeout),
            call.disconnected_since.map(|t| t + grace),
            call.restart_due(self.config.ice_restart_after),
            call.next_stats,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Command(command) => self.on_command(command, now),
            Input::Signaling(event) => self.on_signaling(event, now),
            Input::Peer { call, event } => self.on_peer(call, event, now),
            Input::Timeout => self.on_timeout(now),
        }
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn emit(&mut self, event: Event) {
        self.push(Action::Emit(event));
    }

    fn error(&mut self, error: EngineError) {
        self.emit(Event::Error(error));
    }

    fn me_or_empty(&self) -> String {
        self.me.clone().unwrap_or_default()
    }

    /// Emits the call slot when it moved: `before` is the state before the step.
    fn state_moved(&mut self, before: &CallState) {
        let now = self.state();
        if now != *before {
            self.emit(Event::CallState(now));
        }
    }

    /// A peer whose signaling dropped while media flowed gets no further grace on an ICE outage:
    /// its hang-up can no longer reach us, so ICE is the only sign that it is gone.
    fn grace(&self, call: &Call) -> Duration {
        if call.peer_signaling_lost {
            Duration::ZERO
        } else {
            self.config.disconnected_grace
        }
    }

    // ----- commands -----

    fn on_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Call(target) => self.dial(target, now),
            Command::Accept => self.accept(now),
            Command::Decline => {
                if matches!(self.call.as_ref().map(|c| &c.phase), Some(Phase::Ringing { .. })) {
                    self.end(EndReason::WeDeclined, true);
                }
            }
            Command::HangUp | Command::Shutdown => self.end(EndReason::HungUp, true),
            Command::SetAudioMuted(muted) => {
                self.push(Action::SetAudioMuted(muted));
            }
            Command::SetVideoOff(off) => {
                self.push(Action::SetVideoOff(off));
            }
            Command::SetAutoAnswer(on) => {
                self.config.auto_answer = on;
                // Whoever turned it on means the call that is ringing now too: the window stops
                // showing the prompt, so leaving it to ring unseen would be worse.
                if on && matches!(self.state(), CallState::Ringing { .. }) {
                    self.accept(now);
                }
            }
            Command::SetVideoCodec(preference) => self.push(Action::UseVideoCodec(preference)),
            Command::RequestKeyframe => {
                if let Some(call) = self.call_id() {
                    self.push(Action::RequestKeyframe { call });
                }
            }
            // The driver's own business: they decide nothing about the call.
            Command::Chat(_) => {}
        }
    }

    fn dial(&mut self, target: String, now: Instant) {
        let Some(me) = self.me.clone() else { return self.error(EngineError::NotConnected) };
        if target == me {
            return self.error(EngineError::CallingYourself);
        }
        if !self.users.contains(&target) {
            return self.error(EngineError::NotOnline(target));
        }
        if !self.state().is_idle() {
            return self.error(EngineError::Busy(self.state()));
        }
        let mut call = self.new_call(target, Role::Caller, Phase::Calling, now);
        call.peer_open = true;
        let id = call.id;
        self.call = Some(call);
        self.emit(Event::CallState(self.state()));
        // MDN's page makes the offer in `onnegotiationneeded`. webrtc 0.21 queues that event inside
        // its driver and delivers it late, so the offer is made as soon as the tracks are added.
        self.push(Action::OpenPeer { call: id });
        self.push(Action::MakeOffer { call: id, ice_restart: false, first: true });
    }

    fn accept(&mut self, now: Instant) {
        let before = self.state();
        let Some(call) = self.call.as_mut() else { return };
        let Phase::Ringing { offer } = &call.phase else { return };
        let sdp = offer.sdp.clone();
        call.phase = Phase::Connecting { since: now };
        call.peer_open = true;
        let id = call.id;
        self.push(Action::OpenPeer { call: id });
        self.apply_remote(Action::ApplyOffer { call: id, sdp, first: true });
        self.state_moved(&before);
    }

    /// Applies the far side's description and then every candidate that waited for it.
    fn apply_remote(&mut self, action: Action) {
        self.push(action);
        let Some(call) = self.call.as_mut() else { return };
        call.remote_description = true;
        let id = call.id;
        for candidate in std::mem::take(&mut call.queued_candidates) {
            self.actions.push_back(Action::AddCandidate { call: id, candidate });
        }
    }

    fn new_call(&mut self, peer: String, role: Role, phase: Phase, now: Instant) -> Call {
        let id = self.next_call_id;
        self.next_call_id += 1;
        let queued = self.early_candidates.remove(&peer).unwrap_or_default();
        Call::new(id, peer, role, phase, queued, now)
    }

    /// Ends the call, if any: tells the peer when `notify`, closes the connection, tells the users.
    fn end(&mut self, reason: EndReason, notify: bool) {
        let Some(call) = self.call.take() else { return };
        if notify {
            let declined = reason == EndReason::WeDeclined;
            self.push(Action::Signal(Message::HangUp {
                name: self.me_or_empty(),
                target: call.peer.clone(),
                reason: declined.then(|| protocol::HANGUP_REASON_DECLINED.to_owned()),
            }));
        }
        if call.peer_open {
            self.push(Action::ClosePeer { call: call.id });
        }
        self.emit(Event::CallState(CallState::Idle));
        self.emit(Event::CallEnded { peer: call.peer, reason });
    }

    fn fail(&mut self, error: CallError) {
        self.end(EndReason::Failed(error), true);
    }

    // ----- signaling -----

    fn on_signaling(&mut self, event: SignalingEvent, now: Instant) {
        match event {
            SignalingEvent::Connected { id } => {
                self.emit(Event::SignalingConnected { id });
                // The server keeps our name unless it answers `rejectusername` with another.
                self.me = Some(self.config.name.clone());
                self.emit(Event::Registered { name: self.config.name.clone() });
            }
            SignalingEvent::Disconnected { reason, retry_in } => {
                self.emit(Event::SignalingLost { reason, retry_in });
                // Without the server we don't know who is online; an old list would invite calls
                // that can't be placed. The server sends a fresh one after the next login.
                if !self.users.is_empty() {
                    self.users.clear();
                    self.emit(Event::UserList(Vec::new()));
                }
            }
            SignalingEvent::Message(message) => self.on_message(message, now),
        }
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        match message {
            Message::RejectUsername { name, .. } => {
                self.me = Some(name.clone());
                self.emit(Event::Registered { name });
            }
            Message::UserList { users } => {
                self.users = users.into_iter().flatten().collect();
                if let Some(call) = self.call.as_mut().filter(|c| self.users.contains(&c.peer)) {
                    // The peer is back on the server: its hang-up would reach us again, so a later
                    // ICE outage gets the usual grace (and a restart) rather than none.
                    call.peer_signaling_lost = false;
                }
                self.emit(Event::UserList(self.users.clone()));
            }
            Message::Chat { name, text, .. } => {
                self.emit(Event::Chat { from: name.unwrap_or_default(), text });
            }
            Message::VideoOffer { name, sdp, .. } => self.on_offer(name, sdp, now),
            Message::VideoAnswer { name, sdp, .. } => self.on_answer(name, sdp, now),
            Message::NewIceCandidate { name, candidate, .. } => self.on_candidate(name, candidate),
            Message::HangUp { name, reason, .. } => self.on_hang_up(name, reason),
            Message::Error { reason, text } => {
                let calling =
                    matches!(self.state(), CallState::Calling { .. } | CallState::Connecting { .. });
                if reason == protocol::reason::UNKNOWN_TARGET && calling {
                    self.end(EndReason::NotOnline, false);
                } else {
                    self.error(EngineError::Server(text.unwrap_or(reason)));
                }
            }
            Message::Full { room } => self.error(EngineError::RoomFull(room)),
            Message::IceServers { ice_servers } => self.push(Action::UseIceServers(ice_servers)),
            Message::Id { .. } | Message::Username { .. } => {}
        }
    }

    fn on_offer(&mut self, from: String, offer: SessionDescription, now: Instant) {
        let me = self.me_or_empty();
        match self.call.as_mut() {
            None => {
                let call = self.new_call(from.clone(), Role::Callee, Phase::Ringing { offer }, now);
                self.call = Some(call);
                self.emit(Event::CallState(self.state()));
                self.emit(Event::IncomingCall { from });
                if self.config.auto_answer {
                    self.accept(now);
                }
            }
            Some(call) if call.peer != from => {
                // One call at a time: tell the caller we're busy rather than leave it ringing.
                let busy = Some(protocol::HANGUP_REASON_BUSY.to_owned());
                self.push(Action::Signal(Message::HangUp { name: me, target: from, reason: busy }));
            }
            // The caller sent its offer again: the newer one is the one to answer.
            Some(Call { phase: Phase::Ringing { offer: kept }, .. }) => *kept = offer,
            Some(call) if call.phase == Phase::Calling => {
                // Glare: we called each other at once. Both sides decide alike by name, so exactly
                // one call survives: the polite side (the smaller name) drops its own offer, without
                // a hang-up, and answers the other's at once (its user asked for this very call).
                // The other side ignores the offer it was sent and waits for its answer.
                if me < from {
                    let (old, queued) = (call.id, std::mem::take(&mut call.queued_candidates));
                    self.call = None;
                    self.push(Action::ClosePeer { call: old });
                    let mut call = self.new_call(from, Role::Callee, Phase::Ringing { offer }, now);
                    // The caller's candidates so far belong to the offer we now answer.
                    call.queued_candidates.extend(queued);
                    self.call = Some(call);
                    self.accept(now);
                }
            }
            Some(call) => {
                // Renegotiation or an ICE restart from our peer: answer on the same connection.
                if call.sdp == Sdp::LocalOffer {
                    // Our own restart offer is out; its answer settles the connection first.
                    return;
                }
                let id = call.id;
                call.sdp = Sdp::RemoteOffer;
                self.apply_remote(Action::ApplyOffer { call: id, sdp: offer.sdp, first: false });
            }
        }
    }

    fn on_answer(&mut self, from: String, answer: SessionDescription, now: Instant) {
        let before = self.state();
        let Some(call) = self.call.as_mut().filter(|c| c.peer == from && c.sdp == Sdp::LocalOffer) else {
            tracing::debug!(%from, "ignoring an answer we did not ask for");
            return;
        };
        call.sdp = Sdp::Stable;
        // The first answer: the caller connects from here (the path cannot be up before it, as ICE
        // needs the answer's credentials). Later ones answer our ICE restarts and renegotiations.
        let first = call.phase == Phase::Calling;
        if first {
            call.phase = Phase::Connecting { since: now };
        }
        let id = call.id;
        self.apply_remote(Action::ApplyAnswer { call: id, sdp: answer.sdp, first });
        self.state_moved(&before);
    }

    fn on_candidate(&mut self, from: Option<String>, candidate: IceCandidate) {
        // MDN's server relays candidates without a name: then they are from whoever we're in a call with.
        let Some(from) = from.or_else(|| self.call.as_ref().map(|c| c.peer.clone())) else { return };
        if candidate.candidate.is_empty() {
            return; // end-of-candidates: nothing to add
        }
        match self.call.as_mut() {
            Some(call) if call.peer == from => {
                if call.remote_description {
                    let id = call.id;
                    self.push(Action::AddCandidate { call: id, candidate });
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

    fn on_hang_up(&mut self, from: String, reason: Option<String>) {
        self.early_candidates.remove(&from);
        let Some(call) = self.call.as_mut().filter(|c| c.peer == from) else { return };
        let reason = match reason.as_deref() {
            Some(protocol::HANGUP_REASON_BUSY) => EndReason::Busy,
            Some(protocol::HANGUP_REASON_DECLINED) => EndReason::Declined,
            Some(protocol::HANGUP_REASON_DISCONNECTED) => EndReason::PeerDisconnected,
            _ => EndReason::RemoteHungUp,
        };
        if reason == EndReason::PeerDisconnected && call.media_started && call.disconnected_since.is_none() {
            // The server lost the peer's signaling socket, but media is peer to peer and still
            // flows: the peer may just be reconnecting to the server. Keep the call; if the peer
            // is really gone, ICE notices within seconds and the call ends without further grace.
            call.peer_signaling_lost = true;
            tracing::info!(peer = %from, "the peer's signaling dropped; the call goes on while media flows");
            return;
        }
        self.end(reason, false);
    }

    // ----- the peer connection -----

    fn on_peer(&mut self, id: CallId, event: PeerInput, now: Instant) {
        let me = self.me_or_empty();
        let before = self.state();
        let Some(call) = self.call.as_mut().filter(|c| c.id == id) else {
            return; // from a call that has ended
        };
        match event {
            PeerInput::LocalOffer(sdp) => {
                call.sdp = Sdp::LocalOffer;
                let sdp = SessionDescription { kind: "offer".into(), sdp };
                let offer = Message::VideoOffer { name: me, target: call.peer.clone(), sdp };
                self.push(Action::Signal(offer));
            }
            PeerInput::LocalAnswer(sdp) => {
                call.sdp = Sdp::Stable;
                let sdp = SessionDescription { kind: "answer".into(), sdp };
                let answer = Message::VideoAnswer { name: me, target: call.peer.clone(), sdp };
                self.push(Action::Signal(answer));
            }
            PeerInput::LocalCandidate(candidate) => {
                let target = call.peer.clone();
                self.push(Action::Signal(Message::NewIceCandidate { name: Some(me), target, candidate }));
            }
            PeerInput::Ice(ice) => {
                self.emit(Event::Ice(ice.to_string()));
                let Some(call) = self.call.as_mut() else { return };
                match ice {
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed => {
                        call.disconnected_since = None;
                        call.last_ice_restart = None;
                        call.path_found.get_or_insert(now);
                    }
                    RTCIceConnectionState::Disconnected => {
                        call.disconnected_since.get_or_insert(now);
                    }
                    // A call that worked may come back by ICE restart; the grace timer ends it if not.
                    RTCIceConnectionState::Failed if call.media_started => {
                        call.disconnected_since.get_or_insert(now);
                    }
                    RTCIceConnectionState::Failed => self.fail(CallError::IceFailed),
                    _ => {}
                }
            }
            PeerInput::Connection(RTCPeerConnectionState::Connected) => {
                if !call.media_started {
                    call.media_started = true;
                    self.actions.push_back(Action::StartMedia { call: id });
                }
                if let Phase::Connecting { .. } = call.phase {
                    call.phase = Phase::InCall;
                    call.next_stats = Some(now + self.config.stats_interval);
                }
                self.state_moved(&before);
            }
            PeerInput::Connection(RTCPeerConnectionState::Failed) => self.fail(CallError::ConnectionFailed),
            PeerInput::Connection(_) => {}
            PeerInput::RenegotiationNeeded => {
                if call.sdp == Sdp::Stable {
                    self.actions.push_back(Action::MakeOffer { call: id, ice_restart: false, first: false });
                } else {
                    tracing::warn!("renegotiation wanted while an offer is out; it waits for the next one");
                }
            }
            PeerInput::RestartFailed(why) => {
                tracing::warn!(%why, "ICE restart failed; trying again later");
            }
            PeerInput::Failed(error) => {
                // Before our offer went out the callee knows nothing of the call: nothing to hang up.
                let told =
                    !(call.role == Role::Caller && call.phase == Phase::Calling && call.sdp == Sdp::Stable);
                self.end(EndReason::Failed(error), told);
            }
        }
    }

    // ----- timers -----

    fn on_timeout(&mut self, now: Instant) {
        let Some(call) = self.call.as_ref() else { return };
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|t| now >= t);
        if passed(call.disconnected_since.map(|t| t + self.grace(call))) {
            return self.fail(CallError::ConnectionLost);
        }
        if passed(call.restart_due(self.config.ice_restart_after)) {
            let Some(call) = self.call.as_mut() else { return };
            call.last_ice_restart = Some(now);
            call.ice_restarts += 1;
            let (id, attempt) = (call.id, call.ice_restarts);
            self.emit(Event::Ice(format!("restarting (attempt {attempt})")));
            self.push(Action::MakeOffer { call: id, ice_restart: true, first: false });
            return;
        }
        if passed(call.ring_deadline(self.config.ring_timeout)) {
            return self.end(EndReason::NoAnswer, true);
        }
        // MDN's protocol has no call ids: an answer to a call we already hung up can be taken for the
        // answer to the next one, and ICE then never connects. Whatever the cause, a call that cannot
        // connect ends in words rather than hanging.
        if passed(call.connect_deadline(self.config.connect_timeout)) {
            let peer = call.peer.clone();
            return self.fail(CallError::NoPath { peer });
        }
        if passed(call.next_stats) {
            let Some(call) = self.call.as_mut() else { return };
            // From `now`, not from the missed time: a late driver gets one report, not a burst.
            call.next_stats = Some(now + self.config.stats_interval);
            let id = call.id;
            self.push(Action::SampleStats { call: id });
        }
    }
}
