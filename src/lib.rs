//! Peercall: native 1:1 video calls, with its own MDN-compatible signaling server.
//!
//! # Layout
//! - [`signaling`]: the JSON-over-WebSocket protocol ([`signaling::protocol`]), the server
//!   ([`signaling::server`]), the client the call engine uses ([`signaling::client`]) and wss
//!   certificates and trust ([`signaling::tls`]).
//! - [`call`]: the call engine, which knows nothing of windows: the [`call::Engine`] handle, its
//!   commands and events (`api`), its settings (`config`) and typed errors ([`call::error`]); the pure
//!   call machine ([`call::machine`]: inputs and `now` in, actions out, timers polled) and the one
//!   driver task that carries its actions out (`driver`); which video codec a call uses
//!   ([`call::codecs`], pure, and `negotiation`, against webrtc-rs's tracks); the peer connection with
//!   our codecs and PLI delivery ([`call::peer`]), the send and receive pipelines with their controls ([`call::media`]),
//!   congestion control ([`call::congestion`]: TWCC estimate and pacer), the encoder's ladder
//!   ([`call::rate`]), the call slot users see ([`call::state`]) and statistics
//!   ([`call::stats`]).
//! - [`media`]: frames and sources ([`media::source`]: the synthetic stamped pattern, the stamped
//!   camera-like scene ([`media::scene`], stamp in [`media::stamp`]), Y4M clips ([`media::y4m`]) and tone, and
//!   cameras, microphones and speakers in [`media::devices`]; shared screens and windows in
//!   [`media::screen`]: X11 capture, the Wayland seam, a capture thread), the microphone's echo
//!   cancellation, noise suppression and gain control with the speaker's output as the echo reference
//!   ([`media::processing`]), the video playout clock ([`media::playout`]), video codecs behind one seam
//!   ([`media::codec`]: H.264 in `h264`, VP8/VP9 on libvpx in `vpx`), Opus ([`media::opus_codec`])
//!   and RTP frame assembly ([`media::assembler`]).
//! - [`headless`]: the windowless front end (`peercall --headless`): events and stats on stdout.
//! - [`ui`]: the eframe window, views only: sends the engine commands, draws its events and frames.
//! - [`link_emulator`]: test and benchmark support, not used by the app: two network namespaces
//!   joined through TUN devices by a forwarder that delays, jitters, loses and rate-limits packets.

pub mod call;
pub mod headless;
pub mod link_emulator;
pub mod media;
pub mod signaling;
pub mod ui;
