//! What an embedder can tune: the listen address, room cap, connection cap, timings and per-client limits.

use std::net::SocketAddr;
use std::sync::Arc;

use super::ClusterConfig;
use crate::signaling::turn::TurnConfig;
use std::time::Duration;

/// Everything the server needs to start. [`ServerConfig::default`] is what `peercall-server` runs with;
/// [`ServerConfig::ephemeral`] is the same on `127.0.0.1:0`, for tests and for an app that embeds the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free port (read it back with [`super::Server::local_addr`]).
    pub listen: SocketAddr,
    /// The most connections one room holds; the next joiner gets `{"type":"full"}` and a clean close.
    pub room_cap: Option<usize>,
    /// The most TCP connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long a connection may stay silent before the server pings it; one more such interval
    /// without any frame (a pong is enough) and the connection is dropped.
    pub ping_interval: Duration,
    /// The shortest user-list window. A calm room sends its `userlist` at once; while its users
    /// keep changing it sends at most one list per window, and always one after the last change.
    /// The window grows with the room (see [`Self::userlist_delay_for`]) so that many joins to a
    /// large room cost a few broadcasts, not one each. A client that just logged in gets the list
    /// at once whatever the window.
    pub userlist_delay: Duration,
    /// Per-client limits: sizes, names, rates, queues.
    pub limits: Limits,
    /// TURN servers whose short-lived credentials each client gets after login (`iceservers`).
    pub turn: Option<Arc<TurnConfig>>,
    /// Serve wss (and https for `/healthz` and the page) with this certificate; plain ws when `None`.
    /// Build it from PEM files with [`crate::signaling::tls::server_config`].
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Share users and rooms with other nodes through Redis; one node on its own when `None`.
    pub cluster: Option<ClusterConfig>,
}

/// Per-client limits. Each one protects the server and the other clients from one client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message (and frame) accepted; a larger one gets `too-large` and a close (1009).
    pub max_message_bytes: usize,
    /// Longest display name, in characters.
    pub max_name_chars: usize,
    /// Sustained messages per second one client may send (token-bucket refill rate).
    pub messages_per_second: u32,
    /// How many messages one client may send in a burst (token-bucket size).
    pub burst: u32,
    /// Messages waiting to go out to one client; a client that lets more pile up is disconnected,
    /// so a slow reader never holds up the sender or the rest of the room.
    pub max_queued_messages: usize,
    /// Bytes waiting to go out to one client (the same rule, by size).
    pub max_queued_bytes: usize,
    /// How long one write to a client may block before the client is dropped as stuck.
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 6503)),
            room_cap: None,
            // A process may hold 20,000 files on our target machine; keep a few for logs and the listener.
            max_connections: 19_900,
            ping_interval: Duration::from_secs(20),
            userlist_delay: Duration::from_millis(2),
            limits: Limits::default(),
            turn: None,
            tls: None,
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// The default configuration on `127.0.0.1` and a port the kernel picks.
    pub fn ephemeral() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Self::default() }
    }

    /// The user-list window of a room of `members` connections: the shortest window plus
    /// 64 µs × members plus 20 ns × members² (100 members: +6.6 ms; 1,000: +84 ms; 10,000: +2.6 s;
    /// at most +5 s).
    ///
    /// One broadcast costs a write per member (on loopback here ~16 µs each, the far end's receive
    /// included) and every member a list of every member, O(members²) bytes. The linear term keeps
    /// a room's broadcasts near a quarter of a core whatever its size (with a window of 12 ms, 500
    /// one-by-one logins took 3.9 s; with 30 ms, 0.45 s), the square term caps the bytes as before,
    /// and a room of a few sees every change within the shortest window.
    pub fn userlist_delay_for(&self, members: usize) -> Duration {
        let members = members.min(1 << 20) as u64;
        let extra =
            Duration::from_nanos(64_000 * members + 20 * members * members).min(Duration::from_secs(5));
        self.userlist_delay + extra
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_name_chars: 64,
            messages_per_second: 200,
            burst: 400,
            max_queued_messages: 1024,
            max_queued_bytes: 1024 * 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}
