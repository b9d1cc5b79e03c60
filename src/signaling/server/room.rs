//! Rooms: who is in each room, under which name, who is in a call with whom, and the userlist fan-out.
//!
//! The registry maps a room's name to its [`Room`]; it is locked briefly on join and leave, and
//! to find a room for what other nodes send. Each room has its own lock, taken on the hot path
//! (relay) for a map lookup and a queue push. Lock order: registry, then room, then a client's
//! [`Outbox`]. No lock is held across an `.await`.
//!
//! A room holds this node's clients (members, with their outboxes) and, in a cluster, the other
//! nodes' named clients as the [`Directory`] last read them. A name routes to either; the routing
//! code is the same for one node and for many.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::cluster::wire::Envelope;
use super::cluster::{Directory, NodeId};
use super::message::RelayKind;
use super::outbox::Outbox;
use super::ServerConfig;
use crate::signaling::protocol::{Message, HANGUP_REASON_DISCONNECTED};

/// A connection's id, as sent in `{"type":"id"}`. Ids only grow, so id order is join order.
pub(super) type ConnId = u64;

/// A call partner list longer than this is abuse (a client offering to everyone); more are not tracked.
const MAX_PARTNERS: usize = 32;

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
    directory: Directory,
}

/// One room: its members in join order, their names and their calls.
#[derive(Debug)]
pub(super) struct Room {
    name: Arc<str>,
    config: Arc<ServerConfig>,
    directory: Directory,
    state: Mutex<RoomState>,
}

#[derive(Debug, Default)]
struct RoomState {
    /// This node's clients.
    members: BTreeMap<ConnId, Member>,
    /// Every name in the room, this node's and the other nodes'.
    names: HashMap<Arc<str>, Route>,
    /// The other nodes' named clients, by connection id (join order) and node.
    remote: BTreeMap<(ConnId, NodeId), Arc<str>>,
    /// The number the next taken name gets appended (the MDN sample's `appendToMakeUnique`).
    suffix: u64,
    /// A userlist broadcast is already on its way.
    userlist_scheduled: bool,
}

/// Where a name lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Local(ConnId),
    Remote(NodeId),
}

/// The other end of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peer {
    Local(ConnId),
    /// A client on another node, addressed by name through its node.
    Remote {
        node: NodeId,
        name: Arc<str>,
    },
}

#[derive(Debug)]
struct Member {
    name: Option<Arc<str>>,
    outbox: Arc<Outbox>,
    /// Peers this member exchanged an offer or answer with, until one hangs up.
    partners: Vec<Peer>,
}

/// A room's name and this node's named clients in it (id, name).
pub(super) type RoomSnapshot = (Arc<str>, Vec<(ConnId, Arc<str>)>);

/// A named client on another node, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteMember {
    pub node: NodeId,
    pub conn: ConnId,
    pub name: Arc<str>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic half-way through a change; a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Rooms {
    pub(super) fn new(config: Arc<ServerConfig>, directory: Directory) -> Self {
        Self { rooms: Mutex::default(), config, directory }
    }

    pub(super) fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Adds a connection (without a name yet) to the room, creating the room if needed.
    pub(super) fn join(&self, room: &str, id: ConnId, outbox: Arc<Outbox>) -> Result<Arc<Room>, RoomFull> {
        let mut rooms = lock(&self.rooms);
        let (room, created) = match rooms.get(room) {
            Some(existing) => (Arc::clone(existing), false),
            None => {
                let name: Arc<str> = Arc::from(room);
                let created = Arc::new(Room {
                    name: Arc::clone(&name),
                    config: Arc::clone(&self.config),
                    directory: self.directory.clone(),
                    state: Mutex::default(),
                });
                rooms.insert(name, Arc::clone(&created));
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
        state.members.insert(id, Member { name: None, outbox, partners: Vec::new() });
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
            self.directory.announce(room.name(), id, None);
            self.directory.release(room.name(), name, id);
        }
        room.end_calls(&mut state, id, member.name.as_deref(), member.partners);
        if state.members.is_empty() {
            if rooms.get(room.name()).is_some_and(|current| Arc::ptr_eq(current, room)) {
                rooms.remove(room.name());
                self.directory.room_closed(room.name());
            }
        } else {
            room.schedule_userlist(&mut state);
        }
    }

    fn get(&self, room: &str) -> Option<Arc<Room>> {
        lock(&self.rooms).get(room).cloned()
    }

    /// Every room with clients on this node.
    fn all(&self) -> Vec<Arc<Room>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// A message relayed by another node to one of this node's clients.
    pub(super) fn deliver(&self, envelope: Envelope) {
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

    /// A chat message from a client on another node.
    pub(super) fn deliver_chat(&self, room: &str, payload: Utf8Bytes) {
        if let Some(room) = self.get(room) {
            room.broadcast_local(&payload);
        }
    }

    /// Replaces what the room knows of the other nodes' clients with the directory's current list.
    pub(super) fn set_remote(&self, room: &str, members: Vec<RemoteMember>) {
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
        room.schedule_userlist(&mut state);
    }

    /// Another node died: its clients leave every room and their call partners here get `hang-up`.
    pub(super) fn node_gone(&self, node: &str) {
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
                room.schedule_userlist(&mut state);
            }
        }
    }

    /// Redis is unreachable: the other nodes' clients can't be reached, so they leave the user
    /// lists until the node rejoins. Calls keep their partners: media flows peer to peer.
    pub(super) fn forget_remote(&self) {
        for room in self.all() {
            let mut state = lock(&room.state);
            if state.remote.is_empty() {
                continue;
            }
            state.remote.clear();
            state.names.retain(|_, route| matches!(route, Route::Local(_)));
            room.schedule_userlist(&mut state);
        }
    }

    /// This node's rooms and their named clients: what a node publishes when it (re)joins.
    pub(super) fn snapshot(&self) -> Vec<RoomSnapshot> {
        self.all()
            .into_iter()
            .map(|room| {
                let state = lock(&room.state);
                let named = state
                    .members
                    .iter()
                    .filter_map(|(&id, m)| Some((id, Arc::clone(m.name.as_ref()?))))
                    .collect();
                (Arc::clone(&room.name), named)
            })
            .collect()
    }

    /// Every other node this node's rooms refer to (their clients, or call partners).
    pub(super) fn remote_nodes(&self) -> HashSet<NodeId> {
        let mut nodes = HashSet::new();
        for room in self.all() {
            let state = lock(&room.state);
            nodes.extend(state.remote.keys().map(|(_, node)| Arc::clone(node)));
            for member in state.members.values() {
                for peer in &member.partners {
                    if let Peer::Remote { node, .. } = peer {
                        nodes.insert(Arc::clone(node));
                    }
                }
            }
        }
        nodes
    }
}

impl Room {
    /// The room's name: the URL path without its leading `/` (the lobby is `""`).
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Registers `wanted` for connection `id`, or a free variant of it (`wanted` + a number, as the
    /// sample does). Returns the name given and whether it differs from `wanted`.
    /// A change of name ends the connection's calls, as its peers address it by the old name.
    pub(super) async fn register(self: &Arc<Self>, id: ConnId, wanted: &str) -> Option<(Arc<str>, bool)> {
        {
            let state = lock(&self.state);
            let current = state.members.get(&id)?.name.clone();
            if current.as_deref() == Some(wanted) {
                return current.map(|name| (name, false));
            }
        }
        // Across nodes the directory decides, atomically; alone (or cut off from Redis) the room does.
        let claimed = self.directory.claim(&self.name, wanted, id).await;
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(current) = state.members.get(&id).map(|m| m.name.clone()) else {
            // The client left while the claim was on its way.
            if let Some(name) = claimed {
                self.directory.release(&self.name, &name, id);
            }
            return None;
        };
        let free = |state: &RoomState, name: &str| match state.names.get(name) {
            None => true,
            Some(Route::Local(owner)) => *owner == id,
            // The directory just gave us this name: whoever held it on another node is gone.
            Some(Route::Remote(_)) => claimed.as_deref() == Some(name),
        };
        let usable = claimed.as_deref().filter(|name| free(state, name)).map(str::to_owned);
        if let (Some(unused), None) = (&claimed, &usable) {
            // A claim we can't use (a name held here since a Redis outage) must not stay held.
            self.directory.release(&self.name, unused, id);
        }
        let name = usable.unwrap_or_else(|| {
            let mut name = wanted.to_owned();
            while !free(state, &name) {
                state.suffix += 1;
                name = format!("{wanted}{}", state.suffix);
            }
            name
        });
        let renamed = name != wanted;
        let name: Arc<str> = Arc::from(name);
        if let Some(old) = &current {
            state.names.remove(old);
            self.directory.release(&self.name, old, id);
        }
        let partners =
            state.members.get_mut(&id).map(|m| std::mem::take(&mut m.partners)).unwrap_or_default();
        self.end_calls(state, id, current.as_deref(), partners);
        state.names.insert(Arc::clone(&name), Route::Local(id));
        if let Some(member) = state.members.get_mut(&id) {
            member.name = Some(Arc::clone(&name));
        }
        self.directory.announce(&self.name, id, Some(&name));
        self.schedule_userlist(state);
        Some((name, renamed))
    }

    /// Queues `payload` for the member named `target`, here or on its node, and keeps the call
    /// bookkeeping. `from_name` is the sender's registered name.
    pub(super) fn relay(
        &self,
        from: ConnId,
        from_name: &str,
        kind: RelayKind,
        target: &str,
        payload: Utf8Bytes,
    ) -> Result<(), UnknownTarget> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let route = state.names.get(target).ok_or(UnknownTarget)?.clone();
        // Candidates, the bulk of the traffic, need no call bookkeeping.
        if kind != RelayKind::Candidate {
            let peer = match &route {
                Route::Local(to) => Peer::Local(*to),
                Route::Remote(node) => Peer::Remote { node: Arc::clone(node), name: Arc::from(target) },
            };
            if kind == RelayKind::HangUp {
                state.unlink(from, &peer);
            } else {
                state.link(from, peer);
            }
        }
        match route {
            Route::Local(to) => {
                if let Some(member) = state.members.get(&to) {
                    member.outbox.push(payload);
                }
            }
            Route::Remote(node) => {
                self.directory.forward(&node, kind, &self.name, target, from_name, &payload)
            }
        }
        Ok(())
    }

    /// Queues `payload` for every connection in the room on every node, the sender included (as
    /// the sample does).
    pub(super) fn broadcast(&self, payload: &Utf8Bytes) {
        self.broadcast_local(payload);
        self.directory.publish_chat(&self.name, payload);
    }

    fn broadcast_local(&self, payload: &Utf8Bytes) {
        let state = lock(&self.state);
        for member in state.members.values() {
            member.outbox.push(payload.clone());
        }
    }

    /// Tells each of `partners` that `gone` (known as `gone_name`) hung up, and forgets the calls.
    fn end_calls(&self, state: &mut RoomState, gone: ConnId, gone_name: Option<&str>, partners: Vec<Peer>) {
        for peer in partners {
            match peer {
                Peer::Local(peer) => {
                    let Some(member) = state.members.get_mut(&peer) else { continue };
                    member.partners.retain(|p| *p != Peer::Local(gone));
                    if let Some(name) = gone_name {
                        member.push_hang_up(name);
                    }
                }
                Peer::Remote { node, name: target } => {
                    let Some(name) = gone_name else { continue };
                    let hang_up = hang_up_json(name, &target);
                    self.directory.forward(&node, RelayKind::HangUp, &self.name, &target, name, &hang_up);
                }
            }
        }
    }

    /// Arranges one `userlist` broadcast after the coalescing delay, unless one is already on its way.
    fn schedule_userlist(self: &Arc<Self>, state: &mut RoomState) {
        if state.userlist_scheduled {
            return;
        }
        state.userlist_scheduled = true;
        let delay = self.config.userlist_delay_for(state.members.len() + state.remote.len());
        let room = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            room.send_userlist();
        });
    }

    /// Encodes the userlist once and hands the same bytes to every member.
    fn send_userlist(&self) {
        #[derive(Serialize)]
        struct UserList<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            users: Vec<Option<&'a str>>,
        }
        let mut state = lock(&self.state);
        state.userlist_scheduled = false;
        // Join order across nodes, as near as ids tell it: each node's ids count up from its start.
        let mut entries: Vec<(ConnId, Option<&str>)> =
            state.members.iter().map(|(&id, m)| (id, m.name.as_deref())).collect();
        entries.extend(state.remote.iter().map(|(&(id, _), name)| (id, Some(&**name))));
        entries.sort_by_key(|&(id, _)| id);
        let list = UserList { kind: "userlist", users: entries.into_iter().map(|(_, name)| name).collect() };
        let Ok(json) = serde_json::to_string(&list) else { return };
        let json = Utf8Bytes::from(json);
        for member in state.members.values() {
            member.outbox.set_userlist(json.clone());
        }
    }
}

impl Member {
    /// Tells this member that `gone` hung up because it disconnected.
    fn push_hang_up(&self, gone: &str) {
        if let Some(target) = &self.name {
            self.outbox.push(hang_up_json(gone, target).into());
        }
    }
}

fn hang_up_json(from: &str, target: &str) -> String {
    Message::HangUp {
        name: from.to_owned(),
        target: target.to_owned(),
        reason: Some(HANGUP_REASON_DISCONNECTED.to_owned()),
    }
    .to_json()
}

impl RoomState {
    /// Records a call between local member `me` and `peer` (both ways when `peer` is local too).
    fn link(&mut self, me: ConnId, peer: Peer) {
        if peer == Peer::Local(me) {
            return;
        }
        if let Peer::Local(other) = peer {
            if let Some(member) = self.members.get_mut(&other) {
                member.add_partner(Peer::Local(me));
            }
        }
        if let Some(member) = self.members.get_mut(&me) {
            member.add_partner(peer);
        }
    }

    fn unlink(&mut self, me: ConnId, peer: &Peer) {
        if let Peer::Local(other) = peer {
            if let Some(member) = self.members.get_mut(other) {
                member.partners.retain(|p| *p != Peer::Local(me));
            }
        }
        if let Some(member) = self.members.get_mut(&me) {
            member.partners.retain(|p| p != peer);
        }
    }
}

impl Member {
    fn add_partner(&mut self, peer: Peer) {
        if !self.partners.contains(&peer) && self.partners.len() < MAX_PARTNERS {
            self.partners.push(peer);
        }
    }
}
