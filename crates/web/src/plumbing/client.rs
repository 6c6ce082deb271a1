//! Who is calling from where: the client IP (honouring `X-Forwarded-For` only from trusted
//! proxies), user agent and request id, captured once per request for logs and the audit trail.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::ApiError;

/// CIDRs of reverse proxies whose `X-Forwarded-For` we believe.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    #[must_use]
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(Arc::new(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Walks `X-Forwarded-For` from the right, skipping trusted proxies; the first untrusted hop
    /// is the client. Malformed entries stop the walk at the last trusted address.
    #[must_use]
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        if let Some(xff) = forwarded_for {
            for hop in xff.rsplit(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(ip) => {
                        client = ip;
                        if !self.trusts(ip) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        client
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientContext {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl ClientContext {
    /// Where the request came from, as audit events record it.
    #[must_use]
    pub fn origin(&self) -> audit::Origin {
        audit::Origin::new(Some(&self.request_id), Some(self.ip), self.user_agent.as_deref())
    }
}

/// Marks a request that arrived over the server's own TLS (set by the transport per connection).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// Middleware: computes the `ClientContext` and stores it in the request extensions.
pub async fn capture(proxies: axum::extract::State<TrustedProxies>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    // Scoped: a borrow of the request (whose body is !Sync) must not live across the await.
    let ctx = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let ip = proxies.client_ip(peer, header("x-forwarded-for").as_deref());
        let user_agent = header("user-agent").map(|ua| ua.chars().take(512).collect());
        let request_id = header("x-request-id").unwrap_or_default();
        ClientContext { ip, user_agent, request_id }
    };
    // HTTPS is known from our own TLS (`serve --tls-cert`) or from a trusted proxy: a client
    // cannot make us send HSTS (or stop us) with a header of its own.
    let https = req.extensions().get::<ServedOverTls>().is_some()
        || (proxies.trusts(peer) && forwarded_proto_https(req.headers()));
    tracing::Span::current().record("client_ip", tracing::field::display(ctx.ip));
    req.extensions_mut().insert(ctx);
    let mut r = next.run(req).await;
    if https {
        r.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    r
}

/// The proxy nearest to us appends last: the last `X-Forwarded-Proto` value is the one it saw.
fn forwarded_proto_https(h: &axum::http::HeaderMap) -> bool {
    h.get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

impl<S: Send + Sync> FromRequestParts<S> for ClientContext {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ClientContext>().cloned().ok_or_else(|| {
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "client context missing")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(n: &[&str]) -> TrustedProxies {
        TrustedProxies::new(n.iter().filter_map(|s| s.parse().ok()).collect())
    }

    #[test]
    fn forwarded_for_from_untrusted_peer_is_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(p.client_ip(peer, Some("1.2.3.4")), peer);
    }

    #[test]
    fn spoofed_left_entries_do_not_win() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        // The client forged "6.6.6.6"; the proxy appended the real address.
        assert_eq!(p.client_ip(peer, Some("6.6.6.6, 198.51.100.7")), "198.51.100.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            p.client_ip(peer, Some("6.6.6.6, 198.51.100.7, 10.1.1.1")),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(p.client_ip(peer, Some("garbage")), peer);
        let v6 = proxies(&["::1/128"]);
        assert_eq!(
            v6.client_ip("::1".parse().expect("ip"), Some("2001:db8::5")),
            "2001:db8::5".parse::<IpAddr>().expect("ip")
        );
    }
}
