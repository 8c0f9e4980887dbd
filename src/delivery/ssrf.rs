//! SSRF guard for outgoing deliveries.
//!
//! Webhook target URLs come from configuration that is often written by
//! people who should not be able to reach hookyard's own network: the
//! loopback admin ports, the private LAN, or the cloud metadata endpoint
//! that hands out instance credentials. A target is therefore refused when
//! its address falls in one of those ranges, unless the target opts in with
//! `allow_private = true`.
//!
//! The check has to happen where the connection is made, not when the
//! configuration is loaded: a name that resolved to a public address at
//! startup can resolve to 127.0.0.1 a minute later (DNS rebinding). Two
//! pieces cover the two ways reqwest picks an address:
//!
//! * [`GuardedResolver`] is installed as the client's resolver, so every
//!   address reqwest connects to for a domain name is one it has vetted.
//! * [`check_url_host`] covers IP-literal hosts, for which reqwest (hyper)
//!   never calls the resolver.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Tells an operator how to lift the refusal when reaching the address is
/// intended (e.g. a receiver on the same private network).
const HINT: &str = "set allow_private = true on the target to allow it";

/// Why a webhook delivery must not connect to `ip`, or `None` when the
/// address is public and fine to reach.
///
/// A short label rather than a bool so the refusal can tell the operator
/// which rule fired. Forms of IPv6 that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by the IPv4 address inside, because
/// that is what the connection ends up reaching.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Why the guard would not let a delivery connect. The resolver's refusal
/// reaches the attempt through reqwest's error chain, so it is a type the
/// attempt finds there by downcasting, not a message it recognises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The URL names no host at all (only possible outside http/https).
    #[error("refused: {0} has no host")]
    NoHost(String),
    /// The host is an IP literal in a forbidden range.
    #[error("refused: {ip} is {}; {HINT}", describe(reason))]
    Literal { ip: IpAddr, reason: &'static str },
    /// The name resolved to one address, and it is forbidden.
    #[error("refused: {host} resolves to {ip}, {}; {HINT}", describe(reason))]
    Resolved {
        host: String,
        ip: IpAddr,
        reason: &'static str,
    },
    /// The name resolved to several addresses, every one forbidden.
    #[error(
        "refused: {host} resolves only to forbidden addresses: {}; {HINT}",
        list(addrs)
    )]
    ResolvedOnly {
        host: String,
        addrs: Vec<(IpAddr, &'static str)>,
    },
}

/// Refuses a URL whose host is an IP literal in a forbidden range.
///
/// Needed alongside [`GuardedResolver`] because reqwest connects to IP
/// literals directly, without asking the resolver. Domain names pass here:
/// they are checked when they are resolved, at connect time.
pub fn check_url_host(url: &url::Url) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        // For http(s) URLs the url crate already turns every IPv4 spelling
        // (decimal, hex, short forms) into `Host::Ipv4`; for other schemes
        // the host stays opaque, so catch a literal hiding there too.
        Some(url::Host::Domain(domain)) => match domain.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return Ok(()),
        },
        None => return Err(Refused::NoHost(crate::config::redact_url(url))),
    };
    match forbidden_reason(ip) {
        Some(reason) => Err(Refused::Literal { ip, reason }),
        None => Ok(()),
    }
}

/// The guard's refusal somewhere in an error's chain of sources.
pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<Refused>())
}

/// DNS resolver for the delivery client that never hands reqwest a
/// forbidden address.
///
/// Filtering inside the resolver (rather than resolving once up front and
/// checking) is what makes the guard rebinding-safe: the addresses reqwest
/// connects to are exactly the ones checked here. Forbidden addresses are
/// dropped; if none are left the lookup fails with a message naming the
/// host, the addresses and why they were refused.
///
/// Install with `ClientBuilder::dns_resolver(Arc::new(GuardedResolver))` on
/// the client used for targets without `allow_private`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs = filter_addrs(&host, resolved)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Keeps the allowed addresses, or explains why there are none: a
/// [`Refused`] when every address is forbidden (boxed as itself, so the
/// attempt can find it), a plain message when there were none at all.
fn filter_addrs(
    host: &str,
    resolved: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    if resolved.is_empty() {
        return Err(format!("{host} resolved to no addresses").into());
    }
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .into_iter()
        .partition(|a| forbidden_reason(a.ip()).is_none());

    // getaddrinfo may repeat an address; name each refused one once.
    let mut seen = HashSet::new();
    let refused: Vec<(IpAddr, &'static str)> = refused
        .iter()
        .map(|a| a.ip())
        .filter(|ip| seen.insert(*ip))
        .filter_map(|ip| forbidden_reason(ip).map(|r| (ip, r)))
        .collect();

    if allowed.is_empty() {
        let host = host.to_string();
        return Err(Box::new(match refused.as_slice() {
            [(ip, reason)] => Refused::Resolved {
                host,
                ip: *ip,
                reason,
            },
            _ => Refused::ResolvedOnly {
                host,
                addrs: refused,
            },
        }));
    }
    if !refused.is_empty() {
        // A name mixing public and private answers is worth an operator's
        // attention: it is what a rebinding attempt looks like.
        tracing::warn!(host, dropped = %list(&refused), "dropped forbidden addresses from DNS answer");
    }
    Ok(allowed)
}

/// "127.0.0.1 (loopback), ::1 (loopback)" for messages.
fn list(addrs: &[(IpAddr, &'static str)]) -> String {
    addrs
        .iter()
        .map(|(ip, reason)| format!("{ip} ({reason})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "a loopback address", "an unspecified address", … for messages.
fn describe(reason: &str) -> String {
    match reason {
        "metadata" => "a cloud metadata address".to_owned(),
        "unspecified" => "an unspecified address".to_owned(),
        other => format!("a {other} address"),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let reason = match ip.octets() {
        [0, 0, 0, 0] => "unspecified",
        // "This network": 0.x.y.z is not a valid destination.
        [0, ..] => "reserved",
        [10, ..] => "private",
        // Alibaba Cloud metadata lives inside the CGNAT range.
        [100, 100, 100, 200] => "metadata",
        [100, 64..=127, ..] => "carrier-grade NAT",
        [127, ..] => "loopback",
        // AWS/GCP/Azure/OpenStack metadata, and the AWS ECS task endpoint.
        [169, 254, 169, 254] | [169, 254, 170, 2] => "metadata",
        [169, 254, ..] => "link-local",
        [172, 16..=31, ..] => "private",
        [192, 0, 0, _] => "reserved",
        [192, 0, 2, _] => "documentation",
        // Deprecated 6to4 relay anycast.
        [192, 88, 99, _] => "reserved",
        [192, 168, ..] => "private",
        [198, 18..=19, ..] => "benchmarking",
        [198, 51, 100, _] => "documentation",
        [203, 0, 113, _] => "documentation",
        [224..=239, ..] => "multicast",
        [255, 255, 255, 255] => "broadcast",
        [240..=255, ..] => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let s = ip.segments();
    let embedded_tail = || Ipv4Addr::from_bits(ip.to_bits() as u32);
    let reason = match s {
        // IPv4-compatible (deprecated) ::a.b.c.d.
        [0, 0, 0, 0, 0, 0, _, _] => return v4_reason(embedded_tail()),
        // NAT64 well-known prefix: the gateway connects to the IPv4 inside.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return v4_reason(embedded_tail()),
        // Local-use NAT64 (RFC 8215): translated by a site-local gateway.
        [0x64, 0xff9b, 1, ..] => "private",
        // Discard-only prefix 100::/64.
        [0x100, 0, 0, 0, ..] => "reserved",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2001, 0x2, 0, ..] => "benchmarking",
        // 6to4: 2002:AABB:CCDD::/48 carries the IPv4 address AA.BB.CC.DD.
        [0x2002, hi, lo, ..] => {
            return v4_reason(Ipv4Addr::from_bits((u32::from(hi) << 16) | u32::from(lo)));
        }
        // AWS instance metadata over IPv6 (inside the ULA range).
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => "metadata",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique-local",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local",
        // Deprecated site-local fec0::/10, still routed privately in places.
        [a, ..] if a & 0xffc0 == 0xfec0 => "private",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast",
        // 3fff::/20 (RFC 9637).
        [0x3fff, b, ..] if b & 0xf000 == 0 => "documentation",
        // Only 2000::/3 is allocated for global unicast; everything else
        // left over is reserved or unassigned.
        [a, ..] if a & 0xe000 != 0x2000 => "reserved",
        _ => return None,
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    fn reason(s: &str) -> Option<&'static str> {
        forbidden_reason(s.parse().expect("test address parses"))
    }

    fn assert_all(cases: &[(&str, Option<&str>)]) {
        for (addr, want) in cases {
            assert_eq!(reason(addr), *want, "{addr}");
        }
    }

    #[test]
    fn ipv4_forbidden_ranges() {
        assert_all(&[
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("reserved")),
            ("0.255.255.255", Some("reserved")),
            ("10.0.0.0", Some("private")),
            ("10.255.255.255", Some("private")),
            ("100.64.0.0", Some("carrier-grade NAT")),
            ("100.127.255.255", Some("carrier-grade NAT")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("169.254.0.1", Some("link-local")),
            ("169.254.255.255", Some("link-local")),
            ("172.16.0.0", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.0.0.1", Some("reserved")),
            ("192.0.0.255", Some("reserved")),
            ("192.0.2.1", Some("documentation")),
            ("192.168.0.1", Some("private")),
            ("192.168.255.255", Some("private")),
            ("198.18.0.0", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.255", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.254", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
        ]);
    }

    #[test]
    fn ipv4_metadata_addresses() {
        assert_all(&[
            ("169.254.169.254", Some("metadata")),
            ("169.254.170.2", Some("metadata")),
            ("100.100.100.200", Some("metadata")),
        ]);
    }

    #[test]
    fn ipv4_range_edges_are_public() {
        assert_all(&[
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.0.1.0", None),
            ("192.0.3.0", None),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("198.51.101.0", None),
            ("203.0.114.0", None),
            ("223.255.255.255", None),
        ]);
    }

    #[test]
    fn ipv6_forbidden_ranges() {
        assert_all(&[
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fc00::1", Some("unique-local")),
            ("fdff:ffff::1", Some("unique-local")),
            ("fe80::1", Some("link-local")),
            ("febf:ffff::1", Some("link-local")),
            ("fec0::1", Some("private")),
            ("ff02::1", Some("multicast")),
            ("ff0e::101", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("2001:db8:ffff::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("2001:2::1", Some("benchmarking")),
            ("100::1", Some("reserved")),
            ("100::ffff:ffff:ffff:ffff", Some("reserved")),
            ("64:ff9b:1::1", Some("private")),
            ("4000::1", Some("reserved")),
            ("::1:0:0:1", Some("reserved")),
        ]);
    }

    #[test]
    fn ipv6_metadata_address() {
        assert_all(&[
            ("fd00:ec2::254", Some("metadata")),
            ("fd00:ec2::253", Some("unique-local")),
        ]);
    }

    #[test]
    fn ipv6_embedding_ipv4_is_judged_by_the_ipv4() {
        assert_all(&[
            // IPv4-mapped.
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible.
            ("::127.0.0.1", Some("loopback")),
            ("::192.168.1.1", Some("private")),
            // NAT64 well-known prefix.
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("metadata")),
            ("64:ff9b::8.8.8.8", None),
            // 6to4.
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:a00:1::", Some("private")),
            ("2002:808:808::1", None),
        ]);
    }

    #[test]
    fn public_addresses_are_allowed() {
        assert_all(&[
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.215.14", None),
            ("2606:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001:80b::200e", None),
        ]);
    }

    fn check(url: &str) -> Result<(), String> {
        check_url_host(&url::Url::parse(url).expect("test URL parses")).map_err(|e| e.to_string())
    }

    #[test]
    fn url_with_loopback_literal_is_refused() {
        assert_eq!(
            check("http://127.0.0.1:8080/hook"),
            Err("refused: 127.0.0.1 is a loopback address; \
                 set allow_private = true on the target to allow it"
                .to_owned())
        );
    }

    #[test]
    fn url_with_ipv6_literal_is_checked() {
        let err = check("http://[::1]:9000/").unwrap_err();
        assert!(err.contains("::1 is a loopback address"), "{err}");
        let err = check("https://[fd00:ec2::254]/latest/meta-data/").unwrap_err();
        assert!(err.contains("cloud metadata"), "{err}");
        let err = check("http://[::ffff:192.168.0.10]/").unwrap_err();
        assert!(err.contains("private"), "{err}");
        assert_eq!(check("https://[2606:4700::1111]/hook"), Ok(()));
    }

    #[test]
    fn url_with_obfuscated_ipv4_literal_is_refused() {
        // The url crate normalises these to 127.0.0.1 / 169.254.169.254.
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://169.254.43518/",
        ] {
            assert!(check(url).is_err(), "{url}");
        }
    }

    #[test]
    fn url_with_metadata_literal_names_metadata() {
        let err = check("http://169.254.169.254/latest/meta-data/").unwrap_err();
        assert!(
            err.contains("169.254.169.254 is a cloud metadata address"),
            "{err}"
        );
        let err = check("http://0.0.0.0/").unwrap_err();
        assert!(err.contains("an unspecified address"), "{err}");
    }

    #[test]
    fn url_with_public_literal_or_domain_is_allowed() {
        assert_eq!(check("https://8.8.8.8/hook"), Ok(()));
        assert_eq!(check("https://hooks.example.com/in"), Ok(()));
        // Domains are left to the resolver, even ones that look local.
        assert_eq!(check("http://localhost:8080/"), Ok(()));
    }

    #[test]
    fn url_with_literal_in_opaque_host_is_refused() {
        assert!(check("foo://127.0.0.1/").is_err());
        assert!(check("foo://example.com/").is_ok());
    }

    #[test]
    fn url_without_host_is_refused() {
        assert!(check("mailto:ops@example.com").is_err());
    }

    async fn resolve(host: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = host.parse().expect("valid name");
        GuardedResolver
            .resolve(name)
            .await
            .map(|addrs| addrs.collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn resolver_refuses_localhost() {
        let err = resolve("localhost").await.unwrap_err();
        assert!(err.starts_with("refused: localhost resolves"), "{err}");
        assert!(err.contains("loopback"), "{err}");
        assert!(err.contains("allow_private = true"), "{err}");
    }

    #[tokio::test]
    async fn resolver_refuses_private_literal_name() {
        // Numeric names are answered without DNS, so this stays offline.
        let err = resolve("10.1.2.3").await.unwrap_err();
        assert_eq!(
            err,
            "refused: 10.1.2.3 resolves to 10.1.2.3, a private address; \
             set allow_private = true on the target to allow it"
        );
    }

    #[tokio::test]
    async fn resolver_passes_public_addresses_through() {
        let addrs = resolve("8.8.8.8").await.unwrap();
        assert_eq!(addrs, vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn mixed_answer_keeps_only_allowed_addresses() {
        let public: SocketAddr = "1.1.1.1:0".parse().unwrap();
        let answer = vec![
            "127.0.0.1:0".parse().unwrap(),
            public,
            "[fe80::1]:0".parse().unwrap(),
        ];
        assert_eq!(filter_addrs("mixed.test", answer).unwrap(), vec![public]);
    }

    #[test]
    fn all_forbidden_answer_lists_each_address_once() {
        let answer = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            "[::1]:0".parse().unwrap(),
        ];
        let err = filter_addrs("localhost", answer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: localhost resolves only to forbidden addresses: \
             127.0.0.1 (loopback), ::1 (loopback); \
             set allow_private = true on the target to allow it"
        );
        assert!(err.downcast_ref::<Refused>().is_some(), "{err:?}");
        // No answer at all is a lookup failure, not the guard's refusal.
        let err = filter_addrs("empty.test", vec![]).unwrap_err();
        assert!(err.downcast_ref::<Refused>().is_none(), "{err:?}");
    }

    #[tokio::test]
    async fn client_with_guarded_resolver_never_connects_to_localhost() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver))
            .no_proxy()
            .build()
            .unwrap();

        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        // The refusal survives reqwest's wrapping as a type, not only as text.
        let refused = refusal_in(&err).expect("the guard's refusal is in the chain");
        assert!(refused.to_string().contains("loopback"), "{refused}");

        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "the guarded client reached the listener");
    }
}
