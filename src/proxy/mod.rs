//! The upstream hop: for an HTTP/1 client, an upstream connection of its own, whose I/O runs in
//! a task of its own ([`hop`]); for HTTP/2 clients, upgrades, and when no connection of its own
//! is free, one pooled hyper-util client. Bodies are streamed both ways frame by frame
//! (nothing is buffered, so a multi-gigabyte upload passes in flat memory), HTTP/1.1 upgrades to
//! the protocols in `upstream.upgrade_protocols` (WebSocket by default, never h2c) spliced after
//! auth, and failures answered with [`Answer`]s: 502/504 the upstream's fault, 400/408 the
//! client's.
//!
//! By the time a request gets here the auth layer has already cleaned its headers
//! ([`crate::headers::sanitize_request`]) and set the identity headers. The proxy adds only the
//! `X-Forwarded-*` trio, rebuilt from the real connection (keeping what a trusted load balancer
//! said in `X-Forwarded-For` and `X-Forwarded-Proto`, see [`PeerForwarded`]), and `Host` for
//! HTTP/2 clients (whose authority travels in the URI).

mod body;
mod connect;
mod hop;

pub use hop::Hop;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use http::header::{CONNECTION, HOST, UPGRADE};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower::Service;

use crate::answer::{Answer, ClientFault, UpstreamFault};
use crate::config::UpstreamConfig;
pub use crate::headers::ConnInfo;
use crate::headers::{self, names, AuthStatus, PeerForwarded, RequestedUpgrade};
use crate::state::Shared;
use crate::telemetry::names as metric;

type HttpClient = Client<connect::BoundedConnector, Body>;

/// The pooled client and the connector that opens the hop's own connections, built together
/// from the same settings (so they share `upstream.max_connections`).
struct Upstreams {
    settings: ClientSettings,
    /// The `upstream.url` these were built for.
    url: Authority,
    /// `scheme://authority/` of that upstream.
    base: Uri,
    pool: HttpClient,
    connector: connect::BoundedConnector,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the upstream gave no response.
enum Unreached {
    /// No response head within `upstream.response_timeout`.
    Timeout,
    /// No connection could be opened.
    Connect(BoxError),
    /// The connection broke or closed before the response head.
    Broken(BoxError),
}

/// What a pooled client is built from; a reload that changes it builds a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientSettings {
    connect_timeout: Duration,
    max_connections: usize,
    /// For an `https://` upstream, which roots its certificate is checked against.
    tls_roots: Option<u64>,
}

/// The proxy service: forwards to the upstream in the current config.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    client: Arc<ArcSwap<Upstreams>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

fn build_client(up: &UpstreamConfig) -> Upstreams {
    let settings = ClientSettings::of(up);
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    let tls = up.tls.as_ref().map(|t| t.client.clone());
    let connector = connect::BoundedConnector::new(http, tls, settings.max_connections, settings.connect_timeout);
    let pool = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector.clone());
    let scheme = if settings.tls_roots.is_some() { "https" } else { "http" };
    let base = Uri::builder().scheme(scheme).authority(up.url.clone()).path_and_query("/").build();
    // The authority was checked when the config was read; an unusable one fails every request.
    let base = base.unwrap_or_else(|_| Uri::from_static("http://invalid/"));
    Upstreams { settings, url: up.url.clone(), base, pool, connector }
}

impl Proxy {
    /// A proxy to whatever upstream the current runtime config names.
    pub fn new(shared: Arc<Shared>) -> Self {
        let client = build_client(&shared.load().config.upstream);
        Proxy { shared, client: Arc::new(ArcSwap::from_pointee(client)) }
    }

    /// The pool and connector for `up`, rebuilt first when a reload changed the upstream or
    /// its client settings.
    fn upstreams(&self, up: &UpstreamConfig) -> Arc<Upstreams> {
        let current = self.client.load_full();
        if current.settings == ClientSettings::of(up) && current.url == up.url {
            return current;
        }
        let rebuilt = Arc::new(build_client(up));
        self.client.store(rebuilt.clone());
        rebuilt
    }

    /// Sends `req` on this client connection's own upstream connection, or on the pool when
    /// none is free.
    async fn send_on_hop(
        &self,
        hop: Arc<Hop>,
        upstreams: &Upstreams,
        req: Request<Body>,
        response_timeout: Duration,
    ) -> Result<Response<Body>, Unreached> {
        // A client gone while its request is in flight takes the upstream connection with it.
        let cancelled = CountIfCancelled;
        let sent = tokio::time::timeout(
            response_timeout,
            hop.send(&upstreams.connector, upstreams.settings, &upstreams.base, req),
        )
        .await;
        std::mem::forget(cancelled);
        match sent {
            Err(_) => Err(Unreached::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(hop::HopFailure::NoPlace(req))) => {
                Box::pin(send_on_pool(&upstreams.pool, req, response_timeout)).await
            }
            Ok(Err(hop::HopFailure::Connect(e))) => Err(Unreached::Connect(e.into())),
            Ok(Err(hop::HopFailure::Broken(e))) => Err(Unreached::Broken(e)),
        }
    }

    /// Forwards one request and returns the upstream's response, or the gateway's 502/504.
    pub async fn forward(&self, mut req: Request<Body>) -> Response<Body> {
        let (upstreams, response_timeout, body_timeout) = {
            let rt = self.shared.load();
            let up = &rt.config.upstream;
            (self.upstreams(up), up.response_timeout, rt.config.server.request_body_timeout)
        };
        let status = req.extensions().get::<AuthStatus>().copied().unwrap_or(AuthStatus::SignedOut);
        let http1 = req.version() < Version::HTTP_2;
        let conn = req.extensions_mut().remove::<ConnInfo>();
        // Only a trusted peer's requests carry what it said; the common request looks for nothing.
        let peer_said = match &conn {
            Some(c) if c.trusted => req.extensions_mut().remove::<PeerForwarded>().unwrap_or_default(),
            _ => PeerForwarded::default(),
        };

        // Host is preserved; an HTTP/2 client carries it as the URI authority instead.
        if !req.headers().contains_key(HOST) {
            if let Some(v) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                req.headers_mut().insert(HOST, v);
            }
        }
        let host = req.headers().get(HOST).cloned();
        let h = req.headers_mut();
        if let Some(conn) = conn {
            if let Some(v) = conn.forwarded_for(peer_said.chain.as_deref()) {
                h.insert(names::FORWARDED_FOR, v);
            }
            let proto = peer_said.proto.unwrap_or(if conn.tls { "https" } else { "http" });
            h.insert(names::FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if let Some(host) = host {
            h.insert(names::FORWARDED_HOST, host);
        }

        *req.version_mut() = Version::HTTP_11;

        let upgrade = req.extensions_mut().remove::<RequestedUpgrade>();
        // An HTTP/1 client's plain request goes on its own upstream connection; an upgrade
        // (its connection is handed over) and CONNECT go through the pool.
        let hop = match (http1, &upgrade) {
            (true, None) if req.method() != Method::CONNECT => req.extensions_mut().remove::<Arc<Hop>>(),
            _ => None,
        };
        // The hop sends the URI in origin form, what an HTTP/1 client sends already (one in
        // absolute form is cut to it); the pool takes it whole, on the upstream.
        match hop {
            Some(_) if req.uri().authority().is_some() => *req.uri_mut() = hop::origin_form(req.uri()),
            Some(_) => {}
            None => match absolute(&upstreams.base, req.uri()) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return upstream_failure(UpstreamFault::Connect, status),
            },
        }
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        if let Some(upgrade) = &upgrade {
            req.headers_mut().insert(CONNECTION, HeaderValue::from_static("upgrade"));
            req.headers_mut().insert(UPGRADE, upgrade.header().clone());
        }

        // The client's body: a small one is read whole first, so a broken or abandoned upload
        // costs no upstream connection; a larger one streams, watched for faults and stalls.
        let (parts, body) = req.into_parts();
        let mut body_fault = None;
        let body = match body.size_hint().exact() {
            _ if body.is_end_stream() => body,
            Some(len) if len <= body::BUFFER_SMALL_BODIES => match Box::pin(body::read_small(body, body_timeout)).await
            {
                Ok(bytes) => Body::from(bytes),
                Err(fault) => return client_body_failure(fault, status),
            },
            _ => {
                let cell = body::FaultCell::default();
                body_fault = Some(cell.clone());
                Body::new(body::ClientBody::new(body, body_timeout, cell))
            }
        };
        let req = Request::from_parts(parts, body);

        let sent = match hop {
            Some(hop) => self.send_on_hop(hop, &upstreams, req, response_timeout).await,
            None => Box::pin(send_on_pool(&upstreams.pool, req, response_timeout)).await,
        };
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(Unreached::Timeout) => return self.unreached(Unreached::Timeout, status),
            // The client's own body broke first: its fault, whatever the hop then said.
            Err(_) if body_fault.as_ref().is_some_and(|c| c.get().is_some()) => {
                let fault = body_fault.as_ref().and_then(|c| c.get().copied()).unwrap_or(body::BodyFault::Malformed);
                return client_body_failure(fault, status);
            }
            Err(unreached) => return self.unreached(unreached, status),
        };

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            // Only a switch to a protocol the client asked for (and the policy allowed) is
            // spliced; any other 101 is dropped with its connection, never passed on.
            let client_upgrade = match (upgrade, client_upgrade) {
                (Some(upgrade), Some(client_upgrade)) if upgrade.accepts(resp.headers()) => client_upgrade,
                _ => return unexpected_upgrade(resp.headers(), status),
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let _ =
                            tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
        }
        headers::sanitize_response(resp.headers_mut(), switching);
        // The client's connection keeps its own version: an HTTP/1.0 upstream must not turn the
        // gateway's answer into HTTP/1.0 and end the client's keep-alive.
        if resp.version() == Version::HTTP_10 {
            *resp.version_mut() = Version::HTTP_11;
        }
        resp
    }
}

impl Proxy {
    /// The 502/504 for a request the upstream did not answer, counted by kind. The answer says
    /// which of the usual causes it was, so the log line (written by the answer, at most once a
    /// second) tells an operator what to fix.
    fn unreached(&self, unreached: Unreached, status: AuthStatus) -> Response<Body> {
        let url = &self.shared.load().config.upstream.url_text;
        let (fault, kind, message) = match unreached {
            Unreached::Timeout => (UpstreamFault::Timeout, "timeout", None),
            Unreached::Connect(e) => (UpstreamFault::Connect, "connect", Some(connect_failure(&*e, url))),
            Unreached::Broken(e) => (
                UpstreamFault::Broken,
                "broken",
                Some(format!(
                    "The upstream {url} (upstream.url) closed the connection before answering: {}",
                    error_chain(&*e)
                )),
            ),
        };
        metrics::counter!(metric::UPSTREAM_ERRORS, "kind" => kind).increment(1);
        match message {
            Some(message) => {
                Answer::upstream(fault).with_auth_status(status.as_str()).with_message(message).into_response()
            }
            None => upstream_failure(fault, status),
        }
    }
}

/// `uri`'s path and query on the upstream whose `scheme://authority/` is `base`.
fn absolute(base: &Uri, uri: &Uri) -> Result<Uri, http::Error> {
    let path_and_query = uri.path_and_query().map_or_else(|| PathAndQuery::from_static("/"), |p| p.clone());
    let mut builder = Uri::builder().path_and_query(path_and_query);
    if let (Some(scheme), Some(authority)) = (base.scheme(), base.authority()) {
        builder = builder.scheme(scheme.clone()).authority(authority.clone());
    }
    builder.build()
}

/// Sends `req` on the pooled client.
async fn send_on_pool(
    pool: &HttpClient,
    req: Request<Body>,
    response_timeout: Duration,
) -> Result<Response<Body>, Unreached> {
    let mut pending = FinishIfCancelled::new(pool.request(req), response_timeout);
    match tokio::time::timeout(response_timeout, &mut pending).await {
        Err(_) => {
            pending.abandon();
            Err(Unreached::Timeout)
        }
        Ok(Err(e)) if e.is_connect() => Err(Unreached::Connect(Box::new(e))),
        Ok(Err(e)) => Err(Unreached::Broken(Box::new(e))),
        Ok(Ok(resp)) => Ok(resp.map(Body::new)),
    }
}

/// Counts a hop request dropped in flight (its client went away) when dropped; forgotten
/// once the request is answered.
struct CountIfCancelled;

impl Drop for CountIfCancelled {
    fn drop(&mut self) {
        metrics::counter!(metric::CANCELLED_UPSTREAM, "result" => "dropped").increment(1);
    }
}

impl ClientSettings {
    fn of(up: &UpstreamConfig) -> Self {
        ClientSettings {
            connect_timeout: up.connect_timeout,
            max_connections: up.max_connections,
            tls_roots: up.tls.as_ref().map(|t| t.roots_id),
        }
    }
}

/// The gateway's answer when the client's own body failed: 400 or 408, the client's fault.
fn client_body_failure(fault: body::BodyFault, status: AuthStatus) -> Response<Body> {
    let fault = match fault {
        body::BodyFault::Malformed => ClientFault::MalformedBody,
        body::BodyFault::Stalled => ClientFault::BodyTimeout,
    };
    metrics::counter!(metric::CLIENT_BODY_ERRORS, "kind" => fault.label()).increment(1);
    Answer::client_body(fault).with_auth_status(status.as_str()).into_response()
}

/// What went wrong connecting to the upstream, in words an operator can act on.
fn connect_failure(e: &(dyn std::error::Error + 'static), upstream: &str) -> String {
    let mut source = Some(e);
    let mut kind = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
        }
        source = s.source();
    }
    format!("The upstream {upstream} (upstream.url) {}.", connect_cause(kind, &error_chain(e)))
}

/// The cause of a failed upstream connection, from the innermost I/O error kind and the
/// error chain's text (hyper-util reports a failed name lookup only as text).
fn connect_cause(kind: Option<std::io::ErrorKind>, chain: &str) -> String {
    if kind == Some(std::io::ErrorKind::ConnectionRefused) {
        "refused the connection: nothing listens there (is the app running, on that port?)".into()
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        "could not be resolved: the host name has no address here (check the name and the DNS)".into()
    } else if let Some(at) = chain.find("TLS handshake") {
        format!(
            "could not be reached over TLS ({}); it must serve TLS there, with a certificate for its host signed by \
             a CA in upstream.ca_file (or in the system's roots when ca_file is unset)",
            &chain[at..]
        )
    } else if kind == Some(std::io::ErrorKind::TimedOut) || chain.contains("timed out") {
        "did not accept the connection within upstream.connect_timeout".into()
    } else if chain.contains("upstream.max_connections") {
        "has upstream.max_connections connections open and none was free within upstream.connect_timeout".into()
    } else {
        format!("could not be reached ({chain})")
    }
}

/// An error and every error under it, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The gateway's answer when the upstream hop failed: 502 or 504, the upstream's fault.
fn upstream_failure(fault: UpstreamFault, status: AuthStatus) -> Response<Body> {
    Answer::upstream(fault).with_auth_status(status.as_str()).into_response()
}

/// Upstream requests left to finish after their client went away, at most this many at once.
const MAX_DETACHED: usize = 1024;
/// How much of a cancelled request's response body is read to keep its connection.
const DETACHED_DRAIN_BYTES: usize = 1024 * 1024;

static DETACHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The upstream request in flight. If the client goes away first (the gateway's future is
/// dropped: an HTTP/2 stream reset, a closed connection), dropping the request would close
/// its upstream connection, and the next request would open a new one, so a client that
/// cancels in a loop would churn upstream connections. Instead the request is left to finish
/// on its own (bounded by the response timeout, a body drain cap and a cap on how many at
/// once) so its connection goes back to the pool.
struct FinishIfCancelled {
    fut: Option<hyper_util::client::legacy::ResponseFuture>,
    response_timeout: Duration,
}

impl FinishIfCancelled {
    fn new(fut: hyper_util::client::legacy::ResponseFuture, response_timeout: Duration) -> Self {
        FinishIfCancelled { fut: Some(fut), response_timeout }
    }

    /// Gives the request up: dropping it closes its connection (after a timeout, the right end).
    fn abandon(&mut self) {
        self.fut = None;
    }
}

impl Future for FinishIfCancelled {
    type Output = <hyper_util::client::legacy::ResponseFuture as Future>::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Pending;
        };
        let out = Pin::new(fut).poll(cx);
        if out.is_ready() {
            self.fut = None;
        }
        out
    }
}

impl Drop for FinishIfCancelled {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let Some(fut) = self.fut.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if DETACHED.fetch_add(1, Ordering::AcqRel) >= MAX_DETACHED {
            DETACHED.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(metric::CANCELLED_UPSTREAM, "result" => "dropped").increment(1);
            return;
        }
        let deadline = self.response_timeout;
        runtime.spawn(async move {
            use http_body_util::BodyExt;
            let finished = match tokio::time::timeout(deadline, fut).await {
                Ok(Ok(resp)) => {
                    let drain = http_body_util::Limited::new(resp.into_body(), DETACHED_DRAIN_BYTES).collect();
                    matches!(tokio::time::timeout(deadline, drain).await, Ok(Ok(_)))
                }
                _ => false,
            };
            let result = if finished { "finished" } else { "dropped" };
            metrics::counter!(metric::CANCELLED_UPSTREAM, "result" => result).increment(1);
            DETACHED.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// The 502 for a `101` that is not spliced: counted; the answer logs itself (the upstream's
/// fault: at most one WARN a second), and what the upstream switched to goes to DEBUG.
fn unexpected_upgrade(response: &http::HeaderMap, status: AuthStatus) -> Response<Body> {
    metrics::counter!(metric::UPSTREAM_ERRORS, "kind" => "upgrade").increment(1);
    let upgrade = response.get(UPGRADE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    tracing::debug!(?upgrade, "upstream switched protocols unasked; answered 502");
    upstream_failure(UpstreamFault::UnexpectedUpgrade, status)
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let resp = this.forward(req).await;
            // The upstream's 5xx and the gateway's own 502/504, for the console's chart.
            if resp.status().is_server_error() {
                this.shared.outcomes.record_now(crate::telemetry::history::Lane::SERVER_ERROR);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::connect_cause;

    #[test]
    fn a_failed_connection_names_its_cause() {
        let table = [
            (
                Some(ErrorKind::ConnectionRefused),
                "client error (Connect): tcp connect error: Connection refused",
                "refused the connection",
            ),
            (
                None,
                "client error (Connect): dns error: failed to lookup address information: Name or service not known",
                "could not be resolved",
            ),
            (
                Some(ErrorKind::TimedOut),
                "client error (Connect): tcp connect error: timed out",
                "within upstream.connect_timeout",
            ),
            (
                None,
                "client error (Connect): upstream.max_connections connections to the upstream are open",
                "upstream.max_connections",
            ),
            (
                Some(ErrorKind::InvalidData),
                "client error (Connect): TLS handshake failed: invalid peer certificate: UnknownIssuer",
                "could not be reached over TLS (TLS handshake failed: invalid peer certificate: UnknownIssuer); ",
            ),
            (
                None,
                "client error (Connect): TLS handshake did not finish within upstream.connect_timeout",
                "could not be reached over TLS (TLS handshake did not finish within upstream.connect_timeout)",
            ),
            (
                Some(ErrorKind::PermissionDenied),
                "client error (Connect): Permission denied",
                "could not be reached (client error",
            ),
        ];
        for (kind, chain, expected) in table {
            let cause = connect_cause(kind, chain);
            assert!(cause.contains(expected), "{chain:?} → {cause:?}, expected {expected:?}");
        }
    }
}
