//! The directory: who holds which name in which room, across every node that shares the rooms.
//!
//! The rooms (`room.rs`) route every message the same way whatever the deployment: a name resolves
//! to a local connection (its outbox) or to the node that holds it (the directory forwards it).
//! What differs is only the backend behind the directory:
//! - [`Directory::InProcess`]: one node. Nothing is remote; the room's own state decides names.
//! - [`Directory::Redis`]: several `peercall-server` nodes share one Redis. Names are claimed
//!   atomically in Redis keys, members are published in per-room hashes, targeted messages go to the
//!   holder's node channel and chat to the room channel (pub/sub), and heartbeat keys with an expiry
//!   tell when a node died. See `redis.rs`.
//!
//! When Redis is unreachable a node keeps serving its own clients: the directory answers "decide
//! locally" and the node rejoins (re-publishing its members) when Redis returns.

mod redis;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use self::redis::ClusterError;
pub(crate) use self::redis::Link;
use super::message::RelayKind;
use super::room::ConnId;
pub(crate) use wire::NodeId;

/// How a node joins a cluster (`peercall-server --redis`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The Redis every node shares, e.g. `redis://10.0.0.5:6379`.
    pub redis_url: String,
    /// How often a node says it is alive (and checks the others).
    pub heartbeat: Duration,
    /// How long after its last heartbeat a node counts as dead: its users leave everyone's user
    /// lists and their call partners get `hang-up`.
    pub node_ttl: Duration,
}

impl ClusterConfig {
    /// A cluster on `redis_url` with the default timings (heartbeat 1 s, dead after 3 s).
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(3),
        }
    }
}

/// What `/healthz` reports about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    /// One node on its own.
    Single,
    /// Part of a cluster, with Redis reachable.
    Joined { node: NodeId },
    /// Part of a cluster but Redis is unreachable: serving this node's clients only.
    Detached { node: NodeId },
}

/// The backend behind the rooms' routing. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) enum Directory {
    InProcess,
    Redis(Arc<Link>),
}

impl Directory {
    /// Claims `wanted`, or a free variant of it, for connection `conn` across every node.
    /// `None` means the caller decides among what it knows: always the case for one node, and the
    /// fallback of a node that cannot reach Redis.
    pub(super) async fn claim(&self, room: &str, wanted: &str, conn: ConnId) -> Option<String> {
        match self {
            Directory::InProcess => None,
            Directory::Redis(link) => link.claim(room, wanted, conn).await,
        }
    }

    /// Gives `name` up (after a rename or a disconnect) so another node's client may take it.
    pub(super) fn release(&self, room: &str, name: &str, conn: ConnId) {
        if let Directory::Redis(link) = self {
            link.release(room, name, conn);
        }
    }

    /// Publishes a member's name (`None`: the member left) to the other nodes' user lists.
    pub(super) fn announce(&self, room: &str, conn: ConnId, name: Option<&str>) {
        if let Directory::Redis(link) = self {
            link.announce(room, conn, name);
        }
    }

    /// Hands a relayed message to the node that holds its target.
    pub(super) fn forward(
        &self,
        node: &str,
        kind: RelayKind,
        room: &str,
        to: &str,
        from: &str,
        payload: &str,
    ) {
        if let Directory::Redis(link) = self {
            link.forward(node, kind, room, to, from, payload);
        }
    }

    /// Sends a chat message to the room's clients on every other node.
    pub(super) fn publish_chat(&self, room: &str, payload: &str) {
        if let Directory::Redis(link) = self {
            link.publish_chat(room, payload);
        }
    }

    /// This node has its first client in `room`: follow the room's events.
    pub(super) fn room_opened(&self, room: &str) {
        if let Directory::Redis(link) = self {
            link.room_opened(room);
        }
    }

    /// This node's last client in `room` left.
    pub(super) fn room_closed(&self, room: &str) {
        if let Directory::Redis(link) = self {
            link.room_closed(room);
        }
    }

    pub(super) fn health(&self) -> Health {
        match self {
            Directory::InProcess => Health::Single,
            Directory::Redis(link) if link.is_up() => Health::Joined { node: Arc::clone(link.node()) },
            Directory::Redis(link) => Health::Detached { node: Arc::clone(link.node()) },
        }
    }
}
