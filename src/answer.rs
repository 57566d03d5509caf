//! The gateway's own answers, as values (linkerd2-proxy's `SyntheticHttpResponse`).
//!
//! Every response the gateway writes itself — an auth refusal, the 405 for `CONNECT`/`TRACE`,
//! the proxy's 400/408/502/504, the 503 to a connection over a limit — is an [`Answer`] built
//! by a constructor here (or, for auth refusals, by [`crate::auth::Failure::answer`]) and
//! rendered by [`Answer::into_response`] or [`Answer::to_http1`], so they all carry the same
//! JSON body and headers (SPEC §3): `{"error","message","reason"}`, `Cache-Control: no-store`,
//! `X-Clerk-Auth-Status`, `X-Clerk-Auth-Reason`, for auth refusals `X-Clerk-Auth-Message` (as
//! Clerk's SDK sets them), and whatever the constructor adds (`WWW-Authenticate`, `Retry-After`,
//! `Location`, several `Set-Cookie`).
//!
//! Each answer says whose [`Fault`] it is (pingora's `ErrorSource`). The fault is the `fault`
//! label of [`metric::ANSWERS`] and decides the log level: a client's fault is logged at DEBUG
//! (a flood of bad tokens must not flood the log), anyone else's at WARN, at most once a second
//! per fault with the number of lines held back.

use std::borrow::Cow;

use axum::body::Body;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::headers::names;
use crate::reason::{Failure, Reason};
use crate::telemetry::{names as metric, Throttle};

/// Whose fault it is that the gateway answers instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client's request: no valid token, a missing role, a malformed head or body, a
    /// refused method, too many connections from one address.
    Client,
    /// The upstream: unreachable, broken, too slow, or switching protocols unasked.
    Upstream,
    /// Clerk's side: no usable signing keys (the JWKS has not answered, or too long ago).
    Clerk,
    /// The gateway's own: out of connections, or a state it should never reach.
    Gateway,
}

impl Fault {
    /// The `fault` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Clerk => "clerk",
            Fault::Gateway => "gateway",
        }
    }

    /// Holds back WARN lines for one fault to one a second.
    fn throttle(self) -> &'static Throttle {
        static CLIENT: Throttle = Throttle::per_second();
        static UPSTREAM: Throttle = Throttle::per_second();
        static CLERK: Throttle = Throttle::per_second();
        static GATEWAY: Throttle = Throttle::per_second();
        match self {
            Fault::Client => &CLIENT,
            Fault::Upstream => &UPSTREAM,
            Fault::Clerk => &CLERK,
            Fault::Gateway => &GATEWAY,
        }
    }
}

/// The body of every answer that has one. Fields in this order, so the bytes are those of a
/// sorted JSON object.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
    reason: &'a str,
}

/// A response the gateway gives itself.
#[derive(Debug)]
#[must_use = "an answer does nothing until it is rendered"]
pub struct Answer {
    status: StatusCode,
    fault: Fault,
    /// The reason's label: the metric label and the counter key.
    reason: &'static str,
    /// The reason as sent, when it says more than the label (Clerk's
    /// `session-token-expired-refresh-…`); `None` sends the label.
    wire_reason: Option<Cow<'static, str>>,
    /// False for a signed-in redirect, which carries no reason (as Clerk's signed-in state).
    reason_header: bool,
    /// Also send the message as `X-Clerk-Auth-Message` (auth states, as Clerk's SDK does).
    message_header: bool,
    message: Cow<'static, str>,
    /// `X-Clerk-Auth-Status`; `None` where no request was read.
    auth_status: Option<&'static str>,
    /// Added after the standard headers, in order; a name may repeat (`Set-Cookie`).
    extra: Vec<(HeaderName, HeaderValue)>,
    /// False for a redirect, whose body is empty.
    json_body: bool,
    /// Logged at WARN (at most once a second) with the answer, whatever its fault.
    note: Option<&'static str>,
}

impl Answer {
    /// An answer with the JSON body, `X-Clerk-Auth-Status: signed-out` and nothing else added.
    pub fn new(fault: Fault, status: StatusCode, reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Answer {
            status,
            fault,
            reason,
            wire_reason: None,
            reason_header: true,
            message_header: false,
            message: message.into(),
            auth_status: Some("signed-out"),
            extra: Vec::new(),
            json_body: true,
            note: None,
        }
    }

    /// A `307` to `location` with `Cache-Control: no-store` (a cached redirect loops) and an
    /// empty body, as Clerk's middleware answers a handshake.
    pub fn redirect(reason: &'static str, location: HeaderValue) -> Self {
        let mut a = Answer::new(Fault::Client, StatusCode::TEMPORARY_REDIRECT, reason, "");
        a.json_body = false;
        a.with_header(LOCATION, location)
    }

    /// Sends `wire` as the reason instead of the label (Clerk's reasons with a detail).
    pub fn with_wire_reason(mut self, wire: Cow<'static, str>) -> Self {
        if wire != self.reason {
            self.wire_reason = Some(wire);
        }
        self
    }

    /// Also sends a non-empty message as `X-Clerk-Auth-Message` (where a header can carry it).
    pub fn with_message_header(mut self) -> Self {
        self.message_header = true;
        self
    }

    /// Adds a note the gateway logs at WARN with the answer (a misconfiguration, say).
    pub fn with_note(mut self, note: Option<&'static str>) -> Self {
        self.note = note;
        self
    }

    /// Sends no `X-Clerk-Auth-Reason`: a signed-in state has none.
    pub fn without_reason_header(mut self) -> Self {
        self.reason_header = false;
        self
    }

    /// The answer when the upstream hop fails: 502, or 504 for a timeout.
    pub fn upstream(fault: UpstreamFault) -> Self {
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
        Answer::new(Fault::Upstream, status, fault.as_str(), message)
    }

    /// The answer when the client's request body failed: 400, or 408 for a stall. The
    /// connection is closed after it: the body's remaining bytes cannot be trusted to frame the
    /// next request.
    pub fn client_body(fault: ClientFault) -> Self {
        let (status, message) = match fault {
            ClientFault::MalformedBody => (
                StatusCode::BAD_REQUEST,
                "The request body was malformed or ended early (a bad chunk, or fewer bytes than declared).",
            ),
            ClientFault::BodyTimeout => {
                (StatusCode::REQUEST_TIMEOUT, "The request body stalled longer than server.request_body_timeout.")
            }
        };
        Answer::new(Fault::Client, status, fault.as_str(), message).closing()
    }

    /// The `503 too-many-connections` for a connection refused at accept, before any request
    /// was read: no `X-Clerk-Auth-Status`, `Retry-After: 1`, then close. Over the per-client
    /// limit it is the client's fault; over the total, the gateway's.
    pub fn too_many_connections(fault: Fault, message: &'static str) -> Self {
        let mut a = Answer::new(fault, StatusCode::SERVICE_UNAVAILABLE, "too-many-connections", message)
            .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
            .closing();
        a.auth_status = None;
        a
    }

    /// `200` for a verified webhook whose `svix-id` was delivered already (or is being
    /// delivered): Svix stops retrying it, and the upstream receives it once.
    pub fn webhook_duplicate(svix_id: &str, state: &str) -> Self {
        let message =
            format!("The webhook {svix_id} was received before ({state}); it is not delivered to the upstream again.");
        Answer::new(Fault::Client, StatusCode::OK, "webhook-duplicate", message)
    }

    /// `503` with `Retry-After` for a verified webhook the gateway could not journal: it is not
    /// forwarded either, so nothing is delivered that the journal lacks; Svix tries again.
    pub fn webhook_not_journalled(why: String) -> Self {
        let message = format!("{why}; the webhook was not forwarded, and Svix will deliver it again");
        Answer::new(Fault::Gateway, StatusCode::SERVICE_UNAVAILABLE, "webhook-journal-unavailable", message)
            .with_header(RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// Replaces the message (a constructor's default says what; this says which and where).
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets `X-Clerk-Auth-Status` (the proxy's answers report the request's auth status).
    pub fn with_auth_status(mut self, status: &'static str) -> Self {
        self.auth_status = Some(status);
        self
    }

    /// Adds a header after the standard ones; a repeated name adds another line.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra.push((name, value));
        self
    }

    /// Adds one `Set-Cookie` line.
    pub fn with_cookie(self, cookie: HeaderValue) -> Self {
        self.with_header(SET_COOKIE, cookie)
    }

    /// Adds `Connection: close`.
    pub fn closing(self) -> Self {
        self.with_header(CONNECTION, HeaderValue::from_static("close"))
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// The reason's label (metrics, counters); the wire reason may add a detail.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The reason as sent (`X-Clerk-Auth-Reason`, the body's `reason`).
    pub fn wire_reason(&self) -> &str {
        self.wire_reason.as_deref().unwrap_or(self.reason)
    }

    /// The message for the operator reading the body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Every header, in the order they are written, and the body.
    fn render(&self) -> (HeaderMap, Vec<u8>) {
        self.record();
        let mut h = HeaderMap::with_capacity(5 + self.extra.len());
        let reason = self.wire_reason();
        let body = if self.json_body {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = ErrorBody { error: error_word(self.status), message: &self.message, reason };
            serde_json::to_vec(&body).unwrap_or_default()
        } else {
            Vec::new()
        };
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(s) = self.auth_status {
            h.insert(names::AUTH_STATUS, HeaderValue::from_static(s));
        }
        if self.reason_header {
            if let Ok(v) = HeaderValue::from_str(reason) {
                h.insert(names::AUTH_REASON, v);
            }
        }
        // Clerk's SDK drops a message header that is not a valid header value; so does this.
        if self.message_header && !self.message.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.message) {
                h.insert(names::AUTH_MESSAGE, v);
            }
        }
        for (name, value) in &self.extra {
            h.append(name, value.clone());
        }
        (h, body)
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let (headers, body) = self.render();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = headers;
        resp
    }

    /// The whole HTTP/1.1 response as bytes, for a connection the gateway answers before
    /// handing it to the HTTP stack.
    pub fn to_http1(&self) -> Vec<u8> {
        let (headers, body) = self.render();
        let mut out = Vec::with_capacity(256 + body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Counts the answer and logs it at its fault's level.
    fn record(&self) {
        metrics::counter!(metric::ANSWERS, "fault" => self.fault.as_str(), "reason" => self.reason).increment(1);
        let (status, reason, message) = (self.status.as_u16(), self.wire_reason(), &*self.message);
        if let Some(note) = self.note {
            static NOTES: Throttle = Throttle::per_second();
            if let Some(held_back) = NOTES.admit() {
                tracing::warn!(status, reason, held_back, "{note}");
            }
        }
        if self.fault == Fault::Client {
            tracing::debug!(status, reason, message, "answered: the client's request");
        } else if let Some(held_back) = self.fault.throttle().admit() {
            let fault = self.fault.as_str();
            tracing::warn!(fault, status, reason, message, held_back, "answered instead of the upstream");
        }
    }
}

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
        StatusCode::TEMPORARY_REDIRECT => "redirect",
        StatusCode::INTERNAL_SERVER_ERROR => "internal_server_error",
        StatusCode::OK => "none",
        _ => "error",
    }
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

/// How many seconds a 503 `jwks-unavailable` asks the client to wait.
pub const RETRY_AFTER_SECONDS: &str = "5";

impl Reason {
    /// Whose fault a refusal for this reason is: Clerk's when no usable key is loaded, the
    /// client's otherwise.
    pub fn fault(self) -> Fault {
        match self {
            Reason::JwksUnavailable => Fault::Clerk,
            // The instance's keys do not match the handshake: the gateway's configuration.
            Reason::HandshakeFailed => Fault::Gateway,
            _ => Fault::Client,
        }
    }
}

impl Failure {
    /// The gateway's answer to a request refused for this failure. `token_presented` picks the
    /// RFC 6750 form of `WWW-Authenticate` on a 401: `error="invalid_token"` only when there
    /// was a token to be invalid.
    pub fn answer(self, token_presented: bool) -> Answer {
        let reason = self.reason;
        let status = reason.status();
        let wire = self.wire_reason();
        let answer = Answer::new(reason.fault(), status, reason.as_str(), self.message)
            .with_wire_reason(wire)
            .with_message_header();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if token_presented {
                HeaderValue::from_static("Bearer realm=\"clerkgate\", error=\"invalid_token\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"clerkgate\"")
            };
            return answer.with_header(WWW_AUTHENTICATE, challenge);
        }
        if reason == Reason::JwksUnavailable {
            return answer.with_header(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Answer) -> String {
        String::from_utf8(a.to_http1()).unwrap()
    }

    #[test]
    fn the_body_is_the_sorted_json_object_of_spec_3() {
        let a = Answer::new(Fault::Client, StatusCode::UNAUTHORIZED, "token-expired", "JWT is expired.");
        let t = text(&a);
        assert!(t.ends_with(r#"{"error":"unauthorized","message":"JWT is expired.","reason":"token-expired"}"#), "{t}");
        assert!(t.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{t}");
        for line in [
            "content-type: application/json",
            "cache-control: no-store",
            "x-clerk-auth-status: signed-out",
            "x-clerk-auth-reason: token-expired",
        ] {
            assert!(t.contains(&format!("{line}\r\n")), "{line} missing:\n{t}");
        }
    }

    #[test]
    fn a_redirect_carries_its_location_and_every_cookie_and_no_body() {
        let a = Answer::redirect("session-token-expired", HeaderValue::from_static("https://clerk.example.com/v1/x"))
            .with_auth_status("handshake")
            .with_cookie(HeaderValue::from_static("__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2"))
            .with_cookie(HeaderValue::from_static("__session=; Max-Age=0"));
        let resp = a.into_response();
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        let h = resp.headers();
        assert_eq!(h[LOCATION], "https://clerk.example.com/v1/x");
        assert_eq!(h[CACHE_CONTROL], "no-store");
        assert_eq!(h[names::AUTH_STATUS], "handshake");
        assert_eq!(h.get_all(SET_COOKIE).iter().count(), 2);
        assert!(h.get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn the_connection_refusal_is_a_whole_http1_response_without_auth_status() {
        let t = text(&Answer::too_many_connections(Fault::Client, "try again"));
        assert!(t.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{t}");
        assert!(!t.contains("x-clerk-auth-status"), "{t}");
        for line in ["retry-after: 1", "connection: close", "x-clerk-auth-reason: too-many-connections"] {
            assert!(t.contains(&format!("{line}\r\n")), "{line} missing:\n{t}");
        }
        let (head, body) = t.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{t}");
    }

    #[test]
    fn the_status_follows_the_fault_of_each_hop() {
        assert_eq!(Answer::upstream(UpstreamFault::Timeout).status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(Answer::upstream(UpstreamFault::Connect).fault(), Fault::Upstream);
        let a = Answer::client_body(ClientFault::MalformedBody);
        assert_eq!((a.status(), a.fault()), (StatusCode::BAD_REQUEST, Fault::Client));
        assert_eq!(Answer::client_body(ClientFault::BodyTimeout).status(), StatusCode::REQUEST_TIMEOUT);
    }
}
