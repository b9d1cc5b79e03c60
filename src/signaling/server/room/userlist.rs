//! When a room's user list goes out, and its encoding: encoded once, the same bytes to every member.

use std::sync::Arc;

use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::lock;
use super::state::{Room, RoomState};
use super::ConnId;

/// A room's user-list timing.
#[derive(Debug, Default)]
pub(super) struct Userlist {
    /// A userlist broadcast is already on its way.
    scheduled: bool,
}

impl Room {
    /// The room's users changed: arranges one `userlist` broadcast after the coalescing delay,
    /// unless one is already on its way.
    pub(super) fn userlist_changed(self: &Arc<Self>, state: &mut RoomState) {
        if state.userlist.scheduled {
            return;
        }
        state.userlist.scheduled = true;
        let delay = self.config.userlist_delay_for(state.members.len() + state.remote.len());
        let room = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            room.send_userlist();
        });
    }

    /// Encodes the userlist once and hands the same bytes to every member.
    fn send_userlist(&self) {
        let mut state = lock(&self.state);
        state.userlist.scheduled = false;
        let Some(json) = encode(&state) else { return };
        for member in state.members.values() {
            member.outbox.set_userlist(json.clone());
        }
    }
}

/// The room's `userlist` message: every member in join order across nodes, as near as ids tell
/// it (each node's ids count up from its start), `null` for a member without a name yet.
fn encode(state: &RoomState) -> Option<Utf8Bytes> {
    #[derive(Serialize)]
    struct UserList<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        users: Vec<Option<&'a str>>,
    }
    let mut entries: Vec<(ConnId, Option<&str>)> =
        state.members.iter().map(|(&id, m)| (id, m.name.as_deref())).collect();
    entries.extend(state.remote.iter().map(|(&(id, _), name)| (id, Some(&**name))));
    entries.sort_by_key(|&(id, _)| id);
    let list = UserList { kind: "userlist", users: entries.into_iter().map(|(_, name)| name).collect() };
    serde_json::to_string(&list).ok().map(Utf8Bytes::from)
}
