//! The auth layer as tower plumbing: [`AuthLayer`] wraps a service in [`Auth`], which asks the
//! [`Gate`] for a [`Decision`] and carries it out — forward to the inner service (tagging the
//! response, or adding a handshake's cookies to it, when the decision says so), answer, or take
//! a slow path (wait for a key refetch or a Backend API call, or read a webhook's body) and
//! decide again. Nothing here decides anything.
//!
//! The fast paths allocate no future: [`ResponseFuture`] is a small state machine over the
//! inner service's future or a ready answer. Only the slow paths box one.
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

use super::backend::Resumed;
use super::decide::{Decision, Forward};
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
            Decision::Forward(f) => ResponseFuture::forward(self.inner.call(Request::from_parts(parts, body)), f),
            Decision::Answer(answer) => ResponseFuture::ready(answer.into_response()),
            wait @ (Decision::NeedKid(_) | Decision::Call(_)) => {
                let (gate, inner) = (self.gate.clone(), self.take_ready());
                ResponseFuture::slow(Box::pin(after_waits(gate, inner, parts, body, wait)))
            }
            Decision::VerifyWebhook => {
                let (gate, inner) = (self.gate.clone(), self.take_ready());
                ResponseFuture::slow(Box::pin(after_webhook_body(gate, inner, parts, body)))
            }
        }
    }
}

/// Carries out the waits a decision asks for, one at a time — the one refetch of the key set
/// for an unknown `kid` (single flight), a Backend API call of the browser flow — each bounded
/// by `fetch_timeout`, deciding again after each with what it learned, until the decision
/// forwards or answers. Each wait happens at most once per request.
async fn after_waits<S>(
    gate: Arc<Gate>,
    mut inner: S,
    mut parts: Parts,
    body: Body,
    mut decision: Decision,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let mut resumed = Resumed::first();
    loop {
        match decision {
            Decision::Forward(f) => return Ok(finish(inner.call(Request::from_parts(parts, body)).await?, f)),
            Decision::Answer(answer) => return Ok(answer.into_response()),
            Decision::NeedKid(kid) if !resumed.refetched => {
                gate.keys.refetch_for_unknown_kid(&kid).await;
                resumed.refetched = true;
            }
            Decision::Call(call) if !resumed.answered(&call) => {
                let config = gate.shared.load().config.clone();
                resumed.record(gate.backend.run(&call, &config.clerk).await);
            }
            // A decision never asks twice for the same wait; answer 503 rather than loop if it did.
            Decision::NeedKid(_) | Decision::Call(_) | Decision::VerifyWebhook => {
                let failure = Failure::new(Reason::JwksUnavailable, "the auth decision did not settle");
                return Ok(failure.answer(true).into_response());
            }
        }
        decision = gate.admit_resumed(&mut parts, &resumed);
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
        Decision::NeedKid(_) | Decision::VerifyWebhook | Decision::Call(_) => {
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

/// What a forward adds to the upstream's response: the bypass tag, a handshake's or refresh's
/// cookies.
#[derive(Debug, Default)]
struct ResponseAdds {
    bypass: bool,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl ResponseAdds {
    fn of(f: Forward) -> Self {
        ResponseAdds { bypass: f.tags_response(), headers: f.response_headers }
    }
}

fn finish(resp: Response<Body>, f: Forward) -> Response<Body> {
    add(resp, ResponseAdds::of(f))
}

fn add(mut resp: Response<Body>, adds: ResponseAdds) -> Response<Body> {
    if adds.bypass {
        resp.headers_mut().insert(names::AUTH_BYPASS, HeaderValue::from_static("true"));
    }
    for (name, value) in adds.headers {
        resp.headers_mut().append(name, value);
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
        Forward { #[pin] fut: F, adds: ResponseAdds },
        Ready { resp: Option<Response<Body>> },
        Slow { fut: SlowFuture },
    }
}

impl<F> ResponseFuture<F> {
    fn forward(fut: F, f: Forward) -> Self {
        ResponseFuture { kind: Kind::Forward { fut, adds: ResponseAdds::of(f) } }
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
            KindProj::Forward { fut, adds } => fut.poll(cx).map(|r| r.map(|resp| add(resp, std::mem::take(adds)))),
            KindProj::Ready { resp } => Poll::Ready(Ok(resp.take().unwrap_or_else(|| Response::new(Body::empty())))),
            KindProj::Slow { fut } => fut.as_mut().poll(cx),
        }
    }
}
