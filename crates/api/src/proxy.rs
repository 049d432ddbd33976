//! The client's address behind a reverse proxy. A deployment that puts a
//! proxy or load balancer in front of the server names it
//! (`--trusted-proxy`, addresses or networks): for a request whose
//! connection comes from one of them, the client is the address
//! `X-Forwarded-For` names last that is not itself a trusted proxy (each
//! proxy appends the address it saw, so the entries to the left of the
//! trusted ones are the client's to write and cannot be believed). The
//! connection's peer address is then replaced with it, so the audit trail
//! and the rate limits (`auth::client_address`) see the client. Headers
//! from peers that are not trusted are ignored: anyone could send one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::AppState;

/// Parses one `--trusted-proxy` value: an address (`10.0.0.5`, `::1`) or
/// a network (`10.0.0.0/8`).
pub fn parse_trusted(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or network (such as 10.0.0.0/8)"))
}

/// The client `X-Forwarded-For` names for a request whose peer is
/// trusted: the rightmost entry that is not a trusted proxy, or the
/// leftmost when all are. `None` when the header is absent or an entry
/// that would be used is not an address.
pub fn forwarded_client<'a>(
    values: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let entries: Vec<&str> = values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut chosen = None;
    for entry in entries.iter().rev() {
        let ip = parse_entry(entry)?;
        chosen = Some(ip);
        if !trusted.iter().any(|n| n.contains(&ip)) {
            break;
        }
    }
    chosen
}

/// An entry: an address, possibly with a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:4711`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The layer: rewrites the peer address of requests that come through a
/// trusted proxy.
pub async fn client_behind_proxy(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let trusted = &st.config.trusted_proxies;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(peer) = peer
        && trusted.iter().any(|n| n.contains(&peer.ip()))
    {
        let values = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        if let Some(client) = forwarded_client(values, trusted) {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, 0)));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| parse_trusted(s).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[test]
    fn the_client_is_the_last_address_no_trusted_proxy_added() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1"]);
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let client = |headers: &[&str]| forwarded_client(headers.iter().copied(), &trusted);
        assert_eq!(client(&["203.0.113.7"]), ip("203.0.113.7"));
        // A client's own forged entries sit to the left; proxies append.
        assert_eq!(
            client(&["1.2.3.4, 203.0.113.7, 10.1.1.1"]),
            ip("203.0.113.7")
        );
        // Several headers count as one list, in order.
        assert_eq!(
            client(&["1.2.3.4", "203.0.113.7", "192.0.2.1"]),
            ip("203.0.113.7")
        );
        assert_eq!(client(&["[2001:db8::7]:4711, 10.0.0.1"]), ip("2001:db8::7"));
        assert_eq!(client(&["203.0.113.7:4711"]), ip("203.0.113.7"));
        // Only proxies: the leftmost.
        assert_eq!(client(&["10.0.0.9, 10.0.0.1"]), ip("10.0.0.9"));
        // Nothing usable: the peer stays.
        assert_eq!(client(&[]), None);
        assert_eq!(client(&["unknown, 10.0.0.1"]), None);
        assert_eq!(client(&[" , "]), None);
        // Garbage left of the client is never looked at.
        assert_eq!(client(&["garbage, 203.0.113.7"]), ip("203.0.113.7"));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        assert!(parse_trusted("10.0.0.0/8").is_ok());
        assert!(parse_trusted("::1").is_ok());
        assert!(parse_trusted("192.0.2.1").is_ok());
        assert!(parse_trusted("fd00::/8").is_ok());
        assert!(parse_trusted("proxy.example").is_err());
        assert!(parse_trusted("10.0.0.0/99").is_err());
    }
}
