//! An upstream as a gateway's user names it (one URL or several), made into the
//! endpoint set and the client the gateway needs.

use super::client::{ClientBuilder, UpstreamClient};
use crate::upstreams::{EndpointError, EndpointSet, HealthPolicy};
use http::Uri;
use std::fmt;

/// The upstream of a gateway as its user names it (feature `proxy`): one
/// `http://` or `https://` URL, or several (the replicas), each with the same
/// base path (`http://10.0.0.1:8080/api`: `/x` goes to `/api/x`). From it come
/// the [`EndpointSet`] and the [`UpstreamClient`] the gateway needs, the way a
/// command line would mean them:
///
/// - several URLs are the replicas as given, their names (if any) left to the
///   client;
/// - one URL whose host is a name (with the `dns` feature) is followed through
///   DNS: its A/AAAA records are the replicas, by their TTLs
///   ([`dns_server`](Self::dns_server), [`dns_min_ttl`](Self::dns_min_ttl)),
///   each reached by its address while requests keep the name (`Host`, TLS);
/// - `https://` endpoints speak TLS with the [`ClientBuilder::tls`]
///   configuration given to [`client`](Self::client) (feature `rustls`);
/// - an active [`health_check`](Self::health_check) (feature `health-checks`)
///   runs through a client of its own, HTTP/2 for a gRPC check.
///
/// ```
/// use tower::Layer;
/// use tower_bad_gateway::proxy::{ClientBuilder, ProxyLayer, TakeUpgradeLayer, Upstream};
/// use tower_bad_gateway::upstreams::HealthPolicy;
/// use tower_bad_gateway::{GatewayLayer, UpstreamBody};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let upstream = Upstream::new(["http://10.0.0.1:8080/api", "http://10.0.0.2:8080/api"])
///     .unwrap()
///     .health_policy(HealthPolicy::new().consecutive_failures(3));
/// // Spawns what follows the set (DNS, health checks) on this runtime.
/// let set = upstream.endpoint_set().unwrap();
/// let client = upstream.client::<UpstreamBody<hyper::body::Incoming>>(&set, &ClientBuilder::new());
/// let gateway = GatewayLayer::new().upstreams(set).layer(TakeUpgradeLayer::new().layer(client));
/// let proxy = ProxyLayer::new().layer(gateway);
/// # let _ = proxy;
/// # }
/// ```
#[derive(Clone)]
pub struct Upstream {
    urls: Vec<Uri>,
    policy: HealthPolicy,
    #[cfg(feature = "dns")]
    dns_server: Option<std::net::SocketAddr>,
    #[cfg(feature = "dns")]
    dns_min_ttl: Option<std::time::Duration>,
    #[cfg(feature = "health-checks")]
    check: Option<crate::upstreams::HealthCheck>,
    check_client: Option<ClientBuilder>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// Why URLs name no upstream: not `http://` or `https://` with a host, none at
/// all, or base paths that differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    message: String,
}

impl UpstreamError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UpstreamError {}

impl From<EndpointError> for UpstreamError {
    fn from(err: EndpointError) -> Self {
        Self::new(err.to_string())
    }
}

impl Upstream {
    /// The upstream of `urls`: each `http://` or `https://` with a host, all
    /// with the same base path (a trailing `/` aside), at least one.
    pub fn new<I>(urls: I) -> Result<Self, UpstreamError>
    where
        I: IntoIterator,
        I::Item: TryInto<Uri>,
    {
        let mut list: Vec<Uri> = Vec::new();
        for url in urls {
            let uri: Uri = url
                .try_into()
                .map_err(|_| UpstreamError::new("an upstream must be a URL"))?;
            check_url(&uri, list.first())?;
            list.push(uri);
        }
        if list.is_empty() {
            return Err(UpstreamError::new("no upstream URL"));
        }
        Ok(Self {
            urls: list,
            policy: HealthPolicy::new(),
            #[cfg(feature = "dns")]
            dns_server: None,
            #[cfg(feature = "dns")]
            dns_min_ttl: None,
            #[cfg(feature = "health-checks")]
            check: None,
            check_client: None,
        })
    }

    /// The URLs, as given.
    pub fn urls(&self) -> &[Uri] {
        &self.urls
    }

    /// Whether the endpoint set follows a name through DNS: one URL given by
    /// name, with the `dns` feature.
    pub fn follows_name(&self) -> bool {
        cfg!(feature = "dns") && matches!(&self.urls[..], [one] if by_name(one))
    }

    /// Whether more than one endpoint may serve: several URLs, or a name
    /// followed through DNS. A lone address is best never ejected by passive
    /// health (nginx ignores `max_fails` for a lone server): nothing else can
    /// take its requests.
    pub fn has_replicas(&self) -> bool {
        self.urls.len() > 1 || self.follows_name()
    }

    /// The passive health of the set (default: [`HealthPolicy::new`]).
    pub fn health_policy(mut self, policy: HealthPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The name server asked for a name followed through DNS (default: the
    /// system's resolver configuration).
    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    pub fn dns_server(mut self, server: std::net::SocketAddr) -> Self {
        self.dns_server = Some(server);
        self
    }

    /// The least time between two lookups of a followed name, whatever its TTL
    /// ([`Dns::min_ttl`](crate::upstreams::Dns::min_ttl)).
    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    pub fn dns_min_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.dns_min_ttl = Some(ttl);
        self
    }

    /// Checks every endpoint actively with `check`, through a client made by
    /// `client` (HTTP/2 forced for a gRPC check).
    #[cfg(feature = "health-checks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "health-checks")))]
    pub fn health_check(
        mut self,
        check: crate::upstreams::HealthCheck,
        client: &ClientBuilder,
    ) -> Self {
        let http2 = check.speaks_grpc();
        self.check = Some(check);
        let client = client.clone();
        self.check_client = Some(if http2 { client.http2(true) } else { client });
        self
    }

    /// The endpoint set, each endpoint with the base path: spawns on the
    /// current tokio runtime what keeps it (the DNS lookups of a followed name,
    /// the health checks), which stop when the set is dropped. Without a
    /// runtime, an error when there is something to spawn.
    pub fn endpoint_set(&self) -> Result<EndpointSet, UpstreamError> {
        let needs_runtime = self.follows_name() || self.check_client.is_some();
        let runtime = tokio::runtime::Handle::try_current();
        let runtime = match (needs_runtime, runtime) {
            (true, Err(_)) => {
                return Err(UpstreamError::new(
                    "following a name or checking health needs a tokio runtime",
                ));
            }
            (_, runtime) => runtime.ok(),
        };
        let set = self.set(runtime.as_ref())?;
        #[cfg(feature = "health-checks")]
        if let (Some(check), Some(client), Some(runtime)) =
            (&self.check, &self.check_client, &runtime)
        {
            let client = self.client::<http_body_util::Full<bytes::Bytes>>(&set, client);
            drop(runtime.spawn(set.health_checks(check.clone(), client)));
        }
        Ok(set)
    }

    #[cfg(feature = "dns")]
    fn set(&self, runtime: Option<&tokio::runtime::Handle>) -> Result<EndpointSet, UpstreamError> {
        if let (true, Some(runtime)) = (self.follows_name(), runtime) {
            let mut dns = crate::upstreams::Dns::new(&self.urls[0].to_string())?;
            if let Some(ttl) = self.dns_min_ttl {
                dns = dns.min_ttl(ttl);
            }
            if let Some(server) = self.dns_server {
                dns = dns.server(server);
            }
            let set = EndpointSet::resolving(&dns).health_policy(self.policy.clone());
            drop(runtime.spawn(set.follow_dns(dns)));
            return Ok(set);
        }
        self.listed()
    }

    #[cfg(not(feature = "dns"))]
    fn set(&self, _: Option<&tokio::runtime::Handle>) -> Result<EndpointSet, UpstreamError> {
        self.listed()
    }

    fn listed(&self) -> Result<EndpointSet, UpstreamError> {
        let set = EndpointSet::from_urls(self.urls.iter().map(Uri::to_string))?;
        Ok(set.health_policy(self.policy.clone()))
    }

    /// The client for `set` (this upstream's, from [`endpoint_set`](Self::endpoint_set)),
    /// built by `builder`: one pool for `http://` endpoints by address
    /// ([`ClientBuilder::build`]), else one pool per address, TLS to
    /// `https://` ones ([`ClientBuilder::build_for`]).
    pub fn client<B>(&self, set: &EndpointSet, builder: &ClientBuilder) -> UpstreamClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<crate::error::BoxError>,
    {
        let tls = self.urls.iter().any(|u| u.scheme_str() == Some("https"));
        if tls || self.follows_name() {
            builder.build_for(set)
        } else {
            builder.build()
        }
    }
}

fn check_url(uri: &Uri, first: Option<&Uri>) -> Result<(), UpstreamError> {
    let web = matches!(uri.scheme_str(), Some("http" | "https"));
    if !web || uri.authority().is_none() {
        return Err(UpstreamError::new(
            "an upstream must be an http:// or https:// URL with a host",
        ));
    }
    let base = |u: &Uri| u.path().trim_end_matches('/').to_owned();
    if first.is_some_and(|first| base(first) != base(uri)) {
        return Err(UpstreamError::new("every upstream must have the same path"));
    }
    Ok(())
}

/// Whether the upstream is given by a name, not an address.
fn by_name(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or("");
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_a_lone_name_is_followed() {
        let err = |urls: &[&str]| Upstream::new(urls.iter().copied()).unwrap_err().to_string();
        assert!(err(&["ftp://x:1"]).contains("http://"));
        assert!(err(&["/just/a/path"]).contains("https://"));
        assert!(err(&["http://a:1/api", "http://b:2/v2"]).contains("same path"));
        assert!(err(&[]).contains("no upstream"));
        let two = Upstream::new(["http://a:1/api", "http://b:2/api/"]).unwrap();
        assert!(two.has_replicas() && !two.follows_name());
        let lone = Upstream::new(["http://10.0.0.1:1"]).unwrap();
        assert!(!lone.has_replicas() && !lone.follows_name());
        let v6 = Upstream::new(["http://[::1]:1"]).unwrap();
        assert!(!v6.follows_name());
        let named = Upstream::new(["https://orders.test:443"]).unwrap();
        assert_eq!(named.follows_name(), cfg!(feature = "dns"));
    }

    #[test]
    fn a_set_without_a_runtime_is_an_error_only_when_something_must_run() {
        let listed = Upstream::new(["http://10.0.0.1:1", "http://10.0.0.2:1"]).unwrap();
        assert_eq!(listed.endpoint_set().unwrap().len(), 2);
        let dup = Upstream::new(["http://a:1", "http://a:1"]).unwrap();
        assert!(
            dup.endpoint_set()
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        if cfg!(feature = "dns") {
            let named = Upstream::new(["http://orders.test:1"]).unwrap();
            assert!(
                named
                    .endpoint_set()
                    .unwrap_err()
                    .to_string()
                    .contains("runtime")
            );
        }
    }
}
