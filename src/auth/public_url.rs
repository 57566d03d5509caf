//! The request's public URL as Clerk's SDK sees it (`clerkUrl`, clerk-semantics §1.1), and the
//! URL arithmetic the browser flow needs, done the way a WHATWG `URL` in Node does it: query
//! strings read and rewritten like `URLSearchParams` (a rewrite re-serialises the whole query
//! as `application/x-www-form-urlencoded`), and the origin and host of a `Referer`.
//!
//! Everything here is pure over strings; nothing is ever fetched.

use std::borrow::Cow;

use http::header::HOST;
use http::request::Parts;
use http::HeaderName;
use percent_encoding::{percent_decode, AsciiSet, NON_ALPHANUMERIC};

use crate::headers::{ConnInfo, PeerForwarded};

/// The bytes `URLSearchParams` writes as they are: alphanumerics and `*-._` (space is `+`).
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The URL the browser asked for, as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl<'a> {
    /// `http://host[:port]` or `https://…`, host lower-cased, a default port dropped.
    origin: String,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> PublicUrl<'a> {
    /// The public URL of a prepared request head. The scheme is what the connection says: the
    /// `X-Forwarded-Proto` of a trusted load balancer (read by the listener, before hygiene
    /// strips the client's copy), else `https` on a TLS connection to the gateway. Without
    /// those facts (a head built in a test), a `X-Forwarded-*` header still present is read
    /// as Clerk reads it (first value); otherwise the scheme is the request target's (HTTP/2
    /// `:scheme`) or `http`, and the host is `Host` or the authority.
    pub fn of(parts: &'a Parts) -> Self {
        let first = |name: &HeaderName| {
            parts.headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim)
        };
        let conn = parts.extensions.get::<ConnInfo>();
        let peer_proto =
            conn.filter(|c| c.trusted).and_then(|_| parts.extensions.get::<PeerForwarded>()).and_then(|p| p.proto);
        let conn_proto = peer_proto.or_else(|| conn.filter(|c| c.tls).map(|_| "https"));
        let scheme = match conn_proto.or_else(|| first(&X_FORWARDED_PROTO)) {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            _ => match parts.uri.scheme_str() {
                Some(s) if s.eq_ignore_ascii_case("https") => "https",
                _ => "http",
            },
        };
        let host = first(&X_FORWARDED_HOST)
            .filter(|h| !h.is_empty())
            .or_else(|| parts.headers.get(HOST).and_then(|v| v.to_str().ok()))
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        PublicUrl::new(scheme, host, parts.uri.path(), parts.uri.query())
    }

    /// A public URL from its pieces (`host` may carry a port).
    pub fn new(scheme: &str, host: &str, path: &'a str, query: Option<&'a str>) -> Self {
        let origin = format!("{scheme}://{}", normal_host(scheme, host));
        let path = if path.is_empty() { "/" } else { path };
        PublicUrl { origin, path, query }
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The whole URL as the request has it (`clerkUrl.toString()`).
    pub fn href(&self) -> String {
        match self.query {
            Some(q) => format!("{}{}?{q}", self.origin, self.path),
            None => format!("{}{}", self.origin, self.path),
        }
    }

    /// The URL after `searchParams.delete(name)` for each of `names`: the query re-serialised,
    /// and dropped when nothing is left.
    pub fn href_without(&self, names: &[&str]) -> String {
        let pairs: Vec<(String, String)> =
            parse_query(self.query.unwrap_or("")).into_iter().filter(|(k, _)| !names.contains(&k.as_str())).collect();
        let query = serialize_query(&pairs);
        if query.is_empty() {
            format!("{}{}", self.origin, self.path)
        } else {
            format!("{}{}?{query}", self.origin, self.path)
        }
    }

    /// `searchParams.has(name)`.
    pub fn has_param(&self, name: &str) -> bool {
        query_has(self.query, name)
    }

    /// `searchParams.get(name)`: the first value, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(self.query, name)
    }
}

/// `searchParams.has(name)` of a query string.
pub fn query_has(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| may_name(q, name) && parse_query(q).iter().any(|(k, _)| k == name))
}

/// `searchParams.get(name)` of a query string: the first value, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let q = query?;
    if !may_name(q, name) {
        return None;
    }
    parse_query(q).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Whether a query could hold `name` at all: spelled out, or behind a percent escape. A cheap
/// test so an ordinary query is never parsed.
fn may_name(query: &str, name: &str) -> bool {
    query.contains(name) || query.contains('%') || query.contains('+')
}

/// A host as the URL parser leaves it: ASCII lower-cased, the scheme's default port dropped
/// (`example.com:80` on http is `example.com`), a port read as a number.
fn normal_host(scheme: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let (name, port) = match host.rfind(':') {
        // An IPv6 literal's colons sit inside brackets; a port follows the closing one.
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host.as_str(), None),
    };
    let default = if scheme == "https" { 443 } else { 80 };
    match port {
        None | Some("") => name.to_string(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n == default => name.to_string(),
            Ok(n) => format!("{name}:{n}"),
            Err(_) => host.clone(),
        },
    }
}

/// Reads a query string as `URLSearchParams` does: `&`-separated, the name up to the first `=`,
/// `+` as a space, percent escapes decoded (bytes that are not UTF-8 become U+FFFD).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let plus: Cow<'_, str> = if s.contains('+') { s.replace('+', " ").into() } else { s.into() };
        String::from_utf8_lossy(&percent_decode(plus.as_bytes()).collect::<Vec<u8>>()).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Writes pairs as `URLSearchParams.toString()` does.
pub fn serialize_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&form_encode(k));
        out.push('=');
        out.push_str(&form_encode(v));
    }
    out
}

/// One name or value, `application/x-www-form-urlencoded`.
pub fn form_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, FORM).to_string().replace("%20", "+")
}

/// The origin and host name of a URL, as `new URL(text)` gives them; `None` when it does not
/// parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlOrigin {
    /// `scheme://host[:port]`, or `null` for a scheme without a tuple origin.
    pub origin: String,
    /// The host name, lower-cased, without the port (empty when there is none).
    pub hostname: String,
}

/// Parses the origin of an absolute URL such as a `Referer` value.
pub fn url_origin(text: &str) -> Option<UrlOrigin> {
    let text = text.trim_matches(|c: char| c <= ' ');
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    };
    let special = default_port.is_some() || scheme == "file";
    let after = if special {
        rest.trim_start_matches(['/', '\\'])
    } else {
        match rest.strip_prefix("//") {
            Some(a) => a,
            // An opaque URL (`mailto:x`) has no host and no tuple origin.
            None => return Some(UrlOrigin { origin: "null".into(), hostname: String::new() }),
        }
    };
    let end = after.find(|c| matches!(c, '/' | '?' | '#') || (special && c == '\\')).unwrap_or(after.len());
    let authority = &after[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], &hostport[i + 1..]),
        _ => (hostport, ""),
    };
    if host.chars().any(|c| c <= ' ' || "<>^|%\"`{}".contains(c)) {
        return None;
    }
    let port = if port.is_empty() { None } else { Some(port.parse::<u16>().ok()?) };
    let hostname = host.to_ascii_lowercase();
    let Some(default_port) = default_port else {
        return Some(UrlOrigin { origin: "null".into(), hostname });
    };
    if hostname.is_empty() {
        return None;
    }
    let origin = match port {
        Some(p) if p != default_port => format!("{scheme}://{hostname}:{p}"),
        _ => format!("{scheme}://{hostname}"),
    };
    Some(UrlOrigin { origin, hostname })
}

/// Resolves `target` (absolute, or a path) against `base_origin`, as `new URL(target, base)`
/// does for the two shapes the config allows.
pub fn resolve(target: &str, base_origin: &str) -> String {
    if target.starts_with('/') && !target.starts_with("//") {
        format!("{base_origin}{target}")
    } else {
        target.to_string()
    }
}

/// Sets (or adds) one query parameter of an absolute URL, re-serialising its query as
/// `searchParams.set(name, value)` does: the first pair of that name takes the value in place,
/// later ones go, and a new name goes last. A fragment stays last.
pub fn set_param(url: &str, name: &str, value: &str) -> String {
    let (without_hash, hash) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let (base, query) = match without_hash.split_once('?') {
        Some((b, q)) => (b, q),
        None => (without_hash, ""),
    };
    let mut pairs = parse_query(query);
    let mut seen = false;
    pairs.retain_mut(|(k, v)| {
        if k != name {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        *v = value.to_string();
        true
    });
    if !seen {
        pairs.push((name.to_string(), value.to_string()));
    }
    // `new URL("https://a.example")` has the path `/`.
    let base = match base.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{base}/"),
        _ => base.to_string(),
    };
    format!("{base}?{}{hash}", serialize_query(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_scheme_is_what_the_connection_says() {
        let with = |tls: bool, trusted: bool, peer_proto: Option<&'static str>| {
            let mut parts = head("/p", &[("host", "example.com")]);
            let remote = "10.0.0.1:4000".parse().unwrap();
            parts.extensions.insert(ConnInfo::new(remote, tls, trusted));
            if let Some(proto) = peer_proto {
                parts.extensions.insert(PeerForwarded { chain: None, proto: Some(proto), replaced: false });
            }
            PublicUrl::of(&parts).href()
        };
        assert_eq!(with(false, false, None), "http://example.com/p");
        assert_eq!(with(true, false, None), "https://example.com/p", "TLS at the gateway");
        assert_eq!(with(false, true, Some("https")), "https://example.com/p", "a trusted balancer terminated TLS");
        assert_eq!(with(true, true, Some("http")), "http://example.com/p", "the trusted balancer's word wins");
        assert_eq!(with(false, false, Some("https")), "http://example.com/p", "an untrusted peer's word is not read");
    }

    #[test]
    fn the_public_url_is_built_from_host_and_scheme_with_default_ports_dropped() {
        // (target, headers, href)
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Row] = &[
            ("/p?q=1", &[("host", "Example.COM")], "http://example.com/p?q=1"),
            ("/p", &[("host", "example.com:80")], "http://example.com/p"),
            ("/p", &[("host", "example.com:8080")], "http://example.com:8080/p"),
            ("https://example.com/p", &[], "https://example.com/p"),
            ("https://example.com:443/p", &[], "https://example.com/p"),
            ("/p", &[("host", "[::1]:3000")], "http://[::1]:3000/p"),
            // A forwarded header still present was kept by a trusted proxy.
            (
                "/hello?foo=bar",
                &[("host", "internal:3000"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "example.com:3213")],
                "https://example.com:3213/hello?foo=bar",
            ),
            ("/", &[("host", "a.example"), ("x-forwarded-proto", "https, http")], "https://a.example/"),
            ("/", &[("host", "a.example"), ("x-forwarded-proto", "gopher")], "http://a.example/"),
        ];
        for (uri, headers, href) in cases {
            let parts = head(uri, headers);
            assert_eq!(PublicUrl::of(&parts).href(), *href, "{uri} {headers:?}");
        }
    }

    #[test]
    fn deleting_a_parameter_reserialises_the_query_as_url_search_params_does() {
        fn u(q: &str) -> PublicUrl<'_> {
            PublicUrl::new("https", "example.com", "/p", Some(q))
        }
        // (query, href after deleting __clerk_db_jwt and __dev_session)
        let cases: &[(&str, &str)] = &[
            ("__clerk_db_jwt=x", "https://example.com/p"),
            ("a=1&__clerk_db_jwt=x&b=2", "https://example.com/p?a=1&b=2"),
            ("a=b%20c", "https://example.com/p?a=b+c"),
            ("a=%7E&b", "https://example.com/p?a=%7E&b="),
            ("x=1&__dev_session=y&__clerk_db_jwt=z&__clerk_db_jwt=w", "https://example.com/p?x=1"),
            ("%5F%5Fclerk_db_jwt=x&k=v", "https://example.com/p?k=v"),
            ("", "https://example.com/p"),
            ("q=a+b&r=%C3%A9", "https://example.com/p?q=a+b&r=%C3%A9"),
        ];
        for (q, want) in cases {
            assert_eq!(u(q).href_without(&["__clerk_db_jwt", "__dev_session"]), *want, "{q}");
        }
        assert_eq!(u("a=1").param("a").as_deref(), Some("1"));
        assert_eq!(u("a=x%2By&a=2").param("a").as_deref(), Some("x+y"));
        assert_eq!(u("b=1").param("a"), None);
    }

    #[test]
    fn referer_origins() {
        // (referer, origin, hostname)
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("https://satellite.com/signin", Some(("https://satellite.com", "satellite.com"))),
            ("https://Primary.com:443/x?y", Some(("https://primary.com", "primary.com"))),
            ("http://primary.com:8080", Some(("http://primary.com:8080", "primary.com"))),
            ("https://user:pw@a.example/", Some(("https://a.example", "a.example"))),
            ("android-app://com.example/", Some(("null", "com.example"))),
            ("mailto:someone", Some(("null", ""))),
            ("not a url", None),
            ("/relative", None),
            ("https://", None),
            ("https://a.example:99999/", None),
        ];
        for (text, want) in cases {
            let got = url_origin(text).map(|o| (o.origin, o.hostname));
            let want = want.map(|(o, h)| (o.to_string(), h.to_string()));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn setting_a_parameter_replaces_the_first_and_drops_the_rest() {
        let cases: &[(&str, &str)] = &[
            (
                "https://accounts.example.com/sign-in",
                "https://accounts.example.com/sign-in?redirect_url=https%3A%2F%2Fapp%2Fx%3Fa%3D1",
            ),
            ("https://a.example", "https://a.example/?redirect_url=https%3A%2F%2Fapp%2Fx%3Fa%3D1"),
            (
                "https://a.example/s?x=1&redirect_url=old&y=2&redirect_url=z",
                "https://a.example/s?x=1&redirect_url=https%3A%2F%2Fapp%2Fx%3Fa%3D1&y=2",
            ),
            ("https://a.example/s#frag", "https://a.example/s?redirect_url=https%3A%2F%2Fapp%2Fx%3Fa%3D1#frag"),
        ];
        for (url, want) in cases {
            assert_eq!(set_param(url, "redirect_url", "https://app/x?a=1"), *want, "{url}");
        }
        assert_eq!(resolve("/sign-in", "https://app.example"), "https://app.example/sign-in");
        assert_eq!(
            resolve("https://accounts.example/sign-in", "https://app.example"),
            "https://accounts.example/sign-in"
        );
    }

    proptest::proptest! {
        #[test]
        fn url_arithmetic_never_panics_and_queries_round_trip(s in "\\PC{0,64}", t in "\\PC{0,24}") {
            let _ = url_origin(&s);
            let _ = set_param(&s, &t, &t);
            let _ = PublicUrl::new("http", &t, "/", Some(&s)).href_without(&["a", &t]);
            let _ = PublicUrl::new("https", &s, &t, None).href();
            let pairs = parse_query(&s);
            proptest::prop_assert_eq!(parse_query(&serialize_query(&pairs)), pairs);
        }
    }
}
