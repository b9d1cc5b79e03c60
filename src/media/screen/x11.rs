//! X11 capture with x11rb: screens (root windows) and top-level windows, read with MIT-SHM (the server
//! writes the pixels into memory we share with it: no 8 MB of 1080p through the socket each frame),
//! or with plain GetImage where the server has no MIT-SHM (a remote display).

use super::picture::{visible_part, BgraImage, Rect};
use super::{Capturer, ScreenError, ScreenId, ScreenTarget};
use x11rb::connection::Connection;
use x11rb::errors::ReplyError;
use x11rb::protocol::shm::ConnectionExt as _;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, ImageFormat, ImageOrder, MapState, Window, WindowClass,
};
use x11rb::protocol::ErrorKind;
use x11rb::rust_connection::RustConnection;

fn connect(display: &str) -> Result<RustConnection, ScreenError> {
    x11rb::connect(Some(display))
        .map(|(conn, _)| conn)
        .map_err(|e| ScreenError::Connect { display: display.to_owned(), detail: e.to_string() })
}

fn failed(e: impl std::fmt::Display) -> ScreenError {
    ScreenError::Capture(e.to_string())
}

/// Every screen, then every top-level window with a name (`_NET_CLIENT_LIST` when a window manager
/// keeps one, else the mapped children of the root: a bare X server such as Xvfb has no manager).
pub fn list(display: &str) -> Result<Vec<ScreenTarget>, ScreenError> {
    let conn = connect(display)?;
    let mut targets = Vec::new();
    let roots: Vec<_> =
        conn.setup().roots.iter().map(|s| (s.root, s.width_in_pixels, s.height_in_pixels)).collect();
    for (n, (_, w, h)) in roots.iter().enumerate() {
        targets.push(ScreenTarget {
            id: ScreenId::Screen(n as u32),
            name: format!("Screen {} ({w}x{h})", n + 1),
            width: u32::from(*w),
            height: u32::from(*h),
        });
    }
    for (root, _, _) in roots {
        for window in top_level_windows(&conn, root)? {
            let Some(name) = window_name(&conn, window) else { continue };
            let Ok(Ok(geometry)) = conn.get_geometry(window).map(|c| c.reply()) else { continue };
            if geometry.width < 16 || geometry.height < 16 {
                continue;
            }
            targets.push(ScreenTarget {
                id: ScreenId::Window(window),
                name,
                width: u32::from(geometry.width),
                height: u32::from(geometry.height),
            });
        }
    }
    Ok(targets)
}

fn top_level_windows(conn: &RustConnection, root: Window) -> Result<Vec<Window>, ScreenError> {
    let managed = atom(conn, b"_NET_CLIENT_LIST")
        .and_then(|list| conn.get_property(false, root, list, AtomEnum::WINDOW, 0, 4096).ok()?.reply().ok())
        .and_then(|reply| reply.value32().map(|v| v.collect::<Vec<_>>()))
        .filter(|windows| !windows.is_empty());
    if let Some(windows) = managed {
        return Ok(windows);
    }
    let tree = conn.query_tree(root).map_err(failed)?.reply().map_err(failed)?;
    Ok(tree
        .children
        .into_iter()
        .filter(|&w| {
            conn.get_window_attributes(w).ok().and_then(|c| c.reply().ok()).is_some_and(|a| {
                a.map_state == MapState::VIEWABLE
                    && a.class == WindowClass::INPUT_OUTPUT
                    && !a.override_redirect
            })
        })
        .collect())
}

fn atom(conn: &RustConnection, name: &[u8]) -> Option<u32> {
    Some(conn.intern_atom(true, name).ok()?.reply().ok()?.atom).filter(|&a| a != 0)
}

/// The window's title: `_NET_WM_NAME` (UTF-8), else `WM_NAME`.
fn window_name(conn: &RustConnection, window: Window) -> Option<String> {
    let text = |property: u32, kind: u32| -> Option<String> {
        let reply = conn.get_property(false, window, property, kind, 0, 1024).ok()?.reply().ok()?;
        let name = String::from_utf8_lossy(&reply.value).trim().to_owned();
        (!name.is_empty()).then_some(name)
    };
    let utf8 = atom(conn, b"UTF8_STRING");
    let net_name = atom(conn, b"_NET_WM_NAME");
    match (net_name, utf8) {
        (Some(n), Some(u)) => text(n, u),
        _ => None,
    }
    .or_else(|| text(AtomEnum::WM_NAME.into(), AtomEnum::STRING.into()))
}

/// A System V shared-memory segment the X server writes screen pixels into.
struct SharedMemory {
    address: *mut u8,
    len: usize,
    segment: u32,
}

// SAFETY: the mapping is owned by this value alone and only read through &self / written by the
// X server between our requests; moving it between threads changes nothing about that.
unsafe impl Send for SharedMemory {}

impl SharedMemory {
    /// A segment of `len` bytes attached to us and to the server; `None` where MIT-SHM is missing
    /// or refused (a remote display, a server without the extension).
    fn attach(conn: &RustConnection, len: usize) -> Option<Self> {
        conn.shm_query_version().ok()?.reply().ok()?;
        // SAFETY: shmget/shmat with a private key and a size; the results are checked before use.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return None;
        }
        // SAFETY: `id` is the segment just made; a null address lets the kernel choose.
        let address = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if address as isize == -1 {
            // SAFETY: removing the segment we made and could not map.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            return None;
        }
        let mut memory = Self { address: address.cast(), len, segment: 0 };
        let segment = conn.generate_id().ok()?;
        let attached = conn.shm_attach(segment, id as u32, false).ok()?.check();
        // Marked for removal now: the kernel frees it when both sides have detached, even if we crash.
        // SAFETY: shmctl on our own segment id.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        attached.ok()?;
        // Not `Self { segment, ..memory }`: that would copy the fields and drop (detach) `memory`.
        memory.segment = segment;
        Some(memory)
    }

    fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: the mapping is `self.len` bytes and lives as long as `self`; the server writes it
        // only inside a ShmGetImage request, which has completed (we hold its reply) when we read.
        unsafe { std::slice::from_raw_parts(self.address, len.min(self.len)) }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: detaching our own mapping once; the segment itself was marked for removal.
        unsafe { libc::shmdt(self.address.cast()) };
    }
}

/// Captures one screen or window of an X display.
pub struct X11Capturer {
    conn: RustConnection,
    target: ScreenTarget,
    /// The drawable read: the screen's root or the window.
    drawable: Window,
    root: Window,
    screen_size: (u32, u32),
    shm: Option<SharedMemory>,
}

impl X11Capturer {
    /// Opens `id` on `display`: checks it exists and that its pixels are 32-bit BGRX.
    pub fn open(display: &str, id: ScreenId) -> Result<Self, ScreenError> {
        let conn = connect(display)?;
        let setup = conn.setup();
        if setup.image_byte_order != ImageOrder::LSB_FIRST {
            return Err(ScreenError::Format("the display sends pixels most significant byte first".into()));
        }
        let has_32bpp = setup.pixmap_formats.iter().any(|f| f.depth == 24 && f.bits_per_pixel == 32);
        let target = list(display)?.into_iter().find(|t| t.id == id).ok_or(ScreenError::NotFound(id))?;
        let (root, size) = match id {
            ScreenId::Screen(n) => {
                let s = &setup.roots[n as usize];
                (s.root, (u32::from(s.width_in_pixels), u32::from(s.height_in_pixels)))
            }
            ScreenId::Window(w) => {
                let tree =
                    conn.query_tree(w).map_err(failed)?.reply().map_err(|_| ScreenError::NotFound(id))?;
                let s = setup.roots.iter().find(|s| s.root == tree.root).ok_or(ScreenError::NotFound(id))?;
                (s.root, (u32::from(s.width_in_pixels), u32::from(s.height_in_pixels)))
            }
        };
        let depth = setup.roots.iter().find(|s| s.root == root).map_or(0, |s| s.root_depth);
        if !(depth == 24 || depth == 32) || !has_32bpp {
            return Err(ScreenError::Format(format!(
                "depth {depth}; only 24-bit colour in 32-bit pixels is read"
            )));
        }
        let drawable = match id {
            ScreenId::Screen(_) => root,
            ScreenId::Window(w) => w,
        };
        // Big enough for the whole screen: a window's visible part never exceeds it.
        let shm = SharedMemory::attach(&conn, size.0 as usize * size.1 as usize * 4);
        tracing::info!(target = %target.name, shm = shm.is_some(), "screen capture opened");
        Ok(Self { conn, target, drawable, root, screen_size: size, shm })
    }

    /// Whether the server writes into shared memory (else each picture comes through the socket).
    pub fn uses_shared_memory(&self) -> bool {
        self.shm.is_some()
    }

    /// The part of the target to read now, in its own coordinates.
    fn area(&mut self) -> Result<Rect, ScreenError> {
        let gone = self.gone_words();
        let geometry = self.conn.get_geometry(self.drawable).map_err(|_| gone.clone())?.reply();
        let geometry = geometry.map_err(|_| gone.clone())?;
        if self.drawable == self.root {
            self.screen_size = (u32::from(geometry.width), u32::from(geometry.height));
            return Ok(Rect { x: 0, y: 0, width: geometry.width.into(), height: geometry.height.into() });
        }
        let attributes = self.conn.get_window_attributes(self.drawable).map_err(failed)?.reply();
        if attributes.map_or(true, |a| a.map_state != MapState::VIEWABLE) {
            return Err(ScreenError::Gone(format!(
                "the shared window \"{}\" was closed or minimised",
                self.target.name
            )));
        }
        let origin = self.conn.translate_coordinates(self.drawable, self.root, 0, 0).map_err(failed)?.reply();
        let origin = origin.map_err(|_| gone.clone())?;
        let on_screen = Rect {
            x: origin.dst_x.into(),
            y: origin.dst_y.into(),
            width: geometry.width.into(),
            height: geometry.height.into(),
        };
        visible_part(on_screen, self.screen_size).ok_or_else(|| {
            ScreenError::Gone(format!("the shared window \"{}\" moved off the screen", self.target.name))
        })
    }

    fn gone_words(&self) -> ScreenError {
        ScreenError::Gone(match self.target.id {
            ScreenId::Screen(_) => format!("the shared screen \"{}\" went away", self.target.name),
            ScreenId::Window(_) => format!("the shared window \"{}\" closed", self.target.name),
        })
    }

    /// What an X error on a grab means: the window went (closed, unmapped), or something else.
    fn grab_error(&self, e: ReplyError) -> ScreenError {
        match e {
            ReplyError::X11Error(x)
                if matches!(x.error_kind, ErrorKind::Window | ErrorKind::Drawable | ErrorKind::Match) =>
            {
                self.gone_words()
            }
            ReplyError::ConnectionError(_) => ScreenError::Gone("the display went away".into()),
            other => failed(other),
        }
    }
}

impl Capturer for X11Capturer {
    fn target(&self) -> &ScreenTarget {
        &self.target
    }

    fn grab(&mut self) -> Result<BgraImage, ScreenError> {
        let area = self.area()?;
        let (x, y) = (area.x as i16, area.y as i16);
        let (w, h) = (area.width.min(u16::MAX.into()) as u16, area.height.min(u16::MAX.into()) as u16);
        self.target.width = u32::from(w);
        self.target.height = u32::from(h);
        let len = usize::from(w) * usize::from(h) * 4;
        let data = match &self.shm {
            Some(shm) if len <= shm.len => {
                let format = ImageFormat::Z_PIXMAP.into();
                let cookie = self.conn.shm_get_image(self.drawable, x, y, w, h, !0, format, shm.segment, 0);
                cookie.map_err(failed)?.reply().map_err(|e| self.grab_error(e))?;
                shm.bytes(len).to_vec()
            }
            _ => {
                let cookie = self.conn.get_image(ImageFormat::Z_PIXMAP, self.drawable, x, y, w, h, !0);
                cookie.map_err(failed)?.reply().map_err(|e| self.grab_error(e))?.data
            }
        };
        if data.len() < len {
            return Err(ScreenError::Format(format!("{} bytes for a {w}x{h} picture", data.len())));
        }
        Ok(BgraImage { width: w.into(), height: h.into(), stride: usize::from(w) * 4, data })
    }
}

impl Drop for X11Capturer {
    fn drop(&mut self) {
        if let Some(shm) = &self.shm {
            let _ = self.conn.shm_detach(shm.segment);
            let _ = self.conn.flush();
        }
    }
}
