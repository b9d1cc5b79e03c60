//! The call machine step by step, with a made-up clock and no sockets: every timer, both roles,
//! glare, busy, hang-ups in every state, renegotiation and early candidates.

use super::*;
use crate::call::Command;
use crate::signaling::protocol::IceServer;

const NAME_OF_BOB: &str = "bob";

fn config(name: &str) -> MachineConfig {
    MachineConfig {
        name: name.to_owned(),
        auto_answer: false,
        ring_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        disconnected_grace: Duration::from_secs(15),
        ice_restart_after: Duration::from_secs(1),
        // Out of the way of the timers under test; the walk-through test sets its own.
        stats_interval: Duration::from_secs(3600),
    }
}

/// One machine, registered, in a room with bob and carol; `now` moves only when the test says.
struct Rig {
    m: CallMachine,
    t0: Instant,
    now: Instant,
}

impl Rig {
    fn new(name: &str) -> Self {
        Self::with(config(name))
    }

    fn with(config: MachineConfig) -> Self {
        let name = config.name.clone();
        let t0 = Instant::now();
        let mut rig = Rig { m: CallMachine::new(config), t0, now: t0 };
        rig.signal(SignalingEvent::Connected { id: 7 });
        let users = [name.as_str(), "bob", "carol"].map(|u| Some(u.to_owned())).to_vec();
        rig.message(Message::UserList { users });
        rig
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.m.handle(input, self.now);
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }

    fn command(&mut self, command: Command) -> Vec<Action> {
        self.input(Input::Command(command))
    }

    fn signal(&mut self, event: SignalingEvent) -> Vec<Action> {
        self.input(Input::Signaling(event))
    }

    fn message(&mut self, message: Message) -> Vec<Action> {
        self.signal(SignalingEvent::Message(message))
    }

    fn peer(&mut self, event: PeerInput) -> Vec<Action> {
        let call = self.m.call_id().expect("a call");
        self.input(Input::Peer { call, event })
    }

    /// Moves the clock to `secs` after the start and feeds a timeout.
    fn timeout_at(&mut self, secs: f64) -> Vec<Action> {
        self.now = self.t0 + Duration::from_secs_f64(secs);
        self.input(Input::Timeout)
    }

    fn at(&mut self, secs: f64) {
        self.now = self.t0 + Duration::from_secs_f64(secs);
    }

    fn secs(&self, t: Option<Instant>) -> Option<f64> {
        t.map(|t| t.duration_since(self.t0).as_secs_f64())
    }

    fn next_timeout(&self) -> Option<f64> {
        self.secs(self.m.poll_timeout())
    }

    /// Alice (us) calls bob and bob answers; the connection is not up yet.
    fn answered_call(&mut self) -> CallId {
        self.command(Command::Call(NAME_OF_BOB.into()));
        self.peer(PeerInput::LocalOffer("our offer".into()));
        self.message(answer_from("bob"));
        self.m.call_id().expect("a call")
    }

    /// A call with bob that we placed, in call.
    fn placed_call(&mut self) -> CallId {
        let id = self.answered_call();
        self.peer(PeerInput::Connection(RTCPeerConnectionState::Connected));
        assert_eq!(self.m.state(), in_call("bob"));
        id
    }

    /// A call from bob that we took, in call.
    fn taken_call(&mut self) -> CallId {
        self.message(offer_from("bob"));
        self.command(Command::Accept);
        self.peer(PeerInput::LocalAnswer("our answer".into()));
        self.peer(PeerInput::Connection(RTCPeerConnectionState::Connected));
        assert_eq!(self.m.state(), in_call("bob"));
        self.m.call_id().expect("a call")
    }
}

fn sdp(kind: &str, text: &str) -> SessionDescription {
    SessionDescription { kind: kind.into(), sdp: text.into() }
}

fn offer_from(name: &str) -> Message {
    Message::VideoOffer {
        name: name.into(),
        target: "alice".into(),
        sdp: sdp("offer", &format!("offer of {name}")),
    }
}

fn answer_from(name: &str) -> Message {
    Message::VideoAnswer { name: name.into(), target: "alice".into(), sdp: sdp("answer", "their answer") }
}

fn hang_up_from(name: &str, reason: Option<&str>) -> Message {
    Message::HangUp { name: name.into(), target: "alice".into(), reason: reason.map(str::to_owned) }
}

fn candidate(text: &str) -> IceCandidate {
    IceCandidate { candidate: text.into(), sdp_mid: Some("0".into()), ..Default::default() }
}

fn candidate_from(name: Option<&str>, text: &str) -> Message {
    Message::NewIceCandidate {
        name: name.map(str::to_owned),
        target: "alice".into(),
        candidate: candidate(text),
    }
}

fn in_call(peer: &str) -> CallState {
    CallState::InCall { peer: peer.into() }
}

fn ended(actions: &[Action]) -> Option<EndReason> {
    actions.iter().find_map(|a| match a {
        Action::Emit(Event::CallEnded { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
}

fn hang_ups(actions: &[Action]) -> Vec<(String, Option<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal(Message::HangUp { target, reason, .. }) => Some((target.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn restarts(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::MakeOffer { ice_restart: true, .. })).count()
}

#[test]
fn a_placed_call_walks_from_dial_to_hang_up() {
    let mut rig = Rig::with(MachineConfig { stats_interval: Duration::from_secs(1), ..config("alice") });
    let actions = rig.command(Command::Call("bob".into()));
    let call = rig.m.call_id().expect("a call");
    assert_eq!(
        actions,
        [
            Action::Emit(Event::CallState(CallState::Calling { peer: "bob".into() })),
            Action::OpenPeer { call },
            Action::MakeOffer { call, ice_restart: false, first: true },
        ]
    );
    let actions = rig.peer(PeerInput::LocalOffer("v=0 ours".into()));
    let offer =
        Message::VideoOffer { name: "alice".into(), target: "bob".into(), sdp: sdp("offer", "v=0 ours") };
    assert_eq!(actions, [Action::Signal(offer)]);
    rig.at(0.5);
    let actions = rig.message(answer_from("bob"));
    assert_eq!(
        actions,
        [
            Action::ApplyAnswer { call, sdp: "their answer".into(), first: true },
            Action::Emit(Event::CallState(CallState::Connecting { peer: "bob".into() })),
        ]
    );
    rig.at(0.7);
    let actions = rig.peer(PeerInput::Connection(RTCPeerConnectionState::Connected));
    assert_eq!(actions, [Action::StartMedia { call }, Action::Emit(Event::CallState(in_call("bob")))]);
    // Statistics once a second from the moment the call is up, and nothing else waits on time.
    assert_eq!(rig.next_timeout(), Some(1.7));
    assert_eq!(rig.timeout_at(1.7), [Action::SampleStats { call }]);
    assert_eq!(rig.next_timeout(), Some(2.7));
    let actions = rig.command(Command::HangUp);
    let hang_up = Message::HangUp { name: "alice".into(), target: "bob".into(), reason: None };
    assert_eq!(
        actions,
        [
            Action::Signal(hang_up),
            Action::ClosePeer { call },
            Action::Emit(Event::CallState(CallState::Idle)),
            Action::Emit(Event::CallEnded { peer: "bob".into(), reason: EndReason::HungUp }),
        ]
    );
    assert_eq!(rig.m.poll_timeout(), None);
}

#[test]
fn a_taken_call_rings_then_answers_and_connects() {
    let mut rig = Rig::new("alice");
    let actions = rig.message(offer_from("bob"));
    assert_eq!(
        actions,
        [
            Action::Emit(Event::CallState(CallState::Ringing { peer: "bob".into() })),
            Action::Emit(Event::IncomingCall { from: "bob".into() }),
        ]
    );
    let call = rig.m.call_id().expect("a call");
    let actions = rig.command(Command::Accept);
    assert_eq!(
        actions,
        [
            Action::OpenPeer { call },
            Action::ApplyOffer { call, sdp: "offer of bob".into(), first: true },
            Action::Emit(Event::CallState(CallState::Connecting { peer: "bob".into() })),
        ]
    );
    let actions = rig.peer(PeerInput::LocalAnswer("v=0 answer".into()));
    let answer =
        Message::VideoAnswer { name: "alice".into(), target: "bob".into(), sdp: sdp("answer", "v=0 answer") };
    assert_eq!(actions, [Action::Signal(answer)]);
    let actions = rig.peer(PeerInput::Connection(RTCPeerConnectionState::Connected));
    assert_eq!(actions, [Action::StartMedia { call }, Action::Emit(Event::CallState(in_call("bob")))]);
    // A second `connected` (after an ICE restart) starts nothing again.
    assert_eq!(rig.peer(PeerInput::Connection(RTCPeerConnectionState::Connected)), []);
}

#[test]
fn an_unanswered_call_ends_with_no_answer_on_both_sides() {
    let mut caller = Rig::new("alice");
    caller.command(Command::Call("bob".into()));
    caller.peer(PeerInput::LocalOffer("o".into()));
    assert_eq!(caller.next_timeout(), Some(30.0));
    assert_eq!(caller.timeout_at(29.9), [], "early wake-ups do nothing");
    let actions = caller.timeout_at(30.0);
    assert_eq!(ended(&actions), Some(EndReason::NoAnswer));
    assert_eq!(hang_ups(&actions), [("bob".to_owned(), None)], "the callee stops ringing");
    assert_eq!(caller.m.state(), CallState::Idle);

    let mut callee = Rig::new("alice");
    callee.message(offer_from("bob"));
    let actions = callee.timeout_at(30.0);
    assert_eq!(ended(&actions), Some(EndReason::NoAnswer));
    assert_eq!(hang_ups(&actions), [("bob".to_owned(), None)], "the caller hears the call is over");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::ClosePeer { .. })),
        "a ringing call has no connection"
    );
}

#[test]
fn a_call_that_never_connects_ends_at_the_connect_timeout() {
    let mut rig = Rig::new("alice");
    rig.at(2.0);
    rig.answered_call();
    assert_eq!(rig.next_timeout(), Some(12.0), "counted from the answer, not the dial");
    let actions = rig.timeout_at(12.0);
    assert_eq!(ended(&actions), Some(EndReason::Failed(CallError::NoPath { peer: "bob".into() })));
    assert_eq!(hang_ups(&actions).len(), 1);
}

#[test]
fn a_path_found_gives_the_handshake_its_own_connect_timeout() {
    let mut rig = Rig::new("alice");
    rig.at(2.0);
    rig.answered_call();
    rig.at(9.0);
    rig.peer(PeerInput::Ice(RTCIceConnectionState::Connected));
    assert_eq!(rig.next_timeout(), Some(19.0), "10 s from the path, not from the answer");
    // ICE flapping does not move it again: a handshake that never finishes still ends.
    rig.at(11.0);
    rig.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    rig.peer(PeerInput::Ice(RTCIceConnectionState::Connected));
    assert_eq!(rig.next_timeout(), Some(19.0));
    let actions = rig.timeout_at(19.0);
    assert_eq!(ended(&actions), Some(EndReason::Failed(CallError::NoPath { peer: "bob".into() })));
}

#[test]
fn ice_outage_caller_restarts_on_a_schedule_then_gives_up() {
    let mut rig = Rig::new("alice");
    let call = rig.placed_call();
    rig.at(100.0);
    let actions = rig.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    assert_eq!(actions, [Action::Emit(Event::Ice("disconnected".into()))]);
    // Restarts at 1 s into the outage, then every 4 s; the stats timer keeps ticking beside them.
    let mut restart_times = Vec::new();
    let mut end = None;
    for _ in 0..200 {
        let Some(t) = rig.next_timeout() else { break };
        let actions = rig.timeout_at(t);
        if restarts(&actions) > 0 {
            assert!(actions.contains(&Action::MakeOffer { call, ice_restart: true, first: false }));
            restart_times.push(t);
            // The restart's offer goes out like any offer; the answer is applied on the same call.
            let out = rig.peer(PeerInput::LocalOffer(format!("restart {t}")));
            assert!(matches!(&out[..], [Action::Signal(Message::VideoOffer { .. })]));
            let applied = rig.message(answer_from("bob"));
            assert!(matches!(&applied[..], [Action::ApplyAnswer { first: false, .. }]), "{applied:?}");
        }
        if let Some(reason) = ended(&actions) {
            end = Some((t, reason));
            break;
        }
    }
    assert_eq!(restart_times, [101.0, 105.0, 109.0, 113.0]);
    assert_eq!(end, Some((115.0, EndReason::Failed(CallError::ConnectionLost))));
}

#[test]
fn the_callee_never_restarts_ice_and_a_path_that_returns_keeps_the_call() {
    let mut callee = Rig::new("alice");
    callee.taken_call();
    callee.at(50.0);
    callee.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    let mut all = Vec::new();
    while let Some(t) = callee.next_timeout().filter(|t| *t < 64.0) {
        all.extend(callee.timeout_at(t));
    }
    assert_eq!(restarts(&all), 0, "only the caller offers: {all:?}");
    // The path comes back before the grace runs out: the call goes on, nothing but stats waits.
    callee.at(64.0);
    callee.peer(PeerInput::Ice(RTCIceConnectionState::Connected));
    let actions = callee.timeout_at(66.0);
    assert_eq!(ended(&actions), None);
    assert_eq!(callee.m.state(), in_call("bob"));
    assert_eq!(callee.next_timeout(), Some(3600.0), "only the stats timer is left");

    // A caller whose path returns after one restart: the next outage restarts 1 s in again.
    let mut caller = Rig::new("alice");
    caller.placed_call();
    caller.at(10.0);
    caller.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    assert_eq!(restarts(&caller.timeout_at(11.0)), 1);
    caller.peer(PeerInput::Ice(RTCIceConnectionState::Connected));
    caller.at(20.0);
    caller.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    assert_eq!(restarts(&caller.timeout_at(21.0)), 1);
    let attempt = caller.m.call.as_ref().map(|c| c.ice_restarts);
    assert_eq!(attempt, Some(2), "attempts are numbered across the call");
}

#[test]
fn ice_failure_before_the_call_connected_ends_it_but_after_waits_for_a_restart() {
    let mut rig = Rig::new("alice");
    rig.answered_call();
    let actions = rig.peer(PeerInput::Ice(RTCIceConnectionState::Failed));
    assert_eq!(ended(&actions), Some(EndReason::Failed(CallError::IceFailed)));

    let mut rig = Rig::new("alice");
    rig.placed_call();
    rig.at(5.0);
    let actions = rig.peer(PeerInput::Ice(RTCIceConnectionState::Failed));
    assert_eq!(ended(&actions), None);
    assert_eq!(restarts(&rig.timeout_at(6.0)), 1);
}

#[test]
fn signaling_lost_while_media_flows_keeps_the_call_until_ice_says_otherwise() {
    // Our own socket drops: the call goes on, the user list empties.
    let mut rig = Rig::new("alice");
    rig.placed_call();
    let retry_in = Duration::from_millis(250);
    let actions = rig.signal(SignalingEvent::Disconnected { reason: "gone".into(), retry_in });
    assert_eq!(
        actions,
        [
            Action::Emit(Event::SignalingLost { reason: "gone".into(), retry_in }),
            Action::Emit(Event::UserList(Vec::new())),
        ]
    );
    assert_eq!(rig.m.state(), in_call("bob"));
    assert_eq!(
        rig.command(Command::Call("carol".into())),
        [Action::Emit(Event::Error(EngineError::NotOnline("carol".into())))]
    );

    // The peer's socket drops (the server's hang-up): kept, but an ICE outage then ends it at once.
    let mut rig = Rig::new("alice");
    rig.placed_call();
    assert_eq!(rig.message(hang_up_from("bob", Some("disconnected"))), []);
    rig.at(3.0);
    rig.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    assert_eq!(rig.next_timeout(), Some(3.0));
    assert_eq!(ended(&rig.timeout_at(3.0)), Some(EndReason::Failed(CallError::ConnectionLost)));

    // ... unless the peer is back on the server first: then the usual grace applies.
    let mut rig = Rig::new("alice");
    rig.placed_call();
    rig.message(hang_up_from("bob", Some("disconnected")));
    rig.message(Message::UserList { users: vec![Some("alice".into()), Some("bob".into())] });
    rig.at(3.0);
    rig.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    assert_eq!(ended(&rig.timeout_at(3.0)), None);

    // And a peer that vanished while the path was already down is gone.
    let mut rig = Rig::new("alice");
    rig.placed_call();
    rig.peer(PeerInput::Ice(RTCIceConnectionState::Disconnected));
    let actions = rig.message(hang_up_from("bob", Some("disconnected")));
    assert_eq!(ended(&actions), Some(EndReason::PeerDisconnected));
    assert_eq!(hang_ups(&actions), []);
}

#[test]
fn a_second_caller_hears_busy_and_the_call_goes_on() {
    let mut rig = Rig::new("alice");
    rig.placed_call();
    let actions = rig.message(offer_from("carol"));
    assert_eq!(hang_ups(&actions), [("carol".to_owned(), Some("busy".to_owned()))]);
    assert_eq!(actions.len(), 1);
    assert_eq!(rig.m.state(), in_call("bob"));

    let mut ringing = Rig::new("alice");
    ringing.message(offer_from("bob"));
    let actions = ringing.message(offer_from("carol"));
    assert_eq!(hang_ups(&actions), [("carol".to_owned(), Some("busy".to_owned()))]);

    // And the caller's side of it.
    let mut caller = Rig::new("alice");
    caller.command(Command::Call("bob".into()));
    caller.peer(PeerInput::LocalOffer("o".into()));
    let actions = caller.message(hang_up_from("bob", Some("busy")));
    assert_eq!(ended(&actions), Some(EndReason::Busy));
    assert_eq!(hang_ups(&actions), [], "nothing to tell a busy callee");
}

#[test]
fn an_offer_sent_again_while_ringing_replaces_the_first() {
    let mut rig = Rig::new("alice");
    rig.message(offer_from("bob"));
    let again =
        Message::VideoOffer { name: "bob".into(), target: "alice".into(), sdp: sdp("offer", "second") };
    assert_eq!(rig.message(again), [], "not busy: it is the same call");
    let call = rig.m.call_id().expect("a call");
    let actions = rig.command(Command::Accept);
    assert!(actions.contains(&Action::ApplyOffer { call, sdp: "second".into(), first: true }));
}

#[test]
fn hang_up_in_every_state() {
    type Setup = fn(&mut Rig);
    let states: [(&str, Setup, bool); 6] = [
        ("calling, offer being made", |r| drop(r.command(Command::Call("bob".into()))), true),
        (
            "calling, offer out",
            |r| {
                r.command(Command::Call("bob".into()));
                r.peer(PeerInput::LocalOffer("o".into()));
            },
            true,
        ),
        ("ringing", |r| drop(r.message(offer_from("bob"))), false),
        (
            "connecting as callee",
            |r| {
                r.message(offer_from("bob"));
                r.command(Command::Accept);
            },
            true,
        ),
        (
            "connecting as caller",
            |r| {
                r.answered_call();
            },
            true,
        ),
        (
            "in call",
            |r| {
                r.placed_call();
            },
            true,
        ),
    ];
    for (what, setup, has_peer) in states {
        // We hang up: the peer is told, the connection closed, the users told.
        let mut rig = Rig::new("alice");
        setup(&mut rig);
        let call = rig.m.call_id().expect("a call");
        let actions = rig.command(Command::HangUp);
        assert_eq!(ended(&actions), Some(EndReason::HungUp), "{what}");
        assert_eq!(hang_ups(&actions).len(), 1, "{what}");
        assert_eq!(actions.contains(&Action::ClosePeer { call }), has_peer, "{what}");
        assert_eq!(rig.m.state(), CallState::Idle, "{what}");
        assert_eq!(rig.m.poll_timeout(), None, "{what}: no timer outlives the call");
        // Events from the dead call's connection change nothing.
        let late =
            rig.input(Input::Peer { call, event: PeerInput::Connection(RTCPeerConnectionState::Connected) });
        assert_eq!(late, [], "{what}");

        // The peer hangs up: nothing is sent back.
        let mut rig = Rig::new("alice");
        setup(&mut rig);
        let actions = rig.message(hang_up_from("bob", None));
        assert_eq!(ended(&actions), Some(EndReason::RemoteHungUp), "{what}");
        assert_eq!(hang_ups(&actions), [], "{what}");
        // A stranger's hang-up ends nothing.
        let mut rig = Rig::new("alice");
        setup(&mut rig);
        assert_eq!(rig.message(hang_up_from("carol", None)), [], "{what}");
    }
    let mut idle = Rig::new("alice");
    assert_eq!(idle.command(Command::HangUp), []);
}

#[test]
fn a_renegotiation_offer_mid_call_is_answered_on_the_same_connection() {
    let mut rig = Rig::new("alice");
    let call = rig.placed_call();
    let again =
        Message::VideoOffer { name: "bob".into(), target: "alice".into(), sdp: sdp("offer", "renegotiate") };
    assert_eq!(rig.message(again), [Action::ApplyOffer { call, sdp: "renegotiate".into(), first: false }]);
    let actions = rig.peer(PeerInput::LocalAnswer("new answer".into()));
    assert!(matches!(&actions[..], [Action::Signal(Message::VideoAnswer { target, .. })] if target == "bob"));
    assert_eq!(rig.m.state(), in_call("bob"));
    // An answer nobody asked for is ignored.
    assert_eq!(rig.message(answer_from("bob")), []);
}

#[test]
fn candidates_that_come_before_the_description_wait_for_it() {
    // Callee: candidates overtake the offer, then more come while ringing.
    let mut rig = Rig::new("alice");
    rig.message(candidate_from(Some("bob"), "early"));
    rig.message(offer_from("bob"));
    assert_eq!(rig.message(candidate_from(Some("bob"), "while ringing")), []);
    // MDN's server sends candidates without a name: they are the call partner's.
    assert_eq!(rig.message(candidate_from(None, "nameless")), []);
    let call = rig.m.call_id().expect("a call");
    let actions = rig.command(Command::Accept);
    let add = |text: &str| Action::AddCandidate { call, candidate: candidate(text) };
    assert_eq!(
        actions[..4],
        [
            Action::OpenPeer { call },
            Action::ApplyOffer { call, sdp: "offer of bob".into(), first: true },
            add("early"),
            add("while ringing")
        ]
    );
    assert_eq!(actions[4], add("nameless"));
    // From now on they go straight in; end-of-candidates adds nothing.
    assert_eq!(rig.message(candidate_from(Some("bob"), "late")), [add("late")]);
    assert_eq!(rig.message(candidate_from(Some("bob"), "")), []);

    // Caller: candidates that overtake the answer.
    let mut rig = Rig::new("alice");
    rig.command(Command::Call("bob".into()));
    rig.peer(PeerInput::LocalOffer("o".into()));
    assert_eq!(rig.message(candidate_from(Some("bob"), "before the answer")), []);
    let call = rig.m.call_id().expect("a call");
    let actions = rig.message(answer_from("bob"));
    assert_eq!(
        actions[..2],
        [
            Action::ApplyAnswer { call, sdp: "their answer".into(), first: true },
            Action::AddCandidate { call, candidate: candidate("before the answer") }
        ]
    );
}

#[test]
fn early_candidates_are_bounded_and_dropped_with_a_hang_up() {
    let mut rig = Rig::new("alice");
    for i in 0..(EARLY_CANDIDATES_PER_PEER + 10) {
        rig.message(candidate_from(Some("bob"), &format!("c{i}")));
    }
    for p in 0..(EARLY_CANDIDATE_PEERS + 5) {
        rig.message(candidate_from(Some(&format!("stranger{p}")), "c"));
    }
    assert_eq!(rig.m.early_candidates.len(), EARLY_CANDIDATE_PEERS);
    assert_eq!(rig.m.early_candidates["bob"].len(), EARLY_CANDIDATES_PER_PEER);
    rig.message(hang_up_from("bob", None));
    assert!(!rig.m.early_candidates.contains_key("bob"));
}

#[test]
fn declining_tells_the_caller_and_opens_nothing() {
    let mut rig = Rig::new("alice");
    rig.message(offer_from("bob"));
    let actions = rig.command(Command::Decline);
    let decline =
        Message::HangUp { name: "alice".into(), target: "bob".into(), reason: Some("declined".into()) };
    assert_eq!(
        actions,
        [
            Action::Signal(decline),
            Action::Emit(Event::CallState(CallState::Idle)),
            Action::Emit(Event::CallEnded { peer: "bob".into(), reason: EndReason::WeDeclined }),
        ]
    );
    // Decline with nothing ringing, or in a call, does nothing.
    assert_eq!(rig.command(Command::Decline), []);
    rig.placed_call();
    assert_eq!(rig.command(Command::Decline), []);
    // The caller's side: a declined call ends with "declined".
    let mut caller = Rig::new("alice");
    caller.command(Command::Call("bob".into()));
    let actions = caller.message(hang_up_from("bob", Some("declined")));
    assert_eq!(ended(&actions), Some(EndReason::Declined));
}

#[test]
fn auto_answer_takes_calls_by_itself_and_switches_at_run_time() {
    let mut rig = Rig::with(MachineConfig { auto_answer: true, ..config("alice") });
    let actions = rig.message(offer_from("bob"));
    let call = rig.m.call_id().expect("a call");
    assert_eq!(
        actions,
        [
            Action::Emit(Event::CallState(CallState::Ringing { peer: "bob".into() })),
            Action::Emit(Event::IncomingCall { from: "bob".into() }),
            Action::OpenPeer { call },
            Action::ApplyOffer { call, sdp: "offer of bob".into(), first: true },
            Action::Emit(Event::CallState(CallState::Connecting { peer: "bob".into() })),
        ]
    );
    rig.command(Command::HangUp);

    // Off: the next call rings and waits.
    rig.command(Command::SetAutoAnswer(false));
    rig.message(offer_from("bob"));
    assert_eq!(rig.m.state(), CallState::Ringing { peer: "bob".into() });
    // On again while it rings: it is taken now.
    let actions = rig.command(Command::SetAutoAnswer(true));
    assert!(matches!(actions[0], Action::OpenPeer { .. }), "{actions:?}");
    assert_eq!(rig.m.state(), CallState::Connecting { peer: "bob".into() });
}

#[test]
fn calls_that_cannot_be_placed_say_why() {
    let mut unregistered = CallMachine::new(config("alice"));
    unregistered.handle(Input::Command(Command::Call("bob".into())), Instant::now());
    assert_eq!(unregistered.poll_action(), Some(Action::Emit(Event::Error(EngineError::NotConnected))));

    let mut rig = Rig::new("alice");
    let error = |e| vec![Action::Emit(Event::Error(e))];
    assert_eq!(rig.command(Command::Call("alice".into())), error(EngineError::CallingYourself));
    assert_eq!(rig.command(Command::Call("dave".into())), error(EngineError::NotOnline("dave".into())));
    rig.placed_call();
    assert_eq!(rig.command(Command::Call("carol".into())), error(EngineError::Busy(in_call("bob"))));
    // The server's variant of our name is the one we are.
    let mut renamed = Rig::new("alice");
    renamed.message(Message::RejectUsername { id: 7, name: "alice2".into() });
    assert_eq!(renamed.m.me(), Some("alice2"));
    renamed.message(Message::UserList { users: vec![Some("alice".into()), Some("alice2".into())] });
    let actions = renamed.command(Command::Call("alice".into()));
    assert!(matches!(actions[0], Action::Emit(Event::CallState(CallState::Calling { .. }))));
}

#[test]
fn a_call_to_someone_who_just_left_ends_as_not_online() {
    let mut rig = Rig::new("alice");
    rig.command(Command::Call("bob".into()));
    rig.peer(PeerInput::LocalOffer("o".into()));
    let refused =
        Message::Error { reason: protocol::reason::UNKNOWN_TARGET.into(), text: Some("bob is gone".into()) };
    let actions = rig.message(refused.clone());
    assert_eq!(ended(&actions), Some(EndReason::NotOnline));
    assert_eq!(hang_ups(&actions), []);
    // Between calls the same refusal is just an error in words.
    assert_eq!(rig.message(refused), [Action::Emit(Event::Error(EngineError::Server("bob is gone".into())))]);
}

#[test]
fn a_failure_before_the_offer_went_out_tells_nobody() {
    let mut rig = Rig::new("alice");
    rig.command(Command::Call("bob".into()));
    let actions = rig.peer(PeerInput::Failed(CallError::Setup("no sockets".into())));
    assert_eq!(ended(&actions), Some(EndReason::Failed(CallError::Setup("no sockets".into()))));
    assert_eq!(hang_ups(&actions), []);
    assert!(actions.iter().any(|a| matches!(a, Action::ClosePeer { .. })));
    // After the offer went out, the callee rings: it must be told.
    let mut rig = Rig::new("alice");
    rig.answered_call();
    let actions = rig.peer(PeerInput::Failed(CallError::AnswerRefused("bad".into())));
    assert_eq!(hang_ups(&actions).len(), 1);
    // A failed ICE restart is not the end of the call.
    let mut rig = Rig::new("alice");
    rig.placed_call();
    assert_eq!(rig.peer(PeerInput::RestartFailed("busy".into())), []);
    assert_eq!(rig.m.state(), in_call("bob"));
}

#[test]
fn a_track_switch_makes_one_more_offer_that_settles_nothing_anew() {
    let mut rig = Rig::new("alice");
    let call = rig.answered_call();
    // The driver found the answer left out our track's codec and swapped the track.
    let actions = rig.peer(PeerInput::RenegotiationNeeded);
    assert_eq!(actions, [Action::MakeOffer { call, ice_restart: false, first: false }]);
    rig.peer(PeerInput::LocalOffer("again".into()));
    let applied = rig.message(answer_from("bob"));
    assert!(matches!(&applied[..], [Action::ApplyAnswer { first: false, .. }]), "{applied:?}");
    assert_eq!(rig.m.state(), CallState::Connecting { peer: "bob".into() }, "the call goes on connecting");
}

#[test]
fn switches_and_keyframe_requests_reach_the_driver() {
    let mut rig = Rig::new("alice");
    assert_eq!(rig.command(Command::SetAudioMuted(true)), [Action::SetAudioMuted(true)]);
    assert_eq!(rig.command(Command::SetVideoOff(true)), [Action::SetVideoOff(true)]);
    assert_eq!(rig.command(Command::RequestKeyframe), [], "no call, no keyframe");
    let call = rig.placed_call();
    assert_eq!(rig.command(Command::RequestKeyframe), [Action::RequestKeyframe { call }]);
    let codec = crate::call::VideoPreference::Vp8;
    assert_eq!(rig.command(Command::SetVideoCodec(codec)), [Action::UseVideoCodec(codec)]);
    let servers = vec![IceServer { urls: vec!["turn:192.0.2.1".into()], ..Default::default() }];
    let actions = rig.message(Message::IceServers { ice_servers: servers.clone() });
    assert_eq!(actions, [Action::UseIceServers(servers)]);
}

/// Two machines joined by a perfect server: messages from one are handed to the other with the
/// sender's name stamped, and peer connections answer at once.
struct Pair {
    alice: CallMachine,
    bob: CallMachine,
    now: Instant,
    hang_ups: usize,
    closed: Vec<(&'static str, CallId)>,
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let mut pair = Pair {
            alice: CallMachine::new(config("alice")),
            bob: CallMachine::new(config("bob")),
            now,
            hang_ups: 0,
            closed: Vec::new(),
        };
        for m in [&mut pair.alice, &mut pair.bob] {
            m.handle(Input::Signaling(SignalingEvent::Connected { id: 1 }), now);
            let users = vec![Some("alice".into()), Some("bob".into())];
            m.handle(Input::Signaling(SignalingEvent::Message(Message::UserList { users })), now);
        }
        pair
    }

    fn machine(&mut self, who: &str) -> &mut CallMachine {
        if who == "alice" {
            &mut self.alice
        } else {
            &mut self.bob
        }
    }

    /// Carries out both machines' actions until neither has any left (bounded).
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for (who, other) in [("alice", "bob"), ("bob", "alice")] {
                while let Some(action) = self.machine(who).poll_action() {
                    moved = true;
                    let now = self.now;
                    match action {
                        Action::Signal(message) => {
                            self.hang_ups += matches!(message, Message::HangUp { .. }) as usize;
                            self.machine(other)
                                .handle(Input::Signaling(SignalingEvent::Message(message)), now);
                        }
                        Action::MakeOffer { call, .. } => {
                            let event = PeerInput::LocalOffer(format!("offer by {who}"));
                            self.machine(who).handle(Input::Peer { call, event }, now);
                        }
                        Action::ApplyOffer { call, .. } => {
                            let event = PeerInput::LocalAnswer(format!("answer by {who}"));
                            self.machine(who).handle(Input::Peer { call, event }, now);
                        }
                        Action::ClosePeer { call } => {
                            self.closed.push((if who == "alice" { "alice" } else { "bob" }, call))
                        }
                        _ => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the two machines never settled");
    }
}

#[test]
fn glare_leaves_exactly_one_call_on_both_sides() {
    let mut pair = Pair::new();
    let now = pair.now;
    // Both click at once: each dial and offer happens before the other's offer arrives.
    pair.alice.handle(Input::Command(Command::Call("bob".into())), now);
    pair.bob.handle(Input::Command(Command::Call("alice".into())), now);
    pair.settle();
    assert_eq!(pair.hang_ups, 0, "nobody hangs up on anybody");
    assert_eq!(pair.alice.state(), CallState::Connecting { peer: "bob".into() });
    assert_eq!(pair.bob.state(), CallState::Connecting { peer: "alice".into() });
    // The polite side (the smaller name) dropped its own connection and answers bob's offer.
    assert_eq!(pair.closed.len(), 1);
    assert_eq!(pair.closed[0].0, "alice");
    assert_eq!(pair.alice.call.as_ref().map(|c| c.role), Some(Role::Callee));
    assert_eq!(pair.bob.call.as_ref().map(|c| c.role), Some(Role::Caller));
    // Both connect and stay in the one call.
    for m in [&mut pair.alice, &mut pair.bob] {
        let call = m.call_id().expect("a call");
        m.handle(Input::Peer { call, event: PeerInput::Connection(RTCPeerConnectionState::Connected) }, now);
    }
    pair.settle();
    assert_eq!(pair.alice.state(), in_call("bob"));
    assert_eq!(pair.bob.state(), in_call("alice"));
}
