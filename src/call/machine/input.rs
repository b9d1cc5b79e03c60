//! What the machine takes: commands, signaling, peer-connection reports and timeouts.

use super::CallId;
#[cfg(doc)]
use super::{Action, CallMachine};
use crate::call::error::CallError;
use crate::call::Command;
use crate::signaling::client::SignalingEvent;
use crate::signaling::protocol::IceCandidate;
use webrtc::peer_connection::{RTCIceConnectionState, RTCPeerConnectionState};

/// What happens to the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The user asks for something.
    Command(Command),
    /// The signaling client connected, dropped, or brought a message.
    Signaling(SignalingEvent),
    /// A call's peer connection reports.
    Peer {
        /// Which call's connection.
        call: CallId,
        /// What it reports.
        event: PeerInput,
    },
    /// The time [`CallMachine::poll_timeout`] named has come (early or late is harmless).
    Timeout,
}

/// What a peer connection reports back: its own events, and the outcome of the actions asked of it.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerInput {
    /// [`Action::MakeOffer`] made this local offer (already set as the local description).
    LocalOffer(String),
    /// [`Action::ApplyOffer`] made this local answer (already set as the local description).
    LocalAnswer(String),
    /// A local ICE candidate to trickle to the far side.
    LocalCandidate(IceCandidate),
    /// ICE moved.
    Ice(RTCIceConnectionState),
    /// The connection as a whole moved.
    Connection(RTCPeerConnectionState),
    /// Our side changed what it sends (the answer took another video codec than our track's): the
    /// caller offers once more on the same connection.
    RenegotiationNeeded,
    /// An ICE restart's offer could not be made; a later restart tries again.
    RestartFailed(String),
    /// An action failed in a way that ends the call.
    Failed(CallError),
}
