//! A stand-in for Clerk on loopback: the Frontend API's handshake and a tiny sign-in page, and
//! the Backend API calls the gateway makes during a handshake or a refresh. The demo serves it
//! so a person can sign in with a browser and stay signed in past the token's lifetime; the
//! tests use it as the Clerk end of the browser flow and as the Backend API the gateway and
//! Clerk's own SDK both call (tests/it/oracle.rs). Never on the request path.
//!
//! Shaped as clerk-semantics §4.5–§4.6 and clerk-ops describe Clerk's side:
//!
//! | Endpoint | Answers |
//! | --- | --- |
//! | `GET /v1/client/handshake` | Clerk's handshake: reads `redirect_url`, `format`, `suffixed_cookies` and the `__client` cookie, makes the cookie directives (a fresh `__session` for a signed-in client, signed-out ones otherwise) and sends the browser back to `redirect_url` with them — `format=nonce`: a nonce the Backend API resolves; else a `__clerk_handshake` JWT signed with the instance key. A development instance gets the carrier as a query parameter, a production one as a cookie. |
//! | `GET /v1/clients/handshake_payload?nonce=…` | Backend API: `{"directives": […]}` for a nonce (needs `Authorization: Bearer <secret key>`). |
//! | `POST /v1/sessions/{sid}/refresh` | Backend API: `{"object":"cookies","cookies":[…]}` for a refresh token the stand-in knows, or Clerk's error body. |
//! | `GET /v1/jwks` | Backend API: the instance's JWKS. |
//! | `GET /sign-in?redirect_url=…`, `POST /sign-in` | A sign-in page: "sign in" as a demo user, get Clerk's cookies (`__client` on the stand-in's host, `__session`, `__client_uat`, and in development `__clerk_db_jwt`) and go back. |
//! | `GET /sign-out?redirect_url=…` | Forgets the client and clears the cookies. |
//!
//! Cookies are host-only on `127.0.0.1` and a browser sends them to every port of it, so the
//! stand-in on one port and the gateway on another share them as Clerk's Frontend API and the
//! app share the cookies of their common domain. Nonces stay valid until the stand-in stops: the
//! oracle replays one request through the SDK and the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::Router;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, Response, StatusCode, Uri};
use serde_json::{json, Value};

use super::mint::{SigningKey, TokenSpec};
use crate::clock::Clock;
use crate::config::{parse_publishable_key, PublishableKey};

/// The stand-in's own cookie: which signed-in client a browser is (Clerk keeps `__client` on
/// the Frontend API's domain).
const CLIENT_COOKIE: &str = "__client";
/// A year, as Clerk's long-lived cookies.
const YEAR_S: i64 = 365 * 24 * 3600;

/// How the handshake hands its cookie directives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFormat {
    /// Whatever the request's `format` asks: `nonce`, else the signed token.
    AsAsked,
    /// Always a nonce, resolved through `/v1/clients/handshake_payload`.
    Nonce,
    /// Always a `__clerk_handshake` JWT carrying the directives.
    Token,
}

/// What the refresh endpoint answers for one refresh token.
#[derive(Debug, Clone)]
pub enum RefreshAnswer {
    /// 200 with these `Set-Cookie` strings.
    Cookies(Vec<String>),
    /// This status with Clerk's error body carrying `code`.
    Error(u16, String),
}

/// How to run the stand-in.
#[derive(Debug)]
pub struct StandInOptions {
    /// The instance's publishable key: development or production, the Frontend API host
    /// (the tokens' `iss`) and the cookie suffix.
    pub publishable_key: String,
    /// The Backend API's secret key (`Authorization: Bearer …`).
    pub secret_key: String,
    /// Signs session and handshake tokens.
    pub key: SigningKey,
    /// The `kid` of those tokens.
    pub kid: String,
    /// The time its tokens are issued at.
    pub clock: Clock,
    /// A session token's lifetime (Clerk's: 60 s).
    pub session_ttl_s: i64,
    /// The `azp` of its session tokens (the app's origin), if any.
    pub azp: Option<String>,
    /// Where the sign-in page sends the browser when no `redirect_url` is given (also
    /// [`ClerkStandIn::set_after_sign_in`], once the app's address is known).
    pub after_sign_in: String,
    /// The handshake's answer format.
    pub handshake_format: HandshakeFormat,
}

impl StandInOptions {
    /// Options for `key` (signing as `kid`) on the instance of `publishable_key`, with Clerk's
    /// 60-second tokens on the system clock.
    pub fn new(publishable_key: &str, secret_key: &str, key: &SigningKey, kid: &str) -> Result<Self, String> {
        Ok(StandInOptions {
            publishable_key: publishable_key.to_string(),
            secret_key: secret_key.to_string(),
            key: SigningKey::from_pem(key.private_pem())?,
            kid: kid.to_string(),
            clock: Clock::system(),
            session_ttl_s: 60,
            azp: None,
            after_sign_in: "/".into(),
            handshake_format: HandshakeFormat::AsAsked,
        })
    }
}

/// One signed-in browser.
#[derive(Debug, Clone)]
struct ClientSession {
    user: String,
    session: String,
    /// `__client_uat`: when the client last changed (sign-in), Unix seconds.
    updated_at: i64,
    dev_browser: String,
}

struct Shared {
    options: StandInOptions,
    pk: PublishableKey,
    clients: Mutex<HashMap<String, ClientSession>>,
    nonces: Mutex<HashMap<String, Vec<String>>>,
    refresh: Mutex<HashMap<String, RefreshAnswer>>,
    calls: Mutex<Vec<String>>,
    after_sign_in: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running stand-in. Stops when dropped.
pub struct ClerkStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ClerkStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClerkStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for ClerkStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClerkStandIn {
    /// Binds `addr` and serves in a background task.
    pub async fn spawn(addr: SocketAddr, options: StandInOptions) -> Result<Self, String> {
        let pk = parse_publishable_key(&options.publishable_key)
            .map_err(|e| format!("the stand-in's publishable key {e}"))?;
        let shared = Arc::new(Shared {
            after_sign_in: Mutex::new(options.after_sign_in.clone()),
            options,
            pk,
            clients: Mutex::new(HashMap::new()),
            nonces: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("bind {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let router = Router::new()
            .route("/v1/client/handshake", get(handshake))
            .route("/v1/clients/handshake_payload", get(handshake_payload))
            .route("/v1/sessions/{sid}/refresh", post(refresh))
            .route("/v1/jwks", get(jwks))
            .route("/sign-in", get(sign_in_page).post(sign_in))
            .route("/sign-out", get(sign_out))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(ClerkStandIn { addr, shared, task })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`: the Frontend API (`clerk.frontend_api`) and the Backend API
    /// (`clerk.api_url`) both.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The sign-in page.
    pub fn sign_in_url(&self) -> String {
        format!("{}/sign-in", self.url())
    }

    /// The Frontend API host its publishable key names (its tokens' `iss`, without `https://`).
    pub fn frontend_api_host(&self) -> &str {
        &self.shared.pk.frontend_api
    }

    /// A fresh session token for `user` in `session`, issued now.
    pub fn session_token(&self, user: &str, session: &str) -> String {
        self.shared.session_token(user, session)
    }

    /// Signs a `__clerk_handshake` token carrying `directives`.
    pub fn handshake_token(&self, directives: &[String]) -> String {
        self.shared.handshake_token(directives)
    }

    /// Registers `directives` under a new nonce and returns it.
    pub fn nonce_for(&self, directives: Vec<String>) -> String {
        let nonce = format!("nonce_{}", random_hex(12));
        lock(&self.shared.nonces).insert(nonce.clone(), directives);
        nonce
    }

    /// Makes the refresh endpoint answer `answer` for `refresh_token`.
    pub fn on_refresh(&self, refresh_token: &str, answer: RefreshAnswer) {
        lock(&self.shared.refresh).insert(refresh_token.to_string(), answer);
    }

    /// Signs `user` in as a browser would through the page; returns the `__client` cookie value.
    pub fn sign_in_client(&self, user: &str) -> String {
        self.shared.new_client(user).0
    }

    /// Where the sign-in page sends the browser when no `redirect_url` is given.
    pub fn set_after_sign_in(&self, url: &str) {
        *lock(&self.shared.after_sign_in) = url.to_string();
    }

    /// Every Backend API call so far, as `METHOD /path?query` (as received).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.shared.calls).clone()
    }
}

impl Shared {
    fn development(&self) -> bool {
        !self.pk.production
    }

    fn now_s(&self) -> i64 {
        self.options.clock.now_ms().div_euclid(1000)
    }

    fn session_token(&self, user: &str, session: &str) -> String {
        let spec = TokenSpec {
            sub: user.to_string(),
            sid: session.to_string(),
            ttl_s: self.options.session_ttl_s,
            azp: self.options.azp.clone(),
            iss: Some(format!("https://{}", self.pk.frontend_api)),
            ..TokenSpec::default()
        };
        self.options.key.sign(Some(&self.options.kid), &spec.claims(self.now_s()))
    }

    fn handshake_token(&self, directives: &[String]) -> String {
        self.options.key.sign(Some(&self.options.kid), &json!({ "handshake": directives }))
    }

    fn new_client(&self, user: &str) -> (String, ClientSession) {
        let client = format!("client_{}", random_hex(12));
        let session = ClientSession {
            user: user.to_string(),
            session: format!("sess_{}", random_hex(12)),
            updated_at: self.now_s(),
            dev_browser: format!("dvb_{}", random_hex(12)),
        };
        lock(&self.clients).insert(client.clone(), session.clone());
        (client, session)
    }

    /// The cookie names this instance sets: un-suffixed, and suffixed when asked.
    fn names(&self, name: &str, suffixed: bool) -> Vec<String> {
        let mut names = vec![name.to_string()];
        if suffixed {
            names.push(format!("{name}_{}", self.pk.cookie_suffix));
        }
        names
    }

    /// Clerk's cookie directives for a browser: signed in as `session`, or signed out.
    fn directives(&self, session: Option<&ClientSession>, suffixed: bool) -> Vec<String> {
        let mut out = Vec::new();
        match session {
            Some(s) => {
                let token = self.session_token(&s.user, &s.session);
                for n in self.names("__session", suffixed) {
                    out.push(format!("{n}={token}; Path=/; SameSite=Lax"));
                }
                for n in self.names("__client_uat", suffixed) {
                    out.push(format!("{n}={}; Path=/; SameSite=Lax; Max-Age={YEAR_S}", s.updated_at));
                }
                if self.development() {
                    for n in self.names("__clerk_db_jwt", suffixed) {
                        out.push(format!("{n}={}; Path=/; SameSite=Lax; Max-Age={YEAR_S}", s.dev_browser));
                    }
                }
            }
            None => {
                for n in self.names("__session", suffixed) {
                    out.push(format!("{n}=; Path=/; SameSite=Lax; Max-Age=0"));
                }
                for n in self.names("__client_uat", suffixed) {
                    out.push(format!("{n}=0; Path=/; SameSite=Lax; Max-Age={YEAR_S}"));
                }
            }
        }
        out
    }

    fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {}", self.options.secret_key).as_str())
    }
}

type Q = Query<HashMap<String, String>>;

async fn handshake(State(s): State<Arc<Shared>>, Query(q): Q, headers: HeaderMap) -> Response<Body> {
    let Some(back) = q.get("redirect_url").and_then(|u| absolute_http_url(u)) else {
        return text(StatusCode::BAD_REQUEST, "redirect_url must be an absolute http(s) URL");
    };
    let client = cookie(&headers, CLIENT_COOKIE).and_then(|c| lock(&s.clients).get(&c).cloned());
    let suffixed = q.get("suffixed_cookies").is_some_and(|v| v == "true");
    let mut directives = s.directives(client.as_ref(), suffixed);
    let nonce = match s.options.handshake_format {
        HandshakeFormat::Nonce => true,
        HandshakeFormat::Token => false,
        HandshakeFormat::AsAsked => q.get("format").is_some_and(|f| f == "nonce"),
    };
    let (name, value) = if nonce {
        // The carrier cookie must not outlive the handshake it belongs to.
        directives.push("__clerk_handshake_nonce=; Path=/; Max-Age=0".into());
        let nonce = format!("nonce_{}", random_hex(12));
        lock(&s.nonces).insert(nonce.clone(), directives);
        ("__clerk_handshake_nonce", nonce)
    } else {
        directives.push("__clerk_handshake=; Path=/; Max-Age=0".into());
        ("__clerk_handshake", s.handshake_token(&directives))
    };
    let mut resp = Response::builder().status(StatusCode::TEMPORARY_REDIRECT).header(CACHE_CONTROL, "no-store");
    let location = if s.development() {
        with_query(&back, name, &value)
    } else {
        resp = resp.header(SET_COOKIE, format!("{name}={value}; Path=/; SameSite=Lax; Max-Age=60"));
        back
    };
    resp.header(LOCATION, location).body(Body::empty()).unwrap_or_default()
}

async fn handshake_payload(State(s): State<Arc<Shared>>, uri: Uri, Query(q): Q, headers: HeaderMap) -> Response<Body> {
    s.record(format!("GET {uri}"));
    if !s.authorised(&headers) {
        return clerk_error(401, "clerk_key_invalid", "The provided Clerk Secret Key is invalid.");
    }
    let directives = q.get("nonce").and_then(|n| lock(&s.nonces).get(n).cloned());
    match directives {
        Some(d) => json_response(StatusCode::OK, &json!({ "directives": d })),
        None => clerk_error(404, "resource_not_found", "No handshake payload was found for this nonce."),
    }
}

async fn refresh(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response<Body> {
    s.record(format!("POST {uri}"));
    if !s.authorised(&headers) {
        return clerk_error(401, "clerk_key_invalid", "The provided Clerk Secret Key is invalid.");
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = body.get("refresh_token").and_then(Value::as_str).unwrap_or_default();
    let answer = lock(&s.refresh).get(token).cloned();
    match answer {
        Some(RefreshAnswer::Cookies(cookies)) => {
            json_response(StatusCode::OK, &json!({ "object": "cookies", "cookies": cookies }))
        }
        Some(RefreshAnswer::Error(status, code)) => clerk_error(status, &code, "The refresh was refused."),
        None => clerk_error(422, "refresh_token_invalid", "The refresh token is not valid."),
    }
}

async fn jwks(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response<Body> {
    s.record(format!("GET {uri}"));
    if !s.authorised(&headers) {
        return clerk_error(401, "clerk_key_invalid", "The provided Clerk Secret Key is invalid.");
    }
    json_response(StatusCode::OK, &s.options.key.jwks(&s.options.kid))
}

async fn sign_in_page(State(s): State<Arc<Shared>>, Query(q): Q) -> Response<Body> {
    let back = q.get("redirect_url").cloned().unwrap_or_else(|| lock(&s.after_sign_in).clone());
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in — clerkgate demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.4rem}}</style></head>
<body>
<h1>Sign in</h1>
<p>A stand-in for Clerk's sign-in page ({instance} instance <code>{fapi}</code>). Session
tokens live {ttl} seconds; after that the gateway sends the browser through Clerk's handshake
here and back, and the page stays signed in.</p>
<form method="post" action="/sign-in">
<input type="hidden" name="redirect_url" value="{back}">
<label>User id <input name="user" value="user_2demo"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
"#,
        instance = if s.development() { "development" } else { "production" },
        fapi = crate::admin::console::html::escape(&s.pk.frontend_api),
        ttl = s.options.session_ttl_s,
        back = crate::admin::console::html::escape(&back),
    );
    Response::builder()
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::from(page))
        .unwrap_or_default()
}

async fn sign_in(State(s): State<Arc<Shared>>, body: Bytes) -> Response<Body> {
    let form = form_fields(&body);
    let user = form.get("user").filter(|u| valid_user(u)).cloned().unwrap_or_else(|| "user_2demo".into());
    let back = form
        .get("redirect_url")
        .filter(|u| u.starts_with('/') || absolute_http_url(u).is_some())
        .cloned()
        .unwrap_or_else(|| lock(&s.after_sign_in).clone());
    let (client, session) = s.new_client(&user);
    let mut resp = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, back)
        .header(CACHE_CONTROL, "no-store")
        .header(SET_COOKIE, format!("{CLIENT_COOKIE}={client}; Path=/; HttpOnly; SameSite=Lax; Max-Age={YEAR_S}"));
    for d in s.directives(Some(&session), true) {
        resp = resp.header(SET_COOKIE, d);
    }
    resp.body(Body::empty()).unwrap_or_default()
}

async fn sign_out(State(s): State<Arc<Shared>>, Query(q): Q, headers: HeaderMap) -> Response<Body> {
    if let Some(c) = cookie(&headers, CLIENT_COOKIE) {
        lock(&s.clients).remove(&c);
    }
    let back = q
        .get("redirect_url")
        .filter(|u| u.starts_with('/') || absolute_http_url(u).is_some())
        .cloned()
        .unwrap_or_else(|| lock(&s.after_sign_in).clone());
    let mut resp = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, back)
        .header(SET_COOKIE, format!("{CLIENT_COOKIE}=; Path=/; Max-Age=0"));
    for d in s.directives(None, true) {
        resp = resp.header(SET_COOKIE, d);
    }
    resp.body(Body::empty()).unwrap_or_default()
}

/// A user id the page accepts: Clerk-shaped, nothing a header or cookie could trip on.
fn valid_user(u: &str) -> bool {
    !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn absolute_http_url(u: &str) -> Option<String> {
    let uri: http::Uri = u.parse().ok()?;
    matches!(uri.scheme_str(), Some("http" | "https")).then(|| u.to_string()).filter(|_| uri.host().is_some())
}

/// `url` with `name=value` appended to its query (before any fragment).
fn with_query(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    const QUERY_VALUE: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.').remove(b'~');
    let value = percent_encoding::utf8_percent_encode(value, QUERY_VALUE);
    let mut out = format!("{base}{sep}{name}={value}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The first value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// An `application/x-www-form-urlencoded` body.
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // A failed read of the system's randomness leaves zeros: a stand-in for tests and demos,
    // where a predictable id costs nothing.
    let _ = aws_lc_rs::rand::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with exactly `application/json`, the only content type Clerk's SDK parses as JSON.
fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// Clerk's Backend API error body.
fn clerk_error(status: u16, code: &str, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &json!({ "errors": [{ "code": code, "message": message, "long_message": message }] }))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder().status(status).header(CONTENT_TYPE, "text/plain").body(Body::from(body)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_go_before_the_fragment() {
        assert_eq!(with_query("http://a/p", "n", "v 1"), "http://a/p?n=v%201");
        assert_eq!(with_query("http://a/p?x=1#top", "n", "v"), "http://a/p?x=1&n=v#top");
    }

    #[test]
    fn form_bodies_decode_plus_and_percent() {
        let f = form_fields(b"user=user_2a&redirect_url=http%3A%2F%2F127.0.0.1%3A8080%2Fa+b");
        assert_eq!(f["user"], "user_2a");
        assert_eq!(f["redirect_url"], "http://127.0.0.1:8080/a b");
    }

    #[test]
    fn only_absolute_http_urls_are_followed_back() {
        assert!(absolute_http_url("http://127.0.0.1:1/x").is_some());
        assert!(absolute_http_url("/relative").is_none());
        assert!(absolute_http_url("javascript:alert(1)").is_none());
    }

    #[test]
    fn user_ids_are_clerk_shaped() {
        assert!(valid_user("user_2demo"));
        assert!(!valid_user(""));
        assert!(!valid_user("a;b"));
        assert!(!valid_user("a\r\nb"));
    }
}
