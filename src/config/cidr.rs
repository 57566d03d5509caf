//! `server.trusted_proxies`: the networks whose peers may speak for their clients (their
//! `X-Forwarded-For` chain is kept, their PROXY protocol header is read).
//!
//! A few lines of our own rather than the `ipnet` crate: the gateway needs only "parse" and
//! "contains", and one rule `ipnet` does not have — an IPv4 peer seen through a dual-stack
//! socket (`::ffff:10.0.0.1`) is the IPv4 address it carries, on both sides of the match.

use std::fmt;
use std::net::IpAddr;

/// One network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix`, or a bare address (one host: `/32` or `/128`). An address with bits
    /// set beyond its prefix (`10.1.2.3/8`) is refused with the network it probably means.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let Ok(addr) = addr_text.parse::<IpAddr>() else {
            return Err(format!(
                "{text:?} is not an IP address or network (e.g. \"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\")"
            ));
        };
        let bits = bits_of(addr);
        let prefix = match prefix_text {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{text:?}: the prefix length must be a number from 0 to {bits}")),
            },
        };
        let net = Cidr { addr, prefix };
        let base = net.network();
        if base != addr {
            return Err(format!("{text:?} has bits set past its /{prefix}; did you mean \"{base}/{prefix}\"?"));
        }
        Ok(net.canonical())
    }

    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }

    /// True for `0.0.0.0/0` and `::/0`, which trust every peer.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }

    /// The address with every bit past the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((mask(u32::from(a).into(), self.prefix, 32) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(mask(u128::from(a), self.prefix, 128).into()),
        }
    }

    /// An IPv4-mapped network (`::ffff:10.0.0.0/104`) as the IPv4 network it covers.
    fn canonical(self) -> Cidr {
        match self.addr.to_canonical() {
            IpAddr::V4(v4) if self.addr.is_ipv6() && self.prefix >= 96 => {
                Cidr { addr: IpAddr::V4(v4), prefix: self.prefix - 96 }
            }
            _ => self,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `value` with only its first `prefix` of `bits` bits kept.
fn mask(value: u128, prefix: u8, bits: u8) -> u128 {
    let host_bits = u32::from(bits - prefix);
    if host_bits >= 128 {
        0
    } else {
        value >> host_bits << host_bits
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    mask(a, prefix, bits) == mask(b, prefix, bits)
}

/// The networks in `server.trusted_proxies`; empty (the default) trusts no peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// These networks.
    pub fn new(nets: Vec<Cidr>) -> Self {
        TrustedProxies(nets)
    }

    /// True when `ip` is in one of the networks (never, when there are none).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// No network is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks, as configured (after canonicalisation).
    pub fn nets(&self) -> &[Cidr] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        let table = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.0.2.7", "192.0.2.7/32"),
        ];
        for (text, shown) in table {
            assert_eq!(Cidr::parse(text).map(|c| c.to_string()), Ok(shown.to_string()), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_network_and_says_why() {
        let table = [
            ("", "is not an IP address"),
            ("example.com", "is not an IP address"),
            ("10.0.0.0/", "prefix length must be a number from 0 to 32"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("10.0.0.0/+8", "from 0 to 32"),
            ("10.0.0.0/8/8", "from 0 to 32"),
            ("2001:db8::/129", "from 0 to 128"),
            ("10.1.2.3/8", "did you mean \"10.0.0.0/8\"?"),
            ("2001:db8::1/32", "did you mean \"2001:db8::/32\"?"),
            ("10.0.0.0 /8", "is not an IP address"),
            ("fe80::1%eth0", "is not an IP address"),
        ];
        for (text, says) in table {
            let err = Cidr::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "the problem names the entry: {err}");
        }
    }

    #[test]
    fn contains_matches_the_prefix_only_and_reads_mapped_addresses_as_ipv4() {
        let table = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "::ffff:10.1.1.1", true),
            ("::ffff:10.0.0.0/104", "10.1.1.1", true),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.1", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::/32", "10.0.0.1", false),
            ("127.0.0.2/32", "127.0.0.3", false),
        ];
        for (net, addr, inside) in table {
            assert_eq!(Cidr::parse(net).unwrap().contains(ip(addr)), inside, "{addr} in {net}");
        }
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")), "nothing is trusted by default");
    }
}
