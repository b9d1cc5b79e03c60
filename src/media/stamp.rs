//! The stamp every synthetic video frame carries in its top rows: its frame number and capture time,
//! so the far end can check content and measure glass-to-glass latency from decoded pixels.
//!
//! The stamp is 96 bits (32-bit frame number, 48-bit capture time in µs, 16-bit checksum) drawn as
//! 16×16 black/white blocks in the top rows. 16×16 is one H.264 macroblock, so each bit is coded on its
//! own and survives any quantiser we use: the receiver reads the centre 8×8 of each block and thresholds.
//! The test pattern ([`super::pattern`]) and the camera-like scene ([`super::scene`]) both draw it.

use super::frame::{I420Frame, RgbaFrame};

/// Side of one stamp block, in pixels: one H.264 macroblock.
pub(crate) const BLOCK: usize = 16;
/// Bits in a stamp: frame number, capture time, checksum.
const STAMP_BITS: usize = 32 + 48 + 16;
/// Studio-range luma for white and black blocks.
pub(crate) const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// How old a stamp may be when it is read (see [`Stamp::plausible_at`]): far past any picture's
/// glass-to-glass time.
pub const PLAUSIBLE_AGE_US: u64 = 60_000_000;

/// What a frame carries in its pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Frame number since the source started.
    pub frame_no: u32,
    /// Capture time, µs since the Unix epoch, modulo 2^48.
    pub capture_us: u64,
}

impl Stamp {
    fn bits(&self) -> [bool; STAMP_BITS] {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&self.frame_no.to_be_bytes());
        bytes[4..10].copy_from_slice(&(self.capture_us & 0xFFFF_FFFF_FFFF).to_be_bytes()[2..]);
        let check = fletcher16(&bytes[..10]);
        bytes[10..].copy_from_slice(&check.to_be_bytes());
        let mut bits = [false; STAMP_BITS];
        for (i, bit) in bits.iter_mut().enumerate() {
            *bit = bytes[i / 8] & (0x80 >> (i % 8)) != 0;
        }
        bits
    }

    fn from_bits(bits: &[bool; STAMP_BITS]) -> Option<Self> {
        let mut bytes = [0u8; 12];
        for (i, &bit) in bits.iter().enumerate() {
            if bit {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        if fletcher16(&bytes[..10]).to_be_bytes() != bytes[10..] {
            return None;
        }
        let frame_no = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let mut t = [0u8; 8];
        t[2..].copy_from_slice(&bytes[4..10]);
        Some(Self { frame_no, capture_us: u64::from_be_bytes(t) })
    }

    /// Microseconds from capture to `now_us` (same clock, modulo 2^48 like the stamp).
    pub fn age_us(&self, now_us: u64) -> u64 {
        (now_us & 0xFFFF_FFFF_FFFF).wrapping_sub(self.capture_us) & 0xFFFF_FFFF_FFFF
    }

    /// Whether a stamp read at `now_us` could be real: captured at most [`PLAUSIBLE_AGE_US`]
    /// before (on this machine's clock). The checksum alone is 16 bits (one garbage read in 65,536
    /// passes it) and a picture is read at up to three scales: on a narrow link one passed, and its
    /// frame number (229,408 in a 20 s call) made every later picture read as out of order. A
    /// capture time within the window as well leaves about one in 10^12.
    pub fn plausible_at(&self, now_us: u64) -> bool {
        self.age_us(now_us) <= PLAUSIBLE_AGE_US
    }
}

fn fletcher16(data: &[u8]) -> u16 {
    let (mut a, mut b) = (0u16, 0u16);
    for &d in data {
        a = (a + d as u16) % 255;
        b = (b + a) % 255;
    }
    (b << 8) | a
}

/// Pixel rows the stamp takes at this width (whole blocks).
pub(crate) fn stamp_height(width: usize) -> usize {
    STAMP_BITS.div_ceil(width / BLOCK) * BLOCK
}

/// The smallest picture a stamped source makes: 256 wide (16 blocks a row), with `below` rows of
/// picture under the stamp.
pub(crate) fn min_size(width: usize, height: usize, below: usize) -> (usize, usize) {
    let width = (width / 16 * 16).max(256);
    (width, (height / 16 * 16).max(stamp_height(width) + below))
}

/// Draws `stamp` over the top rows of `frame` (width a multiple of 16, at least 16): the stamp rows
/// become black with neutral chroma, then one white or black block per bit, row-major from the left.
pub(crate) fn draw(frame: &mut I420Frame, stamp: Stamp) {
    let width = frame.width;
    let code_h = stamp_height(width).min(frame.height & !1);
    let (yp, up, vp) = frame.planes_mut();
    yp[..code_h * width].fill(BLACK);
    up[..code_h / 2 * width / 2].fill(128);
    vp[..code_h / 2 * width / 2].fill(128);
    let cols = width / BLOCK;
    let bits = stamp.bits();
    for i in (0..STAMP_BITS).filter(|&i| bits[i]) {
        let (bx, by) = (i % cols * BLOCK, i / cols * BLOCK);
        for row in yp[..code_h * width].chunks_exact_mut(width).skip(by).take(BLOCK) {
            row[bx..bx + BLOCK].fill(WHITE);
        }
    }
}

/// Reads the stamp from a decoded frame; `None` if the checksum fails (not a stamped source, or damaged).
pub fn read_stamp(frame: &RgbaFrame) -> Option<Stamp> {
    // A sender on a narrow link shrinks the picture (by 2 or 4 each way, `call::rate`): the stamp
    // drawn at the full size then comes in with smaller blocks. The checksum tells the right scale.
    [1, 2, 4].into_iter().find_map(|scale| read_stamp_at(frame, scale))
}

/// Reads a stamp drawn on a picture `scale` times this one's size each way.
fn read_stamp_at(frame: &RgbaFrame, scale: usize) -> Option<Stamp> {
    let block = BLOCK / scale;
    let cols = frame.width * scale / BLOCK;
    if cols == 0 || stamp_height(frame.width * scale) / scale > frame.height {
        return None;
    }
    // The middle half of each block each way: the codec blurs its edges.
    let (lo, hi) = (block / 4, block - block / 4);
    let mut bits = [false; STAMP_BITS];
    for (i, bit) in bits.iter_mut().enumerate() {
        let (bx, by) = (i % cols * block, i / cols * block);
        let mut sum = 0.0;
        for y in by + lo..by + hi {
            for x in bx + lo..bx + hi {
                sum += frame.luma(x, y);
            }
        }
        *bit = sum / ((hi - lo) * (hi - lo)) as f32 > (WHITE as f32 + BLACK as f32) / 2.0;
    }
    Stamp::from_bits(&bits)
}

/// Peak signal-to-noise ratio (dB) of the decoded frame's luma against the frame we sent.
pub fn psnr_luma(decoded: &RgbaFrame, sent: &I420Frame) -> f64 {
    if decoded.width != sent.width || decoded.height != sent.height {
        return 0.0;
    }
    let (yp, _, _) = sent.planes();
    let mut sse = 0.0f64;
    for y in 0..sent.height {
        for x in 0..sent.width {
            let d = decoded.luma(x, y) as f64 - yp[y * sent.width + x] as f64;
            sse += d * d;
        }
    }
    let mse = sse / (sent.width * sent.height) as f64;
    if mse <= 1e-9 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_plausible_only_from_the_last_minute() {
        let stamp = Stamp { frame_no: 7, capture_us: 5_000_000 };
        assert!(stamp.plausible_at(5_000_000));
        assert!(stamp.plausible_at(5_150_000), "150 ms glass to glass");
        assert!(!stamp.plausible_at(4_999_000), "captured in the future: a misread");
        assert!(!stamp.plausible_at(5_000_000 + PLAUSIBLE_AGE_US + 1), "older than a minute");
    }
}
