//! What the window remembers between runs (name, server, auto-answer, devices, ICE servers, a
//! certificate to trust for wss), kept as JSON in the
//! platform's config dir (`~/.config/peercall/settings.json` on Linux).

use crate::call::VideoPreference;
use crate::media::processing::Switches;
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
    /// The microphone's echo cancellation, noise suppression and gain control (all on by default).
    pub audio_processing: Switches,
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
            audio_processing: Switches::default(),
        }
    }
}

/// The person at the keyboard, as the form's first guess: the full name from their account (the first
/// field of the passwd entry's GECOS), else their login name, else `$USER`; "guest" only when the OS
/// knows nobody (a container without a passwd entry and without `$USER`).
fn default_name() -> String {
    os_account()
        .and_then(|(login, gecos)| name_from_account(&login, &gecos))
        .or_else(|| std::env::var("USER").ok().filter(|n| !n.trim().is_empty()))
        .unwrap_or_else(|| "guest".to_owned())
}

/// The display name an account gives: GECOS's full name (before the first comma; `&` stands for the
/// capitalised login name, as finger(1) reads it), or the login name when that is empty.
fn name_from_account(login: &str, gecos: &str) -> Option<String> {
    let full = gecos.split(',').next().unwrap_or("").trim();
    let name = if full.is_empty() {
        login.trim().to_owned()
    } else {
        let mut capitalised = login.chars();
        let capitalised: String =
            capitalised.next().map(|c| c.to_uppercase().chain(capitalised).collect()).unwrap_or_default();
        full.replace('&', &capitalised)
    };
    // Cut to the longest name the server takes by default, rather than be refused at login.
    let longest = crate::signaling::server::Limits::default().max_name_chars;
    let name: String = name.chars().filter(|c| !c.is_control()).take(longest).collect();
    Some(name.trim().to_owned()).filter(|n| !n.is_empty())
}

/// This process's account as (login name, GECOS field), read with getpwuid_r (NSS, so LDAP and
/// systemd-homed users are found too, not only /etc/passwd).
fn os_account() -> Option<(String, String)> {
    use std::ffi::CStr;
    // SAFETY: sysconf has no preconditions.
    let hint = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let mut size = if hint > 0 { hint as usize } else { 1024 };
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: an all-zero passwd is a valid value of that plain C struct; getpwuid_r fills it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf` is `size` bytes long, as passed.
        let rc = unsafe { libc::getpwuid_r(libc::getuid(), &mut entry, buf.as_mut_ptr(), size, &mut found) };
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        // SAFETY: on success pw_name and pw_gecos are NUL-terminated strings inside `buf` (or null for
        // gecos on some systems), alive until `buf` is dropped at the end of this iteration.
        let text = |p: *const libc::c_char| {
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        };
        return Some((text(entry.pw_name)?, text(entry.pw_gecos).unwrap_or_default()));
    }
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
    fn the_default_name_comes_from_the_account() {
        assert_eq!(name_from_account("ada", "Ada Lovelace,,,").as_deref(), Some("Ada Lovelace"));
        assert_eq!(name_from_account("ada", "").as_deref(), Some("ada"));
        assert_eq!(name_from_account("ada", " ,room 4,").as_deref(), Some("ada"));
        assert_eq!(name_from_account("bob", "& Smith").as_deref(), Some("Bob Smith"));
        assert_eq!(name_from_account("", "").as_deref(), None);
        assert_eq!(name_from_account("x", &"y".repeat(100)).map(|n| n.chars().count()), Some(64));
        // This machine's account (whoever runs the test) is what the form offers.
        let name = Settings::default().name;
        match os_account() {
            Some((login, gecos)) => assert_eq!(Some(name), name_from_account(&login, &gecos)),
            None => assert!(!name.is_empty(), "{name:?}"),
        }
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
