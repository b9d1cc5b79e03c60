//! `peercall-server`: the signaling server on its own, for a LAN or a deployment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use peercall::signaling::server::{raise_open_files_limit, ClusterConfig, Limits, Server, ServerConfig};
use peercall::signaling::tls;
use peercall::signaling::turn::TurnConfig;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// Peercall's signaling server: WebSocket, JSON messages as in MDN's "Signaling and video calling"
/// guide. The URL path names the room: ws://HOST:6503/ is the lobby, ws://HOST:6503/team-a another
/// room. With --tls-cert/--tls-key the same is served as wss:// and https://. With --redis several
/// servers share users and rooms. GET /healthz answers 200.
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.
#[derive(Debug, Parser)]
#[command(name = "peercall-server", version, about, long_about)]
struct Args {
    /// Address and port to listen on (0.0.0.0 serves the LAN; 127.0.0.1 only this machine).
    #[arg(long, default_value = "0.0.0.0:6503", env = "PEERCALL_LISTEN")]
    listen: SocketAddr,
    /// Most connections per room; the next joiner gets {"type":"full"} and is closed (2 = one call per room).
    #[arg(long, value_name = "N")]
    room_cap: Option<usize>,
    /// Most connections served at once; more wait in the kernel's accept queue.
    #[arg(long, value_name = "N", default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,
    /// Largest message a client may send, in bytes; larger ones get an error and a close (1009).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Longest display name, in characters.
    #[arg(long, value_name = "CHARS", default_value_t = Limits::default().max_name_chars)]
    max_name_chars: usize,
    /// Messages per second one client may send, sustained; more get a "rate-limited" error.
    #[arg(long, value_name = "N", default_value_t = Limits::default().messages_per_second)]
    rate: u32,
    /// Messages one client may send in a burst above the sustained rate; a client that keeps going is closed.
    #[arg(long, value_name = "N", default_value_t = Limits::default().burst)]
    burst: u32,
    /// Messages that may wait to go out to one client; a client that falls further behind is closed.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_queued_messages)]
    max_queued: usize,
    /// Seconds of silence before a connection is pinged; no answer within as long again and it is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    ping_interval: f64,
    /// The shortest user-list window, in milliseconds: a calm room sends its list at once; while
    /// its users keep changing, at most one list per window (the window grows with the room).
    #[arg(long, value_name = "MS", default_value_t = ServerConfig::default().userlist_delay.as_millis() as u64)]
    userlist_delay_ms: u64,
    /// TURN server URL handed to clients after login, e.g. turn:turn.example.org:3478?transport=udp
    /// (repeat for more). Needs --turn-secret.
    #[arg(long, value_name = "URL", requires = "turn_secret")]
    turn_url: Vec<String>,
    /// The secret shared with coturn (`use-auth-secret` + `static-auth-secret`): clients get
    /// credentials derived from it (TURN REST scheme), never the secret itself.
    #[arg(long, value_name = "SECRET", env = "PEERCALL_TURN_SECRET", requires = "turn_url")]
    turn_secret: Option<String>,
    /// How long handed-out TURN credentials stay valid, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    turn_ttl: u64,
    /// Serve wss:// (and https://) with this PEM certificate chain. Needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key", env = "PEERCALL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert", env = "PEERCALL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Join a cluster: several nodes behind one address share users and rooms through this Redis,
    /// e.g. redis://10.0.0.5:6379. Without it the server is one node and needs no Redis.
    #[arg(long, value_name = "URL", env = "PEERCALL_REDIS")]
    redis: Option<String>,
    /// Seconds after its last heartbeat that a silent node counts as dead (its users leave, their
    /// call partners get hang-up). Heartbeats go every third of this.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, requires = "redis")]
    node_ttl: f64,
}

impl Args {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let ping_interval = Duration::try_from_secs_f64(self.ping_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--ping-interval must be a positive number of seconds")?;
        let cluster = match &self.redis {
            Some(url) => {
                let node_ttl = Duration::try_from_secs_f64(self.node_ttl)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(300))
                    .context("--node-ttl must be at least 0.3 seconds")?;
                Some(ClusterConfig { heartbeat: node_ttl / 3, node_ttl, ..ClusterConfig::new(url.as_str()) })
            }
            None => None,
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        Ok(ServerConfig {
            listen: self.listen,
            room_cap: self.room_cap,
            max_connections: self.max_connections,
            ping_interval,
            userlist_delay: Duration::from_millis(self.userlist_delay_ms),
            limits: Limits {
                max_message_bytes: self.max_message_bytes,
                max_name_chars: self.max_name_chars,
                messages_per_second: self.rate,
                burst: self.burst,
                max_queued_messages: self.max_queued,
                ..Limits::default()
            },
            turn: self.turn_secret.as_ref().map(|secret| {
                Arc::new(TurnConfig {
                    secret: secret.clone(),
                    urls: self.turn_url.clone(),
                    ttl: Duration::from_secs(self.turn_ttl),
                })
            }),
            tls,
            cluster,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = args.config()?;
    match raise_open_files_limit() {
        Ok(files) if (files as usize) < config.max_connections => tracing::warn!(
            files,
            "the open-files limit caps connections below --max-connections; raise it (ulimit -n) or lower the flag"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-files limit"),
    }
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let server = Server::bind(config).await.context("cannot start the signaling server")?;
    server
        .run(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
        .await
        .context("the signaling server failed")
}
