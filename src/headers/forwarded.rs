//! `X-Forwarded-For` and `X-Forwarded-Proto` from a trusted peer (`server.trusted_proxies`):
//! what of them is kept, checked, before hygiene strips every client copy.
//!
//! From any other peer nothing is read: the proxy rebuilds both from the connection.
//! `X-Forwarded-Host` is always rebuilt from `Host`, which a load balancer passes on as the
//! client sent it; `Forwarded`, `X-Real-IP` and every other reserved header are always stripped.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};

use super::names;

/// The most addresses a kept `X-Forwarded-For` chain may hold (before the peer is appended);
/// a longer one is replaced. Real chains are a few hops long.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The longest entry worth parsing: an IPv6 address in its longest spelling.
const MAX_ENTRY_LEN: usize = 45;

/// Facts about the client connection, set by the listener as a request extension.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address: the socket peer, or the source a PROXY protocol header named.
    remote: SocketAddr,
    /// True when the client connection is TLS.
    pub tls: bool,
    /// `remote` is in `server.trusted_proxies`: a load balancer, whose `X-Forwarded-For` chain
    /// and `X-Forwarded-Proto` the listener read (as a [`PeerForwarded`] request extension).
    pub trusted: bool,
    /// `remote`'s address as a header value: the `X-Forwarded-For` of a request that keeps no
    /// chain, written once per connection rather than once per request.
    remote_ip: Option<HeaderValue>,
}

impl ConnInfo {
    /// A connection from `remote`.
    pub fn new(remote: SocketAddr, tls: bool, trusted: bool) -> Self {
        let remote_ip = HeaderValue::try_from(remote.ip().to_string()).ok();
        ConnInfo { remote, tls, trusted, remote_ip }
    }

    /// The client's address: the socket peer, or the source a PROXY protocol header named.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The `X-Forwarded-For` the upstream receives: `chain, peer` when a trusted peer's chain
    /// was kept, else the peer alone.
    pub fn forwarded_for(&self, chain: Option<&str>) -> Option<HeaderValue> {
        match chain {
            Some(chain) => HeaderValue::try_from(format!("{chain}, {}", self.remote.ip())).ok(),
            None => self.remote_ip.clone(),
        }
    }
}

/// What a trusted peer said about its client, kept only where well-formed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerForwarded {
    /// The addresses the peer's `X-Forwarded-For` lines list, in order, rendered anew as
    /// `a, b, c`. `None` when there were none, or they were not a list of at most
    /// [`MAX_FORWARDED_HOPS`] IP addresses.
    pub chain: Option<String>,
    /// The peer's `X-Forwarded-Proto`, when it was exactly one `http` or `https`.
    pub proto: Option<&'static str>,
    /// A header was present but not usable, so it is rebuilt as for an untrusted peer.
    pub replaced: bool,
}

impl PeerForwarded {
    /// Reads a trusted peer's request headers (before hygiene strips them).
    pub fn read(headers: &HeaderMap) -> Self {
        let mut replaced = false;
        let chain = if headers.contains_key(names::FORWARDED_FOR) {
            let chain = chain_of(headers);
            replaced |= chain.is_none();
            chain
        } else {
            None
        };
        let mut protos = headers.get_all(names::FORWARDED_PROTO).iter();
        let proto = match (protos.next(), protos.next()) {
            (None, _) => None,
            (Some(v), None) => {
                let p = scheme(v);
                replaced |= p.is_none();
                p
            }
            (Some(_), Some(_)) => {
                replaced = true;
                None
            }
        };
        PeerForwarded { chain, proto, replaced }
    }
}

/// Every `X-Forwarded-For` line, joined in order and rendered anew, or `None` when an entry is
/// not an IP address or there are too many.
fn chain_of(headers: &HeaderMap) -> Option<String> {
    let mut out = String::new();
    let mut hops = 0;
    for value in headers.get_all(names::FORWARDED_FOR) {
        for entry in value.as_bytes().split(|b| *b == b',') {
            let entry = entry.trim_ascii();
            hops += 1;
            if hops > MAX_FORWARDED_HOPS || entry.len() > MAX_ENTRY_LEN {
                return None;
            }
            let ip: IpAddr = std::str::from_utf8(entry).ok()?.parse().ok()?;
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{ip}");
        }
    }
    Some(out)
}

fn scheme(value: &HeaderValue) -> Option<&'static str> {
    let v = value.as_bytes().trim_ascii();
    if v.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if v.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;
    use proptest::prelude::*;

    use super::*;

    /// (header lines, what is kept, whether something was replaced)
    type Case<'a, T> = (&'a [(&'a str, &'a str)], Option<T>, bool);

    fn read(lines: &[(&str, &str)]) -> PeerForwarded {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        PeerForwarded::read(&h)
    }

    #[test]
    fn a_chain_of_addresses_is_kept_and_lines_are_joined_in_order() {
        let table: &[Case<&str>] = &[
            (&[], None, false),
            (&[("x-forwarded-for", "203.0.113.7")], Some("203.0.113.7"), false),
            (&[("x-forwarded-for", " 203.0.113.7 ,198.51.100.2")], Some("203.0.113.7, 198.51.100.2"), false),
            (
                &[("x-forwarded-for", "203.0.113.7, 2001:db8::1"), ("x-forwarded-for", "192.0.2.1")],
                Some("203.0.113.7, 2001:db8::1, 192.0.2.1"),
                false,
            ),
            (&[("x-forwarded-for", "2001:DB8:0:0::1")], Some("2001:db8::1"), false),
            // Not a list of IP addresses: replaced, as from an untrusted peer.
            (&[("x-forwarded-for", "")], None, true),
            (&[("x-forwarded-for", "203.0.113.7,")], None, true),
            (&[("x-forwarded-for", "unknown")], None, true),
            (&[("x-forwarded-for", "203.0.113.7:443")], None, true),
            (&[("x-forwarded-for", "[2001:db8::1]")], None, true),
            (&[("x-forwarded-for", "203.0.113.7, evil")], None, true),
            (&[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "<script>")], None, true),
            (&[("x-forwarded-for", "fe80::1%eth0")], None, true),
            (&[("x-forwarded-for", "1.2.3.4 5.6.7.8")], None, true),
        ];
        for (lines, chain, replaced) in table {
            let got = read(lines);
            assert_eq!(got.chain.as_deref(), *chain, "{lines:?}");
            assert_eq!(got.replaced, *replaced, "{lines:?}");
        }
    }

    #[test]
    fn a_chain_longer_than_the_bound_is_replaced() {
        let at_bound = vec!["10.0.0.1"; MAX_FORWARDED_HOPS].join(", ");
        assert!(read(&[("x-forwarded-for", &at_bound)]).chain.is_some());
        let over = vec!["10.0.0.1"; MAX_FORWARDED_HOPS + 1].join(", ");
        assert_eq!(read(&[("x-forwarded-for", &over)]), PeerForwarded { chain: None, proto: None, replaced: true });
    }

    #[test]
    fn one_http_or_https_proto_is_kept() {
        let table: &[Case<&str>] = &[
            (&[("x-forwarded-proto", "https")], Some("https"), false),
            (&[("x-forwarded-proto", " HTTP ")], Some("http"), false),
            (&[("x-forwarded-proto", "ftp")], None, true),
            (&[("x-forwarded-proto", "https, http")], None, true),
            (&[("x-forwarded-proto", "https"), ("x-forwarded-proto", "https")], None, true),
            (&[("x-forwarded-proto", "")], None, true),
        ];
        for (lines, proto, replaced) in table {
            let got = read(lines);
            assert_eq!(got.proto, *proto, "{lines:?}");
            assert_eq!(got.replaced, *replaced, "{lines:?}");
        }
    }

    #[test]
    fn the_peer_is_appended_to_a_kept_chain() {
        for (peer, alone) in [("10.1.2.3:443", "10.1.2.3"), ("[2001:db8::1]:443", "2001:db8::1")] {
            let conn = ConnInfo::new(peer.parse().unwrap(), false, true);
            assert_eq!(
                conn.forwarded_for(Some("203.0.113.7, 198.51.100.2")).unwrap(),
                format!("203.0.113.7, 198.51.100.2, {alone}").as_str()
            );
            assert_eq!(conn.forwarded_for(None).unwrap(), alone);
        }
    }

    proptest! {
        /// Whatever a trusted peer sends, a kept chain is only IP addresses, at most the bound.
        #[test]
        fn a_kept_chain_is_only_addresses(lines in proptest::collection::vec("[0-9a-fA-F.:, %\\[\\]x-]{0,80}", 0..4)) {
            let mut h = HeaderMap::new();
            for l in &lines {
                h.append(names::FORWARDED_FOR, HeaderValue::from_str(l).unwrap());
            }
            if let Some(chain) = PeerForwarded::read(&h).chain {
                let entries: Vec<&str> = chain.split(", ").collect();
                prop_assert!(entries.len() <= MAX_FORWARDED_HOPS);
                for e in entries {
                    prop_assert!(e.parse::<IpAddr>().is_ok(), "{:?} in {:?}", e, chain);
                }
            }
        }
    }
}
