//! The bounded queue of messages waiting to go out to one client.
//!
//! Anyone may push (the client's own task, its peers' tasks, the room's userlist task); only the
//! client's connection task takes. Pushing never waits: a full queue marks the client as too slow
//! and its connection task closes it, so a slow reader never stalls the sender or the room.
//! The `userlist` has a slot of its own that each broadcast overwrites: a client that is behind
//! only ever receives the newest list.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One client's outgoing messages.
#[derive(Debug)]
pub(super) struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    max_messages: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Utf8Bytes>,
    bytes: usize,
    userlist: Option<Utf8Bytes>,
    overflowed: bool,
}

/// What the connection task takes out in one go.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Messages in the order they were pushed.
    pub queue: VecDeque<Utf8Bytes>,
    /// The newest userlist, if one came since the last batch.
    pub userlist: Option<Utf8Bytes>,
    /// The queue overflowed: the client is too slow and must be disconnected.
    pub overflowed: bool,
}

impl Outbox {
    /// An empty outbox; it allocates nothing until used.
    pub(super) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self { state: Mutex::default(), wake: Notify::new(), max_messages, max_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-changed; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a message. Returns `false` (and drops it) when the client has fallen too far behind.
    pub(super) fn push(&self, message: Utf8Bytes) -> bool {
        let mut state = self.lock();
        if state.overflowed {
            return false;
        }
        if state.queue.len() >= self.max_messages || state.bytes + message.len() > self.max_bytes {
            state.overflowed = true;
            state.queue = VecDeque::new();
            state.bytes = 0;
            drop(state);
            self.wake.notify_one();
            return false;
        }
        state.bytes += message.len();
        state.queue.push_back(message);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Replaces the pending userlist with a newer one.
    pub(super) fn set_userlist(&self, userlist: Utf8Bytes) {
        self.lock().userlist = Some(userlist);
        self.wake.notify_one();
    }

    /// Takes everything pending.
    pub(super) fn take(&self) -> Batch {
        let mut state = self.lock();
        state.bytes = 0;
        Batch {
            // Taking the VecDeque (not draining it) hands its memory to the writer, which frees it:
            // an idle client keeps no queue allocation.
            queue: std::mem::take(&mut state.queue),
            userlist: state.userlist.take(),
            overflowed: state.overflowed,
        }
    }

    /// Completes when something was pushed since the last call (at once if it already was).
    pub(super) async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_marks_and_drops() {
        let outbox = Outbox::new(2, 1000);
        assert!(outbox.push("a".into()));
        outbox.set_userlist("u1".into());
        outbox.set_userlist("u2".into());
        assert!(outbox.push("b".into()));
        let batch = outbox.take();
        assert_eq!(batch.queue, ["a", "b"]);
        assert_eq!(batch.userlist.as_ref().map(|u| u.as_str()), Some("u2"));
        assert!(!batch.overflowed);
        assert!(outbox.push("c".into()) && outbox.push("d".into()));
        assert!(!outbox.push("e".into()));
        assert!(!outbox.push("f".into()));
        assert!(outbox.take().overflowed);
        let small = Outbox::new(10, 3);
        assert!(!small.push("four".into()));
    }
}
