//! The call engine: owns signaling, the peer connection, media and the call state, and knows nothing
//! of windows. Its users (the window, the headless CLI, tests, benchmarks) hold an [`Engine`] handle,
//! send [`Command`]s and read [`Event`]s, the latest remote picture and the remote audio.
//!
//! Inside, the call logic is a pure state machine ([`machine`]: inputs and `now` in, actions out,
//! timers polled) and one driver task (`driver`) carries out what it asks with the real peer
//! connection ([`peer`]), media pipelines ([`media`]) and signaling client.

mod api;
pub mod codecs;
mod config;
pub mod congestion;
mod driver;
pub mod error;
pub mod machine;
pub mod media;
mod negotiation;
pub mod peer;
pub mod quality;
pub mod rate;
pub mod recovery;
pub mod state;
pub mod stats;

pub use api::{Command, EndReason, Engine, Event};
pub use codecs::VideoPreference;
pub use config::EngineConfig;
pub use error::{CallError, EngineError};
pub use state::CallState;
pub use stats::{CallStats, Counters};
