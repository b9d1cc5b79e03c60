//! The signaling server: MDN's webrtc-from-chat protocol over WebSocket, one room per URL path.
//!
//! # Layout
//! - [`config`](ServerConfig): what an embedder tunes ([`ServerConfig`], [`Limits`]).
//! - `http`: routes (`/healthz`, a room on every other path); `upgrade`: the WebSocket handshake.
//!   With [`ServerConfig::tls`] the same routes are served over TLS (wss, https).
//! - `connection`: one task per client: socket, outbox, pings, shutdown.
//! - `session`: one client's protocol state; `message`: parsing and relaying without JSON trees.
//! - `room/`: rooms, names, calls, userlist timing; `outbox`: the bounded per-client queue;
//!   `limits`: rate limit and name rules.
//! - `cluster`: the directory behind the rooms (a trait): in-process for one node, Redis for
//!   several ([`ServerConfig::cluster`]); what other nodes send comes back as events on a bounded
//!   channel, applied to the rooms by a task of their own (`room::follow`).
//!
//! # Embedding
//! ```no_run
//! # async fn demo() -> Result<(), peercall::signaling::server::ServerError> {
//! use peercall::signaling::server::{Server, ServerConfig};
//! let server = Server::bind(ServerConfig::ephemeral()).await?;
//! let url = format!("ws://{}/team-a", server.local_addr());
//! let handle = server.spawn();
//! // ... connect clients to `url` ...
//! handle.shutdown().await?;
//! # Ok(()) }
//! ```
//! Shutdown (mini-redis style): the listener stops, every connection is told over a `watch`
//! channel and closes with 1001 "going away", and [`Server::run`] returns once each connection task
//! has dropped its guard (or after [`SHUTDOWN_GRACE`]).

mod cluster;
mod config;
mod connection;
mod http;
mod limits;
mod message;
mod outbox;
mod room;
mod session;
mod upgrade;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use cluster::{ClusterConfig, ClusterError};
use cluster::{Directory, InProcess, Link};
pub use config::{Limits, ServerConfig};
use room::Rooms;

/// How long [`Server::run`] waits for connections to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a client may take to send its HTTP request head (slow-loris protection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server using it? pick another --listen address)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The cluster's Redis is unreachable or its URL is wrong.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// The server task panicked or was cancelled.
    #[error("the server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// State every connection shares.
#[derive(Debug)]
struct Shared {
    config: Arc<ServerConfig>,
    rooms: Arc<Rooms>,
    next_id: AtomicU64,
    /// Turns `true` when the server shuts down.
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// A fresh connection id; like the MDN sample, ids count up from the server's start time in ms.
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Held by every task that serves a TCP connection: the connection-cap permit, and a sender whose
/// drop tells [`Server::run`] the connection is finished.
#[derive(Debug)]
struct ConnectionGuard {
    _permit: OwnedSemaphorePermit,
    _done: mpsc::Sender<()>,
}

/// A bound server, not yet serving. Start it with [`Server::run`] or [`Server::spawn`].
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
}

/// A server running on its own task. Dropping the handle shuts the server down too.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Server {
    /// Binds the listen address, and joins the cluster if the config names one (an unreachable
    /// Redis is an error). Nothing is served until [`Server::run`] or [`Server::spawn`].
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let (directory, events): (Arc<dyn Directory>, _) = match &config.cluster {
            Some(cluster) => {
                let (link, events) = Link::join(cluster.clone()).await?;
                (Arc::new(link), Some(events))
            }
            None => (Arc::new(InProcess), None),
        };
        let listener =
            listen(config.listen).map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let config = Arc::new(config);
        let start_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1);
        // The link lives as long as the rooms (they hold it): when the server is gone it leaves the cluster.
        let rooms = Arc::new(Rooms::new(Arc::clone(&config), directory));
        if let Some(events) = events {
            tokio::spawn(room::follow(Arc::downgrade(&rooms), events));
        }
        let shared = Arc::new(Shared { rooms, config, next_id: AtomicU64::new(start_ms), shutdown });
        Ok(Self { listener, local_addr, shared, shutdown_tx })
    }

    /// The address the server listens on (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then closes every connection and returns.
    /// An error on one connection is logged and never stops the listener.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self { listener, local_addr, shared, shutdown_tx } = self;
        let tls = shared.config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        info!(%local_addr, scheme, "signaling server listening");
        let router = http::router(Arc::clone(&shared));
        let permits = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = &mut shutdown => break,
                stream = accept(&listener) => stream,
            };
            let guard = Arc::new(ConnectionGuard { _permit: permit, _done: done_tx.clone() });
            match &tls {
                None => {
                    tokio::spawn(serve_http(stream, router.clone(), guard, shared.shutdown.clone()));
                }
                Some(acceptor) => {
                    // The handshake runs on the connection's task: a slow or silent client must
                    // never hold up the accept loop.
                    let (acceptor, router, mut shutdown) =
                        (acceptor.clone(), router.clone(), shared.shutdown.clone());
                    tokio::spawn(async move {
                        let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream));
                        // A shutdown drops half-done handshakes at once rather than waiting them out.
                        let handshake = tokio::select! {
                            handshake = handshake => handshake,
                            _ = shutdown.changed() => return,
                        };
                        match handshake {
                            Ok(Ok(stream)) => serve_http(stream, router, guard, shutdown).await,
                            Ok(Err(error)) => debug!(%error, "TLS handshake failed"),
                            Err(_) => debug!("TLS handshake timed out"),
                        }
                    });
                }
            }
        }
        info!("signaling server shutting down");
        drop(listener);
        let _ = shutdown_tx.send(true);
        drop(done_tx);
        // Every guard dropped means every connection task is done.
        if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv()).await.is_err() {
            warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
        }
        Ok(())
    }

    /// Runs the server on a new task; stop it with [`ServerHandle::shutdown`].
    pub fn spawn(self) -> ServerHandle {
        let local_addr = self.local_addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            // A dropped handle stops the server as well as an explicit shutdown.
            let _ = stopped.await;
        }));
        ServerHandle { local_addr, stop: Some(stop), task: Some(task) }
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection (1001 "going away") and waits for the server task.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds and listens with a deep accept queue: the default (128) overflows when a few hundred
/// clients connect at once, and each overflow costs a client a one-second SYN retry.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std does: a restarted server can bind while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // The kernel caps this at net.core.somaxconn.
    socket.listen(4096)
}

/// Raises this process's open-files limit (RLIMIT_NOFILE) to its hard limit, so the server (or a
/// load generator) can hold as many sockets as the system allows; returns the new limit.
/// Each connection is one file: the common default soft limit of 1,024 would cap the server there.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Accepts the next connection. Errors (a connection reset before accept, too many open files)
/// are logged and retried after a pause: they concern one connection, never the listener.
async fn accept(listener: &TcpListener) -> TcpStream {
    let mut pause = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Signaling messages are small and latency matters: never wait to coalesce them.
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(error) => {
                warn!(%error, "accept failed; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Serves HTTP on one connection (plain or TLS) until it ends, is upgraded, or the server shuts down.
async fn serve_http<S>(
    stream: S,
    router: axum::Router,
    guard: Arc<ConnectionGuard>,
    mut shutdown: watch::Receiver<bool>,
) where
    // A TCP stream for ws, a TLS stream over one for wss.
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = TowerToHyperService::new(router);
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(Arc::clone(&guard));
        router.call(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%error, "http connection ended with an error");
    }
}
