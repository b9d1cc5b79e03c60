//! The user-list phases: logins one after another into one room, and rooms made from nothing by
//! two clients each, with the room in the URL path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::Phase;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one login or one room may take before the phase gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a phase of timed steps measured.
pub(crate) struct Steps {
    /// Logins or rooms done.
    pub count: usize,
    pub elapsed: Duration,
    /// Per step: for a login, connect to its own name seen in a `userlist`; for a room, the first
    /// connect to both clients holding both names.
    pub latency: Phase,
}

impl Steps {
    fn new(count: usize, elapsed: Duration, mut latencies_us: Vec<u32>) -> Self {
        latencies_us.sort_unstable();
        Self { count, elapsed, latency: Phase { rate: 0.0, latencies_us, server_cpu: None } }
    }

    pub(crate) fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

fn micros(took: Duration) -> u32 {
    took.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Connects from `source` (port 0: the kernel picks) to `server` and opens the WebSocket at `url`.
async fn open(
    source: SocketAddr,
    server: SocketAddr,
    url: &str,
    connector: Option<Connector>,
) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(source).with_context(|| format!("bind {source}"))?;
    let tcp = socket.connect(server).await.with_context(|| format!("connect to {server}"))?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(url, tcp, Some(config), connector).await?;
    Ok(ws)
}

/// Sends `username` and reads until a `userlist` holds every one of `names` (quoted).
async fn log_in(ws: &mut Ws, name: &str, names: &[String]) -> anyhow::Result<()> {
    ws.send(Message::text(format!(r#"{{"type":"username","name":"{name}"}}"#))).await?;
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message? {
            if text.starts_with(r#"{"type":"userlist""#) && names.iter().all(|n| text.contains(n.as_str())) {
                return Ok(());
            }
        }
    }
    bail!("the server closed the connection of {name}")
}

/// `clients` logins one after another into `room` on `server`: each client connects, logs in and
/// waits for the list holding its name before the next one connects. The clients stay (reading
/// every later list, as a browser would) until the phase ends.
pub(crate) async fn one_by_one(
    server: SocketAddr,
    room: &str,
    clients: usize,
    source_addrs: u8,
    connector: Option<Connector>,
) -> anyhow::Result<Steps> {
    let scheme = if connector.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{server}{room}");
    let mut readers = Vec::with_capacity(clients);
    let mut latencies_us = Vec::with_capacity(clients);
    let started = Instant::now();
    for index in 0..clients {
        let source = SocketAddr::new(source_ip(index, source_addrs), 0);
        let begun = Instant::now();
        let name = format!("s{index}");
        let login = async {
            let mut ws = open(source, server, &url, connector.clone()).await?;
            log_in(&mut ws, &name, &[format!("\"{name}\"")]).await?;
            anyhow::Ok(ws)
        };
        let mut ws = tokio::time::timeout(STEP_TIMEOUT, login)
            .await
            .with_context(|| format!("login {index} took over {STEP_TIMEOUT:?}"))??;
        latencies_us.push(micros(begun.elapsed()));
        // Keep reading, so the server's lists never back up into its queues.
        readers.push(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }));
    }
    let elapsed = started.elapsed();
    for reader in readers {
        reader.abort();
    }
    Ok(Steps::new(clients, elapsed, latencies_us))
}

/// Makes `rooms` rooms from nothing, `concurrency` at a time: two clients connect to `/room-k`
/// (on different nodes when there are several), log in, and the room counts once both list both.
pub(crate) async fn from_nothing(
    addrs: &[SocketAddr],
    rooms: usize,
    concurrency: usize,
    source_addrs: u8,
    connector: Option<Connector>,
) -> anyhow::Result<Steps> {
    let scheme = if connector.is_some() { "wss" } else { "ws" };
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let both = [r#""a""#.to_owned(), r#""b""#.to_owned()];
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(rooms);
    for room in 0..rooms {
        let (gate, connector, both) = (Arc::clone(&gate), connector.clone(), both.clone());
        let ends = [addrs[0], addrs[1 % addrs.len()]];
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let begun = Instant::now();
            let join = |end: usize| {
                let (connector, both) = (connector.clone(), &both);
                async move {
                    let url = format!("{scheme}://{}/room-{room}", ends[end]);
                    let source = SocketAddr::new(source_ip(room * 2 + end, source_addrs), 0);
                    let mut ws = open(source, ends[end], &url, connector).await?;
                    log_in(&mut ws, ["a", "b"][end], both).await?;
                    anyhow::Ok(ws)
                }
            };
            let (a, b) = tokio::try_join!(join(0), join(1))?;
            let took = begun.elapsed();
            drop((a, b));
            anyhow::Ok(took)
        }));
    }
    let mut latencies_us = Vec::with_capacity(rooms);
    for task in tasks {
        let took = tokio::time::timeout(STEP_TIMEOUT, task)
            .await
            .with_context(|| format!("a room took over {STEP_TIMEOUT:?}"))???;
        latencies_us.push(micros(took));
    }
    Ok(Steps::new(rooms, started.elapsed(), latencies_us))
}

/// One of `addrs` loopback source addresses (127.0.0.2, ...), round-robin.
fn source_ip(index: usize, addrs: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (index % usize::from(addrs.max(1))) as u8))
}
