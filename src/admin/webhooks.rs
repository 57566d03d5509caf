//! `GET /webhooks` and `POST /webhooks/replay`: the webhook journal, and the re-delivery of one
//! journalled event to the upstream — with its original `svix-id`, a fresh `svix-timestamp` and
//! a signature made with `clerk.upstream_webhook_secret`, so an upstream that verifies Svix
//! signatures accepts it — noted in the journal and audited (`webhook.replayed`).
//!
//! The running gateway is the journal's only writer, so the CLI goes through these endpoints
//! rather than reading `state.dir`; it paces the replays and shows their progress.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::api::{ReplayRequest, Replayed, WebhookList};
use super::guard::AdminActor;
use super::{control_error, error, parse_since, AdminState};
use crate::auth::gate::{WEBHOOK_REPLAY, WEBHOOK_VERIFIED};
use crate::headers::names;
use crate::store::Action;
use crate::webhooks::{svix, Journal, Outcome};

/// What to do when no upstream secret is set.
pub const NO_UPSTREAM_SECRET: &str = "clerk.upstream_webhook_secret is not set, so a replay could not be signed for the \
     upstream (Clerk's own signature is useless after five minutes): set it, or CLERKGATE_UPSTREAM_WEBHOOK_SECRET, to a \
     whsec_ secret the upstream verifies webhooks with (besides Clerk's), then `clerkgate reload`";

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    since: Option<String>,
    #[serde(default)]
    failed: bool,
    /// Comma-separated `svix-id`s.
    ids: Option<String>,
}

fn journal(ctx: &AdminState) -> Result<&Arc<Journal>, Box<Response>> {
    let none = || Box::new(error(StatusCode::NOT_FOUND, "not_found", "this gateway keeps no webhook journal"));
    ctx.webhooks.as_ref().ok_or_else(none)
}

/// `GET /webhooks`.
pub(super) async fn list(State(ctx): State<Arc<AdminState>>, Query(q): Query<ListQuery>) -> Response {
    let journal = match journal(&ctx) {
        Ok(j) => j,
        Err(r) => return *r,
    };
    let since = match q.since.as_deref().map(|s| parse_since(s, ctx.clock.now_ms())) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e),
    };
    let ids: Vec<String> = q
        .ids
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let can_replay = ctx.shared.load().config.clerk.upstream_webhook_secret.is_some();
    journal.settled().await;
    let events = journal.list(since, q.failed, &ids);
    Json(WebhookList { journal: journal.path().display().to_string(), can_replay, events }).into_response()
}

/// `POST /webhooks/replay`.
pub(super) async fn replay(
    State(ctx): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    body: Result<Json<ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(ReplayRequest { svix_id }) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()),
    };
    let journal = match journal(&ctx) {
        Ok(j) => j.clone(),
        Err(r) => return *r,
    };
    let Some(secret) = ctx.shared.load().config.clerk.upstream_webhook_secret.clone() else {
        return error(StatusCode::CONFLICT, "no_upstream_secret", NO_UPSTREAM_SECRET);
    };
    let id = svix_id.clone();
    let read = tokio::task::spawn_blocking({
        let journal = journal.clone();
        move || journal.read(&id)
    })
    .await;
    let stored = match read {
        Ok(Ok(Some(stored))) => stored,
        Ok(Ok(None)) => {
            let message = format!("{svix_id} is not in the webhook journal (`clerkgate webhooks list` shows what is)");
            return error(StatusCode::NOT_FOUND, "not_found", message);
        }
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
    };
    let now_s = ctx.clock.now_ms().div_euclid(1000);
    let Some(signature) = svix::sign(secret.expose(), &svix_id, now_s, &stored.body) else {
        return error(StatusCode::CONFLICT, "no_upstream_secret", NO_UPSTREAM_SECRET);
    };
    let mut req = Request::new(axum::body::Body::from(stored.body));
    *req.method_mut() = Method::POST;
    match stored.summary.path.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "storage", "the journalled path does not parse"),
    }
    let h = req.headers_mut();
    let text = |v: &str| HeaderValue::from_str(v).ok();
    let fields = [
        (CONTENT_TYPE, stored.content_type.as_deref().and_then(text)),
        (HeaderName::from_static("svix-id"), text(&svix_id)),
        (HeaderName::from_static("svix-timestamp"), Some(HeaderValue::from(now_s))),
        (HeaderName::from_static("svix-signature"), text(&signature)),
        (WEBHOOK_VERIFIED, Some(HeaderValue::from_static("true"))),
        (WEBHOOK_REPLAY, Some(HeaderValue::from_static("true"))),
        (names::AUTH_STATUS, Some(HeaderValue::from_static("signed-out"))),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            h.insert(name, value);
        }
    }
    let status = ctx.proxy.clone().forward(req).await.status().as_u16();
    let outcome = Outcome { status: Some(status), replay: true };
    journal.mark(svix_id.clone(), outcome);
    let after = json!({
        "svix_id": svix_id,
        "event_type": stored.summary.event_type,
        "status": status,
        "delivered": outcome.delivered(),
    });
    if let Err(e) = ctx.control.note(Action::WebhookReplayed, after, String::new(), actor.0).await {
        tracing::error!(error = %e, %svix_id, status, "a webhook was replayed, but its audit line could not be written");
        return control_error(e);
    }
    Json(Replayed { svix_id, status, delivered: outcome.delivered() }).into_response()
}
