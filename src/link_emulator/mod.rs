//! Test and benchmark support: an emulated network link between two network namespaces.
//!
//! This machine's kernel has no `netem`, so delay, jitter, reordering and bursty loss can't come from
//! `tc`. Here each namespace gets a TUN device, and a forwarder thread in this process passes the
//! packets between them through an impairment model per direction ([`model`]: delay, jitter, random
//! and Gilbert-Elliott loss, a rate limit with a drop-tail queue, a schedule of changes, outages).
//!
//! ```text
//!  namespace A (192.0.2.1)                                    namespace B (192.0.2.2)
//!  app ── TUN ──► forwarder: model A→B ─ timer heap ─────────► TUN ── app
//!  app ◄─ TUN ◄── forwarder: model B→A ─ timer heap ◄───────── TUN ── app
//! ```
//!
//! Each namespace has `lo` up, its TUN device at a TEST-NET-1 address (`/24`) and a default route
//! into the link (browsers want one to gather candidates), and nothing else: whatever is sent to
//! another address reaches the far namespace, which does not forward it. The devices have no IPv6
//! addresses, so the link carries only what the programs in it send (counters count just that).
//!
//! Needs root (CAP_NET_ADMIN), `/dev/net/tun` and `ip` (iproute2); [`unavailable`] says whether the
//! first two are missing, and [`Link::new`] names whatever failed. Namespaces are named from a caller's tag, the process id and a counter, so tests running
//! at once don't collide; leftovers of a killed run with the same name are removed first, and
//! everything is removed when the [`Link`] is dropped.
//!
//! [`cases`] names the links of issues 12 and 13, [`headless_call`] runs a Peercall ↔ Peercall call
//! (or several, or one beside a TCP flow) through one with the headless binaries (`net-bench` and
//! `tests/netpath.rs`), [`bulk`] is that TCP bulk flow (sockets made inside the namespaces), and
//! [`timeline`] reads a call's second-by-second figures back from its `stats:` lines.

pub mod bulk;
pub mod cases;
pub mod headless_call;
pub mod model;
pub mod timeline;

mod forward;
mod tun;

use forward::{DirectionState, Shared};
pub use model::{
    ConfigError, Counters, DropReason, GilbertElliott, Impairments, Jitter, PathConfig, QueueLimit,
    RateLimit, Step, Verdict,
};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Namespaces and TUN devices need CAP_NET_ADMIN.
    #[error("not root: network namespaces and TUN devices need CAP_NET_ADMIN")]
    NotRoot,
    /// No TUN support.
    #[error("/dev/net/tun is missing (no TUN support in this kernel or container)")]
    NoTunDevice,
    /// iproute2 is not installed.
    #[error("`ip` is missing (install iproute2)")]
    IpMissing,
    /// A tag that would make bad or too long names.
    #[error("link tag {0:?}: use 1 to 8 ASCII letters or digits")]
    BadTag(String),
    /// A path configuration out of range.
    #[error("path configuration: {0}")]
    Config(#[from] ConfigError),
    /// Making or opening a TUN device failed.
    #[error("making a TUN device: {0}")]
    Tun(std::io::Error),
    /// An `ip` command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// Starting the forwarder (an eventfd or its thread) failed.
    #[error("starting the forwarder: {0}")]
    Forwarder(std::io::Error),
}

/// Why a link can't be made on this machine, if it can't: not root, or no TUN support (tests print
/// it and pass without running). A missing tool is not such a reason: [`Link::new`] then fails
/// saying which.
pub fn unavailable() -> Option<String> {
    machine_can().err().map(|e| e.to_string())
}

fn machine_can() -> Result<(), LinkError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LinkError::NotRoot);
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(LinkError::NoTunDevice);
    }
    Ok(())
}

fn check_prerequisites() -> Result<(), LinkError> {
    machine_can()?;
    match Command::new("ip").arg("-V").output() {
        Ok(_) => Ok(()),
        Err(_) => Err(LinkError::IpMissing),
    }
}

/// One direction of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From A (192.0.2.1) to B.
    AToB,
    /// From B (192.0.2.2) to A.
    BToA,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::AToB => 0,
            Direction::BToA => 1,
        }
    }
}

/// Both directions' configurations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkConfig {
    /// What A's packets meet on their way to B.
    pub a_to_b: PathConfig,
    /// What B's packets meet on their way to A.
    pub b_to_a: PathConfig,
}

impl LinkConfig {
    /// The same path both ways.
    pub fn symmetric(path: PathConfig) -> LinkConfig {
        LinkConfig { a_to_b: path.clone(), b_to_a: path }
    }
}

/// One direction's counters: the model's verdicts and what the forwarder did with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// The model's verdicts.
    pub path: Counters,
    /// Packets written out of the far device.
    pub written: u64,
    /// Writes the far device refused.
    pub write_errors: u64,
    /// Delivered packets dropped because the forwarder already held too many.
    pub held_overflow: u64,
    /// How late the written packets went out, summed, ns (see the forwarder).
    pub late_ns: u64,
}

impl DirectionCounters {
    /// Between readings `earlier` and `self`: what the path delivered (kbit/s over `secs`), the
    /// mean wait in its bottleneck's queue and the mean lateness of the forwarder's writes (ms).
    pub fn since(&self, earlier: &DirectionCounters, secs: f64) -> PathSecond {
        let delivered = self.path.delivered.saturating_sub(earlier.path.delivered).max(1) as f64;
        let written = self.written.saturating_sub(earlier.written).max(1) as f64;
        let bytes = self.path.delivered_bytes.saturating_sub(earlier.path.delivered_bytes) as f64;
        PathSecond {
            kbps: bytes * 8.0 / 1000.0 / secs.max(1e-3),
            queue_ms: self.path.queued_ns.saturating_sub(earlier.path.queued_ns) as f64 / 1e6 / delivered,
            late_ms: self.late_ns.saturating_sub(earlier.late_ns) as f64 / 1e6 / written,
        }
    }

    /// Packets delivered by the model and not yet written (still delayed or queued).
    pub fn in_flight(&self) -> u64 {
        self.path.delivered.saturating_sub(self.written + self.write_errors + self.held_overflow)
    }
}

/// One direction between two readings of its counters (see [`DirectionCounters::since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathSecond {
    /// What it delivered, kbit/s of IP packets.
    pub kbps: f64,
    /// The mean wait in its bottleneck's queue, ms.
    pub queue_ms: f64,
    /// The mean lateness of the forwarder's writes, ms.
    pub late_ms: f64,
}

/// Both directions' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// A to B.
    pub a_to_b: DirectionCounters,
    /// B to A.
    pub b_to_a: DirectionCounters,
}

/// One end of the link: a namespace, its address and its device.
#[derive(Clone, Debug)]
pub struct Endpoint {
    namespace: String,
    addr: Ipv4Addr,
    device: String,
}

impl Endpoint {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Its address on the link.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its TUN device's name (inside the namespace).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace, program]);
        cmd
    }

    /// The same for tokio.
    pub fn tokio_command(&self, program: &str) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }
}

/// The two namespaces, deleted on drop (also when making the link fails half way).
struct Namespaces([String; 2]);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Two namespaces joined by an emulated link; see the [module](self) docs.
pub struct Link {
    a: Endpoint,
    b: Endpoint,
    shared: Arc<Shared>,
    wake: Arc<OwnedFd>,
    forwarder: Option<JoinHandle<()>>,
    // Dropped after the forwarder has stopped (Drop joins it first), so its devices are gone too.
    _namespaces: Namespaces,
}

/// Address of A; B is [`B_ADDR`]. TEST-NET-1 (RFC 5737): never routed anywhere.
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Address of B.
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// B→A draws from another random sequence than A→B even when both configs have the same seed, so
/// a symmetric lossy link does not lose the same packets both ways.
const B_TO_A_SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

fn seeded(direction: Direction, mut config: PathConfig) -> PathConfig {
    if direction == Direction::BToA {
        config.seed ^= B_TO_A_SEED_MIX;
    }
    config
}

fn ip(args: &[&str]) -> Result<(), LinkError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip").args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LinkError::IpMissing,
        _ => LinkError::Command { command: command.clone(), stderr: e.to_string() },
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LinkError::Command { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

impl Link {
    /// Makes the namespaces, devices and forwarder. `tag` (1–8 letters or digits) names the
    /// namespaces `lka-TAG-PID-N` and `lkb-TAG-PID-N`.
    pub fn new(tag: &str, config: LinkConfig) -> Result<Link, LinkError> {
        if tag.is_empty() || tag.len() > 8 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(LinkError::BadTag(tag.to_owned()));
        }
        config.a_to_b.validate()?;
        config.b_to_a.validate()?;
        check_prerequisites()?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let namespaces = Namespaces([format!("lka-{id}"), format!("lkb-{id}")]);
        // Leftovers of a killed run that had this pid would make `add` fail.
        for ns in &namespaces.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let setup = |ns: &str, addr: Ipv4Addr| -> Result<tun::Tun, LinkError> {
            ip(&["netns", "add", ns])?;
            // Made in this namespace (the kernel picks a free name), then moved: the open file stays
            // the device's wherever it goes.
            let tun = tun::Tun::open("pclk%d").map_err(LinkError::Tun)?;
            let dev = tun.name();
            ip(&["link", "set", "dev", dev, "netns", ns])?;
            // No IPv6 link-local address, so no router solicitations or MLD reports on the link.
            ip(&["-n", ns, "link", "set", "dev", dev, "addrgenmode", "none"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", "dev", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
            ip(&["-n", ns, "route", "add", "default", "dev", dev])?;
            Ok(tun)
        };
        let devices = [setup(&namespaces.0[0], A_ADDR)?, setup(&namespaces.0[1], B_ADDR)?];
        let names = [devices[0].name().to_owned(), devices[1].name().to_owned()];
        let now = Instant::now();
        let state = |direction, config| -> Result<DirectionState, LinkError> {
            Ok(DirectionState {
                path: model::Path::new(seeded(direction, config), now)?,
                written: 0,
                write_errors: 0,
                held_overflow: 0,
                late_ns: 0,
            })
        };
        let shared = Arc::new(Shared {
            directions: Mutex::new([
                state(Direction::AToB, config.a_to_b)?,
                state(Direction::BToA, config.b_to_a)?,
            ]),
            stop: AtomicBool::new(false),
        });
        // SAFETY: eventfd has no memory preconditions; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(LinkError::Forwarder(std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just opened and nothing else owns it.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let forwarder = {
            let (shared, wake) = (shared.clone(), wake.clone());
            std::thread::Builder::new()
                .name("link-emulator".into())
                .spawn(move || forward::run(shared, devices, wake))
                .map_err(LinkError::Forwarder)?
        };
        let [ns_a, ns_b] = namespaces.0.clone();
        let [dev_a, dev_b] = names;
        Ok(Link {
            a: Endpoint { namespace: ns_a, addr: A_ADDR, device: dev_a },
            b: Endpoint { namespace: ns_b, addr: B_ADDR, device: dev_b },
            shared,
            wake,
            forwarder: Some(forwarder),
            _namespaces: namespaces,
        })
    }

    /// End A (192.0.2.1).
    pub fn a(&self) -> &Endpoint {
        &self.a
    }

    /// End B (192.0.2.2).
    pub fn b(&self) -> &Endpoint {
        &self.b
    }

    /// Replaces one direction's configuration now: its schedule and outages count from this moment
    /// (see [`model::Path::reconfigure`] for what carries over).
    pub fn set(&self, direction: Direction, config: PathConfig) -> Result<(), LinkError> {
        let mut state = self.shared.lock();
        state[direction.index()].path.reconfigure(seeded(direction, config), Instant::now())?;
        Ok(())
    }

    /// What each direction has done so far.
    pub fn counters(&self) -> LinkCounters {
        let state = self.shared.lock();
        let of = |s: &DirectionState| DirectionCounters {
            path: s.path.counters(),
            written: s.written,
            write_errors: s.write_errors,
            held_overflow: s.held_overflow,
            late_ns: s.late_ns,
        };
        LinkCounters { a_to_b: of(&state[0]), b_to_a: of(&state[1]) }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from an 8-byte buffer to our eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(forwarder) = self.forwarder.take() {
            // Its devices close as it returns; then `_namespaces` deletes the namespaces.
            let _ = forwarder.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused before anything is made, so these need no root.
    #[test]
    fn bad_tags_and_settings_are_refused_up_front() {
        for tag in ["", "has space", "muchtoolong", "dash-ed"] {
            assert!(matches!(Link::new(tag, LinkConfig::default()), Err(LinkError::BadTag(_))), "{tag:?}");
        }
        let lossy = PathConfig::new(Impairments { loss: -0.1, ..Default::default() });
        let config = LinkConfig { b_to_a: lossy, ..Default::default() };
        assert!(matches!(Link::new("ok", config), Err(LinkError::Config(ConfigError::Probability { .. }))));
    }

    #[test]
    fn the_directions_draw_different_random_sequences() {
        let config = PathConfig::default().seed(9);
        assert_eq!(seeded(Direction::AToB, config.clone()).seed, 9);
        assert_ne!(seeded(Direction::BToA, config).seed, 9);
    }

    #[test]
    fn a_seconds_figures_are_the_means_between_two_readings() {
        let mut earlier = DirectionCounters { written: 10, late_ns: 5_000_000, ..Default::default() };
        earlier.path.delivered = 10;
        earlier.path.delivered_bytes = 12_000;
        earlier.path.queued_ns = 40_000_000;
        let mut later = DirectionCounters { written: 14, late_ns: 7_000_000, ..earlier };
        later.path.delivered = 14;
        later.path.delivered_bytes = 12_000 + 4 * 1_250;
        later.path.queued_ns = 40_000_000 + 4 * 30_000_000;
        let s = later.since(&earlier, 1.0);
        assert_eq!(s.kbps, 40.0, "5,000 bytes in a second");
        assert_eq!(s.queue_ms, 30.0, "four packets that each waited 30 ms");
        assert_eq!(s.late_ms, 0.5, "2 ms of lateness over four writes");
        // A second with nothing delivered has no wait to report, not NaN.
        assert_eq!(later.since(&later, 1.0), PathSecond::default());
    }
}
