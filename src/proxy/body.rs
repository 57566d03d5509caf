//! The client's request body on its way upstream: whose fault a failure is, and how long the
//! client may pause between two pieces.
//!
//! A request body that breaks (a malformed chunk, a short body, an HTTP/2 stream reset by the
//! client) or stalls longer than `server.request_body_timeout` is the client's fault: the
//! client gets 400 or 408, not the 502 that a failing upstream hop would give. The wrapper
//! notes the fault where the proxy can read it after the hop fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a client's request body did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFault {
    /// The body broke off or was malformed (400).
    Malformed,
    /// No piece arrived within `server.request_body_timeout` (408).
    Stalled,
}

/// Where the wrapper leaves the fault for the proxy to read.
pub(super) type FaultCell = Arc<OnceLock<BodyFault>>;

pin_project_lite::pin_project! {
    /// A request body that records its own failure and times out a client that stops sending.
    pub struct ClientBody {
        #[pin]
        inner: Body,
        fault: FaultCell,
        timeout: Duration,
        // Made on the first wait, then reset after each piece: one timer per body, not per piece.
        sleep: Option<Pin<Box<Sleep>>>,
        progressed: bool,
    }
}

impl ClientBody {
    /// Wraps `inner`; the fault, if any, lands in `fault`.
    pub(super) fn new(inner: Body, timeout: Duration, fault: FaultCell) -> Self {
        ClientBody { inner, fault, timeout, sleep: None, progressed: false }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.progressed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let _ = this.fault.set(BodyFault::Malformed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = *this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if std::mem::take(this.progressed) {
                    sleep.as_mut().reset(Instant::now() + timeout);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let _ = this.fault.set(BodyFault::Stalled);
                        Poll::Ready(Some(Err(axum::Error::new("the client stopped sending the request body"))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bodies up to this size, with a declared length, are read whole before the upstream is
/// contacted: a malformed or abandoned small upload then costs no upstream connection.
pub(super) const BUFFER_SMALL_BODIES: u64 = 64 * 1024;

/// Reads a small body whole, with the same fault rules as [`ClientBody`].
pub(super) async fn read_small(body: Body, timeout: Duration) -> Result<Bytes, BodyFault> {
    use http_body_util::BodyExt;
    let fault = FaultCell::default();
    let limited =
        http_body_util::Limited::new(ClientBody::new(body, timeout, fault.clone()), BUFFER_SMALL_BODIES as usize);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(fault.get().copied().unwrap_or(BodyFault::Malformed)),
    }
}
