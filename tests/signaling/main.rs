//! End-to-end tests of the signaling server: a real server on 127.0.0.1:0, real WebSocket clients.
//!
//! One test binary, one module per area (`cargo test --test signaling`).

mod cluster;
mod hardening;
mod protocol;
mod randomized;
mod support;
mod tls;
mod userlist;
