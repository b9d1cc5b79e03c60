//! One room: its members in join order, their names, relaying between them, and their calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::userlist::Userlist;
use super::{lock, ConnId, UnknownTarget};
use crate::signaling::protocol::{Message, HANGUP_REASON_DISCONNECTED};
use crate::signaling::server::cluster::{Directory, NodeId};
use crate::signaling::server::message::RelayKind;
use crate::signaling::server::outbox::Outbox;
use crate::signaling::server::ServerConfig;

/// A call partner list longer than this is abuse (a client offering to everyone); more are not tracked.
const MAX_PARTNERS: usize = 32;

/// One room.
#[derive(Debug)]
pub(in crate::signaling::server) struct Room {
    pub(super) name: Arc<str>,
    pub(super) config: Arc<ServerConfig>,
    directory: Arc<dyn Directory>,
    pub(super) state: Mutex<RoomState>,
}

#[derive(Debug, Default)]
pub(super) struct RoomState {
    /// This node's clients.
    pub(super) members: BTreeMap<ConnId, Member>,
    /// Every name in the room, this node's and the other nodes'.
    pub(super) names: HashMap<Arc<str>, Route>,
    /// The other nodes' named clients, by connection id (join order) and node.
    pub(super) remote: BTreeMap<(ConnId, NodeId), Arc<str>>,
    /// The number the next taken name gets appended (the MDN sample's `appendToMakeUnique`).
    suffix: u64,
    /// When the user list goes out next.
    pub(super) userlist: Userlist,
}

/// Where a name lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Local(ConnId),
    Remote(NodeId),
}

/// The other end of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Peer {
    Local(ConnId),
    /// A client on another node, addressed by name through its node.
    Remote {
        node: NodeId,
        name: Arc<str>,
    },
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) name: Option<Arc<str>>,
    pub(super) outbox: Arc<Outbox>,
    /// Peers this member exchanged an offer or answer with, until one hangs up.
    pub(super) partners: Vec<Peer>,
    /// The version of the room's user list this member was last handed (0: none yet).
    pub(super) list_seen: u64,
}

impl Room {
    pub(super) fn new(name: Arc<str>, config: Arc<ServerConfig>, directory: Arc<dyn Directory>) -> Self {
        Self { name, config, directory, state: Mutex::default() }
    }

    /// The room's name: the URL path without its leading `/` (the lobby is `""`).
    pub(in crate::signaling::server) fn name(&self) -> &str {
        &self.name
    }

    /// Registers `wanted` for connection `id`, or a free variant of it (`wanted` + a number, as the
    /// sample does). Returns the name given and whether it differs from `wanted`; when it does,
    /// the member's `rejectusername` is queued already, ahead of any list holding the name.
    /// A change of name ends the connection's calls, as its peers address it by the old name.
    pub(in crate::signaling::server) async fn register(
        self: &Arc<Self>,
        id: ConnId,
        wanted: &str,
    ) -> Option<(Arc<str>, bool)> {
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
            if renamed {
                // Queued before the list that holds the new name can be handed out (the writer runs
                // on another thread): a client must learn its name before it sees it listed.
                let reply = Message::RejectUsername { id, name: name.to_string() };
                member.outbox.push(reply.to_json().into());
            }
        }
        self.directory.announce(&self.name, id, Some(&name));
        self.userlist_changed(state, Some(id));
        Some((name, renamed))
    }

    /// Queues `payload` for the member named `target`, here or on its node, and keeps the call
    /// bookkeeping. `from_name` is the sender's registered name.
    pub(in crate::signaling::server) fn relay(
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
    pub(in crate::signaling::server) fn broadcast(&self, payload: &Utf8Bytes) {
        self.broadcast_local(payload);
        self.directory.publish_chat(&self.name, payload);
    }

    /// Queues `payload` for this node's connections in the room.
    pub(super) fn broadcast_local(&self, payload: &Utf8Bytes) {
        let state = lock(&self.state);
        for member in state.members.values() {
            member.outbox.push(payload.clone());
        }
    }

    /// Tells each of `partners` that `gone` (known as `gone_name`) hung up, and forgets the calls.
    pub(super) fn end_calls(
        &self,
        state: &mut RoomState,
        gone: ConnId,
        gone_name: Option<&str>,
        partners: Vec<Peer>,
    ) {
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
}

impl Member {
    /// Hands this member the room's list `version`, unless it holds that one already or has no
    /// name yet. MDN's server lists to every connection, but its page asks for a name as soon as
    /// it connects; waiting for the name means a client's first list holds the name it was given
    /// (after its `rejectusername`), never a list from before its login that shows someone else
    /// under the name it asked for.
    pub(super) fn hand_userlist(&mut self, version: u64, json: &Utf8Bytes) {
        if self.name.is_some() && self.list_seen != version {
            self.list_seen = version;
            self.outbox.set_userlist(json.clone());
        }
    }

    /// Tells this member that `gone` hung up because it disconnected.
    pub(super) fn push_hang_up(&self, gone: &str) {
        if let Some(target) = &self.name {
            self.outbox.push(hang_up_json(gone, target).into());
        }
    }

    fn add_partner(&mut self, peer: Peer) {
        if !self.partners.contains(&peer) && self.partners.len() < MAX_PARTNERS {
            self.partners.push(peer);
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
    pub(super) fn link(&mut self, me: ConnId, peer: Peer) {
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

    pub(super) fn unlink(&mut self, me: ConnId, peer: &Peer) {
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
