//! The Redis backend of the directory: one [`Link`] per node.
//!
//! What lives in Redis (keys in `wire.rs`):
//! - a name claim per room and name, holding `<node>/<conn>`, taken by a Lua script (atomic, so two
//!   nodes never both get a name); a claim whose node is dead counts as free;
//! - a hash per room of every node's named members, read again on each change notice;
//! - a heartbeat key per node, with an expiry: gone means the node is dead;
//! - one channel per node (relayed messages to its clients) and one per room (member changes, chat).
//!
//! One task owns the pub/sub connection and the queue of writes, name claims included (so they land
//! in order with releases; the session waits for its claim's answer). Writes are sent in pipelines:
//! one relayed message is one `PUBLISH` among many. The heartbeat has a task of its own.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::wire::{self, Envelope, NodeId, RoomEvent};
use super::ClusterConfig;
use crate::signaling::server::message::RelayKind;
use crate::signaling::server::room::{ConnId, RemoteMember, RoomSnapshot, Rooms};

/// How long a session waits for a name claim before deciding locally.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retry pauses while Redis is unreachable.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Name variants tried in one claim before giving up to the local decision.
const MAX_VARIANTS: u32 = 1000;
/// Queued writes sent in one pipeline.
const BATCH: usize = 512;

/// Claims a name or its first free variant. A claim held by a node without a heartbeat is free.
/// KEYS: none (the keys depend on the variant). ARGV: name-key prefix, wanted, owner
/// (`<node>/<conn>`), suffix key, heartbeat-key prefix, most variants to try.
const CLAIM_LUA: &str = r"
local function free(key)
  local holder = redis.call('GET', key)
  if not holder or holder == ARGV[3] then return true end
  local node = string.match(holder, '^(.*)/')
  return node ~= nil and redis.call('EXISTS', ARGV[5] .. node) == 0
end
local name = ARGV[2]
for _ = 1, tonumber(ARGV[6]) do
  if free(ARGV[1] .. name) then
    redis.call('SET', ARGV[1] .. name, ARGV[3])
    return name
  end
  name = ARGV[2] .. redis.call('INCR', ARGV[4])
end
return false
";

/// Deletes a claim if (and only if) `owner` still holds it. KEYS: the claim. ARGV: owner.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Removes a dead node's members from one room's hash, with their name claims, unless the node is
/// alive after all (it may have rejoined since it was judged): the check and the removal are one
/// step. KEYS: the member hash. ARGV: the dead node, its heartbeat key, the room's name-key prefix.
const REAP_LUA: &str = r"
if redis.call('EXISTS', ARGV[2]) == 1 then return -1 end
local fields = redis.call('HGETALL', KEYS[1])
local removed = 0
for i = 1, #fields, 2 do
  local field, name = fields[i], fields[i + 1]
  if string.sub(field, 1, #ARGV[1] + 1) == ARGV[1] .. '/' then
    redis.call('HDEL', KEYS[1], field)
    if redis.call('GET', ARGV[3] .. name) == field then redis.call('DEL', ARGV[3] .. name) end
    removed = removed + 1
  end
end
return removed
";

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

/// This node's connection to the cluster.
pub(crate) struct Link {
    node: NodeId,
    config: ClusterConfig,
    client: redis::Client,
    /// The command connection; `None` while Redis is unreachable.
    conn: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    /// Set by the heartbeat when it finds this node's heartbeat key gone while joined: another node
    /// took it for dead (or Redis restarted) and removed its members; the link rejoins.
    reaped: AtomicBool,
    ops: mpsc::UnboundedSender<Op>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("node", &self.node).field("up", &self.is_up()).finish_non_exhaustive()
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

/// The link's task, ready to start once the rooms exist.
pub(crate) struct LinkTask {
    link: Arc<Link>,
    ops: mpsc::UnboundedReceiver<Op>,
    first: Connected,
}

/// Live connections to Redis.
struct Connected {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
}

/// Why the link task's serving loop ended.
enum Ended {
    /// The rooms are gone (the server stopped): leave the cluster.
    Closed,
    /// Redis failed: serve locally and reconnect.
    Lost(String),
}

impl Link {
    /// Connects to Redis: an unreachable Redis at start is an error (the operator asked for a cluster).
    pub(crate) async fn connect(mut config: ClusterConfig) -> Result<(Arc<Link>, LinkTask), ClusterError> {
        // Timers panic on zero and overflow on absurd lengths: keep both in a sane range.
        config.heartbeat = config.heartbeat.clamp(Duration::from_millis(10), Duration::from_secs(3600));
        config.node_ttl = config.node_ttl.clamp(config.heartbeat * 2, Duration::from_secs(3 * 3600));
        let url = config.redis_url.clone();
        let client = redis::Client::open(url.as_str())
            .map_err(|source| ClusterError::Url { url: url.clone(), source })?;
        let first = open(&client).await.map_err(|why| ClusterError::Unreachable { url, why })?;
        let node: NodeId = Arc::from(format!("{:012x}", rand::random::<u64>() >> 16));
        let (ops_tx, ops) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            node,
            config,
            client,
            conn: RwLock::new(Some(first.conn.clone())),
            up: AtomicBool::new(false),
            reaped: AtomicBool::new(false),
            ops: ops_tx,
        });
        Ok((Arc::clone(&link), LinkTask { link, ops, first }))
    }

    pub(crate) fn node(&self) -> &NodeId {
        &self.node
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Option<MultiplexedConnection> {
        self.conn.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_conn(&self, conn: Option<MultiplexedConnection>) {
        *self.conn.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = conn;
    }

    fn queue(&self, op: Op) {
        // The task ends only with the rooms; a write after that has nobody left to matter to.
        let _ = self.ops.send(op);
    }

    /// See [`super::Directory::claim`].
    pub(crate) async fn claim(&self, room: &str, wanted: &str, conn: ConnId) -> Option<String> {
        if !self.is_up() {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.queue(Op::Claim { room: room.to_owned(), wanted: wanted.to_owned(), conn, reply });
        match timeout(CLAIM_TIMEOUT, answer).await {
            Ok(Ok(name)) => name,
            // The link dropped the claim: Redis went away meanwhile.
            Ok(Err(_)) => {
                warn!("name claim lost with the Redis connection; deciding on this node alone");
                None
            }
            // A late answer is released by the link (nobody is waiting for it).
            Err(_) => {
                warn!("name claim timed out in Redis; deciding on this node alone");
                None
            }
        }
    }

    /// The claim script's call: `wanted` or, up to `variants` tries, a free variant of it.
    fn claim_cmd(&self, room: &str, wanted: &str, conn: ConnId, variants: u32) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM_LUA)
            .arg(0)
            .arg(wire::name_key_prefix(room))
            .arg(wanted)
            .arg(wire::member_field(&self.node, conn))
            .arg(wire::suffix_key(room))
            .arg(wire::NODE_ALIVE_KEY_PREFIX)
            .arg(variants);
        cmd
    }

    pub(crate) fn release(&self, room: &str, name: &str, conn: ConnId) {
        self.queue(Op::Release { room: room.to_owned(), name: name.to_owned(), conn });
    }

    pub(crate) fn announce(&self, room: &str, conn: ConnId, name: Option<&str>) {
        self.queue(Op::Member { room: room.to_owned(), conn, name: name.map(str::to_owned) });
    }

    pub(crate) fn forward(
        &self,
        node: &str,
        kind: RelayKind,
        room: &str,
        to: &str,
        from: &str,
        payload: &str,
    ) {
        let message = wire::encode_envelope(kind, [room, to, from, &self.node], payload);
        self.queue(Op::Publish { channel: wire::node_channel(node), message });
    }

    pub(crate) fn publish_chat(&self, room: &str, payload: &str) {
        let event = RoomEvent::Chat { node: self.node.to_string(), payload: payload.to_owned() };
        self.queue(Op::Publish { channel: wire::room_channel(room), message: event.encode() });
    }

    pub(crate) fn room_opened(&self, room: &str) {
        self.queue(Op::Subscribe { room: room.to_owned() });
    }

    pub(crate) fn room_closed(&self, room: &str) {
        self.queue(Op::Unsubscribe { room: room.to_owned() });
    }
}

/// Opens the command and pub/sub connections.
async fn open(client: &redis::Client) -> Result<Connected, String> {
    let connecting = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        let (sink, stream) = client.get_async_pubsub().await?.split();
        Ok::<_, redis::RedisError>(Connected { conn, sink, stream })
    };
    match timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

impl LinkTask {
    /// Joins the cluster, then runs the link until the rooms are dropped (the server stopped).
    /// Joining before the first client is served means names are claimed in Redis from the start.
    pub(crate) async fn start(self, rooms: Weak<Rooms>) -> Result<(), ClusterError> {
        let LinkTask { link, ops, mut first } = self;
        join(&link, &mut first, &rooms).await.map_err(|error| ClusterError::Unreachable {
            url: link.config.redis_url.clone(),
            why: error.to_string(),
        })?;
        tokio::spawn(heartbeat(Arc::clone(&link), rooms.clone()));
        tokio::spawn(run(link, ops, first, rooms));
        Ok(())
    }
}

/// Says this node is alive, every heartbeat, on a task of its own: nothing the link waits for (a
/// rejoin, a large refresh, a reap) may hold it back past the TTL, or the others take the node for
/// dead. Ends with the rooms.
async fn heartbeat(link: Arc<Link>, rooms: Weak<Rooms>) {
    let mut ticker = tokio::time::interval(link.config.heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let key = wire::node_alive_key(&link.node);
    let ttl_ms = link.config.node_ttl.as_millis() as u64;
    while rooms.strong_count() > 0 {
        ticker.tick().await;
        if !link.is_up() {
            continue;
        }
        let Some(mut redis) = link.conn() else { continue };
        // GET: the key's value before this SET. None while joined means it expired or was deleted.
        let before: redis::RedisResult<Option<String>> =
            redis::cmd("SET").arg(&key).arg(1).arg("PX").arg(ttl_ms).arg("GET").query_async(&mut redis).await;
        match before {
            Ok(None) if link.is_up() => {
                warn!(node = %link.node, "this node's heartbeat had lapsed (taken for dead, or Redis restarted): rejoining");
                link.reaped.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            // The link notices a dead connection on its own.
            Err(error) => debug!(%error, "heartbeat failed"),
        }
    }
}

/// The link's life: serve while Redis answers; when it fails, serve locally and rejoin when it returns.
async fn run(link: Arc<Link>, mut ops: mpsc::UnboundedReceiver<Op>, joined: Connected, rooms: Weak<Rooms>) {
    let mut live = joined;
    loop {
        match serve(&link, &mut live, &mut ops, &rooms).await {
            Ended::Closed => {
                leave(&link, &mut live).await;
                return;
            }
            Ended::Lost(why) => {
                warn!(node = %link.node, why, "lost Redis: serving this node's clients only until it returns");
                link.up.store(false, Ordering::Relaxed);
                link.set_conn(None);
                if let Some(rooms) = rooms.upgrade() {
                    rooms.forget_remote();
                }
            }
        }
        let mut pause = RETRY_FIRST;
        live = loop {
            if rooms.strong_count() == 0 {
                return;
            }
            // Down: writes have nowhere to go (a rejoin re-publishes everything), so drop them.
            tokio::select! {
                op = ops.recv() => if op.is_none() { return },
                () = sleep(pause) => {
                    pause = (pause * 2).min(RETRY_MAX);
                    let Ok(mut connected) = open(&link.client).await.map_err(|why| debug!(why, "Redis still unreachable")) else {
                        continue;
                    };
                    match join(&link, &mut connected, &rooms).await {
                        Ok(()) => break connected,
                        Err(error) => debug!(%error, "rejoining the cluster failed"),
                    }
                }
            }
        };
    }
}

/// (Re)joins the cluster: heartbeat, this node's channel, and every local room's members and
/// names published again (after a Redis restart nothing of them is left).
async fn join(link: &Link, live: &mut Connected, rooms: &Weak<Rooms>) -> redis::RedisResult<()> {
    beat(link, &mut live.conn).await?;
    live.sink.subscribe(wire::node_channel(&link.node)).await?;
    let snapshot = rooms.upgrade().map(|rooms| rooms.snapshot()).unwrap_or_default();
    for (room, members) in &snapshot {
        live.sink.subscribe(wire::room_channel(room)).await?;
        for (conn, name) in members {
            let claimed: Option<String> =
                link.claim_cmd(room, name, *conn, 1).query_async(&mut live.conn).await?;
            if claimed.as_deref() != Some(&**name) {
                warn!(room = %room, name = %name, "after the Redis outage another node's client holds this name too");
            }
            member_writes(&mut redis::pipe(), &link.node, room, *conn, Some(name))
                .query_async::<()>(&mut live.conn)
                .await?;
        }
    }
    prune(link, &mut live.conn, &snapshot).await?;
    link.set_conn(Some(live.conn.clone()));
    link.reaped.store(false, Ordering::Relaxed);
    link.up.store(true, Ordering::Relaxed);
    info!(node = %link.node, rooms = snapshot.len(), "joined the cluster");
    // Read every room's members now that this node's are back in.
    if let Some(rooms) = rooms.upgrade() {
        for (room, _) in &snapshot {
            refresh(link, &mut live.conn, &rooms, room).await?;
        }
    }
    Ok(())
}

/// Removes what this node left in Redis for clients that went away while it was cut off
/// (their leave never reached Redis), so their names are free again.
async fn prune(
    link: &Link,
    redis: &mut MultiplexedConnection,
    snapshot: &[RoomSnapshot],
) -> redis::RedisResult<()> {
    let present: HashSet<(&str, ConnId)> = snapshot
        .iter()
        .flat_map(|(room, members)| members.iter().map(move |(conn, _)| (&**room, *conn)))
        .collect();
    let rooms: Vec<String> =
        redis::cmd("SMEMBERS").arg(wire::node_rooms_key(&link.node)).query_async(redis).await?;
    for room in &rooms {
        let fields: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(wire::members_key(room)).query_async(redis).await?;
        let mut pipe = redis::pipe();
        for (field, name) in &fields {
            match wire::parse_member_field(field) {
                Some((node, conn)) if node == &*link.node && !present.contains(&(room.as_str(), conn)) => {
                    pipe.hdel(wire::members_key(room), field).ignore();
                    release_writes(&mut pipe, room, name, field);
                }
                _ => {}
            }
        }
        pipe.publish(wire::room_channel(room), RoomEvent::Members { node: link.node.to_string() }.encode())
            .ignore();
        pipe.query_async::<()>(redis).await?;
    }
    Ok(())
}

/// The link's loop while Redis is reachable.
async fn serve(
    link: &Link,
    live: &mut Connected,
    ops: &mut mpsc::UnboundedReceiver<Op>,
    rooms: &Weak<Rooms>,
) -> Ended {
    let mut heartbeat = tokio::time::interval(link.config.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Nodes that (re)joined with us, after a Redis restart, get as long as a dead node has to
    // show up again before they are taken for dead.
    let judge_from = Instant::now() + link.config.node_ttl * 2;
    let mut stale: HashSet<String> = HashSet::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // The link holds a sender of its own queue, so the queue never closes: the rooms going
        // away (checked at least every heartbeat) is what ends it. Their last leaves go out first.
        if rooms.strong_count() == 0 {
            while let Ok(op) = ops.try_recv() {
                batch.push(op);
            }
            if let Err(error) = send(link, live, &mut batch, &mut stale).await {
                debug!(%error, "the last writes did not reach Redis");
            }
            return Ended::Closed;
        }
        if link.reaped.swap(false, Ordering::Relaxed) {
            // Our members were removed from Redis: rejoining publishes them again.
            return Ended::Lost("this node was taken for dead".into());
        }
        // Unbiased: neither the queue of writes nor the incoming messages can starve the other.
        let result = tokio::select! {
            _ = heartbeat.tick() => check_nodes(link, &mut live.conn, rooms, Instant::now() >= judge_from).await,
            count = ops.recv_many(&mut batch, BATCH) => {
                if count == 0 {
                    return Ended::Closed;
                }
                send(link, live, &mut batch, &mut stale).await
            }
            message = live.stream.next() => {
                // Gone rooms: the top of the loop flushes the last writes and ends.
                let Some(rooms) = rooms.upgrade() else { continue };
                let mut message = message;
                // What has already arrived, up to a batch, before the queue gets its turn again.
                for _ in 0..BATCH {
                    match message {
                        Some(received) => on_message(link, &rooms, &received, &mut stale),
                        None => return Ended::Lost("the subscription connection closed".into()),
                    }
                    match live.stream.next().now_or_never() {
                        Some(next) => message = next,
                        None => break,
                    }
                }
                Ok(())
            }
            // Often ready: a burst of changes to a room still costs one read, as it waits its turn.
            () = std::future::ready(()), if !stale.is_empty() => {
                let Some(rooms) = rooms.upgrade() else { continue };
                let mut result = Ok(());
                for room in std::mem::take(&mut stale) {
                    result = refresh(link, &mut live.conn, &rooms, &room).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
        };
        if let Err(error) = result {
            return Ended::Lost(error.to_string());
        }
    }
}

/// A pub/sub message: a relayed message for a client here, or a room's event.
fn on_message(link: &Link, rooms: &Rooms, message: &redis::Msg, stale: &mut HashSet<String>) {
    let channel = message.get_channel_name();
    let Ok(text) = message.get_payload::<String>() else { return };
    if let Some(room) = wire::room_of_channel(channel) {
        match RoomEvent::decode(&text) {
            Some(RoomEvent::Members { node }) if node != *link.node => {
                stale.insert(room.to_owned());
            }
            Some(RoomEvent::Chat { node, payload }) if node != *link.node => {
                rooms.deliver_chat(room, payload.into());
            }
            Some(_) => {}
            None => debug!(channel, "ignored a malformed room event"),
        }
    } else if let Some(envelope) = Envelope::decode(&text) {
        rooms.deliver(envelope);
    } else {
        debug!(channel, "ignored a malformed node message");
    }
}

/// Sends queued writes as one pipeline (subscriptions go over the pub/sub connection).
async fn send(
    link: &Link,
    live: &mut Connected,
    batch: &mut Vec<Op>,
    stale: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let mut claims = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::Claim { room, wanted, conn, reply } => {
                pipe.add_command(link.claim_cmd(&room, &wanted, conn, MAX_VARIANTS));
                claims.push((room, conn, reply));
            }
            Op::Publish { channel, message } => {
                pipe.publish(channel, message).ignore();
            }
            Op::Member { room, conn, name } => {
                member_writes(&mut pipe, &link.node, &room, conn, name.as_deref());
            }
            Op::Release { room, name, conn } => {
                release_writes(&mut pipe, &room, &name, &wire::member_field(&link.node, conn));
            }
            Op::Subscribe { room } => {
                live.sink.subscribe(wire::room_channel(&room)).await?;
                // Learn who is already there.
                stale.insert(room);
            }
            Op::Unsubscribe { room } => {
                live.sink.unsubscribe(wire::room_channel(&room)).await?;
                // No member of ours is left there: nothing to clean up there if we die.
                pipe.srem(wire::node_rooms_key(&link.node), &room).ignore();
                stale.remove(&room);
            }
        }
    }
    if pipe.cmd_iter().next().is_none() {
        // Only subscriptions this time: Redis refuses an empty pipeline.
        return Ok(());
    }
    // Every write but the claims is ignored: the answers are the claims', in order.
    let claimed: Vec<Option<String>> = pipe.query_async(&mut live.conn).await?;
    for ((room, conn, reply), name) in claims.into_iter().zip(claimed) {
        if let Err(Some(late)) = reply.send(name) {
            link.release(&room, &late, conn);
        }
    }
    Ok(())
}

/// Gives up a name claim, if `owner` still holds it. Plain EVAL: releases are rare (a leave or a
/// rename), and the script text is shorter than the round trip a missing-script retry costs.
fn release_writes(pipe: &mut redis::Pipeline, room: &str, name: &str, owner: &str) {
    let key = format!("{}{name}", wire::name_key_prefix(room));
    pipe.cmd("EVAL").arg(RELEASE_LUA).arg(1).arg(key).arg(owner).ignore();
}

/// The writes for a member's name (or its leaving) and the room's change notice.
fn member_writes<'p>(
    pipe: &'p mut redis::Pipeline,
    node: &str,
    room: &str,
    conn: ConnId,
    name: Option<&str>,
) -> &'p mut redis::Pipeline {
    let field = wire::member_field(node, conn);
    match name {
        Some(name) => {
            pipe.hset(wire::members_key(room), field, name).ignore();
            pipe.sadd(wire::node_rooms_key(node), room).ignore();
        }
        None => {
            pipe.hdel(wire::members_key(room), field).ignore();
        }
    }
    pipe.publish(wire::room_channel(room), RoomEvent::Members { node: node.to_owned() }.encode()).ignore()
}

/// Reads a room's members from Redis and hands the other nodes' to the room.
async fn refresh(
    link: &Link,
    redis: &mut MultiplexedConnection,
    rooms: &Rooms,
    room: &str,
) -> redis::RedisResult<()> {
    let fields: Vec<(String, String)> =
        redis::cmd("HGETALL").arg(wire::members_key(room)).query_async(redis).await?;
    let members = fields
        .into_iter()
        .filter_map(|(field, name)| {
            let (node, conn) = wire::parse_member_field(&field)?;
            (node != &*link.node).then(|| RemoteMember { node: Arc::from(node), conn, name: Arc::from(name) })
        })
        .collect();
    rooms.set_remote(room, members);
    Ok(())
}

/// Refreshes this node's heartbeat.
async fn beat(link: &Link, redis: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let ttl_ms = link.config.node_ttl.as_millis() as u64;
    redis::pipe()
        .cmd("SET")
        .arg(wire::node_alive_key(&link.node))
        .arg(1)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .sadd(wire::nodes_key(), &*link.node)
        .ignore()
        .query_async::<()>(redis)
        .await
}

/// Once `judge`, finds dead nodes: this node's clients lose them (user lists,
/// call partners), and their leftovers in Redis are cleaned.
async fn check_nodes(
    link: &Link,
    redis: &mut MultiplexedConnection,
    rooms: &Weak<Rooms>,
    judge: bool,
) -> redis::RedisResult<()> {
    if !judge {
        return Ok(());
    }
    let Some(rooms) = rooms.upgrade() else { return Ok(()) };
    let known: Vec<String> = redis::cmd("SMEMBERS").arg(wire::nodes_key()).query_async(redis).await?;
    let mut nodes: HashSet<String> = known.into_iter().collect();
    let referenced = rooms.remote_nodes();
    nodes.extend(referenced.iter().map(|node| node.to_string()));
    nodes.remove(&*link.node);
    if nodes.is_empty() {
        return Ok(());
    }
    let nodes: Vec<String> = nodes.into_iter().collect();
    let mut pipe = redis::pipe();
    for node in &nodes {
        pipe.exists(wire::node_alive_key(node));
    }
    let alive: Vec<bool> = pipe.query_async(redis).await?;
    for (node, alive) in nodes.iter().zip(alive) {
        if alive {
            continue;
        }
        if referenced.contains(node.as_str()) {
            info!(node, "a node stopped beating: its clients are gone");
            rooms.node_gone(node);
        }
        reap(link, redis, node).await?;
    }
    Ok(())
}

/// Removes a dead node's members and names from Redis and tells its rooms. Every node may do this
/// at once: each step is idempotent.
async fn reap(link: &Link, redis: &mut MultiplexedConnection, dead: &str) -> redis::RedisResult<()> {
    let rooms: Vec<String> =
        redis::cmd("SMEMBERS").arg(wire::node_rooms_key(dead)).query_async(redis).await?;
    let alive_key = wire::node_alive_key(dead);
    for room in &rooms {
        let removed: i64 = redis::cmd("EVAL")
            .arg(REAP_LUA)
            .arg(1)
            .arg(wire::members_key(room))
            .arg(dead)
            .arg(&alive_key)
            .arg(wire::name_key_prefix(room))
            .query_async(redis)
            .await?;
        if removed < 0 {
            info!(node = %link.node, dead, "a node taken for dead is beating again: left alone");
            return Ok(());
        }
        redis::cmd("PUBLISH")
            .arg(wire::room_channel(room))
            .arg(RoomEvent::Members { node: dead.to_owned() }.encode())
            .query_async::<()>(redis)
            .await?;
    }
    redis::pipe()
        .del(wire::node_rooms_key(dead))
        .ignore()
        .srem(wire::nodes_key(), dead)
        .ignore()
        .query_async::<()>(redis)
        .await?;
    info!(node = %link.node, dead, rooms = rooms.len(), "cleaned a dead node's members from Redis");
    Ok(())
}

/// Leaves the cluster on shutdown: the members already left one by one; the heartbeat goes now,
/// so nobody waits for it to expire.
async fn leave(link: &Link, live: &mut Connected) {
    let result = redis::pipe()
        .del(wire::node_alive_key(&link.node))
        .ignore()
        .del(wire::node_rooms_key(&link.node))
        .ignore()
        .srem(wire::nodes_key(), &*link.node)
        .ignore()
        .query_async::<()>(&mut live.conn)
        .await;
    if let Err(error) = result {
        debug!(%error, "could not say goodbye to Redis");
    }
    link.up.store(false, Ordering::Relaxed);
    link.set_conn(None);
}
