//! The directory: who holds which name in which room, across every node that shares the rooms.
//!
//! The rooms (`room/`) route every message the same way whatever the deployment: a name resolves
//! to a local connection (its outbox) or to the node that holds it (the directory forwards it).
//! What differs is only the backend behind the [`Directory`] trait:
//! - [`InProcess`]: one node. Nothing is remote; the room's own state decides names.
//! - the Redis backend (`redis/`): several `peercall-server` nodes share one Redis. Names are
//!   claimed atomically in Redis keys, members are published in per-room hashes, targeted messages
//!   go to the holder's node channel and chat to the room channel (pub/sub), and heartbeat keys
//!   with an expiry tell when a node died.
//!
//! The layers point one way: the rooms call the directory; the directory never holds the rooms.
//! What arrives from other nodes comes back to them as [`Event`]s on a bounded channel, which the
//! server drains into the rooms. When Redis is unreachable a node keeps serving its own clients:
//! the directory answers "decide locally" and the node rejoins (re-publishing its members) when
//! Redis returns.

mod redis;
pub(crate) mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use self::redis::ClusterError;
pub(crate) use self::redis::Link;
use super::message::RelayKind;
pub(crate) use wire::{Envelope, NodeId};

/// A connection's id, as sent in `{"type":"id"}`. Ids only grow, so id order is join order.
pub(crate) type ConnId = u64;

/// How many events from other nodes may wait for the rooms. The rooms take each one without
/// waiting on anything, so the queue only fills when this node's CPU is saturated; then the Redis
/// link waits for room (its pub/sub reading slows down, nothing is dropped).
pub(crate) const EVENT_QUEUE: usize = 4096;

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
pub(crate) enum Health {
    /// One node on its own.
    Single,
    /// Part of a cluster, with Redis reachable.
    Joined { node: NodeId },
    /// Part of a cluster but Redis is unreachable: serving this node's clients only.
    Detached { node: NodeId },
}

/// A named client on another node, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteMember {
    pub node: NodeId,
    pub conn: ConnId,
    pub name: Arc<str>,
}

/// What the directory reports from the other nodes, for the rooms to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A message relayed by another node to one of this node's clients.
    Relay(Envelope),
    /// A chat message from a client on another node, as every client receives it.
    Chat { room: String, payload: String },
    /// The other nodes' named members of `room`, as Redis holds them now.
    Members { room: String, members: Vec<RemoteMember> },
    /// A node stopped beating: its clients are gone, and their call partners here get `hang-up`.
    NodeGone(NodeId),
    /// Redis is unreachable: the other nodes' clients leave the user lists until the node rejoins.
    Detached,
}

/// The backend behind the rooms' routing. Every method but [`Directory::claim`] returns at once
/// (the rooms call them under a room's lock): a backend queues the work and does it elsewhere.
pub(crate) trait Directory: Send + Sync + fmt::Debug {
    /// Claims `wanted`, or a free variant of it, for connection `conn` across every node.
    /// `None` means the caller decides among what it knows: always the case for one node, and the
    /// fallback of a node that cannot reach Redis.
    fn claim<'a>(&'a self, room: &'a str, wanted: &'a str, conn: ConnId) -> BoxFuture<'a, Option<String>>;

    /// Gives `name` up (after a rename or a disconnect) so another node's client may take it.
    fn release(&self, room: &str, name: &str, conn: ConnId);

    /// Publishes a member's name (`None`: the member left) to the other nodes' user lists.
    fn announce(&self, room: &str, conn: ConnId, name: Option<&str>);

    /// Hands a relayed message to `node`, which holds its target `to`; `from` is the sender's name.
    fn forward(&self, node: &str, kind: RelayKind, room: &str, to: &str, from: &str, payload: &str);

    /// Sends a chat message to the room's clients on every other node.
    fn publish_chat(&self, room: &str, payload: &str);

    /// This node has its first client in `room`: follow the room's events.
    fn room_opened(&self, room: &str);

    /// This node's last client in `room` left.
    fn room_closed(&self, room: &str);

    /// What `/healthz` says about the cluster.
    fn health(&self) -> Health;
}

/// One node on its own: nothing is remote, so there is nothing to tell anyone.
#[derive(Debug, Default)]
pub(crate) struct InProcess;

impl Directory for InProcess {
    fn claim<'a>(&'a self, _: &'a str, _: &'a str, _: ConnId) -> BoxFuture<'a, Option<String>> {
        Box::pin(std::future::ready(None))
    }

    fn release(&self, _: &str, _: &str, _: ConnId) {}

    fn announce(&self, _: &str, _: ConnId, _: Option<&str>) {}

    fn forward(&self, _: &str, _: RelayKind, _: &str, _: &str, _: &str, _: &str) {}

    fn publish_chat(&self, _: &str, _: &str) {}

    fn room_opened(&self, _: &str) {}

    fn room_closed(&self, _: &str) {}

    fn health(&self) -> Health {
        Health::Single
    }
}
