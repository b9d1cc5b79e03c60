//! The rooms against a fake directory: no sockets, no Redis; what the rooms ask of the directory
//! and what each member's outbox holds afterwards.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{RoomFull, Rooms, UnknownTarget};
use crate::signaling::server::cluster::{ConnId, Directory, Event, Health, RemoteMember};
use crate::signaling::server::message::RelayKind;
use crate::signaling::server::outbox::Outbox;
use crate::signaling::server::ServerConfig;

/// What the rooms asked of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Claim(String),
    Release(String, ConnId),
    Announce(ConnId, Option<String>),
    Forward { node: String, kind: RelayKind, to: String, from: String },
    Chat(String),
    Opened(String),
    Closed(String),
}

/// A directory that records every call and answers claims from a script (`None` when it runs out:
/// decide locally, as one node does).
#[derive(Debug, Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    claims: Mutex<VecDeque<Option<String>>>,
}

impl Fake {
    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Directory for Fake {
    fn claim<'a>(&'a self, _: &'a str, wanted: &'a str, _: ConnId) -> BoxFuture<'a, Option<String>> {
        self.record(Call::Claim(wanted.to_owned()));
        let answer = self.claims.lock().unwrap().pop_front().flatten();
        Box::pin(std::future::ready(answer))
    }

    fn release(&self, _: &str, name: &str, conn: ConnId) {
        self.record(Call::Release(name.to_owned(), conn));
    }

    fn announce(&self, _: &str, conn: ConnId, name: Option<&str>) {
        self.record(Call::Announce(conn, name.map(str::to_owned)));
    }

    fn forward(&self, node: &str, kind: RelayKind, _: &str, to: &str, from: &str, _: &str) {
        self.record(Call::Forward { node: node.into(), kind, to: to.into(), from: from.into() });
    }

    fn publish_chat(&self, _: &str, payload: &str) {
        self.record(Call::Chat(payload.to_owned()));
    }

    fn room_opened(&self, room: &str) {
        self.record(Call::Opened(room.to_owned()));
    }

    fn room_closed(&self, room: &str) {
        self.record(Call::Closed(room.to_owned()));
    }

    fn health(&self) -> Health {
        Health::Single
    }
}

fn setup(tweak: impl FnOnce(&mut ServerConfig)) -> (Rooms, Arc<Fake>) {
    let mut config = ServerConfig::ephemeral();
    tweak(&mut config);
    let fake = Arc::new(Fake::default());
    (Rooms::new(Arc::new(config), Arc::clone(&fake) as Arc<dyn Directory>), fake)
}

fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::new(64, 64 * 1024))
}

/// The messages (not user lists) waiting in an outbox, parsed.
fn messages(outbox: &Outbox) -> Vec<Value> {
    outbox.take().queue.iter().map(|m| serde_json::from_str(m).expect("the server writes JSON")).collect()
}

fn remote(node: &str, conn: ConnId, name: &str) -> RemoteMember {
    RemoteMember { node: Arc::from(node), conn, name: Arc::from(name) }
}

#[tokio::test]
async fn names_taken_get_the_samples_variants_and_renames_free_the_old_name() {
    let (rooms, fake) = setup(|_| {});
    let room = rooms.join("r", 1, outbox()).unwrap();
    for id in 2..=4 {
        rooms.join("r", id, outbox()).unwrap();
    }
    assert_eq!(fake.take(), [Call::Opened("r".into())], "one room opened, once");
    let name = |got: Option<(Arc<str>, bool)>| got.map(|(name, renamed)| (name.to_string(), renamed));
    assert_eq!(name(room.register(1, "alice").await), Some(("alice".into(), false)));
    assert_eq!(name(room.register(2, "alice").await), Some(("alice1".into(), true)));
    assert_eq!(name(room.register(3, "alice").await), Some(("alice2".into(), true)));
    // The same name again is no change and asks nobody.
    fake.take();
    assert_eq!(name(room.register(1, "alice").await), Some(("alice".into(), false)));
    assert_eq!(fake.take(), []);
    // A rename gives the old name back, here and to the directory.
    assert_eq!(name(room.register(2, "bob").await), Some(("bob".into(), false)));
    assert_eq!(
        fake.take(),
        [Call::Claim("bob".into()), Call::Release("alice1".into(), 2), Call::Announce(2, Some("bob".into()))]
    );
    assert_eq!(name(room.register(4, "alice1").await), Some(("alice1".into(), false)));
    // A connection that is not (or no longer) in the room gets no name.
    assert_eq!(name(room.register(99, "zed").await), None);
}

#[tokio::test]
async fn the_directory_decides_names_unless_its_answer_is_held_here() {
    let (rooms, fake) = setup(|_| {});
    let room = rooms.join("r", 1, outbox()).unwrap();
    rooms.join("r", 2, outbox()).unwrap();
    fake.claims.lock().unwrap().extend([Some("alice7".to_owned()), Some("alice7".to_owned())]);
    assert_eq!(
        room.register(1, "alice").await.map(|(n, r)| (n.to_string(), r)),
        Some(("alice7".into(), true))
    );
    fake.take();
    // The directory's answer collides with a name held on this node (an outage's leftover): it is
    // given back and the room picks a free variant itself.
    let (name, renamed) = room.register(2, "alice7").await.unwrap();
    assert!(renamed && &*name != "alice7", "{name}");
    let calls = fake.take();
    assert!(calls.contains(&Call::Release("alice7".into(), 2)), "{calls:?}");
}

#[tokio::test]
async fn leaving_ends_calls_with_hang_up_to_local_and_remote_partners() {
    let (rooms, fake) = setup(|_| {});
    let (alice_box, bob_box, dave_box) = (outbox(), outbox(), outbox());
    let room = rooms.join("r", 1, Arc::clone(&alice_box)).unwrap();
    rooms.join("r", 2, Arc::clone(&bob_box)).unwrap();
    rooms.join("r", 3, Arc::clone(&dave_box)).unwrap();
    room.register(1, "alice").await.unwrap();
    room.register(2, "bob").await.unwrap();
    room.register(3, "dave").await.unwrap();
    rooms.on_event(Event::Members { room: "r".into(), members: vec![remote("n2", 7, "carl")] });
    // alice calls bob (here) and carl (on node n2); dave only trickles a candidate to bob.
    room.relay(1, "alice", RelayKind::Offer, "bob", r#"{"type":"video-offer"}"#.into()).unwrap();
    room.relay(1, "alice", RelayKind::Offer, "carl", r#"{"type":"video-offer"}"#.into()).unwrap();
    room.relay(3, "dave", RelayKind::Candidate, "bob", r#"{"type":"new-ice-candidate"}"#.into()).unwrap();
    let got = messages(&bob_box);
    assert_eq!(
        got.iter().map(|m| m["type"].as_str()).collect::<Vec<_>>(),
        [Some("video-offer"), Some("new-ice-candidate")]
    );
    fake.take();
    rooms.leave(&room, 1);
    let hang_ups = messages(&bob_box);
    assert_eq!(hang_ups.len(), 1, "{hang_ups:?}");
    assert_eq!(hang_ups[0]["type"], "hang-up");
    assert_eq!(hang_ups[0]["name"], "alice");
    assert_eq!(hang_ups[0]["target"], "bob");
    assert_eq!(hang_ups[0]["reason"], "disconnected");
    let calls = fake.take();
    assert!(
        calls.contains(&Call::Announce(1, None)) && calls.contains(&Call::Release("alice".into(), 1)),
        "{calls:?}"
    );
    assert!(
        calls.contains(&Call::Forward {
            node: "n2".into(),
            kind: RelayKind::HangUp,
            to: "carl".into(),
            from: "alice".into()
        }),
        "{calls:?}"
    );
    // A candidate is no call: dave leaving tells bob nothing.
    rooms.leave(&room, 3);
    assert_eq!(messages(&bob_box), Vec::<Value>::new());
    // The partner list went with alice: bob leaving hangs up on nobody.
    rooms.leave(&room, 2);
    assert!(!fake.take().iter().any(|c| matches!(c, Call::Forward { .. })));
    assert!(rooms.get("r").is_none(), "an empty room is forgotten");
}

#[tokio::test]
async fn a_dead_node_leaves_the_room_and_its_partners_here_get_hang_up() {
    let (rooms, _fake) = setup(|_| {});
    let alice_box = outbox();
    let room = rooms.join("r", 1, Arc::clone(&alice_box)).unwrap();
    room.register(1, "alice").await.unwrap();
    rooms.on_event(Event::Members { room: "r".into(), members: vec![remote("n2", 7, "carl")] });
    room.relay(1, "alice", RelayKind::Offer, "carl", "{}".into()).unwrap();
    rooms.on_event(Event::NodeGone(Arc::from("n2")));
    let got = messages(&alice_box);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0]["type"].as_str(), got[0]["name"].as_str()), (Some("hang-up"), Some("carl")));
    assert_eq!(room.relay(1, "alice", RelayKind::Offer, "carl", "{}".into()), Err(UnknownTarget));
}

#[tokio::test]
async fn the_room_cap_counts_every_node_and_a_refused_room_is_not_created() {
    let (rooms, fake) = setup(|c| c.room_cap = Some(2));
    rooms.join("r", 1, outbox()).unwrap();
    rooms.join("r", 2, outbox()).unwrap();
    assert_eq!(rooms.join("r", 3, outbox()).err(), Some(RoomFull));
    let (one, _) = (rooms.join("s", 4, outbox()).unwrap(), ());
    rooms.on_event(Event::Members { room: "s".into(), members: vec![remote("n2", 9, "zoe")] });
    assert_eq!(rooms.join("s", 5, outbox()).err(), Some(RoomFull), "a client on another node counts");
    rooms.leave(&one, 4);
    assert_eq!(fake.take(), [Call::Opened("r".into()), Call::Opened("s".into()), Call::Closed("s".into())]);
    let (rooms, fake) = setup(|c| c.room_cap = Some(0));
    assert_eq!(rooms.join("t", 1, outbox()).err(), Some(RoomFull));
    assert!(rooms.get("t").is_none() && fake.take().is_empty(), "no room opened for nobody");
}

#[tokio::test]
async fn relay_to_an_unknown_target_is_refused_and_goes_nowhere() {
    let (rooms, fake) = setup(|_| {});
    let alice_box = outbox();
    let room = rooms.join("r", 1, Arc::clone(&alice_box)).unwrap();
    room.register(1, "alice").await.unwrap();
    fake.take();
    for kind in [RelayKind::Offer, RelayKind::Answer, RelayKind::Candidate, RelayKind::HangUp] {
        assert_eq!(room.relay(1, "alice", kind, "nobody", "{}".into()), Err(UnknownTarget));
    }
    assert_eq!(fake.take(), []);
    assert_eq!(messages(&alice_box), Vec::<Value>::new());
    // Another room's member is unknown here too.
    let other = rooms.join("s", 2, outbox()).unwrap();
    other.register(2, "bob").await.unwrap();
    assert_eq!(room.relay(1, "alice", RelayKind::Offer, "bob", "{}".into()), Err(UnknownTarget));
}

#[tokio::test]
async fn chat_reaches_every_member_here_and_the_other_nodes() {
    let (rooms, fake) = setup(|_| {});
    let (a, b) = (outbox(), outbox());
    let room = rooms.join("r", 1, Arc::clone(&a)).unwrap();
    rooms.join("r", 2, Arc::clone(&b)).unwrap();
    fake.take();
    room.broadcast(&r#"{"type":"message","text":"hi"}"#.into());
    rooms.on_event(Event::Chat { room: "r".into(), payload: r#"{"type":"message","text":"yo"}"#.into() });
    for outbox in [&a, &b] {
        let texts: Vec<_> = messages(outbox).iter().map(|m| m["text"].as_str().map(str::to_owned)).collect();
        assert_eq!(texts, [Some("hi".to_owned()), Some("yo".to_owned())]);
    }
    assert_eq!(
        fake.take(),
        [Call::Chat(r#"{"type":"message","text":"hi"}"#.into())],
        "only our own chat goes out"
    );
}

#[tokio::test]
async fn user_lists_list_both_nodes_in_join_order_and_drop_a_detached_cluster() {
    let (rooms, _fake) = setup(|c| c.userlist_delay = Duration::ZERO);
    let a = outbox();
    let room = rooms.join("r", 10, Arc::clone(&a)).unwrap();
    rooms.join("r", 30, outbox()).unwrap();
    room.register(10, "alice").await.unwrap();
    rooms.on_event(Event::Members { room: "r".into(), members: vec![remote("n2", 20, "carl")] });
    wait_users(&a, serde_json::json!(["alice", "carl", null])).await;
    rooms.on_event(Event::Detached);
    wait_users(&a, serde_json::json!(["alice", null])).await;
}

/// Waits (in bounded steps: lists may come from a timer task) until `outbox` gets a user list of `users`.
async fn wait_users(outbox: &Outbox, users: Value) {
    let mut last = None;
    for _ in 0..500 {
        if let Some(list) = outbox.take().userlist {
            let list: Value = serde_json::from_str(&list).unwrap();
            if list["users"] == users {
                return;
            }
            last = Some(list);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no user list of {users} within a second; the last was {last:?}");
}
