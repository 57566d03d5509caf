//! The PROXY protocol step: with `server.proxy_protocol`, the first thing a connection's task
//! does, before anything reads the socket as TLS or HTTP.
//!
//! The start of the connection is peeked at, never read, until it is known to be plain traffic
//! or a whole PROXY header; then exactly the header's bytes are consumed, so the client's first
//! request reaches hyper untouched, whether it came in the header's segment or later. The
//! caller bounds the step by `server.header_read_timeout` from accept.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use rustix::net::RecvFlags;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

use crate::proxy_protocol::{self, Parsed, MAX_LEN};

/// Why the step closed a connection.
#[derive(Debug)]
pub(super) enum Refusal {
    /// A PROXY header from a peer not in `server.trusted_proxies`.
    Untrusted,
    /// A trusted peer's header is broken.
    Invalid(&'static str),
    /// The peer stopped sending before there was anything to decide on.
    Ended,
    /// The socket failed.
    Io(io::Error),
}

impl Refusal {
    /// The peer sent a PROXY header it may not send, or a broken one (not merely went away):
    /// counted as a refused connection.
    pub(super) fn is_protocol(&self) -> bool {
        matches!(self, Refusal::Untrusted | Refusal::Invalid(_))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Untrusted => f.write_str("a PROXY header from a peer not in server.trusted_proxies"),
            Refusal::Invalid(why) => write!(f, "a broken PROXY header: {why}"),
            Refusal::Ended => f.write_str("the peer stopped sending before its first bytes could be read"),
            Refusal::Io(e) => write!(f, "reading the PROXY header failed: {e}"),
        }
    }
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Io(e)
    }
}

/// Reads the PROXY header at the start of `stream`, if there is one: from a trusted peer,
/// returns the client it names (`None`: no header — an L7 balancer, or a plain client — or a
/// header naming no client); from any other peer, a header is refused and plain traffic is
/// left alone.
pub(super) async fn read(stream: &mut TcpStream, trusted: bool) -> Result<Option<SocketAddr>, Refusal> {
    let mut buf = [0u8; MAX_LEN];
    let mut seen = 0;
    loop {
        let ended;
        (seen, ended) = peek_more(stream, &mut buf, seen).await?;
        let start = &buf[..seen];
        if !trusted {
            match proxy_protocol::starts_with_signature(start) {
                Some(false) => return Ok(None),
                Some(true) => return Err(Refusal::Untrusted),
                None => {}
            }
        } else {
            match proxy_protocol::parse(start) {
                Parsed::NotProxy => return Ok(None),
                Parsed::Invalid(why) => return Err(Refusal::Invalid(why)),
                Parsed::Complete { len, source } => {
                    // Already arrived: this read takes exactly the header and never waits.
                    stream.read_exact(&mut buf[..len]).await?;
                    return Ok(source);
                }
                Parsed::Incomplete => {}
            }
        }
        if ended {
            return Err(Refusal::Ended);
        }
    }
}

/// Peeks at the start of the stream once more than `seen` bytes have arrived (or `buf` is
/// full); returns how many are there, and true when the peer has stopped sending and no more
/// will come. Waiting costs no wake-up per check: when nothing new has arrived the socket's
/// readiness is cleared, so the task sleeps until the next segment (or the peer's FIN).
async fn peek_more(stream: &TcpStream, buf: &mut [u8], seen: usize) -> io::Result<(usize, bool)> {
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let (n, _) = rustix::net::recv(stream, &mut *buf, RecvFlags::PEEK | RecvFlags::DONTWAIT)?;
            if n > seen || n == buf.len() {
                Ok(n)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        match peeked {
            Ok(n) => return Ok((n, false)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if ready.is_read_closed() {
                    return Ok((seen, true));
                }
            }
            Err(e) => return Err(e),
        }
    }
}
