//! The forwarder: one thread that reads packets from both TUN devices, asks each direction's model
//! what becomes of them, holds the ones to deliver in a timer heap and writes each to the other
//! device when it is due.
//!
//! A thread of its own rather than a tokio task: tokio's timers tick in whole milliseconds and round
//! a sleep up to the next tick, so a 0.3 ms wait becomes up to 1 ms (and a busy runtime, such as the
//! engine under test, delays it further). `ppoll` takes a nanosecond timeout and the kernel wakes us
//! within its timer slack (50 µs by default). One thread serves both directions: on 2 cores, one
//! more wake-up per packet is what costs, not the polling.

use super::model::{Path, Verdict};
use super::tun::Tun;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most this many packets held at once (a 1,500-byte packet each: 30 MB). More than that would
/// be a misconfigured path (a flood into a long delay with no rate limit); the excess is dropped
/// and counted as `held_overflow`.
const MAX_HELD: usize = 20_000;

/// At most this many packets read from one device before the due ones are written: a flood on one
/// side must not hold back departures.
const READ_BATCH: usize = 64;

/// What the forwarder did with one direction's packets, besides its model's verdicts.
#[derive(Debug)]
pub(super) struct DirectionState {
    pub path: Path,
    /// Packets written to the far device.
    pub written: u64,
    /// Writes the far device refused.
    pub write_errors: u64,
    /// Packets the model delivered that found the timer heap full.
    pub held_overflow: u64,
    /// How late after its due time each written packet went out, summed, ns: the forwarder's own
    /// delay (a busy machine not scheduling it), which the model's figures do not hold.
    pub late_ns: u64,
}

/// What the forwarder and the `Link` handle share.
pub(super) struct Shared {
    /// A→B at 0, B→A at 1.
    pub directions: Mutex<[DirectionState; 2]>,
    pub stop: AtomicBool,
}

impl Shared {
    /// The state, even if a panic poisoned the lock (the counters are still worth reading).
    pub fn lock(&self) -> MutexGuard<'_, [DirectionState; 2]> {
        self.directions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A packet waiting for its time; the heap pops the earliest first, and packets due at the same
/// instant in the order they came.
struct Held {
    at: Instant,
    seq: u64,
    direction: usize,
    packet: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Runs until `shared.stop` is set and `wake` is written to. `devices[0]` is A's, `devices[1]` B's.
pub(super) fn run(shared: Arc<Shared>, devices: [Tun; 2], wake: Arc<OwnedFd>) {
    let mut heap: BinaryHeap<Held> = BinaryHeap::new();
    let mut buf = vec![0u8; 65_536];
    let mut seq = 0u64;
    // A device that reports an error (it was destroyed under us, say, with its namespace) is polled
    // no more: poll would report it again at once, for ever, and spin.
    let mut alive = [true; 2];
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|h| h.at <= now) {
            let Some(held) = heap.pop() else { break };
            // A→B packets go out of B's device, and the other way round.
            let result = devices[1 - held.direction].send(&held.packet);
            let late = Instant::now().saturating_duration_since(held.at);
            let mut state = shared.lock();
            state[held.direction].late_ns += u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
            match result {
                Ok(_) => state[held.direction].written += 1,
                Err(_) => state[held.direction].write_errors += 1,
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let timeout = heap.peek().map(|h| h.at.saturating_duration_since(Instant::now()));
        // poll skips a negative fd.
        let device_fd = |i: usize| if alive[i] { devices[i].fd() } else { -1 };
        let mut fds = [device_fd(0), device_fd(1), wake.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        if poll(&mut fds, timeout).is_err() {
            // EINTR or the like: go round again (the timeout is recomputed).
            continue;
        }
        if fds[2].revents != 0 {
            let mut count = [0u8; 8];
            // SAFETY: reads 8 bytes into an 8-byte buffer.
            let _ = unsafe { libc::read(wake.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        }
        for direction in 0..2 {
            let revents = fds[direction].revents;
            if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                alive[direction] = false;
            }
            if revents & libc::POLLIN == 0 {
                continue;
            }
            for _ in 0..READ_BATCH {
                let Ok(len) = devices[direction].recv(&mut buf) else { break };
                let now = Instant::now();
                let mut state = shared.lock();
                let tcp = carries_tcp(&buf[..len]);
                let Verdict::Deliver(at) = state[direction].path.on_ip_packet(now, len, tcp) else {
                    continue;
                };
                if heap.len() >= MAX_HELD {
                    state[direction].held_overflow += 1;
                    continue;
                }
                drop(state);
                seq += 1;
                heap.push(Held { at, seq, direction, packet: buf[..len].to_vec() });
            }
        }
    }
}

/// Whether an IP packet (as a TUN device without packet information gives it) carries TCP.
fn carries_tcp(packet: &[u8]) -> bool {
    const TCP: u8 = 6;
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9) == Some(&TCP),
        // IPv6: the first next header only (the emulator's addresses are IPv4; no extension chains).
        Some(6) => packet.get(6) == Some(&TCP),
        _ => false,
    }
}

/// `ppoll` with a nanosecond timeout (`None` waits for an event).
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: fds is a valid array of its length; ts_ptr is null or points at a timespec that lives
    // through the call; a null signal mask leaves the mask alone.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, std::ptr::null()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::carries_tcp;

    #[test]
    fn tcp_is_told_from_udp_by_the_ip_header() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[9] = 6;
        assert!(carries_tcp(&v4));
        v4[9] = 17;
        assert!(!carries_tcp(&v4), "UDP");
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[6] = 6;
        assert!(carries_tcp(&v6));
        assert!(!carries_tcp(&[]), "an empty read");
        assert!(!carries_tcp(&[0x45, 0, 0]), "a truncated header");
    }
}
