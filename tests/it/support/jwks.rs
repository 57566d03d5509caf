//! A real JWKS HTTP server on 127.0.0.1:0 whose answer tests can change, and which counts
//! every request it receives (and records the headers of the last one). Like the Backend API,
//! it can take only some secret keys ([`JwksServer::accept_only`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

/// What the JWKS server answers.
#[derive(Debug, Clone)]
pub enum JwksReply {
    /// 200 with this JSON.
    Json(Value),
    /// This status and body.
    Status(u16, String),
    /// 200 with this raw body (HTML, truncated JSON…).
    Raw(String),
    /// Accept the request and never answer.
    Hang,
    /// Answer `Json` after a delay.
    Slow(Duration, Value),
}

struct Inner {
    reply: Mutex<JwksReply>,
    hits: AtomicUsize,
    last_headers: Mutex<Vec<(String, String)>>,
    accepted: Mutex<Option<Vec<String>>>,
}

/// The JWKS server.
#[derive(Clone)]
pub struct JwksServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl JwksServer {
    /// Starts a server answering `reply`.
    pub async fn start(reply: JwksReply) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks");
        Self::serve_on(listener, reply)
    }

    /// Starts on a specific address (to bring a "dead" JWKS back on the same port).
    pub async fn start_at(addr: SocketAddr, reply: JwksReply) -> JwksServer {
        let listener = TcpListener::bind(addr).await.expect("bind jwks at address");
        Self::serve_on(listener, reply)
    }

    fn serve_on(listener: TcpListener, reply: JwksReply) -> JwksServer {
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Inner {
            reply: Mutex::new(reply),
            hits: AtomicUsize::new(0),
            last_headers: Mutex::new(Vec::new()),
            accepted: Mutex::new(None),
        });
        let server = JwksServer { addr, inner: inner.clone() };
        super::serve(listener, inner, |inner, req| async move { answer(&inner, req).await });
        server
    }

    /// The JWKS URL.
    pub fn url(&self) -> String {
        format!("http://{}/v1/jwks", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the answer.
    pub fn set(&self, reply: JwksReply) {
        *self.inner.reply.lock().unwrap() = reply;
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Headers of the last request.
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.inner.last_headers.lock().unwrap().clone()
    }

    /// The bearer token of the last request, if it had one.
    pub fn last_bearer(&self) -> Option<String> {
        let headers = self.last_headers();
        let (_, value) = headers.iter().find(|(k, _)| k == "authorization")?;
        value.strip_prefix("Bearer ").map(str::to_string)
    }

    /// From now on, answers only requests whose bearer is one of `keys`, as the Backend API
    /// does; any other gets Clerk's 401 `clerk_key_invalid`.
    pub fn accept_only(&self, keys: &[&str]) {
        *self.inner.accepted.lock().unwrap() = Some(keys.iter().map(|k| k.to_string()).collect());
    }
}

/// Clerk's answer to a deleted or wrong secret key (clerk-ops.md §3).
pub fn clerk_key_invalid_body() -> String {
    serde_json::json!({
        "errors": [{
            "code": "clerk_key_invalid",
            "message": "Secret Key is invalid",
            "long_message": "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
        }],
        "clerk_trace_id": "trace_test",
    })
    .to_string()
}

async fn answer(inner: &Inner, req: Request<hyper::body::Incoming>) -> Response<Body> {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    *inner.last_headers.lock().unwrap() = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let refused = match &*inner.accepted.lock().unwrap() {
        Some(keys) => !bearer.is_some_and(|b| keys.contains(&b)),
        None => false,
    };
    let reply =
        if refused { JwksReply::Status(401, clerk_key_invalid_body()) } else { inner.reply.lock().unwrap().clone() };
    let json = |v: &Value| {
        Response::builder().header("content-type", "application/json").body(Body::from(v.to_string())).unwrap()
    };
    match reply {
        JwksReply::Json(v) => json(&v),
        JwksReply::Status(code, body) => Response::builder()
            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .body(Body::from(body))
            .unwrap(),
        JwksReply::Raw(body) => Response::new(Body::from(body)),
        JwksReply::Hang => {
            std::future::pending::<()>().await;
            Response::new(Body::empty())
        }
        JwksReply::Slow(d, v) => {
            tokio::time::sleep(d).await;
            json(&v)
        }
    }
}
