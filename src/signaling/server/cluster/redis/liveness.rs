//! Liveness: this node's heartbeat, finding the nodes that stopped beating, cleaning after them,
//! and saying goodbye on shutdown.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use super::super::wire::{self, RoomEvent};
use super::super::Event;
use super::scripts::{beat_writes, leave_writes, reap_cmd};
use super::task::{Connected, Task};
use super::Core;

/// Says this node is alive, every heartbeat, on a task of its own: nothing the link waits for (a
/// rejoin, a large refresh, a reap) may hold it back past the TTL, or the others take the node for
/// dead. The link's task aborts it when it ends.
pub(super) async fn heartbeat(core: Arc<Core>) {
    let mut ticker = tokio::time::interval(core.config.heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let key = wire::node_alive_key(&core.node);
    let ttl_ms = ttl_ms(&core);
    loop {
        ticker.tick().await;
        if !core.is_up() {
            continue;
        }
        let Some(mut redis) = core.conn() else { continue };
        // GET: the key's value before this SET. None while joined means it expired or was deleted.
        let before: redis::RedisResult<Option<String>> =
            redis::cmd("SET").arg(&key).arg(1).arg("PX").arg(ttl_ms).arg("GET").query_async(&mut redis).await;
        match before {
            Ok(None) if core.is_up() => {
                warn!(node = %core.node, "this node's heartbeat had lapsed (taken for dead, or Redis restarted): rejoining");
                core.reaped.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            // The link notices a dead connection on its own.
            Err(error) => debug!(%error, "heartbeat failed"),
        }
    }
}

fn ttl_ms(core: &Core) -> u64 {
    core.config.node_ttl.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Refreshes this node's heartbeat (at a join, before the heartbeat task takes over).
pub(super) async fn beat(core: &Core, redis: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    beat_writes(&core.node, ttl_ms(core)).query_async::<()>(redis).await
}

impl Task {
    /// Finds dead nodes: the rooms hear of those this node knew, and every dead node's leftovers
    /// in Redis are cleaned.
    pub(super) async fn check_nodes(&mut self, redis: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let known: Vec<String> = redis::cmd("SMEMBERS").arg(wire::nodes_key()).query_async(redis).await?;
        let mut nodes: HashSet<String> = known.into_iter().collect();
        nodes.extend(self.seen.iter().map(|node| node.to_string()));
        nodes.remove(&*self.core.node);
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
            if let Some(gone) = self.seen.take(node.as_str()) {
                info!(node, "a node stopped beating: its clients are gone");
                self.report(Event::NodeGone(gone)).await;
            }
            reap(&self.core, redis, node).await?;
        }
        Ok(())
    }
}

/// Removes a dead node's members and names from Redis and tells its rooms. Every node may do this
/// at once: each step is idempotent.
async fn reap(core: &Core, redis: &mut MultiplexedConnection, dead: &str) -> redis::RedisResult<()> {
    let rooms: Vec<String> =
        redis::cmd("SMEMBERS").arg(wire::node_rooms_key(dead)).query_async(redis).await?;
    for room in &rooms {
        let removed: i64 = reap_cmd(room, dead).query_async(redis).await?;
        if removed < 0 {
            info!(node = %core.node, dead, "a node taken for dead is beating again: left alone");
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
    info!(node = %core.node, dead, rooms = rooms.len(), "cleaned a dead node's members from Redis");
    Ok(())
}

/// Leaves the cluster on shutdown: the members already left one by one; the heartbeat goes now,
/// so nobody waits for it to expire.
pub(super) async fn leave(core: &Core, live: &mut Connected) {
    if let Err(error) = leave_writes(&core.node).query_async::<()>(&mut live.conn).await {
        debug!(%error, "could not say goodbye to Redis");
    }
    core.up.store(false, Ordering::Relaxed);
    core.set_conn(None);
}
