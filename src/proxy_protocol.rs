//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary), which an
//! L4 load balancer puts at the start of a connection to say which client it carries.
//!
//! Pure, over the bytes seen so far at the start of a connection: [`parse`] says whether they
//! are plain traffic, a header still arriving, a broken header, or a whole one and its length,
//! so the caller can peek until the header is complete and then consume exactly that many
//! bytes, leaving what follows (the client's first request) untouched.
//!
//! Every strict prefix of a valid header parses as [`Parsed::Incomplete`], and a header is
//! never longer than [`MAX_V1_LEN`] (v1) or [`MAX_V2_LEN`] (v2; longer ones are refused), so
//! the caller's buffer is bounded. Bytes that cannot become a valid header are refused as soon
//! as they are seen, not when the bound is reached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 signature.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the spec's worst case, `TCP6` with every field at
/// its longest).
pub const MAX_V1_LEN: usize = 107;
/// The longest v2 header accepted: the 16 fixed bytes and 520 more — room for the longest
/// address block (216 bytes, AF_UNIX) and the TLVs load balancers add. Longer ones are refused.
pub const MAX_V2_LEN: usize = 536;
/// The longest header of either version: a buffer this large always holds a whole one.
pub const MAX_LEN: usize = MAX_V2_LEN;

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// They do not start with a PROXY signature: plain traffic, nothing to consume.
    NotProxy,
    /// A PROXY header (or its signature) so far; more bytes are needed.
    Incomplete,
    /// A PROXY signature followed by what is not a valid header.
    Invalid(&'static str),
    /// A whole header of `len` bytes. `source` is the client it names; `None` when it names
    /// none — a v2 `LOCAL` (the balancer's own health check), a v1 `UNKNOWN`, or an address
    /// family without an IP address — and the socket's peer stands for itself.
    Complete {
        /// The header's length: consume exactly this many bytes.
        len: usize,
        /// The client's address and port.
        source: Option<SocketAddr>,
    },
}

/// Whether `buf` starts with a PROXY signature: `Some(true)` once a whole one is seen,
/// `Some(false)` as soon as a byte differs from both, `None` while it is a prefix of one.
pub fn starts_with_signature(buf: &[u8]) -> Option<bool> {
    let matches = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if buf.len() >= V1_SIGNATURE.len() && buf.starts_with(V1_SIGNATURE)
        || buf.len() >= V2_SIGNATURE.len() && buf.starts_with(&V2_SIGNATURE)
    {
        Some(true)
    } else if matches(V1_SIGNATURE) || matches(&V2_SIGNATURE) {
        None
    } else {
        Some(false)
    }
}

/// Parses the start of a connection. Never panics, on any input.
pub fn parse(buf: &[u8]) -> Parsed {
    match starts_with_signature(buf) {
        Some(false) => Parsed::NotProxy,
        None => Parsed::Incomplete,
        Some(true) if buf.starts_with(V1_SIGNATURE) => parse_v1(buf),
        Some(true) => parse_v2(buf),
    }
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, `TCP6` likewise, or `PROXY UNKNOWN…\r\n`.
fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(MAX_V1_LEN)];
    // Only visible ASCII and spaces before the CR, and the CR followed by LF.
    let Some(end) = window.iter().position(|b| !(b' '..=b'~').contains(b)) else {
        return if window.len() == MAX_V1_LEN {
            Parsed::Invalid("a v1 header longer than 107 bytes")
        } else {
            Parsed::Incomplete
        };
    };
    match window.get(end..end + 2) {
        _ if window[end] != b'\r' => return Parsed::Invalid("a v1 header with a byte that is not printable ASCII"),
        Some(b"\r\n") => {}
        Some(_) => return Parsed::Invalid("a v1 header whose CR is not followed by LF"),
        None if window.len() == MAX_V1_LEN => return Parsed::Invalid("a v1 header longer than 107 bytes"),
        None => return Parsed::Incomplete,
    }
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&buf[V1_SIGNATURE.len()..end]) else {
        return Parsed::Invalid("a v1 header that is not ASCII");
    };
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Parsed::Complete { len, source: None };
    }
    let fields: Vec<&str> = line.split(' ').collect();
    let [family, src, dst, sport, dport] = fields[..] else {
        return Parsed::Invalid("a v1 header without exactly: family, source, destination, two ports");
    };
    let addrs = match family {
        "TCP4" => src.parse::<Ipv4Addr>().ok().map(IpAddr::V4).zip(dst.parse::<Ipv4Addr>().ok().map(IpAddr::V4)),
        "TCP6" => src.parse::<Ipv6Addr>().ok().map(IpAddr::V6).zip(dst.parse::<Ipv6Addr>().ok().map(IpAddr::V6)),
        _ => return Parsed::Invalid("a v1 header whose family is not TCP4, TCP6 or UNKNOWN"),
    };
    let Some((src, _dst)) = addrs else {
        return Parsed::Invalid("a v1 header whose addresses are not of its family");
    };
    match (port(sport), port(dport)) {
        (Some(sport), Some(_)) => Parsed::Complete { len, source: Some(SocketAddr::new(src, sport)) },
        _ => Parsed::Invalid("a v1 header whose ports are not numbers from 0 to 65535"),
    }
}

/// A decimal port: digits only, no sign, no leading zero.
fn port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    if digits && canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// Version and command (byte 12), family and transport (byte 13), then the length of the rest
/// (bytes 14–15, big-endian), then the addresses and any TLVs (skipped).
fn parse_v2(buf: &[u8]) -> Parsed {
    let sig = V2_SIGNATURE.len();
    let local = match buf.get(sig) {
        None => return Parsed::Incomplete,
        Some(0x20) => true,
        Some(0x21) => false,
        Some(b) if b >> 4 != 2 => return Parsed::Invalid("a v2 signature with a version other than 2"),
        Some(_) => return Parsed::Invalid("a v2 header whose command is neither LOCAL nor PROXY"),
    };
    let address_len = match buf.get(sig + 1) {
        None => return Parsed::Incomplete,
        // UNSPEC, or AF_UNIX over a stream or datagrams: no IP address.
        Some(0x00 | 0x31 | 0x32) => 0,
        Some(0x11 | 0x12) => 12,
        Some(0x21 | 0x22) => 36,
        Some(_) => return Parsed::Invalid("a v2 header with an unknown address family or transport"),
    };
    let Some(&[hi, lo]) = buf.get(sig + 2..sig + 4) else {
        return Parsed::Incomplete;
    };
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2_LEN {
        return Parsed::Invalid("a v2 header longer than 536 bytes");
    }
    if !local && len < 16 + address_len {
        return Parsed::Invalid("a v2 header too short for its addresses");
    }
    let Some(header) = buf.get(..len) else {
        return Parsed::Incomplete;
    };
    if local {
        return Parsed::Complete { len, source: None };
    }
    let a = &header[16..];
    let source = match address_len {
        12 => {
            let ip: [u8; 4] = [a[0], a[1], a[2], a[3]];
            Some(SocketAddr::new(IpAddr::from(ip), u16::from_be_bytes([a[8], a[9]])))
        }
        36 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(IpAddr::from(ip), u16::from_be_bytes([a[32], a[33]])))
        }
        _ => None,
    };
    Parsed::Complete { len, source }
}

/// A v1 header naming `source` and `destination` (which must be of one family).
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {family} {} {} {} {}\r\n", source.ip(), destination.ip(), source.port(), destination.port())
        .into_bytes()
}

/// A v2 `PROXY` header over TCP naming `source` and `destination` (which must be of one
/// family), followed by `tlvs` (raw bytes, skipped by [`parse`]); `None` source: a `LOCAL`
/// header with `tlvs` only.
pub fn encode_v2(addresses: Option<(SocketAddr, SocketAddr)>, tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let mut rest = Vec::new();
    match addresses {
        None => out.extend([0x20, 0x00]),
        Some((src, dst)) => {
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend([0x21, 0x11]);
                    rest.extend(s.octets());
                    rest.extend(d.octets());
                }
                (s, d) => {
                    out.extend([0x21, 0x21]);
                    rest.extend(to_v6(s).octets());
                    rest.extend(to_v6(d).octets());
                }
            }
            rest.extend(src.port().to_be_bytes());
            rest.extend(dst.port().to_be_bytes());
        }
    }
    rest.extend(tlvs);
    let len = u16::try_from(rest.len()).unwrap_or(u16::MAX);
    out.extend(len.to_be_bytes());
    out.extend(rest);
    out
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(len: usize, source: Option<&str>) -> Parsed {
        Parsed::Complete { len, source: source.map(addr) }
    }

    /// The example v2 header of HAProxy's documentation, written out by hand: PROXY over TCP4,
    /// 172.19.0.1:42578 → 172.19.0.3:80.
    const HAPROXY_V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xac\x13\x00\x01\xac\x13\x00\x03\xa6\x52\x00\x50";

    #[test]
    fn v1_headers() {
        let table: &[(&[u8], Parsed)] = &[
            (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /", complete(45, Some("192.0.2.1:56324"))),
            (b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", complete(44, Some("[2001:db8::1]:1"))),
            (b"PROXY TCP4 192.0.2.1 198.51.100.2 0 0\r\n", complete(39, Some("192.0.2.1:0"))),
            (b"PROXY UNKNOWN\r\n", complete(15, None)),
            (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", complete(59, None)),
            (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443", Parsed::Incomplete),
            (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r", Parsed::Incomplete),
            (b"PROXY", Parsed::Incomplete),
            (b"", Parsed::Incomplete),
            (b"GET / HTTP/1.1\r\n", Parsed::NotProxy),
            (b"PRI * HTTP/2.0\r\n", Parsed::NotProxy),
            (b"PROXZ", Parsed::NotProxy),
            (b"\x16\x03\x01", Parsed::NotProxy),
        ];
        for (bytes, expected) in table {
            assert_eq!(parse(bytes), *expected, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn broken_v1_headers_are_refused_as_soon_as_seen() {
        let table: &[&[u8]] = &[
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 9\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 56324 443\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 56324 443\r\n",
            b"PROXY TCP4 192.0.2.001 198.51.100.2 56324 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +80 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 080 443\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 56324 443\r\n",
            b"PROXY tcp4 192.0.2.1 198.51.100.2 56324 443\r\n",
            b"PROXY \r\n",
            b"PROXY UNKNOWNX\r\n",
            // Broken before its end: refused without waiting for more.
            b"PROXY TCP4 192.0.2.1\n",
            b"PROXY TCP4 192.0.2.1\rX",
            b"PROXY TCP4 \x00",
            b"PROXY TCP4 \xc3\xa9",
        ];
        for bytes in table {
            assert!(
                matches!(parse(bytes), Parsed::Invalid(_)),
                "{:?}: {:?}",
                String::from_utf8_lossy(bytes),
                parse(bytes)
            );
        }
        // No CRLF within 107 bytes: refused at the bound, not waited for.
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(MAX_V1_LEN - 1, b'a');
        assert_eq!(parse(&long), Parsed::Incomplete);
        long.push(b'\r');
        assert!(matches!(parse(&long), Parsed::Invalid(_)), "a CR at byte 107: the LF would make 108");
        long.truncate(MAX_V1_LEN - 2);
        long.extend(b"\r\n");
        assert_eq!(parse(&long), complete(MAX_V1_LEN, None), "exactly 107 bytes is fine");
    }

    #[test]
    fn v2_headers() {
        assert_eq!(parse(HAPROXY_V2), complete(28, Some("172.19.0.1:42578")));
        let mut with_request = HAPROXY_V2.to_vec();
        with_request.extend(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&with_request), complete(28, Some("172.19.0.1:42578")));
        for n in 0..HAPROXY_V2.len() {
            assert_eq!(parse(&HAPROXY_V2[..n]), Parsed::Incomplete, "prefix of {n} bytes");
        }

        let sig = b"\r\n\r\n\0\r\nQUIT\n";
        let with = |rest: &[u8]| [&sig[..], rest].concat();
        let v6 = with(
            b"\x21\x21\x00\x24\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02\x01\xbb\x00\x50",
        );
        assert_eq!(parse(&v6), complete(52, Some("[2001:db8::1]:443")));
        // LOCAL: the balancer's own connection; its length is skipped, whatever it holds.
        assert_eq!(parse(&with(b"\x20\x00\x00\x00")), complete(16, None));
        assert_eq!(
            parse(&with(b"\x20\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02")),
            complete(28, None)
        );
        // UNSPEC and AF_UNIX name no IP address.
        assert_eq!(parse(&with(b"\x21\x00\x00\x00")), complete(16, None));
        let mut unix = with(b"\x21\x31\x00\xd8");
        unix.resize(16 + 216, 0);
        assert_eq!(parse(&unix), complete(232, None));
        // TLVs after the addresses are skipped.
        let mut tlvs = with(b"\x21\x11\x00\x13\xc0\x00\x02\x01\xc0\x00\x02\x02\x1f\x90\x00\x50\x04\x00\x04abcd");
        tlvs.truncate(16 + 19);
        assert_eq!(parse(&tlvs), complete(35, Some("192.0.2.1:8080")));
    }

    #[test]
    fn broken_v2_headers_are_refused_as_soon_as_seen() {
        let sig = b"\r\n\r\n\0\r\nQUIT\n";
        let with = |rest: &[u8]| [&sig[..], rest].concat();
        let table: &[&[u8]] = &[
            b"\x11",             // version 1 in the binary form
            b"\x22",             // command 2
            b"\x21\x41",         // family 4
            b"\x21\x13",         // transport 3
            b"\x21\x11\x00\x0b", // too short for IPv4 addresses
            b"\x21\x21\x00\x23", // too short for IPv6 addresses
            b"\x21\x11\x02\x09", // 16 + 521 bytes
            b"\x21\x11\xff\xff",
        ];
        for rest in table {
            let bytes = with(rest);
            assert!(matches!(parse(&bytes), Parsed::Invalid(_)), "{rest:x?}: {:?}", parse(&bytes));
        }
        assert_eq!(parse(&with(b"\x21\x11\x02\x08")), Parsed::Incomplete, "16 + 520 bytes is the cap, still arriving");
    }

    #[test]
    fn signature_detection() {
        assert_eq!(starts_with_signature(b""), None);
        assert_eq!(starts_with_signature(b"PROX"), None);
        assert_eq!(starts_with_signature(b"\r\n\r\n"), None);
        assert_eq!(starts_with_signature(b"PROXY "), Some(true));
        assert_eq!(starts_with_signature(b"\r\n\r\n\0\r\nQUIT\n"), Some(true));
        assert_eq!(starts_with_signature(b"PROXYX"), Some(false));
        assert_eq!(starts_with_signature(b"\r\n\r\n\0\r\nQUIT\r"), Some(false));
        assert_eq!(starts_with_signature(b"GET"), Some(false));
        assert_eq!(starts_with_signature(b"\r\nGET / HTTP/1.1"), Some(false));
    }

    fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
            (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn never_panics_and_a_complete_header_fits_the_buffer(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Parsed::Complete { len, .. } = parse(&bytes) {
                prop_assert!(len <= bytes.len() && len <= MAX_LEN);
            }
        }

        #[test]
        fn never_panics_after_a_signature(v2 in any::<bool>(), rest in proptest::collection::vec(any::<u8>(), 0..600)) {
            let sig: &[u8] = if v2 { &V2_SIGNATURE } else { V1_SIGNATURE };
            let bytes = [sig, &rest].concat();
            let parsed = parse(&bytes);
            prop_assert_ne!(parsed, Parsed::NotProxy);
            let cap = if v2 { MAX_V2_LEN } else { MAX_V1_LEN };
            if let Parsed::Complete { len, .. } = parsed {
                prop_assert!(len <= bytes.len() && len <= cap);
            }
        }

        #[test]
        fn built_headers_round_trip_and_their_prefixes_are_incomplete(
            (src, dst) in socket_pair(),
            v2 in any::<bool>(),
            tlvs in proptest::collection::vec(any::<u8>(), 0..64),
            after in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let header = if v2 { encode_v2(Some((src, dst)), &tlvs) } else { encode_v1(src, dst) };
            let cap = if v2 { MAX_V2_LEN } else { MAX_V1_LEN };
            prop_assert!(header.len() <= cap);
            let with_more = [&header[..], &after].concat();
            prop_assert_eq!(parse(&with_more), Parsed::Complete { len: header.len(), source: Some(src) });
            for n in 0..header.len() {
                prop_assert_eq!(parse(&header[..n]), Parsed::Incomplete, "prefix of {} bytes", n);
            }
            let local = encode_v2(None, &tlvs);
            prop_assert_eq!(parse(&local), Parsed::Complete { len: local.len(), source: None });
        }
    }
}
