//! The signaling messages, typed: JSON over WebSocket, field for field as MDN's webrtc-from-chat sample.
//!
//! Every message is a JSON object with a `type`. Browsers written for MDN's guide send `id` and `date`
//! as large integers (milliseconds), `sdp` as `{"type":"offer","sdp":"v=0..."}` and `candidate` as
//! `{"candidate","sdpMid","sdpMLineIndex","usernameFragment"}`; the types below accept exactly that and
//! tolerate what browsers leave out.
//!
//! The server relays targeted messages (`video-offer`, `video-answer`, `new-ice-candidate`, `hang-up`)
//! as the JSON object it received, with `name` overwritten by the sender's registered name, so fields it
//! does not know (e.g. our `reason` on `hang-up`) pass through untouched.

use serde::{Deserialize, Serialize};

/// Reasons carried by `{"type":"error","reason":...}` replies, stable strings a client can match on.
pub mod reason {
    /// The text frame was not valid JSON (or not a JSON object).
    pub const INVALID_JSON: &str = "invalid-json";
    /// The `type` field is missing or names no message we know.
    pub const UNKNOWN_TYPE: &str = "unknown-type";
    /// A field the message type requires is missing or has the wrong JSON type.
    pub const MISSING_FIELD: &str = "missing-field";
    /// A targeted message named a user who is not in the room.
    pub const UNKNOWN_TARGET: &str = "unknown-target";
    /// The message needs a registered name; send `username` first.
    pub const NOT_LOGGED_IN: &str = "not-logged-in";
    /// The requested name is empty, too long, or holds control characters.
    pub const BAD_NAME: &str = "bad-name";
    /// The client sent more messages than the rate limit allows; the message was dropped.
    pub const RATE_LIMITED: &str = "rate-limited";
    /// The message exceeded the size limit.
    pub const TOO_LARGE: &str = "too-large";
    /// Binary frames are not part of the protocol.
    pub const BINARY: &str = "binary-not-supported";
}

/// `hang-up` carries this in `reason` when the callee refuses because it is already in a call.
/// Pages written for MDN's guide ignore the field and simply end the call, which is the right outcome.
pub const HANGUP_REASON_BUSY: &str = "busy";
/// `hang-up` carries this in `reason` when the callee declined the call.
pub const HANGUP_REASON_DECLINED: &str = "declined";
/// `hang-up` carries this in `reason` when the server ends a call because the peer's connection
/// closed, was dropped, or the peer took another name.
pub const HANGUP_REASON_DISCONNECTED: &str = "disconnected";

/// A session description as the browser's `RTCSessionDescription.toJSON()` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// `"offer"` or `"answer"` (also `"pranswer"`/`"rollback"` in browsers; we only use the first two).
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP text.
    pub sdp: String,
}

/// An ICE candidate as the browser's `RTCIceCandidate.toJSON()` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:...` attribute line; empty for end-of-candidates.
    pub candidate: String,
    /// The media stream identification tag the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The index of the m-line the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE username fragment of the generation the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// A STUN or TURN server as browsers' `RTCIceServer` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN username (for the REST scheme: `expiry:name`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// TURN credential (for the REST scheme: base64 of HMAC-SHA1(secret, username)).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

/// Every message of the protocol, in either direction.
///
/// One enum for both directions keeps the field shapes in one place: the server fills `name` and `date`
/// where the table in DESIGN.md §4 says it does; the client fills what a browser page would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// Server → client on connect: the connection's id.
    #[serde(rename = "id")]
    Id {
        /// The connection id (the MDN sample starts counting at the server's start time in ms).
        id: u64,
    },
    /// Client → server: register a display name.
    #[serde(rename = "username")]
    Username {
        /// The wanted name.
        name: String,
        /// The id the server gave this connection (browsers echo it back).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Milliseconds since the epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        date: Option<u64>,
    },
    /// Server → client: the wanted name was taken; this is the name the client now has.
    #[serde(rename = "rejectusername")]
    RejectUsername {
        /// The connection id.
        id: u64,
        /// The name the server picked.
        name: String,
    },
    /// Server → clients: the room's users, in join order; `null` for connections without a name yet.
    #[serde(rename = "userlist")]
    UserList {
        /// The names.
        users: Vec<Option<String>>,
    },
    /// Chat: client → room; the server stamps `name` and `date`.
    #[serde(rename = "message")]
    Chat {
        /// The sender's registered name (set by the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The chat text.
        text: String,
        /// The sender's connection id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Milliseconds since the epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        date: Option<u64>,
    },
    /// Caller → callee: the offer.
    #[serde(rename = "video-offer")]
    VideoOffer {
        /// The sender's name (the server overwrites it with the registered name).
        name: String,
        /// The callee's name.
        target: String,
        /// The offer.
        sdp: SessionDescription,
    },
    /// Callee → caller: the answer.
    #[serde(rename = "video-answer")]
    VideoAnswer {
        /// The sender's name (the server overwrites it with the registered name).
        name: String,
        /// The caller's name.
        target: String,
        /// The answer.
        sdp: SessionDescription,
    },
    /// Either peer → the other: a trickled ICE candidate.
    #[serde(rename = "new-ice-candidate")]
    NewIceCandidate {
        /// The sender's name (set by the server; MDN's page leaves it out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The peer's name.
        target: String,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Either peer → the other (or the server, when a peer vanished): the call is over.
    #[serde(rename = "hang-up")]
    HangUp {
        /// Who hung up.
        name: String,
        /// The peer's name.
        target: String,
        /// Why, when not a plain hang-up: [`HANGUP_REASON_BUSY`], [`HANGUP_REASON_DECLINED`], `"disconnected"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Server → client, after login: STUN/TURN servers to use, with short-lived TURN credentials
    /// (the TURN REST scheme coturn's `use-auth-secret` checks). A Peercall extension: pages written for
    /// MDN's guide ignore it.
    #[serde(rename = "iceservers")]
    IceServers {
        /// The servers, shaped like `RTCIceServer` in browsers.
        #[serde(rename = "iceServers")]
        ice_servers: Vec<IceServer>,
    },
    /// Server → client: the room is at its cap; the connection will be closed.
    #[serde(rename = "full")]
    Full {
        /// The room's name.
        room: String,
    },
    /// Server → client: the last message was refused.
    #[serde(rename = "error")]
    Error {
        /// One of the [`reason`] constants.
        reason: String,
        /// The same in words, for people and logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
}

/// Milliseconds since the Unix epoch, as browsers' `Date.now()` puts in `id` and `date`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Message {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail: every key is a string and no value is a float.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_mdn_page_sends() {
        let offer =
            r#"{"name":"alice","target":"bob","type":"video-offer","sdp":{"type":"offer","sdp":"v=0\r\n"}}"#;
        let m: Message = serde_json::from_str(offer).expect("offer parses");
        assert_eq!(
            m,
            Message::VideoOffer {
                name: "alice".into(),
                target: "bob".into(),
                sdp: SessionDescription { kind: "offer".into(), sdp: "v=0\r\n".into() }
            }
        );
        let cand = r#"{"type":"new-ice-candidate","target":"bob","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}"#;
        let m: Message = serde_json::from_str(cand).expect("candidate parses");
        match m {
            Message::NewIceCandidate { candidate, name, .. } => {
                assert_eq!(name, None);
                assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
                assert_eq!(candidate.username_fragment.as_deref(), Some("abcd"));
            }
            other => panic!("wrong variant {other:?}"),
        }
        let login = r#"{"name":"carol","date":1732358400000,"id":1732358400123,"type":"username"}"#;
        assert!(matches!(serde_json::from_str::<Message>(login), Ok(Message::Username { .. })));
        let list = r#"{"type":"userlist","users":["a",null,"b"]}"#;
        assert_eq!(
            serde_json::from_str::<Message>(list).ok(),
            Some(Message::UserList { users: vec![Some("a".into()), None, Some("b".into())] })
        );
    }

    #[test]
    fn round_trips() {
        let m = Message::HangUp { name: "bob".into(), target: "alice".into(), reason: Some("busy".into()) };
        let back: Message = serde_json::from_str(&m.to_json()).expect("round trip");
        assert_eq!(back, m);
        assert!(m.to_json().contains(r#""type":"hang-up""#));
    }
}
