//! When a room's user list goes out, and its encoding: encoded once per change, the same bytes to
//! every member.
//!
//! A calm room sends its list at once (the leading edge), and may send [`BURST`] back to back, so
//! a room of two forms without any timer. While changes keep coming, it sends on average one list
//! per window, and always one after the last change (the trailing edge), so the end of a burst is
//! never lost; the window grows with the room, as one list costs every member a list of every
//! member ([`ServerConfig::userlist_delay_for`]).
//!
//! A client that has just logged in does not wait for the window: it gets the current list on its
//! own, as soon as the server has handled what else is ready to run (logins arriving together
//! share one encoding). Those lists are budgeted: between two broadcasts, at most one joiner in
//! [`JOINER_SHARE`] members is served on its own, so that a burst of logins into a large room
//! (each joiner's list as long as the room) cannot cost more than the broadcasts; past the budget,
//! joiners get the next broadcast like everyone else. Nobody is sent a list it already holds.
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

/// Lists a calm room sends back to back before the window applies: the first member's and the
/// second's, so two people meeting in a new room see each other at once.
pub(super) const BURST: u32 = 2;

/// Between broadcasts, joiners served on their own: one per this many members (and at least
/// [`JOINER_FLOOR`]). One by one, joiners arrive slower than that (1,000 a second into a room of
/// 1,000 is 84 a window, against 250); in a burst the rest wait for the broadcast, so joiner
/// lists cost at most a quarter of the broadcasts' bytes.
const JOINER_SHARE: usize = 4;
/// Joiners a small room serves on their own between broadcasts, whatever its size.
const JOINER_FLOOR: usize = 16;

/// A leading-edge throttle with a trailing send, as a generic cell rate algorithm: `tat` is when
/// the room would be calm again, one window per list sent; a change goes out at once while that is
/// within `BURST - 1` windows of now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Throttle {
    /// The theoretical arrival time: when the lists sent so far have used up their windows.
    tat: Option<Instant>,
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
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let slack = window * (BURST - 1);
        if tat <= now + slack {
            self.tat = Some(tat + window);
            Plan::Now
        } else {
            let at = tat - slack;
            self.due = Some(at);
            Plan::At(at)
        }
    }

    /// The timer set by [`Plan::At`] went off at `now`: the list goes out.
    pub(super) fn fired(&mut self, now: Instant, window: Duration) {
        self.due = None;
        self.tat = Some(self.tat.map_or(now, |tat| tat.max(now)) + window);
    }
}

/// A room's user-list state.
#[derive(Debug, Default)]
pub(super) struct Userlist {
    throttle: Throttle,
    /// Counts the room's changes: a member whose `list_seen` equals it holds the current list.
    version: u64,
    /// The current list, encoded, and the version it encodes.
    encoded: Option<(u64, Utf8Bytes)>,
    /// Members who logged in while the throttle held the list back: they get it on their own.
    joiners: Vec<ConnId>,
    /// A send to `joiners` is on its way.
    joiners_due: bool,
    /// Joiners served on their own since the last broadcast.
    joiners_served: usize,
}

impl Room {
    /// The room's users changed; `joiner` is the member whose login (or rename) changed them.
    pub(super) fn userlist_changed(self: &Arc<Self>, state: &mut RoomState, joiner: Option<ConnId>) {
        state.userlist.version += 1;
        let members = state.members.len() + state.remote.len();
        let window = self.config.userlist_delay_for(members);
        match state.userlist.throttle.changed(Instant::now(), window) {
            Plan::Now => return send_to_all(state),
            Plan::At(at) => {
                let room = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let mut state = lock(&room.state);
                    let window = room.config.userlist_delay_for(state.members.len() + state.remote.len());
                    state.userlist.throttle.fired(Instant::now(), window);
                    send_to_all(&mut state);
                });
            }
            Plan::Pending => {}
        }
        let Some(joiner) = joiner else { return };
        let budget = (members / JOINER_SHARE).max(JOINER_FLOOR);
        if state.userlist.joiners_served + state.userlist.joiners.len() >= budget {
            return; // The broadcast on its way serves this one.
        }
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

/// Hands the current list to every member that does not hold it yet.
fn send_to_all(state: &mut RoomState) {
    let list = &mut state.userlist;
    // Everyone waiting for a list of their own gets this one.
    list.joiners.clear();
    list.joiners_served = 0;
    let version = list.version;
    let Some(json) = current(state) else { return };
    for member in state.members.values_mut() {
        member.hand_userlist(version, &json);
    }
}

/// Hands the current list to the members who logged in since the last send.
fn send_to_joiners(state: &mut RoomState) {
    state.userlist.joiners_due = false;
    let joiners = std::mem::take(&mut state.userlist.joiners);
    if joiners.is_empty() {
        return;
    }
    state.userlist.joiners_served += joiners.len();
    let version = state.userlist.version;
    let Some(json) = current(state) else { return };
    for id in joiners {
        if let Some(member) = state.members.get_mut(&id) {
            member.hand_userlist(version, &json);
        }
    }
}

/// The current list, encoded once per version.
fn current(state: &mut RoomState) -> Option<Utf8Bytes> {
    let version = state.userlist.version;
    if let Some((encoded, json)) = &state.userlist.encoded {
        if *encoded == version {
            return Some(json.clone());
        }
    }
    let json = encode(state)?;
    state.userlist.encoded = Some((version, json.clone()));
    Some(json)
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
    fn a_calm_room_sends_at_once_and_a_room_of_two_forms_without_a_timer() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.changed(t0, W), Plan::Now);
        // The second member, a moment later: still at once (the burst).
        assert_eq!(throttle.changed(t0 + W / 10, W), Plan::Now);
        // The third within the window waits.
        assert!(matches!(throttle.changed(t0 + W / 5, W), Plan::At(_)));
        let mut calm = Throttle::default();
        for k in 0..5 {
            assert_eq!(calm.changed(t0 + W * 3 * k, W), Plan::Now, "a change every three windows");
        }
    }

    #[test]
    fn a_burst_gets_one_list_per_window_and_the_last_change_is_sent() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        let mut sent = Vec::new();
        let mut timer = None;
        // A change every millisecond for 100 ms.
        for ms in 0..=100u64 {
            let now = t0 + Duration::from_millis(ms);
            if timer.is_some_and(|at| now >= at) {
                throttle.fired(now, W);
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
        throttle.fired(at, W);
        sent.push(at);
        assert!(sent.len() <= 100 / 10 + BURST as usize + 1, "{} lists for 101 changes", sent.len());
        // Any stretch of time holds at most BURST lists plus one per window.
        for (i, first) in sent.iter().enumerate() {
            for (j, last) in sent.iter().enumerate().skip(i) {
                let allowed = BURST as u128 + (*last - *first).as_nanos() / W.as_nanos();
                assert!((j - i + 1) as u128 <= allowed, "lists {i}..={j} in {:?}", *last - *first);
            }
        }
        // After the trailing send, a change inside the window waits again.
        assert!(matches!(throttle.changed(at + W / 2, W), Plan::At(_)));
    }

    #[test]
    fn a_timer_that_fires_late_still_spaces_the_next_list() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.changed(t0, W), Plan::Now);
        assert_eq!(throttle.changed(t0, W), Plan::Now);
        assert_eq!(throttle.changed(t0 + W / 2, W), Plan::At(t0 + W));
        assert_eq!(throttle.changed(t0 + W / 2, W), Plan::Pending);
        // The runtime was busy: the timer fires 3 windows late. The late list counts from then.
        throttle.fired(t0 + W * 4, W);
        assert_eq!(throttle.changed(t0 + W * 4, W), Plan::Now, "the burst credit came back meanwhile");
        assert_eq!(throttle.changed(t0 + W * 4, W), Plan::At(t0 + W * 5));
    }
}
