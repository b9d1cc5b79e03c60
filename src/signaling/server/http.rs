//! HTTP routing: `/healthz`, and a WebSocket room on every other path.
//!
//! A plain GET on a room path answers 404 with a hint; this is where a later page (the HTML client)
//! plugs in without touching the WebSocket side.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{upgrade, Shared};

/// The server's routes.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/healthz", get(healthz)).fallback(room).with_state(shared)
}

/// Liveness for load balancers and scripts.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Every other path: the WebSocket endpoint of the room the path names.
async fn room(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    if upgrade::wants_websocket(request.headers()) {
        return upgrade::accept(request, shared);
    }
    (StatusCode::NOT_FOUND, "peercall signaling server: open a WebSocket to ws://host:port/<room>\n")
        .into_response()
}
