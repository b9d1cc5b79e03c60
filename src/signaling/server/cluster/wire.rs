//! What nodes say to each other over Redis pub/sub, and the keys they share.
//!
//! Node channel messages carry a relayed client message with its routing header. The header is
//! length-prefixed text (`<len>:<field>` ...) rather than JSON: the payload, already the exact
//! bytes the target's client gets, follows it unchanged, never escaped into a string again.

use std::sync::Arc;

use super::ConnId;
use crate::signaling::server::message::RelayKind;

/// A node's id: random, fresh at every start, so a restarted node never inherits a dead one's state.
pub(crate) type NodeId = Arc<str>;

/// Everything under this prefix belongs to Peercall.
const PREFIX: &str = "peercall:";

/// A relayed client message on its way to the node that holds its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub kind: RelayKind,
    pub room: String,
    /// The target's name (the node resolves it to a connection).
    pub to: String,
    /// The sender's name, so the target's node can track the call for hang-up-on-disconnect.
    pub from: String,
    /// The node that holds the sender.
    pub from_node: String,
    /// The message as the target's client receives it.
    pub payload: String,
}

impl Envelope {
    /// Reads an envelope; `None` for anything malformed (a foreign publisher on our channel).
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let kind = kind_from_char(text.chars().next()?)?;
        // Every kind is one ASCII byte.
        let mut rest = &text[1..];
        let mut field = || -> Option<String> {
            let (len, tail) = rest.split_once(':')?;
            let len: usize = len.parse().ok()?;
            let value = tail.get(..len)?;
            rest = &tail[len..];
            Some(value.to_owned())
        };
        let (room, to, from, from_node) = (field()?, field()?, field()?, field()?);
        Some(Self { kind, room, to, from, from_node, payload: rest.to_owned() })
    }
}

/// An envelope's wire text from borrowed parts (room, to, from, from-node), written once: the relay
/// path encodes each cross-node message straight from the client's bytes, without an [`Envelope`].
pub(crate) fn encode_envelope(kind: RelayKind, fields: [&str; 4], payload: &str) -> String {
    use std::fmt::Write as _;
    let mut out =
        String::with_capacity(payload.len() + fields.iter().map(|f| f.len() + 6).sum::<usize>() + 1);
    out.push(kind_char(kind));
    for field in fields {
        // Writing into a String cannot fail.
        let _ = write!(out, "{}:{field}", field.len());
    }
    out.push_str(payload);
    out
}

fn kind_char(kind: RelayKind) -> char {
    match kind {
        RelayKind::Offer => 'o',
        RelayKind::Answer => 'a',
        RelayKind::Candidate => 'c',
        RelayKind::HangUp => 'h',
    }
}

fn kind_from_char(c: char) -> Option<RelayKind> {
    Some(match c {
        'o' => RelayKind::Offer,
        'a' => RelayKind::Answer,
        'c' => RelayKind::Candidate,
        'h' => RelayKind::HangUp,
        _ => return None,
    })
}

/// What goes over a room's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomEvent {
    /// The room's members changed on `node`: read the member hash again.
    Members { node: String },
    /// A chat message from a client on `node`, as every client receives it.
    Chat { node: String, payload: String },
}

impl RoomEvent {
    pub(crate) fn encode(&self) -> String {
        match self {
            RoomEvent::Members { node } => format!("m{node}"),
            RoomEvent::Chat { node, payload } => format!("c{}:{node}{payload}", node.len()),
        }
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        if let Some(node) = text.strip_prefix('m') {
            return Some(RoomEvent::Members { node: node.to_owned() });
        }
        let rest = text.strip_prefix('c')?;
        let (len, tail) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let node = tail.get(..len)?.to_owned();
        Some(RoomEvent::Chat { node, payload: tail[len..].to_owned() })
    }
}

/// A member hash field: `<node>/<connection id>`.
pub(crate) fn member_field(node: &str, conn: ConnId) -> String {
    format!("{node}/{conn}")
}

/// Splits a member hash field (or a name key's value) into node and connection id.
pub(crate) fn parse_member_field(field: &str) -> Option<(&str, ConnId)> {
    let (node, conn) = field.rsplit_once('/')?;
    Some((node, conn.parse().ok()?))
}

/// Room names are free text (a URL path): keys carry their length so that no room name can
/// reach into another's keys (`a:b` + `c` against `a` + `b:c`).
fn room_part(room: &str) -> String {
    format!("{}:{room}", room.len())
}

/// The channel a node listens on for messages to its clients.
pub(crate) fn node_channel(node: &str) -> String {
    format!("{PREFIX}to-node:{node}")
}

/// The channel of a room's membership changes and chat.
pub(crate) fn room_channel(room: &str) -> String {
    format!("{PREFIX}room:{}", room_part(room))
}

/// Which room a room channel belongs to.
pub(crate) fn room_of_channel(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix(PREFIX)?.strip_prefix("room:")?;
    let (len, room) = rest.split_once(':')?;
    (len.parse::<usize>().ok()? == room.len()).then_some(room)
}

/// Hash of a room's named members: field `<node>/<conn>`, value the name.
pub(crate) fn members_key(room: &str) -> String {
    format!("{PREFIX}members:{}", room_part(room))
}

/// The key prefix of a room's name claims (`<prefix><name>` holds `<node>/<conn>`).
pub(crate) fn name_key_prefix(room: &str) -> String {
    format!("{PREFIX}name:{}:", room_part(room))
}

/// The counter behind a room's name variants (`bob1`, `bob2`, ...).
pub(crate) fn suffix_key(room: &str) -> String {
    format!("{PREFIX}suffix:{}", room_part(room))
}

/// Heartbeat keys start with this; the claim script appends a claim holder's node to check it.
pub(crate) const NODE_ALIVE_KEY_PREFIX: &str = "peercall:alive:";

/// Exists while the node is alive: refreshed every heartbeat, expires when the node dies.
pub(crate) fn node_alive_key(node: &str) -> String {
    format!("{NODE_ALIVE_KEY_PREFIX}{node}")
}

/// The set of every node that has announced itself.
pub(crate) fn nodes_key() -> String {
    format!("{PREFIX}nodes")
}

/// The set of rooms where a node has (or had) members: what to clean when it dies.
pub(crate) fn node_rooms_key(node: &str) -> String {
    format!("{PREFIX}rooms-of:{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(e: &Envelope) -> String {
        encode_envelope(e.kind, [&e.room, &e.to, &e.from, &e.from_node], &e.payload)
    }

    #[test]
    fn envelopes_round_trip_with_awkward_fields() {
        let envelope = Envelope {
            kind: RelayKind::Candidate,
            room: "a:b/7".into(),
            to: "bö:b".into(),
            from: "12:x".into(),
            from_node: "n1".into(),
            payload: r#"{"type":"new-ice-candidate","candidate":{"candidate":"1:2"}}"#.into(),
        };
        assert_eq!(Envelope::decode(&encode(&envelope)), Some(envelope));
        for kind in [RelayKind::Offer, RelayKind::Answer, RelayKind::HangUp] {
            let e = Envelope {
                kind,
                room: String::new(),
                to: "t".into(),
                from: "f".into(),
                from_node: "n".into(),
                payload: String::new(),
            };
            assert_eq!(Envelope::decode(&encode(&e)), Some(e));
        }
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        for text in ["", "x1:a1:b1:c1:d", "o", "o5:ab", "o1:a1:b1:c", "o9999999999999999999999:a", "oz:a"] {
            assert_eq!(Envelope::decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn room_events_round_trip() {
        for event in [
            RoomEvent::Members { node: "abc".into() },
            RoomEvent::Chat { node: "n:1".into(), payload: r#"{"type":"message"}"#.into() },
        ] {
            assert_eq!(RoomEvent::decode(&event.encode()), Some(event));
        }
        assert_eq!(RoomEvent::decode("c5:ab"), None);
        assert_eq!(RoomEvent::decode("q"), None);
    }

    #[test]
    fn keys_keep_rooms_apart() {
        assert_ne!(name_key_prefix("a:b") + "c", name_key_prefix("a") + "b:c");
        assert_eq!(room_of_channel(&room_channel("team:a")), Some("team:a"));
        assert_eq!(room_of_channel(&room_channel("")), Some(""));
        assert_eq!(room_of_channel("peercall:room:3:ab"), None);
        assert_eq!(parse_member_field(&member_field("n1", 42)), Some(("n1", 42)));
        assert_eq!(parse_member_field("n1/x"), None);
    }
}
