//! The admin API, on its own listener (never the data-plane port).
//!
//! Endpoints (SPEC §5):
//!
//! | Endpoint | Auth | |
//! | --- | --- | --- |
//! | `GET /healthz` | open | the process is alive |
//! | `GET /readyz` | open | 200 when a usable key set is loaded (or a networkless key is configured), else 503 with why |

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use crate::app::Context;

/// The admin router.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ctx)
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Why the gateway is or is not ready to verify tokens.
pub fn readiness(ctx: &Context) -> (bool, serde_json::Value) {
    let rt = ctx.shared.load();
    let clerk = &rt.config.clerk;
    let now = ctx.clock.now_ms();
    let set = ctx.keys.current();
    let remote_usable = clerk.jwks.is_some() && set.usable(now, clerk.keys.max_stale);
    let networkless = clerk.jwt_key.is_some();
    let status = ctx.keys.status();
    let ready = remote_usable || networkless;
    let why = if ready {
        None
    } else if set.fetched_at_ms.is_some() && !set.keys.is_empty() {
        Some(format!(
            "the last good keys are older than clerk.keys.max_stale ({})",
            crate::state::human(clerk.keys.max_stale)
        ))
    } else {
        Some(match &status.last_error {
            Some(e) => format!("no key set loaded yet: {e}"),
            None => "no key set loaded yet: the first JWKS fetch has not finished".to_string(),
        })
    };
    let body = json!({
        "ready": ready,
        "why": why,
        "networkless_key": networkless,
        "remote_keys": set.kids(),
        "stale": clerk.jwks.is_some() && !remote_usable && set.fetched_at_ms.is_some(),
        "last_error": status.last_error,
    });
    (ready, body)
}

async fn readyz(State(ctx): State<Arc<Context>>) -> Response {
    let (ready, body) = readiness(&ctx);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
