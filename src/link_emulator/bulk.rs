//! A TCP bulk transfer through the link, for a call to share it with (issue 13): a sender in one
//! namespace writes as fast as TCP lets it for a bounded time, a receiver in the other counts what
//! arrives each second; the goodput series comes back.
//!
//! A socket belongs to the network namespace of the thread that made it, so each side runs on a
//! thread of its own that first enters its namespace (`setns` on `/run/netns/NAME`, the file
//! `ip netns add` made) and only then makes its listener or stream. Every wait is bounded (accept,
//! connect, each read and write), the flow ends after its length or when the [`TcpBulk`] is
//! dropped, and socket errors come back as [`BulkError`]s, never panics.

use super::Endpoint;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What went wrong with a bulk transfer.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// The namespace's file could not be opened or entered.
    #[error("entering namespace {path}: {source}")]
    Namespace {
        /// `/run/netns/NAME`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A socket call failed.
    #[error("{what}: {source}")]
    Socket {
        /// Which call (bind, accept, connect, ...).
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The far side did not come in time.
    #[error("{0}")]
    Timeout(&'static str),
    /// A side's thread could not start or ended without an answer.
    #[error("the {0} thread failed")]
    Thread(&'static str),
}

fn socket(what: &'static str) -> impl FnOnce(std::io::Error) -> BulkError {
    move |source| BulkError::Socket { what, source }
}

/// When and how long the transfer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkPlan {
    /// From [`TcpBulk::start`] to the connect.
    pub start_after: Duration,
    /// How long the sender writes once connected.
    pub length: Duration,
    /// The receiver's port (0: any free one).
    pub port: u16,
    /// The sender's TCP congestion control (`TCP_CONGESTION`: "cubic", "bbr"...); `None`: the
    /// system's default (`net.ipv4.tcp_congestion_control`).
    pub congestion: Option<&'static str>,
}

/// Where one side runs: a namespace (`None`: this process's own) and the address it uses.
#[derive(Clone, Debug)]
pub struct Side {
    netns: Option<PathBuf>,
    addr: Ipv4Addr,
}

impl Side {
    /// An end of a [`super::Link`]: its namespace and address.
    pub fn of(end: &Endpoint) -> Side {
        Side { netns: Some(Path::new("/run/netns").join(end.namespace())), addr: end.addr() }
    }

    /// This process's own namespace, at `addr` (tests on loopback).
    pub fn here(addr: Ipv4Addr) -> Side {
        Side { netns: None, addr }
    }

    /// Enters the namespace on the calling thread (only this thread moves).
    fn enter(&self) -> Result<(), BulkError> {
        let Some(path) = &self.netns else { return Ok(()) };
        let err = |source| BulkError::Namespace { path: path.clone(), source };
        let file = File::open(path).map_err(err)?;
        // SAFETY: setns on a namespace file we hold open; it changes only this thread's network
        // namespace, which is this thread's own business (it is ours, made for this side).
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// What the receiver got, second by second from the connection's start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Goodput {
    /// Bytes received in each second `[i, i + 1)` after the connection was accepted.
    pub bytes_per_second: Vec<u64>,
    /// Bytes the sender wrote (accepted by its socket).
    pub sent: u64,
}

impl Goodput {
    /// All bytes received.
    pub fn received(&self) -> u64 {
        self.bytes_per_second.iter().sum()
    }

    /// Mean goodput over seconds `from..to` of the flow, kbit/s (0 over an empty span).
    pub fn kbps(&self, from: usize, to: usize) -> f64 {
        let to = to.min(self.bytes_per_second.len());
        let span = &self.bytes_per_second[from.min(to)..to];
        span.iter().sum::<u64>() as f64 * 8.0 / 1000.0 / span.len().max(1) as f64
    }

    /// Each second's kbit/s, rounded.
    pub fn kbps_series(&self) -> Vec<u32> {
        self.bytes_per_second.iter().map(|&b| (b as f64 * 8.0 / 1000.0).round() as u32).collect()
    }
}

/// Adds `n` bytes received `at` after the start to its second's count; a vector at most `limit`
/// seconds long (later bytes count in the last second).
fn count(buckets: &mut Vec<u64>, at: Duration, n: usize, limit: usize) {
    let i = (at.as_secs() as usize).min(limit.max(1) - 1);
    if buckets.len() <= i {
        buckets.resize(i + 1, 0);
    }
    buckets[i] += n as u64;
}

/// Each blocking socket call waits at most this long, so the stop flag is seen this often.
const TICK: Duration = Duration::from_millis(200);
/// How long the connect and the accept may take beyond the start delay.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// A running transfer; [`TcpBulk::finish`] waits for it and returns the goodput, dropping it stops it.
pub struct TcpBulk {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<Result<u64, BulkError>>>,
    receiver: Option<JoinHandle<Result<Vec<u64>, BulkError>>>,
    /// The receiver's address.
    pub to: SocketAddr,
}

impl TcpBulk {
    /// A transfer from the link's end `from` to `to`: the receiver listens now, the sender connects
    /// after `plan.start_after` and writes for `plan.length`.
    pub fn between(from: &Endpoint, to: &Endpoint, plan: BulkPlan) -> Result<TcpBulk, BulkError> {
        TcpBulk::start(Side::of(from), Side::of(to), plan)
    }

    /// The same between any two [`Side`]s. Returns once the receiver listens (or failed to).
    pub fn start(from: Side, to: Side, plan: BulkPlan) -> Result<TcpBulk, BulkError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = mpsc::channel();
        let receiver = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bulk-receiver".into())
                .spawn(move || receive(&to, plan, &stop, &bound_tx))
                .map_err(|_| BulkError::Thread("receiver"))?
        };
        let mut bulk = TcpBulk {
            stop: stop.clone(),
            sender: None,
            receiver: Some(receiver),
            to: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        };
        bulk.to = match bound_rx.recv_timeout(CONNECT_LIMIT) {
            Ok(addr) => addr,
            // The receiver failed before it listened: its error is what `finish` returns.
            Err(_) => {
                return match bulk.receiver.take().map(JoinHandle::join) {
                    Some(Ok(Err(e))) => Err(e),
                    _ => Err(BulkError::Thread("receiver")),
                }
            }
        };
        let to = bulk.to;
        bulk.sender = Some(
            std::thread::Builder::new()
                .name("bulk-sender".into())
                .spawn(move || send(&from, to, plan, &stop))
                .map_err(|_| BulkError::Thread("sender"))?,
        );
        Ok(bulk)
    }

    /// Waits for both sides to end (bounded by the plan) and returns what arrived.
    pub fn finish(mut self) -> Result<Goodput, BulkError> {
        let sent = match self.sender.take().map(JoinHandle::join) {
            Some(Ok(Ok(sent))) => sent,
            other => {
                // No flow (or a broken one): the receiver need not wait for it.
                self.stop.store(true, Ordering::Release);
                return Err(match other {
                    Some(Ok(Err(e))) => e,
                    _ => BulkError::Thread("sender"),
                });
            }
        };
        let bytes_per_second = match self.receiver.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            _ => return Err(BulkError::Thread("receiver")),
        };
        Ok(Goodput { bytes_per_second, sent })
    }
}

impl Drop for TcpBulk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Each side sees the flag within a tick (or its connect limit).
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
    }
}

/// Sleeps `d` in ticks; false if told to stop meanwhile.
fn wait(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Acquire) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(TICK));
    }
    false
}

/// Sets the stream's TCP congestion control to `name` (an algorithm the kernel has: see
/// `net.ipv4.tcp_available_congestion_control`).
fn set_congestion(stream: &TcpStream, name: &str) -> Result<(), BulkError> {
    // SAFETY: a valid socket, and a buffer of the length given, alive through the call.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(BulkError::Socket {
            what: "setsockopt TCP_CONGESTION",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// The sender: enters its namespace, connects after the delay, writes for the plan's length.
/// Returns the bytes written.
fn send(side: &Side, to: SocketAddr, plan: BulkPlan, stop: &AtomicBool) -> Result<u64, BulkError> {
    side.enter()?;
    if !wait(plan.start_after, stop) {
        return Ok(0);
    }
    let mut stream = TcpStream::connect_timeout(&to, CONNECT_LIMIT).map_err(socket("connect"))?;
    stream.set_write_timeout(Some(TICK)).map_err(socket("set_write_timeout"))?;
    if let Some(name) = plan.congestion {
        set_congestion(&stream, name)?;
    }
    let chunk = vec![0x5a_u8; 64 * 1024];
    let end = Instant::now() + plan.length;
    let mut sent = 0u64;
    while Instant::now() < end && !stop.load(Ordering::Acquire) {
        match stream.write(&chunk) {
            Ok(n) => sent += n as u64,
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(BulkError::Socket { what: "write", source: e }),
        }
    }
    // The receiver sees the end of the stream; what is still queued drains (or not) on its own.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(sent)
}

/// What the sender still had queued may drain this long after its length; then the receiver closes.
const DRAIN: Duration = Duration::from_secs(1);

/// The receiver: enters its namespace, listens (says where on `bound`), accepts one connection and
/// counts what arrives each second until the stream ends, `stop`, or the plan's length and
/// [`DRAIN`] from the accept (closing with data unread resets the flow: it ends there).
fn receive(
    side: &Side,
    plan: BulkPlan,
    stop: &AtomicBool,
    bound: &mpsc::Sender<SocketAddr>,
) -> Result<Vec<u64>, BulkError> {
    let accept_by = Instant::now() + plan.start_after + CONNECT_LIMIT;
    side.enter()?;
    let listener = TcpListener::bind((side.addr, plan.port)).map_err(socket("bind"))?;
    listener.set_nonblocking(true).map_err(socket("set_nonblocking"))?;
    let addr = listener.local_addr().map_err(socket("local_addr"))?;
    bound.send(addr).map_err(|_| BulkError::Thread("starter"))?;
    let mut stream = loop {
        if stop.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        if Instant::now() >= accept_by {
            return Err(BulkError::Timeout("no connection came to the receiver"));
        }
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if timed_out(&e) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(BulkError::Socket { what: "accept", source: e }),
        }
    };
    stream.set_nonblocking(false).map_err(socket("set_nonblocking"))?;
    stream.set_read_timeout(Some(TICK)).map_err(socket("set_read_timeout"))?;
    let start = Instant::now();
    let deadline = start + plan.length + DRAIN;
    let seconds = (plan.length + DRAIN).as_secs_f64().ceil() as usize;
    let mut buckets = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => count(&mut buckets, start.elapsed(), n, seconds),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(BulkError::Socket { what: "read", source: e }),
        }
    }
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_in_their_second_and_the_series_is_bounded() {
        let mut b = Vec::new();
        count(&mut b, Duration::from_millis(100), 1000, 5);
        count(&mut b, Duration::from_millis(900), 250, 5);
        count(&mut b, Duration::from_millis(2500), 125, 5);
        count(&mut b, Duration::from_secs(60), 1, 5);
        assert_eq!(b, [1250, 0, 125, 0, 1]);
        let g = Goodput { bytes_per_second: b, sent: 2000 };
        assert_eq!(g.received(), 1376);
        assert_eq!(g.kbps(0, 1), 10.0);
        assert_eq!(g.kbps(0, 2), 5.0);
        assert_eq!(g.kbps(3, 99), 0.004);
        assert_eq!(g.kbps(9, 99), 0.0, "an empty span");
        assert_eq!(g.kbps_series(), [10, 0, 1, 0, 0]);
    }

    #[test]
    fn a_missing_namespace_is_an_error_not_a_panic() {
        let side =
            Side { netns: Some("/run/netns/peercall-no-such-namespace".into()), addr: Ipv4Addr::LOCALHOST };
        let plan = BulkPlan {
            start_after: Duration::ZERO,
            length: Duration::from_millis(10),
            port: 0,
            congestion: None,
        };
        match TcpBulk::start(Side::here(Ipv4Addr::LOCALHOST), side, plan) {
            Err(BulkError::Namespace { path, .. }) => assert!(path.ends_with("peercall-no-such-namespace")),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("entered a namespace that does not exist"),
        }
    }

    /// A transfer on loopback, in this process's namespace (no root needed), over the real sockets.
    fn on_loopback(start_after_ms: u64, length_ms: u64) -> TcpBulk {
        let here = || Side::here(Ipv4Addr::LOCALHOST);
        let (start_after, length) = (Duration::from_millis(start_after_ms), Duration::from_millis(length_ms));
        TcpBulk::start(here(), here(), BulkPlan { start_after, length, port: 0, congestion: None })
            .expect("starts")
    }

    #[test]
    fn a_short_transfer_on_loopback_arrives_whole_and_counted() {
        let bulk = on_loopback(50, 100);
        assert_ne!(bulk.to.port(), 0);
        let g = bulk.finish().expect("runs");
        assert!(g.sent > 0, "{g:?}");
        assert_eq!(g.received(), g.sent, "everything written arrives on loopback");
        assert!(!g.bytes_per_second.is_empty() && g.bytes_per_second.len() <= 2, "{g:?}");
    }

    #[test]
    fn dropping_a_transfer_stops_it_early() {
        let bulk = on_loopback(30_000, 30_000);
        let t = Instant::now();
        drop(bulk);
        assert!(t.elapsed() < Duration::from_secs(2), "stopped in {:?}", t.elapsed());
    }
}
