//! The call state machine, pure: no I/O, no clocks. The engine asks it whether a step is allowed and
//! what the new state is; the tests walk it step by step.

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

/// What happens to the call slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The user calls `peer`.
    Dial(String),
    /// An offer arrives from `peer`.
    Offered(String),
    /// The user accepts the ringing call.
    Accept,
    /// The answer to our offer arrived from `peer`.
    Answered(String),
    /// ICE and DTLS are up.
    Connected,
    /// The call ends, for whatever reason.
    End,
}

/// Why a step was refused, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A call is already open: the caller gets "busy".
    #[error("already {0}")]
    Busy(CallState),
    /// The step makes no sense in this state (e.g. Accept with nothing ringing).
    #[error("cannot {step:?} while {state}")]
    OutOfOrder {
        /// The step asked for.
        step: Step,
        /// The state it was asked in.
        state: CallState,
    },
}

/// The state after `step`, or why the step is refused.
pub fn next(state: &CallState, step: Step) -> Result<CallState, Refusal> {
    use CallState::*;
    match (state, step) {
        (_, Step::End) => Ok(Idle),
        (Idle, Step::Dial(peer)) => Ok(Calling { peer }),
        (Idle, Step::Offered(peer)) => Ok(Ringing { peer }),
        (Ringing { peer }, Step::Accept) => Ok(Connecting { peer: peer.clone() }),
        (Calling { peer }, Step::Answered(from)) if *peer == from => Ok(Connecting { peer: from }),
        (Connecting { peer }, Step::Connected) => Ok(InCall { peer: peer.clone() }),
        // Renegotiation or ICE restart with the same peer keeps the call as it is.
        (InCall { peer }, Step::Offered(from)) | (InCall { peer }, Step::Answered(from)) if *peer == from => {
            Ok(state.clone())
        }
        (InCall { .. }, Step::Connected) => Ok(state.clone()),
        (s, Step::Dial(_)) | (s, Step::Offered(_)) if !s.is_idle() => Err(Refusal::Busy(s.clone())),
        (s, step) => Err(Refusal::OutOfOrder { step, state: s.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn a_placed_call_walks_to_in_call_and_back() {
        let s = next(&CallState::Idle, Step::Dial(peer("bob"))).unwrap();
        assert_eq!(s, CallState::Calling { peer: peer("bob") });
        let s = next(&s, Step::Answered(peer("bob"))).unwrap();
        assert_eq!(s, CallState::Connecting { peer: peer("bob") });
        let s = next(&s, Step::Connected).unwrap();
        assert_eq!(s, CallState::InCall { peer: peer("bob") });
        assert_eq!(next(&s, Step::End).unwrap(), CallState::Idle);
    }

    #[test]
    fn a_taken_call_rings_first() {
        let s = next(&CallState::Idle, Step::Offered(peer("alice"))).unwrap();
        assert_eq!(s.peer(), Some("alice"));
        assert!(matches!(next(&s, Step::Connected), Err(Refusal::OutOfOrder { .. })));
        let s = next(&s, Step::Accept).unwrap();
        assert_eq!(s, CallState::Connecting { peer: peer("alice") });
    }

    #[test]
    fn a_second_call_is_busy() {
        let s = CallState::InCall { peer: peer("bob") };
        assert_eq!(next(&s, Step::Offered(peer("carol"))), Err(Refusal::Busy(s.clone())));
        assert_eq!(next(&s, Step::Dial(peer("carol"))), Err(Refusal::Busy(s.clone())));
        let ringing = CallState::Ringing { peer: peer("bob") };
        assert!(matches!(next(&ringing, Step::Offered(peer("carol"))), Err(Refusal::Busy(_))));
    }

    #[test]
    fn answers_from_strangers_and_stray_accepts_are_refused() {
        let s = CallState::Calling { peer: peer("bob") };
        assert!(next(&s, Step::Answered(peer("mallory"))).is_err());
        assert!(next(&CallState::Idle, Step::Accept).is_err());
        assert!(next(&CallState::Idle, Step::Answered(peer("bob"))).is_err());
    }
}
