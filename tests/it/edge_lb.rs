//! Issue #11 item 7, behind a load balancer: `server.trusted_proxies` and `server.proxy_protocol`
//! through real sockets. Linux loopback answers on all of 127/8, so one gateway sees a client
//! bound to 127.0.0.2 as a trusted peer (`trusted_proxies = ["127.0.0.2/32"]`) and one bound
//! to 127.0.0.3 as an untrusted one; the echo upstream says what it received.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::raw::{self, RawReply};
use crate::support::{self, counting_upstream, gateway, with_keys, Echoed, TestGateway};

const TRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// The v2 signature, written out.
const V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A gateway trusting 127.0.0.2, with `extra` lines in `[server]`.
async fn gateway_trusting(extra: &str) -> TestGateway {
    let server = format!("trusted_proxies = [\"127.0.0.2/32\"]\n{extra}");
    gateway().jwt_key().start_edited(move |t| with_keys(&t, "server", &server)).await
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// A public `GET` with `Connection: close` and the given header lines.
fn request(to: SocketAddr, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET /public/x HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Writes `bytes` from `from` and reads until the gateway closes.
async fn send_from(from: Ipv4Addr, to: SocketAddr, bytes: &[u8]) -> RawReply {
    let mut stream = connect_from(from, to).await;
    stream.write_all(bytes).await.expect("write");
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> RawReply {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    raw::parse(&buf)
}

fn echoed(reply: &RawReply) -> Echoed {
    assert_eq!(reply.status, 200, "{reply:?}");
    support::Reply { status: reply.status, headers: reply.headers.clone(), body: reply.body.clone() }.echoed()
}

/// True when the gateway closed `stream` within `within` without writing a byte (closed or
/// reset: a socket closed with unread bytes in it is reset).
async fn closed_silently(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await.is_ok();
    ended && buf.is_empty()
}

/// The value of a counter line in the gateway's `/metrics`, e.g.
/// `clerkgate_connections_refused_total{why="proxy_protocol"}`.
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = support::client().get(gw.admin_url("/metrics")).send().await.expect("metrics").text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-For and X-Forwarded-Proto: kept from a trusted peer, rebuilt from any other

#[tokio::test]
async fn a_trusted_peers_forwarded_for_chain_is_kept_and_the_peer_appended() {
    let gw = gateway_trusting("").await;
    let lines = [
        ("X-Forwarded-For", "203.0.113.7, 198.51.100.2"),
        ("X-Forwarded-For", "2001:db8::1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=6.6.6.6;proto=https"),
        ("X-Real-IP", "6.6.6.6"),
        ("X_Forwarded_For", "6.6.6.6"),
    ];
    let host = gw.addr().to_string();

    let e = echoed(&send_from(TRUSTED, gw.addr(), &request(gw.addr(), &lines)).await);
    assert_eq!(e.one("x-forwarded-for"), Some("203.0.113.7, 198.51.100.2, 2001:db8::1, 127.0.0.2"));
    assert_eq!(e.one("x-forwarded-proto"), Some("https"), "a TLS-terminating balancer's scheme is kept");
    assert_eq!(e.one("x-forwarded-host"), Some(host.as_str()), "X-Forwarded-Host is always rebuilt from Host");
    for gone in ["forwarded", "x-real-ip", "x_forwarded_for"] {
        assert!(e.all(gone).is_empty(), "{gone} reached the upstream from a trusted peer: {:?}", e.headers);
    }

    let e = echoed(&send_from(UNTRUSTED, gw.addr(), &request(gw.addr(), &lines)).await);
    assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.3"));
    assert_eq!(e.one("x-forwarded-proto"), Some("http"));
    assert_eq!(e.one("x-forwarded-host"), Some(host.as_str()));
    for gone in ["forwarded", "x-real-ip", "x_forwarded_for"] {
        assert!(e.all(gone).is_empty(), "{gone} reached the upstream: {:?}", e.headers);
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_trusted_peers_unusable_forwarded_headers_are_rebuilt_and_counted() {
    let gw = gateway_trusting("").await;
    let before = metric(&gw, "clerkgate_forwarded_replaced_total").await;
    let cases: &[&[(&str, &str)]] = &[
        &[("X-Forwarded-For", "203.0.113.7, evil"), ("X-Forwarded-Proto", "ftp")],
        &[("X-Forwarded-For", "203.0.113.7:443"), ("X-Forwarded-Proto", "https, http")],
        &[("X-Forwarded-For", &vec!["10.0.0.1"; 33].join(", "))],
    ];
    for lines in cases {
        let e = echoed(&send_from(TRUSTED, gw.addr(), &request(gw.addr(), lines)).await);
        assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.2"), "{lines:?}");
        assert_eq!(e.one("x-forwarded-proto"), Some("http"), "{lines:?}");
    }
    assert!(metric(&gw, "clerkgate_forwarded_replaced_total").await >= before + 3.0);
    gw.stop().await;
}

/// Without `trusted_proxies` (the default) nothing is trusted, not even loopback.
#[tokio::test]
async fn nothing_is_trusted_by_default() {
    let gw = gateway().jwt_key().start().await;
    let lines = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")];
    let e = echoed(&send_from(TRUSTED, gw.addr(), &request(gw.addr(), &lines)).await);
    assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.2"));
    assert_eq!(e.one("x-forwarded-proto"), Some("http"));
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol from a trusted peer

#[tokio::test]
async fn a_v1_header_from_a_trusted_peer_sets_the_client_address() {
    let gw = gateway_trusting("proxy_protocol = true").await;
    // The header and the request in one segment; the client's own X-Forwarded-For is replaced,
    // since the client the header names is not a trusted proxy.
    let mut bytes = b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 8080\r\n".to_vec();
    bytes.extend(request(gw.addr(), &[("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-Proto", "https")]));
    let e = echoed(&send_from(TRUSTED, gw.addr(), &bytes).await);
    assert_eq!(e.one("x-forwarded-for"), Some("203.0.113.9"));
    assert_eq!(e.one("x-forwarded-proto"), Some("http"));

    let mut bytes = b"PROXY TCP6 2001:db8::9 2001:db8::1 51234 443\r\n".to_vec();
    bytes.extend(request(gw.addr(), &[]));
    let e = echoed(&send_from(TRUSTED, gw.addr(), &bytes).await);
    assert_eq!(e.one("x-forwarded-for"), Some("2001:db8::9"));

    // Without a header, a trusted peer is served as itself (an L7 balancer on the same port).
    let e = echoed(&send_from(TRUSTED, gw.addr(), &request(gw.addr(), &[("X-Forwarded-For", "203.0.113.7")])).await);
    assert_eq!(e.one("x-forwarded-for"), Some("203.0.113.7, 127.0.0.2"));
    gw.stop().await;
}

#[tokio::test]
async fn a_v2_header_from_a_trusted_peer_sets_the_client_address_in_any_segmentation() {
    let gw = gateway_trusting("proxy_protocol = true").await;
    // PROXY, TCP over IPv4, 12 address bytes and a 7-byte TLV: 198.51.100.23:40000 → 127.0.0.1:8080.
    let mut header = V2.to_vec();
    header.extend(b"\x21\x11\x00\x13");
    header.extend([198, 51, 100, 23, 127, 0, 0, 1]);
    header.extend(40000u16.to_be_bytes());
    header.extend(8080u16.to_be_bytes());
    header.extend(b"\x04\x00\x04abcd");

    // One segment: header and request together.
    let bytes = [header.clone(), request(gw.addr(), &[])].concat();
    let e = echoed(&send_from(TRUSTED, gw.addr(), &bytes).await);
    assert_eq!(e.one("x-forwarded-for"), Some("198.51.100.23"));

    // The header in pieces, then the request in its own segment.
    let mut stream = connect_from(TRUSTED, gw.addr()).await;
    for piece in [&header[..5], &header[5..14], &header[14..20], &header[20..]] {
        stream.write_all(piece).await.expect("write");
        stream.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stream.write_all(&request(gw.addr(), &[])).await.expect("write");
    let e = echoed(&read_all(&mut stream).await);
    assert_eq!(e.one("x-forwarded-for"), Some("198.51.100.23"));

    // IPv6: [2001:db8::23]:40000.
    let mut v6 = V2.to_vec();
    v6.extend(b"\x21\x21\x00\x24");
    v6.extend("2001:db8::23".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v6.extend("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v6.extend(40000u16.to_be_bytes());
    v6.extend(443u16.to_be_bytes());
    v6.extend(request(gw.addr(), &[]));
    let e = echoed(&send_from(TRUSTED, gw.addr(), &v6).await);
    assert_eq!(e.one("x-forwarded-for"), Some("2001:db8::23"));

    // An IPv4 client carried in the IPv6 block is that IPv4 address.
    let mut mapped = V2.to_vec();
    mapped.extend(b"\x21\x21\x00\x24");
    mapped.extend(Ipv4Addr::new(198, 51, 100, 24).to_ipv6_mapped().octets());
    mapped.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    mapped.extend(40000u16.to_be_bytes());
    mapped.extend(443u16.to_be_bytes());
    mapped.extend(request(gw.addr(), &[]));
    let e = echoed(&send_from(TRUSTED, gw.addr(), &mapped).await);
    assert_eq!(e.one("x-forwarded-for"), Some("198.51.100.24"));
    gw.stop().await;
}

/// A v2 `LOCAL` header (the balancer's own health check) and a v1 `UNKNOWN` keep the socket
/// address, so the trusted peer's chain is kept as without a header.
#[tokio::test]
async fn a_local_or_unknown_header_keeps_the_socket_address() {
    let gw = gateway_trusting("proxy_protocol = true").await;
    let xff = [("X-Forwarded-For", "203.0.113.7")];
    let local = [V2, b"\x20\x00\x00\x00"].concat();
    for header in [&local[..], b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"] {
        let bytes = [header, request(gw.addr(), &xff).as_slice()].concat();
        let e = echoed(&send_from(TRUSTED, gw.addr(), &bytes).await);
        assert_eq!(e.one("x-forwarded-for"), Some("203.0.113.7, 127.0.0.2"), "{header:?}");
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol refused

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_refused_and_nothing_reaches_the_upstream() {
    let (up, accepted) = counting_upstream(Duration::ZERO).await;
    let gw = gateway()
        .jwt_key()
        .upstream(up)
        .start_edited(|t| with_keys(&t, "server", "trusted_proxies = [\"127.0.0.2/32\"]\nproxy_protocol = true"))
        .await;
    let before = metric(&gw, "clerkgate_connections_refused_total{why=\"proxy_protocol\"}").await;
    let v1 = [&b"PROXY TCP4 10.0.0.1 127.0.0.1 1234 80\r\n"[..], request(gw.addr(), &[]).as_slice()].concat();
    let v2 =
        [V2, b"\x21\x11\x00\x0c\x0a\x00\x00\x01\x7f\x00\x00\x01\x04\xd2\x00\x50", request(gw.addr(), &[]).as_slice()]
            .concat();
    for bytes in [&v1, &v2] {
        let mut stream = connect_from(UNTRUSTED, gw.addr()).await;
        stream.write_all(bytes).await.expect("write");
        assert!(
            closed_silently(&mut stream, Duration::from_secs(5)).await,
            "a PROXY header from an untrusted peer was served"
        );
    }
    // A trusted peer's broken header is refused the same way.
    let mut stream = connect_from(TRUSTED, gw.addr()).await;
    stream.write_all(b"PROXY TCP4 10.0.0.1 127.0.0.1 1234\r\nGET / HTTP/1.1\r\n\r\n").await.expect("write");
    assert!(closed_silently(&mut stream, Duration::from_secs(5)).await, "a broken PROXY header was served");

    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a refused connection reached the upstream");
    assert!(metric(&gw, "clerkgate_connections_refused_total{why=\"proxy_protocol\"}").await >= before + 3.0);

    // The same untrusted peer speaking plain HTTP is served as usual.
    let ok = send_from(UNTRUSTED, gw.addr(), &request(gw.addr(), &[])).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_proxy_header_that_never_completes_is_cut_off_after_header_read_timeout() {
    let gw = gateway_trusting("proxy_protocol = true\nheader_read_timeout = \"300ms\"").await;
    // Half a header, then silence.
    let mut stalled = connect_from(TRUSTED, gw.addr()).await;
    stalled.write_all(b"PROXY TCP4 203.0.113.9 ").await.expect("write");
    // A header that trickles in, a byte at a time, slower than the timeout allows.
    let mut trickle = connect_from(TRUSTED, gw.addr()).await;
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 8080\r\n";
    let mut cut = false;
    for b in header {
        if trickle.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut || closed_silently(&mut trickle, Duration::from_secs(5)).await, "a trickled header was waited for");
    assert!(closed_silently(&mut stalled, Duration::from_secs(5)).await, "a stalled header was never cut off");
    // A half signature from an untrusted peer is cut off too.
    let mut partial = connect_from(UNTRUSTED, gw.addr()).await;
    partial.write_all(b"PROX").await.expect("write");
    assert!(closed_silently(&mut partial, Duration::from_secs(5)).await);
    gw.stop().await;
}

/// With `proxy_protocol` off (the default), nothing is looked for: a PROXY line, even from a
/// trusted peer, is just not HTTP.
#[tokio::test]
async fn without_proxy_protocol_a_proxy_line_is_bad_http() {
    let gw = gateway_trusting("").await;
    let bytes = [&b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 8080\r\n"[..], request(gw.addr(), &[]).as_slice()].concat();
    let reply = send_from(TRUSTED, gw.addr(), &bytes).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Connection limits: a trusted peer carries many clients

/// Sends a keep-alive request on `stream` and reads its head, leaving the connection open (and
/// counted) after it.
async fn hold(stream: &mut TcpStream, to: SocketAddr, prefix: &[u8]) -> u16 {
    let req = format!("GET /public/x HTTP/1.1\r\nHost: {to}\r\n\r\n");
    stream.write_all(&[prefix, req.as_bytes()].concat()).await.expect("write");
    raw::read_head(stream).await.status
}

#[tokio::test]
async fn a_trusted_peer_is_exempt_from_the_per_client_limit_and_proxied_clients_are_counted_by_address() {
    let gw = gateway_trusting("proxy_protocol = true\nmax_connections_per_client = 2").await;
    let addr = gw.addr();
    let mut held = Vec::new();

    // A trusted peer (an L7 balancer) with more connections than the per-client limit.
    for _ in 0..3 {
        let mut s = connect_from(TRUSTED, addr).await;
        assert_eq!(hold(&mut s, addr, b"").await, 200);
        held.push(s);
    }
    let ok = send_from(TRUSTED, addr, &request(addr, &[])).await;
    assert_eq!(ok.status, 200, "a trusted peer was throttled by the per-client limit: {ok:?}");

    // An untrusted peer is held to it.
    for _ in 0..2 {
        let mut s = connect_from(UNTRUSTED, addr).await;
        assert_eq!(hold(&mut s, addr, b"").await, 200);
        held.push(s);
    }
    let refused = send_from(UNTRUSTED, addr, &request(addr, &[])).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("x-clerk-auth-reason"), Some("too-many-connections"));

    // Through a PROXY header, the client it names is held to it, under its own address.
    let client = b"PROXY TCP4 203.0.113.5 127.0.0.1 1000 80\r\n";
    for _ in 0..2 {
        let mut s = connect_from(TRUSTED, addr).await;
        assert_eq!(hold(&mut s, addr, client).await, 200);
        held.push(s);
    }
    let refused = send_from(TRUSTED, addr, &[&client[..], request(addr, &[]).as_slice()].concat()).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains("max_connections_per_client"), "{}", refused.body);
    let other = b"PROXY TCP4 203.0.113.6 127.0.0.1 1000 80\r\n";
    let e = echoed(&send_from(TRUSTED, addr, &[&other[..], request(addr, &[]).as_slice()].concat()).await);
    assert_eq!(e.one("x-forwarded-for"), Some("203.0.113.6"));
    drop(held);
    gw.stop().await;
}
