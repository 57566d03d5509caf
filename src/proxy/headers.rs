//! Header hygiene: what a client may not send, what is hop-by-hop, what the gateway sets.
//!
//! Every function here is pure over a `HeaderMap`, so the rules are unit-tested and fuzzed
//! without sockets.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Version};

/// Headers the gateway sets for the upstream. A client's copy of any of these (in any spelling)
/// never reaches the upstream.
pub mod names {
    use http::header::HeaderName;
    /// `signed-in`, `signed-out`, `bypass` or `grace`.
    pub const AUTH_STATUS: HeaderName = HeaderName::from_static("x-clerk-auth-status");
    /// The refusal reason on answers.
    pub const AUTH_REASON: HeaderName = HeaderName::from_static("x-clerk-auth-reason");
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
    /// Rebuilt from the real connection.
    pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// Rebuilt from the real connection.
    pub const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// Rebuilt from the real connection.
    pub const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
}

/// True when a client must not send this header: its name, lower-cased with every
/// non-alphanumeric removed, starts with `xclerk`, `xauth` or `xforwarded`, or is `forwarded`
/// or `xrealip`. Folding separators catches `X_Clerk_User_Id`, `x.auth.bypass` and friends,
/// which CGI, PHP and nginx would otherwise read as the real thing.
pub fn is_reserved(name: &str) -> bool {
    const PREFIXES: [&[u8]; 3] = [b"xclerk", b"xauth", b"xforwarded"];
    const EXACT: [&[u8]; 2] = [b"forwarded", b"xrealip"];
    // Fold into a small stack buffer; only the first 10 folded characters matter for prefixes,
    // but exact names need the whole folded name, so fold up to 16 and note overflow.
    let mut buf = [0u8; 16];
    let mut len = 0usize;
    let mut overflow = false;
    for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
        if len == buf.len() {
            overflow = true;
            break;
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    let folded = &buf[..len];
    PREFIXES.iter().any(|p| folded.starts_with(p)) || (!overflow && EXACT.contains(&folded))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the proxy headers that must never be forwarded
/// (`Proxy-Authorization`, `Proxy-Connection`, and `Proxy` for httpoxy).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
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

/// Cleans a client request in place, before the gateway reads or adds anything:
/// reserved headers first, then `Connection`-listed names, then hop-by-hop headers.
/// Returns the `Upgrade` protocol when this is a genuine HTTP/1.1 upgrade request, so the
/// proxy can re-add exactly `Connection: upgrade` and `Upgrade` on the upstream hop.
pub fn sanitize_request(headers: &mut HeaderMap, version: Version) -> Option<HeaderValue> {
    let reserved: Vec<HeaderName> = headers.keys().filter(|n| is_reserved(n.as_str())).cloned().collect();
    for name in reserved {
        headers.remove(name);
    }
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    let upgrade = strip_hop_by_hop(headers);
    match (upgrade, upgrade_value, version) {
        (true, Some(v), Version::HTTP_11) => Some(v),
        _ => None,
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
#[path = "headers_tests.rs"]
mod tests;
