//! `signaling-bench`: a load generator for the signaling server that prints its figures.
//!
//! It starts `peercall-server` (the binary next to its own) as a child process so the server's RSS is
//! its own, opens N WebSocket clients spread over several loopback source addresses, logs them in,
//! pairs them (client 2k calls 2k+1) and relays `new-ice-candidate` messages carrying a send
//! timestamp: first at a fixed rate (latency), then as fast as the server relays (throughput).
//! With --tls-cert/--tls-key the server serves wss and the clients speak TLS (figures for wss).
//! With --nodes 2 it starts two servers sharing one Redis (its own `redis-server`, or --redis):
//! client k logs in on node k mod 2, so every relayed message crosses nodes.
//! A last phase creates fresh rooms and joins a pair of clients to each (one per node), as the
//! codelab's "room create-and-join requests" (--room-pairs).
//! It prints figures and never fails on a timing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use peercall::signaling::server::raise_open_files_limit;
use peercall::signaling::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

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
    /// Fresh rooms to create and join with a pair of clients each, in the last phase (0: skip).
    #[arg(long, default_value_t = 2000)]
    room_pairs: usize,
    /// Room pairs joining at once in that phase.
    #[arg(long, default_value_t = 256)]
    room_concurrency: usize,
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
    if args.clients < 2 || args.clients % 2 != 0 {
        bail!("--clients must be an even number of at least 2");
    }
    let files = raise_open_files_limit().context("cannot raise the open-files limit")?;
    if (files as usize) < args.clients + 64 {
        bail!("the open-files limit is {files}: too low for {} clients (ulimit -n)", args.clients);
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
                    let own = RedisChild::start().await?;
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
    let rss_idle = rss_total(&pids, "VmRSS:");
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
    // One TLS client config for all clients (wss), as one browser would share its trust store.
    let connector = match &args.tls_cert {
        Some(cert) => Some(Connector::Rustls(tls::client_config(Some(cert))?)),
        None => None,
    };
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
    let rss_logged_in = rss_total(&pids, "VmRSS:");

    // Phase 2: a fixed rate, for latency.
    let measure = Duration::from_secs_f64(args.duration.max(0.5));
    let pacer = tokio::spawn(pace(Arc::clone(&bench), args.rate));
    let fixed = measure_phase(&bench, measure, &cpu_pids).await;
    pacer.abort();
    // Let in-flight messages land and pacer credits drain before the next phase.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 3: saturation, each client with `window` messages in flight.
    let window = args.window.max(1);
    bench.windowed.store(true, Ordering::Release);
    for credits in &bench.credits {
        credits.add_permits(window);
    }
    let saturated = measure_phase(&bench, measure, &cpu_pids).await;
    let rss_peak = rss_total(&pids, "VmHWM:");
    // Stop the relay traffic before the room phase.
    bench.windowed.store(false, Ordering::Release);
    for credits in &bench.credits {
        credits.close();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 4: fresh rooms, a pair of clients joining each.
    let rooms = if args.room_pairs > 0 {
        Some(
            room_phase(&addrs, args.room_pairs, args.room_concurrency, args.source_addrs, connector.clone())
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
    let cpu_of = if redis.is_some() { "server CPU (nodes and Redis)" } else { "server CPU" };
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
    if let Some(rooms) = rooms {
        println!(
            "| fresh rooms created and joined by a pair ({} at once{}) | {:.0} rooms/s ({} rooms in {:.2} s) |",
            args.room_concurrency,
            if addrs.len() > 1 { ", the two on different nodes" } else { "" },
            rooms.pairs as f64 / rooms.elapsed.as_secs_f64(),
            rooms.pairs,
            rooms.elapsed.as_secs_f64()
        );
        println!(
            "| room join, connect to both seeing each other: p50 / p99 / max | {} |",
            rooms.latency.latency()
        );
    }
    drop(children);
    drop(redis);
    Ok(())
}

/// What the room phase measured.
struct RoomPhase {
    pairs: usize,
    elapsed: Duration,
    /// Per pair, from the first connect to both clients holding both names.
    latency: Phase,
}

/// Creates `pairs` fresh rooms, each joined by two clients (on different nodes when there are
/// several), `concurrency` rooms at a time; a room counts once both clients list both names.
async fn room_phase(
    addrs: &[SocketAddr],
    pairs: usize,
    concurrency: usize,
    source_addrs: u8,
    connector: Option<Connector>,
) -> anyhow::Result<RoomPhase> {
    let scheme = if connector.is_some() { "wss" } else { "ws" };
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(pairs);
    for room in 0..pairs {
        let (gate, connector) = (Arc::clone(&gate), connector.clone());
        let ends = [addrs[0], addrs[1 % addrs.len()]];
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let begun = Instant::now();
            let join = |end: usize| {
                let url = format!("{scheme}://{}/pair-{room}", ends[end]);
                let source = IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    2 + ((room * 2 + end) % usize::from(source_addrs.max(1))) as u8,
                ));
                join_room(source, ends[end], url, ["a", "b"][end], connector.clone())
            };
            let (a, b) = tokio::try_join!(join(0), join(1))?;
            let took = begun.elapsed();
            drop((a, b));
            anyhow::Ok(took)
        }));
    }
    let mut latencies_us = Vec::with_capacity(pairs);
    for task in tasks {
        let took = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("a room join took over 60 s")???;
        latencies_us.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Ok(RoomPhase { pairs, elapsed, latency: Phase { rate: 0.0, latencies_us, server_cpu: None } })
}

/// One client of a room pair: connects, registers `name`, and returns once a userlist holds both
/// `a` and `b`.
async fn join_room(
    source: IpAddr,
    server: SocketAddr,
    url: String,
    name: &str,
    connector: Option<Connector>,
) -> anyhow::Result<WebSocketStream<MaybeTlsStream<TcpStream>>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("bind {source}"))?;
    let tcp = socket.connect(server).await.with_context(|| format!("connect to {server}"))?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async_tls_with_config(url, tcp, None, connector).await?;
    ws.send(Message::text(format!(r#"{{"type":"username","name":"{name}"}}"#))).await?;
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message? {
            if text.starts_with(r#"{"type":"userlist""#) && text.contains(r#""a""#) && text.contains(r#""b""#)
            {
                return Ok(ws);
            }
        }
    }
    bail!("{server} closed the room connection")
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

/// `peercall-server` as a child process, stopped (SIGTERM) when dropped.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    async fn start(args: &Args, redis: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("peercall-server");
        if !exe.exists() {
            bail!("{} not found: build it too (cargo build --release --bin peercall-server)", exe.display());
        }
        // Ask the kernel for a free port, then hand it to the server.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut command = Command::new(&exe);
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if let Some(url) = redis {
            command.args(["--redis", url]);
        }
        let child = command
            .args(["--listen", &addr.to_string()])
            // The bench measures relaying, not the per-client limiter: lift it (and queue limits)
            // for the saturation phase's bursts.
            .args(["--rate", "1000000", "--burst", "1000000", "--max-queued", "65536"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let server = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        // A wss server does not answer plain HTTP: there, an open port is enough.
        let up = || async {
            if args.tls_cert.is_some() {
                TcpStream::connect(addr).await.is_ok()
            } else {
                healthy(addr).await
            }
        };
        while !up().await {
            if Instant::now() > deadline {
                bail!("{} did not answer /healthz on {addr} within 10 s", exe.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else { return false };
    if tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    response.starts_with(b"HTTP/1.1 200")
}

/// `redis-server` on a free loopback port, without persistence, for a multi-node run.
struct RedisChild {
    child: Child,
    port: u16,
}

impl RedisChild {
    async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (Debian: apt-get install redis-server), or pass --redis")?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not open port {port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds of all `pids` together; `None` when there are none (an outside server).
fn cpu_total(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// A `kB` figure of /proc/<pid>/status summed over `pids`; `None` when there are none.
fn rss_total(pids: &[u32], field: &str) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss_kib(pid, field)).sum()
}

/// User plus system CPU seconds of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), in KiB.
fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
