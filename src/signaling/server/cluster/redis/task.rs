//! The link's task: owns the pub/sub connection and the queue of writes; turns what arrives from
//! Redis into [`Event`]s for the rooms; rejoins after an outage.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::super::wire::{self, Envelope, RoomEvent};
use super::super::{ConnId, Event, NodeId, RemoteMember};
use super::scripts::{claim_cmd, member_writes, release_writes};
use super::{liveness, Core, Op, Snapshot};

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retry pauses while Redis is unreachable.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Name variants tried in one claim before giving up to the local decision.
const MAX_VARIANTS: u32 = 1000;
/// Queued writes sent in one pipeline.
const BATCH: usize = 512;

/// Live connections to Redis.
pub(super) struct Connected {
    pub(super) conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
    /// The room channels this connection listens on.
    subscribed: HashSet<String>,
}

/// Why the serving loop ended.
enum Ended {
    /// The handle is gone (the server stopped): leave the cluster.
    Closed,
    /// Redis failed: serve locally and reconnect.
    Lost(String),
}

/// Opens the command and pub/sub connections.
pub(super) async fn open(client: &redis::Client) -> Result<Connected, String> {
    let connecting = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        let (sink, stream) = client.get_async_pubsub().await?.split();
        Ok::<_, redis::RedisError>(Connected { conn, sink, stream, subscribed: HashSet::new() })
    };
    match timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// The link's task and what only it touches.
pub(super) struct Task {
    pub(super) core: Arc<Core>,
    ops: mpsc::Receiver<Op>,
    events: mpsc::Sender<Event>,
    /// Rooms whose members changed on another node: read again when the loop gets to it.
    stale: HashSet<String>,
    /// Every other node this node has heard of (members, senders): the ones whose death matters here.
    pub(super) seen: HashSet<NodeId>,
}

impl Task {
    pub(super) fn new(core: Arc<Core>, ops: mpsc::Receiver<Op>, events: mpsc::Sender<Event>) -> Self {
        Self { core, ops, events, stale: HashSet::new(), seen: HashSet::new() }
    }

    /// Hands an event to the rooms, waiting while their queue is full (backpressure on reading
    /// Redis; the rooms never wait on the link, so this cannot deadlock). A send to rooms that are
    /// gone is dropped: the handle goes with them, and the loop then ends.
    pub(super) async fn report(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// The link's life: serve while Redis answers; when it fails, serve locally and rejoin when it
    /// returns. Ends (leaving the cluster) when the handle is dropped.
    pub(super) async fn run(mut self, joined: Connected) {
        // The heartbeat lives exactly as long as this task.
        let heartbeat = tokio::spawn(liveness::heartbeat(Arc::clone(&self.core)));
        let _stop_heartbeat = AbortOnDrop(heartbeat);
        let mut live = joined;
        loop {
            match self.serve(&mut live).await {
                Ended::Closed => {
                    liveness::leave(&self.core, &mut live).await;
                    return;
                }
                Ended::Lost(why) => {
                    warn!(node = %self.core.node, why, "lost Redis: serving this node's clients only until it returns");
                    self.core.up.store(false, Ordering::Relaxed);
                    self.core.set_conn(None);
                    self.stale.clear();
                    self.report(Event::Detached).await;
                }
            }
            let Some(rejoined) = self.reconnect().await else { return };
            live = rejoined;
        }
    }

    /// Retries until Redis answers and the node has rejoined; `None` when the handle is gone.
    async fn reconnect(&mut self) -> Option<Connected> {
        let mut pause = RETRY_FIRST;
        // A deadline, not a fresh sleep per pass: writes keep arriving while Redis is down, and each
        // one would otherwise restart the wait, so a busy node would never try again.
        let mut retry_at = Instant::now() + pause;
        loop {
            // Down: writes have nowhere to go (a rejoin re-publishes everything), so drop them.
            tokio::select! {
                op = self.ops.recv() => op.map(drop)?,
                () = sleep_until(retry_at) => {
                    pause = (pause * 2).min(RETRY_MAX);
                    retry_at = Instant::now() + pause;
                    let mut connected = match open(&self.core.client).await {
                        Ok(connected) => connected,
                        Err(why) => {
                            debug!(why, "Redis still unreachable");
                            continue;
                        }
                    };
                    match self.join(&mut connected).await {
                        Ok(()) => return Some(connected),
                        Err(error) => debug!(%error, "rejoining the cluster failed"),
                    }
                }
            }
        }
    }

    /// (Re)joins the cluster: heartbeat, this node's channel, and every local room's members and
    /// names published again (after a Redis restart nothing of them is left). Also what the link
    /// does after dropping writes on a full queue.
    pub(super) async fn join(&mut self, live: &mut Connected) -> redis::RedisResult<()> {
        // Whatever was dropped before now is covered by this join.
        self.core.overflowed.store(false, Ordering::Relaxed);
        let node = Arc::clone(&self.core.node);
        liveness::beat(&self.core, &mut live.conn).await?;
        live.sink.subscribe(wire::node_channel(&node)).await?;
        let snapshot = self.core.snapshot();
        let rooms: HashSet<&str> = snapshot.iter().map(|(room, _)| room.as_str()).collect();
        // Rooms closed while their unsubscription was dropped.
        let gone: Vec<String> =
            live.subscribed.iter().filter(|r| !rooms.contains(r.as_str())).cloned().collect();
        for room in gone {
            live.sink.unsubscribe(wire::room_channel(&room)).await?;
            live.subscribed.remove(&room);
        }
        for (room, members) in &snapshot {
            live.sink.subscribe(wire::room_channel(room)).await?;
            live.subscribed.insert(room.clone());
            for (conn, name) in members {
                let claimed: Option<String> =
                    claim_cmd(&node, room, name, *conn, 1).query_async(&mut live.conn).await?;
                if claimed.as_deref() != Some(name.as_str()) {
                    warn!(room = %room, name = %name, "after the Redis outage another node's client holds this name too");
                }
                member_writes(&mut redis::pipe(), &node, room, *conn, Some(name))
                    .query_async::<()>(&mut live.conn)
                    .await?;
            }
        }
        prune(&node, &mut live.conn, &snapshot).await?;
        self.core.set_conn(Some(live.conn.clone()));
        self.core.reaped.store(false, Ordering::Relaxed);
        self.core.up.store(true, Ordering::Relaxed);
        info!(node = %node, rooms = snapshot.len(), "joined the cluster");
        // Read every room's members now that this node's are back in.
        for (room, _) in &snapshot {
            self.refresh(&mut live.conn, room).await?;
        }
        Ok(())
    }

    /// The loop while Redis is reachable.
    async fn serve(&mut self, live: &mut Connected) -> Ended {
        let mut heartbeat = tokio::time::interval(self.core.config.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Nodes that (re)joined with us, after a Redis restart, get as long as a dead node has to
        // show up again before they are taken for dead.
        let judge_from = Instant::now() + self.core.config.node_ttl * 2;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if self.core.reaped.swap(false, Ordering::Relaxed) {
                // Our members were removed from Redis: rejoining publishes them again.
                return Ended::Lost("this node was taken for dead".into());
            }
            if self.core.overflowed.swap(false, Ordering::Relaxed) {
                info!(node = %self.core.node, "publishing this node's members again after dropped writes");
                if let Err(error) = self.join(live).await {
                    return Ended::Lost(error.to_string());
                }
            }
            // Unbiased: neither the queue of writes nor the incoming messages can starve the other.
            let result = tokio::select! {
                _ = heartbeat.tick() => {
                    if Instant::now() >= judge_from {
                        self.check_nodes(&mut live.conn).await
                    } else {
                        Ok(())
                    }
                }
                count = self.ops.recv_many(&mut batch, BATCH) => {
                    // Zero: the handle is gone and every write it queued has been taken.
                    if count == 0 {
                        return Ended::Closed;
                    }
                    self.send(live, &mut batch).await
                }
                message = live.stream.next() => {
                    let mut message = message;
                    // What has already arrived, up to a batch, before the queue gets its turn again.
                    for _ in 0..BATCH {
                        match message {
                            Some(received) => self.on_message(&received).await,
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
                () = std::future::ready(()), if !self.stale.is_empty() => {
                    let mut result = Ok(());
                    for room in std::mem::take(&mut self.stale) {
                        result = self.refresh(&mut live.conn, &room).await;
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
    async fn on_message(&mut self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        let Ok(text) = message.get_payload::<String>() else { return };
        if let Some(room) = wire::room_of_channel(channel) {
            match RoomEvent::decode(&text) {
                Some(RoomEvent::Members { node }) if node != *self.core.node => {
                    self.stale.insert(room.to_owned());
                }
                Some(RoomEvent::Chat { node, payload }) if node != *self.core.node => {
                    self.report(Event::Chat { room: room.to_owned(), payload }).await;
                }
                Some(_) => {}
                None => debug!(channel, "ignored a malformed room event"),
            }
        } else if let Some(envelope) = Envelope::decode(&text) {
            // The sender's node matters here now (an answer goes back to it; its death ends the call).
            if !self.seen.contains(envelope.from_node.as_str()) {
                self.seen.insert(Arc::from(envelope.from_node.as_str()));
            }
            self.report(Event::Relay(envelope)).await;
        } else {
            debug!(channel, "ignored a malformed node message");
        }
    }

    /// Sends queued writes as one pipeline (subscriptions go over the pub/sub connection).
    async fn send(&mut self, live: &mut Connected, batch: &mut Vec<Op>) -> redis::RedisResult<()> {
        let node = Arc::clone(&self.core.node);
        let mut pipe = redis::pipe();
        let mut claims = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Claim { room, wanted, conn, reply } => {
                    pipe.add_command(claim_cmd(&node, &room, &wanted, conn, MAX_VARIANTS));
                    claims.push((room, conn, reply));
                }
                Op::Publish { channel, message } => {
                    pipe.publish(channel, message).ignore();
                }
                Op::Member { room, conn, name } => {
                    member_writes(&mut pipe, &node, &room, conn, name.as_deref());
                }
                Op::Release { room, name, conn } => {
                    release_writes(&mut pipe, &room, &name, &wire::member_field(&node, conn));
                }
                Op::Subscribe { room } => {
                    live.sink.subscribe(wire::room_channel(&room)).await?;
                    live.subscribed.insert(room.clone());
                    // Learn who is already there.
                    self.stale.insert(room);
                }
                Op::Unsubscribe { room } => {
                    live.sink.unsubscribe(wire::room_channel(&room)).await?;
                    live.subscribed.remove(&room);
                    // No member of ours is left there: nothing to clean up there if we die.
                    pipe.srem(wire::node_rooms_key(&node), &room).ignore();
                    self.stale.remove(&room);
                }
            }
        }
        if pipe.cmd_iter().next().is_none() {
            // Only subscriptions this time: Redis refuses an empty pipeline.
            return Ok(());
        }
        // Every write but the claims is ignored: the answers are the claims', in order.
        let claimed: Vec<Option<String>> = pipe.query_async(&mut live.conn).await?;
        let mut late = redis::pipe();
        for ((room, conn, reply), name) in claims.into_iter().zip(claimed) {
            // Nobody waits for this claim any more (it timed out): give the name back.
            if let Err(Some(name)) = reply.send(name) {
                release_writes(&mut late, &room, &name, &wire::member_field(&node, conn));
            }
        }
        if late.cmd_iter().next().is_some() {
            late.query_async::<()>(&mut live.conn).await?;
        }
        Ok(())
    }

    /// Reads a room's members from Redis and hands the other nodes' to the rooms.
    async fn refresh(&mut self, redis: &mut MultiplexedConnection, room: &str) -> redis::RedisResult<()> {
        let fields: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(wire::members_key(room)).query_async(redis).await?;
        let mut members = Vec::with_capacity(fields.len());
        for (field, name) in fields {
            let Some((node, conn)) = wire::parse_member_field(&field) else { continue };
            if node == &*self.core.node {
                continue;
            }
            let node = match self.seen.get(node) {
                Some(known) => Arc::clone(known),
                None => {
                    let node: NodeId = Arc::from(node);
                    self.seen.insert(Arc::clone(&node));
                    node
                }
            };
            members.push(RemoteMember { node, conn, name: Arc::from(name) });
        }
        self.report(Event::Members { room: room.to_owned(), members }).await;
        Ok(())
    }
}

/// Removes what this node left in Redis for clients that went away while it was cut off
/// (their leave never reached Redis), so their names are free again.
async fn prune(node: &str, redis: &mut MultiplexedConnection, snapshot: &Snapshot) -> redis::RedisResult<()> {
    let present: HashSet<(&str, ConnId)> = snapshot
        .iter()
        .flat_map(|(room, members)| members.iter().map(move |(conn, _)| (room.as_str(), *conn)))
        .collect();
    let rooms: Vec<String> =
        redis::cmd("SMEMBERS").arg(wire::node_rooms_key(node)).query_async(redis).await?;
    for room in &rooms {
        let fields: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(wire::members_key(room)).query_async(redis).await?;
        let mut pipe = redis::pipe();
        for (field, name) in &fields {
            match wire::parse_member_field(field) {
                Some((holder, conn)) if holder == node && !present.contains(&(room.as_str(), conn)) => {
                    pipe.hdel(wire::members_key(room), field).ignore();
                    release_writes(&mut pipe, room, name, field);
                }
                _ => {}
            }
        }
        pipe.publish(wire::room_channel(room), RoomEvent::Members { node: node.to_owned() }.encode())
            .ignore();
        pipe.query_async::<()>(redis).await?;
    }
    Ok(())
}

/// Aborts a task when dropped, whichever way its owner returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
