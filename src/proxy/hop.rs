//! The HTTP/1 hop: each HTTP/1 client connection holds one upstream HTTP/1.1 connection of its
//! own, driven in the client connection's task (the request future and then the response body
//! poll it), so a request costs no hand-off to a pool or to another task.
//!
//! - The connection is opened at the client connection's first request, and kept for the next
//!   one while it stays usable: idle (its last response read whole), open, and to the same
//!   upstream with the same settings (a reload that changes `upstream.url` or its client
//!   settings opens another).
//! - A connection the upstream closed while it sat idle is replaced without failing the
//!   request: a request not yet written is sent again once on a new connection. A request
//!   written and then unanswered is not (it may have had its effect): 502, as on the pool.
//! - It takes its place from `upstream.max_connections` without waiting, and only from the
//!   half of it kept for such connections ([`super::connect`]); with none free, the request
//!   goes through the shared pool.
//! - A client connection that goes away takes its upstream connection with it: nothing else
//!   could reuse it, so the request in flight is dropped (counted as a cancelled upstream
//!   request, `dropped`) rather than left to finish.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use bytes::Bytes;
use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, Connection, SendRequest};

use super::connect::{BoundedConnector, Counted};
use super::ClientSettings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One client connection's upstream connection, while it waits for the next request. The
/// listener gives each connection one ([`Hop::for_connection`]) and tags its HTTP/1 requests
/// with it.
#[derive(Default)]
pub struct Hop {
    idle: Mutex<Option<Upstream>>,
}

impl std::fmt::Debug for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hop").finish_non_exhaustive()
    }
}

/// An open upstream connection: the request side and the connection future that does its I/O.
struct Upstream {
    sender: SendRequest<Body>,
    conn: Connection<Counted, Body>,
    /// The connection future has finished: the connection is closed.
    closed: bool,
    /// What it was opened with; another value means another upstream.
    settings: ClientSettings,
    authority: Authority,
}

/// How a request on the hop ended, when it brought no response.
#[allow(
    clippy::large_enum_variant,
    reason = "the request is handed back unboxed: no allocation on the way to the pool"
)]
pub(super) enum HopFailure {
    /// No connection of its own was free; the request is handed back for the pool.
    NoPlace(Request<Body>),
    /// The connection could not be opened.
    Connect(io::Error),
    /// The connection broke (or closed) before the response head.
    Broken(BoxError),
}

impl Hop {
    /// A new client connection's hop, with no upstream connection yet.
    pub fn for_connection() -> Arc<Hop> {
        Arc::new(Hop::default())
    }

    /// Sends `req` (its URI already in origin form) on this client connection's upstream
    /// connection, opening one to `target` (scheme and authority) when there is none usable.
    pub(super) async fn send(
        self: Arc<Self>,
        connector: &BoundedConnector,
        settings: ClientSettings,
        target: &Uri,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, HopFailure> {
        let authority = target.authority().cloned().unwrap_or_else(|| Authority::from_static("invalid"));
        let kept = self.take(settings, &authority);
        let mut fresh = kept.is_none();
        let mut up = match kept {
            Some(up) => up,
            None => match Upstream::open(connector, settings, target, authority.clone()).await? {
                Some(up) => up,
                None => return Err(HopFailure::NoPlace(req)),
            },
        };
        // What the pool's client does for HTTP/1: the URI in origin form, and the upstream's
        // authority as `Host` when the client sent none (an HTTP/1.0 client).
        if !req.headers().contains_key(HOST) {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(HOST, host);
            }
        }
        *req.uri_mut() = origin_form(target);
        loop {
            match up.exchange(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|inner| Body::new(HopBody { inner, up: Some(up), hop: self, ended: false })))
                }
                // The upstream closed a kept connection before the request went out: once more
                // on a new one.
                Err(Unanswered::Unsent(back, _)) if !fresh => {
                    fresh = true;
                    req = back;
                    up = match Upstream::open(connector, settings, target, authority.clone()).await? {
                        Some(up) => up,
                        None => {
                            *req.uri_mut() = target.clone();
                            return Err(HopFailure::NoPlace(req));
                        }
                    };
                }
                Err(Unanswered::Unsent(_, e) | Unanswered::Broken(e)) => return Err(HopFailure::Broken(e)),
            }
        }
    }

    /// The kept connection, when it can carry a request to the upstream `settings` and
    /// `authority` name.
    fn take(&self, settings: ClientSettings, authority: &Authority) -> Option<Upstream> {
        let up = self.idle.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        let usable = !up.closed && !up.sender.is_closed() && up.settings == settings && up.authority == *authority;
        usable.then_some(up)
    }

    /// Keeps `up` for the client connection's next request, when it is idle and open.
    fn keep(&self, mut up: Upstream) {
        if !up.closed && !up.sender.is_ready() {
            // The response's end was just read: one more turn lets the connection mark itself
            // ready. Whatever it waits on next is seen when the next request polls it.
            up.drive(&mut Context::from_waker(Waker::noop()));
        }
        if !up.closed && up.sender.is_ready() {
            *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(up);
        }
    }
}

/// `/path?query` of `uri`.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => Uri::from(pq.clone()),
        _ => Uri::default(),
    }
}

/// Why a request got no response on a connection.
#[allow(clippy::large_enum_variant, reason = "the request is handed back unboxed: no allocation to retry it")]
enum Unanswered {
    /// It was not written: the connection closed first. Sending it elsewhere is safe.
    Unsent(Request<Body>, BoxError),
    /// It was (or may have been) written.
    Broken(BoxError),
}

impl Upstream {
    /// Opens a connection to `target`; `None` when no place is free without waiting.
    async fn open(
        connector: &BoundedConnector,
        settings: ClientSettings,
        target: &Uri,
        authority: Authority,
    ) -> Result<Option<Upstream>, HopFailure> {
        let Some(dial) = connector.try_connect(target.clone()) else { return Ok(None) };
        let io = dial.await.map_err(HopFailure::Connect)?;
        let (sender, conn) =
            Builder::new().handshake(io).await.map_err(|e| HopFailure::Connect(io::Error::other(e)))?;
        Ok(Some(Upstream { sender, conn, closed: false, settings, authority }))
    }

    /// Polls the connection future (its reads and writes) unless it has finished.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.closed && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.closed = true;
        }
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile.
    async fn exchange(&mut self, req: Request<Body>) -> Result<Response<Incoming>, Unanswered> {
        let ready = poll_fn(|cx| {
            self.drive(cx);
            match self.sender.poll_ready(cx) {
                Poll::Pending if !self.closed => Poll::Pending,
                Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(BoxError::from(e))),
                Poll::Pending => Poll::Ready(Err(BoxError::from("the upstream closed the connection"))),
            }
        })
        .await;
        if let Err(e) = ready {
            return Err(Unanswered::Unsent(req, e));
        }
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
        .map_err(|mut e| match e.take_message() {
            Some(req) => Unanswered::Unsent(req, e.into_error().into()),
            None => Unanswered::Broken(e.into_error().into()),
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body on the hop: it drives the connection while the body streams, and
    /// gives the connection back to its client connection once the body was read whole.
    struct HopBody {
        inner: Incoming,
        up: Option<Upstream>,
        hop: Arc<Hop>,
        ended: bool,
    }

    impl PinnedDrop for HopBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(up) = this.up.take() {
                if *this.ended || this.inner.is_end_stream() {
                    this.hop.keep(up);
                }
            }
        }
    }
}

impl HttpBody for HopBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        if let Some(up) = this.up.as_mut() {
            up.drive(cx);
        }
        let polled = Pin::new(this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            *this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
