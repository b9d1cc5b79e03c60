//! Rooms: who is in each room, under which name, who is in a call with whom, and the userlist fan-out.
//!
//! The registry ([`Rooms`]) maps a room's name to its [`Room`]; it is locked briefly on join and
//! leave, and to find a room for what other nodes report. Each room has its own lock, taken on the
//! hot path (relay) for a map lookup and a queue push. Lock order: registry, then room, then a
//! client's [`Outbox`]. No lock is held across an `.await`.
//!
//! A room holds this node's clients (members, with their outboxes) and, in a cluster, the other
//! nodes' named clients as the [`Directory`] last reported them. A name routes to either; the
//! routing code is the same for one node and for many.
//!
//! # Layout
//! - here: the registry, join and leave, and the directory's [`Event`]s applied to the rooms;
//! - `state`: one room: names, relaying, call partners and hang-up;
//! - `userlist`: when a room's user list goes out, and its encoding;
//! - `tests`: unit tests against a fake directory.

mod state;
#[cfg(test)]
mod tests;
mod userlist;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub(super) use super::cluster::ConnId;
use super::cluster::{Directory, Envelope, Event, NodeId, RemoteMember};
use super::message::RelayKind;
use super::outbox::Outbox;
use super::ServerConfig;
pub(super) use state::Room;
use state::{Member, Peer, Route};

/// The room is at its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RoomFull;

/// The target of a relayed message is not in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnknownTarget;

/// All rooms.
#[derive(Debug)]
pub(super) struct Rooms {
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    config: Arc<ServerConfig>,
    directory: Arc<dyn Directory>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic half-way through a change; a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Rooms {
    pub(super) fn new(config: Arc<ServerConfig>, directory: Arc<dyn Directory>) -> Self {
        Self { rooms: Mutex::default(), config, directory }
    }

    pub(super) fn directory(&self) -> &dyn Directory {
        &*self.directory
    }

    /// Adds a connection (without a name yet) to the room, creating the room if needed.
    pub(super) fn join(&self, room: &str, id: ConnId, outbox: Arc<Outbox>) -> Result<Arc<Room>, RoomFull> {
        let mut rooms = lock(&self.rooms);
        let (room, created) = match rooms.get(room) {
            Some(existing) => (Arc::clone(existing), false),
            None => {
                let created = Arc::new(Room::new(
                    Arc::from(room),
                    Arc::clone(&self.config),
                    Arc::clone(&self.directory),
                ));
                rooms.insert(Arc::clone(&created.name), Arc::clone(&created));
                (created, true)
            }
        };
        let mut state = lock(&room.state);
        // The cap counts the clients this node knows of: its own and the other nodes' as last read
        // (none yet in a room new to this node), so across nodes it is approximate.
        if self.config.room_cap.is_some_and(|cap| state.members.len() + state.remote.len() >= cap) {
            drop(state);
            if created {
                rooms.remove(room.name());
            }
            return Err(RoomFull);
        }
        state.members.insert(id, Member { name: None, outbox, partners: Vec::new(), list_seen: 0 });
        drop(state);
        if created {
            self.directory.room_opened(room.name());
        }
        Ok(room)
    }

    /// Removes a connection: its calls end (the peers get `hang-up`), the room gets a new userlist,
    /// and an empty room is forgotten.
    pub(super) fn leave(&self, room: &Arc<Room>, id: ConnId) {
        let mut rooms = lock(&self.rooms);
        let mut state = lock(&room.state);
        let Some(member) = state.members.remove(&id) else { return };
        if let Some(name) = &member.name {
            state.names.remove(name);
            // Released before the leave is announced: whoever sees the holder gone can take the name.
            self.directory.release(room.name(), name, id);
            self.directory.announce(room.name(), id, None);
        }
        room.end_calls(&mut state, id, member.name.as_deref(), member.partners);
        if state.members.is_empty() {
            if rooms.get(room.name()).is_some_and(|current| Arc::ptr_eq(current, room)) {
                rooms.remove(room.name());
                self.directory.room_closed(room.name());
            }
        } else {
            room.userlist_changed(&mut state, None);
        }
    }

    fn get(&self, room: &str) -> Option<Arc<Room>> {
        lock(&self.rooms).get(room).cloned()
    }

    /// Every room with clients on this node.
    fn all(&self) -> Vec<Arc<Room>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// Applies what the directory reports from the other nodes. Never waits.
    pub(super) fn on_event(&self, event: Event) {
        match event {
            Event::Relay(envelope) => self.deliver(envelope),
            Event::Chat { room, payload } => {
                if let Some(room) = self.get(&room) {
                    room.broadcast_local(&Utf8Bytes::from(payload));
                }
            }
            Event::Members { room, members } => self.set_remote(&room, members),
            Event::NodeGone(node) => self.node_gone(&node),
            Event::Detached => self.forget_remote(),
        }
    }

    /// A message relayed by another node to one of this node's clients.
    fn deliver(&self, envelope: Envelope) {
        let Some(room) = self.get(&envelope.room) else { return };
        let mut state = lock(&room.state);
        let Some(&Route::Local(to)) = state.names.get(envelope.to.as_str()) else { return };
        let node = NodeId::from(envelope.from_node);
        let from_name: Arc<str> = Arc::from(envelope.from);
        // The sender may have joined an instant ago, before this room re-read its members: its
        // node is known now, so an answer to it can go back at once.
        state.names.entry(Arc::clone(&from_name)).or_insert_with(|| Route::Remote(Arc::clone(&node)));
        let from = Peer::Remote { node, name: from_name };
        match envelope.kind {
            RelayKind::Offer | RelayKind::Answer => state.link(to, from),
            RelayKind::HangUp => state.unlink(to, &from),
            RelayKind::Candidate => {}
        }
        if let Some(member) = state.members.get(&to) {
            member.outbox.push(envelope.payload.into());
        }
    }

    /// Replaces what the room knows of the other nodes' clients with the directory's current list.
    fn set_remote(&self, room: &str, members: Vec<RemoteMember>) {
        let Some(room) = self.get(room) else { return };
        let mut state = lock(&room.state);
        let remote: BTreeMap<(ConnId, NodeId), Arc<str>> =
            members.into_iter().map(|m| ((m.conn, m.node), m.name)).collect();
        if remote == state.remote {
            return;
        }
        state.names.retain(|_, route| matches!(route, Route::Local(_)));
        for ((_, node), name) in &remote {
            // A name held here wins: two holders are a fault (names decided during a Redis
            // outage), and this node's client is the one it can reach.
            state.names.entry(Arc::clone(name)).or_insert_with(|| Route::Remote(Arc::clone(node)));
        }
        state.remote = remote;
        room.userlist_changed(&mut state, None);
    }

    /// Another node died: its clients leave every room and their call partners here get `hang-up`.
    fn node_gone(&self, node: &str) {
        for room in self.all() {
            let mut state = lock(&room.state);
            let before = state.remote.len();
            state.remote.retain(|(_, holder), _| &**holder != node);
            state.names.retain(|_, route| !matches!(route, Route::Remote(holder) if &**holder == node));
            let mut hang_ups = Vec::new();
            for (&id, member) in &mut state.members {
                member.partners.retain(|peer| match peer {
                    Peer::Remote { node: holder, name } if &**holder == node => {
                        hang_ups.push((id, Arc::clone(name)));
                        false
                    }
                    _ => true,
                });
            }
            for (id, gone) in hang_ups {
                if let Some(member) = state.members.get(&id) {
                    member.push_hang_up(&gone);
                }
            }
            if state.remote.len() != before {
                room.userlist_changed(&mut state, None);
            }
        }
    }

    /// Redis is unreachable: the other nodes' clients can't be reached, so they leave the user
    /// lists until the node rejoins. Calls keep their partners: media flows peer to peer.
    fn forget_remote(&self) {
        for room in self.all() {
            let mut state = lock(&room.state);
            if state.remote.is_empty() {
                continue;
            }
            state.remote.clear();
            state.names.retain(|_, route| matches!(route, Route::Local(_)));
            room.userlist_changed(&mut state, None);
        }
    }
}

/// Applies the directory's events to the rooms until the directory stops sending (it goes with
/// the rooms) or the rooms are gone. Holds the rooms weakly: it must not keep a stopped server alive.
pub(super) async fn follow(rooms: Weak<Rooms>, mut events: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(64);
    while events.recv_many(&mut batch, 64).await > 0 {
        let Some(rooms) = rooms.upgrade() else { return };
        for event in batch.drain(..) {
            rooms.on_event(event);
        }
    }
}
