//! The admin API, on its own listener (never the data-plane port). JSON in and out; every
//! body the CLI reads or sends, and every error, is a type in [`api`], shared with the CLI.
//!
//! | Endpoint | Auth | |
//! | --- | --- | --- |
//! | `GET /healthz` | open | the process is alive |
//! | `GET /readyz` | open | 200 when a usable key set is loaded (or a networkless key is configured), else 503 with why; `state` says whether changes can be recorded |
//! | `GET /metrics` | open | Prometheus text |
//! | `GET /status` | token | mode, config and the last reload attempt, state store, keys, revocations, outcome counters |
//! | `GET /mode`, `PUT /mode` | token | `{"mode":"bypass","reason":"…","ttl":"30m"}`; `{"mode":"enforce"}` clears the override |
//! | `POST /reload` | token | same as SIGHUP: 200 with the new hash, or 422 with every problem |
//! | `POST /keys/refresh` | token | fetch the JWKS now; answers the kids loaded |
//! | `GET /revocations`, `POST /revocations` | token | `{"session_id"}`, `{"user_id"}` or `{"issued_before": RFC 3339 \| "now"}`, each with an optional `"reason"` |
//! | `DELETE /revocations/{id}` | token | lift one entry (a session id, a user id, or `issued_before`) |
//! | `GET /audit?since=` | token | audit events, oldest first; `since` is RFC 3339 or a duration back from now (`1h`) |
//! | `POST /audit` | token | a runbook command records what it did at Clerk: `{"action":"revocation.remote","after":{…},"reason":"…"}` (or `triage.run`) |
//! | `GET /webhooks?since=&failed=true&ids=a,b` | token | the webhook journal in replay order; `since` as for `/audit`, by arrival |
//! | `GET /console` (and `/console/…`) | Host and Origin checks; its state needs the token | the on-call page, see [`console`] |
//! | `POST /webhooks/replay` | token | `{"svix_id"}`: re-deliver one journalled event, re-signed with `clerk.upstream_webhook_secret`; audited |
//!
//! [`health_router`] serves the three open endpoints alone, on `server.health_listen`: the same
//! handlers, for the kubelet and Prometheus, while the rest of the API stays on loopback.
//!
//! Every guarded endpoint goes through [`guard`]: DNS-rebinding defence first (the `Host` must
//! be an IP literal or `localhost`; a cross-site `Origin` or `Sec-Fetch-Site` is refused), then
//! the bearer token, compared in constant time. Without a configured token they answer 403.

pub mod api;
pub mod client;
pub mod console;
pub mod guard;
pub mod probe;
pub mod replay;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Gate;
use crate::clock::{rfc3339, Clock};
use crate::control::{ControlError, ControlHandle, Report, Revocation};
use crate::keys::{FetchError, InstallError, KeyStore, Trigger};
use crate::mode::Mode;
use crate::proxy::Proxy;
use crate::revocation::Revocations;
use crate::state::Shared;
use crate::store::ControlStore;
use crate::webhooks::Journal;
use api::{ApiError, ModeRequest, Problem, RevokeRequest};
use guard::AdminActor;

/// What the admin API reads, and the control funnel it sends changes to. Built by the wiring.
#[derive(Debug)]
pub struct AdminState {
    /// The runtime snapshot (config, mode).
    pub shared: Arc<Shared>,
    /// The key store (status, `POST /keys/refresh`).
    pub keys: Arc<KeyStore>,
    /// Revocations in force.
    pub revocations: Arc<Revocations>,
    /// The auth gate, for its outcome counters.
    pub gate: Arc<Gate>,
    /// The clock.
    pub clock: Clock,
    /// Where mutations go.
    pub control: ControlHandle,
    /// The audit log, for `GET /audit`.
    pub store: Arc<dyn ControlStore>,
    /// What the control task reports: whether the store takes writes, the last reload.
    pub report: Arc<Report>,
    /// When the gateway started, ms: since when the outcome counters count.
    pub started_at_ms: i64,
    /// The webhook journal (`GET /webhooks`, `POST /webhooks/replay`).
    pub webhooks: Option<Arc<Journal>>,
    /// The upstream hop, for replayed webhooks.
    pub proxy: Proxy,
    /// Runs triage for the console, when the binary that serves put it here (`clerkgate run`;
    /// triage is a runbook command, a layer above this one).
    pub triage: std::sync::OnceLock<TriageRunner>,
}

/// Runs `clerkgate triage` once and answers its report as JSON.
#[derive(Clone)]
pub struct TriageRunner(
    pub Arc<dyn Fn() -> crate::store::BoxFuture<'static, Result<serde_json::Value, String>> + Send + Sync>,
);

impl std::fmt::Debug for TriageRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TriageRunner")
    }
}

/// Largest admin request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The admin router.
pub fn router(ctx: Arc<AdminState>) -> Router {
    let guarded = Router::new()
        .route("/status", get(status))
        .route("/mode", get(get_mode).put(put_mode))
        .route("/reload", post(reload))
        .route("/keys/refresh", post(keys_refresh))
        .route("/revocations", get(list_revocations).post(add_revocation))
        .route("/revocations/{id}", delete(remove_revocation))
        .route("/audit", get(audit).post(record_audit))
        .route("/fleet", get(fleet))
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/replay", post(webhooks::replay))
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard::guard));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .merge(console::router(ctx.clone()))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint") })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .with_state(ctx)
}

/// The health listener's router (`server.health_listen`): `GET /healthz`, `/readyz` and
/// `/metrics`, the admin API's own handlers, and 404 for everything else — never an admin
/// endpoint, never the data plane. `draining` turns true when the gateway starts to shut down:
/// from then on `/readyz` answers 503, while in-flight requests finish, so that nothing sends
/// the pod new work; `/healthz` stays 200 until the process exits.
pub fn health_router(ctx: Arc<AdminState>, draining: tokio::sync::watch::Receiver<bool>) -> Router {
    let readyz = move |State(ctx): State<Arc<AdminState>>| {
        let draining = *draining.borrow();
        async move {
            let mut body = readiness(&ctx);
            if draining {
                body.ready = false;
                body.why = Some("the gateway is shutting down: in-flight requests are draining".into());
            }
            readyz_answer(body)
        }
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "the health listener serves only GET /healthz, /readyz and /metrics; the admin API is on admin.listen",
            )
        })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .with_state(ctx)
}

/// A JSON error answer.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ApiError { error: code.into(), message: message.into(), problems: Vec::new() })).into_response()
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        ControlError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", m),
        ControlError::Config(errors) => {
            let body = ApiError {
                error: "invalid_config".into(),
                message: "the config file has problems; the running config stays".into(),
                problems: errors.0.into_iter().map(Problem::from).collect(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        ControlError::Storage(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "storage", m),
        ControlError::Closed => error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the gateway is shutting down"),
    }
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Why the gateway is or is not ready to verify tokens.
pub fn readiness(ctx: &AdminState) -> api::Readiness {
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
    api::Readiness {
        ready,
        why,
        networkless_key: networkless,
        remote_keys: set.kids(),
        stale: clerk.jwks.is_some() && !remote_usable && set.fetched_at_ms.is_some(),
        last_error: status.last_error,
        state: state_view(ctx),
    }
}

/// Whether the state store takes writes. Readiness does not depend on it: requests are served
/// as before, only changes fail, and pulling every gateway out of its load balancer over a
/// disk would turn a problem with the emergency switch into an outage.
fn state_view(ctx: &AdminState) -> api::StateView {
    let check = ctx.report.store();
    api::StateView {
        dir: ctx.store.location(),
        writable: check.problem.is_none(),
        problem: check.problem,
        since: check.since_ms.map(rfc3339),
        checked_at: check.checked_at_ms.map(rfc3339),
    }
}

fn reload_view(attempt: crate::control::ReloadAttempt) -> api::ReloadView {
    api::ReloadView {
        at: rfc3339(attempt.at_ms),
        actor: attempt.actor.clone(),
        ok: attempt.ok(),
        hash: attempt.hash,
        problems: attempt.problems.into_iter().map(Problem::from).collect(),
    }
}

async fn readyz(State(ctx): State<Arc<AdminState>>) -> Response {
    readyz_answer(readiness(&ctx))
}

/// `/readyz`'s answer: 200 when ready, else 503, with the readiness as the body.
fn readyz_answer(body: api::Readiness) -> Response {
    let code = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn metrics(State(ctx): State<Arc<AdminState>>) -> Response {
    let rt = ctx.shared.load();
    crate::control::export_mode(rt.mode_at(ctx.clock.now_ms()).mode);
    let set = ctx.keys.current();
    if let Some(at) = set.fetched_at_ms {
        metrics::gauge!(crate::telemetry::names::JWKS_AGE).set((ctx.clock.now_ms() - at) as f64 / 1000.0);
    }
    let body = crate::telemetry::render_metrics();
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn mode_json(ctx: &AdminState) -> api::ModeView {
    let rt = ctx.shared.load();
    let now = ctx.clock.now_ms();
    let m = rt.mode_at(now);
    api::ModeView {
        mode: m.mode,
        source: m.source,
        reason: m.reason.clone(),
        actor: m.actor.clone(),
        since: rfc3339(m.since_ms),
        expires_at: m.expires_at_ms.map(rfc3339),
        seconds_left: m.expires_at_ms.map(|at| ((at - now).max(0) + 999) / 1000),
        file_mode: rt.file_mode.mode,
    }
}

async fn status(State(ctx): State<Arc<AdminState>>) -> Response {
    Json(status_view(&ctx)).into_response()
}

/// `/status`'s body, also what the console shows.
fn status_view(ctx: &AdminState) -> api::Status {
    let rt = ctx.shared.load_full();
    let now = ctx.clock.now_ms();
    let clerk = &rt.config.clerk;
    let set = ctx.keys.current();
    let fetch = ctx.keys.status();
    let revocations = ctx.revocations.current();
    let (sessions, users, issued_before) = revocations.counts();
    api::Status {
        version: env!("CARGO_PKG_VERSION").into(),
        ready: readiness(ctx).ready,
        mode: mode_json(ctx),
        config: api::ConfigView {
            path: rt.config.origin.path.as_ref().map(|p| p.display().to_string()),
            loaded_at: humantime::format_rfc3339_seconds(rt.config.origin.loaded_at).to_string(),
            hash: rt.config.origin.hash.clone(),
            upstream: rt.config.upstream.url_text.clone(),
        },
        last_reload: ctx.report.last_reload().map(reload_view),
        state: state_view(ctx),
        keys: api::KeysView {
            source: clerk.jwks.as_ref().map(|j| j.url.clone()),
            networkless_key: clerk.jwt_key.is_some(),
            origin: set.origin,
            kids: set.kids(),
            fetched_at: set.fetched_at_ms.map(rfc3339),
            age_seconds: set.fetched_at_ms.map(|at| (now - at) / 1000),
            stale: clerk.jwks.is_some() && !set.usable(now, clerk.keys.max_stale),
            last_attempt: fetch.last_attempt_ms.map(rfc3339),
            last_error: fetch.last_error,
            secret_key_rejected: fetch.config_problem,
            fetches: fetch.fetches,
        },
        revocations: api::RevocationCounts {
            sessions,
            users,
            issued_before: revocations.issued_before_ms.map(rfc3339),
            issued_before_active: issued_before,
        },
        counters: api::Counters { since: Some(rfc3339(ctx.started_at_ms)), ..ctx.gate.outcome_counts().into() },
        fleet: ctx.store.fleet(),
        webhooks: webhooks_view(ctx, &rt.config, now),
    }
}

/// `webhooks` in `/status`: the journal's facts, with the ages by the gateway's clock.
fn webhooks_view(ctx: &AdminState, config: &crate::config::Config, now: i64) -> api::WebhooksView {
    let facts = ctx.webhooks.as_ref().map(|j| j.facts()).unwrap_or_default();
    let quiet_since = facts.last_verified_ms.unwrap_or(ctx.started_at_ms);
    api::WebhooksView {
        route: config.routes.rules().iter().any(|r| r.webhook),
        events: facts.events,
        delivered: facts.delivered,
        pending_replay: facts.pending_replay,
        duplicates: facts.duplicates,
        last_verified_at: facts.last_verified_ms.map(rfc3339),
        quiet_seconds: (now - quiet_since).max(0) / 1000,
        gap_window_seconds: config.clerk.webhook_gap_window.as_secs(),
        signature_failures: facts.refused,
        first_failure_at: facts.first_refused_ms.map(rfc3339),
        failing_seconds: facts.first_refused_ms.map(|at| (now - at).max(0) / 1000),
        last_failure_at: facts.last_refused_ms.map(rfc3339),
    }
}

async fn get_mode(State(ctx): State<Arc<AdminState>>) -> Response {
    Json(mode_json(&ctx)).into_response()
}

async fn put_mode(
    State(ctx): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    body: Result<Json<ModeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()),
    };
    let mode: Mode = match req.mode.parse() {
        Ok(m) => m,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("mode {e}")),
    };
    let ttl: Option<Duration> = match req.ttl.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("ttl: {e}")),
    };
    match ctx.control.set_mode(mode, req.reason, ttl, actor.0).await {
        Ok(_) => Json(mode_json(&ctx)).into_response(),
        Err(e) => control_error(e),
    }
}

async fn reload(State(ctx): State<Arc<AdminState>>, Extension(actor): Extension<AdminActor>) -> Response {
    match ctx.control.reload(actor.0).await {
        Ok(o) => {
            Json(api::Reloaded { hash: o.hash, changed: o.changed, restart_needed: o.restart_needed }).into_response()
        }
        Err(e) => control_error(e),
    }
}

async fn keys_refresh(State(ctx): State<Arc<AdminState>>) -> Response {
    match ctx.keys.refresh(Trigger::Admin).await {
        Ok(kids) => Json(api::KeysLoaded { kids }).into_response(),
        Err(FetchError::NoSource) => {
            error(StatusCode::CONFLICT, "no_source", "no JWKS source is configured (networkless key only)")
        }
        Err(FetchError::SecretKeyInvalid(m)) => error(StatusCode::BAD_GATEWAY, "secret_key_invalid", m),
        Err(FetchError::Unavailable(m)) => error(StatusCode::BAD_GATEWAY, "jwks_unavailable", m),
        Err(FetchError::Install(e @ InstallError::NotRecorded(_))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
        }
        Err(FetchError::Install(e @ InstallError::SourceChanged)) => {
            error(StatusCode::CONFLICT, "source_changed", e.to_string())
        }
        Err(FetchError::Install(InstallError::Closed)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the gateway is shutting down")
        }
    }
}

fn revocations_json(list: &crate::revocation::RevocationList) -> api::Revocations {
    api::Revocations {
        sessions: list.sessions.clone(),
        users: list.users.clone(),
        issued_before: list.issued_before_ms.map(rfc3339),
    }
}

async fn list_revocations(State(ctx): State<Arc<AdminState>>) -> Response {
    Json(revocations_json(&ctx.revocations.current())).into_response()
}

/// Parses `now` or an RFC 3339 time into ms since the epoch.
pub fn parse_moment(text: &str, now_ms: i64) -> Result<i64, String> {
    if text == "now" {
        return Ok(now_ms);
    }
    let (stamp, offset_ms) = split_offset(text);
    humantime::parse_rfc3339_weak(&stamp)
        .map(|t| crate::clock::system_ms(t).saturating_sub(offset_ms))
        .map_err(|e| format!("{text:?} is not \"now\" or an RFC 3339 time ({e})"))
}

/// An RFC 3339 time with a numeric offset (`+01:00`, as `date -Iseconds` prints) as the same
/// time in UTC without the offset, and the offset in ms; humantime reads only `Z`.
fn split_offset(text: &str) -> (String, i64) {
    let b = text.as_bytes();
    // The offset follows at least a full date and time: `2026-01-01T00:00:00+01:00`.
    if b.len() >= 25 && b.is_ascii() && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        let digits = [b.len() - 5, b.len() - 4, b.len() - 2, b.len() - 1];
        if digits.iter().all(|&i| b[i].is_ascii_digit()) {
            let n = |i: usize| i64::from(b[i] - b'0');
            let minutes = (n(digits[0]) * 10 + n(digits[1])) * 60 + n(digits[2]) * 10 + n(digits[3]);
            let sign = if b[b.len() - 6] == b'+' { 1 } else { -1 };
            return (format!("{}Z", &text[..b.len() - 6]), sign * minutes * 60_000);
        }
    }
    (text.to_string(), 0)
}

async fn add_revocation(
    State(ctx): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    body: Result<Json<RevokeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()),
    };
    let what = match (req.session_id, req.user_id, req.issued_before) {
        (Some(s), None, None) => Revocation::Session(s),
        (None, Some(u), None) => Revocation::User(u),
        (None, None, Some(t)) => match parse_moment(&t, ctx.clock.now_ms()) {
            Ok(ms) => Revocation::IssuedBefore(ms),
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e),
        },
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "give exactly one of session_id, user_id, issued_before",
            )
        }
    };
    match ctx.control.revoke(what, req.reason, actor.0).await {
        Ok(list) => Json(revocations_json(&list)).into_response(),
        Err(e) => control_error(e),
    }
}

async fn remove_revocation(
    State(ctx): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    Path(id): Path<String>,
) -> Response {
    match ctx.control.unrevoke(id, actor.0).await {
        Ok(list) => Json(revocations_json(&list)).into_response(),
        Err(e) => control_error(e),
    }
}

/// `GET /audit?since=`: an RFC 3339 time (or `now`), or a duration back from now (`1h`, `30m`).
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    parse_time("since", text, now_ms)
}

/// A moment as the CLI and `GET /audit` take it: an RFC 3339 time (or `now`), or a duration
/// back from now (`1h`, `30m`). The error names `key`.
pub fn parse_time(key: &str, text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(back) = humantime::parse_duration(text) {
        return Ok(now_ms.saturating_sub(i64::try_from(back.as_millis()).unwrap_or(i64::MAX)));
    }
    parse_moment(text, now_ms).map_err(|_| {
        format!(
            "{key}: {text:?} is neither a duration back from now (1h, 30m) nor an RFC 3339 time (2026-01-01T00:00:00Z)"
        )
    })
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    since: Option<String>,
}

async fn audit(State(ctx): State<Arc<AdminState>>, Query(q): Query<AuditQuery>) -> Response {
    let since = match q.since.as_deref().map(|s| parse_since(s, ctx.clock.now_ms())) {
        None => i64::MIN,
        Some(Ok(ms)) => ms,
        Some(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e),
    };
    match ctx.store.read_audit(since).await {
        Ok(lines) => Json(api::AuditLog { events: lines.records, skipped: lines.skipped }).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
    }
}

/// `GET /fleet`: every gateway of the fleet (the Redis backend), as `clerkgate fleet status`.
async fn fleet(State(ctx): State<Arc<AdminState>>) -> Response {
    match ctx.store.fleet_status().await {
        Ok(Some(status)) => Json(status).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no_fleet",
            "this gateway uses the file backend: it is a fleet of one (GET /status shows it)",
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "fleet_unreachable", e.to_string()),
    }
}

async fn record_audit(
    State(ctx): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    body: Result<Json<api::RunbookRecord>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(record) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()),
    };
    // Only a runbook command's own actions: the rest are the gateway's, written by the change
    // they record.
    if !record.action.is_runbook_record() {
        let message = format!("{} is the gateway's own record, not a runbook command's", record.action);
        return control_error(ControlError::Invalid(message));
    }
    match ctx.control.note(record.action, record.after, record.reason, actor.0).await {
        Ok(()) => Json(json!({"recorded": record.action.as_str()})).into_response(),
        Err(e) => control_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_duration_back_from_now() {
        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let cases = [
            ("1h", Ok(now - 3_600_000)),
            ("30m", Ok(now - 1_800_000)),
            ("1h 30m", Ok(now - 5_400_000)),
            ("2026-01-01T00:00:00Z", Ok(now)),
            ("2026-01-01T01:00:00+01:00", Ok(now)),
            ("2025-12-31T19:30:00-04:30", Ok(now)),
            ("2026-01-01T00:00:00+00:00", Ok(now)),
            ("now", Ok(now)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_since(text, now), expected, "{text}");
        }
        let e = parse_since("yesterday", now).unwrap_err();
        assert_eq!(
            e,
            "since: \"yesterday\" is neither a duration back from now (1h, 30m) nor an RFC 3339 time (2026-01-01T00:00:00Z)"
        );
    }
}
