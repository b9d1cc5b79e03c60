//! Signaling: the MDN "Signaling and video calling" protocol over WebSocket, server and client.

pub mod protocol;
