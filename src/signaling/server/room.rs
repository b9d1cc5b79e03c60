//! Rooms: who is in each room, under which name, who is in a call with whom, and the userlist fan-out.
//!
//! The registry maps a room's name to its [`Room`]; it is locked only on join and leave. Each room
//! has its own lock, taken on the hot path (relay) for a map lookup and a queue push. Lock order:
//! registry, then room, then a client's [`Outbox`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

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
}

/// One room: its members in join order, their names and their calls.
#[derive(Debug)]
pub(super) struct Room {
    name: Arc<str>,
    config: Arc<ServerConfig>,
    state: Mutex<RoomState>,
}

#[derive(Debug, Default)]
struct RoomState {
    members: BTreeMap<ConnId, Member>,
    names: HashMap<Arc<str>, ConnId>,
    /// The number the next taken name gets appended (the MDN sample's `appendToMakeUnique`).
    suffix: u64,
    /// A userlist broadcast is already on its way.
    userlist_scheduled: bool,
}

#[derive(Debug)]
struct Member {
    name: Option<Arc<str>>,
    outbox: Arc<Outbox>,
    /// Peers this member exchanged an offer or answer with, until one hangs up.
    partners: Vec<ConnId>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic half-way through a change; a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Rooms {
    pub(super) fn new(config: Arc<ServerConfig>) -> Self {
        Self { rooms: Mutex::default(), config }
    }

    /// Adds a connection (without a name yet) to the room, creating the room if needed.
    pub(super) fn join(&self, room: &str, id: ConnId, outbox: Arc<Outbox>) -> Result<Arc<Room>, RoomFull> {
        let mut rooms = lock(&self.rooms);
        let room = match rooms.get(room) {
            Some(existing) => Arc::clone(existing),
            None => {
                let name: Arc<str> = Arc::from(room);
                let created = Arc::new(Room {
                    name: Arc::clone(&name),
                    config: Arc::clone(&self.config),
                    state: Mutex::default(),
                });
                rooms.insert(name, Arc::clone(&created));
                created
            }
        };
        let mut state = lock(&room.state);
        if self.config.room_cap.is_some_and(|cap| state.members.len() >= cap) {
            let empty = state.members.is_empty();
            drop(state);
            if empty {
                rooms.remove(room.name());
            }
            return Err(RoomFull);
        }
        state.members.insert(id, Member { name: None, outbox, partners: Vec::new() });
        drop(state);
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
        }
        state.end_calls(id, member.name.as_deref(), member.partners);
        if state.members.is_empty() {
            if rooms.get(room.name()).is_some_and(|current| Arc::ptr_eq(current, room)) {
                rooms.remove(room.name());
            }
        } else {
            room.schedule_userlist(&mut state);
        }
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
    pub(super) fn register(self: &Arc<Self>, id: ConnId, wanted: &str) -> Option<(Arc<str>, bool)> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let current = state.members.get(&id)?.name.clone();
        if current.as_deref() == Some(wanted) {
            return current.map(|name| (name, false));
        }
        let taken =
            |names: &HashMap<Arc<str>, ConnId>, name: &str| names.get(name).is_some_and(|&owner| owner != id);
        let mut name = wanted.to_owned();
        while taken(&state.names, &name) {
            state.suffix += 1;
            name = format!("{wanted}{}", state.suffix);
        }
        let renamed = name != wanted;
        let name: Arc<str> = Arc::from(name);
        if let Some(old) = &current {
            state.names.remove(old);
        }
        let partners =
            state.members.get_mut(&id).map(|m| std::mem::take(&mut m.partners)).unwrap_or_default();
        state.end_calls(id, current.as_deref(), partners);
        state.names.insert(Arc::clone(&name), id);
        if let Some(member) = state.members.get_mut(&id) {
            member.name = Some(Arc::clone(&name));
        }
        self.schedule_userlist(state);
        Some((name, renamed))
    }

    /// Queues `payload` for the member named `target`, and keeps the call bookkeeping.
    pub(super) fn relay(
        &self,
        from: ConnId,
        kind: RelayKind,
        target: &str,
        payload: Utf8Bytes,
    ) -> Result<(), UnknownTarget> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let &to = state.names.get(target).ok_or(UnknownTarget)?;
        match kind {
            RelayKind::Offer | RelayKind::Answer => state.link(from, to),
            RelayKind::HangUp => state.unlink(from, to),
            RelayKind::Candidate => {}
        }
        if let Some(member) = state.members.get(&to) {
            member.outbox.push(payload);
        }
        Ok(())
    }

    /// Queues `payload` for every connection in the room, the sender included (as the sample does).
    pub(super) fn broadcast(&self, payload: &Utf8Bytes) {
        let state = lock(&self.state);
        for member in state.members.values() {
            member.outbox.push(payload.clone());
        }
    }

    /// Arranges one `userlist` broadcast after the coalescing delay, unless one is already on its way.
    fn schedule_userlist(self: &Arc<Self>, state: &mut RoomState) {
        if state.userlist_scheduled {
            return;
        }
        state.userlist_scheduled = true;
        let delay = self.config.userlist_delay_for(state.members.len());
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
        let list =
            UserList { kind: "userlist", users: state.members.values().map(|m| m.name.as_deref()).collect() };
        let Ok(json) = serde_json::to_string(&list) else { return };
        let json = Utf8Bytes::from(json);
        for member in state.members.values() {
            member.outbox.set_userlist(json.clone());
        }
    }
}

impl RoomState {
    fn link(&mut self, a: ConnId, b: ConnId) {
        if a == b {
            return;
        }
        for (me, peer) in [(a, b), (b, a)] {
            if let Some(member) = self.members.get_mut(&me) {
                if !member.partners.contains(&peer) && member.partners.len() < MAX_PARTNERS {
                    member.partners.push(peer);
                }
            }
        }
    }

    fn unlink(&mut self, a: ConnId, b: ConnId) {
        for (me, peer) in [(a, b), (b, a)] {
            if let Some(member) = self.members.get_mut(&me) {
                member.partners.retain(|&p| p != peer);
            }
        }
    }

    /// Tells each of `partners` that `gone` (known as `gone_name`) hung up, and forgets the calls.
    fn end_calls(&mut self, gone: ConnId, gone_name: Option<&str>, partners: Vec<ConnId>) {
        for peer in partners {
            let Some(member) = self.members.get_mut(&peer) else { continue };
            member.partners.retain(|&p| p != gone);
            if let (Some(name), Some(target)) = (gone_name, &member.name) {
                let hang_up = Message::HangUp {
                    name: name.to_owned(),
                    target: target.to_string(),
                    reason: Some(HANGUP_REASON_DISCONNECTED.to_owned()),
                };
                member.outbox.push(hang_up.to_json().into());
            }
        }
    }
}
