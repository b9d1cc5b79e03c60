//! Screen sharing: a screen or one window as a second kind of video source, on the same track as
//! the camera.
//!
//! - [`picture`]: the pure part: the size a shared picture goes out at (full size up to 1920x1080,
//!   larger scaled down, sizes even), BGRA → I420 (the `yuv` crate's SIMD routines) and thumbnails.
//! - [`x11`]: X11 capture (x11rb, MIT-SHM where the server has it, plain GetImage where not):
//!   listing screens and top-level windows, grabbing one of them.
//! - [`portal`]: the Wayland seam (xdg-desktop-portal ScreenCast + PipeWire). Not built yet: it says so
//!   in words, and the camera goes on.
//! - [`source`]: [`ScreenSource`], a [`VideoSource`](super::source::VideoSource) that captures on its
//!   own thread and keeps only the newest picture (frames are dropped, never queued).
//!
//! A backend implements [`Capturer`]; [`Display::detect`] picks one from the environment.

pub mod picture;
pub mod portal;
pub mod source;
pub mod x11;

pub use picture::BgraImage;
pub use source::ScreenSource;

use std::fmt;
use std::str::FromStr;

/// What can be shared: a whole screen or one window, as the backend names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScreenId {
    /// An X screen (its root window), by number.
    Screen(u32),
    /// A top-level window, by its X id.
    Window(u32),
}

impl fmt::Display for ScreenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScreenId::Screen(n) => write!(f, "screen:{n}"),
            ScreenId::Window(id) => write!(f, "window:0x{id:x}"),
        }
    }
}

impl FromStr for ScreenId {
    type Err = String;

    /// `screen:0`, `window:0x400001` (or decimal), as `--list-screens` prints them; a bare number is a screen.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a screen or window id: use one --list-screens prints, like screen:0 or window:0x400001")
        };
        let number = |n: &str| -> Result<u32, String> {
            match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16).map_err(|_| bad()),
                None => n.parse().map_err(|_| bad()),
            }
        };
        match s.split_once(':') {
            Some(("screen", n)) => Ok(ScreenId::Screen(number(n)?)),
            Some(("window", n)) => Ok(ScreenId::Window(number(n)?)),
            None => Ok(ScreenId::Screen(number(s)?)),
            Some(_) => Err(bad()),
        }
    }
}

/// One thing the picker offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenTarget {
    /// How to ask for it.
    pub id: ScreenId,
    /// What people call it: "Screen 1 (1280x800)", a window's title.
    pub name: String,
    /// Its size now, in pixels.
    pub width: u32,
    /// Its height now, in pixels.
    pub height: u32,
}

impl ScreenTarget {
    /// Whether this is a whole screen (not a window).
    pub fn is_screen(&self) -> bool {
        matches!(self.id, ScreenId::Screen(_))
    }
}

/// What can go wrong in screen sharing, in words the window and the CLI show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScreenError {
    /// No display to capture: neither `DISPLAY` nor `WAYLAND_DISPLAY` is set.
    #[error("no display to share: this session has no X11 or Wayland display (DISPLAY and WAYLAND_DISPLAY are unset)")]
    NoDisplay,
    /// A Wayland session without a usable X server: the portal path is not built in.
    #[error("sharing the screen on Wayland needs the desktop portal (ScreenCast), which this build does not have yet; log in to an X11 session (or run under XWayland with DISPLAY set) to share")]
    WaylandUnsupported,
    /// The display could not be reached or refused.
    #[error("could not reach the display {display}: {detail}")]
    Connect {
        /// The display named.
        display: String,
        /// Why.
        detail: String,
    },
    /// The id names nothing that exists now.
    #[error("{0} is not on this display (any more): pick one from the list")]
    NotFound(ScreenId),
    /// The shared window closed or was hidden, or the screen went away, mid-share.
    #[error("{0}")]
    Gone(String),
    /// The display's pixels are in a layout we do not read.
    #[error("the display's pixel format is not supported: {0}")]
    Format(String),
    /// A capture failed for another reason.
    #[error("screen capture failed: {0}")]
    Capture(String),
}

/// A capture backend holding one target: grabs its picture now.
pub trait Capturer: Send {
    /// The target as it is now (its size may change between grabs).
    fn target(&self) -> &ScreenTarget;
    /// The picture now, in BGRA. [`ScreenError::Gone`] when the window closed or the screen went away.
    fn grab(&mut self) -> Result<BgraImage, ScreenError>;
}

/// Which display this session has, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Display {
    /// An X server (also XWayland): `DISPLAY`.
    X11(String),
    /// Wayland without X: only the portal could capture.
    Wayland,
    /// Neither.
    None,
}

impl Display {
    /// The display the environment names (`DISPLAY` wins: XWayland serves X11 capture on Wayland too).
    pub fn detect() -> Self {
        Self::from_env(std::env::var("DISPLAY").ok(), std::env::var("WAYLAND_DISPLAY").ok())
    }

    /// As [`detect`](Self::detect), from the two variables' values.
    pub fn from_env(display: Option<String>, wayland: Option<String>) -> Self {
        match (display.filter(|d| !d.is_empty()), wayland.filter(|w| !w.is_empty())) {
            (Some(d), _) => Display::X11(d),
            (None, Some(_)) => Display::Wayland,
            (None, None) => Display::None,
        }
    }

    /// Every screen and window that can be shared, screens first.
    pub fn list(&self) -> Result<Vec<ScreenTarget>, ScreenError> {
        match self {
            Display::X11(d) => x11::list(d),
            Display::Wayland => portal::list(),
            Display::None => Err(ScreenError::NoDisplay),
        }
    }

    /// A capturer for `id`.
    pub fn open(&self, id: ScreenId) -> Result<Box<dyn Capturer>, ScreenError> {
        match self {
            Display::X11(d) => Ok(Box::new(x11::X11Capturer::open(d, id)?)),
            Display::Wayland => portal::open(id),
            Display::None => Err(ScreenError::NoDisplay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_both_ways() {
        for id in [ScreenId::Screen(0), ScreenId::Screen(3), ScreenId::Window(0x40_0001)] {
            assert_eq!(id.to_string().parse::<ScreenId>(), Ok(id));
        }
        assert_eq!("window:4194305".parse::<ScreenId>(), Ok(ScreenId::Window(0x40_0001)));
        assert_eq!("1".parse::<ScreenId>(), Ok(ScreenId::Screen(1)));
        let err = "monitor:1".parse::<ScreenId>().unwrap_err();
        assert!(err.contains("--list-screens"), "{err}");
        assert!("window:0xzz".parse::<ScreenId>().is_err());
    }

    #[test]
    fn the_display_comes_from_the_environment_x_first() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(Display::from_env(s(":1"), s("wayland-0")), Display::X11(":1".into()));
        assert_eq!(Display::from_env(None, s("wayland-0")), Display::Wayland);
        assert_eq!(Display::from_env(s(""), None), Display::None);
        assert_eq!(Display::None.list(), Err(ScreenError::NoDisplay));
        let wayland = Display::Wayland.list().unwrap_err().to_string();
        assert!(wayland.contains("Wayland") && wayland.contains("X11"), "{wayland}");
    }
}
