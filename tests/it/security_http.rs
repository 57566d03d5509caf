//! HTTP-level security fixes from hostile testing (issue #8), over real sockets: no h2c (or any
//! HTTP-like) upgrade is ever spliced and a stray 101 is a 502; routing-override headers never
//! reach the upstream unless allow-listed; an HTTP/2 client's cookies arrive as one `Cookie`
//! line; userinfo in `Host` or `:authority` is 400; `CONNECT` and `TRACE` are 405 in every mode.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, gateway, raw, with_keys};

/// Bounds every wait in this module: a test that would hang fails instead.
const BOUND: Duration = Duration::from_secs(20);

/// A settings payload as an h2c client sends it (any base64url value will do).
const HTTP2_SETTINGS: &str = "AAMAAABkAAQCAAAAAAIAAAAA";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A raw upstream that takes an h2c upgrade the way a vulnerable app server does: it answers
/// `101 Switching Protocols` and then echoes every byte that follows, so anything spliced to it
/// comes straight back. Any other request gets 200 with the request head it received as body.
/// With `always_switch` it answers every request with a 101 to h2c.
struct SwitchingUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchingUpstream {
    async fn start(always_switch: bool) -> SwitchingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_switching(stream, seen.clone(), always_switch));
            }
        });
        SwitchingUpstream { addr, heads, task }
    }

    /// Every request head received so far, lower-cased.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for SwitchingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_switching(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>, always_switch: bool) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        heads.lock().unwrap_or_else(|p| p.into_inner()).push(head.clone());
        if always_switch || head.contains("\r\nupgrade: h2c") {
            let switch = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
            if stream.write_all(switch.as_bytes()).await.is_err() {
                return;
            }
            let (mut read, mut write) = stream.split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
            return;
        }
        let reply =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{head}", head.len());
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An h2c upgrade request for `path`, in one of the two `Connection` spellings that carry it.
fn h2c_request(addr: SocketAddr, path: &str, connection: &str, bearer: Option<&str>) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: h2c\r\nHTTP2-Settings: {HTTP2_SETTINGS}\r\n\
         Connection: {connection}\r\n"
    );
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// A WebSocket upgrade request for `path` with an optional token.
fn websocket_request(addr: SocketAddr, path: &str, protocol: &str, bearer: Option<&str>) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Reads a response head and its `Content-Length` body from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> raw::RawReply {
    let mut reply = tokio::time::timeout(BOUND, raw::read_head(stream)).await.expect("no response head in time");
    let len: usize = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    tokio::time::timeout(BOUND, stream.read_exact(&mut body))
        .await
        .expect("no response body in time")
        .expect("read response body");
    reply.body = String::from_utf8_lossy(&body).into_owned();
    reply
}

fn assert_gateway_answer(reply: &raw::RawReply, status: u16, reason: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.header("x-clerk-auth-reason"), Some(reason), "{reply:?}");
    let body: Value = serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply:?}"));
    assert_eq!(body["reason"], reason, "{reply:?}");
    assert!(body["error"].is_string() && body["message"].is_string(), "{reply:?}");
}

/// The header names the echo upstream reported, lower-cased.
fn echoed_names(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo reply ({e}): {body}"));
    v["headers"].as_array().expect("headers").iter().map(|p| p[0].as_str().unwrap_or_default().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Item 1: h2c smuggling

#[tokio::test]
async fn h2c_upgrade_is_never_spliced_on_a_public_or_a_protected_route() {
    let upstream = SwitchingUpstream::start(false).await;
    let gw = gateway().jwt_key().upstream(upstream.addr).start().await;
    let token = support::token();
    let cases = [
        ("/public/x", "Upgrade, HTTP2-Settings", None),
        ("/public/x", "Upgrade", None),
        ("/api/x", "Upgrade, HTTP2-Settings", Some(token.as_str())),
        ("/api/x", "Upgrade", Some(token.as_str())),
    ];
    for (path, connection, bearer) in cases {
        let case = format!("{path} with Connection: {connection}");
        let before = upstream.heads().len();
        let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
        socket.write_all(h2c_request(gw.addr(), path, connection, bearer).as_bytes()).await.expect("write");
        let first = read_response(&mut socket).await;
        assert_eq!(first.status, 200, "{case}: the upgrade must be dropped, not switched: {first:?}");
        assert!(first.header("upgrade").is_none(), "{case}: {first:?}");

        // The upstream saw a plain request: no Upgrade, no HTTP2-Settings.
        let heads = upstream.heads();
        assert_eq!(heads.len(), before + 1, "{case}");
        let head = &heads[before];
        assert!(!head.contains("\r\nupgrade:"), "{case}: Upgrade reached the upstream:\n{head}");
        assert!(!head.contains("\r\nhttp2-settings:"), "{case}: HTTP2-Settings reached the upstream:\n{head}");

        // The connection still speaks HTTP to the gateway: a forged identity on a protected
        // route without a token is refused, not smuggled to the upstream.
        let next = format!(
            "GET /api/admin HTTP/1.1\r\nHost: {}\r\nX-Clerk-User-Id: user_forged\r\nConnection: close\r\n\r\n",
            gw.addr()
        );
        socket.write_all(next.as_bytes()).await.expect("write the second request");
        let second = read_response(&mut socket).await;
        assert_gateway_answer(&second, 401, "session-token-missing");
        assert_eq!(upstream.heads().len(), before + 1, "{case}: the second request reached the upstream");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_101_to_a_request_that_asked_for_no_allowed_upgrade_is_a_502() {
    let upstream = SwitchingUpstream::start(true).await;
    let gw = gateway().jwt_key().upstream(upstream.addr).start().await;
    for bearer in [None, Some(support::token())] {
        let path = if bearer.is_some() { "/api/x" } else { "/public/x" };
        let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
        let req = h2c_request(gw.addr(), path, "Upgrade, HTTP2-Settings", bearer.as_deref());
        socket.write_all(req.as_bytes()).await.expect("write");
        let reply = read_response(&mut socket).await;
        assert_gateway_answer(&reply, 502, "upstream-unexpected-upgrade");
        assert!(reply.header("upgrade").is_none(), "{reply:?}");
    }
    // A plain request answered with 101 is not switched either.
    let reply = raw::get(gw.addr(), "/public/plain", &[]).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(reply.header("x-clerk-auth-reason"), Some("upstream-unexpected-upgrade"));
    gw.stop().await;
}

#[tokio::test]
async fn a_101_naming_another_protocol_than_the_one_requested_is_a_502() {
    // The client asks for websocket (allowed); the upstream switches to h2c instead.
    let upstream = SwitchingUpstream::start(true).await;
    let gw = gateway().jwt_key().upstream(upstream.addr).start().await;
    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    let req = websocket_request(gw.addr(), "/api/socket", "websocket", Some(&support::token()));
    socket.write_all(req.as_bytes()).await.expect("write");
    let reply = read_response(&mut socket).await;
    assert_gateway_answer(&reply, 502, "upstream-unexpected-upgrade");
    // The websocket upgrade itself was passed on.
    let heads = upstream.heads();
    assert!(heads.last().is_some_and(|h| h.contains("\r\nupgrade: websocket\r\n")), "{heads:?}");
    gw.stop().await;
}

#[tokio::test]
async fn websocket_is_spliced_in_any_case_and_the_allow_list_can_turn_it_off() {
    // Default allow-list, protocol name in another case: spliced.
    let gw = gateway().jwt_key().start().await;
    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    let req = websocket_request(gw.addr(), "/api/socket", "WebSocket", Some(&support::token()));
    socket.write_all(req.as_bytes()).await.expect("write");
    let head = tokio::time::timeout(BOUND, raw::read_head(&mut socket)).await.expect("no 101 in time");
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("upgrade"), Some("WebSocket"));
    socket.write_all(b"ping").await.expect("write on the upgraded socket");
    let mut back = [0u8; 4];
    tokio::time::timeout(BOUND, socket.read_exact(&mut back)).await.expect("no echo in time").expect("read");
    assert_eq!(&back, b"ping");
    gw.stop().await;

    // An empty allow-list: the same request is forwarded as a plain request.
    let gw = gateway().jwt_key().start_edited(|t| with_keys(&t, "upstream", "upgrade_protocols = []")).await;
    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    let req = websocket_request(gw.addr(), "/api/socket", "websocket", Some(&support::token()));
    socket.write_all(req.as_bytes()).await.expect("write");
    let reply = read_response(&mut socket).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let names = echoed_names(&reply.body);
    assert!(!names.iter().any(|n| n == "upgrade" || n == "connection"), "{names:?}");
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 8: routing-override headers

const ROUTING_HEADERS: [(&str, &str); 8] = [
    ("X-Original-URL", "/api/admin"),
    ("X-Rewrite-URL", "/api/admin"),
    ("X-Original-URI", "/api/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    // Spellings a CGI or PHP stack reads as the same variable.
    ("X_Original_URL", "/api/admin"),
    ("x.http.method.override", "DELETE"),
];

#[tokio::test]
async fn routing_override_headers_never_reach_the_upstream() {
    let gw = gateway().jwt_key().start().await;
    let mut headers = ROUTING_HEADERS.to_vec();
    headers.push(("X-Request-Id", "r-1"));
    let reply = raw::get(gw.addr(), "/public/x", &headers).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let names = echoed_names(&reply.body);
    for (name, _) in ROUTING_HEADERS {
        assert!(!names.iter().any(|n| n.eq_ignore_ascii_case(name)), "{name} reached the upstream: {names:?}");
    }
    assert!(names.iter().any(|n| n == "x-request-id"), "{names:?}");
    gw.stop().await;
}

#[tokio::test]
async fn an_allow_listed_routing_header_is_kept_and_the_others_still_go() {
    let gw = gateway()
        .jwt_key()
        .start_edited(|t| with_keys(&t, "upstream", "allow_routing_headers = [\"X-HTTP-Method-Override\"]"))
        .await;
    let reply = raw::get(gw.addr(), "/public/x", &ROUTING_HEADERS[..6]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let names = echoed_names(&reply.body);
    assert!(names.iter().any(|n| n == "x-http-method-override"), "{names:?}");
    for (name, _) in ROUTING_HEADERS[..6].iter().filter(|(n, _)| *n != "X-HTTP-Method-Override") {
        assert!(!names.iter().any(|n| n.eq_ignore_ascii_case(name)), "{name} reached the upstream: {names:?}");
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 12: HTTP/2 client to the HTTP/1.1 upstream

/// Sends one request over an HTTP/2 prior-knowledge connection; returns status, headers, body.
async fn h2_send(addr: SocketAddr, req: Request<Empty<Bytes>>) -> (u16, http::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let resp = tokio::time::timeout(BOUND, sender.send_request(req)).await.expect("no answer in time").expect("send");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn http2_cookie_fields_arrive_as_one_cookie_line() {
    let gw = gateway().jwt_key().start().await;
    let req = Request::get(format!("http://{}/public/x", gw.addr()))
        .header("cookie", "theme=dark")
        .header("cookie", "lang=en; tz=UTC")
        .body(Empty::new())
        .expect("request");
    let (status, _, body) = h2_send(gw.addr(), req).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("echo JSON");
    let cookies: Vec<&str> = v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|p| p[0] == "cookie")
        .map(|p| p[1].as_str().unwrap_or_default())
        .collect();
    assert_eq!(cookies, ["theme=dark; lang=en; tz=UTC"]);
    gw.stop().await;
}

#[tokio::test]
async fn userinfo_in_the_http2_authority_is_400_invalid_host() {
    let gw = gateway().jwt_key().start().await;
    let req = Request::get(format!("http://user:pw@{}/public/x", gw.addr())).body(Empty::new()).expect("request");
    let (status, headers, body) = h2_send(gw.addr(), req).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(headers.get("x-clerk-auth-reason").map(|v| v.as_bytes()), Some(&b"invalid-host"[..]), "{body}");
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 13: CONNECT, TRACE, userinfo in Host

#[tokio::test]
async fn connect_and_trace_are_405_in_every_mode() {
    for bypass in [false, true] {
        let builder = gateway().jwt_key();
        let builder = if bypass { builder.env("CLERK_EMERGENCY_BYPASS", "true") } else { builder };
        let gw = builder.start().await;
        let addr = gw.addr();
        let token = support::token();
        let requests = [
            format!("CONNECT /public/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            format!("TRACE /public/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            format!(
                "TRACE /api/x HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
            format!("TRACK /public/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        ];
        for req in requests {
            let reply = raw::send(addr, req.as_bytes()).await;
            let line = req.lines().next().unwrap_or_default();
            assert_eq!(reply.status, 405, "bypass={bypass} {line}: {reply:?}");
            assert_eq!(reply.header("x-clerk-auth-reason"), Some("method-not-allowed"), "{line}: {reply:?}");
            let body: Value = serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{line}: {e}: {reply:?}"));
            assert_eq!(body["reason"], "method-not-allowed");
            assert_eq!(body["error"], "method_not_allowed");
            // The echo upstream would have answered with what it received.
            assert!(body.get("headers").is_none(), "{line} reached the upstream: {reply:?}");
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn connect_over_http2_is_405() {
    let gw = gateway().jwt_key().start().await;
    let req =
        Request::builder().method(Method::CONNECT).uri(gw.addr().to_string()).body(Empty::new()).expect("request");
    let (status, headers, body) = h2_send(gw.addr(), req).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(headers.get("x-clerk-auth-reason").map(|v| v.as_bytes()), Some(&b"method-not-allowed"[..]));
    gw.stop().await;
}

#[tokio::test]
async fn userinfo_in_host_is_400_invalid_host() {
    let gw = gateway().jwt_key().start().await;
    for host in ["gw.test@evil.example", "user:pw@evil.example:8080", "@evil.example"] {
        let req = format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let reply = raw::send(gw.addr(), req.as_bytes()).await;
        assert_eq!(reply.status, 400, "Host: {host}: {reply:?}");
        assert_eq!(reply.header("x-clerk-auth-reason"), Some("invalid-host"), "Host: {host}: {reply:?}");
    }
    gw.stop().await;
}
