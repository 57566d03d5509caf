//! Issue #16 item 2: an HTTP/1 client connection's requests go on an upstream connection of its
//! own, kept between requests, replaced when the upstream closed it, and shared with nobody;
//! with no place free for one, the pool carries the request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::support::{self, raw};

/// An HTTP/1.1 stand-in that answers every request with the port its connection came from,
/// counts the connections it accepts, and (with `close_after_each`) closes each connection
/// after its first answer, with no `Connection: close` said, as an upstream's idle timeout does.
/// `closed` is notified when a connection ends, by either side.
struct PortUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<Notify>,
}

async fn port_upstream(close_after_each: bool) -> PortUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let (count, notify) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let notify = notify.clone();
            tokio::spawn(async move {
                loop {
                    let head = request_head(&mut stream).await;
                    if head.is_empty() {
                        // The gateway closed the connection.
                        notify.notify_one();
                        return;
                    }
                    let body = peer.port().to_string();
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    if close_after_each {
                        let _ = stream.shutdown().await;
                        drop(stream);
                        notify.notify_one();
                        return;
                    }
                }
            });
        }
    });
    PortUpstream { addr, accepted, closed }
}

/// A request head read byte by byte; empty when the connection closed first.
async fn request_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return Vec::new(),
        }
    }
    head
}

/// One keep-alive request on `client`: the answer's status and body.
async fn ask(client: &mut TcpStream) -> (u16, String) {
    client.write_all(b"GET /public/hop HTTP/1.1\r\nHost: app.example.com\r\n\r\n").await.expect("write");
    let head = raw::read_head(client).await;
    let len: usize = head.header("content-length").and_then(|v| v.parse().ok()).expect("content-length");
    let mut body = vec![0u8; len];
    client.read_exact(&mut body).await.expect("body");
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn each_http1_client_connection_keeps_an_upstream_connection_of_its_own() {
    let up = port_upstream(false).await;
    let gw = support::gateway().upstream(up.addr).jwt_key().start().await;
    let mut a = TcpStream::connect(gw.addr()).await.expect("connect a");
    let mut b = TcpStream::connect(gw.addr()).await.expect("connect b");

    let (status, a_first) = ask(&mut a).await;
    assert_eq!(status, 200);
    // On a pool, b would take the connection a just gave back.
    let (status, b_first) = ask(&mut b).await;
    assert_eq!(status, 200);
    assert_ne!(a_first, b_first, "two client connections shared one upstream connection");
    for _ in 0..3 {
        assert_eq!(ask(&mut a).await, (200, a_first.clone()), "a's requests changed upstream connection");
        assert_eq!(ask(&mut b).await, (200, b_first.clone()), "b's requests changed upstream connection");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closes_idle_connections_fails_no_request() {
    let up = port_upstream(true).await;
    let gw = support::gateway().upstream(up.addr).jwt_key().start().await;
    let mut client = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut ports = Vec::new();
    for _ in 0..4 {
        let (status, port) = ask(&mut client).await;
        assert_eq!(status, 200, "a request after the upstream closed its idle connection failed");
        ports.push(port);
        // The upstream has closed this connection before the next request is sent.
        up.closed.notified().await;
    }
    ports.dedup();
    assert_eq!(ports.len(), 4, "each request went on a new connection: {ports:?}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
    gw.stop().await;
}

#[tokio::test]
async fn with_no_place_of_its_own_a_client_connection_uses_the_pool() {
    let up = port_upstream(false).await;
    // Two places: one for a client connection of its own, one for the pool.
    let gw = support::gateway()
        .upstream(up.addr)
        .jwt_key()
        .section("upstream", &format!("url = \"http://{}\"\nmax_connections = 2", up.addr))
        .start_edited(|text| text.replacen(&format!("[upstream]\nurl = \"http://{}\"\n", up.addr), "", 1))
        .await;
    let mut a = TcpStream::connect(gw.addr()).await.expect("connect a");
    let mut b = TcpStream::connect(gw.addr()).await.expect("connect b");
    let mut c = TcpStream::connect(gw.addr()).await.expect("connect c");
    let (status, own) = ask(&mut a).await;
    assert_eq!(status, 200);
    let (status, pooled) = ask(&mut b).await;
    assert_eq!(status, 200);
    assert_ne!(own, pooled);
    // c has no place of its own either, and shares the pool's connection with b.
    assert_eq!(ask(&mut c).await, (200, pooled.clone()));
    assert_eq!(ask(&mut a).await, (200, own));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    gw.stop().await;
}

/// An upstream that reads one request head on each connection and never answers; says on
/// `ended` when the gateway closed a connection (its read returned end of file).
async fn silent_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, ended) = tokio::sync::mpsc::unbounded_channel();
    let arrived = Arc::new(Notify::new());
    let seen = arrived.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let (tx, seen) = (tx.clone(), seen.clone());
            tokio::spawn(async move {
                if !request_head(&mut stream).await.is_empty() {
                    seen.notify_one();
                }
                let mut rest = [0u8; 64];
                while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
        }
    });
    (addr, ended, arrived)
}

/// A client connection that goes away takes its upstream connection with it — kept idle
/// between requests, or with a request still at the upstream: the connection's task is ended,
/// not left to wait for a request or an answer nobody will send or read (holding a place of
/// `upstream.max_connections` meanwhile).
#[tokio::test]
async fn a_client_connection_that_goes_away_takes_its_upstream_connection_with_it() {
    let up = port_upstream(false).await;
    let gw = support::gateway().upstream(up.addr).jwt_key().start().await;
    let mut client = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(ask(&mut client).await.0, 200);
    drop(client);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), up.closed.notified()).await;
    assert!(closed.is_ok(), "the kept upstream connection outlived its client connection");
    gw.stop().await;

    // With the request still in flight.
    let (addr, mut ended, arrived) = silent_upstream().await;
    let gw = support::gateway().upstream(addr).jwt_key().start().await;
    let mut client = TcpStream::connect(gw.addr()).await.expect("connect");
    client.write_all(b"GET /public/hop HTTP/1.1\r\nHost: app.example.com\r\n\r\n").await.expect("write");
    arrived.notified().await;
    drop(client);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), ended.recv()).await;
    assert!(matches!(closed, Ok(Some(()))), "the upstream connection outlived its client connection");
    gw.stop().await;
}
