//! Header hygiene: what a client may not send, what is hop-by-hop, what the gateway sets.
//!
//! Every function here is pure over a `HeaderMap`, so the rules are unit-tested and fuzzed
//! without sockets. Below both the auth layer (which cleans the request and sets identity)
//! and the proxy (which cleans the response and sets `X-Forwarded-*`), so neither imports
//! the other. What a trusted load balancer says in `X-Forwarded-For` and `X-Forwarded-Proto`
//! is read before the strip, by [`PeerForwarded`] (`forwarded.rs`).

mod forwarded;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Version};

pub use forwarded::{ConnInfo, PeerForwarded, MAX_FORWARDED_HOPS};

use crate::config::{protocol_name, HeaderPolicy, ROUTING_OVERRIDE_HEADERS};

/// Headers the gateway sets for the upstream. A client's copy of any of these (in any spelling)
/// never reaches the upstream.
pub mod names {
    use http::header::HeaderName;
    /// `signed-in`, `signed-out`, `bypass` or `grace`.
    pub const AUTH_STATUS: HeaderName = HeaderName::from_static("x-clerk-auth-status");
    /// The refusal reason on answers.
    pub const AUTH_REASON: HeaderName = HeaderName::from_static("x-clerk-auth-reason");
    /// The refusal's message on answers (Clerk's full message).
    pub const AUTH_MESSAGE: HeaderName = HeaderName::from_static("x-clerk-auth-message");
    /// The verified user id.
    pub const USER_ID: HeaderName = HeaderName::from_static("x-clerk-user-id");
    /// The verified session id.
    pub const SESSION_ID: HeaderName = HeaderName::from_static("x-clerk-session-id");
    /// The active organisation's id.
    pub const ORG_ID: HeaderName = HeaderName::from_static("x-clerk-org-id");
    /// The active organisation's slug.
    pub const ORG_SLUG: HeaderName = HeaderName::from_static("x-clerk-org-slug");
    /// The role in the active organisation.
    pub const ORG_ROLE: HeaderName = HeaderName::from_static("x-clerk-org-role");
    /// The permissions in the active organisation, comma-separated.
    pub const ORG_PERMISSIONS: HeaderName = HeaderName::from_static("x-clerk-org-permissions");
    /// The impersonator (`act.sub`).
    pub const ACTOR: HeaderName = HeaderName::from_static("x-clerk-actor");
    /// Set when the request passed only because of bypass mode.
    pub const AUTH_BYPASS: HeaderName = HeaderName::from_static("x-auth-bypass");
    /// Set when the token was accepted only because of grace mode.
    pub const AUTH_DEGRADED: HeaderName = HeaderName::from_static("x-auth-degraded");
    /// Rebuilt from the real connection (a trusted peer's chain kept, the peer appended).
    pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// Rebuilt from the real connection (a trusted peer's `http` or `https` kept).
    pub const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// Rebuilt from the real connection.
    pub const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
}

/// The auth status handed to the upstream in `X-Clerk-Auth-Status`, also kept as a request
/// extension so later stages (the proxy's error answers, logs) can report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStatus {
    /// A verified token.
    SignedIn,
    /// No valid token, on a public route.
    SignedOut,
    /// Forwarded because of bypass mode.
    Bypass,
    /// Accepted only because of grace mode.
    Grace,
}

impl AuthStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStatus::SignedIn => "signed-in",
            AuthStatus::SignedOut => "signed-out",
            AuthStatus::Bypass => "bypass",
            AuthStatus::Grace => "grace",
        }
    }
}

/// True when a client must not send this header: its name, lower-cased with every
/// non-alphanumeric removed, starts with `xclerk`, `xauth` or `xforwarded`, or is `forwarded`
/// or `xrealip`. Folding separators catches `X_Clerk_User_Id`, `x.auth.bypass` and friends,
/// which CGI, PHP and nginx would otherwise read as the real thing.
pub fn is_reserved(name: &str) -> bool {
    Folded::new(name).is_reserved()
}

/// The routing-override header (one of [`ROUTING_OVERRIDE_HEADERS`]) that `name` spells, in any
/// case and with any separators (`X_Original_URL` reaches a CGI or PHP app as the same variable
/// as `X-Original-URL`).
pub fn routing_override(name: &str) -> Option<&'static str> {
    Folded::new(name).routing_override()
}

/// A header name lower-cased with every non-alphanumeric removed, in a stack buffer. Only the
/// first few folded characters matter for prefixes; exact names need the whole folded name, so
/// it folds up to 24 (longer than any exact name matched here) and notes overflow.
struct Folded {
    buf: [u8; 24],
    len: usize,
    overflow: bool,
}

impl Folded {
    fn new(name: &str) -> Self {
        let mut f = Folded { buf: [0; 24], len: 0, overflow: false };
        for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
            if f.len == f.buf.len() {
                f.overflow = true;
                break;
            }
            f.buf[f.len] = b.to_ascii_lowercase();
            f.len += 1;
        }
        f
    }

    /// The whole folded name, unless it was too long to hold.
    fn whole(&self) -> Option<&[u8]> {
        (!self.overflow).then_some(&self.buf[..self.len])
    }

    fn is_reserved(&self) -> bool {
        const PREFIXES: [&[u8]; 3] = [b"xclerk", b"xauth", b"xforwarded"];
        const EXACT: [&[u8]; 2] = [b"forwarded", b"xrealip"];
        PREFIXES.iter().any(|p| self.buf[..self.len].starts_with(p)) || self.whole().is_some_and(|w| EXACT.contains(&w))
    }

    fn routing_override(&self) -> Option<&'static str> {
        let whole = self.whole()?;
        // Every routing-override name folds to something starting with `x`: one byte test
        // settles the common header.
        if whole.first() != Some(&b'x') {
            return None;
        }
        ROUTING_OVERRIDE_HEADERS
            .iter()
            .find(|known| known.bytes().filter(u8::is_ascii_alphanumeric).eq(whole.iter().copied()))
            .copied()
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, and `HTTP2-Settings`, which RFC 7540 §3.2.1 makes
/// connection-specific) plus the proxy headers that must never be forwarded
/// (`Proxy-Authorization`, `Proxy-Connection`, and `Proxy` for httpoxy).
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

const PROXY: HeaderName = HeaderName::from_static("proxy");

/// True for a header that never crosses the gateway in either direction (see [`HOP_BY_HOP`]).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || *name == PROXY
}

/// Removes every header named in `Connection`, then every hop-by-hop header. Returns whether
/// `Connection` listed `upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap) -> bool {
    let mut upgrade = false;
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        // Split the raw bytes: a value with one non-ASCII byte must not hide the names it lists.
        for token in value.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case(b"upgrade") {
                upgrade = true;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                listed.push(name);
            }
        }
    }
    for name in listed {
        headers.remove(name);
    }
    // One pass over the names present instead of a hashed removal per hop-by-hop name: the
    // common request carries none of them, and then nothing is hashed or removed at all.
    let hop: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for name in hop {
        headers.remove(name);
    }
    upgrade
}

/// An upgrade the client asked for and the policy allows: the client's `Upgrade` entries whose
/// protocol is in `upstream.upgrade_protocols`, as the client spelled them. The auth layer
/// stores it as a request extension; the proxy sends it on and splices only a 101 that
/// switches to one of these protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedUpgrade(HeaderValue);

impl RequestedUpgrade {
    /// The `Upgrade` value for the upstream hop.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }

    /// True when a `101` response with these headers switches only to protocols that were
    /// requested: an `Upgrade` is present and each of its entries names one of them.
    pub fn accepts(&self, response: &HeaderMap) -> bool {
        let requested: Vec<&[u8]> = upgrade_entries(std::slice::from_ref(&self.0)).map(protocol_name).collect();
        let values: Vec<&HeaderValue> = response.get_all(header::UPGRADE).iter().collect();
        let mut entries = upgrade_entries(values.iter().copied()).peekable();
        entries.peek().is_some() && entries.all(|e| requested.iter().any(|r| r.eq_ignore_ascii_case(protocol_name(e))))
    }
}

/// The non-empty, trimmed comma-separated entries of `Upgrade` values.
fn upgrade_entries<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> impl Iterator<Item = &'a [u8]> {
    values
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// Cleans a client request in place, before the gateway reads or adds anything:
/// reserved headers and routing-override headers (unless `policy` keeps them) first, then
/// `Connection`-listed names, then hop-by-hop headers. An HTTP/2 request's `cookie` fields are
/// joined into one with `; ` (RFC 9113 §8.2.3), as the HTTP/1.1 upstream expects.
///
/// Returns the upgrade to pass on when this is an HTTP/1.1 upgrade request naming at least one
/// allowed protocol. Any other `Upgrade` is dropped with the hop-by-hop headers, so the
/// request goes on as a plain one; HTTP-like protocols (h2c) are never allowed.
pub fn sanitize_request(headers: &mut HeaderMap, version: Version, policy: &HeaderPolicy) -> Option<RequestedUpgrade> {
    let strip: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            let folded = Folded::new(n.as_str());
            folded.is_reserved()
                || folded.routing_override().is_some_and(|r| !policy.allow_routing_headers.contains(&r))
        })
        .cloned()
        .collect();
    for name in strip {
        headers.remove(name);
    }
    let allowed: Vec<&[u8]> = upgrade_entries(headers.get_all(header::UPGRADE))
        .filter(|e| policy.upgrade_protocols.allows(protocol_name(e)))
        .collect();
    let upgrade = (version == Version::HTTP_11 && !allowed.is_empty())
        .then(|| HeaderValue::from_bytes(&allowed.join(&b", "[..])).ok().map(RequestedUpgrade))
        .flatten();
    let listed = strip_hop_by_hop(headers);
    if matches!(version, Version::HTTP_2 | Version::HTTP_3) {
        join_cookies(headers);
    }
    upgrade.filter(|_| listed)
}

/// Joins several `Cookie` fields into one, in order, with `; ` (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let parts: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    if let Ok(joined) = HeaderValue::from_bytes(&parts.join(&b"; "[..])) {
        headers.insert(header::COOKIE, joined);
    }
}

/// Cleans an upstream response in place: hop-by-hop headers are not passed back, except the
/// `Connection`/`Upgrade` pair of a `101 Switching Protocols`, which the client needs.
pub fn sanitize_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if switching {
        if let Some(u) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u);
        }
    }
}

#[cfg(test)]
mod tests;
