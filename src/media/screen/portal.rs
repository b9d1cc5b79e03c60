//! The Wayland seam: where the xdg-desktop-portal ScreenCast path (`ashpd` for the D-Bus dialogue,
//! `pipewire` for the frames) plugs in, behind the same [`Capturer`](super::Capturer) as X11.
//!
//! Not built yet, on purpose: this machine has no compositor and no portal to test it against, and the
//! `pipewire` crate needs libpipewire-0.3-dev and bindgen at build time. A Wayland session without
//! XWayland gets [`ScreenError::WaylandUnsupported`] in words, and the call goes on with the camera.
//! The shape it will take: `list` answers with one entry, "Choose in the system dialog" (the portal's
//! own picker chooses the screen or window, and the app never sees the others); `open` starts a
//! ScreenCast session (SelectSources with `types = MONITOR | WINDOW`, Start, OpenPipeWireRemote) and
//! returns a capturer whose `grab` hands over the newest PipeWire buffer as BGRA.

use super::{Capturer, ScreenError, ScreenId, ScreenTarget};

/// What a Wayland session can share: nothing yet (see the module's note).
pub fn list() -> Result<Vec<ScreenTarget>, ScreenError> {
    Err(ScreenError::WaylandUnsupported)
}

/// A portal capturer for `id`: not available yet.
pub fn open(id: ScreenId) -> Result<Box<dyn Capturer>, ScreenError> {
    let _ = id;
    Err(ScreenError::WaylandUnsupported)
}
