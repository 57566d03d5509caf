//! A stand-in for Clerk's Backend API on 127.0.0.1:0, shaped as clerk-ops §1–§3 describe it:
//! `GET /v1/jwks`, `GET /v1/users` (a bare array; `limit` ≤ 500, `offset`, `order_by`,
//! `starting_after` — or 422 when the cursor is switched off), `GET /v1/users/count`,
//! `GET /v1/sessions` (`user_id` required; `{data,total_count}` with `paginated=true`, else a
//! bare array), `GET /v1/sessions/{id}`, `POST /v1/sessions/{id}/revoke` (200 with the session,
//! 404 `resource_not_found`). A wrong bearer gets 401 `clerk_key_invalid`; faults are injected
//! on demand: a 429 with `Retry-After` every n-th budgeted request, 5xx, slow answers, silence.
//! It counts every revocation per session, so a test can prove "exactly once".

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use serde_json::{json, Value};

/// A fault the stand-in injects.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers normally.
    None,
    /// Every request is answered with this 5xx.
    Status(u16),
    /// Every answer waits this long first.
    Slow(Duration),
}

/// One session of the stand-in.
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// Its user.
    pub user_id: String,
    /// Its status.
    pub status: String,
    /// Unix ms.
    pub created_at: i64,
}

#[derive(Default)]
struct State {
    key: String,
    /// Users in creation order: (id, created_at).
    users: Vec<(String, i64)>,
    sessions: BTreeMap<String, StoredSession>,
    /// Revocations of a live session, per session.
    revoked: HashMap<String, u32>,
    /// Revoke calls on a session that was no longer live.
    revoked_again: HashMap<String, u32>,
    cursor: bool,
    every_429: u64,
    retry_after: String,
    budgeted: u64,
    answered_429: u64,
    fault: Option<Fault>,
    revoke_delay: Duration,
    requests: u64,
    last_headers: Vec<(String, String)>,
    jwks: Value,
    /// Seconds added to the `Date` header of every answer (a Clerk whose clock, or ours, is off).
    date_offset_s: Option<i64>,
}

/// The stand-in.
#[derive(Clone)]
pub struct Bapi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// Clerk's error envelope (clerk-ops §3).
fn clerk_error(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = json!({
        "errors": [{"code": code, "message": message, "long_message": message}],
        "clerk_trace_id": format!("trace_{status}_{code}"),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("clerk-trace-id", format!("hdr_{status}"))
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn ok(v: Value) -> Response<Body> {
    Response::builder().header("content-type", "application/json").body(Body::from(v.to_string())).expect("response")
}

fn session_json(id: &str, s: &StoredSession) -> Value {
    json!({"object": "session", "id": id, "user_id": s.user_id, "client_id": "client_1", "status": s.status,
           "created_at": s.created_at, "updated_at": s.created_at, "expire_at": s.created_at + 604_800_000})
}

impl Bapi {
    /// Starts a stand-in for the instance whose secret key is `key`, serving `jwks` at
    /// `/v1/jwks`, with `users` users; user `i` has the sessions `sessions(i)` makes (statuses).
    pub async fn start(key: &str, jwks: Value, users: usize, sessions: impl Fn(usize) -> Vec<&'static str>) -> Bapi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Backend API stand-in");
        let addr = listener.local_addr().expect("addr");
        let mut state = State { key: key.into(), cursor: true, retry_after: "1".into(), jwks, ..State::default() };
        let base = 1_700_000_000_000i64;
        for i in 0..users {
            let id = format!("user_{i:06}");
            state.users.push((id.clone(), base + i as i64 * 1000));
            for (j, status) in sessions(i).into_iter().enumerate() {
                let s = StoredSession {
                    user_id: id.clone(),
                    status: status.into(),
                    created_at: base + i as i64 * 1000 + j as i64,
                };
                state.sessions.insert(format!("sess_{i:06}_{j}"), s);
            }
        }
        let bapi = Bapi { addr, state: Arc::new(Mutex::new(state)) };
        serve(listener, bapi.state.clone());
        bapi
    }

    /// `http://127.0.0.1:port`, for `clerk.api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers a 429 (`Retry-After: retry_after`) to every `n`-th budgeted request (0: never).
    pub fn rate_limit_every(&self, n: u64, retry_after: &str) {
        let mut s = self.state.lock().unwrap();
        s.every_429 = n;
        s.retry_after = retry_after.into();
    }

    /// Serves `jwks` at `/v1/jwks` from now on (a signing key rotated at Clerk).
    pub fn set_jwks(&self, jwks: Value) {
        self.state.lock().unwrap().jwks = jwks;
    }

    /// Sends a `Date` header `seconds` away from the host's clock on every answer.
    pub fn shift_date(&self, seconds: i64) {
        self.state.lock().unwrap().date_offset_s = Some(seconds);
    }

    /// Refuses `starting_after` with 422, as an API without the cursor would.
    pub fn without_cursor(&self) {
        self.state.lock().unwrap().cursor = false;
    }

    /// Injects `fault` on every request.
    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = Some(fault);
    }

    /// Makes every revoke take this long.
    pub fn revoke_delay(&self, d: Duration) {
        self.state.lock().unwrap().revoke_delay = d;
    }

    /// Revocations of a live session, per session.
    pub fn revoked(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// Revoke calls on sessions already ended.
    pub fn revoked_again(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().revoked_again.clone()
    }

    /// The sessions that were live at the start, i.e. that must each be revoked once.
    pub fn sessions(&self) -> BTreeMap<String, StoredSession> {
        self.state.lock().unwrap().sessions.clone()
    }

    /// 429s answered.
    pub fn answered_429(&self) -> u64 {
        self.state.lock().unwrap().answered_429
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// The headers of the last request.
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().last_headers.clone()
    }

    /// Adds a live session for an existing user (a sign-in during a run).
    pub fn sign_in(&self, user_index: usize, id: &str, created_at: i64) {
        let mut s = self.state.lock().unwrap();
        let user_id = s.users[user_index].0.clone();
        s.sessions.insert(id.into(), StoredSession { user_id, status: "active".into(), created_at });
    }
}

/// One accept loop, HTTP/1.1 and HTTP/2 (the shape of `support::serve`).
fn serve(listener: tokio::net::TcpListener, state: Arc<Mutex<State>>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    let decode = |t: &str| percent_encoding::percent_decode_str(&t.replace('+', " ")).decode_utf8_lossy().into_owned();
    let q = req.uri().query().unwrap_or_default();
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// The answer, with the `Date` header shifted when a test asked for it (hyper adds the true
/// one otherwise).
async fn answer(state: &Mutex<State>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let mut resp = answer_request(state, req).await;
    if let Some(offset) = state.lock().unwrap().date_offset_s {
        let (now, shift) = (std::time::SystemTime::now(), Duration::from_secs(offset.unsigned_abs()));
        let at = if offset >= 0 { now.checked_add(shift) } else { now.checked_sub(shift) };
        if let Some(value) = at.and_then(|t| httpdate::fmt_http_date(t).parse().ok()) {
            resp.headers_mut().insert(http::header::DATE, value);
        }
    }
    resp
}

async fn answer_request(state: &Mutex<State>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let q = query(&req);
    let (fault, delay) = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        s.last_headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let delay = if path.ends_with("/revoke") { s.revoke_delay } else { Duration::ZERO };
        (s.fault.clone(), delay)
    };
    match fault {
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Status(code)) => return clerk_error(code, "internal_clerk_error", "Oops, something went wrong"),
        _ => {}
    }
    tokio::time::sleep(delay).await;
    let bearer =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let mut s = state.lock().unwrap();
    if bearer != Some(s.key.as_str()) {
        return clerk_error(401, "clerk_key_invalid", "The provided Clerk Secret Key is invalid.");
    }
    if req.headers().get("clerk-api-version").is_none() {
        return clerk_error(400, "api_version_invalid", "no Clerk-API-Version");
    }
    if path != "/v1/jwks" {
        s.budgeted += 1;
        if s.every_429 > 0 && s.budgeted.is_multiple_of(s.every_429) {
            s.answered_429 += 1;
            let mut r = clerk_error(429, "too_many_requests", "Too many requests, retry later");
            r.headers_mut().insert("retry-after", s.retry_after.parse().expect("header"));
            return r;
        }
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["v1", "jwks"]) => ok(s.jwks.clone()),
        ("GET", ["v1", "users", "count"]) => ok(json!({"object": "total_count", "total_count": s.users.len()})),
        ("GET", ["v1", "users"]) => {
            let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
            let limit = if limit > 500 { 10 } else { limit };
            if q.get("order_by").map(String::as_str) != Some("+created_at") {
                return clerk_error(422, "form_param_value_invalid", "this stand-in pages only by +created_at");
            }
            let start = match (q.get("starting_after"), q.get("offset")) {
                (Some(_), _) if !s.cursor => {
                    return clerk_error(422, "form_param_unknown", "starting_after is not a valid parameter")
                }
                (Some(after), _) => match s.users.iter().position(|(id, _)| id == after) {
                    Some(i) => i + 1,
                    None => return clerk_error(422, "form_param_value_invalid", "no such user for starting_after"),
                },
                (None, Some(offset)) => offset.parse().unwrap_or(0),
                (None, None) => 0,
            };
            let page: Vec<Value> = s
                .users
                .iter()
                .skip(start)
                .take(limit)
                .map(|(id, at)| json!({"object": "user", "id": id, "created_at": at, "banned": false}))
                .collect();
            ok(Value::Array(page))
        }
        ("GET", ["v1", "sessions"]) => {
            let Some(user) = q.get("user_id") else {
                return clerk_error(
                    400,
                    "missing_query_parameter",
                    "Either of the following query parameters must be provided",
                );
            };
            let all: Vec<Value> = s
                .sessions
                .iter()
                .rev()
                .filter(|(_, x)| &x.user_id == user)
                .map(|(id, x)| session_json(id, x))
                .collect();
            let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10).min(500);
            let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            if q.get("paginated").map(String::as_str) == Some("true") {
                ok(json!({"data": page, "total_count": all.len()}))
            } else {
                ok(Value::Array(page))
            }
        }
        ("GET", ["v1", "sessions", id]) => match s.sessions.get(*id) {
            Some(x) => ok(session_json(id, x)),
            None => clerk_error(404, "resource_not_found", &format!("No session was found with id {id}")),
        },
        ("POST", ["v1", "sessions", id, "revoke"]) => {
            let id = id.to_string();
            let Some(x) = s.sessions.get(&id).cloned() else {
                return clerk_error(404, "resource_not_found", &format!("No session was found with id {id}"));
            };
            if matches!(x.status.as_str(), "active" | "pending") {
                *s.revoked.entry(id.clone()).or_default() += 1;
            } else {
                *s.revoked_again.entry(id.clone()).or_default() += 1;
            }
            let revoked = StoredSession { status: "revoked".into(), ..x };
            let body = session_json(&id, &revoked);
            s.sessions.insert(id, revoked);
            ok(body)
        }
        _ => clerk_error(404, "resource_not_found", "no such endpoint in the stand-in"),
    }
}
