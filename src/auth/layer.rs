//! The auth layer as tower plumbing: [`AuthLayer`] wraps a service in [`Auth`], which asks the
//! [`Gate`] for a [`Decision`] and carries it out — forward to the inner service (tagging the
//! response when the decision says so), answer, or take one of the two slow paths (wait for a
//! key refetch, or read a webhook's body) and decide again. Nothing here decides anything.
//!
//! The fast paths allocate no future: [`ResponseFuture`] is a small state machine over the
//! inner service's future or a ready answer. Only the two slow paths box one.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(gate: Arc<clerkgate::auth::Gate>) {
//! use tower::ServiceBuilder;
//! let svc = ServiceBuilder::new()
//!     .layer(clerkgate::auth::AuthLayer::new(gate))
//!     .service_fn(|req: http::Request<axum::body::Body>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
//!     });
//! # }
//! ```
//!
//! # Ordering
//!
//! The layer must sit *outside* the proxy service and see the request before anything else
//! reads its headers: it removes every client-supplied reserved header first, in every mode.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::decide::Decision;
use super::gate::Gate;
use super::webhook::Verified;
use crate::answer::{Answer, ClientFault};
use crate::headers::names;
use crate::reason::{Failure, Reason};
use crate::webhooks::{Head, Journal, Outcome, Recorded};

/// Largest webhook body read for signature verification; Clerk's events are a few KiB.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

// === impl AuthLayer ===

/// Applies [`Auth`] to a service. See the module docs for ordering.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    gate: Arc<Gate>,
}

impl AuthLayer {
    /// A layer deciding with `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        AuthLayer { gate }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, gate: self.gate.clone() }
    }
}

// === impl Auth ===

/// Authenticates each request, then forwards it to the inner service or answers it.
/// Produced by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Auth<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, gate: Arc<Gate>) -> Self {
        Auth { inner, gate }
    }
}

impl<S: Clone> Auth<S> {
    /// Takes the service that was driven to readiness for a slow path, leaving a clone.
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S> Service<Request<Body>> for Auth<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match self.gate.admit(&mut parts, false) {
            Decision::Forward(f) => {
                ResponseFuture::forward(self.inner.call(Request::from_parts(parts, body)), f.tags_response())
            }
            Decision::Answer(answer) => ResponseFuture::ready(answer.into_response()),
            Decision::NeedKid(kid) => {
                let (gate, inner) = (self.gate.clone(), self.take_ready());
                ResponseFuture::slow(Box::pin(after_refetch(gate, inner, parts, body, kid)))
            }
            Decision::VerifyWebhook => {
                let (gate, inner) = (self.gate.clone(), self.take_ready());
                ResponseFuture::slow(Box::pin(after_webhook_body(gate, inner, parts, body)))
            }
        }
    }
}

/// Waits for the one refetch of the key set for `kid` (single flight, bounded by
/// `fetch_timeout`), then decides again with the `kid` final.
async fn after_refetch<S>(
    gate: Arc<Gate>,
    mut inner: S,
    mut parts: Parts,
    body: Body,
    kid: String,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    gate.keys.refetch_for_unknown_kid(&kid).await;
    match gate.admit(&mut parts, true) {
        Decision::Forward(f) => Ok(tag(inner.call(Request::from_parts(parts, body)).await?, f.tags_response())),
        Decision::Answer(answer) => Ok(answer.into_response()),
        // A decision with the kid final never asks again; answer 503 rather than panic if it did.
        Decision::NeedKid(_) | Decision::VerifyWebhook => {
            let failure = Failure::new(Reason::JwksUnavailable, "key refetch did not settle");
            Ok(failure.answer(true).into_response())
        }
    }
}

/// Reads a webhook's body (at most [`MAX_WEBHOOK_BYTES`]) and forwards it if its signature
/// verifies.
async fn after_webhook_body<S>(
    gate: Arc<Gate>,
    mut inner: S,
    mut parts: Parts,
    body: Body,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    // The whole read is bounded by request_body_timeout, so a client that sends a webhook's
    // head and then stalls cannot hold its connection.
    let timeout = gate.shared.load().config.server.request_body_timeout;
    let read = http_body_util::Limited::new(body, MAX_WEBHOOK_BYTES).collect();
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(read) => read.ok().map(|c| c.to_bytes()),
        Err(_) => return Ok(Answer::client_body(ClientFault::BodyTimeout).into_response()),
    };
    match gate.admit_webhook(&mut parts, bytes.as_ref()) {
        Decision::Forward(_) => {
            let body = bytes.unwrap_or_default();
            match (gate.webhooks.clone(), parts.extensions.get::<Verified>().cloned()) {
                (Some(journal), Some(delivery)) => journalled(&journal, inner, parts, body, delivery).await,
                _ => inner.call(Request::from_parts(parts, Body::from(body))).await,
            }
        }
        Decision::Answer(answer) => Ok(answer.into_response()),
        Decision::NeedKid(_) | Decision::VerifyWebhook => {
            Ok(Failure::new(Reason::WebhookInvalid, "webhook check did not settle").answer(false).into_response())
        }
    }
}

/// Journals a verified webhook (durable before anything is answered), then forwards it — unless
/// it was delivered already (or is being delivered), which is answered 200 without a second
/// delivery — and notes how the delivery ended. An event that cannot be journalled is not
/// forwarded: 503, and Svix tries again.
async fn journalled<S>(
    journal: &Journal,
    mut inner: S,
    parts: Parts,
    body: Bytes,
    delivery: Verified,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let head = Head { svix_id: delivery.id.clone(), svix_timestamp: delivery.timestamp_s, path, content_type };
    match journal.record(head, body.clone()).await {
        Ok(Recorded::New | Recorded::Retry) => {
            let resp = inner.call(Request::from_parts(parts, Body::from(body))).await?;
            journal.mark(delivery.id, Outcome { status: Some(resp.status().as_u16()), replay: false });
            Ok(resp)
        }
        Ok(Recorded::Duplicate(state)) => Ok(Answer::webhook_duplicate(&delivery.id, state.as_str()).into_response()),
        Err(e) => Ok(Answer::webhook_not_journalled(e.to_string()).into_response()),
    }
}

fn tag(mut resp: Response<Body>, tag_response: bool) -> Response<Body> {
    if tag_response {
        resp.headers_mut().insert(names::AUTH_BYPASS, HeaderValue::from_static("true"));
    }
    resp
}

type SlowFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

pin_project_lite::pin_project! {
    /// Response future of [`Auth`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Forward { #[pin] fut: F, tag_response: bool },
        Ready { resp: Option<Response<Body>> },
        Slow { fut: SlowFuture },
    }
}

impl<F> ResponseFuture<F> {
    fn forward(fut: F, tag_response: bool) -> Self {
        ResponseFuture { kind: Kind::Forward { fut, tag_response } }
    }
    fn ready(resp: Response<Body>) -> Self {
        ResponseFuture { kind: Kind::Ready { resp: Some(resp) } }
    }
    fn slow(fut: SlowFuture) -> Self {
        ResponseFuture { kind: Kind::Slow { fut } }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Forward { fut, tag_response } => {
                let tag_response = *tag_response;
                fut.poll(cx).map(|r| r.map(|resp| tag(resp, tag_response)))
            }
            KindProj::Ready { resp } => Poll::Ready(Ok(resp.take().unwrap_or_else(|| Response::new(Body::empty())))),
            KindProj::Slow { fut } => fut.as_mut().poll(cx),
        }
    }
}
