//! The link emulator over real TUN devices and namespaces: small Python programs in each namespace
//! send UDP across it (probes echoed back, or a flood into a counting sink) and the figures they
//! print are checked against the paths' settings and the link's counters.
//!
//! Needs root and `/dev/net/tun` (without them each test says why and passes without running), and
//! `ip` and `python3` (without them the tests fail, saying which is missing).

use peercall::link_emulator::{
    self, Direction, Endpoint, Impairments, Link, LinkConfig, PathConfig, QueueLimit, RateLimit,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::Duration;

/// One test at a time: they measure timing, and two at once on 2 cores would measure each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The programs run in the namespaces, by mode:
/// - `echo HOST PORT SECS`: sends back every datagram, for at most SECS.
/// - `probe HOST PORT COUNT INTERVAL_MS LINGER_S`: sends COUNT numbered probes INTERVAL_MS apart,
///   waits LINGER_S after the last for late answers, prints `{"sent": [s], "rtt": [s or null]}`.
/// - `sink HOST PORT SECS`: counts what arrives until 0.5 s of quiet after the first datagram (or
///   SECS), prints `{"packets", "bytes", "first", "last"}` (arrival times in s).
/// - `flood HOST PORT KBIT_S SECS SIZE`: sends SIZE-byte datagrams paced at KBIT_S of IP packet.
///
/// Each prints `ready` once its socket is bound.
const PROGRAM: &str = r#"
import json, select, socket, struct, sys, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if mode in ("echo", "sink"):
    s.bind((host, port))
print("ready", flush=True)
now = time.monotonic
if mode == "echo":
    s.settimeout(0.2)
    deadline = now() + float(sys.argv[4])
    while now() < deadline:
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        s.sendto(data, peer)
elif mode == "probe":
    count, interval, linger = int(sys.argv[4]), float(sys.argv[5]) / 1000, float(sys.argv[6])
    s.setblocking(False)
    sent, rtt = [None] * count, [None] * count
    t0, i, answered, end = now(), 0, 0, None
    while True:
        t = now()
        if i < count and t >= t0 + i * interval:
            s.sendto(struct.pack("!Id", i, t) + b"p" * 52, (host, port))
            sent[i] = t - t0
            i += 1
            continue
        if i == count:
            end = end or t + linger
            if t >= end or answered == count:
                break
        wait = t0 + i * interval - t if i < count else end - t
        select.select([s], [], [], max(0.0, wait))
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                break
            seq, at = struct.unpack("!Id", data[:12])
            if rtt[seq] is None:
                rtt[seq] = now() - at
                answered += 1
    print(json.dumps({"sent": sent, "rtt": rtt}))
elif mode == "sink":
    s.settimeout(0.1)
    deadline = now() + float(sys.argv[4])
    packets, size, first, last = 0, 0, None, None
    while now() < deadline:
        try:
            data = s.recv(65535)
        except socket.timeout:
            if last is not None and now() - last > 0.5:
                break
            continue
        last = now()
        first = first or last
        packets, size = packets + 1, size + len(data)
    print(json.dumps({"packets": packets, "bytes": size, "first": first, "last": last}))
elif mode == "flood":
    kbit_s, secs, size = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
    # 28 bytes of IP and UDP header on each: the rate is of what the link carries.
    per_s = kbit_s * 1000 / 8 / (size + 28)
    payload, t0, n = b"f" * size, now(), 0
    while now() - t0 < secs:
        while n < (now() - t0) * per_s:
            s.sendto(payload, (host, port))
            n += 1
        time.sleep(0.001)
    print(json.dumps({"packets": n}))
"#;

/// Debian's own Python where there is one: a version manager's shim on PATH (pyenv) is a shell
/// script that takes hundreds of milliseconds to start it.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// One of the programs above, running in a namespace; killed on drop.
struct Program {
    child: Child,
    lines: Receiver<String>,
}

impl Program {
    fn start(at: &Endpoint, args: &[String]) -> Program {
        let mut child = at
            .command(python())
            .args(["-c", PROGRAM])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/install-deps.sh test installs it)");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let program = Program { child, lines };
        assert_eq!(program.line(Duration::from_secs(10)), "ready", "{args:?} did not start");
        program
    }

    /// The next line it prints, waiting at most `limit`.
    fn line(&self, limit: Duration) -> String {
        self.lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no line from the program in {limit:?}: {e}"))
    }

    /// Its JSON report.
    fn report(&self, limit: Duration) -> serde_json::Value {
        let line = self.line(limit);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(list: &[&dyn ToString]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

const PORT: u16 = 9000;

/// The echo server in B and `count` probes from A, `interval_ms` apart: each probe's send time
/// (s, from the first) and round-trip time (ms, `None` if lost). `then` runs once the echo server
/// is up, just before the probes start (so a schedule set there starts with them, give or take
/// the client's start-up).
fn probe(link: &Link, count: usize, interval_ms: u64, then: impl FnOnce()) -> Vec<(f64, Option<f64>)> {
    let b = link.b().addr();
    let _echo = Program::start(link.b(), &args(&[&"echo", &b, &PORT, &60]));
    then();
    let linger = 1.0;
    let client = Program::start(link.a(), &args(&[&"probe", &b, &PORT, &count, &interval_ms, &linger]));
    let total = Duration::from_millis(count as u64 * interval_ms) + Duration::from_secs(15);
    let report = client.report(total);
    let sent = report["sent"].as_array().expect("sent");
    let rtt = report["rtt"].as_array().expect("rtt");
    sent.iter().zip(rtt).map(|(s, r)| (s.as_f64().expect("a time"), r.as_f64().map(|r| r * 1000.0))).collect()
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn answered(probes: &[(f64, Option<f64>)]) -> Vec<f64> {
    probes.iter().filter_map(|p| p.1).collect()
}

/// The link for a test, and the turn to run (`None`, said why, where links can't be made here).
fn start(tag: &str, config: LinkConfig) -> Option<(std::sync::MutexGuard<'static, ()>, Link)> {
    if let Some(why) = link_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let serial = one_at_a_time();
    Some((serial, Link::new(tag, config).expect("link")))
}

/// The probes matching `pick`, which must be one run of consecutive probes: its first and last
/// index and the time between their sending.
fn one_run(
    probes: &[(f64, Option<f64>)],
    what: &str,
    pick: impl Fn(Option<f64>) -> bool,
) -> (usize, usize, f64) {
    let run: Vec<usize> = (0..probes.len()).filter(|&i| pick(probes[i].1)).collect();
    let (Some(&first), Some(&last)) = (run.first(), run.last()) else { panic!("no {what} probes") };
    assert_eq!(run.len(), last - first + 1, "the {what} probes are not one run: {run:?}");
    (first, last, probes[last].0 - probes[first].0)
}

fn delay(ms: u64) -> Impairments {
    Impairments { delay: Duration::from_millis(ms), ..Default::default() }
}

/// 20 ms each way, set while the link runs, adds 40 ms to the round trip and never less.
#[test]
fn a_delay_adds_to_the_round_trip() {
    let Some((_serial, link)) = start("rtt", LinkConfig::default()) else { return };
    let base = answered(&probe(&link, 50, 10, || ()));
    let delayed = answered(&probe(&link, 100, 10, || {
        for direction in [Direction::AToB, Direction::BToA] {
            link.set(direction, PathConfig::new(delay(20))).expect("set");
        }
    }));
    let (base_median, median) = (percentile(&base, 0.5), percentile(&delayed, 0.5));
    let (min, p90) = (percentile(&delayed, 0.0), percentile(&delayed, 0.9));
    eprintln!(
        "round trip: clean median {base_median:.2} ms; 20 ms each way: min {min:.2}, median {median:.2}, \
         p90 {p90:.2} ms"
    );
    assert_eq!((base.len(), delayed.len()), (50, 100), "a clean link lost probes");
    assert!(min >= 40.0, "a probe came back in {min:.2} ms, sooner than the 40 ms of delay");
    assert!(median - base_median - 40.0 < 3.0, "median {median:.2} ms vs {base_median:.2} + 40 ms");
    let c = link.counters();
    assert_eq!((c.a_to_b.path.offered, c.b_to_a.path.offered), (150, 150), "only the probes cross");
    assert_eq!((c.a_to_b.written, c.b_to_a.written), (150, 150));
}

/// 10 % random loss one way over 1,000 probes: σ of the count lost is 9.5, so 60..=140 is over 4σ;
/// the probes lost are exactly those the model dropped.
#[test]
fn random_loss_loses_its_share() {
    let lossy = PathConfig::new(Impairments { loss: 0.1, ..Default::default() }).seed(12);
    let Some((_serial, link)) = start("loss", LinkConfig { a_to_b: lossy, b_to_a: PathConfig::default() })
    else {
        return;
    };
    let probes = probe(&link, 1_000, 2, || ());
    let lost = probes.iter().filter(|p| p.1.is_none()).count() as u64;
    let c = link.counters();
    eprintln!("10 % loss: {lost} of 1,000 probes lost; the model dropped {}", c.a_to_b.path.random_loss);
    assert!((60..=140).contains(&lost), "{lost} lost");
    assert_eq!(lost, c.a_to_b.path.random_loss);
    assert_eq!(c.b_to_a.path.offered, 1_000 - lost);
}

/// A 3 Mbit/s flood into a 1 Mbit/s bottleneck with a 100 ms queue: about 1 Mbit/s arrives, and
/// the rest is counted as queue overflow.
#[test]
fn a_rate_limit_holds_a_flood_to_its_rate() {
    let rate = RateLimit { bits_per_second: 1_000_000, queue: QueueLimit::Time(Duration::from_millis(100)) };
    let bottleneck = PathConfig::new(Impairments { rate: Some(rate), ..delay(10) });
    let config = LinkConfig { a_to_b: bottleneck, b_to_a: PathConfig::default() };
    let Some((_serial, link)) = start("rate", config) else { return };
    let b = link.b().addr();
    let sink = Program::start(link.b(), &args(&[&"sink", &b, &PORT, &20]));
    let size = 972; // 1,000-byte IP packets
    let flood = Program::start(link.a(), &args(&[&"flood", &b, &PORT, &3_000, &2, &size]));
    let sent = flood.report(Duration::from_secs(15))["packets"].as_u64().expect("packets");
    let got = sink.report(Duration::from_secs(15));
    let packets = got["packets"].as_u64().expect("packets");
    let span = got["last"].as_f64().expect("last") - got["first"].as_f64().expect("first");
    // The first packet's bits were sent before its arrival started the span.
    let kbit_s = (packets - 1) as f64 * 1_000.0 * 8.0 / span / 1_000.0;
    let c = link.counters().a_to_b;
    let offered_kbit_s = c.path.offered_bytes as f64 * 8.0 / 2.0 / 1_000.0;
    eprintln!(
        "1 Mbit/s bottleneck: offered {offered_kbit_s:.0} kbit/s ({sent} packets), received {kbit_s:.1} kbit/s \
         ({packets} packets over {span:.3} s), {} dropped by the queue",
        c.path.queue_overflow
    );
    assert_eq!(c.path.offered, sent);
    assert_eq!(packets, c.written, "the sink got what the forwarder wrote");
    assert!((970.0..=1_010.0).contains(&kbit_s), "{kbit_s} kbit/s through a 1 Mbit/s bottleneck");
    assert_eq!(c.path.queue_overflow, sent - c.path.delivered, "only the queue drops here");
    assert!(c.path.queue_overflow * 10 > sent * 5, "{} of {sent} dropped", c.path.queue_overflow);
}

/// The probes sent from the first step for 1 s meet 60 ms more delay each way; before and after,
/// the 5 ms of the base.
#[test]
fn a_schedule_changes_the_path_on_time() {
    let Some((_serial, link)) = start("sched", LinkConfig::default()) else { return };
    let schedule = PathConfig::new(delay(5))
        .at(Duration::from_millis(1_500), delay(65))
        .at(Duration::from_millis(2_500), delay(5));
    let probes = probe(&link, 300, 10, || link.set(Direction::AToB, schedule).expect("set"));
    assert!(probes.iter().all(|p| p.1.is_some()), "a probe was lost");
    let (first, last, span) = one_run(&probes, "slow", |rtt| rtt > Some(40.0));
    eprintln!(
        "schedule: {} probes slow, sent {:.3}..{:.3} s after the probe started ({span:.3} s); round trip \
         before {:.1} ms, during {:.1} ms",
        last - first + 1,
        probes[first].0,
        probes[last].0,
        percentile(&answered(&probes[..first]), 0.5),
        percentile(&answered(&probes[first..=last]), 0.5)
    );
    // Without reordering, the first few probes after the step back wait behind the slow ones.
    assert!((0.95..=1.1).contains(&span), "slow for {span:.3} s, not 1 s");
    // The step is 1.5 s after the set, which came just before the client started.
    assert!((1.0..=1.51).contains(&probes[first].0), "the step came at {:.3} s, not 1.5 s", probes[first].0);
}

/// An outage of 1 s: the probes sent during it are lost, all of them, and no other.
#[test]
fn an_outage_delivers_nothing() {
    let Some((_serial, link)) = start("outage", LinkConfig::default()) else { return };
    let outage = PathConfig::new(delay(5)).outage(Duration::from_millis(1_000), Duration::from_millis(1_000));
    let probes = probe(&link, 300, 10, || link.set(Direction::AToB, outage).expect("set"));
    let (first, last, span) = one_run(&probes, "lost", |rtt| rtt.is_none());
    let lost = (last - first + 1) as u64;
    let c = link.counters();
    eprintln!(
        "outage: {} probes lost, sent {:.3}..{:.3} s after the probe started; the model dropped {} for the \
         outage and delivered {}",
        lost, probes[first].0, probes[last].0, c.a_to_b.path.outage, c.a_to_b.path.delivered
    );
    assert!((0.95..=1.02).contains(&span), "lost for {span:.3} s, not 1 s");
    assert!((0.5..=1.01).contains(&probes[first].0), "the outage began at {:.3} s, not 1 s", probes[first].0);
    assert_eq!(c.a_to_b.path.outage, lost, "every probe lost was lost to the outage");
    assert_eq!(c.a_to_b.path.delivered, 300 - lost);
    assert_eq!(c.b_to_a.path.offered, 300 - lost, "nothing got through the outage");
}

/// The forwarder's CPU time so far (user + system, in clock ticks), found by its thread name.
fn forwarder_ticks() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    let forwarder = tasks.flatten().find(|t| {
        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|name| name.trim() == "link-emulator")
    });
    let stat =
        std::fs::read_to_string(forwarder.expect("the forwarder thread").path().join("stat")).expect("stat");
    // Fields after the command's closing parenthesis: state is the 3rd field, utime the 14th, stime the 15th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = after.split(' ').skip(11).take(2).map(|f| f.parse().expect("a number")).collect();
    fields.iter().sum()
}

/// A namespace deleted under a running link (its device goes with it) leaves the forwarder idle,
/// not spinning on the dead device's error, and the link still drops cleanly.
#[test]
fn a_device_gone_under_the_link_does_not_spin_the_forwarder() {
    let Some((_serial, link)) = start("gone", LinkConfig::default()) else { return };
    let out = std::process::Command::new("ip").args(["netns", "del", link.a().namespace()]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "ip netns del");
    let before = forwarder_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = forwarder_ticks() - before;
    eprintln!("forwarder after its device went: {used} ticks of CPU in 1 s");
    assert!(used <= 5, "the forwarder used {used} ticks (of 100) in a second");
}
