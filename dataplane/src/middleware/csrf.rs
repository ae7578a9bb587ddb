//! Cross-site request forgery, for the API. A browser attaches the session
//! cookie to every request to us, whichever site's page makes it
//! (`SameSite=Strict` keeps other *sites* out, not a sibling subdomain or a
//! page on another port of the same host). So a call that changes something
//! (any method but GET, HEAD, OPTIONS and TRACE) and authenticates by the
//! cookie must show that one of our own pages made it:
//!
//! - an `Origin` naming this server's own origin (scheme, host and port, as
//!   the request addressed it: its `Host`, or `X-Forwarded-Host` and
//!   `X-Forwarded-Proto` when the peer is a trusted proxy); browsers send
//!   `Origin` with every such call, so the console's script passes by it;
//! - or, only when there is no `Origin` at all (an old browser, an extension
//!   that strips it), `X-CSRF-Token` carrying the session's CSRF token
//!   ([`crate::auth::csrf`]), which only our own pages hold. Another site can
//!   neither read the token nor send a custom header without a CORS
//!   preflight, which we never grant. The console's script sends it too.
//!
//! An `Origin` of another site (or `null`) is refused even with the token: a
//! browser said where the request comes from, and it is not here. A call
//! with `Authorization: Bearer` needs neither proof: a browser never attaches
//! that header to a cross-site request by itself.

use axum::http::{HeaderMap, Method, header, uri::Authority};

/// The header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A web origin: scheme, host and port (the port spelled out, so
/// `https://a.example` and `https://a.example:443` are one origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// An `Origin` header's value such as `https://vault.example.com`;
    /// `None` for `null` and anything else that names no origin we could be.
    pub fn parse(value: &str) -> Option<Self> {
        let (scheme, rest) = value.trim().split_once("://")?;
        Self::new(scheme, rest.strip_suffix('/').unwrap_or(rest))
    }

    /// The origin of `authority` (`host[:port]`) reached over `scheme`.
    fn new(scheme: &str, authority: &str) -> Option<Self> {
        let scheme = scheme.to_ascii_lowercase();
        let authority: Authority = authority.trim().parse().ok()?;
        // An authority with user information is never an origin.
        if authority.as_str().contains('@') {
            return None;
        }
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        Some(Self {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default),
            scheme,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// How a request reached us, beyond its headers.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// Served over HTTPS by this process.
    pub tls: bool,
    /// The socket's peer is a trusted proxy (`TRUSTED_PROXIES`), whose
    /// `X-Forwarded-Host` and `X-Forwarded-Proto` are believed.
    pub via_trusted_proxy: bool,
    /// The request target's authority: HTTP/2 sends it instead of `Host`.
    pub uri_authority: Option<&'a str>,
}

/// The origin a request addressed: where a page of ours would have been
/// loaded from. `None` when the request does not say (no `Host`).
pub fn own_origin(headers: &HeaderMap, arrival: Arrival<'_>) -> Option<Origin> {
    // A proxy's forwarded values are the first of each list: what the
    // outermost proxy saw, which is what the browser addressed. A browser
    // cannot add these headers to a cross-site request (they would need a
    // preflight), so a forged value only hurts the client that forged it.
    let forwarded = |name: &str| {
        arrival
            .via_trusted_proxy
            .then(|| first_value(headers, name))
            .flatten()
    };
    let scheme =
        forwarded("x-forwarded-proto").unwrap_or(if arrival.tls { "https" } else { "http" });
    let authority = forwarded("x-forwarded-host")
        .or_else(|| headers.get(header::HOST)?.to_str().ok())
        .or(arrival.uri_authority)?;
    Origin::new(scheme, authority)
}

/// The first comma-separated value of the first `name` header, if any.
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// Why a call authenticated by the session cookie was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `Origin` names another site (or is `null`, or ours is unknown).
    #[error(
        "this call uses the session cookie and comes from another origin \
         (`Origin: {sent}`; this server is {own}); send it from the console's own \
         pages, or from a program with `Authorization: Bearer …` instead of the cookie"
    )]
    ForeignOrigin {
        /// The `Origin` sent.
        sent: String,
        /// This request's own origin, or `unknown` without a `Host`.
        own: String,
    },
    /// No `Origin` and no `X-CSRF-Token`.
    #[error(
        "this call uses the session cookie but sends neither `Origin` nor `X-CSRF-Token`: \
         send the session's CSRF token (the `csrf` field of the console's pages) in \
         `X-CSRF-Token`, or from a program use `Authorization: Bearer …` instead of the cookie"
    )]
    NoProof,
    /// No `Origin`, and `X-CSRF-Token` is not this session's token.
    #[error(
        "`X-CSRF-Token` is not this session's CSRF token (it may be from an earlier \
         sign-in); reload the page and send it again"
    )]
    WrongToken,
}

impl Refusal {
    /// The request header at fault, as the error answer's `field`.
    pub fn header(&self) -> &'static str {
        match self {
            Self::ForeignOrigin { .. } => "origin",
            Self::NoProof | Self::WrongToken => CSRF_HEADER,
        }
    }
}

/// Whether a call with `method` and `headers`, authenticated by the session
/// cookie whose CSRF token is `session_csrf`, may go on. Safe methods always
/// may: they change nothing, and CORS keeps their answers from other sites.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    arrival: Arrival<'_>,
    session_csrf: &str,
) -> Result<(), Refusal> {
    if method.is_safe() {
        return Ok(());
    }
    if let Some(sent) = headers.get(header::ORIGIN) {
        let sent = sent.to_str().unwrap_or("");
        let own = own_origin(headers, arrival);
        return match (Origin::parse(sent), &own) {
            (Some(sent), Some(own)) if &sent == own => Ok(()),
            _ => Err(Refusal::ForeignOrigin {
                sent: sent.chars().take(200).collect(),
                own: own.map_or_else(|| "unknown".to_owned(), |o| o.to_string()),
            }),
        };
    }
    match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        None => Err(Refusal::NoProof),
        Some(token) if crate::auth::csrf::same_token(token.trim(), session_csrf) => Ok(()),
        Some(_) => Err(Refusal::WrongToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECT: Arrival<'static> = Arrival {
        tls: false,
        via_trusted_proxy: false,
        uri_authority: None,
    };

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    fn post(pairs: &[(&'static str, &str)], arrival: Arrival<'_>) -> Result<(), Refusal> {
        check(&Method::POST, &headers(pairs), arrival, "tok")
    }

    #[test]
    fn origins_compare_scheme_host_and_port_with_default_ports_spelled_out() {
        let o = |s| Origin::parse(s);
        assert_eq!(
            o("https://Vault.Example.com"),
            o("https://vault.example.com:443")
        );
        assert_eq!(o("http://127.0.0.1"), o("http://127.0.0.1:80/"));
        assert_ne!(
            o("http://vault.example.com"),
            o("https://vault.example.com")
        );
        assert_ne!(
            o("https://vault.example.com"),
            o("https://vault.example.com:8443")
        );
        assert_eq!(
            o("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
        for not_an_origin in [
            "null",
            "",
            "vault.example.com",
            "file://x",
            "https://a@b.example",
        ] {
            assert_eq!(o(not_an_origin), None, "{not_an_origin}");
        }
    }

    #[test]
    fn a_same_origin_call_passes_and_any_other_origin_is_refused() {
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(
            post(&[host, ("origin", "http://127.0.0.1:8080")], DIRECT),
            Ok(())
        );
        for foreign in [
            "https://evil.example",
            "null",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            "http://localhost:8080",
        ] {
            let refused = post(&[host, ("origin", foreign), (CSRF_HEADER, "tok")], DIRECT);
            assert!(
                matches!(refused, Err(Refusal::ForeignOrigin { .. })),
                "{foreign}: {refused:?}"
            );
        }
        // Without a Host (or an HTTP/2 authority) nothing is same-origin.
        let refused = post(&[("origin", "http://127.0.0.1:8080")], DIRECT);
        assert_eq!(refused.unwrap_err().header(), "origin");
        let h2 = Arrival {
            uri_authority: Some("127.0.0.1:8080"),
            ..DIRECT
        };
        assert_eq!(post(&[("origin", "http://127.0.0.1:8080")], h2), Ok(()));
        // Served over HTTPS by this process.
        let tls = Arrival {
            tls: true,
            ..DIRECT
        };
        assert_eq!(
            post(&[host, ("origin", "https://127.0.0.1:8080")], tls),
            Ok(())
        );
    }

    #[test]
    fn without_an_origin_the_sessions_token_is_needed() {
        assert_eq!(post(&[], DIRECT), Err(Refusal::NoProof));
        assert_eq!(post(&[(CSRF_HEADER, "tok")], DIRECT), Ok(()));
        assert_eq!(
            post(&[(CSRF_HEADER, "other")], DIRECT),
            Err(Refusal::WrongToken)
        );
        assert_eq!(Refusal::NoProof.header(), "x-csrf-token");
        // An API key in the cookie has no CSRF token: only the Origin proves it.
        let no_token = check(&Method::POST, &headers(&[(CSRF_HEADER, "")]), DIRECT, "");
        assert_eq!(no_token, Err(Refusal::WrongToken));
    }

    #[test]
    fn only_unsafe_methods_are_checked() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(check(&method, &HeaderMap::new(), DIRECT, "tok"), Ok(()));
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                check(&method, &HeaderMap::new(), DIRECT, "tok"),
                Err(Refusal::NoProof),
                "{method}"
            );
        }
    }

    #[test]
    fn forwarded_host_and_scheme_count_only_from_a_trusted_proxy() {
        let forwarded = [
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "vault.example.com, 10.0.0.5:8080"),
            ("x-forwarded-proto", "https, http"),
            ("origin", "https://vault.example.com"),
        ];
        let proxied = Arrival {
            via_trusted_proxy: true,
            ..DIRECT
        };
        assert_eq!(post(&forwarded, proxied), Ok(()));
        assert!(matches!(
            post(&forwarded, DIRECT),
            Err(Refusal::ForeignOrigin { .. })
        ));
        // A proxy that forwards no scheme leaves this process's own.
        let no_proto = [
            ("x-forwarded-host", "vault.example.com"),
            ("origin", "http://vault.example.com"),
        ];
        assert_eq!(post(&no_proto, proxied), Ok(()));
    }
}
