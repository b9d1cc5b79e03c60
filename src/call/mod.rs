//! The call engine: owns signaling, the peer connection, media and the call state, and knows nothing
//! of windows. Its users (the window, the headless CLI, tests, benchmarks) hold an [`Engine`] handle,
//! send [`Command`]s and read [`Event`]s, the latest remote picture and the remote audio.

mod engine;
pub mod media;
pub mod peer;
pub mod rate;
pub mod state;
pub mod stats;

pub use engine::{Command, EndReason, Engine, EngineConfig, Event};
pub use state::CallState;
pub use stats::{CallStats, Counters};
