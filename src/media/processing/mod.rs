//! The microphone's audio processing: echo cancellation, noise suppression and gain control
//! between the microphone and the Opus encoder, with what the speaker plays as the echo reference.
//!
//! # Layout
//! - `stage`: the chain itself on 10 ms frames at 48 kHz (WebRTC's audio processing: high-pass,
//!   delay-agnostic AEC, NS, AGC, voice detection); pure.
//! - `reference`: the speaker's tap: what it handed its device, for the canceller to subtract.
//! - `chain`: the stage as a call runs it: 20 ms chunks, the reference resampled to 48 kHz, switches
//!   mid-call, the level meter and voice flag, bypass with a notice when the stage fails.
//! - `room`: offline test signals: speech-like voices, steady noise, a simulated room.
//! - `score`: ERLE, double talk, re-convergence, noise suppression gain, as tests and `aec-bench` measure them.

pub mod chain;
pub mod reference;
pub mod room;
pub mod score;
pub mod stage;

pub use chain::{MicProcessing, ProcessingControl};
pub use reference::EchoReference;
pub use stage::{Stage, StageError, Switches, FRAME};

#[cfg(test)]
mod tests;
