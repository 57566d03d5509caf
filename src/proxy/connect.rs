//! Opening upstream connections, bounded: at most `upstream.max_connections` exist at once
//! (pooled, busy and held by single client connections together), so no client behaviour can
//! make the gateway open connections to the upstream without limit. A connection holds its
//! place until it closes. At most half the places go to connections held by one HTTP/1 client
//! connection each ([`super::hop`]), so however many clients hold one, the shared pool keeps
//! the other half for HTTP/2 clients and upgrades.
//!
//! For an `https://` upstream the connection is TLS (ALPN `http/1.1`, the certificate checked
//! for the host of `upstream.url`), its handshake bounded by `upstream.connect_timeout` like
//! the dial before it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tower::Service;

/// An [`HttpConnector`] that takes a place from a fixed number before dialling, and speaks
/// TLS over what it dialled when given a client config.
#[derive(Clone)]
pub(super) struct BoundedConnector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
    places: Arc<Semaphore>,
    /// Places for connections held by one client connection each: half of `places`.
    own: Arc<Semaphore>,
    wait: Duration,
}

impl std::fmt::Debug for BoundedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedConnector").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl BoundedConnector {
    /// At most `max` connections at once; a dial, and then a TLS handshake, waits up to
    /// `wait` each. With `tls`, every connection is TLS.
    pub(super) fn new(
        mut http: HttpConnector,
        tls: Option<Arc<rustls::ClientConfig>>,
        max: usize,
        wait: Duration,
    ) -> Self {
        // The dialler sees https:// URIs (for their default port) when the hop is TLS.
        http.enforce_http(tls.is_none());
        BoundedConnector {
            http,
            tls: tls.map(TlsConnector::from),
            places: Arc::new(Semaphore::new(max)),
            own: Arc::new(Semaphore::new(max / 2)),
            wait,
        }
    }

    /// Dials a connection for one client connection to hold, when a place for one is free
    /// now; `None` when not (the request then goes through the pool, which waits for a place).
    pub(super) fn try_connect(&self, uri: Uri) -> Option<impl Future<Output = io::Result<Counted>> + Send + 'static> {
        let own = self.own.clone().try_acquire_owned().ok()?;
        let place = self.places.clone().try_acquire_owned().ok()?;
        Some(dial(self.http.clone(), self.tls.clone(), uri, self.wait, Places { _place: place, _own: Some(own) }))
    }
}

/// The places a connection holds until it closes.
#[derive(Debug)]
struct Places {
    _place: OwnedSemaphorePermit,
    _own: Option<OwnedSemaphorePermit>,
}

/// Dials `uri` (and runs the TLS handshake when `tls`), the connection holding `places`.
async fn dial(
    mut http: HttpConnector,
    tls: Option<TlsConnector>,
    uri: Uri,
    wait: Duration,
    places: Places,
) -> io::Result<Counted> {
    let io = match &tls {
        None => Stream::Plain(http.call(uri).await.map_err(io::Error::other)?),
        Some(tls) => {
            let tcp = http.call(uri.clone()).await.map_err(io::Error::other)?;
            Stream::Tls(Box::new(TokioIo::new(handshake(tls, &uri, tcp, wait).await.map_err(io::Error::other)?)))
        }
    };
    Ok(Counted { io, _places: places })
}

/// Why the TLS handshake with the upstream failed; its text says "TLS handshake", which the
/// 502 answer's cause looks for.
#[derive(Debug, thiserror::Error)]
enum TlsFailure {
    #[error("upstream.url's host {0:?} is not a name a TLS certificate can carry")]
    Name(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    #[error("TLS handshake did not finish within upstream.connect_timeout")]
    Timeout,
}

/// Runs the TLS handshake over `tcp` for `uri`'s host, within `wait`.
async fn handshake(
    tls: &TlsConnector,
    uri: &Uri,
    tcp: TokioIo<TcpStream>,
    wait: Duration,
) -> Result<TlsStream<TcpStream>, TlsFailure> {
    let host = uri.host().unwrap_or_default();
    let name = crate::config::tls_server_name(host).ok_or_else(|| TlsFailure::Name(host.to_string()))?;
    match tokio::time::timeout(wait, tls.connect(name, tcp.into_inner())).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(cause)) => Err(TlsFailure::Handshake(cause)),
        Err(_) => Err(TlsFailure::Timeout),
    }
}

impl Service<Uri> for BoundedConnector {
    type Response = Counted;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Counted, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (http, tls, places, wait) = (self.http.clone(), self.tls.clone(), self.places.clone(), self.wait);
        Box::pin(async move {
            let place = match tokio::time::timeout(wait, places.acquire_owned()).await {
                Ok(Ok(place)) => place,
                _ => {
                    return Err(io::Error::other(
                        "upstream.max_connections connections to the upstream are open and none was free within connect_timeout",
                    ))
                }
            };
            dial(http, tls, uri, wait, Places { _place: place, _own: None }).await
        })
    }
}

/// An upstream connection that gives its place back when it closes.
#[derive(Debug)]
pub(super) struct Counted {
    io: Stream,
    _places: Places,
}

/// The bytes of an upstream connection: plain TCP, or TLS over it (boxed: its state is a
/// kilobyte, which the plain variant need not carry).
#[derive(Debug)]
enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        match &self.io {
            Stream::Plain(io) => io.connected(),
            Stream::Tls(io) => io.inner().get_ref().0.connected(),
        }
    }
}

/// `$call` on whichever stream `$self` holds.
macro_rules! on_stream {
    ($self:ident, $io:ident => $call:expr) => {
        match &mut $self.io {
            Stream::Plain($io) => $call,
            Stream::Tls($io) => $call,
        }
    };
}

impl Read for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl Write for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        on_stream!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, io => Pin::new(io).poll_shutdown(cx))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Stream::Plain(io) => io.is_write_vectored(),
            Stream::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }
}
