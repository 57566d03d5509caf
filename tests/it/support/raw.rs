//! Raw HTTP/1.1 over TCP, for requests a well-behaved client library would refuse or rewrite
//! (dot segments, encoded slashes, odd header names, two Authorization headers).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed raw response.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (as text, lossy).
    pub body: String,
}

impl RawReply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends `GET target` with the given header lines (`Host` and `Connection: close` added) and
/// reads the whole response.
pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> RawReply {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    send(addr, req.as_bytes()).await
}

/// Sends raw bytes and reads until the server closes.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    parse(&buf)
}

/// Reads a response head (up to and including the blank line) byte by byte, so nothing after it
/// is consumed (an upgraded socket's first bytes, the next response on a kept-alive connection).
pub async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> RawReply {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read response head");
        assert!(n > 0, "connection closed inside the response head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    parse(&head)
}

/// Parses a response (Content-Length or chunked bodies; chunked is de-chunked loosely).
pub fn parse(buf: &[u8]) -> RawReply {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    RawReply { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
