//! Peercall: native 1:1 video calls, with its own MDN-compatible signaling server.
//!
//! # Layout
//! - [`signaling`]: the JSON-over-WebSocket protocol ([`signaling::protocol`]), the server
//!   ([`signaling::server`]), the client the call engine uses ([`signaling::client`]) and wss
//!   certificates and trust ([`signaling::tls`]).
//! - `call`: the call engine: peer connection, call state machine, stats. Knows nothing of windows.
//! - `media`: sources (synthetic pattern and tone), codecs (H.264, Opus), frames.
//! - [`headless`]: the windowless front end (`peercall --headless`): events and stats on stdout.
//! - [`ui`]: the eframe window, views only: sends the engine commands, draws its events and frames.

pub mod call;
pub mod headless;
pub mod media;
pub mod signaling;
pub mod ui;
