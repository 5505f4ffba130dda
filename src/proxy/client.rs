//! The client under a gateway: HTTP/1.1 to `http://` endpoints through this
//! crate's own pooled client (`h1`), HTTP/2 through a pooled hyper-util client,
//! or one pool per address of an endpoint set (TLS to `https://` endpoints with
//! `rustls`).

use crate::upstreams::{ByAddress, EndpointSet, ResolveTo};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

use super::connector::AddressConnector;
use super::h1::UpstreamClientBody;

type Make<B> = Box<dyn Fn(Option<SocketAddr>) -> Member<B> + Send + Sync>;

/// The client of one address of an endpoint set: HTTP/1.1 to `http://` URIs
/// through the own client (not with `http2`), everything else (HTTP/2, TLS, the
/// configuration error of an `https://` URI without TLS) through hyper-util's.
struct Member<B> {
    h1: Option<super::h1::H1<B>>,
    hyper: Client<AddressConnector, B>,
}

impl<B> Clone for Member<B> {
    fn clone(&self) -> Self {
        Self {
            h1: self.h1.clone(),
            hyper: self.hyper.clone(),
        }
    }
}

impl<B> Service<Request<B>> for Member<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<crate::error::BoxError>,
{
    type Response = Response<UpstreamClientBody>;
    type Error = crate::error::BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let kind = match &self.h1 {
            Some(h1) if req.uri().scheme_str() == Some("http") => Kind::H1 {
                future: h1.request(req),
            },
            _ => Kind::Plain {
                future: self.hyper.request(req),
            },
        };
        ResponseFuture { kind }
    }
}

/// A pooled HTTP client to the upstreams of a gateway (feature `proxy`): what
/// goes under [`TakeUpgradeLayer`](super::TakeUpgradeLayer). Made by a
/// [`ClientBuilder`]; either one pool for every endpoint, reached by the URI's
/// authority ([`ClientBuilder::build`]), or one pool per address of an
/// [`EndpointSet`] whose endpoints were resolved from a name, the requests
/// keeping the name in `Host` and in TLS ([`ClientBuilder::build_for`]).
///
/// Cloning is cheap: the clones share the pools.
pub struct UpstreamClient<B> {
    inner: Inner<B>,
}

enum Inner<B> {
    /// HTTP/1.1 to `http://` endpoints: this crate's own small client.
    H1(super::h1::H1<B>),
    /// HTTP/2 (one `Arc`: the client is large, its clone several).
    Plain(Arc<Client<HttpConnector, B>>),
    ByAddress(ByAddress<Make<B>, Member<B>>),
}

impl<B> Clone for UpstreamClient<B> {
    fn clone(&self) -> Self {
        Self {
            inner: match &self.inner {
                Inner::H1(c) => Inner::H1(c.clone()),
                Inner::Plain(c) => Inner::Plain(c.clone()),
                Inner::ByAddress(c) => Inner::ByAddress(c.clone()),
            },
        }
    }
}

impl<B> fmt::Debug for UpstreamClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::H1(_) => f.write_str("UpstreamClient::H1"),
            Inner::Plain(_) => f.write_str("UpstreamClient::Plain"),
            Inner::ByAddress(c) => f.debug_tuple("UpstreamClient::ByAddress").field(c).finish(),
        }
    }
}

/// Builds an [`UpstreamClient`]: HTTP/1.1 (or HTTP/2 with
/// [`http2`](Self::http2)), `TCP_NODELAY`, idle connections kept 90 s.
///
/// To plain `http://` endpoints over HTTP/1.1 ([`build`](Self::build)), a
/// request without a body is written and its answer read in the request's own
/// task, and an answer whose body came with its head gives its connection back
/// to the pool at once; a request with a body, an upgrade or CONNECT goes
/// through hyper's connection, over the same pool. Either way the answer's
/// body is an [`UpstreamClientBody`](super::UpstreamClientBody), and a broken
/// upstream's errors are hyper's (the same limits: a 400 KiB head, 100 fields).
/// An answer read on the own path does not carry a `Connection` field that holds
/// only `keep-alive` or `close`: those are the connection's own options, which
/// the client acted on (a [`Proxy`](super::Proxy) would strip them anyway, RFC
/// 9110 §7.6.1); one that names other fields is kept whole.
///
/// ```
/// use tower::Layer;
/// use tower_bad_gateway::proxy::{ClientBuilder, ProxyLayer, TakeUpgradeLayer};
/// use tower_bad_gateway::upstreams::EndpointSet;
/// use tower_bad_gateway::{GatewayLayer, UpstreamBody};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
/// let client = ClientBuilder::new()
///     .connect_timeout(Duration::from_secs(2))
///     .build::<UpstreamBody<hyper::body::Incoming>>();
/// let gateway = GatewayLayer::new().upstreams(set).layer(TakeUpgradeLayer::new().layer(client));
/// let proxy = ProxyLayer::new().layer(gateway);
/// # let _ = proxy;
/// # }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    http2: bool,
    connect_timeout: Option<Duration>,
    idle_timeout: Duration,
    /// Set in `tls.rs`.
    #[cfg(feature = "rustls")]
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientBuilder");
        d.field("http2", &self.http2)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout);
        #[cfg(feature = "rustls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// HTTP/1.1, no connect timeout of its own, idle connections kept 90 s.
    pub fn new() -> Self {
        Self {
            http2: false,
            connect_timeout: None,
            idle_timeout: Duration::from_secs(90),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// Speaks HTTP/2 to every upstream: with prior knowledge over TCP (h2c, as
    /// gRPC servers do), by ALPN over TLS. Then set
    /// [`ProxyLayer::upstream_http2`](super::ProxyLayer::upstream_http2) too.
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Gives up connecting after `timeout` (a connect error, retried on another
    /// endpoint). The gateway's attempt timeout bounds it anyway.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long an idle pooled connection is kept (default 90 s). The HTTP/1.1
    /// client closes an expired one when it would hand it out, and sweeps all
    /// its pools as connections come back (every half timeout, between 1 s and
    /// 30 s), so a connection to an authority no longer asked for (a replica
    /// DNS dropped) is closed too; a client that sends nothing sweeps nothing
    /// (the upstream's own keep-alive timeout closes its side).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    fn hyper<B>(&self) -> hyper_util::client::legacy::Builder
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        let mut builder = Client::builder(hyper_util::rt::TokioExecutor::new());
        builder
            .http2_only(self.http2)
            .pool_idle_timeout(self.idle_timeout)
            .http1_read_buf_exact_size(4096);
        builder
    }

    fn connector<R: Clone>(&self, connector: &mut HttpConnector<R>) {
        connector.set_connect_timeout(self.connect_timeout);
        connector.set_nodelay(true);
    }

    /// One pool of connections per endpoint, by the request URI's authority
    /// (which the endpoint set writes per attempt): `http://` endpoints, by
    /// address or by a name the system resolves. HTTP/1.1 goes through this
    /// crate's own small client (a request without a body read in its own
    /// task, the others on hyper's connections), HTTP/2 through hyper-util's.
    ///
    /// Build one per serving thread (as [`serve_threads`](super::serve_threads)'
    /// `make` does): its connections then live on the thread that uses them.
    pub fn build<B>(&self) -> UpstreamClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<crate::error::BoxError>,
    {
        if !self.http2 {
            return UpstreamClient {
                inner: Inner::H1(super::h1::H1::new(self.connect_timeout, self.idle_timeout)),
            };
        }
        let mut connector = HttpConnector::new();
        self.connector(&mut connector);
        UpstreamClient {
            inner: Inner::Plain(Arc::new(self.hyper::<B>().build(connector))),
        }
    }

    /// One pool per address of `set` (its endpoints resolved from a name, or by
    /// address), the request keeping its URI's name; TLS to `https://` endpoints
    /// when [`tls`](Self::tls) was given. `http://` endpoints over HTTP/1.1 go
    /// through the same own client as [`build`](Self::build)'s, one per address.
    pub fn build_for<B>(&self, set: &EndpointSet) -> UpstreamClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<crate::error::BoxError>,
    {
        let this = self.clone();
        let make: Make<B> = Box::new(move |address| {
            let mut http = HttpConnector::new_with_resolver(ResolveTo::new(address));
            this.connector(&mut http);
            #[cfg(feature = "rustls")]
            let http = match this.tls.as_deref() {
                Some(config) => {
                    http.enforce_http(false);
                    let https = hyper_rustls::HttpsConnectorBuilder::new()
                        .with_tls_config(config.clone())
                        .https_or_http();
                    AddressConnector::Tls(if this.http2 {
                        https.enable_http2().wrap_connector(http)
                    } else {
                        https.enable_http1().wrap_connector(http)
                    })
                }
                // No TLS given: an `https://` endpoint is a configuration error.
                None => {
                    http.enforce_http(true);
                    AddressConnector::Plain(http)
                }
            };
            // The own client for `http://` over HTTP/1.1, to this address.
            let h1 = (!this.http2)
                .then(|| super::h1::H1::to(address, this.connect_timeout, this.idle_timeout));
            Member {
                h1,
                hyper: this.hyper::<B>().build(http),
            }
        });
        UpstreamClient {
            inner: Inner::ByAddress(ByAddress::new(set, make)),
        }
    }
}

type Boxed = Pin<
    Box<dyn Future<Output = Result<Response<UpstreamClientBody>, crate::error::BoxError>> + Send>,
>;

pin_project_lite::pin_project! {
    /// The future of [`UpstreamClient`].
    pub struct ResponseFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind {
        H1 { future: super::h1::H1Future },
        Plain { #[pin] future: hyper_util::client::legacy::ResponseFuture },
        ByAddress { future: Boxed },
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<UpstreamClientBody>, crate::error::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let hyper = |res: Response<Incoming>| res.map(UpstreamClientBody::hyper);
        match self.project().kind.project() {
            KindProj::H1 { future } => future.as_mut().poll(cx),
            KindProj::Plain { future } => future.poll(cx).map_ok(hyper).map_err(Into::into),
            KindProj::ByAddress { future } => future.as_mut().poll(cx),
        }
    }
}

impl<B> Service<Request<B>> for UpstreamClient<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<crate::error::BoxError>,
{
    type Response = Response<UpstreamClientBody>;
    type Error = crate::error::BoxError;
    type Future = ResponseFuture;

    /// Always ready: the pools wait for a connection in the call's future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let kind = match &mut self.inner {
            Inner::H1(client) => Kind::H1 {
                future: client.request(req),
            },
            Inner::Plain(client) => Kind::Plain {
                future: client.request(req),
            },
            // The client a request needs is known only from the request.
            Inner::ByAddress(clients) => Kind::ByAddress {
                future: Box::pin(clients.call(req)),
            },
        };
        ResponseFuture { kind }
    }
}
