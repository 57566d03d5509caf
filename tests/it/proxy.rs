//! The proxy hop, end to end over real sockets: 1 GiB bodies both ways in flat memory,
//! hop-by-hop hygiene, the forwarded trio, Host, h2c, upgrades (with a reload and a stop on a
//! live socket), 502/504, streamed responses and slow-header clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use clerkgate::control::Actor;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::{self, gateway, raw, with_keys, Reply};

/// Bounds every wait in this module: a test that would hang fails instead.
const BOUND: Duration = Duration::from_secs(20);

const GIB: u64 = 1 << 30;

/// The most the test process may grow while 1 GiB passes through. Flat memory is a few MB of
/// buffers; anything that scales with the body blows far past this.
const RSS_GROWTH_LIMIT_KIB: u64 = 200 * 1024;

/// The two 1 GiB tests take turns, so neither's memory is counted in the other's growth.
static BIG_TRANSFER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Helpers

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

/// Samples the process RSS every 10 ms on its own thread until stopped; reports the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    baseline: u64,
}

impl RssSampler {
    fn start() -> RssSampler {
        let baseline = proc_status_kib("VmRSS");
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(baseline));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(proc_status_kib("VmRSS"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        RssSampler { stop, peak, thread: Some(thread), baseline }
    }

    /// Stops sampling; returns (baseline, peak) in KiB.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler thread");
        }
        self.peak.fetch_max(proc_status_kib("VmRSS"), Ordering::Relaxed);
        (self.baseline, self.peak.load(Ordering::Relaxed))
    }
}

/// `period` bytes of the echo's download pattern (byte i = i % 251) plus one more period, so
/// any window of up to `period` bytes starting at any phase is a zero-copy slice.
fn pattern_buffer(period: usize) -> Bytes {
    (0..(period + 251) as u64).map(clerkgate::echo::pattern_byte).collect::<Vec<u8>>().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One HTTP/1.1 connection to `addr` with hyper's own client, for bodies reqwest cannot stream.
async fn h1_request<B>(addr: SocketAddr, req: Request<B>) -> http::Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    sender.send_request(req).await.expect("send request")
}

/// Writes `msg` on an upgraded socket and expects the echo upstream to send it straight back.
async fn assert_echoes(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).await.expect("write on the upgraded socket");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(BOUND, stream.read_exact(&mut back))
        .await
        .expect("the upgraded socket did not echo in time")
        .expect("read on the upgraded socket");
    assert_eq!(back, msg);
}

fn upgrade_request(addr: SocketAddr, bearer: Option<&str>) -> String {
    let mut req = format!(
        "GET /api/socket HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

fn assert_gateway_answer(reply: &Reply, status: u16, reason: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["reason"], reason, "body: {}", reply.body);
    assert_eq!(reply.reason(), Some(reason));
    assert!(body["error"].is_string() && body["message"].is_string(), "body: {}", reply.body);
}

// ---------------------------------------------------------------------------------------------
// 1. 1 GiB both ways in flat memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_through_in_flat_memory() {
    let _turn = BIG_TRANSFER.lock().await;
    let gw = gateway().jwt_key().start().await;
    const CHUNK: usize = 64 * 1024;
    let pattern = pattern_buffer(CHUNK);
    let (digest_tx, digest_rx) = tokio::sync::oneshot::channel::<String>();

    // A generated body: 64 KiB zero-copy slices of the pattern, hashed as they are sent.
    let state = (0u64, Some(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)), Some(digest_tx));
    let body = futures_util::stream::unfold(state, move |(offset, mut hash, mut tx)| {
        let pattern = pattern.clone();
        async move {
            if offset >= GIB {
                return None;
            }
            let n = (CHUNK as u64).min(GIB - offset) as usize;
            let phase = (offset % 251) as usize;
            let chunk = pattern.slice(phase..phase + n);
            if let Some(h) = hash.as_mut() {
                h.update(&chunk);
            }
            // hyper stops polling once Content-Length bytes are out, so finish with the last chunk.
            if offset + n as u64 == GIB {
                if let (Some(h), Some(tx)) = (hash.take(), tx.take()) {
                    let _ = tx.send(hex(h.finish().as_ref()));
                }
            }
            Some((Ok::<_, Infallible>(Frame::data(chunk)), (offset + n as u64, hash, tx)))
        }
    });
    let req = Request::put("/api/upload")
        .header("host", gw.addr().to_string())
        .header("authorization", format!("Bearer {}", support::token()))
        .header("content-length", GIB.to_string())
        .body(StreamBody::new(body))
        .expect("request");

    let sampler = RssSampler::start();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(600), async {
        let resp = h1_request(gw.addr(), req).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("response body").to_bytes();
        (status, body)
    })
    .await
    .expect("1 GiB upload did not finish within 600 s");
    let elapsed = started.elapsed();
    let (baseline, peak) = sampler.finish();
    let hwm = proc_status_kib("VmHWM");
    println!(
        "1 GiB upload: {elapsed:.1?}; RSS baseline {} MiB, peak {} MiB (growth {} MiB); VmHWM {} MiB",
        baseline / 1024,
        peak / 1024,
        (peak - baseline) / 1024,
        hwm / 1024
    );

    let (status, body) = resp;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON");
    let sent = digest_rx.await.expect("the body stream ran to its end");
    assert_eq!(echoed["body_len"], GIB, "{echoed}");
    assert_eq!(echoed["body_sha256"], sent.as_str(), "the upstream received different bytes");
    assert!(
        peak - baseline < RSS_GROWTH_LIMIT_KIB,
        "RSS grew by {} MiB during a 1 GiB upload: the body is being buffered",
        (peak - baseline) / 1024
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_streams_through_in_flat_memory() {
    let _turn = BIG_TRANSFER.lock().await;
    let gw = gateway().jwt_key().start().await;
    const WINDOW: usize = 1 << 20;
    let pattern = pattern_buffer(WINDOW);
    let req = Request::get(format!("/download/{GIB}"))
        .header("host", gw.addr().to_string())
        .header("authorization", format!("Bearer {}", support::token()))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");

    let sampler = RssSampler::start();
    let started = Instant::now();
    let (status, received) = tokio::time::timeout(Duration::from_secs(600), async {
        let resp = h1_request(gw.addr(), req).await;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut offset = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("download frame");
            let Some(data) = frame.data_ref() else { continue };
            // Compare against the pattern in windows of at most WINDOW bytes.
            for piece in data.chunks(WINDOW) {
                let phase = (offset % 251) as usize;
                assert!(
                    piece == &pattern[phase..phase + piece.len()],
                    "downloaded bytes differ from the pattern in the window at offset {offset}"
                );
                offset += piece.len() as u64;
            }
        }
        (status, offset)
    })
    .await
    .expect("1 GiB download did not finish within 600 s");
    let elapsed = started.elapsed();
    let (baseline, peak) = sampler.finish();
    let hwm = proc_status_kib("VmHWM");
    println!(
        "1 GiB download: {elapsed:.1?}; RSS baseline {} MiB, peak {} MiB (growth {} MiB); VmHWM {} MiB",
        baseline / 1024,
        peak / 1024,
        (peak - baseline) / 1024,
        hwm / 1024
    );

    assert_eq!(status, StatusCode::OK);
    assert_eq!(received, GIB, "the download was cut short");
    assert!(
        peak - baseline < RSS_GROWTH_LIMIT_KIB,
        "RSS grew by {} MiB during a 1 GiB download: the body is being buffered",
        (peak - baseline) / 1024
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2–4. Headers on the upstream hop

#[tokio::test]
async fn hop_by_hop_headers_never_reach_the_upstream() {
    let gw = gateway().jwt_key().start().await;
    let token = support::token();
    let authorization = format!("Bearer {token}");
    let cookie = "theme=dark; lang=en-GB; a=b=c";
    let req = format!(
        "GET /api/hop HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nCookie: {cookie}\r\n\
         Keep-Alive: timeout=5, max=100\r\nTE: trailers\r\nTrailer: Expires\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nProxy: http://evil\r\n\
         Connection: close, X-Custom-Hop\r\nX-Custom-Hop: 1\r\nX-End-To-End: kept\r\n\r\n",
        addr = gw.addr()
    );
    let reply = raw::send(gw.addr(), req.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed = Reply { status: reply.status, headers: reply.headers, body: reply.body }.echoed();

    for name in [
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "proxy",
        "x-custom-hop",
        "connection",
    ] {
        assert_eq!(echoed.all(name), Vec::<&str>::new(), "{name} reached the upstream");
    }
    assert_eq!(echoed.one("authorization"), Some(authorization.as_str()));
    assert_eq!(echoed.one("cookie"), Some(cookie));
    assert_eq!(echoed.one("x-end-to-end"), Some("kept"));
    assert_eq!(echoed.one("x-clerk-user-id"), Some("user_test"));
    gw.stop().await;
}

#[tokio::test]
async fn forwarded_headers_are_rebuilt_from_the_connection() {
    let gw = gateway().jwt_key().start().await;
    let token = format!("Bearer {}", support::token());
    let reply = raw::get(
        gw.addr(),
        "/api/xf",
        &[
            ("Authorization", &token),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-For", "10.0.0.2, 10.0.0.3"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X_Forwarded_For", "10.9.9.9"),
            ("x.forwarded.host", "evil2.example"),
            ("X-Forwarded-Port", "443"),
            ("Forwarded", "for=10.0.0.1;proto=https;host=evil.example"),
            ("X-Real-IP", "10.0.0.1"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed = Reply { status: reply.status, headers: reply.headers, body: reply.body }.echoed();
    assert_eq!(echoed.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed.all("x-forwarded-proto"), ["http"]);
    assert_eq!(echoed.all("x-forwarded-host"), [gw.addr().to_string().as_str()]);
    let mut forwarded = echoed.any_folded_prefix("xforwarded");
    forwarded.sort();
    assert_eq!(forwarded, ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]);
    assert_eq!(echoed.all("forwarded"), Vec::<&str>::new());
    assert_eq!(echoed.all("x-real-ip"), Vec::<&str>::new());
    gw.stop().await;
}

#[tokio::test]
async fn host_header_is_preserved() {
    let gw = gateway().jwt_key().start().await;
    let req = format!(
        "GET /api/host HTTP/1.1\r\nHost: app.example.com\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        support::token()
    );
    let reply = raw::send(gw.addr(), req.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed = Reply { status: reply.status, headers: reply.headers, body: reply.body }.echoed();
    assert_eq!(echoed.all("host"), ["app.example.com"]);
    assert_eq!(echoed.all("x-forwarded-host"), ["app.example.com"]);
    gw.stop().await;
}

#[tokio::test]
async fn malformed_host_is_refused_with_400_not_forwarded() {
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, with more
    // than one Host line, or with an invalid Host value. Forwarding them lets the gateway and the
    // upstream disagree about which host the request is for (X-Forwarded-Host takes the first
    // line; many frameworks take the last).
    let gw = gateway().jwt_key().start().await;
    let token = support::token();
    let cases = [
        ("two Host lines", "Host: app.example.com\r\nHost: evil.example\r\n"),
        ("no Host on HTTP/1.1", ""),
        ("a Host value that is not an authority", "Host: app.example.com evil.example\r\n"),
    ];
    let mut failures = Vec::new();
    for (case, host_lines) in cases {
        let req =
            format!("GET /api/host HTTP/1.1\r\n{host_lines}Authorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        let reply = raw::send(gw.addr(), req.as_bytes()).await;
        if reply.status != 400 {
            let seen = match reply.status {
                200 => format!(
                    "{:?}",
                    Reply { status: 200, headers: reply.headers, body: reply.body }.echoed().all("host")
                ),
                _ => reply.body,
            };
            failures.push(format!("{case}: status {} (upstream saw Host {seen})", reply.status));
        }
    }
    assert!(failures.is_empty(), "malformed Host was forwarded:\n{}", failures.join("\n"));
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. HTTP/2 with prior knowledge

#[tokio::test]
async fn h2c_prior_knowledge_is_served_and_authority_becomes_host() {
    let gw = gateway().jwt_key().start().await;
    let client = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().expect("h2c client");
    let resp = client.get(gw.url("/api/h2?x=1")).bearer_auth(support::token()).send().await.expect("h2c request");
    assert_eq!(resp.version(), Version::HTTP_2);
    let reply = Reply::from(resp).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed = reply.echoed();
    let authority = gw.addr().to_string();
    assert_eq!(echoed.all("host"), [authority.as_str()]);
    assert_eq!(echoed.all("x-forwarded-host"), [authority.as_str()]);
    assert_eq!(echoed.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(echoed.raw["uri"], "/api/h2?x=1");
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Upgrades (T28)

#[tokio::test]
async fn upgrade_is_spliced_survives_a_reload_and_does_not_hold_up_stop() {
    let grace = Duration::from_secs(1);
    let gw = gateway().jwt_key().start_edited(|t| with_keys(&t, "server", "shutdown_grace = \"1s\"")).await;
    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    socket.write_all(upgrade_request(gw.addr(), Some(&support::token())).as_bytes()).await.expect("write");
    let head = tokio::time::timeout(BOUND, raw::read_head(&mut socket)).await.expect("no 101 in time");
    assert_eq!(head.status, 101, "{head:?}");
    assert!(head.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")), "{head:?}");
    assert_eq!(head.header("upgrade"), Some("websocket"));

    assert_echoes(&mut socket, b"hello through the gateway").await;
    let big: Vec<u8> = (0..256 * 1024u64).map(clerkgate::echo::pattern_byte).collect();
    assert_echoes(&mut socket, &big).await;

    // A reload that really changes the config keeps the live socket.
    let text = std::fs::read_to_string(&gw.config_path).expect("read config");
    std::fs::write(&gw.config_path, with_keys(&text, "upstream", "response_timeout = \"59s\"")).expect("rewrite");
    let outcome = gw.running().ctx.control.reload(Actor::Signal).await.expect("reload");
    assert!(outcome.changed, "the reload should have swapped in a changed config");
    assert_echoes(&mut socket, b"still here after the reload").await;

    // Stopping with the socket open returns within the grace period (plus slack).
    tokio::time::timeout(grace + Duration::from_secs(10), gw.stop())
        .await
        .expect("stop() hung on an open upgraded socket");
}

#[tokio::test]
async fn upgrade_without_a_token_is_refused_and_not_spliced() {
    let gw = gateway().jwt_key().start().await;
    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    socket.write_all(upgrade_request(gw.addr(), None).as_bytes()).await.expect("write");
    let head = tokio::time::timeout(BOUND, raw::read_head(&mut socket)).await.expect("no answer in time");
    assert_eq!(head.status, 401, "{head:?}");
    assert_eq!(head.header("x-clerk-auth-reason"), Some("session-token-missing"));
    gw.stop().await;
}

#[tokio::test]
async fn upgrade_in_bypass_mode_is_spliced_and_tagged() {
    let gw = gateway().jwt_key().env("CLERK_EMERGENCY_BYPASS", "true").start().await;
    let mut socket = TcpStream::connect(gw.addr()).await.expect("connect");
    socket.write_all(upgrade_request(gw.addr(), None).as_bytes()).await.expect("write");
    let head = tokio::time::timeout(BOUND, raw::read_head(&mut socket)).await.expect("no answer in time");
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("x-auth-bypass"), Some("true"), "{head:?}");
    assert_echoes(&mut socket, b"bypassed but spliced").await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Upstream failures

#[tokio::test]
async fn refused_upstream_is_502_upstream_unreachable() {
    let gw = gateway().jwt_key().upstream(closed_port().await).start().await;
    let reply = gw.get("/api/x", Some(&support::token()), &[]).await;
    assert_gateway_answer(&reply, 502, "upstream-unreachable");
    assert_eq!(reply.header("x-clerk-auth-status"), Some("signed-in"));
    gw.stop().await;
}

#[tokio::test]
async fn silent_upstream_is_504_upstream_timeout() {
    let gw = gateway().jwt_key().start_edited(|t| with_keys(&t, "upstream", "response_timeout = \"300ms\"")).await;
    let reply = tokio::time::timeout(BOUND, gw.get("/slow/5000", Some(&support::token()), &[]))
        .await
        .expect("the gateway did not time the upstream out");
    assert_gateway_answer(&reply, 504, "upstream-timeout");
    // The timeout is about the response head only: a fast answer still passes.
    let ok = gw.get("/slow/0", Some(&support::token()), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_that_hangs_up_is_502_upstream_broken() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepts = Arc::new(AtomicU64::new(0));
    let counter = accepts.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let gw = gateway().jwt_key().upstream(addr).start().await;
    let reply = gw.get("/api/x", Some(&support::token()), &[]).await;
    assert_gateway_answer(&reply, 502, "upstream-broken");
    assert!(accepts.load(Ordering::SeqCst) >= 1, "the gateway never reached the upstream");
    gw.stop().await;
    task.abort();
}

// ---------------------------------------------------------------------------------------------
// 8. Streaming responses

/// An upstream whose one response body is fed by the test, chunk by chunk.
async fn chunked_upstream(rx: mpsc::Receiver<Bytes>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let rx = Arc::new(Mutex::new(Some(rx)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let rx = rx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let rx = rx.lock().unwrap().take();
                    async move {
                        let body = match rx {
                            Some(rx) => Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                                rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
                            })),
                            None => Body::from("only one streamed response"),
                        };
                        Ok::<_, Infallible>(http::Response::new(body))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn streamed_response_reaches_the_client_before_the_upstream_finishes() {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let upstream = chunked_upstream(rx).await;
    let gw = gateway().jwt_key().upstream(upstream).start().await;
    tx.send(Bytes::from_static(b"first chunk;")).await.expect("queue the first chunk");

    let mut resp =
        support::client().get(gw.url("/api/stream")).bearer_auth(support::token()).send().await.expect("response head");
    assert_eq!(resp.status(), 200);
    // The upstream has not finished (it is waiting for us); the first chunk must already be here.
    let first = tokio::time::timeout(BOUND, resp.chunk())
        .await
        .expect("the first chunk was held back until the upstream finished")
        .expect("read chunk")
        .expect("a first chunk");
    assert_eq!(&first[..], b"first chunk;");

    tx.send(Bytes::from_static(b"second chunk")).await.expect("queue the second chunk");
    drop(tx);
    let mut rest = Vec::new();
    while let Some(c) = tokio::time::timeout(BOUND, resp.chunk()).await.expect("rest of body").expect("chunk") {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"second chunk");
    gw.stop().await;
}

#[tokio::test]
async fn response_timeout_does_not_cut_a_slow_body() {
    // response_timeout bounds the response head only; a body that takes longer still arrives whole.
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let upstream = chunked_upstream(rx).await;
    let gw = gateway()
        .jwt_key()
        .upstream(upstream)
        .start_edited(|t| with_keys(&t, "upstream", "response_timeout = \"300ms\""))
        .await;
    tx.send(Bytes::from_static(b"head-time;")).await.expect("queue");
    let mut resp =
        support::client().get(gw.url("/api/stream")).bearer_auth(support::token()).send().await.expect("response head");
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(BOUND, resp.chunk()).await.expect("first chunk").expect("read").expect("chunk");
    assert_eq!(&first[..], b"head-time;");
    // Hold the body open well past response_timeout.
    tokio::time::sleep(Duration::from_millis(900)).await;
    tx.send(Bytes::from_static(b"after-the-timeout")).await.expect("queue");
    drop(tx);
    let mut rest = Vec::new();
    while let Some(c) = tokio::time::timeout(BOUND, resp.chunk()).await.expect("rest of body").expect("body was cut") {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"after-the-timeout");
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Slow headers

#[tokio::test]
async fn slowloris_client_is_cut_off_after_header_read_timeout() {
    let gw = gateway().jwt_key().start_edited(|t| with_keys(&t, "server", "header_read_timeout = \"500ms\"")).await;
    let mut stalled = TcpStream::connect(gw.addr()).await.expect("connect");
    stalled.write_all(b"GET /api/slow HTTP/1.1\r\nHost: app.example.com\r\nX-Partial: ").await.expect("write");
    // hyper's own default would keep this open for 30 s; the configured 500 ms must win.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a client stalled inside its request head was still connected after 10 s");
    // Whatever was sent back (nothing, or a 408), no request was forwarded.
    assert!(!String::from_utf8_lossy(&rest).contains("\"headers\""), "{}", String::from_utf8_lossy(&rest));

    // A well-behaved client on the same gateway is served.
    let ok = gw.get("/api/fine", Some(&support::token()), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    gw.stop().await;
}
