//! Endpoint sets that follow a DNS name: [`Dns`] says which name and how; an
//! [`EndpointSet::follow_dns`] future keeps the set's members the name's
//! addresses, re-resolving when their TTL runs out.

mod follow;

use super::{Endpoint, EndpointError, EndpointSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// A DNS name whose addresses are an [`EndpointSet`]'s members: its A and AAAA
/// records, each an [`Endpoint`] with the name and that address
/// ([`Endpoint::at`]), re-resolved when the shortest TTL of the answer runs out.
///
/// - **TTLs are followed, within bounds.** The resolver's cache is off, so every
///   lookup asks the name server and its TTLs are the set's. A TTL below
///   [`min_ttl`](Self::min_ttl) (default 5 s, linkerd's floor; a TTL of 0 must
///   not become a query loop) counts as the floor; one above
///   [`max_ttl`](Self::max_ttl) (default 300 s) as the ceiling.
/// - **Addresses that stay keep their health**; one that leaves finishes its
///   requests in flight; a new one joins (ramping up, with slow start on). Each
///   change is one event and one metric.
/// - **A lookup that fails for now** (no answer to two tries of
///   [`timeout`](Self::timeout) each, `SERVFAIL`, a name server that cannot be
///   reached) keeps the last good set, and is tried again after `min_ttl`.
/// - **A definitive answer that there is nothing** (`NXDOMAIN`, or an answer with
///   no A or AAAA record) empties the set: the name says the service is gone, and
///   an address kept from before may belong to someone else by now. Requests then
///   get `502` with `Proxy-Status: ...; error=dns_error` until the name resolves
///   again; the name is asked again after its negative TTL (within the bounds).
/// - **A name that never resolved**: before the first answer, requests get `503`
///   `destination_unavailable` (with `Retry-After: 1`); after a failed first
///   lookup, `502` `dns_error`, or `504` `dns_timeout` if it timed out. Never a
///   crash, and the set follows the name once it resolves.
/// - **The request keeps the name**: the URI (so `Host` and `:authority`, and
///   the name a TLS client verifies) is `name:port`; the address goes in the
///   request's extensions ([`Address`](super::Address)) for the client to connect
///   to. Give the gateway a [`ByAddress`](super::ByAddress) client: a client
///   that resolves the name itself would send each request to an address of its
///   own choosing, and the set's health would be judged on the wrong one.
///
/// ```no_run
/// use tower_bad_gateway::upstreams::{Dns, EndpointSet, HealthPolicy};
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() {
/// let dns = Dns::new("http://orders.internal:8080").unwrap().min_ttl(Duration::from_secs(10));
/// let set = EndpointSet::resolving(&dns).health_policy(HealthPolicy::new());
/// tokio::spawn(set.follow_dns(dns));
/// // give `set` to the gateway, with a `ByAddress` client.
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Dns {
    pub(super) name: Endpoint,
    pub(super) min_ttl: Duration,
    pub(super) max_ttl: Duration,
    pub(super) servers: Vec<SocketAddr>,
    pub(super) timeout: Duration,
}

impl Dns {
    /// The name, scheme and port of `url` (`http://name:port` or `https://...`),
    /// with the defaults. A URL that is not an endpoint is the error
    /// [`Endpoint`]'s parsing gives.
    pub fn new(url: &str) -> Result<Self, EndpointError> {
        Ok(Self {
            name: url.parse()?,
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
        })
    }

    /// The shortest time between two lookups (default 5 s): a shorter TTL, a TTL
    /// of 0 included, waits this long. Also how long a failed lookup waits before
    /// the next.
    pub fn min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// The longest time between two lookups (default 300 s), however long the TTL.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// Asks this name server (over UDP) instead of the system's (`/etc/resolv.conf`);
    /// call it again for more than one.
    pub fn server(mut self, address: SocketAddr) -> Self {
        self.servers.push(address);
        self
    }

    /// How long the name server has to answer one try of a lookup (default 2 s):
    /// a lookup that gets no answer is tried once more (a UDP datagram may be
    /// lost), and times out after the second try.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl EndpointSet {
    /// An empty set, to follow `dns` with [`follow_dns`](Self::follow_dns): until
    /// its first lookup answers, requests get `503` `destination_unavailable`.
    /// Set its [`health_policy`](Self::health_policy) before following.
    pub fn resolving(dns: &Dns) -> Self {
        let _ = dns;
        Self::empty(super::set::Unresolved::Resolving)
    }

    /// Keeps the members the addresses `dns` resolves to, for as long as the set
    /// lives: spawn the future; it ends when every other handle of the set is
    /// dropped. See [`Dns`] for what each answer does.
    pub fn follow_dns(&self, dns: Dns) -> impl Future<Output = ()> + Send + 'static {
        follow::follow(self.shared.clone(), dns)
    }
}
