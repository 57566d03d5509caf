//! The admin guard: DNS-rebinding defence, then the bearer token.
//!
//! A browser tricked into talking to `127.0.0.1:9901` through a DNS name the attacker controls
//! sends that name as `Host`, and its own page as `Origin`. So a guarded endpoint accepts only a
//! `Host` that is an IP literal or `localhost`, and refuses any `Origin` that is not the same
//! host, and any `Sec-Fetch-Site: cross-site`. Then the token: compared as SHA-256 digests in
//! constant time, so neither its content nor its length leaks through timing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::{error, AdminState};
use crate::control::Actor;

/// Who made an admin call, for the audit log: `admin:` plus the first 8 hex characters of the
/// token's SHA-256, so the log says which token without containing it.
#[derive(Debug, Clone)]
pub struct AdminActor(pub Actor);

fn sha256(b: &[u8]) -> aws_lc_rs::digest::Digest {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
}

/// The token id written to the audit log.
pub fn token_id(token: &str) -> String {
    let d = sha256(token.as_bytes());
    format!("admin:{}", d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The host part of a `Host` header value or an origin's authority, without port or brackets.
fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => authority,
    }
}

/// True for a host that no DNS rebinding can produce: an IP literal or `localhost`.
pub fn host_allowed(host_header: &str) -> bool {
    let host = host_only(host_header.trim());
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// True when `origin` is same-host with `host_header` (`null` and foreign origins are refused).
pub fn origin_allowed(origin: &str, host_header: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    rest.trim_end_matches('/').eq_ignore_ascii_case(host_header.trim())
}

/// Why the guard refused a request; [`Refusal::answer`] is what the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` is not an IP literal or `localhost`.
    ForeignHost,
    /// A foreign `Origin`, or `Sec-Fetch-Site: cross-site`.
    CrossOrigin,
    /// No admin token is configured.
    NoAdminToken,
    /// The token is missing or wrong.
    Unauthorized,
}

impl Refusal {
    /// The answer: 403, or 401 with `WWW-Authenticate`.
    pub fn answer(self) -> Response {
        match self {
            Refusal::ForeignHost => error(
                StatusCode::FORBIDDEN,
                "foreign_host",
                "the Host must be an IP address or localhost (DNS rebinding defence)",
            ),
            Refusal::CrossOrigin => {
                error(StatusCode::FORBIDDEN, "cross_origin", "cross-site requests to the admin API are refused")
            }
            Refusal::NoAdminToken => error(
                StatusCode::FORBIDDEN,
                "no_admin_token",
                "no admin token is configured (admin.token, admin.token_file or CLERKGATE_ADMIN_TOKEN)",
            ),
            Refusal::Unauthorized => {
                let mut resp =
                    error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid admin bearer token is required");
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"clerkgate-admin\""));
                resp
            }
        }
    }
}

/// The DNS-rebinding and cross-site checks, without the token: `Ok` with the `Host`, or why
/// not. The console's pages that need no token go through this alone.
pub fn same_site(headers: &http::HeaderMap) -> Result<String, Refusal> {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
    if !host_allowed(&host) {
        return Err(Refusal::ForeignHost);
    }
    if let Some(origin) = headers.get(ORIGIN) {
        if !origin.to_str().is_ok_and(|o| origin_allowed(o, &host)) {
            return Err(Refusal::CrossOrigin);
        }
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Err(Refusal::CrossOrigin);
    }
    Ok(host)
}

/// Checks a presented token against the configured one, in constant time: who it is, or why not.
pub fn check_token(ctx: &AdminState, presented: &str) -> Result<AdminActor, Refusal> {
    let rt = ctx.shared.load();
    let Some(expected) = rt.config.admin.token.clone() else {
        return Err(Refusal::NoAdminToken);
    };
    drop(rt);
    let matches = !presented.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(
            sha256(presented.as_bytes()).as_ref(),
            sha256(expected.expose().as_bytes()).as_ref(),
        )
        .is_ok();
    if !matches {
        return Err(Refusal::Unauthorized);
    }
    Ok(AdminActor(Actor::Admin(token_id(presented))))
}

/// The middleware.
pub async fn guard(State(ctx): State<Arc<AdminState>>, mut req: Request, next: Next) -> Response {
    if let Err(refused) = same_site(req.headers()) {
        return refused.answer();
    }
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
        .unwrap_or_default();
    match check_token(&ctx, &presented) {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err(refused) => refused.answer(),
    }
}
