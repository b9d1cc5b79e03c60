//! Signaling: the MDN "Signaling and video calling" protocol over WebSocket, server and client.

pub mod client;
pub mod protocol;
pub mod server;
pub mod tls;
pub mod turn;
