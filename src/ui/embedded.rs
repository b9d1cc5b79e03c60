//! The signaling server built into the app: when the chosen server is on this machine and nothing
//! answers there, the app serves it itself, on every interface, so a second person on the LAN can join.

use crate::signaling::server::{Server, ServerConfig, ServerHandle};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// A server this app started; stops when [`Embedded::shutdown`] is awaited (or the runtime ends).
pub struct Embedded {
    handle: ServerHandle,
    /// The sentence telling others where to join, e.g. "others on your network can join at ws://192.168.1.20:6503/".
    pub lan_hint: String,
}

impl Embedded {
    /// Stops the server; its clients see the socket close.
    pub async fn shutdown(self) {
        if let Err(e) = self.handle.shutdown().await {
            tracing::warn!(%e, "the embedded server did not stop cleanly");
        }
    }
}

/// The port of `url` when it names this machine (`ws://127.0.0.1:6503/`, `ws://localhost:6503/room`).
pub fn local_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("ws://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "0.0.0.0");
    local.then(|| port.parse().ok()).flatten()
}

/// Serves the signaling server on `0.0.0.0:port` unless something already answers on this machine's
/// `port` (another Peercall window, or a `peercall-server`): then `Ok(None)`, and we use that one.
pub async fn ensure(port: u16) -> Result<Option<Embedded>, String> {
    let probe = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), probe).await {
        return Ok(None);
    }
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let server = Server::bind(ServerConfig { listen, ..Default::default() })
        .await
        .map_err(|e| format!("could not start the built-in server on port {port}: {e}"))?;
    let lan = lan_address().map(|ip| ip.to_string()).unwrap_or_else(|| "<this machine's address>".into());
    tracing::info!(%listen, "serving the built-in signaling server");
    let lan_hint = format!("others on your network can join at ws://{lan}:{port}/");
    Ok(Some(Embedded { handle: server.spawn(), lan_hint }))
}

/// This machine's address on its LAN: the source address the kernel would pick to reach a private
/// address. `connect` on UDP only chooses a route, so no packet is sent.
pub fn lan_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(10, 254, 254, 254), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_give_their_port() {
        assert_eq!(local_port("ws://127.0.0.1:6503/"), Some(6503));
        assert_eq!(local_port("ws://localhost:7000/team-a"), Some(7000));
        assert_eq!(local_port("ws://192.168.1.4:6503/"), None);
        assert_eq!(local_port("wss://127.0.0.1:6503/"), None);
        assert_eq!(local_port("ws://127.0.0.1/"), None);
    }
}
