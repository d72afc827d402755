//! Which `Host` an HTTP port answers for.
//!
//! A page on any web site can make a browser send requests to `http://localhost:8080`, but
//! cannot read the answers (the same-origin policy), unless it gets the browser to believe
//! the port *is* that site: DNS rebinding points the page's own name at 127.0.0.1 after the
//! page has loaded. The browser then still sends the page's name in `Host`, and that is what
//! this check refuses: a port answers only for the names it is configured with (loopback
//! names by default), so a rebound page gets 421 and reads nothing.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header::HOST},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The host names a port answers for, compared without port, case or trailing dot
/// (`localhost`, `LOCALHOST:8080` and `localhost.` are one name; `[::1]` and `::1` too).
/// `*` accepts any.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    any: bool,
    names: Arc<[String]>,
}

impl AllowedHosts {
    /// Answers for `names` (`*` for any host).
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut any = false;
        let mut list = Vec::new();
        for name in names {
            let name = name.as_ref().trim();
            if name == "*" {
                any = true;
            } else if let Some(host) = host_of(name) {
                list.push(host);
            }
        }
        Self {
            any,
            names: list.into(),
        }
    }

    /// Whether a request naming `host` (a `Host` header's value, port or not) is answered.
    pub fn allows(&self, host: &str) -> bool {
        self.any || host_of(host).is_some_and(|h| self.names.contains(&h))
    }
}

/// The host of `authority` (`host`, `host:port`, `[v6]`, `[v6]:port`), normalized:
/// lowercase, no brackets, no trailing dot. `None` when there is none.
fn host_of(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: up to the closing bracket, whatever follows.
        &rest[..rest.find(']')?]
    } else {
        match authority.rsplit_once(':') {
            // One colon and digits after it: a port. (More colons: not a valid Host.)
            Some((host, port))
                if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            Some(_) => authority,
            None => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// `router`, answering only requests for `allowed` hosts; others get 421 Misdirected Request.
///
/// The host is the request target's authority when it has one (`GET http://h/ HTTP/1.1`,
/// HTTP/2's `:authority`), the `Host` header otherwise. A request naming no host at all is
/// refused too, unless any host is allowed.
pub fn restrict_hosts(router: Router, allowed: AllowedHosts) -> Router {
    router.layer(axum::middleware::from_fn_with_state(allowed, check_host))
}

/// Longest part of a refused `Host` that is logged.
const LOGGED_HOST_CHARS: usize = 100;

async fn check_host(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    if allowed.any {
        return next.run(request).await;
    }
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().to_owned()),
        None => request
            .headers()
            .get(HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
    };
    if host.as_deref().is_some_and(|h| allowed.allows(h)) {
        return next.run(request).await;
    }
    let shown: String = host
        .unwrap_or_default()
        .chars()
        .take(LOGGED_HOST_CHARS)
        .collect();
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    tracing::info!(target: "security", host = %shown.escape_debug(), peer, "HTTP request for a host not served here refused");
    (
        StatusCode::MISDIRECTED_REQUEST,
        "421 Misdirected Request: this server does not answer for that host name\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_match_with_or_without_port_case_or_brackets() {
        let allowed = AllowedHosts::new(["localhost", "127.0.0.1", "[::1]"]);
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::2]:8080",
            "",
            ":8080",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
    }

    #[test]
    fn a_star_allows_any_host() {
        assert!(AllowedHosts::new(["*"]).allows("phantom-health-aggregator.ns.svc:8080"));
        assert!(!AllowedHosts::new(Vec::<String>::new()).allows("localhost"));
    }
}
