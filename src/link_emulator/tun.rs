//! A TUN device (IP packets, no packet-info header), opened by hand: one `open` and one `TUNSETIFF`
//! ioctl on `libc`, which the crate already uses.
//!
//! Why not `tun-rs` or `tun` (both maintained): each brings `nix`, `bytes`, `log` and an async layer
//! (and `tun-rs` by default address management with `netconfig-rs`, `ipnet`, `getifaddrs`, `ahash`)
//! for Windows/macOS portability we don't need, and their address and route setup acts in the
//! calling process's namespace, where we must not configure anything: our devices are moved into
//! namespaces of their own and set up there with `ip -n`. What is left for us is these few lines.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// An open TUN device; the device goes away when this is dropped (it is not made persistent).
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Makes a device named from `template` (`%d` is replaced by the kernel with a free number, so
    /// concurrent callers never collide), non-blocking.
    pub fn open(template: &str) -> io::Result<Tun> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = template.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("device name {template:?} too long"),
            ));
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives through the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel wrote the name it chose back (NUL-terminated within IFNAMSIZ).
        let name: Vec<u8> = req.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        Ok(Tun { file, name: String::from_utf8_lossy(&name).into_owned() })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes one packet (a TUN write hands it to the namespace's stack whole, or fails).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: packet is valid for reads of its length.
        let n = unsafe { libc::write(self.fd(), packet.as_ptr().cast(), packet.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// For poll.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
