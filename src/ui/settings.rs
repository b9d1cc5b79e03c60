//! What the window remembers between runs (name, server, auto-answer, devices, ICE servers, a
//! certificate to trust for wss), kept as JSON in the
//! platform's config dir (`~/.config/peercall/settings.json` on Linux).

use crate::call::VideoPreference;
use crate::signaling::protocol::IceServer;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The embedded server's port, and the address the first-run form suggests.
pub const DEFAULT_PORT: u16 = 6503;

/// The persisted settings. Missing fields take their defaults, so older files keep loading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The display name asked for in the room.
    pub name: String,
    /// The signaling server URL; a loopback address means "the one built into this app".
    pub server: String,
    /// Accept incoming calls without asking.
    pub auto_answer: bool,
    /// Show the call-statistics overlay on the video.
    pub show_stats: bool,
    /// Camera, microphone and speaker by id (picked in the Devices window, `ui::devices`): `None` is
    /// the system default, `"synthetic"` the test pattern or tone, `"none"` (speaker) plays nothing.
    pub camera: Option<String>,
    /// See `camera`.
    pub microphone: Option<String>,
    /// See `camera`.
    pub speaker: Option<String>,
    /// STUN/TURN servers to use besides those the signaling server hands out.
    pub ice_servers: Vec<IceServer>,
    /// Send media through TURN relays only.
    pub relay_only: bool,
    /// A PEM certificate to trust for a `wss://` server with a self-signed certificate (empty: only
    /// the public CAs).
    pub trusted_cert: String,
    /// Which video codec calls put first (`auto`: H.264 when we call, the caller's order when called).
    pub video_codec: VideoPreference,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: default_name(),
            server: format!("ws://127.0.0.1:{DEFAULT_PORT}/"),
            auto_answer: false,
            show_stats: false,
            camera: None,
            microphone: None,
            speaker: None,
            ice_servers: Vec::new(),
            relay_only: false,
            trusted_cert: String::new(),
            video_codec: VideoPreference::Auto,
        }
    }
}

/// The login name of the person at the keyboard, as a friendly default.
fn default_name() -> String {
    std::env::var("USER").ok().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "me".to_owned())
}

impl Settings {
    /// Where the settings live, if the platform has a config dir (it may not, e.g. without `$HOME`).
    pub fn path() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "Peercall", "peercall")
            .map(|d| d.config_dir().join("settings.json"))
    }

    /// Loads the saved settings. A missing file is a first run; an unreadable one gives the defaults
    /// and a sentence saying why, for the window to show.
    pub fn load() -> (Settings, Option<String>) {
        let Some(path) = Self::path() else {
            return (Settings::default(), Some("no config directory: settings will not be kept".into()));
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(settings) => (settings, None),
                Err(e) => (
                    Settings::default(),
                    Some(format!("{} is damaged ({e}): using defaults", path.display())),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(e) => (Settings::default(), Some(format!("could not read {}: {e}", path.display()))),
        }
    }

    /// Writes the settings; the error says which file and why.
    pub fn save(&self) -> Result<(), String> {
        let path = Self::path().ok_or("no config directory: settings not saved")?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
            // Write aside and rename, so a crash mid-write never leaves half a file.
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("could not save settings to {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_files_with_missing_fields_still_load() {
        let s: Settings = serde_json::from_str(r#"{"name":"ada"}"#).expect("parses");
        assert_eq!(s.name, "ada");
        assert_eq!(s.server, Settings::default().server);
        assert!(!s.auto_answer);
        assert_eq!(s.trusted_cert, "", "no certificate to trust unless one was saved");
    }

    #[test]
    fn round_trips_through_json() {
        let s = Settings {
            name: "grace".into(),
            auto_answer: true,
            speaker: Some("hdmi".into()),
            trusted_cert: "/etc/peercall/server.pem".into(),
            ..Default::default()
        };
        let back: Settings =
            serde_json::from_str(&serde_json::to_string(&s).expect("serialises")).expect("parses");
        assert_eq!(back, s);
    }
}
