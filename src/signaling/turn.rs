//! Short-lived TURN credentials by the TURN REST scheme (draft-uberti-behave-turn-rest), which coturn
//! checks with `use-auth-secret`: username = `expiry:name`, credential = base64(HMAC-SHA1(secret, username)).
//! The signaling server hands them out after login, so the TURN secret never leaves the servers.

use super::protocol::IceServer;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The TURN servers and the secret they share with the signaling server.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// The secret coturn has as `static-auth-secret`.
    pub secret: String,
    /// `turn:host:port?transport=udp` (and any `stun:`) URLs handed to clients.
    pub urls: Vec<String>,
    /// How long a credential stays valid.
    pub ttl: Duration,
}

impl TurnConfig {
    /// The ICE servers for user `name`, with credentials valid for `ttl` from `now`.
    pub fn ice_servers_for(&self, name: &str, now: SystemTime) -> Vec<IceServer> {
        let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl;
        let (username, credential) = rest_credentials(&self.secret, name, expiry.as_secs());
        vec![IceServer { urls: self.urls.clone(), username, credential }]
    }
}

/// The TURN REST username and credential for `name`, valid until `expiry` (Unix seconds).
pub fn rest_credentials(secret: &str, name: &str, expiry: u64) -> (String, String) {
    // Colons separate the expiry from the name in the username; keep a name's own colons out.
    let username = format!("{expiry}:{}", name.replace(':', "_"));
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_turn_rest_example() {
        // Worked out with coturn's scheme: echo -n "1700000000:alice" | openssl dgst -sha1 -hmac "s3cret" -binary | base64
        let (user, cred) = rest_credentials("s3cret", "alice", 1_700_000_000);
        assert_eq!(user, "1700000000:alice");
        assert_eq!(cred, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }
}
