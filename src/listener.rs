//! The listener loop: accepts TCP connections and serves each with hyper-util's auto builder
//! (HTTP/1.1, and HTTP/2 with prior knowledge), upgrades enabled, and a graceful drain on
//! shutdown. With `server.tls_cert`, each connection is TLS first (ALPN `h2` or `http/1.1`;
//! the certificate comes from [`crate::tls`]), its handshake inside the connection's own task.
//!
//! Every connection is bounded in time and number, so that no client can hold a descriptor
//! or an upstream connection for free:
//!
//! - **Limits at accept**: at most `server.max_connections` open at once, and at most
//!   `server.max_connections_per_client` from one client address. A connection over either
//!   limit gets a one-shot `503` with reason `too-many-connections` and is closed. A peer in
//!   `server.trusted_proxies` (a load balancer, carrying many clients) counts only in the
//!   total; the client a PROXY header names counts under its own address.
//! - **Who the client is** ([`proxy_header`]): with `server.proxy_protocol`, a connection from
//!   a trusted peer may start with a PROXY header naming the client; one from any other peer
//!   that starts with a PROXY signature is closed unserved. A trusted client's requests carry
//!   what it said in `X-Forwarded-For` and `X-Forwarded-Proto` ([`PeerForwarded`]).
//! - **A watchdog per connection**, one timer in the connection's own task (no task or timer
//!   per request), closes the connection when:
//!   - no first request arrived within `header_read_timeout` of accept — this covers a
//!     connection that never sends a byte, a partial HTTP/2 preface, and a preface with
//!     SETTINGS and nothing after (protocol detection itself is inside this window);
//!   - on a kept HTTP/1 connection, the next request's head began to arrive and was not whole
//!     within `header_read_timeout` of its first byte ([`WatchedIo`] notes the first bytes that
//!     arrive once the idle connection has found nothing to read, and the watchdog brings its
//!     timer forward; hyper's own header timer is off, since it starts when the connection
//!     goes idle and so would close idle keep-alive connections at `header_read_timeout`
//!     instead of `idle_timeout`);
//!   - no request has been in flight for `idle_timeout` (HTTP/1.1 keep-alive and HTTP/2 alike;
//!     an HTTP/2 header block that never ends is not a request);
//!   - a response piece waited `send_timeout` for the client to take it (a client that stops
//!     reading, or holds its HTTP/2 flow-control window at zero).
//! - **HTTP/2 keep-alive pings**: a peer that does not answer a ping within
//!   [`H2_PING_TIMEOUT`] is gone.
//!
//! The request-body side (a client that stops sending its body) is bounded in the proxy hop
//! by `server.request_body_timeout`, see [`crate::proxy`].

mod proxy_header;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::answer::{Answer, Fault};
use crate::config::{ServerConfig, TrustedProxies};
use crate::headers::PeerForwarded;
use crate::proxy::{ConnInfo, Hop};
use crate::telemetry::names as metric;

/// How often an idle HTTP/2 connection is pinged.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long an HTTP/2 ping may go unanswered before the connection is closed.
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams one HTTP/2 connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 128;
/// Streams the gateway may reset because of a client's protocol error, over a connection's
/// life, before it sends GOAWAY (the "MadeYouReset" class; h2's default is 1,024).
pub const H2_MAX_LOCAL_RESETS: usize = 64;
/// After a watchdog's graceful close, how long the connection may take before it is dropped
/// outright. The watchdog closes only connections with nothing in flight, so this is short:
/// it lets an HTTP/2 GOAWAY go out, and does not wait on a peer that never acknowledges it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Connections the health listener holds at once.
const HEALTH_MAX_CONNECTIONS: usize = 128;
/// Descriptors kept back from `max_connections` for upstream connections, the admin listener,
/// state files and the JWKS fetch.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The time limits, counts and trust every data-plane connection is held to, fixed at start.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// From accept to the first complete request head.
    pub header_read_timeout: Duration,
    /// With no request in flight.
    pub idle_timeout: Duration,
    /// For a response piece to be taken by the client.
    pub send_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_client: usize,
    /// How long a shutdown waits for in-flight requests.
    pub grace: Duration,
    /// Peers that speak for their clients (`server.trusted_proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Read a PROXY header from trusted peers (`server.proxy_protocol`).
    pub proxy_protocol: bool,
    /// This listener's connections count in the `clerkgate_connections_*` metrics (the data
    /// plane's do; the health listener's do not, so the metrics describe client traffic).
    pub counted: bool,
}

impl ConnLimits {
    /// The limits from `[server]`, with `max_connections` capped by the descriptors the process
    /// may open (`nofile`, after [`raise_fd_limit`]).
    pub fn new(server: &ServerConfig, nofile: Option<u64>) -> Self {
        let mut max_connections = server.max_connections;
        if let Some(nofile) = nofile {
            let room = nofile.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            if (max_connections as u64) > room {
                tracing::warn!(
                    configured = max_connections,
                    effective = room,
                    nofile,
                    "server.max_connections is above what the descriptor limit allows; capped (raise the nofile limit to use more)"
                );
                max_connections = room as usize;
            }
        }
        ConnLimits {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            send_timeout: server.send_timeout,
            max_connections,
            max_connections_per_client: server.max_connections_per_client.min(max_connections),
            grace: server.shutdown_grace,
            trusted_proxies: server.trusted_proxies.clone(),
            proxy_protocol: server.proxy_protocol,
            counted: true,
        }
    }

    /// The health listener's limits (`server.health_listen`): the data plane's time limits,
    /// few connections — the kubelet's probes and a Prometheus scrape — and no load-balancer
    /// trust. It is reachable from the pod network, so a client that opens connections and
    /// sends nothing is cut off there too.
    pub fn for_health(server: &ServerConfig) -> Self {
        ConnLimits {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            send_timeout: server.send_timeout,
            max_connections: HEALTH_MAX_CONNECTIONS,
            max_connections_per_client: HEALTH_MAX_CONNECTIONS,
            grace: server.shutdown_grace,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            counted: false,
        }
    }
}

/// Raises the soft `nofile` limit to the hard limit and returns the limit now in force (None
/// where it cannot be read). A gateway is made of descriptors: the default soft limit of
/// 1,024 is far below what a busy edge needs.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current, limit.maximum);
    match (soft, hard) {
        (Some(s), Some(h)) if s < h => {
            let raised = rustix::process::Rlimit { current: Some(h), maximum: Some(h) };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::info!(from = s, to = h, "raised the open-descriptor limit to its hard maximum");
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(soft = s, hard = h, error = %e, "could not raise the open-descriptor limit");
                    Some(s)
                }
            }
        }
        (Some(s), Some(h)) => {
            tracing::info!(nofile = s, hard = h, "open-descriptor limit already at its hard maximum");
            Some(s)
        }
        (Some(s), None) => Some(s),
        (None, _) => None,
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting and waits up to
/// `limits.grace` for open connections to finish their in-flight requests. With `tls`, every
/// connection is TLS: its handshake runs in the connection's own task and must finish within
/// `header_read_timeout` of accept, like the first request it carries.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ConnLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    // The watchdog bounds request heads (see the module docs): hyper's timer would also bound
    // the idle time between keep-alive requests.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS);
    let builder = Arc::new(builder);
    let tls = tls.map(TlsAcceptor::from);
    let limits = Arc::new(limits);
    let gate = Arc::new(Admission::new(limits.max_connections, limits.max_connections_per_client, limits.counted));
    // Every connection task holds a receiver: `send` asks them to drain, `closed` says they have.
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let trusted = limits.trusted_proxies.contains(remote.ip());
        let slot = match gate.admit((!trusted).then_some(remote.ip())) {
            Ok(slot) => slot,
            Err(refused) => {
                refuse(&stream, refused, limits.counted);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(ConnWatch::new());
        let (builder, service, limits, tls) = (builder.clone(), service.clone(), limits.clone(), tls.clone());
        let mut drain = drain_rx.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut slot = slot;
            // PROXY header (when configured), then TLS (when configured), then HTTP.
            let Some(mut info) = open(&mut stream, remote, trusted, &mut slot, &limits, watch.born).await else {
                return;
            };
            let Some(tls) = tls else {
                return serve_http(&builder, stream, service, info, watch, &limits, drain).await;
            };
            let Some(stream) = handshake(&tls, stream, &watch, &limits, &mut drain).await else { return };
            info.tls = true;
            serve_http(&builder, stream, service, info, watch, &limits, drain).await;
        });
    }
    drop(listener);
    drop(drain_rx);
    let _ = drain_tx.send(true);
    if tokio::time::timeout(limits.grace, drain_tx.closed()).await.is_err() {
        tracing::warn!(grace = ?limits.grace, "in-flight requests did not finish within the shutdown grace period");
    }
}

/// Serves HTTP on a client connection (after its PROXY header and TLS handshake, if any), its
/// reads watched ([`WatchedIo`]) and the whole under the watchdog ([`drive`]), to its end.
async fn serve_http<S, I>(
    builder: &Builder<TokioExecutor>,
    stream: I,
    service: S,
    info: ConnInfo,
    watch: Arc<ConnWatch>,
    limits: &ConnLimits,
    drain: watch::Receiver<bool>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let per_request = PerRequest { inner: service, info, watch: watch.clone(), hop: Hop::for_connection() };
    let io = TokioIo::new(WatchedIo { io: stream, watch: watch.clone() });
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(per_request)).into_owned();
    drive(conn, &watch, limits, drain).await;
}

/// Runs the TLS handshake of a new connection, which must finish by the connection's
/// first-request deadline (`header_read_timeout` from accept): a client that connects and
/// never says hello is cut off like one that never sends a request. `None` when the handshake
/// failed, ran out of time, or the gateway began to shut down.
async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    watch: &ConnWatch,
    limits: &ConnLimits,
    drain: &mut watch::Receiver<bool>,
) -> Option<TlsStream<TcpStream>> {
    let deadline = watch.born + limits.header_read_timeout;
    tokio::select! {
        done = tokio::time::timeout_at(deadline, tls.accept(stream)) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                metrics::counter!(metric::TLS_HANDSHAKE_FAILURES).increment(1);
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics::counter!(metric::CONNECTIONS_CLOSED, "why" => CloseWhy::NoRequest.as_str()).increment(1);
                tracing::debug!("closing a connection: no TLS handshake within server.header_read_timeout");
                None
            }
        },
        _ = drain.changed() => None,
    }
}

/// A connection's first step, before anything reads it as HTTP: who its client is. The socket
/// peer, or — with `server.proxy_protocol`, from a trusted peer — the source its PROXY header
/// names, which then counts under the per-client limit. `None`: the connection was closed (a
/// PROXY header from an untrusted peer, a broken one, none complete within
/// `header_read_timeout` of `born`, or a proxied client over its limit).
async fn open(
    stream: &mut TcpStream,
    peer: SocketAddr,
    peer_trusted: bool,
    slot: &mut Slot,
    limits: &ConnLimits,
    born: Instant,
) -> Option<ConnInfo> {
    let direct = || Some(ConnInfo::new(peer, false, peer_trusted));
    if !limits.proxy_protocol {
        return direct();
    }
    let source = match tokio::time::timeout_at(
        born + limits.header_read_timeout,
        proxy_header::read(stream, peer_trusted),
    )
    .await
    {
        Ok(Ok(None)) => return direct(),
        // An IPv4 client in a v2 header's IPv6 block is the IPv4 address it carries.
        Ok(Ok(Some(source))) => SocketAddr::new(source.ip().to_canonical(), source.port()),
        Ok(Err(refusal)) => {
            if refusal.is_protocol() {
                metrics::counter!(metric::CONNECTIONS_REFUSED, "why" => "proxy_protocol").increment(1);
            }
            tracing::debug!(%peer, %refusal, "closed a connection at its start");
            return None;
        }
        Err(_) => {
            metrics::counter!(metric::CONNECTIONS_CLOSED, "why" => CloseWhy::NoRequest.as_str()).increment(1);
            tracing::debug!(%peer, "no whole PROXY header within server.header_read_timeout; closing the connection");
            return None;
        }
    };
    let trusted = limits.trusted_proxies.contains(source.ip());
    if !trusted {
        if let Err(refused) = slot.attribute(source.ip()) {
            refuse(stream, refused, limits.counted);
            discard_arrived(stream);
            return None;
        }
    }
    Some(ConnInfo::new(source, false, trusted))
}

/// Reads and drops what has already arrived on a connection about to be closed (its request,
/// after the PROXY header was read), at most 64 KiB and without waiting: a socket closed
/// with unread bytes is reset, and a reset can discard the answer just written before the
/// client reads it.
fn discard_arrived(stream: &TcpStream) {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// The connection future's one method the watchdog needs.
trait GracefulClose: Future {
    fn close_gracefully(self: Pin<&mut Self>);
}

impl<I, S, E, B> GracefulClose for hyper_util::server::conn::auto::UpgradeableConnection<'static, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: HttpBody + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
    Self: Future,
{
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives one connection to its end under the watchdog and the shutdown signal.
async fn drive<C, T, E>(conn: C, watch: &ConnWatch, limits: &ConnLimits, mut drain: watch::Receiver<bool>)
where
    C: GracefulClose<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let timer = tokio::time::sleep_until(watch.born + limits.header_read_timeout);
    tokio::pin!(timer);
    // The head start (`ConnWatch::head_from`) the timer last took into account.
    let mut head_seen = 0;
    // Once closing, the instant after which the connection is dropped outright.
    let mut closing: Option<Instant> = None;
    let mut draining = false;
    loop {
        tokio::select! {
            // The connection first: a read in its poll that starts a head is seen by the timer
            // branch in the same pass.
            biased;
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = std::future::poll_fn(|cx| {
                let head = watch.head_from.load(Ordering::Acquire);
                if head != head_seen {
                    head_seen = head;
                    match watch.head_deadline(limits) {
                        Some(deadline) if closing.is_none() && deadline < timer.deadline() => {
                            timer.as_mut().reset(deadline);
                        }
                        _ => {}
                    }
                }
                timer.as_mut().poll(cx)
            }) => {
                let now = Instant::now();
                if let Some(until) = closing {
                    // The graceful close did not finish in time: drop the connection.
                    if now >= until {
                        return;
                    }
                    timer.as_mut().reset(until);
                    continue;
                }
                match watch.check(now, limits) {
                    Check::Fine(next) => timer.as_mut().reset(next),
                    Check::Close(why) => {
                        if limits.counted {
                            metrics::counter!(metric::CONNECTIONS_CLOSED, "why" => why.as_str()).increment(1);
                        }
                        tracing::debug!(why = why.as_str(), "closing a connection");
                        if why == CloseWhy::SendStalled {
                            // The client is not reading: nothing graceful can reach it.
                            return;
                        }
                        conn.as_mut().close_gracefully();
                        let until = now + CLOSE_GRACE;
                        closing = Some(until);
                        timer.as_mut().reset(until);
                    }
                }
            }
            changed = drain.changed(), if !draining => {
                draining = true;
                if changed.is_ok() && closing.is_none() {
                    conn.as_mut().close_gracefully();
                    let until = Instant::now() + limits.grace;
                    closing = Some(until);
                    timer.as_mut().reset(until);
                }
            }
        }
    }
}

/// Why the watchdog closed a connection (the `why` label of [`metric::CONNECTIONS_CLOSED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseWhy {
    /// No first request within `header_read_timeout` of accept, or on a kept HTTP/1
    /// connection no whole head within `header_read_timeout` of its first byte.
    NoRequest,
    /// No request in flight for `idle_timeout`.
    Idle,
    /// A response piece waited `send_timeout` for the client.
    SendStalled,
}

impl CloseWhy {
    fn as_str(self) -> &'static str {
        match self {
            CloseWhy::NoRequest => "no_request",
            CloseWhy::Idle => "idle",
            CloseWhy::SendStalled => "send_stalled",
        }
    }
}

enum Check {
    /// Look again at this instant.
    Fine(Instant),
    Close(CloseWhy),
}

/// What the watchdog knows about one connection. Written by the connection's requests,
/// response bodies (which, for HTTP/2, run on other tasks) and reads, read by the watchdog.
/// Times are milliseconds since `born`.
#[derive(Debug)]
struct ConnWatch {
    born: Instant,
    /// A request head has arrived at least once.
    served: AtomicBool,
    /// The connection speaks HTTP/2 (known from its first request): its reads between requests
    /// are frames such as pings, not the start of a head.
    http2: AtomicBool,
    /// An idle HTTP/1 connection found nothing to read: the next bytes begin a request head.
    /// (Bytes read before that, such as the rest of a body hyper drains after its response, do
    /// not.)
    awaiting_head: AtomicBool,
    /// When the next request's head began to arrive on an idle HTTP/1 connection, plus one
    /// (0: none is arriving).
    head_from: AtomicU64,
    /// Requests whose response has not been fully handed to the client (or dropped).
    in_flight: AtomicU32,
    /// When `in_flight` last dropped to zero.
    idle_since: AtomicU64,
    /// Response bodies holding a piece the client has not taken yet.
    waiting: AtomicU32,
    /// When the client last took a response piece.
    taken_at: AtomicU64,
}

impl ConnWatch {
    fn new() -> Self {
        ConnWatch {
            born: Instant::now(),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            awaiting_head: AtomicBool::new(false),
            head_from: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            waiting: AtomicU32::new(0),
            taken_at: AtomicU64::new(0),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.born).as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    /// Whether reads on the connection now say anything about a request head: an HTTP/1
    /// connection that has served a request and has none in flight. (Before the first request
    /// the watchdog's deadline is `header_read_timeout` from accept already.)
    fn between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.served.load(Ordering::Acquire)
            && !self.http2.load(Ordering::Acquire)
    }

    /// A read found nothing: an idle connection whose next head has not begun now waits for
    /// it. (Once a head has begun, its clock runs until the request starts: a client that
    /// trickles its head byte by byte does not restart it.)
    fn read_nothing(&self) {
        if self.head_from.load(Ordering::Acquire) == 0 && self.between_requests() {
            self.awaiting_head.store(true, Ordering::Release);
        }
    }

    /// A read brought bytes: on a connection waiting for a head they are its first, and its
    /// clock starts (the watchdog brings its timer forward to the head's deadline).
    fn read_bytes(&self) {
        if self.awaiting_head.load(Ordering::Acquire) && self.between_requests() {
            self.awaiting_head.store(false, Ordering::Release);
            self.head_from.store(self.ms(Instant::now()) + 1, Ordering::Release);
        }
    }

    /// When the head that began to arrive on an idle connection must be whole, if one did.
    fn head_deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        match self.head_from.load(Ordering::Acquire) {
            0 => None,
            from => Some(self.at(from - 1) + limits.header_read_timeout),
        }
    }

    fn check(&self, now: Instant, limits: &ConnLimits) -> Check {
        let (deadline, why) = if self.in_flight.load(Ordering::Acquire) == 0 {
            if !self.served.load(Ordering::Acquire) {
                (self.born + limits.header_read_timeout, CloseWhy::NoRequest)
            } else {
                let idle = (self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle_timeout, CloseWhy::Idle);
                match self.head_deadline(limits) {
                    Some(head) if head < idle.0 => (head, CloseWhy::NoRequest),
                    _ => idle,
                }
            }
        } else if self.waiting.load(Ordering::Acquire) > 0 {
            (self.at(self.taken_at.load(Ordering::Acquire)) + limits.send_timeout, CloseWhy::SendStalled)
        } else {
            // Requests in flight, and the client takes what it is given: look again later.
            return Check::Fine(now + limits.send_timeout.min(limits.idle_timeout));
        };
        if now >= deadline {
            Check::Close(why)
        } else {
            Check::Fine(deadline)
        }
    }

    fn request_started(&self, http2: bool) {
        // Before `served`: a read that sees the connection served sees its protocol too.
        if http2 {
            self.http2.store(true, Ordering::Release);
        }
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.awaiting_head.store(false, Ordering::Release);
        self.head_from.store(0, Ordering::Release);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.ms(Instant::now()), Ordering::Release);
        }
    }
}

/// Counts a request in flight from its head until its response body is done or dropped.
#[derive(Debug)]
struct InFlight(Arc<ConnWatch>);

impl InFlight {
    fn start(watch: &Arc<ConnWatch>, http2: bool) -> Self {
        watch.request_started(http2);
        InFlight(watch.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The per-connection service hyper calls for each request: tags the request with the
/// connection's facts (and, for HTTP/1, with the connection's own upstream hop) and ties its
/// response body to the watchdog.
#[derive(Clone)]
struct PerRequest<S> {
    inner: S,
    info: ConnInfo,
    watch: Arc<ConnWatch>,
    hop: Arc<Hop>,
}

impl<S> Service<Request<hyper::body::Incoming>> for PerRequest<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<WatchedBody>;
    type Error = Infallible;
    type Future = PerRequestFuture<S::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = Some(InFlight::start(&self.watch, req.version() == http::Version::HTTP_2));
        let mut req = req.map(Body::new);
        if self.info.trusted {
            // Read before hygiene strips every client copy of these headers.
            let said = PeerForwarded::read(req.headers());
            if said.replaced {
                metrics::counter!(metric::FORWARDED_REPLACED).increment(1);
                tracing::debug!(peer = %self.info.remote(), "a trusted peer's X-Forwarded-For or X-Forwarded-Proto was not usable; rebuilt");
            }
            req.extensions_mut().insert(said);
        }
        req.extensions_mut().insert(self.info.clone());
        if req.version() < http::Version::HTTP_2 {
            req.extensions_mut().insert(self.hop.clone());
        }
        PerRequestFuture { fut: self.inner.call(req), in_flight }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`PerRequest`]: no box, no task.
    struct PerRequestFuture<F> {
        #[pin]
        fut: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for PerRequestFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<WatchedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.fut.poll(cx));
        Poll::Ready(resp.map(|resp| {
            let in_flight = this.in_flight.take().expect("polled after completion");
            resp.map(|inner| WatchedBody::new(inner, in_flight))
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells the watchdog when it holds a piece the client has not taken,
    /// and ends the request's time in flight when it is done or dropped.
    pub struct WatchedBody {
        #[pin]
        inner: Body,
        holding: bool,
        in_flight: InFlight,
    }

    impl PinnedDrop for WatchedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.holding {
                this.in_flight.0.waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl WatchedBody {
    /// A body that is not empty holds its first piece from the start: over HTTP/2, hyper asks
    /// for a piece only once the client's flow-control window has room, so a client that never
    /// opens its window never takes one.
    fn new(inner: Body, in_flight: InFlight) -> Self {
        let holding = !inner.is_end_stream();
        if holding {
            let watch = &in_flight.0;
            watch.taken_at.store(watch.ms(Instant::now()), Ordering::Release);
            watch.waiting.fetch_add(1, Ordering::AcqRel);
        }
        WatchedBody { inner, holding, in_flight }
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let watch = &this.in_flight.0;
        // Being asked for more means the client took the piece this body held, if any.
        let took = std::mem::take(this.holding);
        let polled = this.inner.poll_frame(cx);
        let holds = matches!(&polled, Poll::Ready(Some(Ok(frame))) if frame.is_data());
        if took || holds {
            // Progress, and the start of the wait for a piece now held: one clock read for both.
            watch.taken_at.store(watch.ms(Instant::now()), Ordering::Release);
        }
        match (took, holds) {
            (true, false) => drop(watch.waiting.fetch_sub(1, Ordering::AcqRel)),
            (false, true) => drop(watch.waiting.fetch_add(1, Ordering::AcqRel)),
            _ => {}
        }
        *this.holding = holds;
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection's stream (TCP, or TLS over it) that tells the watchdog what its reads
/// find ([`ConnWatch::read_nothing`], [`ConnWatch::read_bytes`]); writes pass through untouched.
struct WatchedIo<S> {
    io: S,
    watch: Arc<ConnWatch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        match polled {
            Poll::Pending => self.watch.read_nothing(),
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.watch.read_bytes(),
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Total,
    PerClient,
}

/// Counts open connections, in total and per client address (a trusted peer's only in total).
#[derive(Debug)]
struct Admission {
    max_total: usize,
    max_per_client: usize,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Sets `clerkgate_connections_open`.
    counted: bool,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
struct Slot {
    admission: Arc<Admission>,
    /// The client address it counts under; `None` for a trusted peer.
    ip: Option<IpAddr>,
}

impl Admission {
    fn new(max_total: usize, max_per_client: usize, counted: bool) -> Self {
        Admission {
            max_total,
            max_per_client,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            counted,
        }
    }

    /// Admits a connection from `ip`, or, with `None`, from a trusted peer (counted only in
    /// the total).
    fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Slot, Refused> {
        let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let total = self.total.load(Ordering::Relaxed);
        if total >= self.max_total {
            return Err(Refused::Total);
        }
        if let Some(ip) = ip {
            self.count_client(&mut per_client, ip)?;
        }
        self.total.store(total + 1, Ordering::Relaxed);
        if self.counted {
            metrics::gauge!(metric::CONNECTIONS_OPEN).set((total + 1) as f64);
        }
        Ok(Slot { admission: self.clone(), ip })
    }

    fn count_client(&self, per_client: &mut HashMap<IpAddr, usize>, ip: IpAddr) -> Result<(), Refused> {
        let count = per_client.entry(ip).or_insert(0);
        if *count >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        *count += 1;
        Ok(())
    }

    fn uncount_client(per_client: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
        if let Some(count) = per_client.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&ip);
            }
        }
    }
}

impl Slot {
    /// Counts this connection under the client `ip` from now on (the client a trusted peer's
    /// PROXY header named), or refuses it when that client is at its limit.
    fn attribute(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let a = &self.admission;
        let mut per_client = a.per_client.lock().unwrap_or_else(|e| e.into_inner());
        a.count_client(&mut per_client, ip)?;
        if let Some(old) = self.ip.replace(ip) {
            Admission::uncount_client(&mut per_client, old);
        }
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let a = &self.admission;
        let mut per_client = a.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = self.ip {
            Admission::uncount_client(&mut per_client, ip);
        }
        let total = a.total.load(Ordering::Relaxed).saturating_sub(1);
        a.total.store(total, Ordering::Relaxed);
        if a.counted {
            metrics::gauge!(metric::CONNECTIONS_OPEN).set(total as f64);
        }
    }
}

/// Answers a connection over a limit with a one-shot 503 and closes it. The write never
/// waits: a fresh socket's send buffer takes these few hundred bytes, and a peer that cannot
/// take them gets the close alone. The answer logs itself: at DEBUG for a client over its own
/// limit, at most once a second at WARN when the gateway is full.
fn refuse(stream: &TcpStream, why: Refused, counted: bool) {
    let (label, answer) = match why {
        Refused::Total => (
            "total",
            Answer::too_many_connections(
                Fault::Gateway,
                "The gateway has server.max_connections connections open; try again shortly.",
            ),
        ),
        Refused::PerClient => (
            "per_client",
            Answer::too_many_connections(
                Fault::Client,
                "This client address has server.max_connections_per_client connections open; reuse them or try again shortly.",
            ),
        ),
    };
    if counted {
        metrics::counter!(metric::CONNECTIONS_REFUSED, "why" => label).increment(1);
    }
    let _ = stream.try_write(&answer.to_http1());
}
