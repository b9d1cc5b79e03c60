//! Calls over a real (virtual) network: two network namespaces joined by a veth pair, one engine in
//! each (the `peercall --headless` binary), the signaling server beside the caller. Packet loss comes
//! from nftables rules (this machine's kernel has no `netem`); an outage from taking the link down.
//!
//! Needs root, `ip` and `nft` (scripts/install-deps.sh test installs nftables); without them each test
//! says why and passes without running.

mod common;

use common::process::Proc;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time: each measures a call's media, and two calls coding video at once on 2 cores
/// would measure each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why these tests can't run here, if they can't.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need CAP_NET_ADMIN".into());
    }
    for tool in ["ip", "nft", "tc"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.map(|o| o.status.success()).unwrap_or(false) {
            return Some(format!("`{tool}` is missing (make test-deps installs it)"));
        }
    }
    None
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh runs");
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Two namespaces `a` (10.99.N.1) and `b` (10.99.N.2) on one veth link; removed on drop.
struct Link {
    a: String,
    b: String,
    ip_a: String,
    ip_b: String,
}

impl Link {
    fn new(tag: &str, subnet: u8) -> Link {
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let (a, b) = (format!("pca-{id}"), format!("pcb-{id}"));
        let (ip_a, ip_b) = (format!("10.99.{subnet}.1"), format!("10.99.{subnet}.2"));
        let _ = Command::new("ip").args(["netns", "del", &a]).output();
        let _ = Command::new("ip").args(["netns", "del", &b]).output();
        sh(&format!("ip netns add {a} && ip netns add {b}"));
        sh(&format!("ip link add va-{id} netns {a} type veth peer name vb-{id} netns {b}"));
        sh(&format!("ip -n {a} addr add {ip_a}/24 dev va-{id} && ip -n {b} addr add {ip_b}/24 dev vb-{id}"));
        sh(&format!("ip -n {a} link set va-{id} up && ip -n {b} link set vb-{id} up"));
        sh(&format!("ip -n {a} link set lo up && ip -n {b} link set lo up"));
        Link { a, b, ip_a, ip_b }
    }

    /// Drops `percent` of incoming UDP in both namespaces (so each direction loses that share).
    fn set_loss(&self, percent: u32) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "delete", "table", "inet", "loss"])
                .output();
            if percent > 0 {
                sh(&format!(
                    "ip netns exec {ns} nft add table inet loss && \
                     ip netns exec {ns} nft add chain inet loss input '{{ type filter hook input priority 0; }}' && \
                     ip netns exec {ns} nft add rule inet loss input meta l4proto udp numgen random mod 100 lt {percent} drop"
                ));
            }
        }
    }

    /// Makes alice's side of the link a bottleneck of `kbps` (`None`: lifts it): a token-bucket
    /// queue (`tc tbf`) holding up to about 300 ms, dropping what overflows it, as a slow uplink does.
    fn set_cap(&self, kbps: Option<u32>) {
        let dev = format!("va-{}", self.a.trim_start_matches("pca-"));
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.a, "tc", "qdisc", "del", "dev", &dev, "root"])
            .output();
        if let Some(kbps) = kbps {
            sh(&format!(
                "ip netns exec {} tc qdisc add dev {dev} root tbf rate {kbps}kbit burst 4kb latency 300ms",
                self.a
            ));
        }
    }

    fn set_up(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        let dev = format!("vb-{}", self.b.trim_start_matches("pcb-"));
        sh(&format!("ip -n {} link set {dev} {state}", self.b));
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

/// One stats line of `peercall --headless`, the figures we need from it.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    fps_in: f64,
    kbps_in: f64,
    max_gap_ms: f64,
    audio_concealed: f64,
}

fn number_before(line: &str, unit: &str) -> Option<f64> {
    let end = line.find(unit)?;
    line[..end].trim_end().rsplit(' ').next()?.parse().ok()
}

fn parse_stats(line: &str) -> Option<Sample> {
    let inbound = line.strip_prefix("stats: ")?.split(" | in ").nth(1)?;
    Some(Sample {
        fps_in: number_before(inbound, " fps")?,
        kbps_in: number_before(inbound, " kbit/s")?,
        max_gap_ms: number_before(line.split("max gap ").nth(1)?, " ms")
            .or_else(|| line.split("max gap ").nth(1)?.split(' ').next()?.parse().ok())?,
        audio_concealed: line.split("audio concealed ").nth(1)?.split(' ').next()?.parse().ok()?,
    })
}

/// Starts the server and alice in `a`, bob (auto-answer) in `b`; alice calls bob.
fn call_across(link: &Link) -> (Proc, Proc, Proc) {
    call_across_with(link, &[])
}

/// [`call_across`], with more arguments for alice (the sender under test).
fn call_across_with(link: &Link, alice_args: &[&str]) -> (Proc, Proc, Proc) {
    let server_addr = format!("{}:6503", link.ip_a);
    let url = format!("ws://{server_addr}/");
    let server = Proc::start(&link.a, env!("CARGO_BIN_EXE_peercall-server"), &["--listen", &server_addr]);
    std::thread::sleep(Duration::from_millis(300));
    let bob_bind = format!("{}:0", link.ip_b);
    let bob = Proc::start(
        &link.b,
        env!("CARGO_BIN_EXE_peercall"),
        &["--headless", "--name", "bob", "--auto-answer", "--server", &url, "--bind", &bob_bind],
    );
    bob.wait_for("logged in as bob", Duration::from_secs(10));
    let alice_bind = format!("{}:0", link.ip_a);
    let mut args =
        vec!["--headless", "--name", "alice", "--call", "bob", "--server", &url, "--bind", &alice_bind];
    args.extend_from_slice(alice_args);
    let alice = Proc::start(&link.a, env!("CARGO_BIN_EXE_peercall"), &args);
    if !bob.wait_for_quietly("call: in call with alice", Duration::from_secs(15)) {
        panic!(
            "no call: bob {:?}\nalice {:?}",
            bob.lines_since(Instant::now() - Duration::from_secs(60)),
            alice.lines_since(Instant::now() - Duration::from_secs(60))
        );
    }
    (server, alice, bob)
}

/// Video and audio keep going through 0/5/10/20% loss each way; at 10% over 20 s the receiver keeps
/// above 20 fps with no freeze of a second or more. Prints the loss table.
#[test]
fn calls_ride_out_packet_loss() {
    loss_table("loss", 41, &[], &[(0, 10), (5, 10), (10, 20), (20, 10)]);
}

/// The same through VP8 (`--video-codec vp8`, which bob follows as callee), at the levels that
/// matter: VP8 has no frame numbers of its own, so its loss handling is the assembler's and ours.
#[test]
fn vp8_calls_ride_out_packet_loss() {
    loss_table("vloss", 44, &["--video-codec", "vp8"], &[(5, 10), (10, 20)]);
}

/// Runs a call across a lossy link at each `(percent, seconds)` level and prints the table; at 10%
/// the receiver must keep above 20 fps with no freeze of a second or more.
fn loss_table(name: &str, subnet: u8, alice_args: &[&str], levels: &[(u32, u64)]) {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = one_at_a_time();
    let link = Link::new(name, subnet);
    let (_server, alice, bob) = call_across_with(&link, alice_args);
    std::thread::sleep(Duration::from_secs(2));
    let mut table = Vec::new();
    for &(percent, secs) in levels {
        link.set_loss(percent);
        std::thread::sleep(Duration::from_secs(2)); // let the previous level's effects pass
        let from = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        let samples: Vec<Sample> = bob.lines_since(from).iter().filter_map(|l| parse_stats(l)).collect();
        assert!(
            samples.len() as u64 >= secs / 2,
            "bob printed too few stats lines at {percent}% ({} parsed): {:?}",
            samples.len(),
            bob.lines_since(from)
        );
        let n = samples.len() as f64;
        let fps = samples.iter().map(|s| s.fps_in).sum::<f64>() / n;
        let kbps = samples.iter().map(|s| s.kbps_in).sum::<f64>() / n;
        let freeze = samples.iter().map(|s| s.max_gap_ms).fold(0.0, f64::max);
        let concealed = samples.last().map(|s| s.audio_concealed).unwrap_or(0.0)
            - samples.first().map(|s| s.audio_concealed).unwrap_or(0.0);
        let share = concealed / (n * 50.0) * 100.0;
        // The sender's encoder target at the end of the window (loss-based adaptation).
        let target = alice
            .lines_since(from)
            .iter()
            .rev()
            .find_map(|l| number_before(l.split("(target ").nth(1)?, ")"));
        table.push((percent, fps, freeze, share, kbps, target.unwrap_or(f64::NAN)));
        if percent == 10 {
            assert!(fps > 20.0, "at 10% loss bob decodes {fps:.1} fps");
            assert!(freeze < 1000.0, "at 10% loss the longest freeze is {freeze:.0} ms");
        }
    }
    link.set_loss(0);
    let codec = if alice_args.is_empty() { "H.264" } else { "VP8" };
    let last_stats = bob.lines_since(Instant::now() - Duration::from_secs(5));
    assert!(
        last_stats.iter().any(|l| l.contains(&format!("codec out {codec} in {codec}"))),
        "the call runs on {codec} both ways: {last_stats:?}"
    );
    eprintln!("\nvideo: {codec}");
    eprintln!("\n| loss each way | fps received | longest freeze (ms) | audio concealed | video kbit/s received | sender's target kbit/s |");
    eprintln!("|---|---|---|---|---|---|");
    for (p, fps, freeze, share, kbps, target) in table {
        eprintln!("| {p}% | {fps:.1} | {freeze:.0} | {share:.1}% | {kbps:.0} | {target:.0} |");
    }
}

/// The sender's encoder targets over a window (kbit/s), from its stats lines.
fn targets(alice: &Proc, from: Instant) -> Vec<f64> {
    alice.lines_since(from).iter().filter_map(|l| number_before(l.split("(target ").nth(1)?, ")")).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// A bottleneck below what the call sends (a token-bucket queue on the sender's link): the sender's
/// encoder target falls (and the picture shrinks) until video flows through it again, and the target
/// climbs back once the bottleneck is gone. Prints the figures.
#[test]
fn a_bottleneck_makes_the_sender_back_off_and_recover() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = one_at_a_time();
    let link = Link::new("cap", 43);
    let (_server, alice, bob) = call_across_with(&link, &["--video", "1280x720@30"]);
    std::thread::sleep(Duration::from_secs(3));
    let from = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let free: Vec<Sample> = bob.lines_since(from).iter().filter_map(|l| parse_stats(l)).collect();
    assert!(!free.is_empty(), "bob prints stats: {:?}", bob.lines_since(from));
    let free_kbps = mean(free.iter().map(|s| s.kbps_in));
    let free_target = targets(&alice, from).last().copied().expect("alice prints her encoder target");
    // Room for 60 % of the video that flows freely, plus audio (Opus with its RTP/UDP/IP headers,
    // about 50 kbit/s): real congestion, and still a rate 720p can be coded at.
    let cap = (free_kbps * 0.6) as u32 + 50;
    eprintln!("free: {free_kbps:.0} kbit/s of video, target {free_target:.0}; the bottleneck: {cap} kbit/s");
    link.set_cap(Some(cap));
    std::thread::sleep(Duration::from_secs(12));
    let capped_from = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let capped: Vec<Sample> = bob.lines_since(capped_from).iter().filter_map(|l| parse_stats(l)).collect();
    let capped_targets = targets(&alice, capped_from);
    assert!(
        !capped.is_empty() && !capped_targets.is_empty(),
        "stats under the bottleneck: {:?}",
        bob.lines_since(capped_from)
    );
    let (fps, kbps) = (mean(capped.iter().map(|s| s.fps_in)), mean(capped.iter().map(|s| s.kbps_in)));
    let freeze = capped.iter().map(|s| s.max_gap_ms).fold(0.0, f64::max);
    let capped_target = mean(capped_targets.iter().copied());
    assert!(
        capped_target < free_target * 0.5,
        "under a {cap} kbit/s bottleneck the sender backs off: target {capped_target:.0} kbit/s ({free_target:.0} before); alice: {:?}",
        alice.lines_since(capped_from)
    );
    assert!(
        fps > 5.0,
        "video keeps arriving under the bottleneck: {fps:.1} fps; bob: {:?}\nalice: {:?}",
        bob.lines_since(capped_from),
        alice.lines_since(capped_from)
    );

    link.set_cap(None);
    let lifted = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    let recovered = targets(&alice, lifted + Duration::from_secs(10)).into_iter().fold(0.0, f64::max);
    assert!(
        recovered > capped_target * 1.5,
        "with the bottleneck gone the target climbs again: {recovered:.0} kbit/s against {capped_target:.0} under it"
    );
    eprintln!("\n| 720p30 call, alice → bob | free | {cap} kbit/s bottleneck (last 8 of 20 s) | 10–15 s after lifting it |");
    eprintln!("|---|---|---|---|");
    eprintln!(
        "| sender's encoder target (kbit/s) | {free_target:.0} | {capped_target:.0} | {recovered:.0} |"
    );
    eprintln!("| received (kbit/s) | {free_kbps:.0} | {kbps:.0} | |");
    eprintln!(
        "| fps received / longest freeze | {:.1} / {:.0} ms | {fps:.1} / {freeze:.0} ms | |",
        mean(free.iter().map(|s| s.fps_in)),
        free.iter().map(|s| s.max_gap_ms).fold(0.0, f64::max)
    );
}

/// The link goes down for 3 s and comes back: the call recovers (ICE restart from the caller when ICE
/// noticed the outage) and is not ended.
#[test]
fn a_three_second_outage_is_survived() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = one_at_a_time();
    let link = Link::new("down", 42);
    let (_server, alice, bob) = call_across(&link);
    std::thread::sleep(Duration::from_secs(3));
    link.set_up(false);
    std::thread::sleep(Duration::from_secs(3));
    link.set_up(true);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(15);
    let recovered = loop {
        let fresh = bob.lines_since(back + Duration::from_millis(900));
        if fresh.iter().filter_map(|l| parse_stats(l)).any(|s| s.fps_in >= 20.0) {
            break back.elapsed();
        }
        assert!(Instant::now() < deadline, "the call did not recover: {:?}", bob.lines_since(back));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!bob.saw("ended") && !alice.saw("ended"), "the call must not end: {:?}", bob.lines_since(back));
    eprintln!(
        "recovered {:.1} s after the link came back (ICE restart {})",
        recovered.as_secs_f64(),
        if alice.saw("ice: restarting") { "used" } else { "not needed" }
    );
}
