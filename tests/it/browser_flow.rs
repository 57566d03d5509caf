//! Issue #12 items 1–6 through real sockets: Clerk's browser flow at the gateway, with a
//! stand-in Backend API on loopback shaped as Clerk's (`/v1/clients/handshake_payload`,
//! `/v1/sessions/{sid}/refresh`, `/v1/jwks`), the echo upstream, and the in-process gateway.
//!
//! The instance is Clerk's test fixture (`clerk.inspired.puma-74.lcl.dev`), production unless a
//! test says development; tokens carry its `iss`, so the un-suffixed cookies are its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::{self, claims_at, gateway, now_s, sign, Reply, TestGateway};

const PK_LIVE: &str = "pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const PK_TEST: &str = "pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const SUFFIX_LIVE: &str = "MqCvchyS";
const FAPI: &str = "clerk.inspired.puma-74.lcl.dev";
const SECRET: &str = "sk_test_standin_secret";
const EXPIRED_REASON: &str = "session-token-expired-refresh-non-eligible-no-refresh-cookie";

// === The stand-in Backend API ===

/// What the stand-in answers to one of its two calls.
#[derive(Debug, Clone)]
enum Answer {
    /// 200 `application/json` with this body.
    Json(Value),
    /// This status and JSON body.
    Status(u16, Value),
    /// Accept the request and never answer.
    Hang,
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: String,
    body: Value,
}

struct Inner {
    payload: Mutex<Answer>,
    refresh: Mutex<Answer>,
    seen: Mutex<Vec<Seen>>,
}

/// A Backend API on 127.0.0.1 that answers `handshake_payload` and `refresh` as told and
/// `/v1/jwks` with the test key, and records every call.
#[derive(Clone)]
struct BackendApi {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl BackendApi {
    async fn start() -> BackendApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend api");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            payload: Mutex::new(Answer::Json(json!({"directives": []}))),
            refresh: Mutex::new(Answer::Status(404, json!({"errors": [{"code": "resource_not_found"}]}))),
            seen: Mutex::new(Vec::new()),
        });
        let api = BackendApi { addr, inner: inner.clone() };
        support::serve(listener, inner, |inner, req| async move { serve(&inner, req).await });
        api
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn payload(&self, a: Answer) {
        *self.inner.payload.lock().unwrap() = a;
    }

    fn refresh(&self, a: Answer) {
        *self.inner.refresh.lock().unwrap() = a;
    }

    /// The handshake and refresh calls received (the JWKS fetches left out).
    fn calls(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().iter().filter(|s| s.path != "/v1/jwks").cloned().collect()
    }
}

async fn serve(inner: &Inner, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let (head, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let seen = Seen {
        method: head.method.to_string(),
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or_default().to_string(),
        authorization: head.headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    inner.seen.lock().unwrap().push(seen.clone());
    let answer = match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/v1/jwks") => Answer::Json(support::key().jwks(support::KID)),
        ("GET", "/v1/clients/handshake_payload") => inner.payload.lock().unwrap().clone(),
        ("POST", p) if p.starts_with("/v1/sessions/") && p.ends_with("/refresh") => {
            inner.refresh.lock().unwrap().clone()
        }
        _ => Answer::Status(404, json!({"errors": [{"code": "resource_not_found"}]})),
    };
    let json = |status: u16, v: &Value| {
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap()
    };
    match answer {
        Answer::Json(v) => json(200, &v),
        Answer::Status(code, v) => json(code, &v),
        Answer::Hang => {
            std::future::pending::<()>().await;
            Response::new(Body::empty())
        }
    }
}

// === The gateway and its requests ===

/// A gateway for the fixture instance (`pk`), verifying with the test key, whose Backend API
/// is `api` (`fetch_timeout` 1 s), with `extra` sections.
async fn browser_gateway(pk: &str, api: &BackendApi, extra: &[(&str, &str)]) -> TestGateway {
    let mut b = gateway()
        .jwt_key()
        .clerk(&format!("publishable_key = \"{pk}\"\nsecret_key = \"{SECRET}\"\napi_url = \"{}\"", api.url()))
        .section("clerk.keys", "fetch_timeout = \"1s\"");
    for (h, body) in extra {
        b = b.section(h, body);
    }
    b.start().await
}

/// A client that never follows redirects, so each 307 is seen.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A page load (`Sec-Fetch-Dest: document`) with these cookies.
async fn page(gw: &TestGateway, path: &str, cookies: &str) -> Reply {
    send(gw, path, &[("sec-fetch-dest", "document"), ("accept", "text/html"), ("cookie", cookies)]).await
}

/// A fetch (`Sec-Fetch-Dest: empty`, JSON `Accept`) with these cookies.
async fn fetch(gw: &TestGateway, path: &str, cookies: &str) -> Reply {
    send(gw, path, &[("sec-fetch-dest", "empty"), ("accept", "application/json"), ("cookie", cookies)]).await
}

async fn send(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(gw.url(path)).timeout(Duration::from_secs(30));
    for (k, v) in headers {
        if !v.is_empty() {
            req = req.header(*k, *v);
        }
    }
    Reply::from(req.send().await.expect("the gateway answers")).await
}

/// A session token of the instance for `user_test`/`sess_test`, issued `age_s` ago.
fn session(age_s: i64) -> String {
    sign(&claims_at(now_s() - age_s, |c| {
        c.insert("iss".into(), format!("https://{FAPI}").into());
    }))
}

/// `__client_uat` a day old, and the session cookie.
fn cookies(token: &str) -> String {
    format!("__client_uat={}; __session={token}", now_s() - 86_400)
}

fn set_cookies(r: &Reply) -> Vec<&str> {
    r.headers.iter().filter(|(k, _)| k == "set-cookie").map(|(_, v)| v.as_str()).collect()
}

/// The query parameters of a URL, decoded as a form (`+` is a space), in order.
fn query_params(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn is_handshake(r: &Reply) -> bool {
    r.status == 307 && r.header("location").is_some_and(|l| l.contains("/v1/client/handshake?"))
}

// === The tests ===

/// Done-when: an expired cookie on an API call is still 401 with Clerk's reason; on a page load
/// it is a handshake (Clerk's parameters, `no-store`, the counter, the `x-clerk-auth-*`
/// headers); the loop guard stops a fourth redirect.
#[tokio::test]
async fn an_expired_cookie_is_401_on_an_api_call_and_a_handshake_on_a_page_load_until_the_loop_guard() {
    let api = BackendApi::start().await;
    let gw = browser_gateway(PK_LIVE, &api, &[]).await;
    let expired = session(600);

    let r = fetch(&gw, "/api/orders", &cookies(&expired)).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.reason(), Some(EXPIRED_REASON));
    assert_eq!(r.header("x-clerk-auth-status"), Some("signed-out"));
    assert!(r.header("x-clerk-auth-message").unwrap().starts_with("JWT is expired."), "{r:?}");
    assert_eq!(r.json()["reason"], EXPIRED_REASON);

    // A page load: a handshake, counted.
    let mut count = String::new();
    for n in 1..=3 {
        let jar = if count.is_empty() { cookies(&expired) } else { format!("{}; {count}", cookies(&expired)) };
        let r = page(&gw, "/dashboard?tab=2", &jar).await;
        assert!(is_handshake(&r), "redirect {n}: {r:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("x-clerk-auth-status"), Some("handshake"));
        assert_eq!(r.reason(), Some(EXPIRED_REASON));
        assert!(r.header("x-clerk-auth-message").unwrap().contains("(reason=token-expired, token-carrier=cookie)"));
        let counter = format!("__clerk_redirect_count={n}; SameSite=Lax; HttpOnly; Max-Age=2");
        assert_eq!(set_cookies(&r), [counter.as_str()]);
        count = format!("__clerk_redirect_count={n}");
        let loc = r.header("location").unwrap();
        assert!(loc.starts_with(&format!("https://{FAPI}/v1/client/handshake?")), "{loc}");
        let names: Vec<String> = query_params(loc).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            ["redirect_url", "__clerk_api_version", "suffixed_cookies", "__clerk_hs_reason", "format", "__session"]
        );
        let params = query_params(loc);
        assert_eq!(params[0].1, gw.url("/dashboard?tab=2"));
        assert_eq!(params[5].1, expired);
        assert!(r.body.is_empty(), "a redirect has no body: {r:?}");
    }
    // The fourth: the loop guard signs the visitor out for the same reason, so a protected
    // page goes to sign-in (not to the Frontend API) and a public one is served signed out.
    let looped = format!("{}; {count}", cookies(&expired));
    let r = page(&gw, "/dashboard", &looped).await;
    assert_eq!(r.status, 307, "{r:?}");
    assert!(!is_handshake(&r), "a fourth handshake: {r:?}");
    assert!(r.header("location").unwrap().starts_with("https://accounts.inspired.puma-74.lcl.dev/sign-in?"));
    assert_eq!(r.header("x-clerk-auth-status"), Some("signed-out"));
    assert_eq!(r.reason(), Some(EXPIRED_REASON));
    assert!(set_cookies(&r).is_empty(), "no counter after the guard: {r:?}");
    let r = page(&gw, "/public/page", &looped).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed().one("x-clerk-auth-status"), Some("signed-out"));
    assert!(api.calls().is_empty(), "no Backend API call without a nonce or refresh cookie: {:?}", api.calls());
    gw.stop().await;
}

/// An expired `Authorization` token on a page load is a handshake candidate too; on an API
/// call it keeps its 401 with the converted reason.
#[tokio::test]
async fn an_expired_header_token_on_a_page_load_is_a_handshake() {
    let api = BackendApi::start().await;
    let gw = browser_gateway(PK_LIVE, &api, &[]).await;
    let expired = session(600);
    let bearer = format!("Bearer {expired}");
    let r = send(&gw, "/x", &[("authorization", &bearer), ("sec-fetch-dest", "document")]).await;
    assert!(is_handshake(&r), "{r:?}");
    assert_eq!(query_params(r.header("location").unwrap())[5], ("__session".into(), expired.clone()));
    let r = send(&gw, "/x", &[("authorization", &bearer), ("accept", "application/json")]).await;
    assert_eq!((r.status, r.reason()), (401, Some(EXPIRED_REASON)), "{r:?}");
    // A valid header token needs no cookie at all.
    let bearer = format!("Bearer {}", session(5));
    let r = send(&gw, "/x", &[("authorization", &bearer), ("sec-fetch-dest", "document")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
    gw.stop().await;
}

/// The nonce format: the Backend API's directives become `Set-Cookie` on the upstream's
/// response, the request proceeds signed in (production), and the handshake's query
/// parameters never reach the upstream.
#[tokio::test]
async fn a_returning_nonce_handshake_sets_the_cookies_and_proceeds_signed_in() {
    let api = BackendApi::start().await;
    let fresh = session(0);
    let directives = vec![
        format!("__session={fresh}; Path=/; Secure; SameSite=Lax"),
        format!("__client_uat={}; Path=/; Domain=example.com; Max-Age=315360000; Secure; SameSite=Lax", now_s()),
        "__clerk_handshake_nonce=; Path=/; Max-Age=0".to_string(),
    ];
    api.payload(Answer::Json(json!({ "directives": directives })));
    let gw = browser_gateway(PK_LIVE, &api, &[]).await;
    let jar = format!("{}; __clerk_handshake_nonce=nonce-from-cookie", cookies(&session(600)));
    let r =
        page(&gw, "/dashboard?__clerk_handshake_nonce=nonce%2Bq&__clerk_db_jwt=dvb&__clerk_help=1&tab=2", &jar).await;
    assert_eq!(r.status, 200, "{r:?}");
    let echoed = r.echoed();
    assert_eq!(echoed.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(echoed.one("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(echoed.raw["uri"], "/dashboard?tab=2", "the handshake's parameters reached the upstream");
    assert_eq!(set_cookies(&r), directives.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.header("access-control-allow-origin"), Some("null"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    // The query's nonce won, sent as Clerk's SDK sends it, with the secret key.
    let calls = api.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].method.as_str(), calls[0].path.as_str()), ("GET", "/v1/clients/handshake_payload"));
    assert_eq!(calls[0].query, "nonce=nonce%2Bq");
    assert_eq!(calls[0].authorization, format!("Bearer {SECRET}"));
    gw.stop().await;
}

/// The signed handshake token of a development instance: verified with the instance's keys,
/// its directives set, and a 307 back to the URL without the handshake's parameters.
#[tokio::test]
async fn a_development_handshake_token_redirects_to_the_clean_url_with_the_cookies() {
    let api = BackendApi::start().await;
    let gw = browser_gateway(PK_TEST, &api, &[]).await;
    let fresh = session(0);
    let directives = [format!("__session={fresh}; Path=/"), format!("__client_uat={}; Path=/", now_s())];
    let handshake = sign(&json!({ "handshake": directives }));
    let path = format!("/dashboard?__clerk_handshake={handshake}&__clerk_help=1&tab=2");
    let r = page(&gw, &path, "__clerk_db_jwt=dvb_1").await;
    assert_eq!(r.status, 307, "{r:?}");
    assert_eq!(r.header("location"), Some(gw.url("/dashboard?tab=2").as_str()));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(set_cookies(&r), directives.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.header("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(r.reason(), None, "a signed-in state has no reason");
    // The browser comes back with the new cookies and is served.
    let jar = format!("__clerk_db_jwt=dvb_1; __client_uat={}; __session={fresh}", now_s() - 1);
    let r = page(&gw, "/dashboard?tab=2", &jar).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
    // A handshake token signed by someone else: Clerk's SDK throws in development.
    let forged = support::other_key().sign(Some(support::KID), &json!({ "handshake": directives }));
    let r = page(&gw, &format!("/dashboard?__clerk_handshake={forged}"), "__clerk_db_jwt=dvb_1").await;
    assert_eq!((r.status, r.reason()), (500, Some("handshake-failed")), "{r:?}");
    assert!(api.calls().is_empty());
    gw.stop().await;
}

/// Refresh (§4.4): an expired token with the `__refresh_<suffix>` cookie on a GET asks the
/// Backend API exactly as Clerk does, and its cookies come back on the response.
#[tokio::test]
async fn an_expired_token_with_a_refresh_cookie_is_refreshed_through_the_backend_api() {
    let api = BackendApi::start().await;
    let fresh = session(0);
    let set = format!("__session_{SUFFIX_LIVE}={fresh}; Path=/; Secure; SameSite=Lax");
    api.refresh(Answer::Json(json!({"object": "cookies", "cookies": [set]})));
    let gw = browser_gateway(PK_LIVE, &api, &[]).await;
    let expired = session(600);
    let jar = format!("{}; __refresh_{SUFFIX_LIVE}=refresh-token-1", cookies(&expired));
    let r = fetch(&gw, "/api/orders", &jar).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(set_cookies(&r), [set.as_str()]);
    let calls = api.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str(), call.query.as_str()),
        ("POST", "/v1/sessions/sess_test/refresh", "")
    );
    assert_eq!(call.authorization, format!("Bearer {SECRET}"));
    assert_eq!(call.body["format"], "cookie");
    assert_eq!(call.body["expired_token"], expired);
    assert_eq!(call.body["refresh_token"], "refresh-token-1");
    assert_eq!(call.body["request_origin"], gw.url(""));
    assert_eq!(call.body["request_headers"]["sec-fetch-dest"], json!(["empty"]));

    // A failure says why in the reason, then falls back to the handshake.
    api.refresh(Answer::Status(404, json!({"errors": [{"code": "session_not_found"}]})));
    let r = page(&gw, "/dashboard", &jar).await;
    assert!(is_handshake(&r), "{r:?}");
    assert_eq!(r.reason(), Some("session-token-expired-refresh-session_not_found"));
    // Not on a POST.
    let r = client()
        .post(gw.url("/api/orders"))
        .header("cookie", &jar)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-token-expired-refresh-non-eligible-non-get")), "{r:?}");
    assert_eq!(api.calls().len(), 2, "the POST made no call");
    gw.stop().await;
}

/// Done-when: a Backend API outage during a handshake gives Clerk's signed-out answer, not a
/// hang, within `fetch_timeout`; so does a refresh (then a handshake with `fetch-error`).
#[tokio::test]
async fn a_backend_api_outage_is_clerks_signed_out_answer_not_a_hang() {
    let api = BackendApi::start().await;
    api.payload(Answer::Hang);
    api.refresh(Answer::Hang);
    let gw = browser_gateway(PK_LIVE, &api, &[]).await;
    let expired = session(600);
    let nonce = format!("{}; __clerk_handshake_nonce=n1", cookies(&expired));
    // The nonce resolves to nothing: signed out (`session-token-missing`).
    let r = page(&gw, "/dashboard", &nonce).await;
    assert_eq!(r.status, 307, "{r:?}");
    assert!(!is_handshake(&r), "{r:?}");
    assert_eq!(r.reason(), Some("session-token-missing"));
    let r = fetch(&gw, "/api/orders", &nonce).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-token-missing")), "{r:?}");
    let r = page(&gw, "/public/page", &nonce).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed().one("x-clerk-auth-status"), Some("signed-out"));
    // The refresh fails with `fetch-error`, and the page load falls back to the handshake.
    let refresh = format!("{}; __refresh_{SUFFIX_LIVE}=r1", cookies(&expired));
    let r = page(&gw, "/dashboard", &refresh).await;
    assert!(is_handshake(&r), "{r:?}");
    assert_eq!(r.reason(), Some("session-token-expired-refresh-fetch-error"));
    assert_eq!(api.calls().len(), 4, "{:?}", api.calls());
    gw.stop().await;

    // A Backend API that is not there at all: the same answers.
    let dead = BackendApi { addr: SocketAddr::from(([127, 0, 0, 1], 9)), inner: api.inner.clone() };
    let gw = browser_gateway(PK_LIVE, &dead, &[]).await;
    let r = fetch(&gw, "/api/orders", &nonce).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-token-missing")), "{r:?}");
    let r = fetch(&gw, "/api/orders", &refresh).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-token-expired-refresh-fetch-error")), "{r:?}");
    gw.stop().await;
}

/// Item 6 and the invariant: bypass skips the handshake and never calls the Backend API, not
/// even on a `bypass = "never"` route; grace accepts an expired but signed cookie within
/// `grace_max_expired` without a handshake.
#[tokio::test]
async fn bypass_never_calls_the_backend_api_and_grace_needs_no_handshake() {
    let api = BackendApi::start().await;
    api.payload(Answer::Json(json!({"directives": [format!("__session={}; Path=/", session(0))]})));
    api.refresh(Answer::Json(json!({"object": "cookies", "cookies": [format!("__session={}", session(0))]})));
    let bypass = [
        ("mode", "mode = \"bypass\"\nreason = \"Clerk is down\""),
        ("[[routes.rule]]", "path = \"/never(.*)\"\nbypass = \"never\""),
    ];
    let gw = browser_gateway(PK_LIVE, &api, &bypass).await;
    let expired = session(600);
    let jars = [
        cookies(&expired),
        format!("{}; __clerk_handshake_nonce=n1", cookies(&expired)),
        format!("{}; __refresh_{SUFFIX_LIVE}=r1", cookies(&expired)),
    ];
    for jar in &jars {
        let r = page(&gw, "/dashboard?__clerk_handshake_nonce=n2", jar).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-auth-bypass"), Some("true"));
        assert_eq!(r.echoed().one("x-clerk-auth-status"), Some("bypass"));
        assert!(set_cookies(&r).is_empty(), "{r:?}");
        // A route kept enforced in bypass runs the flow, without the Backend API.
        let r = page(&gw, "/never/x", jar).await;
        assert_ne!(r.status, 200, "{r:?}");
    }
    assert!(api.calls().is_empty(), "the Backend API was called in bypass: {:?}", api.calls());
    gw.stop().await;

    let grace = [("mode", "mode = \"grace\"\nreason = \"Clerk is down\"\ngrace_max_expired = \"1h\"")];
    let gw = browser_gateway(PK_LIVE, &api, &grace).await;
    let r = page(&gw, "/dashboard", &cookies(&expired)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let echoed = r.echoed();
    assert_eq!(echoed.one("x-auth-degraded"), Some("grace"));
    assert_eq!(echoed.one("x-clerk-user-id"), Some("user_test"));
    // Past grace_max_expired it is a handshake again.
    let r = page(&gw, "/dashboard", &cookies(&session(7200))).await;
    assert!(is_handshake(&r), "{r:?}");
    gw.stop().await;
}

/// Item 5: a signed-out page load of a protected route goes to `clerk.sign_in_url` with
/// `redirect_url`; API calls keep 401; public routes are served.
#[tokio::test]
async fn signed_out_page_loads_go_to_the_sign_in_url() {
    let api = BackendApi::start().await;
    let gw = browser_gateway(PK_LIVE, &api, &[]).await;
    let r = page(&gw, "/dashboard?tab=2", "").await;
    assert_eq!(r.status, 307, "{r:?}");
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with("https://accounts.inspired.puma-74.lcl.dev/sign-in?"), "{loc}");
    assert_eq!(query_params(loc), [("redirect_url".to_string(), gw.url("/dashboard?tab=2"))]);
    assert_eq!(r.reason(), Some("session-token-and-uat-missing"));
    let r = fetch(&gw, "/dashboard", "").await;
    assert_eq!((r.status, r.reason()), (401, Some("session-token-and-uat-missing")), "{r:?}");
    assert_eq!(page(&gw, "/public/x", "").await.status, 200);
    gw.stop().await;

    // Configured, as a path on the app's own origin.
    let gw = gateway().jwt_key().clerk("sign_in_url = \"/sign-in\"").start().await;
    let r = page(&gw, "/dashboard", "").await;
    assert_eq!(r.status, 307, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("{}?redirect_url={}", gw.url("/sign-in"), form(&gw.url("/dashboard"))).as_str())
    );
    gw.stop().await;
}

/// A form-encoded value (what `URLSearchParams` writes).
fn form(s: &str) -> String {
    const FORM: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');
    percent_encoding::utf8_percent_encode(s, FORM).to_string()
}
