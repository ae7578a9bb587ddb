//! The client's IP address, for brute-force protection and the audit trail.
//!
//! It is the socket's peer address, unless that peer is a configured trusted
//! proxy (`TRUSTED_PROXIES`). Then `X-Forwarded-For` is read from the right,
//! each proxy having appended the address it received from: the first entry
//! that is not itself a trusted proxy is the client. Entries left of it were
//! written by the client and may be forged, so they are never used; a header
//! from a client that is not a trusted proxy is ignored altogether.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address of a request from `peer` carrying the
/// `X-Forwarded-For` values `forwarded` (in header order).
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(*ip, trusted);
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        // A malformed entry ends the chain we can trust: the last address
        // we could vouch for stands.
        let Ok(ip) = entry.parse::<IpAddr>() else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// Whether `peer` is one of the `trusted` proxies, whose forwarded headers
/// are believed.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let got = resolve(ip("203.0.113.7"), ["198.51.100.1"], &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("203.0.113.7"));
        assert_eq!(
            resolve(ip("10.1.1.1"), ["198.51.100.1"], &[]),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxies appended the rest.
        let got = resolve(
            ip("10.0.0.2"),
            ["6.6.6.6, 198.51.100.9", "10.0.0.1"],
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.9"));
    }

    #[test]
    fn without_a_usable_header_the_proxy_itself_stands() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(resolve(ip("10.0.0.2"), [], &trusted), ip("10.0.0.2"));
        assert_eq!(
            resolve(ip("10.0.0.2"), ["not-an-ip"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            resolve(ip("::ffff:10.0.0.2"), ["192.0.2.5"], &trusted),
            ip("192.0.2.5"),
            "IPv4-mapped peers are matched as IPv4"
        );
    }
}
