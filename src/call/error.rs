//! The engine's errors, typed: what failed (the variant, which the window can word as it likes) and
//! the detail the lower layer gave (the `String`s). Their `Display` is the sentence the headless CLI prints.

use super::codecs::NoCommonCodec;
use super::state::CallState;

/// Why a call failed: carried by [`EndReason::Failed`](super::EndReason::Failed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The peer connection could not be built (sockets, codecs, tracks).
    #[error("could not start the call: {0}")]
    Setup(String),
    /// Our own offer could not be made or applied.
    #[error("could not make an offer: {0}")]
    Offer(String),
    /// The far side's offer was not valid SDP or was refused by the peer connection.
    #[error("the offer was refused: {0}")]
    OfferRefused(String),
    /// Our answer to the far side's offer could not be made or applied.
    #[error("could not answer: {0}")]
    Answer(String),
    /// The far side's answer was not valid SDP or was refused by the peer connection.
    #[error("the answer was refused: {0}")]
    AnswerRefused(String),
    /// ICE found no working path before the call ever connected.
    #[error("the network path failed (ICE)")]
    IceFailed,
    /// Offer and answer were exchanged, but no path connected in time.
    #[error("could not connect to {peer} (no network path found)")]
    NoPath {
        /// Whom we tried to reach.
        peer: String,
    },
    /// The secure connection (DTLS) on the path failed.
    #[error("the connection failed")]
    ConnectionFailed,
    /// A call that worked lost its path and did not get it back within the grace period.
    #[error("the connection was lost")]
    ConnectionLost,
    /// The media threads could not start.
    #[error("could not start media: {0}")]
    Media(String),
}

/// Something the user should hear about that is not the end of a call: carried by
/// [`Event::Error`](super::Event::Error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A call was asked for before the server registered our name.
    #[error("not connected to the signaling server yet")]
    NotConnected,
    /// A call to our own name.
    #[error("you can't call yourself")]
    CallingYourself,
    /// A call to a name that is not in the room's user list.
    #[error("{0} is not online")]
    NotOnline(String),
    /// A call was asked for while another one is open.
    #[error("finish the current call first (already {0})")]
    Busy(CallState),
    /// The signaling server refused a message (its `error` reply, in its words).
    #[error("server: {0}")]
    Server(String),
    /// The room is at its cap; the server closes the connection.
    #[error("the room \"{0}\" is full")]
    RoomFull(String),
    /// The engine's task has stopped; commands go nowhere.
    #[error("the call engine has stopped: leave and join again")]
    Stopped,
    /// The far side has no video codec we have (or turned our video down): the call is audio only.
    #[error("{0}")]
    NoCommonVideoCodec(NoCommonCodec),
    /// Our offer's video was turned down in the answer (the far side takes neither of our codecs).
    #[error("the other side turned our video down (it takes neither H.264 nor VP8); the call goes on with audio only")]
    VideoDeclined,
    /// A listener read events too slowly and lost some.
    #[error("{0} engine events were missed (the listener fell behind)")]
    MissedEvents(u64),
}
