//! Reaching an endpoint by its address while its requests keep its name:
//! [`Address`], what a request to a resolved endpoint carries, and
//! [`ByAddress`], a client of one connection pool per address.

use super::EndpointSet;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower_service::Service;

/// The address a request's endpoint was resolved to, in the request's
/// extensions: the [`Upstreams`](super::Upstreams) middleware puts it there for
/// an endpoint that has one ([`Endpoint::at`](super::Endpoint::at)), while the
/// URI keeps the endpoint's name, so that `Host`, `:authority` and TLS
/// verification use the name. A client connects to it;
/// [`ByAddress`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address(pub SocketAddr);

/// A client that keeps one inner client (one connection pool) per address: a
/// request carrying an [`Address`] goes through the client made for that address,
/// so its connection is to that address whatever its URI's name resolves to; a
/// request without one goes through the client made for none.
///
/// `make` builds a client for an address (or `None`); clients are made on the
/// first request to their address, and those of addresses that left the set are
/// dropped when a new one is made (requests in flight on them finish).
///
/// With hyper-util, a connector whose resolver answers the address:
///
/// ```
/// use tower_bad_gateway::upstreams::{ByAddress, EndpointSet};
/// use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// use hyper_util::rt::TokioExecutor;
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use std::net::SocketAddr;
///
/// let set = EndpointSet::from_urls(["http://10.0.0.1:8080"]).unwrap();
/// let client = ByAddress::new(&set, |address: Option<SocketAddr>| {
///     let resolve = tower::service_fn(move |name: hyper_util::client::legacy::connect::dns::Name| async move {
///         match address {
///             Some(address) => Ok(vec![address].into_iter()),
///             // No address: resolve the name as usual.
///             None => tokio::net::lookup_host((name.as_str(), 0))
///                 .await
///                 .map(|addrs| addrs.collect::<Vec<_>>().into_iter()),
///         }
///     });
///     Client::builder(TokioExecutor::new())
///         .build::<_, Full<Bytes>>(HttpConnector::new_with_resolver(resolve))
/// });
/// # let _ = client;
/// ```
pub struct ByAddress<F, C> {
    shared: Arc<Clients<F, C>>,
}

struct Clients<F, C> {
    make: F,
    set: EndpointSet,
    by_address: ArcSwap<HashMap<Option<SocketAddr>, C>>,
    /// Held while a client is made and inserted, so two are never made at once
    /// for one address.
    making: Mutex<()>,
}

impl<F, C> ByAddress<F, C>
where
    F: Fn(Option<SocketAddr>) -> C,
    C: Clone,
{
    /// Clients made by `make`, for the addresses of `set`.
    pub fn new(set: &EndpointSet, make: F) -> Self {
        Self {
            shared: Arc::new(Clients {
                make,
                set: set.clone(),
                by_address: ArcSwap::from_pointee(HashMap::new()),
                making: Mutex::new(()),
            }),
        }
    }

    fn client(&self, address: Option<SocketAddr>) -> C {
        if let Some(client) = self.shared.by_address.load().get(&address) {
            return client.clone();
        }
        let _making = self
            .shared
            .making
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.shared.by_address.load_full();
        if let Some(client) = current.get(&address) {
            return client.clone();
        }
        // Keeps the clients of addresses still in the set, and makes this one.
        let live: std::collections::HashSet<SocketAddr> = self
            .shared
            .set
            .shared
            .members
            .load()
            .list
            .iter()
            .filter_map(|s| s.endpoint.address())
            .collect();
        let mut next: HashMap<Option<SocketAddr>, C> = current
            .iter()
            .filter(|(a, _)| a.is_none_or(|a| live.contains(&a)))
            .map(|(a, c)| (*a, c.clone()))
            .collect();
        let client = (self.shared.make)(address);
        next.insert(address, client.clone());
        self.shared.by_address.store(Arc::new(next));
        client
    }
}

impl<F, C> Clone for ByAddress<F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F, C> fmt::Debug for ByAddress<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByAddress")
            .field("clients", &self.shared.by_address.load().len())
            .finish()
    }
}

impl<F, C, B> Service<http::Request<B>> for ByAddress<F, C>
where
    F: Fn(Option<SocketAddr>) -> C,
    C: Service<http::Request<B>> + Clone,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = tower::util::Oneshot<C, http::Request<B>>;

    /// Always ready: the client a request needs is known only from the request,
    /// so its readiness is waited for in the call's future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let address = req.extensions().get::<Address>().map(|a| a.0);
        tower::util::Oneshot::new(self.client(address), req)
    }
}

/// A resolver for hyper-util's `HttpConnector` that answers the one address it
/// was made with, whatever the name: the connector a [`ByAddress`] client makes
/// for an address. Made with none ([`ResolveTo::system`]), it resolves the name
/// as the system does (`getaddrinfo`, through tokio).
///
/// ```
/// use tower_bad_gateway::upstreams::{ByAddress, EndpointSet, ResolveTo};
/// use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// use hyper_util::rt::TokioExecutor;
/// use http_body_util::Full;
/// use bytes::Bytes;
///
/// let set = EndpointSet::from_urls(["http://10.0.0.1:8080"]).unwrap();
/// let client = ByAddress::new(&set, |address| {
///     let connector = HttpConnector::new_with_resolver(ResolveTo::new(address));
///     Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector)
/// });
/// # let _ = client;
/// ```
#[cfg(all(feature = "hyper", any(feature = "dns", feature = "proxy")))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "hyper", any(feature = "dns", feature = "proxy"))))
)]
#[derive(Debug, Clone, Copy)]
pub struct ResolveTo(Option<SocketAddr>);

#[cfg(all(feature = "hyper", any(feature = "dns", feature = "proxy")))]
impl ResolveTo {
    /// Answers `address`, or resolves as the system does with `None`.
    pub fn new(address: Option<SocketAddr>) -> Self {
        Self(address)
    }

    /// Resolves as the system does.
    pub fn system() -> Self {
        Self(None)
    }
}

#[cfg(all(feature = "hyper", any(feature = "dns", feature = "proxy")))]
impl Service<hyper_util::client::legacy::connect::dns::Name> for ResolveTo {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let address = self.0;
        Box::pin(async move {
            match address {
                Some(address) => Ok(vec![address].into_iter()),
                None => tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .map(|found| found.collect::<Vec<_>>().into_iter()),
            }
        })
    }
}
