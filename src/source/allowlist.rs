//! Per-source IP allowlists (CIDR), and which address counts as the client.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Result, anyhow};
use axum::http::HeaderMap;

/// One `addr/prefix` network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| anyhow!("{text:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| anyhow!("{text:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen through an IPv6 socket is ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The trusted proxy header's last entry is not an address, so who sent the
/// request cannot be told. Skipping such an entry would make the one to its
/// left "the client", and everything left of the proxy's own entry is
/// written by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the client address cannot be determined: the last entry of {header} is {entry:?}, not an IP address"
)]
pub struct UnknownClient {
    pub header: String,
    pub entry: String,
}

/// The client address: the peer, unless the source trusts a proxy header,
/// in which case the right-most entry of its last line (the one our proxy
/// appended; anything left of it is client-controlled). A port on that
/// entry (`1.2.3.4:5678`, `[2001:db8::1]:443`) is ignored.
pub fn client_ip(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted_header: Option<&str>,
) -> Result<IpAddr, UnknownClient> {
    let Some(name) = trusted_header else {
        return Ok(peer.ip());
    };
    let Some(line) = headers.get_all(name).iter().next_back() else {
        // Not through the proxy (or it adds nothing): the peer is the client.
        return Ok(peer.ip());
    };
    let unknown = |entry: &str| UnknownClient {
        header: name.to_string(),
        entry: entry.to_string(),
    };
    let line = line
        .to_str()
        .map_err(|_| unknown(&String::from_utf8_lossy(line.as_bytes())))?;
    let entry = line.rsplit(',').next().unwrap_or("").trim();
    parse_entry(entry).ok_or_else(|| unknown(entry))
}

/// An address with or without a port, as proxies write them.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            if after.is_empty() {
                return host.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
            }
            (host, after.strip_prefix(':')?)
        }
        None => {
            let (host, port) = entry.rsplit_once(':')?;
            // An unbracketed IPv6 address with a port is ambiguous.
            host.parse::<std::net::Ipv4Addr>().ok()?;
            (host, port)
        }
    };
    port.parse::<u16>().ok()?;
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("192.30.252.0/22").unwrap();
        assert!(net.contains("192.30.255.1".parse().unwrap()));
        assert!(!net.contains("192.30.248.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.30.253.7".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    fn xff(lines: &[&str]) -> Result<IpAddr, UnknownClient> {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        client_ip(peer, &h, Some("x-forwarded-for"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn proxy_header_only_when_trusted() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        assert_eq!(client_ip(peer, &h, None), Ok(peer.ip()));
        assert_eq!(xff(&["6.6.6.6, 1.2.3.4"]), Ok(ip("1.2.3.4")));
        // No header: the peer.
        assert_eq!(xff(&[]), Ok(peer.ip()));
    }

    #[test]
    fn the_last_entry_decides_ports_stripped() {
        assert_eq!(
            xff(&["203.0.113.9, 198.51.100.7:51234"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            xff(&["203.0.113.9, [2001:db8::1]:443"]),
            Ok(ip("2001:db8::1"))
        );
        assert_eq!(xff(&["[2001:db8::2]"]), Ok(ip("2001:db8::2")));
        assert_eq!(xff(&["2001:db8::3"]), Ok(ip("2001:db8::3")));
        assert_eq!(xff(&[" 198.51.100.7 "]), Ok(ip("198.51.100.7")));
        // Of several lines, the last (the proxy appends its own line or entry).
        assert_eq!(xff(&["203.0.113.9", "6.6.6.6, 1.2.3.4"]), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn an_unparsable_last_entry_is_unknown_not_skipped() {
        for bad in [
            "203.0.113.9, unknown",
            "203.0.113.9, ",
            "203.0.113.9,",
            "203.0.113.9, 198.51.100.7:port",
            "203.0.113.9, 198.51.100.7:99999",
            "203.0.113.9, [2001:db8::1",
            "203.0.113.9, [2001:db8::1]443",
            "203.0.113.9, 2001:db8::1:443:x",
            "203.0.113.9, _hidden",
        ] {
            let e = xff(&[bad]).unwrap_err();
            assert_eq!(e.header, "x-forwarded-for");
            assert!(e.to_string().contains("x-forwarded-for"), "{e}");
        }
        // A client-written last line is not skipped in favour of an earlier one.
        assert!(xff(&["203.0.113.9", "unknown"]).is_err());
    }
}
