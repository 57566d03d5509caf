//! Every response the gateway writes itself is built here, and only here, so they all carry
//! the same JSON body and headers (SPEC §3): `{"error","reason","message"}`,
//! `X-Clerk-Auth-Status`, `X-Clerk-Auth-Reason`, and `WWW-Authenticate` / `Retry-After`
//! where they apply. Whose fault it was decides the status: the client's (400/401/403/405), the
//! keys' (503), or the upstream's (502/504).

use axum::body::Body;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::headers::names;
use crate::reason::{Failure, Reason};

/// How many seconds a 503 `jwks-unavailable` asks the client to wait.
pub const RETRY_AFTER_SECONDS: &str = "5";

fn error_word(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        _ => "error",
    }
}

fn json_response(status: StatusCode, reason: &str, message: &str, auth_status: &'static str) -> Response<Body> {
    let body = serde_json::json!({ "error": error_word(status), "reason": reason, "message": message });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(names::AUTH_STATUS, HeaderValue::from_static(auth_status));
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(names::AUTH_REASON, v);
    }
    resp
}

/// The answer to a refused request. `token_presented` picks the RFC 6750 form of
/// `WWW-Authenticate`: `error="invalid_token"` only when there was a token to be invalid.
pub fn refusal(failure: &Failure, token_presented: bool) -> Response<Body> {
    let status = failure.reason.status();
    let mut resp = json_response(status, failure.reason.as_str(), &failure.message, "signed-out");
    let h = resp.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        let v = if token_presented {
            HeaderValue::from_static("Bearer realm=\"clerkgate\", error=\"invalid_token\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"clerkgate\"")
        };
        h.insert(WWW_AUTHENTICATE, v);
    }
    if failure.reason == Reason::JwksUnavailable {
        h.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    resp
}

/// Why the upstream hop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFault {
    /// The connection was refused or could not be made.
    Connect,
    /// The connection broke before a response head arrived.
    Broken,
    /// No response head within `response_timeout`.
    Timeout,
    /// A `101` that switched to a protocol the gateway did not ask for, or to a request that
    /// asked for no allowed upgrade: never spliced (it could smuggle h2c past the gateway).
    UnexpectedUpgrade,
}

impl UpstreamFault {
    /// The reason string and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFault::Connect => "upstream-unreachable",
            UpstreamFault::Broken => "upstream-broken",
            UpstreamFault::Timeout => "upstream-timeout",
            UpstreamFault::UnexpectedUpgrade => "upstream-unexpected-upgrade",
        }
    }
}

/// Why the client's own request failed after the gateway accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The request body broke off or was malformed (a bad chunk, too short, reset).
    MalformedBody,
    /// The client paused longer than `server.request_body_timeout` inside its body.
    BodyTimeout,
}

impl ClientFault {
    /// The reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientFault::MalformedBody => "invalid-request-body",
            ClientFault::BodyTimeout => "request-body-timeout",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ClientFault::MalformedBody => "malformed",
            ClientFault::BodyTimeout => "timeout",
        }
    }
}

/// The answer when the client's request body failed: 400, or 408 for a stall. The connection
/// is closed after it: the body's remaining bytes cannot be trusted to frame the next request.
pub fn client_failure(fault: ClientFault, auth_status: &'static str) -> Response<Body> {
    let (status, message) = match fault {
        ClientFault::MalformedBody => (
            StatusCode::BAD_REQUEST,
            "The request body was malformed or ended early (a bad chunk, or fewer bytes than declared).",
        ),
        ClientFault::BodyTimeout => {
            (StatusCode::REQUEST_TIMEOUT, "The request body stalled longer than server.request_body_timeout.")
        }
    };
    let mut resp = json_response(status, fault.as_str(), message, auth_status);
    resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The answer when the upstream fails: 502, or 504 for a timeout.
pub fn upstream_failure(fault: UpstreamFault, auth_status: &'static str) -> Response<Body> {
    let (status, message) = match fault {
        UpstreamFault::Connect => {
            (StatusCode::BAD_GATEWAY, "The upstream refused the connection or could not be reached.")
        }
        UpstreamFault::Broken => (StatusCode::BAD_GATEWAY, "The upstream closed the connection before answering."),
        UpstreamFault::Timeout => {
            (StatusCode::GATEWAY_TIMEOUT, "The upstream sent no response head within response_timeout.")
        }
        UpstreamFault::UnexpectedUpgrade => (
            StatusCode::BAD_GATEWAY,
            "The upstream switched protocols to something the gateway did not ask for; it is not passed on.",
        ),
    };
    json_response(status, fault.as_str(), message, auth_status)
}

/// The raw HTTP/1.1 answer written to a connection refused at accept, before any request was
/// read: `503`, reason `too-many-connections`, the usual JSON body, then close.
pub fn connection_refusal(message: &str) -> Vec<u8> {
    let reason = "too-many-connections";
    let body = serde_json::json!({ "error": error_word(StatusCode::SERVICE_UNAVAILABLE), "reason": reason, "message": message })
        .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
         retry-after: 1\r\nx-clerk-auth-reason: {reason}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
