//! Opening upstream connections, bounded: at most `upstream.max_connections` exist at once
//! (pooled and busy together), so no client behaviour can make the gateway open connections
//! to the upstream without limit. A connection holds its place until it closes.

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
use tower::Service;

/// An [`HttpConnector`] that takes a place from a fixed number before dialling.
#[derive(Clone, Debug)]
pub(super) struct BoundedConnector {
    http: HttpConnector,
    places: Arc<Semaphore>,
    wait: Duration,
}

impl BoundedConnector {
    /// At most `max` connections at once; a dial waits up to `wait` for a place.
    pub(super) fn new(http: HttpConnector, max: usize, wait: Duration) -> Self {
        BoundedConnector { http, places: Arc::new(Semaphore::new(max)), wait }
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
        let mut http = self.http.clone();
        let places = self.places.clone();
        let wait = self.wait;
        Box::pin(async move {
            let place = match tokio::time::timeout(wait, places.acquire_owned()).await {
                Ok(Ok(place)) => place,
                _ => {
                    return Err(io::Error::other(
                        "upstream.max_connections connections to the upstream are open and none was free within connect_timeout",
                    ))
                }
            };
            let io = http.call(uri).await.map_err(io::Error::other)?;
            Ok(Counted { io, _place: place })
        })
    }
}

/// An upstream connection that gives its place back when it closes.
#[derive(Debug)]
pub(super) struct Counted {
    io: TokioIo<TcpStream>,
    _place: OwnedSemaphorePermit,
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl Read for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
