//! The WebSocket handshake (RFC 6455 §4.2), done here rather than by axum's extractor so the
//! connection gets a tokio-tungstenite stream whose buffers and frames we control.
//!
//! MDN's page opens `new WebSocket(url, "json")`: a browser fails the connection unless the server
//! echoes the `json` subprotocol, so it is echoed when offered; clients that offer none are served too.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::connection::{self, DIRECT_WRITE_BYTES};
use super::{ConnectionGuard, Shared};

/// The subprotocol MDN's page asks for.
const SUBPROTOCOL: &str = "json";

/// Longest room name (URL path) accepted, in bytes.
const MAX_ROOM_BYTES: usize = 128;

/// Does the request ask for a WebSocket?
pub(super) fn wants_websocket(headers: &HeaderMap) -> bool {
    header_has_token(headers, &UPGRADE, "websocket")
}

/// Answers a WebSocket request on `path`: 101 and a connection task, or an HTTP error saying why not.
pub(super) fn accept(mut request: Request<Body>, shared: Arc<Shared>) -> Response {
    let headers = request.headers();
    if request.method() != Method::GET || !header_has_token(headers, &CONNECTION, "upgrade") {
        return (StatusCode::BAD_REQUEST, "a WebSocket handshake needs GET with Connection: upgrade\n")
            .into_response();
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut response =
            (StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported\n").into_response();
        response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n").into_response();
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let offers_json = header_has_token(headers, &SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    let room = match room_from_path(request.uri().path()) {
        Ok(room) => room.to_owned(),
        Err(status) => return (status, "the room name (URL path) is too long\n").into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded\n").into_response();
    };
    // The connection's permit and shutdown tracking move from the HTTP connection to the WebSocket task.
    let guard = request.extensions().get::<Arc<ConnectionGuard>>().cloned();
    let config = websocket_config(&shared);
    tokio::spawn(async move {
        let _guard = guard;
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                    .await;
                connection::serve(ws, room, shared).await;
            }
            Err(error) => debug!(%error, "upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        out.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    if offers_json {
        out.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    response
}

/// The room a path names: `/` is the lobby (`""`), `/team-a` and `/team-a/` are `team-a`.
fn room_from_path(path: &str) -> Result<&str, StatusCode> {
    let room = path.trim_start_matches('/').trim_end_matches('/');
    if room.len() > MAX_ROOM_BYTES {
        return Err(StatusCode::URI_TOO_LONG);
    }
    Ok(room)
}

/// Buffers sized for signaling: small messages, thousands of mostly idle connections.
fn websocket_config(shared: &Shared) -> WebSocketConfig {
    let max = shared.config.limits.max_message_bytes;
    WebSocketConfig::default()
        // Read in 1 KiB steps; the buffer grows only while a larger message is being read.
        .read_buffer_size(1024)
        // Write out once 1 KiB is buffered; longer messages bypass this buffer (see DIRECT_WRITE_BYTES).
        .write_buffer_size(DIRECT_WRITE_BYTES)
        .max_write_buffer_size(max.max(DIRECT_WRITE_BYTES) * 2)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Does a comma-separated header hold `token` (case-insensitively)?
fn header_has_token(headers: &HeaderMap, name: &axum::http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_from_paths() {
        assert_eq!(room_from_path("/"), Ok(""));
        assert_eq!(room_from_path("/team-a"), Ok("team-a"));
        assert_eq!(room_from_path("/team-a/"), Ok("team-a"));
        assert_eq!(room_from_path(&format!("/{}", "r".repeat(129))), Err(StatusCode::URI_TOO_LONG));
    }
}
