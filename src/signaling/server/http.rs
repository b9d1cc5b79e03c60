//! HTTP routing: `/healthz`, and a WebSocket room on every other path.
//!
//! A plain GET on a room path serves the browser client (assets/web/index.html), which opens its
//! WebSocket on the same path and so joins that room.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::cluster::Health;
use super::{upgrade, Shared};

/// The server's routes.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/healthz", get(healthz)).fallback(room).with_state(shared)
}

/// Liveness for load balancers and scripts. A node cut off from its cluster's Redis still
/// answers 200 (it serves its own clients) and says so.
async fn healthz(State(shared): State<Arc<Shared>>) -> String {
    match shared.rooms.directory().health() {
        Health::Single => "ok\n".into(),
        Health::Joined { node } => format!("ok\ncluster: joined (node {node}, redis up)\n"),
        Health::Detached { node } => {
            format!(
                "ok\ncluster: detached (node {node}, redis unreachable: serving this node's clients only)\n"
            )
        }
    }
}

/// Every other path: the WebSocket endpoint of the room the path names.
async fn room(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    if upgrade::wants_websocket(request.headers()) {
        return upgrade::accept(request, shared);
    }
    if request.method() == axum::http::Method::GET {
        // The browser client: the page opens its WebSocket on the same path, so /team-a is that room.
        return ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], WEB_CLIENT)
            .into_response();
    }
    (StatusCode::METHOD_NOT_ALLOWED, "peercall signaling server: open a WebSocket to ws://host:port/<room>\n")
        .into_response()
}

/// Peercall's browser client (MDN's call flow in one page), built into the binary.
const WEB_CLIENT: &str = include_str!("../../../assets/web/index.html");
