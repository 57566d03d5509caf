//! The on-call console, `GET /console` on the admin listener: one page that shows the gateway's
//! state and flips it with a confirmation.
//!
//! | Route | Auth | |
//! | --- | --- | --- |
//! | `GET /console` | Host and Origin checks | the page: a login form, the controls (hidden), the script |
//! | `GET /console/state?kind=` | token | the state as an HTML fragment, rendered and escaped here |
//! | `POST /console` | token in the form, same-origin proof | the page with the state in it, read-only (scripts off) |
//! | `GET /console/app.js`, `/console/app.css` | Host and Origin checks | the assets, embedded in the binary |
//!
//! The admin token lives in the tab (`sessionStorage`), so the page itself cannot need it: a
//! navigation carries no `Authorization` header. The page is therefore an empty shell, and the
//! script fetches the state with the token as a bearer header, then uses the existing JSON
//! endpoints (`PUT /mode`, `POST /revocations`) for changes. The state comes back as HTML
//! rendered here, not JSON assembled in the browser, so that one renderer (escaping every
//! value, `html::Html`) serves both the script and a browser with scripts off: the login form
//! posts the token to `POST /console`, which answers the same state inside the page.
//!
//! Cross-site requests: a bearer token in a header is never sent by a browser on its own, the
//! guard refuses a foreign `Origin` or `Sec-Fetch-Site: cross-site` on every console route,
//! and `POST /console` further needs proof that it came from this origin (`Origin` or
//! `Sec-Fetch-Site: same-origin`, which browsers send on every form post). Every console
//! response carries [`CSP`] and the other headers of `secure`.

pub mod html;
mod render;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::{error, guard, AdminState};
use render::{Shell, View, KINDS};

/// The page's Content-Security-Policy: its own script and style only, nothing inline, no other
/// origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// How far back the timeline reads, and how many events it shows at most.
const TIMELINE_SPAN: Duration = Duration::from_secs(24 * 3600);
const TIMELINE_MAX: usize = 200;

/// How long the state waits for the fleet's gateways from Redis before it shows without them.
const FLEET_WAIT: Duration = Duration::from_millis(1500);

/// The console's routes, each behind the Host and Origin checks and with the security headers.
pub fn router(ctx: Arc<AdminState>) -> Router<Arc<AdminState>> {
    let with_token = Router::new()
        .route("/console/state", get(state))
        .route("/console/triage", post(run_triage))
        .layer(middleware::from_fn_with_state(ctx, guard::guard));
    Router::new()
        .route("/console", get(shell).post(read_only))
        .route("/console/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/console/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route(
            "/console/{*rest}",
            axum::routing::any(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such console page") }),
        )
        .merge(with_token)
        .layer(middleware::from_fn(same_site))
        .layer(middleware::map_response(secure))
}

/// The security headers, on every console response (errors included).
async fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// The guard's Host and Origin checks, for the routes that need no token.
async fn same_site(req: Request, next: Next) -> Response {
    match guard::same_site(req.headers()) {
        Ok(_) => next.run(req).await,
        Err(refused) => refused.answer(),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn shell() -> Response {
    html(render::page(Shell::Login, None))
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    kind: Option<String>,
}

async fn state(State(ctx): State<Arc<AdminState>>, Query(q): Query<StateQuery>) -> Response {
    let kind = q.kind.filter(|k| KINDS.contains(&k.as_str()));
    html(render::state(&view(&ctx, kind).await).into_string())
}

/// `POST /console/triage`: runs triage now (recorded as `triage.run`, so the next state shows
/// it) and answers its report.
async fn run_triage(State(ctx): State<Arc<AdminState>>) -> Response {
    let Some(runner) = ctx.triage.get().cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_triage",
            "this gateway was not started by `clerkgate run`, which brings triage: run `clerkgate triage` beside it",
        );
    };
    match (runner.0)().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "triage_failed", e),
    }
}

/// `POST /console` from the login form with scripts off: the token from the form body, then the
/// page with the state in it. It changes nothing, but it is still refused without proof that
/// the form is this origin's own.
async fn read_only(State(ctx): State<Arc<AdminState>>, headers: HeaderMap, body: Bytes) -> Response {
    let same_origin = headers.contains_key(header::ORIGIN)
        || headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin"));
    if !same_origin {
        return error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a console form post must come from the console's own page (Origin or Sec-Fetch-Site: same-origin)",
        );
    }
    let token = form_field(&body, "token").unwrap_or_default();
    if let Err(refused) = guard::check_token(&ctx, &token) {
        return refused.answer();
    }
    let view = view(&ctx, None).await;
    let mode = view.status.mode.mode;
    html(render::page(Shell::Static(render::state(&view)), Some(mode)))
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            let spaced = value.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
        })
    })
}

/// What the state fragment shows, read now.
async fn view(ctx: &AdminState, kind: Option<String>) -> View {
    let status = super::status_view(ctx);
    let now = ctx.clock.now_ms();
    let max_stale_seconds = {
        let rt = ctx.shared.load();
        let clerk = &rt.config.clerk;
        clerk.jwks.is_some().then(|| i64::try_from(clerk.keys.max_stale.as_secs()).unwrap_or(i64::MAX))
    };
    let since = now.saturating_sub(crate::clock::duration_ms(TIMELINE_SPAN));
    let (records, audit_problem) = match ctx.store.read_audit(since).await {
        Ok(lines) => (lines.records, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let triage = records.iter().rev().find(|r| r.action == crate::store::Action::TriageRun.as_str()).cloned();
    let members = match status.fleet {
        None => None,
        Some(_) => Some(match tokio::time::timeout(FLEET_WAIT, ctx.store.fleet_status()).await {
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) => Err("this store has no fleet".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("Redis did not answer within {} ms", FLEET_WAIT.as_millis())),
        }),
    };
    let timeline_total = records.len();
    let timeline = records
        .into_iter()
        .rev()
        .filter(|r| kind.as_deref().is_none_or(|k| render::kind_of(&r.action) == k))
        .take(TIMELINE_MAX)
        .collect();
    View {
        status,
        max_stale_seconds,
        minutes: ctx.shared.outcomes.window(now),
        timeline,
        timeline_total,
        kind,
        triage,
        revocations: super::revocations_json(&ctx.revocations.current()),
        audit_problem,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_a_form_body() {
        let cases: [(&[u8], Option<&str>); 5] = [
            (b"token=abc", Some("abc")),
            (b"a=1&token=a%2Bb+c%26d", Some("a+b c&d")),
            (b"tokens=x", None),
            (b"", None),
            (b"\xff\xfe", None),
        ];
        for (body, expected) in cases {
            assert_eq!(form_field(body, "token").as_deref(), expected, "{body:?}");
        }
    }
}
