//! The facts of one request, read once from its head, in two steps:
//!
//! 1. [`prepare`] — the head itself, the same in every mode: refuse `CONNECT` and `TRACE`,
//!    strip reserved, routing-override and hop-by-hop headers (keeping only an allowed upgrade),
//!    check `Host`, normalise the path (rewriting it when it was not in normal form) and find
//!    its route. A head refused here is answered whatever the mode.
//! 2. [`RequestFacts::read`] — what the decision needs to know, borrowed from the head: the
//!    route, the mode in force, the credential and where it came from, with Clerk's cookies
//!    when the token came from one (read in one pass over `Cookie`); and, asked for only where
//!    they matter, whether the request is a page load (a document) or an API call
//!    ([`RequestFacts::document`]), the public URL ([`RequestFacts::public_url`]) and, for a
//!    header token, the cookies ([`RequestFacts::cookies`]) — so a request pays only for what
//!    its path through Clerk's flow reads.

use std::cell::OnceCell;

use http::header::{ACCEPT, HOST, REFERER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method};

use super::backend::Resumed;
use super::public_url::{query_has, query_param, PublicUrl};
use super::token::{self, Found, SessionCookies};
use super::verify::Carrier;
use crate::config::{Config, PublishableKey};
use crate::headers;
use crate::mode::{Mode, ModeSetting};
use crate::reason::{Failure, Reason};
use crate::routes::{self, Route, RouteRule};

/// `Sec-Fetch-Dest`, which browsers send with every request.
pub const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// Where a prepared request goes.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    /// The route its normalised path and method match.
    pub route: Route<'a>,
    /// A matching rule is marked `bypass = "never"`. Any matching rule counts, not only the
    /// first, so reordering rules can never drop the guarantee.
    pub never_bypass: bool,
}

/// Step 1: cleans the head and routes it, or says why the head is refused (in every mode).
pub fn prepare<'c>(parts: &mut Parts, config: &'c Config) -> Result<Routed<'c>, Failure> {
    if let Some(why) = refused_method(&parts.method) {
        return Err(Failure::new(Reason::MethodNotAllowed, why));
    }
    if let Some(upgrade) = headers::sanitize_request(&mut parts.headers, parts.version, &config.upstream.headers) {
        parts.extensions.insert(upgrade);
    }
    check_host(parts).map_err(|why| Failure::new(Reason::InvalidHost, why))?;
    let table = &config.routes;
    if routes::already_normal(parts.uri.path()) {
        // The common case: the path is its own normal form; nothing to allocate or rewrite.
        let p = parts.uri.path();
        return Ok(Routed { route: table.route(&parts.method, p), never_bypass: table.bypass_never(&parts.method, p) });
    }
    let path = routes::normalise(parts.uri.path()).map_err(|e| Failure::new(Reason::AmbiguousPath, e.message()))?;
    if path.forward != parts.uri.path() {
        rewrite_path(&mut parts.uri, &path.forward);
    }
    let p = &path.matching;
    Ok(Routed { route: table.route(&parts.method, p), never_bypass: table.bypass_never(&parts.method, p) })
}

/// What the decision knows about one request.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its route.
    pub route: Route<'a>,
    /// A matching rule is marked `bypass = "never"`.
    pub never_bypass: bool,
    /// The mode in force, with where it came from.
    pub mode: &'a ModeSetting,
    /// The session token and where it came from, none, or credentials that disagree. Not looked
    /// for on a webhook route, which is authenticated by its signature.
    pub credential: Found<'a>,
    /// A key refetch for this request's unknown `kid` has already happened: the `kid` is final.
    pub refetched: bool,
    /// What earlier passes learned: a key refetch, Backend API answers.
    pub resumed: &'a Resumed,
    parts: &'a Parts,
    publishable_key: Option<&'a PublishableKey>,
    now_s: i64,
    cookies: OnceCell<SessionCookies<'a>>,
}

impl<'a> RequestFacts<'a> {
    /// Step 2: reads the facts of a prepared head at `now_ms`, after the passes that `resumed`
    /// records.
    pub fn read(
        parts: &'a Parts,
        routed: Routed<'a>,
        mode: &'a ModeSetting,
        config: &'a Config,
        now_ms: i64,
        resumed: &'a Resumed,
    ) -> Self {
        let publishable_key = config.clerk.publishable_key.as_ref();
        let now_s = now_ms.div_euclid(1000);
        let webhook = routed.route.rule().is_some_and(|r| r.webhook);
        let cookies = OnceCell::new();
        let credential = match token::header(&parts.headers) {
            _ if webhook => Found::None,
            Some(found) => found,
            None => {
                cookies.get_or_init(|| SessionCookies::read(&parts.headers, publishable_key, now_s)).session_token()
            }
        };
        RequestFacts {
            method: &parts.method,
            route: routed.route,
            never_bypass: routed.never_bypass,
            mode,
            credential,
            refetched: resumed.refetched,
            resumed,
            parts,
            publishable_key,
            now_s,
            cookies,
        }
    }

    /// The rule that routed the request, if any.
    pub fn rule(&self) -> Option<&'a RouteRule> {
        self.route.rule()
    }

    /// A `webhook = "clerk"` route: the body's Svix signature decides.
    pub fn webhook(&self) -> bool {
        self.rule().is_some_and(|r| r.webhook)
    }

    /// Forwarded because of bypass: the mode is bypass and no matching rule refuses it.
    pub fn bypassed(&self) -> bool {
        self.mode.mode == Mode::Bypass && !self.never_bypass
    }

    /// Accepted within `grace_max_expired` past `exp` because of grace.
    pub fn grace(&self) -> bool {
        self.mode.mode == Mode::Grace
    }

    /// The token and its carrier, when there is exactly one.
    pub fn token(&self) -> Option<(&str, Carrier)> {
        match &self.credential {
            Found::Token(t, c) => Some((t, *c)),
            Found::OwnedCookie(t) => Some((t.as_str(), Carrier::Cookie)),
            Found::None | Found::Conflict(_) => None,
        }
    }

    /// A page load (SPEC §8), which Clerk's handshake may redirect; otherwise an API call.
    /// Read from the head on each call (two header lookups at most).
    pub fn document(&self) -> bool {
        is_document(self.method, &self.parts.headers)
    }

    /// Clerk's cookies: read already when the token came from a cookie, else on first ask.
    pub fn cookies(&self) -> &SessionCookies<'a> {
        let parts: &'a Parts = self.parts;
        self.cookies.get_or_init(|| SessionCookies::read(&parts.headers, self.publishable_key, self.now_s))
    }

    /// The URL the browser asked for (Clerk's `clerkUrl`), built on each call.
    pub fn public_url(&self) -> PublicUrl<'a> {
        PublicUrl::of(self.parts)
    }

    /// A query parameter as `searchParams.get(name)` reads it (the query is parsed only when it
    /// could hold the name).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.parts.uri.query(), name)
    }

    /// Whether the query has the parameter (`searchParams.has(name)`).
    pub fn has_query_param(&self, name: &str) -> bool {
        query_has(self.parts.uri.query(), name)
    }

    /// A request header as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &HeaderName) -> Option<&'a str> {
        let parts: &'a Parts = self.parts;
        parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Referer`, when present and not empty.
    pub fn referer(&self) -> Option<&'a str> {
        self.header(&REFERER).filter(|r| !r.is_empty())
    }

    /// Every request header, as the gateway forwards them (reserved ones already stripped).
    pub fn headers(&self) -> &'a HeaderMap {
        let parts: &'a Parts = self.parts;
        &parts.headers
    }
}

/// SPEC §8 (Clerk's `isRequestEligibleForHandshake`, clerk-semantics §1.7): a `GET` whose
/// `Sec-Fetch-Dest` is `document` or `iframe`, or which has no `Sec-Fetch-Dest` and an `Accept`
/// that starts with `text/html`.
pub fn is_document(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    match headers.get(SEC_FETCH_DEST) {
        Some(dest) => dest == "document" || dest == "iframe",
        None => headers.get(ACCEPT).is_some_and(|a| a.as_bytes().starts_with(b"text/html")),
    }
}

/// Methods the gateway answers 405 itself, in every mode, with why. `CONNECT` would turn the
/// gateway into a tunnel (nginx answers 405 too); `TRACE` (and IIS's `TRACK`) echoes the
/// request, `Cookie` and `Authorization` included, back to whoever can read the response.
fn refused_method(method: &Method) -> Option<&'static str> {
    if *method == Method::CONNECT {
        Some("The gateway does not forward CONNECT requests: it is not a tunnel.")
    } else if *method == Method::TRACE || method.as_str() == "TRACK" {
        Some("The gateway does not forward TRACE or TRACK requests: they echo credentials back.")
    } else {
        None
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one valid `Host`; an HTTP/2 request's `Host`,
/// when present, must agree with its `:authority`. Upstreams and frameworks disagree on which
/// of two `Host` lines wins, so anything else is refused rather than forwarded. Userinfo
/// (`user@host`) is not part of a valid `Host` (RFC 9110 §7.2) and is refused in an
/// `:authority` or absolute-form target too (§4.2.4), rather than forwarded as `Host`.
fn check_host(parts: &Parts) -> Result<(), &'static str> {
    if parts.uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("The request's authority carries userinfo (user@host).");
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("The request carries several Host headers.");
    }
    let parsed = match first {
        Some(v) if v.as_bytes().contains(&b'@') => return Err("The Host header carries userinfo (user@host)."),
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .filter(|a| !a.host().is_empty())
                .ok_or("The Host header is not a valid host[:port].")?,
        ),
        None => None,
    };
    match (parts.version, parsed, parts.uri.authority()) {
        (http::Version::HTTP_11, None, _) => Err("An HTTP/1.1 request needs a Host header."),
        (http::Version::HTTP_2 | http::Version::HTTP_3, Some(h), Some(a)) if h != *a => {
            Err("The Host header disagrees with the request's :authority.")
        }
        _ => Ok(()),
    }
}

fn rewrite_path(uri: &mut http::Uri, path: &str) {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
    }
    if let Ok(u) = http::Uri::from_parts(parts) {
        *uri = u;
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    #[test]
    fn connect_trace_and_track_are_refused_and_nothing_else() {
        for m in ["CONNECT", "TRACE", "TRACK"] {
            assert!(refused_method(&Method::from_bytes(m.as_bytes()).unwrap()).is_some(), "{m}");
        }
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "connect", "trace"] {
            assert!(refused_method(&Method::from_bytes(m.as_bytes()).unwrap()).is_none(), "{m}");
        }
    }

    #[test]
    fn host_and_authority_with_userinfo_are_refused() {
        let head = |version: http::Version, uri: &str, hosts: &[&str]| {
            let mut b = Request::builder().version(version).uri(uri);
            for h in hosts {
                b = b.header(HOST, *h);
            }
            b.body(()).unwrap().into_parts().0
        };
        use http::Version as V;
        // (version, target, Host lines, accepted)
        let cases: &[(V, &str, &[&str], bool)] = &[
            (V::HTTP_11, "/x", &["gw.test"], true),
            (V::HTTP_11, "/x", &["gw.test:8080"], true),
            (V::HTTP_11, "/x", &["gw.test@evil.example"], false),
            (V::HTTP_11, "/x", &["user:pw@gw.test"], false),
            (V::HTTP_11, "/x", &["@gw.test"], false),
            (V::HTTP_11, "http://user@gw.test/x", &["gw.test"], false),
            (V::HTTP_2, "http://gw.test/x", &[], true),
            (V::HTTP_2, "http://user:pw@gw.test/x", &[], false),
            (V::HTTP_2, "http://gw.test/x", &["user@gw.test"], false),
        ];
        for (version, uri, hosts, accepted) in cases {
            let got = check_host(&head(*version, uri, hosts));
            assert_eq!(got.is_ok(), *accepted, "{version:?} {uri} Host: {hosts:?} -> {got:?}");
        }
    }

    #[test]
    fn a_document_is_a_get_page_load_by_sec_fetch_dest_or_else_accept() {
        // (method, Sec-Fetch-Dest, Accept, document)
        let cases: &[(&str, Option<&str>, Option<&str>, bool)] = &[
            ("GET", Some("document"), None, true),
            ("GET", Some("iframe"), Some("application/json"), true),
            ("GET", Some("empty"), Some("text/html"), false),
            ("GET", Some("image"), None, false),
            ("GET", None, Some("text/html,application/xhtml+xml"), true),
            ("GET", None, Some("application/json, text/html"), false),
            ("GET", None, Some("*/*"), false),
            ("GET", None, None, false),
            ("POST", Some("document"), Some("text/html"), false),
            ("HEAD", None, Some("text/html"), false),
        ];
        for (method, dest, accept, document) in cases {
            let mut h = HeaderMap::new();
            if let Some(d) = dest {
                h.insert(SEC_FETCH_DEST, d.parse().unwrap());
            }
            if let Some(a) = accept {
                h.insert(ACCEPT, a.parse().unwrap());
            }
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(is_document(&m, &h), *document, "{method} dest={dest:?} accept={accept:?}");
        }
    }
}
