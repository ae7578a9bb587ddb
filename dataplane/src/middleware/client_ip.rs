//! Puts the client's address ([`ClientIp`]) in the request's extensions, as
//! `auth::client_ip` resolves it from the socket and trusted proxies.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use ipnet::IpNet;

use crate::auth::client_ip::resolve;

/// The client's IP address; `None` only without a socket (a test calling
/// the router directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

/// Resolves the client address and stores it in the request's extensions.
pub fn mark(req: &mut Request, trusted: &[IpNet]) {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let ip = peer.map(|peer| {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        resolve(peer, forwarded, trusted)
    });
    req.extensions_mut().insert(ClientIp(ip));
}
