//! Issue #8, connection-level findings: every connection is bounded in time and number, a
//! client's broken body is the client's fault, and no client behaviour churns upstream
//! connections. Raw sockets and hand-made HTTP/2 frames, so each test does exactly what the
//! hostile client did.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, counting_upstream, gateway, raw, with_keys, TestGateway};

/// Short limits so each test sees the watchdog act quickly.
const FAST: &str = "header_read_timeout = \"300ms\"\nidle_timeout = \"400ms\"\nsend_timeout = \"400ms\"\nrequest_body_timeout = \"400ms\"";

async fn fast_gateway(extra_server: &str) -> TestGateway {
    let server = format!("{FAST}\n{extra_server}");
    gateway().jwt_key().start_edited(move |t| with_keys(&t, "server", &server)).await
}

/// Reads until the peer closes; true if it closed within `within` (bytes sent before the
/// close, such as an HTTP/2 GOAWAY, are read and ignored).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Item 2: connections that never send a byte

#[tokio::test]
async fn silent_connections_are_closed_after_header_read_timeout() {
    let gw = fast_gateway("").await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(gw.addr()).await.expect("connect"));
    }
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(closed_within(s, Duration::from_secs(5)).await, "silent connection {i} was never closed");
    }
    // The gateway still serves.
    let ok = gw.get("/public/x", None, &[]).await;
    assert_eq!(ok.status, 200);
    gw.stop().await;
}

/// A gateway whose connections get `HELD` to send a request, with `limit` in `[server]`.
async fn limited_gateway(limit: &str) -> TestGateway {
    let server = format!("header_read_timeout = \"{}s\"\n{limit}", HELD.as_secs());
    gateway().jwt_key().start_edited(move |t| with_keys(&t, "server", &server)).await
}

/// How long a silent connection holds its place in the limit tests: the refused connection
/// must come while the others still hold theirs, so not [`FAST`]'s 300 ms, which a loaded
/// machine can spend between two connects. (The gateway admits connections in the order it
/// accepts them, so they need no other wait.)
const HELD: Duration = Duration::from_secs(3);

#[tokio::test]
async fn connections_over_the_per_client_limit_get_a_clear_503_and_the_rest_still_work() {
    let gw = limited_gateway("max_connections_per_client = 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addr()).await.expect("connect"));
    }
    let refused = raw::get(gw.addr(), "/public/x", &[]).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("x-clerk-auth-reason"), Some("too-many-connections"));
    assert!(refused.body.contains("max_connections_per_client"), "{}", refused.body);
    // Once the silent ones are cut, a valid request gets through.
    for s in held.iter_mut() {
        assert!(closed_within(s, HELD + Duration::from_secs(20)).await);
    }
    let ok = raw::get(gw.addr(), "/public/x", &[]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    gw.stop().await;
}

#[tokio::test]
async fn connections_over_the_total_limit_get_a_clear_503() {
    let gw = limited_gateway("max_connections = 2").await;
    let _a = TcpStream::connect(gw.addr()).await.expect("connect");
    let _b = TcpStream::connect(gw.addr()).await.expect("connect");
    let refused = raw::get(gw.addr(), "/public/x", &[]).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains("server.max_connections"), "{}", refused.body);
    gw.stop().await;
}

#[tokio::test]
async fn the_binary_raises_its_descriptor_limit_to_the_hard_maximum_and_says_so() {
    let upstream = support::upstream().await;
    let config = support::binary_config(upstream).text();
    let gw = support::BinaryGateway::start_with_soft_nofile(&config, 256);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).expect("read /proc limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("nofile line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised to the hard one: {line}");
    assert_ne!(numbers[0], "256", "{line}");
    gw.await_log("about the raise", |l| l.contains("raised the open-descriptor limit")).await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 9: a malformed request body is the client's fault

#[tokio::test]
async fn malformed_chunked_bodies_get_400_not_502() {
    let gw = fast_gateway("").await;
    let addr = gw.addr();
    for chunk_line in ["fffffffffffffffff1\r\n", "-1\r\n", "0x5\r\n", "5\n"] {
        let req = format!(
            "POST /public/upload HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk_line}hello\r\n0\r\n\r\n"
        );
        let reply = raw::send(addr, req.as_bytes()).await;
        assert_eq!(reply.status, 400, "chunk line {chunk_line:?}: {reply:?}");
        assert_eq!(reply.header("x-clerk-auth-reason"), Some("invalid-request-body"), "{chunk_line:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_short_body_gets_400_and_a_stalled_body_gets_408() {
    let gw = fast_gateway("").await;
    let addr = gw.addr();
    // Declares 10 bytes, sends 5, then half-closes: the body ended early.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!("POST /public/upload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\r\nhello");
    s.write_all(head.as_bytes()).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let reply = raw::parse(&buf);
    assert_eq!(reply.status, 400, "{reply:?}");

    // Sends 5 of 10 bytes and waits: past request_body_timeout the client gets 408.
    for (what, framing) in [("small", "Content-Length: 10\r\n"), ("streamed", "Content-Length: 1000000\r\n")] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!("POST /public/upload HTTP/1.1\r\nHost: {addr}\r\n{framing}\r\nhello");
        s.write_all(head.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let reply = raw::parse(&buf);
        assert_eq!(reply.status, 408, "{what}: {reply:?}");
        assert_eq!(reply.header("x-clerk-auth-reason"), Some("request-body-timeout"), "{what}");
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Kept HTTP/1 connections: idle_timeout between requests, header_read_timeout within a head

/// A gateway with these `header_read_timeout` and `idle_timeout`.
async fn timed_gateway(header_read_timeout: &str, idle_timeout: &str) -> TestGateway {
    let server = format!("header_read_timeout = \"{header_read_timeout}\"\nidle_timeout = \"{idle_timeout}\"");
    gateway().jwt_key().start_edited(move |t| with_keys(&t, "server", &server)).await
}

/// A connection that has served one request and is kept open.
async fn kept_connection(gw: &TestGateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(kept_request(&mut s, "/public/first").await.status, 200);
    s
}

/// One public request on a kept HTTP/1 connection, its response read whole.
async fn kept_request(s: &mut TcpStream, path: &str) -> raw::RawReply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("write");
    let reply = raw::read_head(s).await;
    let length: usize = reply.header("content-length").and_then(|l| l.parse().ok()).expect("a Content-Length");
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.expect("body");
    reply
}

/// hyper's own header timer starts when a keep-alive connection goes idle, so it closed idle
/// connections at `header_read_timeout` (1 s here) instead of `idle_timeout`: a load balancer
/// keeping connections for less than `idle_timeout` then races the close.
#[tokio::test]
async fn an_idle_keep_alive_connection_lives_for_idle_timeout_not_header_read_timeout() {
    let gw = timed_gateway("1s", "20s").await;
    let mut s = kept_connection(&gw).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(kept_request(&mut s, "/public/second").await.status, 200, "the kept connection was closed while idle");
    gw.stop().await;
}

/// A head trickled a byte at a time on a kept connection: its clock started at the first byte
/// and is not restarted by the next ones.
#[tokio::test]
async fn a_head_trickled_byte_by_byte_on_a_kept_connection_is_cut_off() {
    let gw = timed_gateway("1s", "10m").await;
    let mut s = kept_connection(&gw).await;
    let trickle = async {
        for byte in b"GET /public/second HTTP/1.1\r\nHost: app.example.com\r\nX-Slow: ".iter().cycle().take(200) {
            if s.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    };
    let cut = tokio::time::timeout(Duration::from_secs(40), trickle).await;
    assert!(matches!(cut, Ok(true)), "a head trickled over 40 s on a kept connection was never cut off");
    gw.stop().await;
}

/// A body the gateway answered without reading (a 401 before any upstream) is drained by hyper
/// after the response; those bytes are not the next request's head, so the kept connection
/// still waits `idle_timeout`.
#[tokio::test]
async fn bytes_drained_after_a_response_do_not_start_a_head_clock() {
    let gw = timed_gateway("1s", "20s").await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    // More than hyper's first read takes with the head, and little enough that it drains the
    // rest in one read instead of closing (with 16.5 KB the drain reads ~8 KB from the socket).
    let body = vec![b'a'; 16_500];
    let head = format!("POST /api/upload HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(&[head.as_bytes(), &body].concat()).await.expect("write");
    let reply = raw::read_head(&mut s).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let length: usize = reply.header("content-length").and_then(|l| l.parse().ok()).expect("a Content-Length");
    s.read_exact(&mut vec![0u8; length]).await.expect("body");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(kept_request(&mut s, "/public/next").await.status, 200, "the kept connection was closed while idle");
    gw.stop().await;
}

/// The first byte of the next request's head starts its clock: a head that stalls on a kept
/// connection is cut off after `header_read_timeout`, long before `idle_timeout`.
#[tokio::test]
async fn a_head_that_stalls_on_a_kept_connection_is_cut_off_after_header_read_timeout() {
    let gw = timed_gateway("1s", "10m").await;
    let mut s = kept_connection(&gw).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET /public/second HTTP/1.1\r\nHost: app.example.com\r\nX-Partial: ").await.expect("write");
    assert!(
        closed_within(&mut s, Duration::from_secs(30)).await,
        "a stalled head on a kept connection was never cut off"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 10: HTTP/2 connections are timed out at every stage

/// Hand-made HTTP/2 frames.
mod frame {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// SETTINGS with the given (id, value) pairs.
    pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in pairs {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        frame(0x4, 0, 0, &p)
    }

    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    /// An HPACK header block: `:method`, `:scheme http`, `:path`, `:authority`, then literal
    /// fields, all without indexing.
    pub fn block(method: &str, path: &str, authority: &str, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        match method {
            "GET" => b.push(0x82),
            "POST" => b.push(0x83),
            other => literal_indexed_name(&mut b, 2, other),
        }
        b.push(0x86); // :scheme http
        if path == "/" {
            b.push(0x84);
        } else {
            literal_indexed_name(&mut b, 4, path);
        }
        literal_indexed_name(&mut b, 1, authority);
        for (n, v) in fields {
            b.push(0x00);
            string(&mut b, n);
            string(&mut b, v);
        }
        b
    }

    fn literal_indexed_name(b: &mut Vec<u8>, index: u8, value: &str) {
        b.push(index); // literal without indexing, indexed name (index < 15)
        string(b, value);
    }

    fn string(b: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 127);
        b.push(s.len() as u8);
        b.extend_from_slice(s.as_bytes());
    }
}

async fn h2_stage_is_closed(gw: &TestGateway, bytes: Vec<u8>, stage: &str) {
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(&bytes).await.expect("write");
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "HTTP/2 stage {stage:?} was never closed");
}

#[tokio::test]
async fn http2_connections_stuck_before_a_request_are_closed() {
    let gw = fast_gateway("").await;
    let authority = gw.addr().to_string();
    let mut preface_settings = frame::PREFACE.to_vec();
    preface_settings.extend(frame::settings(&[]));
    let mut open_headers = preface_settings.clone();
    // HEADERS without END_HEADERS: a header block that never ends.
    open_headers.extend(frame::frame(0x1, frame::END_STREAM, 1, &frame::block("GET", "/", &authority, &[])));
    for (stage, bytes) in [
        ("partial preface", frame::PREFACE[..14].to_vec()),
        ("preface alone", frame::PREFACE.to_vec()),
        ("preface and SETTINGS", preface_settings),
        ("HEADERS without END_HEADERS", open_headers),
    ] {
        h2_stage_is_closed(&gw, bytes, stage).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_http2_connection_idle_after_a_request_is_closed() {
    let gw = fast_gateway("").await;
    let authority = gw.addr().to_string();
    let mut bytes = frame::PREFACE.to_vec();
    bytes.extend(frame::settings(&[]));
    bytes.extend(frame::frame(
        0x1,
        frame::END_STREAM | frame::END_HEADERS,
        1,
        &frame::block("GET", "/public/x", &authority, &[]),
    ));
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(&bytes).await.expect("write");
    // The request is answered (a HEADERS frame comes back), then idle_timeout closes it.
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle HTTP/2 connection was never closed");
    assert!(got.windows(2).any(|w| w == [0x01, 0x04] || w == [0x01, 0x05]), "no response HEADERS frame came back");
    gw.stop().await;
}

/// Frames between requests on an HTTP/2 connection (pings here) are not a request head: the
/// connection lives on past `header_read_timeout`, and serves its next request.
#[tokio::test]
async fn an_http2_connection_pinged_between_requests_lives_past_header_read_timeout() {
    let gw = timed_gateway("1s", "20s").await;
    let authority = gw.addr().to_string();
    let request = |stream: u32| {
        frame::frame(
            0x1,
            frame::END_STREAM | frame::END_HEADERS,
            stream,
            &frame::block("GET", "/public/x", &authority, &[]),
        )
    };
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut start = frame::PREFACE.to_vec();
    start.extend(frame::settings(&[]));
    start.extend(request(1));
    s.write_all(&start).await.expect("write");
    let mut seen = Vec::new();
    assert!(response_headers_on(&mut s, 1, &mut seen).await, "no response to the first request");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.write_all(&frame::frame(0x6, 0, 0, &[0; 8])).await.expect("ping");
    }
    s.write_all(&request(3)).await.expect("write");
    assert!(response_headers_on(&mut s, 3, &mut seen).await, "the pinged connection did not answer its next request");
    gw.stop().await;
}

/// Reads frames until a HEADERS frame on `stream` (true) or the connection's end (false).
async fn response_headers_on(s: &mut TcpStream, stream: u32, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, id) = (buf[3], u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff);
            buf.drain(..9 + len);
            if kind == 0x1 && id == stream {
                return true;
            }
        }
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
}

#[tokio::test]
async fn an_http2_post_whose_body_never_comes_gets_408() {
    let gw = fast_gateway("").await;
    let stream = TcpStream::connect(gw.addr()).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    // A body that sends one piece and then never another, and never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(1);
    tx.send(Ok(http_body::Frame::data(bytes::Bytes::from_static(b"hello")))).await.expect("first piece");
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = http::Request::post(format!("http://{}/public/upload", gw.addr())).body(body).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .expect("an answer within 5 s")
        .expect("response");
    assert_eq!(resp.status(), 408);
    drop(tx);
    gw.stop().await;
}

/// A `Stream` over an mpsc receiver, without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---------------------------------------------------------------------------------------------
// Item 12: a client that never opens its flow-control window

#[tokio::test]
async fn an_http2_client_that_never_takes_its_response_is_cut_after_send_timeout() {
    let gw = fast_gateway("").await;
    let authority = gw.addr().to_string();
    let mut bytes = frame::PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may carry a byte of DATA to us.
    bytes.extend(frame::settings(&[(0x4, 0)]));
    bytes.extend(frame::frame(
        0x1,
        frame::END_STREAM | frame::END_HEADERS,
        1,
        &frame::block("GET", "/download/100000", &authority, &[]),
    ));
    h2_stage_is_closed(&gw, bytes, "window held at zero").await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 11: cancelled requests and server-side resets do not churn upstream connections

/// Opens an HTTP/2 connection, sends its preface and SETTINGS, and drains what comes back.
async fn h2_attacker(gw: &TestGateway) -> tokio::net::tcp::OwnedWriteHalf {
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut hello = frame::PREFACE.to_vec();
    hello.extend(frame::settings(&[]));
    s.write_all(&hello).await.expect("write");
    let (mut rd, wr) = s.into_split();
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    wr
}

#[tokio::test]
async fn paced_cancelled_http2_requests_do_not_open_an_upstream_connection_each() {
    let (up, accepted) = counting_upstream(Duration::from_millis(20)).await;
    let gw = gateway().jwt_key().upstream(up).start().await;
    let authority = gw.addr().to_string();
    // Twenty connections, each sending HEADERS + RST_STREAM (CANCEL) ten per write, 2 ms
    // apart, until the gateway sends it away; then the next connection.
    let mut sent = 0;
    for _ in 0..20 {
        let mut wr = h2_attacker(&gw).await;
        let mut id = 1u32;
        for _ in 0..50 {
            let mut burst = Vec::new();
            for _ in 0..10 {
                let block = frame::block("GET", "/public/x", &authority, &[]);
                burst.extend(frame::frame(0x1, frame::END_STREAM | frame::END_HEADERS, id, &block));
                burst.extend(frame::frame(0x3, 0, id, &8u32.to_be_bytes()));
                id += 2;
            }
            if wr.write_all(&burst).await.is_err() {
                break;
            }
            sent += 10;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opened = accepted.load(Ordering::SeqCst);
    assert!(opened <= 40, "{sent} cancelled requests opened {opened} upstream connections");
    // The gateway still serves a normal client.
    let ok = gw.get("/public/x", None, &[]).await;
    assert_eq!(ok.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn server_side_resets_from_a_body_longer_than_its_content_length_open_no_upstream_connection() {
    let (up, accepted) = counting_upstream(Duration::ZERO).await;
    let gw = gateway().jwt_key().upstream(up).start().await;
    let authority = gw.addr().to_string();
    let mut wr = h2_attacker(&gw).await;
    // "MadeYouReset": content-length 1, two bytes of DATA: the gateway must reset the stream.
    let mut id = 1u32;
    for _ in 0..20 {
        let mut burst = Vec::new();
        for _ in 0..5 {
            let block = frame::block("POST", "/public/x", &authority, &[("content-length", "1")]);
            burst.extend(frame::frame(0x1, frame::END_HEADERS, id, &block));
            burst.extend(frame::frame(0x0, frame::END_STREAM, id, b"ab"));
            id += 2;
        }
        if wr.write_all(&burst).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opened = accepted.load(Ordering::SeqCst);
    assert!(opened <= 2, "100 malformed bodies opened {opened} upstream connections");
    let ok = gw.get("/public/x", None, &[]).await;
    assert_eq!(ok.status, 200);
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A webhook route reads its whole body before verifying it: that read is bounded too.

#[tokio::test]
async fn a_webhook_whose_body_stalls_gets_408() {
    let server = format!("{FAST}\n");
    let gw = gateway()
        .jwt_key()
        .clerk(&format!("webhook_signing_secret = {}", support::toml_str("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")))
        .section("[[routes.rule]]", "path = \"/api/webhooks/clerk\"\nwebhook = \"clerk\"")
        .start_edited(move |t| with_keys(&t, "server", &server))
        .await;
    let addr = gw.addr();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!("POST /api/webhooks/clerk HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\n{{\"type\":");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let reply = raw::parse(&buf);
    assert_eq!(reply.status, 408, "{reply:?}");
    assert_eq!(reply.header("x-clerk-auth-reason"), Some("request-body-timeout"));
    gw.stop().await;
}
