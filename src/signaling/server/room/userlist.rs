//! When a room's user list goes out, and its encoding: encoded once, the same bytes to every member.
//!
//! A calm room sends its list at once (the leading edge). While changes keep coming, it sends at
//! most one list per window, and always one after the last change (the trailing edge), so the end
//! of a burst is never lost; the window grows with the room, as one list costs every member a list
//! of every member ([`ServerConfig::userlist_delay_for`]). A client that has just logged in never
//! waits for the window: it gets the current list on its own as soon as the server has handled
//! what else is ready to run, so logins arriving together share one encoding.
//!
//! The timing is [`Throttle`]: pure, `now` in and a plan out, tested without sockets or clocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::lock;
use super::state::{Room, RoomState};
use super::ConnId;
#[cfg(doc)]
use crate::signaling::server::ServerConfig;

/// Leading-edge throttle with a trailing send: at most one list per window, the first at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Throttle {
    /// When the last list went to everyone.
    last: Option<Instant>,
    /// A list is due then: a timer is set for it.
    due: Option<Instant>,
}

/// What to do about a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Send the list now.
    Now,
    /// Set a timer and send the list then (call [`Throttle::fired`] when it goes off).
    At(Instant),
    /// A timer is set already; the list it sends, encoded then, carries this change too.
    Pending,
}

impl Throttle {
    /// The room's users changed at `now`; `window` is the room's current window.
    pub(super) fn changed(&mut self, now: Instant, window: Duration) -> Plan {
        if self.due.is_some() {
            return Plan::Pending;
        }
        match self.last {
            Some(last) if now < last + window => {
                let at = last + window;
                self.due = Some(at);
                Plan::At(at)
            }
            _ => {
                self.last = Some(now);
                Plan::Now
            }
        }
    }

    /// The timer set by [`Plan::At`] went off at `now`: the list goes out.
    pub(super) fn fired(&mut self, now: Instant) {
        self.due = None;
        self.last = Some(now);
    }
}

/// A room's user-list state.
#[derive(Debug, Default)]
pub(super) struct Userlist {
    throttle: Throttle,
    /// Members who logged in while the throttle held the list back: they get it on their own.
    joiners: Vec<ConnId>,
    /// A send to `joiners` is on its way.
    joiners_due: bool,
}

impl Room {
    /// The room's users changed; `joiner` is the member whose login (or rename) changed them.
    pub(super) fn userlist_changed(self: &Arc<Self>, state: &mut RoomState, joiner: Option<ConnId>) {
        let window = self.config.userlist_delay_for(state.members.len() + state.remote.len());
        match state.userlist.throttle.changed(Instant::now(), window) {
            Plan::Now => return send_to_all(state),
            Plan::At(at) => {
                let room = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let mut state = lock(&room.state);
                    state.userlist.throttle.fired(Instant::now());
                    send_to_all(&mut state);
                });
            }
            Plan::Pending => {}
        }
        let Some(joiner) = joiner else { return };
        state.userlist.joiners.push(joiner);
        if !std::mem::replace(&mut state.userlist.joiners_due, true) {
            let room = Arc::clone(self);
            tokio::spawn(async move {
                // Behind every task already ready to run: under a burst of logins, those handled
                // meanwhile join this send; a lone login is sent within microseconds.
                tokio::task::yield_now().await;
                let mut state = lock(&room.state);
                send_to_joiners(&mut state);
            });
        }
    }
}

/// Hands the same encoded list to every member.
fn send_to_all(state: &mut RoomState) {
    // Everyone waiting for a list of their own gets this one.
    state.userlist.joiners.clear();
    let Some(json) = encode(state) else { return };
    for member in state.members.values() {
        member.outbox.set_userlist(json.clone());
    }
}

/// Hands the current list to the members who logged in since the last send.
fn send_to_joiners(state: &mut RoomState) {
    state.userlist.joiners_due = false;
    let joiners = std::mem::take(&mut state.userlist.joiners);
    if joiners.is_empty() {
        return;
    }
    let Some(json) = encode(state) else { return };
    for id in joiners {
        if let Some(member) = state.members.get(&id) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(10);

    #[test]
    fn a_calm_room_sends_at_once() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.changed(t0, W), Plan::Now);
        // A window later the room is calm again.
        assert_eq!(throttle.changed(t0 + W, W), Plan::Now);
        assert_eq!(throttle.changed(t0 + W * 5, W), Plan::Now);
    }

    #[test]
    fn a_burst_gets_one_list_per_window_and_the_last_change_is_sent() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        let mut sent = vec![t0];
        assert_eq!(throttle.changed(t0, W), Plan::Now);
        let mut timer = None;
        // A change every millisecond for 100 ms.
        for ms in 1..=100u64 {
            let now = t0 + Duration::from_millis(ms);
            if timer.is_some_and(|at| now >= at) {
                throttle.fired(now);
                sent.push(now);
                timer = None;
            }
            match throttle.changed(now, W) {
                Plan::Now => sent.push(now),
                Plan::At(at) => {
                    assert!(timer.is_none(), "one timer at a time");
                    assert!(at > now && at <= now + W);
                    timer = Some(at);
                }
                Plan::Pending => assert!(timer.is_some(), "pending means a timer is set"),
            }
        }
        // The burst is over: the timer still set carries the last change.
        let at = timer.expect("the last change has a send on its way");
        throttle.fired(at);
        sent.push(at);
        assert!(sent.len() <= 100 / 10 + 2, "{} lists for 100 changes", sent.len());
        for pair in sent.windows(2) {
            assert!(pair[1] - pair[0] >= W, "at most one list per window: {pair:?}");
        }
        // And after the trailing send, a change inside the window waits again; a later one does not.
        assert!(matches!(throttle.changed(at + W / 2, W), Plan::At(_)));
    }

    #[test]
    fn a_timer_that_fires_late_still_spaces_the_next_list() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.changed(t0, W), Plan::Now);
        assert_eq!(throttle.changed(t0 + W / 2, W), Plan::At(t0 + W));
        assert_eq!(throttle.changed(t0 + W / 2, W), Plan::Pending);
        // The runtime was busy: the timer fires 3 windows late.
        throttle.fired(t0 + W * 4);
        assert_eq!(throttle.changed(t0 + W * 4, W), Plan::At(t0 + W * 5));
    }
}
