//! One call's bookkeeping inside the machine: who it is with, which side we are, where offer and
//! answer stand, what waits for the remote description, and the instants its timers count from.

use super::{CallId, RESTART_SPACING};
use crate::call::state::CallState;
use crate::signaling::protocol::{IceCandidate, SessionDescription};
use std::time::{Duration, Instant};

/// Which side placed the call. The caller makes every offer, ICE restarts included, so the two
/// sides never offer at once once the call is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Caller,
    Callee,
}

/// Where the call stands for its users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Our offer is being made or is out; no answer yet.
    Calling,
    /// The far side's offer waits for the user.
    Ringing { offer: SessionDescription },
    /// Offer and answer are exchanged; ICE and DTLS are connecting since then.
    Connecting { since: Instant },
    /// Media flows (or flowed, and the path is being restored).
    InCall,
}

/// Offer and answer, as the W3C signaling state names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sdp {
    /// No offer outstanding.
    Stable,
    /// Our offer is out; the far side's answer is due.
    LocalOffer,
    /// The far side's offer is in; our answer is due.
    RemoteOffer,
}

#[derive(Debug)]
pub(super) struct Call {
    pub id: CallId,
    pub peer: String,
    pub role: Role,
    pub phase: Phase,
    pub sdp: Sdp,
    /// The driver was asked to build this call's peer connection (so it must be asked to close it).
    pub peer_open: bool,
    /// The far side's description is (being) applied: candidates go straight to the connection.
    pub remote_description: bool,
    /// Candidates that came before the remote description: applied right after it.
    pub queued_candidates: Vec<IceCandidate>,
    pub media_started: bool,
    /// When the call began (dialled or rang): the ring timeout counts from here.
    pub started: Instant,
    pub disconnected_since: Option<Instant>,
    /// When ICE first found a working path in this call (the handshake on it was still to come).
    pub path_found: Option<Instant>,
    /// The server told us the peer's signaling socket dropped while media still flowed.
    pub peer_signaling_lost: bool,
    /// When we last restarted ICE in this outage, and how often we have in the call.
    pub last_ice_restart: Option<Instant>,
    pub ice_restarts: u32,
    /// When the next statistics report is due (only while in the call).
    pub next_stats: Option<Instant>,
}

impl Call {
    pub fn new(
        id: CallId,
        peer: String,
        role: Role,
        phase: Phase,
        queued_candidates: Vec<IceCandidate>,
        now: Instant,
    ) -> Self {
        let sdp = if role == Role::Callee { Sdp::RemoteOffer } else { Sdp::Stable };
        Self {
            id,
            peer,
            role,
            phase,
            sdp,
            peer_open: false,
            remote_description: false,
            queued_candidates,
            media_started: false,
            started: now,
            disconnected_since: None,
            path_found: None,
            peer_signaling_lost: false,
            last_ice_restart: None,
            ice_restarts: 0,
            next_stats: None,
        }
    }

    pub fn state(&self) -> CallState {
        let peer = self.peer.clone();
        match self.phase {
            Phase::Calling => CallState::Calling { peer },
            Phase::Ringing { .. } => CallState::Ringing { peer },
            Phase::Connecting { .. } => CallState::Connecting { peer },
            Phase::InCall => CallState::InCall { peer },
        }
    }

    /// An unanswered call gives up `timeout` after it began.
    pub fn ring_deadline(&self, timeout: Duration) -> Option<Instant> {
        matches!(self.phase, Phase::Calling | Phase::Ringing { .. }).then(|| self.started + timeout)
    }

    /// A call that answered but never connected gives up `timeout` after the answer, or `timeout`
    /// after ICE first found a path if that is later: the DTLS handshake on a lossy path can need
    /// several of its 1 s retransmissions per flight (through 30 % loss, ICE's first second and the
    /// handshake together passed 10 s). ICE connecting again later does not move it: a handshake
    /// that never finishes still ends.
    pub fn connect_deadline(&self, timeout: Duration) -> Option<Instant> {
        match self.phase {
            Phase::Connecting { since } => Some(self.path_found.map_or(since, |t| t.max(since)) + timeout),
            _ => None,
        }
    }

    /// When the caller restarts ICE next, while the path is down: `after` into the outage, then
    /// every `RESTART_SPACING × after`. The callee never restarts (one offerer, no glare).
    pub fn restart_due(&self, after: Duration) -> Option<Instant> {
        let down = self.disconnected_since.filter(|_| self.role == Role::Caller)?;
        let first = down + after;
        Some(self.last_ice_restart.map_or(first, |last| first.max(last + after * RESTART_SPACING)))
    }
}
