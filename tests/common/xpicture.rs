//! A small X client for the screen-sharing tests: windows showing a known picture (text-like glyph
//! rows, 1-pixel lines, colour blocks), and comparing what the far side decoded with a screenshot.

use image::RgbaImage;
use peercall::media::frame::RgbaFrame;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, ImageFormat, PropMode, Window,
    WindowClass,
};
use x11rb::protocol::Event as XEvent;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Magenta: the notes window's first colour block (the window test finds its thumbnail by it).
pub const NOTES_ACCENT: [u8; 3] = [230, 0, 230];

/// A region of a picture: (x, y, width, height).
pub type Area = (usize, usize, usize, usize);

/// The known picture, BGRX, `w`×`h`. Top: rows of "text" (5x7 glyphs from a hash, black on white,
/// one pixel apart, lines 10 pixels apart) in [`text_area`]; under it a grid of 1-pixel lines; at the
/// bottom colour blocks, `accent` first (the tests find a window's thumbnail by it).
pub fn known_picture(w: usize, h: usize, seed: u32, accent: [u8; 3]) -> Vec<u8> {
    let mut px = vec![255u8; w * h * 4];
    let mut put = |x: usize, y: usize, rgb: [u8; 3]| {
        let i = (y * w + x) * 4;
        px[i..i + 4].copy_from_slice(&[rgb[2], rgb[1], rgb[0], 0]);
    };
    let (tx, ty, tw, th) = text_area(w, h);
    for line in 0..th / 10 {
        for col in 0..tw / 6 {
            let glyph = hash(seed ^ (line as u32) << 16 ^ col as u32);
            // A space now and then, as between words.
            if glyph % 7 == 0 {
                continue;
            }
            for gy in 0..7 {
                for gx in 0..5 {
                    if hash(glyph ^ (gy * 5 + gx)) % 5 < 2 {
                        put(tx + col * 6 + gx as usize, ty + line * 10 + gy as usize, [0, 0, 0]);
                    }
                }
            }
        }
    }
    let grid_top = ty + th + 8;
    let grid_bottom = h * 3 / 4;
    for y in grid_top..grid_bottom {
        for x in 8..w - 8 {
            if x % 12 == 0 || y % 12 == 0 {
                put(x, y, [40, 40, 160]);
            }
        }
    }
    let blocks = [accent, [230, 30, 30], [30, 160, 60], [30, 60, 220], [240, 200, 20], [90, 90, 90]];
    let block_w = (w - 16) / blocks.len();
    for y in grid_bottom + 6..h - 6 {
        for (i, rgb) in blocks.iter().enumerate() {
            for x in 8 + i * block_w..8 + (i + 1) * block_w - 4 {
                put(x, y, *rgb);
            }
        }
    }
    px
}

/// Where [`known_picture`] draws its text: the top half, inset 8 pixels.
pub fn text_area(w: usize, h: usize) -> Area {
    (8, 8, w - 16, h / 2 - 8)
}

fn hash(x: u32) -> u32 {
    let mut x = x.wrapping_mul(0x9E37_79B1) ^ 0x5bd1_e995;
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^ (x >> 12)
}

/// A connection to the test's X server holding its windows (they go when it does).
pub struct Painter {
    conn: RustConnection,
    root: Window,
}

impl Painter {
    /// Connects to `display`.
    pub fn connect(display: &str) -> Painter {
        let (conn, screen) = x11rb::connect(Some(display)).expect("the test's X server answers");
        let root = conn.setup().roots[screen].root;
        Painter { conn, root }
    }

    /// Maps a top-level window named `name` at (x, y) showing `bgrx` (`w`×`h`), and waits until it
    /// is drawn.
    pub fn window(&self, name: &str, (x, y): (i16, i16), (w, h): (u16, u16), bgrx: &[u8]) -> Window {
        let conn = &self.conn;
        let win = conn.generate_id().expect("an id");
        let aux = CreateWindowAux::new().background_pixel(0xFF_FFFF).event_mask(EventMask::EXPOSURE);
        conn.create_window(0, win, self.root, x, y, w, h, 0, WindowClass::INPUT_OUTPUT, 0, &aux)
            .expect("create window");
        conn.change_property8(PropMode::REPLACE, win, AtomEnum::WM_NAME, AtomEnum::STRING, name.as_bytes())
            .expect("name");
        let net_name = conn.intern_atom(false, b"_NET_WM_NAME").expect("atom").reply().expect("atom").atom;
        let utf8 = conn.intern_atom(false, b"UTF8_STRING").expect("atom").reply().expect("atom").atom;
        conn.change_property8(PropMode::REPLACE, win, net_name, utf8, name.as_bytes()).expect("name");
        conn.map_window(win).expect("map");
        conn.flush().expect("flush");
        loop {
            match conn.wait_for_event().expect("an event") {
                XEvent::Expose(e) if e.window == win => break,
                _ => {}
            }
        }
        let gc = conn.generate_id().expect("an id");
        conn.create_gc(gc, win, &CreateGCAux::new()).expect("gc");
        // Strips of 16 rows keep each request far under the core protocol's size limit.
        let row = usize::from(w) * 4;
        for (i, strip) in bgrx.chunks(row * 16).enumerate() {
            let rows = (strip.len() / row) as u16;
            conn.put_image(ImageFormat::Z_PIXMAP, win, gc, w, rows, 0, (i * 16) as i16, 0, 24, strip)
                .expect("put image");
        }
        conn.sync().expect("drawn");
        win
    }

    /// Draws `bgrx` (`w`×`h`) into `win` at (x, y): what an application redrawing part of itself does.
    pub fn draw(&self, win: Window, (x, y): (i16, i16), (w, h): (u16, u16), bgrx: &[u8]) {
        let gc = self.conn.generate_id().expect("an id");
        self.conn.create_gc(gc, win, &CreateGCAux::new()).expect("gc");
        self.conn.put_image(ImageFormat::Z_PIXMAP, win, gc, w, h, x, y, 0, 24, bgrx).expect("put image");
        self.conn.free_gc(gc).expect("free gc");
        self.conn.sync().expect("drawn");
    }

    /// Closes the window, as its application would.
    pub fn close(&self, win: Window) {
        self.conn.destroy_window(win).expect("destroy");
        self.conn.sync().expect("closed");
    }
}

/// BT.601 luma of an RGB pixel (full range: both sides are compared the same way).
fn luma(p: &[u8]) -> f64 {
    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
}

/// Luma PSNR (dB) of `area` of the decoded `frame` against the same area of `shot` offset by
/// `origin` (where the frame's top left is on the screenshot).
pub fn psnr_against_screenshot(frame: &RgbaFrame, shot: &RgbaImage, origin: (u32, u32), area: Area) -> f64 {
    let (ax, ay, aw, ah) = area;
    let mut sse = 0.0;
    for y in ay..ay + ah {
        for x in ax..ax + aw {
            let i = (y * frame.width + x) * 4;
            let s = shot.get_pixel(origin.0 + x as u32, origin.1 + y as u32).0;
            let d = luma(&frame.pixels[i..i + 3]) - luma(&s);
            sse += d * d;
        }
    }
    let mse = sse / (aw * ah) as f64;
    if mse < 1e-9 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}
