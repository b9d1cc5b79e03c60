//! Reading client messages without building JSON trees, and rewriting relayed ones.
//!
//! A client message is parsed once into its top-level fields, each value kept as a borrowed
//! [`RawValue`] (a slice of the received text). The server reads the few fields it needs and
//! relays the rest byte for byte, so `sdp`, `candidate` and fields it does not know pass untouched.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::signaling::protocol::reason;

/// A refused message: the `reason` code and words for the `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    /// One of [`reason`]'s constants.
    pub reason: &'static str,
    /// The same in words.
    pub text: String,
}

impl Rejection {
    pub(super) fn new(reason: &'static str, text: impl Into<String>) -> Self {
        Self { reason, text: text.into() }
    }
}

/// The targeted message types the server relays to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RelayKind {
    /// `video-offer`: opens a call between sender and target.
    Offer,
    /// `video-answer`: confirms the call.
    Answer,
    /// `new-ice-candidate`.
    Candidate,
    /// `hang-up`: ends the call.
    HangUp,
}

/// A client message the server understood.
#[derive(Debug)]
pub(super) enum ClientMessage<'a> {
    /// `username`: register a display name.
    Username { name: Cow<'a, str> },
    /// `message`: chat to the room.
    Chat { text: Cow<'a, str> },
    /// A targeted message, relayed with `name` rewritten.
    Relay { kind: RelayKind, target: Cow<'a, str>, fields: Fields<'a> },
}

/// Parses one text frame.
pub(super) fn parse(text: &str) -> Result<ClientMessage<'_>, Rejection> {
    let fields: Fields<'_> = serde_json::from_str(text)
        .map_err(|e| Rejection::new(reason::INVALID_JSON, format!("expected one JSON object: {e}")))?;
    let kind = fields.string("type")?.ok_or_else(|| Rejection::new(reason::UNKNOWN_TYPE, "no \"type\""))?;
    let relay = match &*kind {
        "username" => return Ok(ClientMessage::Username { name: fields.require_string("name")? }),
        "message" => return Ok(ClientMessage::Chat { text: fields.require_string("text")? }),
        "video-offer" => RelayKind::Offer,
        "video-answer" => RelayKind::Answer,
        "new-ice-candidate" => RelayKind::Candidate,
        "hang-up" => RelayKind::HangUp,
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Rejection::new(reason::UNKNOWN_TYPE, format!("unknown message type {shown:?}")));
        }
    };
    let target = fields.require_string("target")?;
    match relay {
        RelayKind::Offer | RelayKind::Answer => fields.require_present("sdp")?,
        RelayKind::Candidate => fields.require_present("candidate")?,
        RelayKind::HangUp => {}
    }
    Ok(ClientMessage::Relay { kind: relay, target, fields })
}

/// The top-level fields of a JSON object, in order, values unparsed.
#[derive(Debug)]
pub(super) struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The string value of `key`; `None` if absent; an error if present but not a string.
    fn string(&self, key: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<Str<'a>>(raw.get())
                .map(|s| Some(s.0))
                .map_err(|_| Rejection::new(reason::MISSING_FIELD, format!("\"{key}\" must be a string"))),
        }
    }

    fn require_string(&self, key: &str) -> Result<Cow<'a, str>, Rejection> {
        self.string(key)?
            .ok_or_else(|| Rejection::new(reason::MISSING_FIELD, format!("\"{key}\" is missing")))
    }

    fn require_present(&self, key: &str) -> Result<(), Rejection> {
        match self.get(key) {
            Some(raw) if raw.get() != "null" => Ok(()),
            _ => Err(Rejection::new(reason::MISSING_FIELD, format!("\"{key}\" is missing"))),
        }
    }

    /// The object again, with `name` set to `name` (in place, or appended when absent).
    pub(super) fn to_json_with_name(&self, name: &str) -> String {
        let extra: usize = self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = String::with_capacity(extra + name.len() + 16);
        let quoted_name = json_string(name);
        let mut named = false;
        out.push('{');
        for (key, value) in &self.0 {
            if out.len() > 1 {
                out.push(',');
            }
            push_key(&mut out, key, matches!(key, Cow::Borrowed(_)));
            if key == "name" {
                out.push_str(&quoted_name);
                named = true;
            } else {
                out.push_str(value.get());
            }
        }
        if !named {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str("\"name\":");
            out.push_str(&quoted_name);
        }
        out.push('}');
        out
    }
}

/// Writes `"key":`. A key borrowed from the input held no escapes, so it goes out as it came in.
fn push_key(out: &mut String, key: &str, borrowed: bool) {
    if borrowed {
        out.push('"');
        out.push_str(key);
        out.push('"');
    } else {
        out.push_str(&json_string(key));
    }
    out.push(':');
}

/// `s` as a JSON string literal.
pub(super) fn json_string(s: &str) -> String {
    // Serialising a &str into a String cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Keys that steer the server: a second copy would let the server and the receiving browser
/// (whose JSON.parse keeps the last one) read different values.
const SINGLE_KEYS: [&str; 3] = ["type", "target", "name"];

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'de>(PhantomData<&'de ()>);
        impl<'de> Visitor<'de> for FieldsVisitor<'de> {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(8);
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if SINGLE_KEYS.contains(&&*key) && fields.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor(PhantomData))
    }
}

/// A JSON string, borrowed from the input when it holds no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Chat text without HTML tags, as the MDN sample server does (`/(<([^>]+)>)/ig` → "").
pub(super) fn strip_tags(text: &str) -> Cow<'_, str> {
    if !text.contains('<') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // A tag needs at least one character between '<' and '>'.
        match after.find('>') {
            Some(close) if close > 0 => rest = &after[close + 1..],
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(text: &str) -> (RelayKind, String, String) {
        match parse(text) {
            Ok(ClientMessage::Relay { kind, target, fields }) => {
                (kind, target.into_owned(), fields.to_json_with_name("alice"))
            }
            other => panic!("not a relay: {other:?}"),
        }
    }

    #[test]
    fn relay_rewrites_name_and_keeps_the_rest() {
        let (kind, target, out) = relay(
            r#"{"type":"video-offer","name":"mallory","target":"bob","sdp":{"type":"offer","sdp":"v=0\r\n"},"x":[1,2]}"#,
        );
        assert_eq!((kind, target.as_str()), (RelayKind::Offer, "bob"));
        assert_eq!(
            out,
            r#"{"type":"video-offer","name":"alice","target":"bob","sdp":{"type":"offer","sdp":"v=0\r\n"},"x":[1,2]}"#
        );
        let (_, _, out) =
            relay(r#"{"type":"new-ice-candidate","target":"b\u0062","candidate":{"candidate":""}}"#);
        assert_eq!(
            out,
            r#"{"type":"new-ice-candidate","target":"b\u0062","candidate":{"candidate":""},"name":"alice"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(back["target"], "bb");
    }

    #[test]
    fn rejections() {
        let reason_of = |t: &str| parse(t).err().map(|r| r.reason);
        assert_eq!(reason_of("{"), Some(reason::INVALID_JSON));
        assert_eq!(reason_of("[1]"), Some(reason::INVALID_JSON));
        assert_eq!(reason_of(r#"{"type":"x","type":"hang-up"}"#), Some(reason::INVALID_JSON));
        assert_eq!(reason_of(r#"{"name":"a"}"#), Some(reason::UNKNOWN_TYPE));
        assert_eq!(reason_of(r#"{"type":"userlist"}"#), Some(reason::UNKNOWN_TYPE));
        assert_eq!(reason_of(r#"{"type":7}"#), Some(reason::MISSING_FIELD));
        assert_eq!(reason_of(r#"{"type":"username"}"#), Some(reason::MISSING_FIELD));
        assert_eq!(reason_of(r#"{"type":"video-offer","target":"b"}"#), Some(reason::MISSING_FIELD));
        assert_eq!(
            reason_of(r#"{"type":"video-offer","target":"b","sdp":null}"#),
            Some(reason::MISSING_FIELD)
        );
        assert_eq!(reason_of(r#"{"type":"hang-up","target":3}"#), Some(reason::MISSING_FIELD));
        assert!(parse(r#"{"type":"hang-up","target":"b","name":"a"}"#).is_ok());
    }

    #[test]
    fn strips_tags_like_the_sample() {
        assert_eq!(strip_tags("hi <b>there</b>"), "hi there");
        assert_eq!(strip_tags("a<b<c>d"), "ad");
        assert_eq!(strip_tags("1 < 2"), "1 < 2");
        assert_eq!(strip_tags("a <> b"), "a <> b");
        assert_eq!(strip_tags("1 < 2 and 3 > 1"), "1  1");
        assert_eq!(strip_tags("<script>alert(1)</script>"), "alert(1)");
        assert_eq!(strip_tags("trailing <"), "trailing <");
    }
}
