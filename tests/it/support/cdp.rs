//! Debian's headless Chromium driven through the DevTools protocol: the browser as a child
//! process, and a minimal client for its websocket (RFC 6455 text frames, masked as a client
//! must; no extensions). Enough to navigate, run a script, and read and write cookies.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `chromium` on PATH (Debian's package installs /usr/bin/chromium), or `None`.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n))).find(|p| p.is_file())
}

/// A headless Chromium with its own empty profile. Killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: TcpStream,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `binary` headless (the flags this machine needs: no sandbox as root, no
    /// background networking, which the closed network would refuse) and connects to it.
    pub async fn launch(binary: &std::path::Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--no-proxy-server",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromium");
        // Chromium writes the port it chose, and the browser target's path, into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    if let Ok(port) = port.trim().parse::<u16>() {
                        break (port, path.trim().to_string());
                    }
                }
            }
            assert!(Instant::now() < deadline, "chromium wrote no DevToolsActivePort within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ws = handshake(port, &path).await;
        Browser { child, _profile: profile, ws, next_id: 0 }
    }

    /// Sends one command (to the page `session`, or the browser) and waits for its result;
    /// events in between are dropped. Panics on a protocol error.
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        send_text(&mut self.ws, msg.to_string().as_bytes()).await;
        loop {
            let text = tokio::time::timeout(Duration::from_secs(30), read_message(&mut self.ws))
                .await
                .unwrap_or_else(|_| panic!("chromium did not answer {method} within 30 s"));
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("chromium sent non-JSON ({e}): {text}"));
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    panic!("chromium refused {method}: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab and attaches to it; returns its session id.
    pub async fn new_page(&mut self) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" })).await;
        let attached =
            self.call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true })).await;
        attached["sessionId"].as_str().expect("sessionId").to_string()
    }

    /// Evaluates `expression` in the page; returns its value (by value, JSON).
    pub async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self
            .call(Some(session), "Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }))
            .await;
        r["result"]["value"].clone()
    }

    /// Navigates the page to `url` (following redirects, as a typed URL does).
    pub async fn navigate(&mut self, session: &str, url: &str) {
        self.call(Some(session), "Page.navigate", json!({ "url": url })).await;
    }

    /// Polls the page (every 100 ms, `within` at most) until `done` accepts
    /// `{href, ready, text}` of its document; returns that, or panics with the last one seen.
    pub async fn wait_for(
        &mut self,
        session: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self
                .eval(
                    session,
                    "JSON.stringify({href: location.href, ready: document.readyState, text: document.body ? document.body.innerText : ''})",
                )
                .await;
            if let Some(page) = last.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()) {
                if page["ready"] == "complete" && done(&page) {
                    return page;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {what} within {within:?}; last seen: {last}")
    }

    /// Every cookie the browser holds.
    pub async fn cookies(&mut self) -> Vec<Value> {
        let r = self.call(None, "Storage.getCookies", json!({})).await;
        r["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// Sets cookies (`{name, value, domain, path}` each).
    pub async fn set_cookies(&mut self, cookies: Value) {
        self.call(None, "Storage.setCookies", json!({ "cookies": cookies })).await;
    }
}

/// The websocket opening handshake to `127.0.0.1:port{path}`.
async fn handshake(port: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to chromium's DevTools port");
    let mut key = [0u8; 16];
    aws_lc_rs::rand::fill(&mut key).expect("random");
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send the upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read the upgrade answer");
        assert!(
            n == 1 && head.len() < 16 * 1024,
            "chromium closed the websocket upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "chromium refused the websocket: {head}");
    stream
}

/// Sends one masked text frame.
async fn send_text(stream: &mut TcpStream, payload: &[u8]) {
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut mask = [0u8; 4];
    aws_lc_rs::rand::fill(&mut mask).expect("random");
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.expect("send to chromium");
}

/// Reads one whole message (joining continuation frames); answers pings.
async fn read_message(stream: &mut TcpStream) -> String {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.expect("read from chromium");
        let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).await.expect("read length");
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).await.expect("read length");
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            stream.read_exact(&mut mask).await.expect("read mask");
        }
        assert!(len < 64 * 1024 * 1024, "a {len}-byte websocket frame from chromium");
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.expect("read payload");
        if masked {
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
        }
        match opcode {
            0x8 => panic!("chromium closed the DevTools websocket"),
            0x9 => {
                // Ping: answer with a masked pong carrying the same data.
                let mut frame = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                frame.extend_from_slice(&payload);
                stream.write_all(&frame).await.expect("pong");
            }
            0xa => {}
            _ => {
                message.extend_from_slice(&payload);
                if fin {
                    return String::from_utf8_lossy(&message).into_owned();
                }
            }
        }
    }
}
