//! A small upstream that reports what it received: the demo's app, and the tests' witness.
//!
//! - any path: answers JSON `{method, path, version, headers: [[name, value], …], body_len, body_sha256}`,
//!   reading the body as a stream (a 1 GiB upload costs no memory);
//! - `/download/<bytes>`: streams that many bytes of a fixed pattern;
//! - `/slow/<ms>`: waits, then answers as above;
//! - an `Upgrade` request: answers `101` and echoes raw bytes back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves the echo upstream on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                Ok::<_, Infallible>(handle(req.map(Body::new)).await)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves the echo upstream in a background task; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(local)
}

/// The pattern byte at `offset` of a download.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

async fn handle(mut req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.headers().contains_key(http::header::UPGRADE) {
        let protocol = req.headers()[http::header::UPGRADE].clone();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, protocol)
            .body(Body::empty())
            .unwrap_or_default();
    }
    if let Some(n) = path.strip_prefix("/download/").and_then(|n| n.parse::<u64>().ok()) {
        return download(n);
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|n| n.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let uri = req.uri().to_string();
    let mut body = req.into_body();
    let mut len = 0u64;
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            hash.update(data);
        }
    }
    let sha: String = hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let json = serde_json::json!({
        "method": method, "path": path, "uri": uri, "version": version,
        "headers": headers, "body_len": len, "body_sha256": sha,
    });
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_string()))
        .unwrap_or_default()
}

fn download(total: u64) -> Response<Body> {
    // 251 is prime and 64 KiB chunks start at multiples of 65 536, so slice a precomputed
    // pattern long enough for any starting phase instead of computing bytes one by one.
    const CHUNK: u64 = 64 * 1024;
    let pattern: Bytes = (0..CHUNK + 251).map(pattern_byte).collect::<Vec<u8>>().into();
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let pattern = pattern.clone();
        async move {
            if offset >= total {
                return None;
            }
            let n = CHUNK.min(total - offset);
            let phase = (offset % 251) as usize;
            let chunk = pattern.slice(phase..phase + n as usize);
            Some((Ok::<_, Infallible>(chunk), offset + n))
        }
    });
    Response::builder().header(http::header::CONTENT_LENGTH, total).body(Body::from_stream(stream)).unwrap_or_default()
}
