//! The two Backend API calls of Clerk's browser flow, the only network the request path awaits
//! besides the unknown-kid key refetch (clerk-semantics §4.4, §4.6):
//!
//! - `GET {api_url}/v1/clients/handshake_payload?nonce=…` resolves a nonce-format handshake
//!   into its `Set-Cookie` directives;
//! - `POST {api_url}/v1/sessions/{sid}/refresh` trades an expired session token and the
//!   `__refresh_<suffix>` cookie for fresh cookies.
//!
//! The decision describes a call as a [`BackendCall`] (pure data); the auth layer runs it here,
//! bounded as a whole by `clerk.keys.fetch_timeout`, and hands the [`CallOutcome`] back to the
//! decision. The layer never runs one in bypass mode: the decision asks for none there. Every
//! failure is an outcome, never an error: a handshake payload that cannot be had is no
//! directives, a refresh that fails says why in Clerk's words — so a Backend API outage ends in
//! Clerk's signed-out answer, never a hang.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use serde_json::Value;

use super::public_url::form_encode;
use crate::config::ClerkConfig;
use crate::keys::CLERK_API_VERSION;
use crate::telemetry::names as metric;

/// Largest Backend API answer read; a handshake payload or refresh answer is a few KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One Backend API call the decision needs before it can decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendCall {
    /// Resolve a handshake nonce into its directives.
    HandshakePayload {
        /// The nonce, as the request carried it.
        nonce: String,
    },
    /// Refresh an expired session.
    Refresh {
        /// The expired token's `sid`.
        session_id: String,
        /// `?suffixed_cookies=true` (sent only when true, as Clerk's SDK does).
        suffixed: bool,
        /// The JSON body: `format`, `expired_token`, `refresh_token`, `request_origin`,
        /// `request_headers`.
        body: Value,
    },
}

impl BackendCall {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            BackendCall::HandshakePayload { .. } => "handshake_payload",
            BackendCall::Refresh { .. } => "refresh",
        }
    }
}

/// What a call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The handshake payload's directives; `Err` says why there are none (logged; Clerk's SDK
    /// swallows every failure into zero directives).
    HandshakePayload(Result<Vec<String>, String>),
    /// The refresh's cookies (possibly none); `Err` is Clerk's refresh-failure reason
    /// (`fetch-error`, `unexpected-bapi-error`, or the Backend API's error code).
    Refresh(Result<Vec<String>, String>),
}

/// What earlier passes of one request learned: a key refetch happened, a Backend API call was
/// answered. The decision runs again with them until it decides.
#[derive(Debug, Clone, Default)]
pub struct Resumed {
    /// A key refetch for this request's unknown `kid` has happened: the `kid` is final.
    pub refetched: bool,
    /// The handshake payload, once fetched.
    pub handshake_payload: Option<Result<Vec<String>, String>>,
    /// The refresh, once answered.
    pub refresh: Option<Result<Vec<String>, String>>,
}

impl Resumed {
    /// Nothing learned yet: the first pass.
    pub fn first() -> Self {
        Resumed::default()
    }

    /// Whether `call` was already answered (a decision that asks again has a bug).
    pub fn answered(&self, call: &BackendCall) -> bool {
        match call {
            BackendCall::HandshakePayload { .. } => self.handshake_payload.is_some(),
            BackendCall::Refresh { .. } => self.refresh.is_some(),
        }
    }

    /// Records an outcome.
    pub fn record(&mut self, outcome: CallOutcome) {
        match outcome {
            CallOutcome::HandshakePayload(r) => self.handshake_payload = Some(r),
            CallOutcome::Refresh(r) => self.refresh = Some(r),
        }
    }
}

/// The Backend API client of the request path (one connection pool for the process).
#[derive(Debug, Clone)]
pub struct BackendApi {
    client: reqwest::Client,
}

impl Default for BackendApi {
    fn default() -> Self {
        BackendApi::new()
    }
}

impl BackendApi {
    /// A client that follows no redirects (a 3xx is an answer, not a place to send the secret).
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("clerkgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        BackendApi { client }
    }

    /// Runs `call` against `clerk.api_url` with the secret key, all of it within
    /// `clerk.keys.fetch_timeout`. Without a secret key the decision never asks.
    pub async fn run(&self, call: &BackendCall, clerk: &ClerkConfig) -> CallOutcome {
        let timeout = clerk.keys.fetch_timeout;
        let answer = match tokio::time::timeout(timeout, self.send(call, clerk)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(timeout))),
        };
        let result = match &answer {
            Ok(a) if a.status < 300 => "ok",
            Ok(_) => "error",
            Err(_) => "unreachable",
        };
        metrics::counter!(metric::BACKEND_API_CALLS, "call" => call.label(), "result" => result).increment(1);
        if let Err(why) = &answer {
            tracing::warn!(call = call.label(), api_url = %clerk.api_url, error = %why, "Backend API call failed");
        }
        match call {
            BackendCall::HandshakePayload { .. } => CallOutcome::HandshakePayload(payload_directives(answer)),
            BackendCall::Refresh { .. } => CallOutcome::Refresh(refresh_cookies(answer)),
        }
    }

    async fn send(&self, call: &BackendCall, clerk: &ClerkConfig) -> Result<Answer, String> {
        let api = &clerk.api_url;
        let request = match call {
            BackendCall::HandshakePayload { nonce } => {
                self.client.get(format!("{api}/v1/clients/handshake_payload?nonce={}", form_encode(nonce)))
            }
            BackendCall::Refresh { session_id: sid, suffixed, body } => {
                // The decision asks only for a sid of letters, digits, `_` and `-`.
                let query = if *suffixed { "?suffixed_cookies=true" } else { "" };
                self.client.post(format!("{api}/v1/sessions/{sid}/refresh{query}")).body(body.to_string())
            }
        };
        let mut request = request
            .header("Clerk-API-Version", CLERK_API_VERSION)
            .header(CONTENT_TYPE, "application/json")
            .timeout(clerk.keys.fetch_timeout.max(Duration::from_millis(1)));
        if let Some(secret) = &clerk.secret_key {
            request = request.bearer_auth(secret.expose());
        }
        let mut resp = request.send().await.map_err(|e| format!("cannot reach the Backend API: {e}"))?;
        let status = resp.status().as_u16();
        // Clerk's SDK reads a body as JSON only when the content type is exactly this.
        let json = resp.headers().get(CONTENT_TYPE).is_some_and(|v| v == "application/json");
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading the Backend API's answer: {e}"))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!("the Backend API answered more than {MAX_ANSWER_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let body = if json && status != 204 { serde_json::from_slice(&body).ok() } else { None };
        Ok(Answer { status, body })
    }
}

/// An answer: its status and, when it was JSON, its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, when its content type was `application/json` and it parsed.
    pub body: Option<Value>,
}

/// The directives of a handshake payload (`{"directives": [...]}`), or why there are none.
pub fn payload_directives(answer: Result<Answer, String>) -> Result<Vec<String>, String> {
    let answer = answer?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("the Backend API answered {}", answer.status));
    }
    strings(answer.body.as_ref().and_then(|b| b.get("directives")))
        .ok_or_else(|| "the handshake payload has no list of directives".to_string())
}

/// The cookies of a refresh answer (`{"object":"cookies","cookies":[...]}`), or Clerk's reason
/// for the failure (`RefreshTokenErrorReason`, or the Backend API's error code).
pub fn refresh_cookies(answer: Result<Answer, String>) -> Result<Vec<String>, String> {
    let Ok(answer) = answer else {
        return Err("fetch-error".into());
    };
    if answer.status == 204 {
        // The SDK reads `cookies` of an empty answer and throws.
        return Err("unexpected-bapi-error".into());
    }
    if (200..300).contains(&answer.status) {
        // No cookies (or no JSON) is an empty list, which the decision reports as Clerk does.
        return Ok(strings(answer.body.as_ref().and_then(|b| b.get("cookies"))).unwrap_or_default());
    }
    let first = answer.body.as_ref().and_then(|b| b.get("errors")).and_then(Value::as_array).and_then(|e| e.first());
    let Some(first) = first else {
        return Err("unexpected-bapi-error".into());
    };
    match first.get("code").and_then(Value::as_str) {
        Some("unexpected_error") => Err("fetch-error".into()),
        // The code goes into a header and a URL: kept only when it looks like one.
        Some(code)
            if !code.is_empty()
                && code.len() <= 128
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Err(code.to_string())
        }
        _ => Err("unexpected-sdk-error".into()),
    }
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array()?.iter().map(|d| d.as_str().map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(status: u16, body: Option<Value>) -> Result<Answer, String> {
        Ok(Answer { status, body })
    }

    #[test]
    fn refresh_answers_become_clerks_reasons() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = |s: &str| Err::<Vec<String>, String>(s.into());
        type Row = (Result<Answer, String>, Result<Vec<String>, String>);
        let cases: Vec<Row> = vec![
            (
                answer(200, Some(json!({"object":"cookies","cookies":["__session_x=t; Path=/"]}))),
                ok(&["__session_x=t; Path=/"]),
            ),
            (answer(200, Some(json!({"cookies":[]}))), ok(&[])),
            (answer(200, None), ok(&[])),
            (answer(204, None), err("unexpected-bapi-error")),
            (Err("connection refused".into()), err("fetch-error")),
            (answer(500, None), err("unexpected-bapi-error")),
            (answer(400, Some(json!({"errors":[]}))), err("unexpected-bapi-error")),
            (answer(502, Some(json!({"errors":[{"code":"unexpected_error"}]}))), err("fetch-error")),
            (answer(404, Some(json!({"errors":[{"code":"session_not_found"}]}))), err("session_not_found")),
            (answer(400, Some(json!({"errors":[{"message":"no code"}]}))), err("unexpected-sdk-error")),
            (answer(400, Some(json!({"errors":[{"code":"bad\r\ncode"}]}))), err("unexpected-sdk-error")),
        ];
        for (input, want) in cases {
            assert_eq!(refresh_cookies(input.clone()), want, "{input:?}");
        }
    }

    #[test]
    fn handshake_payload_answers() {
        assert_eq!(
            payload_directives(answer(200, Some(json!({"directives":["a=1", "b=2"]})))),
            Ok(vec!["a=1".to_string(), "b=2".to_string()])
        );
        for bad in [
            answer(200, Some(json!({"directives":"a=1"}))),
            answer(200, Some(json!({"directives":[1]}))),
            answer(200, None),
            answer(500, Some(json!({"directives":["a=1"]}))),
            Err("timeout".into()),
        ] {
            assert!(payload_directives(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
