//! `signaling-bench`: a load generator for the signaling server that prints its figures.
//!
//! It starts `peercall-server` (the binary next to its own) as a child process so the server's RSS is
//! its own, opens N WebSocket clients spread over several loopback source addresses, logs them in,
//! pairs them (client 2k calls 2k+1) and relays `new-ice-candidate` messages carrying a send
//! timestamp: first at a fixed rate (latency), then as fast as the server relays (throughput).
//! With --tls-cert/--tls-key the server serves wss and the clients speak TLS (figures for wss).
//! With --nodes 2 it starts two servers sharing one Redis (its own `redis-server`, or --redis):
//! client k logs in on node k mod 2, so every relayed message crosses nodes.
//! A first phase logs clients in one after another, each waiting for the list holding its name
//! before the next connects (--one-by-one). A last phase makes rooms from nothing: two clients
//! connect to `/room-k` (one per node), log in, and the room counts once both list both (--room-pairs).
//! `--clients 0` skips the concurrent logins and the relay; `--server-cpus 0` pins the server.
//! It prints figures and never fails on a timing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use peercall::signaling::server::raise_open_files_limit;
use peercall::signaling::tls;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use children::{cpu_total, rss_total, ChildServer, RedisChild};

mod children;
mod rooms;

/// Load generator for peercall's signaling server: login time, relayed messages/s, relay latency,
/// server RSS per connection.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Clients to open and log in (an even number: they call each other in pairs).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Relayed messages per second in the fixed-rate phase, where latency is measured.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds each measured phase lasts (after one second of warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Use a server already running at this address (no RSS figure then) instead of starting one.
    #[arg(long)]
    server: Option<SocketAddr>,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Messages each client may have in flight in the saturation phase (more in flight: more
    /// batching, more throughput, and more queueing latency).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Loopback source addresses to spread the clients over (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value_t = 16)]
    source_addrs: u8,
    /// The room (URL path) all clients join.
    #[arg(long, default_value = "/bench")]
    room: String,
    /// Measure wss: the server serves this PEM certificate (with --tls-key) and the clients trust it.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Server nodes to start; more than one share users and rooms through Redis.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    nodes: u8,
    /// The Redis of a multi-node run; without it the bench starts its own redis-server.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Rooms to make from nothing in the last phase: two clients connect to `/room-k`, log in,
    /// and the room counts once both list both (0: skip).
    #[arg(long, default_value_t = 5000)]
    room_pairs: usize,
    /// Rooms in flight at once in that phase.
    #[arg(long, default_value_t = 64)]
    room_concurrency: usize,
    /// Clients to log in one after another in the first phase, each waiting for the list holding
    /// its name before the next connects (0, the default: skip; with the fixed user-list delay it
    /// takes about a minute for 1,000).
    #[arg(long, default_value_t = 0)]
    one_by_one: usize,
    /// Pin the server (and its Redis) to these CPUs (`taskset -c` syntax, e.g. `0`); pin the
    /// bench itself with `taskset -c 1 signaling-bench ...`.
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<String>,
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Stream = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// What the clients share with the conductor.
struct Bench {
    epoch: Instant,
    clients: usize,
    /// Clients that have sent `username`.
    connected: AtomicUsize,
    logged_in: AtomicUsize,
    /// Clients that have received a userlist holding all the clients.
    converged: AtomicUsize,
    progress: Notify,
    /// Messages each client may send now (the pacer or the peer's receipts add to it).
    credits: Vec<Semaphore>,
    /// Receipts give the sender its credit back (saturation phase: a window per client).
    windowed: AtomicBool,
    recording: AtomicBool,
    received: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients % 2 != 0 {
        bail!("--clients must be an even number (0 skips the login and relay phases)");
    }
    let files = raise_open_files_limit().context("cannot raise the open-files limit")?;
    let most = args.clients.max(args.one_by_one);
    if (files as usize) < most + 64 {
        bail!("the open-files limit is {files}: too low for {most} clients (ulimit -n)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut redis = None;
    let mut children = Vec::new();
    let addrs: Vec<SocketAddr> = match args.server {
        Some(addr) => vec![addr],
        None => {
            let redis_url = match (&args.redis, args.nodes) {
                (_, 1) => None,
                (Some(url), _) => Some(url.clone()),
                (None, _) => {
                    let own = RedisChild::start(args.server_cpus.as_deref()).await?;
                    let url = own.url();
                    redis = Some(own);
                    Some(url)
                }
            };
            for _ in 0..args.nodes {
                children.push(ChildServer::start(&args, redis_url.as_deref()).await?);
            }
            children.iter().map(|c| c.addr).collect()
        }
    };
    let pids: Vec<u32> = children.iter().map(ChildServer::pid).collect();
    // CPU counts Redis too: in a cluster it does part of the relaying.
    let cpu_pids: Vec<u32> = pids.iter().copied().chain(redis.as_ref().map(|r| r.child.id())).collect();
    // One TLS client config for all clients (wss), as one browser would share its trust store.
    let connector = match &args.tls_cert {
        Some(cert) => Some(Connector::Rustls(tls::client_config(Some(cert))?)),
        None => None,
    };
    let scheme = if connector.is_some() { "wss" } else { "ws" };

    // Phase 0: logins one after another, in a room of their own; the clients leave afterwards.
    let one_by_one = if args.one_by_one > 0 {
        let room = format!("{}-one-by-one", args.room);
        let steps =
            rooms::one_by_one(addrs[0], &room, args.one_by_one, args.source_addrs, connector.clone()).await?;
        // Let their leaves settle before the next phase.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some(steps)
    } else {
        None
    };

    let relay = if args.clients > 0 {
        Some(relay_phases(&args, &addrs, &pids, &cpu_pids, connector.clone()).await?)
    } else {
        None
    };

    // Last phase: rooms from nothing, a pair of clients making each.
    let made = if args.room_pairs > 0 {
        Some(
            rooms::from_nothing(&addrs, args.room_pairs, args.room_concurrency, args.source_addrs, connector)
                .await?,
        )
    } else {
        None
    };

    let n = args.clients;
    let servers: Vec<String> = addrs.iter().map(|addr| format!("{scheme}://{addr}")).collect();
    let cluster = match (&redis, &args.redis, addrs.len()) {
        (_, _, 1) => String::new(),
        (Some(own), _, _) => format!(" sharing {}", own.url()),
        (None, Some(url), _) => format!(" sharing {url}"),
        (None, None, _) => String::new(),
    };
    println!(
        "signaling-bench: {n} clients in room {:?}, {} load-generator threads, {} node(s) {}{cluster}",
        args.room,
        args.threads,
        addrs.len(),
        servers.join(" ")
    );
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    if let Some(steps) = one_by_one {
        println!(
            "| {} logins one after another (each waits for the list holding its name) | {:.2} s, {:.0} logins/s; one login p50 / p99 / max {} |",
            steps.count,
            steps.elapsed.as_secs_f64(),
            steps.per_second(),
            steps.latency.latency()
        );
    }
    if let Some(relay) = relay {
        relay.print(&args, redis.is_some());
    }
    if let Some(made) = made {
        println!(
            "| rooms from nothing (two clients connect to `/room-k`, log in, both list both; {} in flight{}) | {:.0} rooms/s ({} rooms in {:.2} s) |",
            args.room_concurrency,
            if addrs.len() > 1 { ", the two on different nodes" } else { "" },
            made.per_second(),
            made.count,
            made.elapsed.as_secs_f64()
        );
        println!(
            "| one room from nothing, first connect to both listing both: p50 / p99 / max | {} |",
            made.latency.latency()
        );
    }
    drop(children);
    drop(redis);
    Ok(())
}

/// What the login and relay phases measured.
struct Relay {
    clients: usize,
    connected: Duration,
    login_time: Duration,
    converged: Duration,
    rss_idle: Option<u64>,
    rss_logged_in: Option<u64>,
    fixed: Phase,
    window: usize,
    saturated: Phase,
    rss_peak: Option<u64>,
}

/// Phases 1 to 3: N clients log in at once (256 connecting at a time), then relay in pairs at a
/// fixed rate (latency) and at saturation.
async fn relay_phases(
    args: &Args,
    addrs: &[SocketAddr],
    pids: &[u32],
    cpu_pids: &[u32],
    connector: Option<Connector>,
) -> anyhow::Result<Relay> {
    let rss_idle = rss_total(pids, "VmRSS:");
    let bench = Arc::new(Bench {
        epoch: Instant::now(),
        clients: args.clients,
        connected: AtomicUsize::new(0),
        logged_in: AtomicUsize::new(0),
        converged: AtomicUsize::new(0),
        progress: Notify::new(),
        credits: (0..args.clients).map(|_| Semaphore::new(0)).collect(),
        windowed: AtomicBool::new(false),
        recording: AtomicBool::new(false),
        received: AtomicU64::new(0),
        latencies_us: Mutex::new(Vec::new()),
    });

    // Phase 1: logins.
    let started = Instant::now();
    let progress = tokio::spawn(report_progress(Arc::clone(&bench), started));
    let connecting = Arc::new(Semaphore::new(256));
    let scheme = if connector.is_some() { "wss" } else { "ws" };
    let mut logins = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let (bench, connecting, connector) = (Arc::clone(&bench), Arc::clone(&connecting), connector.clone());
        let source = source_address(index, args.source_addrs);
        // Neighbours (who relay to each other) sit on different nodes.
        let addr = addrs[index % addrs.len()];
        let url = format!("{scheme}://{addr}{}", args.room);
        logins.push(tokio::spawn(async move {
            let _permit = connecting.acquire().await;
            login(index, source, addr, &url, connector, bench).await
        }));
    }
    for login in logins {
        login.await.context("login task")??;
    }
    let connected = started.elapsed();
    wait_for(&bench, &bench.logged_in).await?;
    let login_time = started.elapsed();
    wait_for(&bench, &bench.converged).await?;
    let converged = started.elapsed();
    progress.abort();
    // Let the last writes settle before weighing the idle connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_logged_in = rss_total(pids, "VmRSS:");

    // Phase 2: a fixed rate, for latency.
    let measure = Duration::from_secs_f64(args.duration.max(0.5));
    let pacer = tokio::spawn(pace(Arc::clone(&bench), args.rate));
    let fixed = measure_phase(&bench, measure, cpu_pids).await;
    pacer.abort();
    // Let in-flight messages land and pacer credits drain before the next phase.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 3: saturation, each client with `window` messages in flight.
    let window = args.window.max(1);
    bench.windowed.store(true, Ordering::Release);
    for credits in &bench.credits {
        credits.add_permits(window);
    }
    let saturated = measure_phase(&bench, measure, cpu_pids).await;
    let rss_peak = rss_total(pids, "VmHWM:");
    // Stop the relay traffic before the room phase.
    bench.windowed.store(false, Ordering::Release);
    for credits in &bench.credits {
        credits.close();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let clients = args.clients;
    Ok(Relay {
        clients,
        connected,
        login_time,
        converged,
        rss_idle,
        rss_logged_in,
        fixed,
        window,
        saturated,
        rss_peak,
    })
}

impl Relay {
    fn print(&self, args: &Args, with_redis: bool) {
        let Relay {
            clients: n,
            connected,
            login_time,
            converged,
            rss_idle,
            rss_logged_in,
            ref fixed,
            window,
            ref saturated,
            rss_peak,
        } = *self;
        println!(
        "| login of {n} users (connect, `username`, own name seen in a `userlist`) | {:.2} s, {:.0} logins/s (all connected after {:.2} s; every client holding the full list after {:.2} s) |",
        login_time.as_secs_f64(),
        n as f64 / login_time.as_secs_f64(),
        connected.as_secs_f64(),
        converged.as_secs_f64()
    );
        if let (Some(idle), Some(full)) = (rss_idle, rss_logged_in) {
            let per = (full.saturating_sub(idle)) as f64 * 1024.0 / n as f64;
            println!("| server RSS per idle logged-in connection (nodes) | {:.2} KiB ({:.1} MiB before logins, {:.1} MiB after) |", per / 1024.0, idle as f64 / 1024.0, full as f64 / 1024.0);
        }
        println!("| relayed at a fixed {} msg/s (delivered) | {:.0} msg/s |", args.rate, fixed.rate);
        println!("| relay latency at {} msg/s: p50 / p99 / max | {} |", args.rate, fixed.latency());
        let cpu_of = if with_redis { "server CPU (nodes and Redis)" } else { "server CPU" };
        if let Some(cpu) = fixed.server_cpu {
            println!("| {cpu_of} at {} msg/s | {cpu:.2} cores |", args.rate);
        }
        println!("| relayed at saturation (window {window} per client) | {:.0} msg/s |", saturated.rate);
        println!("| relay latency at saturation: p50 / p99 / max | {} |", saturated.latency());
        if let Some(cpu) = saturated.server_cpu {
            println!("| {cpu_of} at saturation | {cpu:.2} cores |");
        }
        if let Some(peak) = rss_peak {
            println!("| server peak RSS (VmHWM, nodes) | {:.1} MiB |", peak as f64 / 1024.0);
        }
    }
}

/// One client: connect from `source`, read the id, register `u<index>`, then read and send until the end.
async fn login(
    index: usize,
    source: SocketAddr,
    server: SocketAddr,
    url: &str,
    connector: Option<Connector>,
    bench: Arc<Bench>,
) -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    // An explicit source port spares the kernel a search through thousands of bound ports.
    if socket.bind(source).is_err() {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.ip(), 0)).with_context(|| format!("bind {}", source.ip()))?;
        return connect_and_login(index, socket, server, url, connector, bench).await;
    }
    connect_and_login(index, socket, server, url, connector, bench).await
}

/// The source address of client `index`: one of `addrs` loopback addresses, a port of its own.
fn source_address(index: usize, addrs: u8) -> SocketAddr {
    let addrs = usize::from(addrs.max(1));
    let ip = Ipv4Addr::new(127, 0, 0, 2 + (index % addrs) as u8);
    SocketAddr::new(IpAddr::V4(ip), (20_000 + index / addrs) as u16)
}

async fn connect_and_login(
    index: usize,
    socket: TcpSocket,
    server: SocketAddr,
    url: &str,
    connector: Option<Connector>,
    bench: Arc<Bench>,
) -> anyhow::Result<()> {
    let source = socket.local_addr()?;
    let tcp = socket.connect(server).await.with_context(|| format!("connect from {source}"))?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096);
    // No connector: plain ws over the socket; a rustls connector: wss.
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(url, tcp, Some(config), connector).await?;
    let (mut sink, mut stream) = ws.split();
    match stream.next().await {
        Some(Ok(Message::Text(text))) if text.contains(r#""type":"id""#) => {}
        other => bail!("client {index}: expected the id, got {other:?}"),
    }
    let name = format!("u{index}");
    sink.send(Message::text(format!(r#"{{"type":"username","name":"{name}"}}"#))).await?;
    bench.connected.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(read(index, stream, Arc::clone(&bench)));
    tokio::spawn(send(index, sink, bench));
    Ok(())
}

/// Reads everything: marks the login done when the client's name shows up in a userlist, and
/// times each relayed candidate from its embedded send time.
async fn read(index: usize, mut stream: Stream, bench: Arc<Bench>) {
    let quoted = format!("\"u{index}\"");
    let peer = index ^ 1;
    let (mut logged_in, mut converged) = (false, false);
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else { continue };
        if text.starts_with(r#"{"type":"new-ice-candidate""#) {
            if bench.windowed.load(Ordering::Relaxed) {
                bench.credits[peer].add_permits(1);
            }
            if bench.recording.load(Ordering::Relaxed) {
                if let Some(sent) = stamp(&text) {
                    let now = bench.epoch.elapsed().as_micros() as u64;
                    let latency = now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32;
                    bench.received.fetch_add(1, Ordering::Relaxed);
                    bench.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).push(latency);
                }
            }
        } else if !converged && text.starts_with(r#"{"type":"userlist""#) {
            if !logged_in && text.contains(&quoted) {
                logged_in = true;
                bump(&bench, &bench.logged_in);
            }
            // Names here hold no commas: `{"type":"userlist","users":[...]}` has one comma a user.
            if text.bytes().filter(|&b| b == b',').count() == bench.clients {
                converged = true;
                bump(&bench, &bench.converged);
            }
        }
    }
}

/// Prints login progress to stderr every second, for long runs.
async fn report_progress(bench: Arc<Bench>, started: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        eprintln!(
            "{:5.1} s: {} connected, {} saw their name, {} hold the full list",
            started.elapsed().as_secs_f64(),
            bench.connected.load(Ordering::Relaxed),
            bench.logged_in.load(Ordering::Relaxed),
            bench.converged.load(Ordering::Relaxed)
        );
    }
}

/// Counts one more client in `counter` and wakes the conductor when all are in.
fn bump(bench: &Bench, counter: &AtomicUsize) {
    if counter.fetch_add(1, Ordering::AcqRel) + 1 == bench.clients {
        bench.progress.notify_one();
    }
}

/// Waits until `counter` reaches the number of clients.
async fn wait_for(bench: &Bench, counter: &AtomicUsize) -> anyhow::Result<()> {
    loop {
        let progress = bench.progress.notified();
        if counter.load(Ordering::Acquire) >= bench.clients {
            return Ok(());
        }
        tokio::time::timeout(Duration::from_secs(120), progress).await.context("no progress in 120 s")?;
    }
}

/// The send time (µs since the epoch of the bench) in a relayed candidate.
fn stamp(text: &str) -> Option<u64> {
    let at = text.find(r#""t":"#)? + 4;
    let digits: &str = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Sends a candidate to the peer for every credit; flushes when no credit is left.
async fn send(index: usize, mut sink: Sink, bench: Arc<Bench>) {
    let target = format!("u{}", index ^ 1);
    let credits = &bench.credits[index];
    loop {
        let Ok(permit) = credits.acquire().await else { return };
        permit.forget();
        loop {
            let t = bench.epoch.elapsed().as_micros();
            let text = format!(
                r#"{{"type":"new-ice-candidate","target":"{target}","candidate":{{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","t":{t}}}}}"#
            );
            if sink.feed(Message::text(text)).await.is_err() {
                return;
            }
            match credits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Hands out `rate` credits a second, round-robin over the clients.
async fn pace(bench: Arc<Bench>, rate: u64) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let (mut given, mut next) = (0u64, 0usize);
    loop {
        ticker.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while given < due {
            bench.credits[next].add_permits(1);
            next = (next + 1) % bench.clients;
            given += 1;
        }
    }
}

/// What one phase measured.
struct Phase {
    rate: f64,
    latencies_us: Vec<u32>,
    /// Server CPU time over wall time (cores busy), when the server is our child.
    server_cpu: Option<f64>,
}

impl Phase {
    fn latency(&self) -> String {
        if self.latencies_us.is_empty() {
            return "no samples".into();
        }
        let at =
            |q: f64| self.latencies_us[((self.latencies_us.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        format!("{:.2} / {:.2} / {:.1} ms", at(0.5), at(0.99), at(1.0))
    }
}

/// One second of warm-up, then `time` of counting deliveries and latencies.
async fn measure_phase(bench: &Bench, time: Duration, servers: &[u32]) -> Phase {
    tokio::time::sleep(Duration::from_secs(1)).await;
    bench.received.store(0, Ordering::Relaxed);
    bench.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).clear();
    bench.recording.store(true, Ordering::Release);
    let cpu_before = cpu_total(servers);
    let started = Instant::now();
    tokio::time::sleep(time).await;
    bench.recording.store(false, Ordering::Release);
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = cpu_before.zip(cpu_total(servers)).map(|(before, after)| (after - before) / elapsed);
    let mut latencies_us = std::mem::take(&mut *bench.latencies_us.lock().unwrap_or_else(|p| p.into_inner()));
    latencies_us.sort_unstable();
    Phase { rate: bench.received.load(Ordering::Relaxed) as f64 / elapsed, latencies_us, server_cpu }
}
