//! Where the engine's one call slot stands, as its users see it. The call machine
//! ([`super::machine`]) decides how it moves.

use std::fmt;

/// Where the engine's one call slot stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallState {
    /// No call.
    Idle,
    /// We sent an offer to `peer` and wait for the answer.
    Calling {
        /// Who we call.
        peer: String,
    },
    /// `peer` offered a call; we wait for the user to accept or decline.
    Ringing {
        /// Who calls us.
        peer: String,
    },
    /// Offer and answer are exchanged; ICE and DTLS are connecting.
    Connecting {
        /// The other side.
        peer: String,
    },
    /// Media flows.
    InCall {
        /// The other side.
        peer: String,
    },
}

impl CallState {
    /// The other side of the call, if there is a call.
    pub fn peer(&self) -> Option<&str> {
        match self {
            CallState::Idle => None,
            CallState::Calling { peer }
            | CallState::Ringing { peer }
            | CallState::Connecting { peer }
            | CallState::InCall { peer } => Some(peer),
        }
    }

    /// Whether there is no call.
    pub fn is_idle(&self) -> bool {
        matches!(self, CallState::Idle)
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallState::Idle => write!(f, "idle"),
            CallState::Calling { peer } => write!(f, "calling {peer}"),
            CallState::Ringing { peer } => write!(f, "{peer} is calling"),
            CallState::Connecting { peer } => write!(f, "connecting to {peer}"),
            CallState::InCall { peer } => write!(f, "in call with {peer}"),
        }
    }
}
