//! What `[upstream]` lets through the upstream hop beyond the fixed header rules: which
//! upgrade protocols may be spliced, and which routing-override headers may pass. Leaf types,
//! read by the auth layer's header hygiene ([`crate::headers`]) and by the proxy.

/// Headers some servers and frameworks read as "the real path" or "the real method"
/// (IIS URL Rewrite, Symfony, Laminas, nginx `$request_uri` setups; method-override
/// middleware in Express, Rails, Laravel, Spring). Forwarded, they let a request that passed a
/// public route's check run a protected path or method at the upstream. Lower-case.
pub const ROUTING_OVERRIDE_HEADERS: [&str; 6] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The protocol name of one `Upgrade` entry (RFC 9110 §7.8, `name[/version]`): the token
/// before any `/`, without surrounding spaces.
pub fn protocol_name(entry: &[u8]) -> &[u8] {
    let name = entry.split(|b| *b == b'/').next().unwrap_or_default();
    name.trim_ascii()
}

/// True for a protocol name that is HTTP itself or carries HTTP: `h2c`, `h2`, `HTTP/…`, and
/// anything else starting with `http`, `h2` or `h3`, and `TLS/…` (RFC 2817, HTTP inside TLS).
/// Splicing such a connection would hand the client a raw channel to the upstream's own HTTP
/// parser, where every later request bypasses the gateway (the h2c smuggling class), so these
/// are never spliced, whatever the configuration says.
pub fn is_http_like(name: &[u8]) -> bool {
    let lower = |n: usize| name.iter().take(n).map(u8::to_ascii_lowercase);
    lower(4).eq(*b"http") || lower(2).eq(*b"h2") || lower(2).eq(*b"h3") || name.eq_ignore_ascii_case(b"tls")
}

/// The upgrade protocols that may be spliced (`upstream.upgrade_protocols`): lower-case names,
/// none HTTP-like. Matching is case-insensitive on the protocol name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeProtocols(Vec<String>);

impl Default for UpgradeProtocols {
    /// WebSocket only.
    fn default() -> Self {
        UpgradeProtocols(vec!["websocket".to_string()])
    }
}

impl UpgradeProtocols {
    /// Validates configured names; the error lists every bad entry with why.
    pub fn new(entries: &[String]) -> Result<Self, Vec<String>> {
        let mut names = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            let name = protocol_name(entry.as_bytes());
            if is_http_like(name) {
                problems.push(format!(
                    "{entry:?} is HTTP or carries HTTP and is never spliced: an upstream that switched to it \
                     would receive every later request on that connection past the gateway's checks"
                ));
            } else if name.len() != entry.len() {
                problems.push(format!("{entry:?}: list the protocol name alone, without a version or spaces"));
            } else if name.is_empty() || !name.iter().all(|b| is_token_char(*b)) {
                problems.push(format!("{entry:?} is not a protocol name (an HTTP token such as \"websocket\")"));
            } else {
                let lower = entry.to_ascii_lowercase();
                if !names.contains(&lower) {
                    names.push(lower);
                }
            }
        }
        if problems.is_empty() {
            Ok(UpgradeProtocols(names))
        } else {
            Err(problems)
        }
    }

    /// True when an `Upgrade` entry with this protocol name may be spliced.
    pub fn allows(&self, name: &[u8]) -> bool {
        !is_http_like(name) && self.0.iter().any(|p| p.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The allowed names, lower-case.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request-hygiene policy `[upstream]` sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// `upstream.upgrade_protocols`.
    pub upgrade_protocols: UpgradeProtocols,
    /// `upstream.allow_routing_headers`: entries of [`ROUTING_OVERRIDE_HEADERS`] that are
    /// forwarded (in any spelling) instead of stripped.
    pub allow_routing_headers: Vec<&'static str>,
}

impl HeaderPolicy {
    /// Resolves configured routing-header names against [`ROUTING_OVERRIDE_HEADERS`]
    /// (case-insensitive); the error names each unknown entry.
    pub fn routing_headers(entries: &[String]) -> Result<Vec<&'static str>, Vec<String>> {
        let mut allowed = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            match ROUTING_OVERRIDE_HEADERS.iter().find(|known| known.eq_ignore_ascii_case(entry.trim())) {
                Some(known) if !allowed.contains(known) => allowed.push(*known),
                Some(_) => {}
                None => problems.push(format!(
                    "{entry:?} is not one of the routing-override headers the gateway strips ({})",
                    ROUTING_OVERRIDE_HEADERS.join(", ")
                )),
            }
        }
        if problems.is_empty() {
            Ok(allowed)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_are_the_token_before_any_slash() {
        let cases: &[(&str, &str)] = &[
            ("websocket", "websocket"),
            ("WebSocket/13", "WebSocket"),
            (" h2c ", "h2c"),
            ("HTTP/2.0", "HTTP"),
            ("/x", ""),
            ("", ""),
        ];
        for (entry, name) in cases {
            assert_eq!(protocol_name(entry.as_bytes()), name.as_bytes(), "{entry:?}");
        }
    }

    #[test]
    fn http_like_names() {
        for name in ["h2c", "H2C", "h2", "h3", "HTTP", "http", "https", "HTTP2", "h2-14", "TLS", "tls"] {
            assert!(is_http_like(name.as_bytes()), "{name}");
        }
        for name in ["websocket", "WebSocket", "spdy", "irc", "tlsx", "h", "ht", "", "connect-udp"] {
            assert!(!is_http_like(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn upgrade_protocols_refuse_http_like_and_malformed_names() {
        let ok = UpgradeProtocols::new(&["WebSocket".into(), "websocket".into(), "x-custom".into()]).unwrap();
        assert_eq!(ok.names(), ["websocket", "x-custom"]);
        assert!(ok.allows(b"WEBSOCKET"));
        assert!(!ok.allows(b"h2c"));
        assert!(UpgradeProtocols::new(&[]).unwrap().names().is_empty());

        for bad in ["h2c", "H2", "http/1.1", "HTTP", "https", "tls/1.0", "websocket/13", "web socket", "", "a,b"] {
            let problems = UpgradeProtocols::new(&[bad.to_string()]).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        }
        // Every bad entry is reported, not only the first.
        assert_eq!(UpgradeProtocols::new(&["h2c".into(), "websocket".into(), "tls".into()]).unwrap_err().len(), 2);
    }

    #[test]
    fn an_http_like_name_is_never_allowed_even_if_smuggled_into_the_list() {
        let forced = UpgradeProtocols(vec!["h2c".into(), "websocket".into()]);
        assert!(!forced.allows(b"h2c"));
        assert!(forced.allows(b"websocket"));
    }

    #[test]
    fn routing_headers_resolve_case_insensitively_against_the_known_list() {
        let got = HeaderPolicy::routing_headers(&["X-HTTP-Method-Override".into(), "x-original-url".into()]);
        assert_eq!(got.unwrap(), ["x-http-method-override", "x-original-url"]);
        let err = HeaderPolicy::routing_headers(&["X-Forwarded-Prefix".into(), "x-original-url".into()]).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].contains("X-Forwarded-Prefix"), "{err:?}");
    }
}
