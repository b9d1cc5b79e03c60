//! The Redis backend of the directory: one [`Link`] per node.
//!
//! What lives in Redis (keys in `wire.rs`):
//! - a name claim per room and name, holding `<node>/<conn>`, taken by a Lua script (atomic, so two
//!   nodes never both get a name); a claim whose node is dead counts as free;
//! - a hash per room of every node's named members, read again on each change notice;
//! - a heartbeat key per node, with an expiry: gone means the node is dead;
//! - one channel per node (relayed messages to its clients) and one per room (member changes, chat).
//!
//! # Layout
//! - here: the [`Link`] handle the rooms call (it only queues writes, never waits, but for a claim)
//!   and the state it shares with its tasks;
//! - `scripts`: the Lua scripts and the commands that carry them;
//! - `task`: the one task that owns the pub/sub connection and the queue of writes, name claims
//!   included (so they land in order with releases; the session waits for its claim's answer).
//!   Writes are sent in pipelines: one relayed message is one `PUBLISH` among many;
//! - `liveness`: the heartbeat (a task of its own), finding dead nodes and cleaning after them.

mod liveness;
mod scripts;
mod task;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::warn;

use super::wire::{self, NodeId, RoomEvent};
use super::{ClusterConfig, ConnId, Directory, Event, Health, EVENT_QUEUE};
use crate::signaling::server::message::RelayKind;

/// How long a session waits for a name claim before deciding locally.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes waiting for the link task. The bound is about a second of cross-node relaying at the
/// measured saturation (~250,000 msg/s), so it fills only when Redis stops keeping up. A full
/// queue never stalls a client: the write is dropped (logged once per overflow) and the link then
/// re-publishes this node's members and names from [`Core::local`] (as after an outage), so what
/// is lost is only the relayed messages and chat of that moment; a claim that finds the queue
/// full is decided on this node, as when Redis is unreachable.
const OPS_QUEUE: usize = 1 << 18;

/// A write for the link task to send.
#[derive(Debug)]
enum Op {
    Publish {
        channel: String,
        message: String,
    },
    /// A member's name (`None`: left) goes into (out of) the room's hash, and the room hears of it.
    Member {
        room: String,
        conn: ConnId,
        name: Option<String>,
    },
    Release {
        room: String,
        name: String,
        conn: ConnId,
    },
    /// A name claim, queued like every write so that it lands after this node's earlier releases
    /// (a client renaming `bob` → `carl` → `bob` must not have its new claim deleted by the old release).
    Claim {
        room: String,
        wanted: String,
        conn: ConnId,
        reply: oneshot::Sender<Option<String>>,
    },
    Subscribe {
        room: String,
    },
    Unsubscribe {
        room: String,
    },
}

/// This node's rooms and their named clients (id, name), as this node announced them.
type Snapshot = Vec<(String, Vec<(ConnId, String)>)>;

/// What the handle and the link's tasks share.
struct Core {
    node: NodeId,
    config: ClusterConfig,
    client: redis::Client,
    /// The command connection; `None` while Redis is unreachable.
    conn: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    /// Set by the heartbeat when it finds this node's heartbeat key gone while joined: another node
    /// took it for dead (or Redis restarted) and removed its members; the link rejoins.
    reaped: AtomicBool,
    /// Set when a write was dropped on a full queue: the link publishes everything again.
    overflowed: AtomicBool,
    /// This node's rooms and named members, kept as the rooms announce them (not as the queue
    /// delivers them): what a (re)join publishes, whatever writes were dropped meanwhile.
    local: Mutex<BTreeMap<String, BTreeMap<ConnId, String>>>,
}

impl Core {
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Option<MultiplexedConnection> {
        self.conn.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_conn(&self, conn: Option<MultiplexedConnection>) {
        *self.conn.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = conn;
    }

    fn local(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<ConnId, String>>> {
        // Every change to the map is one insert or remove: a poisoned lock still holds a whole map.
        self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> Snapshot {
        self.local()
            .iter()
            .map(|(room, members)| {
                (room.clone(), members.iter().map(|(&conn, name)| (conn, name.clone())).collect())
            })
            .collect()
    }
}

/// This node's connection to the cluster: the rooms' [`Directory`]. Dropping it (with the rooms,
/// when the server stops) ends the link's task, which flushes the last writes and leaves.
pub(crate) struct Link {
    core: Arc<Core>,
    ops: mpsc::Sender<Op>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.core.node)
            .field("up", &self.core.is_up())
            .finish_non_exhaustive()
    }
}

/// Why a node could not join its cluster at start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL does not parse.
    #[error("{url:?} is not a Redis URL (want redis://host:port): {source}")]
    Url {
        /// The URL given.
        url: String,
        /// What the parser said.
        source: redis::RedisError,
    },
    /// Nothing answered, or Redis refused us.
    #[error("cannot reach Redis at {url}: {why} (is redis-server running there?)")]
    Unreachable {
        /// The URL given.
        url: String,
        /// What went wrong.
        why: String,
    },
}

impl Link {
    /// Connects to Redis and joins the cluster: an unreachable Redis at start is an error (the
    /// operator asked for a cluster). Joining before the first client is served means names are
    /// claimed in Redis from the start. What the other nodes send arrives on the receiver.
    pub(crate) async fn join(
        mut config: ClusterConfig,
    ) -> Result<(Link, mpsc::Receiver<Event>), ClusterError> {
        // Timers panic on zero and overflow on absurd lengths: keep both in a sane range.
        config.heartbeat = config.heartbeat.clamp(Duration::from_millis(10), Duration::from_secs(3600));
        config.node_ttl = config.node_ttl.clamp(config.heartbeat * 2, Duration::from_secs(3 * 3600));
        let url = config.redis_url.clone();
        let client = redis::Client::open(url.as_str())
            .map_err(|source| ClusterError::Url { url: url.clone(), source })?;
        let unreachable = |why: String| ClusterError::Unreachable { url: url.clone(), why };
        let mut first = task::open(&client).await.map_err(unreachable)?;
        let node: NodeId = Arc::from(format!("{:012x}", rand::random::<u64>() >> 16));
        let core = Arc::new(Core {
            node,
            config,
            client,
            conn: RwLock::new(Some(first.conn.clone())),
            up: AtomicBool::new(false),
            reaped: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            local: Mutex::default(),
        });
        let (ops_tx, ops) = mpsc::channel(OPS_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let mut task = task::Task::new(Arc::clone(&core), ops, events_tx);
        task.join(&mut first).await.map_err(|error| unreachable(error.to_string()))?;
        tokio::spawn(task.run(first));
        Ok((Link { core, ops: ops_tx }, events))
    }

    fn queue(&self, op: Op) {
        match self.ops.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if !self.core.overflowed.swap(true, Ordering::Relaxed) {
                    warn!(
                        node = %self.core.node,
                        "Redis writes queue full ({OPS_QUEUE}): dropping writes; members are published again once it drains"
                    );
                }
            }
            // The task ends only when this handle is dropped.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    async fn claim_in_redis(&self, room: &str, wanted: &str, conn: ConnId) -> Option<String> {
        if !self.core.is_up() {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.queue(Op::Claim { room: room.to_owned(), wanted: wanted.to_owned(), conn, reply });
        match timeout(CLAIM_TIMEOUT, answer).await {
            Ok(Ok(name)) => name,
            // The claim was dropped: the queue was full, or Redis went away meanwhile.
            Ok(Err(_)) => {
                warn!(
                    "name claim dropped (Redis unreachable or its queue full); deciding on this node alone"
                );
                None
            }
            // A late answer is released by the link (nobody is waiting for it).
            Err(_) => {
                warn!("name claim timed out in Redis; deciding on this node alone");
                None
            }
        }
    }
}

impl Directory for Link {
    fn claim<'a>(&'a self, room: &'a str, wanted: &'a str, conn: ConnId) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.claim_in_redis(room, wanted, conn))
    }

    fn release(&self, room: &str, name: &str, conn: ConnId) {
        self.queue(Op::Release { room: room.to_owned(), name: name.to_owned(), conn });
    }

    fn announce(&self, room: &str, conn: ConnId, name: Option<&str>) {
        {
            let mut local = self.core.local();
            let members = local.entry(room.to_owned()).or_default();
            match name {
                Some(name) => members.insert(conn, name.to_owned()),
                None => members.remove(&conn),
            };
        }
        self.queue(Op::Member { room: room.to_owned(), conn, name: name.map(str::to_owned) });
    }

    fn forward(&self, node: &str, kind: RelayKind, room: &str, to: &str, from: &str, payload: &str) {
        let message = wire::encode_envelope(kind, [room, to, from, &self.core.node], payload);
        self.queue(Op::Publish { channel: wire::node_channel(node), message });
    }

    fn publish_chat(&self, room: &str, payload: &str) {
        let event = RoomEvent::Chat { node: self.core.node.to_string(), payload: payload.to_owned() };
        self.queue(Op::Publish { channel: wire::room_channel(room), message: event.encode() });
    }

    fn room_opened(&self, room: &str) {
        self.core.local().entry(room.to_owned()).or_default();
        self.queue(Op::Subscribe { room: room.to_owned() });
    }

    fn room_closed(&self, room: &str) {
        self.core.local().remove(room);
        self.queue(Op::Unsubscribe { room: room.to_owned() });
    }

    fn health(&self) -> Health {
        let node = Arc::clone(&self.core.node);
        if self.core.is_up() {
            Health::Joined { node }
        } else {
            Health::Detached { node }
        }
    }
}
