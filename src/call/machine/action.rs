//! What the machine asks its driver to do.

use super::CallId;
#[cfg(doc)]
use super::PeerInput;
use crate::call::codecs::VideoPreference;
use crate::call::Event;
use crate::signaling::protocol::{IceCandidate, IceServer, Message};

/// What the machine asks its driver to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a message to the signaling server.
    Signal(Message),
    /// Build the call's peer connection with our tracks.
    OpenPeer {
        /// The call.
        call: CallId,
    },
    /// Make an offer, set it as the local description, report [`PeerInput::LocalOffer`].
    MakeOffer {
        /// The call.
        call: CallId,
        /// With fresh ICE credentials (how a call survives a network change).
        ice_restart: bool,
        /// The call's first description this side makes or takes: it decides the call's video
        /// (which codec our track sends, or none); later ones (ICE restarts, renegotiation) leave it.
        first: bool,
    },
    /// Set the far side's offer, make and set an answer, report [`PeerInput::LocalAnswer`].
    ApplyOffer {
        /// The call.
        call: CallId,
        /// The offer's SDP.
        sdp: String,
        /// The call's first description this side makes or takes: it decides the call's video
        /// (which codec our track sends, or none); later ones (ICE restarts, renegotiation) leave it.
        first: bool,
    },
    /// Set the far side's answer.
    ApplyAnswer {
        /// The call.
        call: CallId,
        /// The answer's SDP.
        sdp: String,
        /// The call's first description this side makes or takes: it decides the call's video
        /// (which codec our track sends, or none); later ones (ICE restarts, renegotiation) leave it.
        first: bool,
    },
    /// Add a remote ICE candidate.
    AddCandidate {
        /// The call.
        call: CallId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The connection is up: start sending and receiving media.
    StartMedia {
        /// The call.
        call: CallId,
    },
    /// Stop the call's media and close its peer connection.
    ClosePeer {
        /// The call.
        call: CallId,
    },
    /// Ask the far side for a keyframe.
    RequestKeyframe {
        /// The call.
        call: CallId,
    },
    /// Report the call's statistics ([`Event::Stats`]).
    SampleStats {
        /// The call.
        call: CallId,
    },
    /// Send silence instead of the microphone (or stop).
    SetAudioMuted(bool),
    /// Send black instead of the camera (or stop).
    SetVideoOff(bool),
    /// The video codec to put first in the next calls.
    UseVideoCodec(VideoPreference),
    /// STUN/TURN servers the signaling server handed out, for the next peer connections.
    UseIceServers(Vec<IceServer>),
    /// Tell the engine's users.
    Emit(Event),
}
