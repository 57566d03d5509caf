//! The HTTP/1 hop: each HTTP/1 client connection holds one upstream HTTP/1.1 connection of its
//! own, so a request costs no look-up in a shared pool and no contention with other clients.
//! The connection's I/O runs in a task of its own beside the client connection's, and lives
//! exactly as long as the client connection holds it.
//!
//! Why a task of its own, not the client connection's: a request written to the upstream from
//! the client connection's task is written at once, before the runtime has read the other
//! clients' ready requests, and on a core the upstream shares that write hands the core to the
//! upstream — about one switch per request. Handed to the connection's task, the writes wait
//! until every ready request was read, and go out together (`cargo bench --bench e2e`: half
//! the switches and about a fifth less gateway CPU per request; BENCHMARKS.md).
//!
//! - The connection is opened at the client connection's first request, and kept for the next
//!   one while it stays usable: its last response read whole, open, and to the same upstream
//!   with the same settings (a reload that changes `upstream.url` or its client settings opens
//!   another).
//! - A connection the upstream closed while it sat idle is replaced without failing the
//!   request: a request not yet written is sent again once on a new connection. A request
//!   written and then unanswered is not (it may have had its effect): 502, as on the pool.
//! - It takes its place from `upstream.max_connections` without waiting, and only from the
//!   half of it kept for such connections ([`super::connect`]); with none free, the request
//!   goes through the shared pool.
//! - A client connection that goes away takes its upstream connection with it: nothing else
//!   could reuse it, so its task is ended and the request in flight dropped (counted as a
//!   cancelled upstream request, `dropped`) rather than left to finish.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use tokio::task::AbortHandle;

use super::connect::BoundedConnector;
use super::ClientSettings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One client connection's upstream connection, while it waits for the next request. The
/// listener gives each connection one ([`Hop::for_connection`]) and tags its HTTP/1 requests
/// with it.
#[derive(Default)]
pub struct Hop {
    idle: Mutex<Option<Box<Upstream>>>,
}

impl std::fmt::Debug for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hop").finish_non_exhaustive()
    }
}

/// An open upstream connection: the request side, and the task that does its I/O (ended when
/// this is dropped, which closes the connection).
struct Upstream {
    sender: SendRequest<Body>,
    task: AbortHandle,
    /// What it was opened with; another value means another upstream.
    settings: ClientSettings,
    authority: Authority,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
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

    /// Sends `req` (its URI in origin form) on this client connection's upstream connection,
    /// opening one to `base` (the upstream's `scheme://authority/`) when there is none usable.
    /// A request handed back for the pool carries its URI on the upstream, in absolute form.
    pub(super) async fn send(
        self: Arc<Self>,
        connector: &BoundedConnector,
        settings: ClientSettings,
        base: &Uri,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, HopFailure> {
        let no_place = |mut req: Request<Body>| {
            if let Ok(uri) = super::absolute(base, req.uri()) {
                *req.uri_mut() = uri;
            }
            HopFailure::NoPlace(req)
        };
        let invalid = Authority::from_static("invalid");
        let authority = base.authority().unwrap_or(&invalid);
        let open = || Box::pin(Upstream::open(connector, settings, base, authority.clone()));
        let kept = self.take(settings, authority);
        let mut fresh = kept.is_none();
        let mut up = match kept {
            Some(up) => up,
            None => match open().await? {
                Some(up) => up,
                None => return Err(no_place(req)),
            },
        };
        // What the pool's client does for HTTP/1: the URI in origin form, and the upstream's
        // authority as `Host` when the client sent none (an HTTP/1.0 client).
        if !req.headers().contains_key(HOST) {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(HOST, host);
            }
        }
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
                    up = match open().await? {
                        Some(up) => up,
                        None => return Err(no_place(req)),
                    };
                }
                Err(Unanswered::Unsent(_, e) | Unanswered::Broken(e)) => return Err(HopFailure::Broken(e)),
            }
        }
    }

    /// The kept connection, when it can carry a request to the upstream `settings` and
    /// `authority` name.
    fn take(&self, settings: ClientSettings, authority: &Authority) -> Option<Box<Upstream>> {
        let up = self.idle.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        let usable = !up.sender.is_closed() && up.settings == settings && up.authority == *authority;
        usable.then_some(up)
    }

    /// Keeps `up` for the client connection's next request, unless it closed. (Its task may
    /// not have marked it ready for the next request yet; the next request waits for that.)
    fn keep(&self, up: Box<Upstream>) {
        if !up.sender.is_closed() {
            *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(up);
        }
    }
}

/// `/path?query` of `uri`.
pub(super) fn origin_form(uri: &Uri) -> Uri {
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
    ) -> Result<Option<Box<Upstream>>, HopFailure> {
        let Some(dial) = connector.try_connect(target.clone()) else { return Ok(None) };
        let io = dial.await.map_err(HopFailure::Connect)?;
        let (sender, conn) =
            Builder::new().handshake(io).await.map_err(|e| HopFailure::Connect(io::Error::other(e)))?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "an upstream connection of a client connection ended with an error");
            }
        })
        .abort_handle();
        Ok(Some(Box::new(Upstream { sender, task, settings, authority })))
    }

    /// Sends `req` and waits for the response head.
    async fn exchange(&mut self, req: Request<Body>) -> Result<Response<Incoming>, Unanswered> {
        if let Err(e) = poll_fn(|cx| self.sender.poll_ready(cx)).await {
            return Err(Unanswered::Unsent(req, e.into()));
        }
        self.sender.try_send_request(req).await.map_err(|mut e| match e.take_message() {
            Some(req) => Unanswered::Unsent(req, e.into_error().into()),
            None => Unanswered::Broken(e.into_error().into()),
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body on the hop: it gives the connection back to its client connection
    /// once the body was read whole.
    struct HopBody {
        inner: Incoming,
        up: Option<Box<Upstream>>,
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
