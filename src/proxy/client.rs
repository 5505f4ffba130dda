//! The client under a gateway: a pooled hyper-util client, plain, or one pool
//! per address of an endpoint set (TLS to `https://` endpoints with `rustls`).

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

/// The connector of a client made for one address (without `rustls`): to the
/// address whatever the URI's name.
#[cfg(not(feature = "rustls"))]
type AddressConnector = HttpConnector<ResolveTo>;

type Make<B> = Box<dyn Fn(Option<SocketAddr>) -> Client<AddressConnector, B> + Send + Sync>;

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
    ByAddress(ByAddress<Make<B>, Client<AddressConnector, B>>),
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
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ClientConfig>>,
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

    /// Speaks TLS to `https://` endpoints with `config` (its roots, its crypto
    /// provider), verified against the endpoint's name; the ALPN protocols are set
    /// for the version spoken. Only a client of [`build_for`](Self::build_for)
    /// speaks TLS.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(Arc::new(config));
        self
    }

    /// Speaks TLS to `https://` endpoints with the crypto `provider`, trusting
    /// `roots` (see [`tls`](Self::tls)); with the roots of a PEM file, see
    /// [`pem_roots`](Self::pem_roots).
    ///
    /// ```
    /// # fn main() -> Result<(), rustls::Error> {
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let roots = rustls::RootCertStore::empty(); // add the CAs to trust
    /// let builder = tower_bad_gateway::proxy::ClientBuilder::new().tls_roots(provider, roots)?;
    /// # let _ = builder; Ok(()) }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_roots(
        self,
        provider: Arc<rustls::crypto::CryptoProvider>,
        roots: rustls::RootCertStore,
    ) -> Result<Self, rustls::Error> {
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(self.tls(config))
    }

    /// The certificates of the PEM file at `path`, as roots to trust: an error
    /// names what could not be read or parsed (the file's path is the caller's
    /// to add).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn pem_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
            let cert = cert.map_err(|e| e.to_string())?;
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        Ok(roots)
    }

    /// The roots to trust, as a gateway's `--ca-file` flag means them: the
    /// certificates of the PEM file at `ca_file` ([`pem_roots`](Self::pem_roots)),
    /// or without one the system's, as `rustls-native-certs` finds them (the
    /// platform's store; `SSL_CERT_FILE` and `SSL_CERT_DIR` when set). The
    /// system's certificates that cannot be read or parsed are left out: with
    /// none at all, every `https://` endpoint fails verification
    /// ([`TlsCertificateError`](crate::ErrorKind::TlsCertificateError)). An error
    /// names the file, then what could not be read or parsed in it.
    ///
    /// ```
    /// use tower_bad_gateway::proxy::ClientBuilder;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca_file: Option<&std::path::Path> = None; // say, from the command line
    /// let roots = ClientBuilder::ca_roots(ca_file)?;
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let builder = ClientBuilder::new().tls_roots(provider, roots)?;
    /// # let _ = builder;
    /// let missing = ClientBuilder::ca_roots(Some("/nonexistent/ca.pem".as_ref()));
    /// assert!(missing.unwrap_err().starts_with("/nonexistent/ca.pem: "));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn ca_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
        if let Some(path) = ca_file {
            return Self::pem_roots(path).map_err(|e| format!("{}: {e}", path.display()));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Ok(roots)
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
    /// crate's own small client on hyper's connections (no task per request,
    /// nothing formatted), HTTP/2 through hyper-util's.
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
    /// when [`tls`](Self::tls) was given.
    pub fn build_for<B>(&self, set: &EndpointSet) -> UpstreamClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
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
            this.hyper::<B>().build(http)
        });
        UpstreamClient {
            inner: Inner::ByAddress(ByAddress::new(set, make)),
        }
    }
}

/// The connector of a client made for one address, with TLS configured: TLS to
/// `https://` URIs, plain TCP to `http://` ones.
#[cfg(feature = "rustls")]
#[derive(Clone)]
enum AddressConnector {
    Tls(hyper_rustls::HttpsConnector<HttpConnector<ResolveTo>>),
    Plain(HttpConnector<ResolveTo>),
}

#[cfg(feature = "rustls")]
type Stream = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;

#[cfg(feature = "rustls")]
impl Service<http::Uri> for AddressConnector {
    type Response = Stream;
    type Error = crate::error::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Tls(c) => c.poll_ready(cx),
            Self::Plain(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        match self {
            Self::Tls(c) => c.call(uri),
            Self::Plain(c) => {
                let connecting = c.call(uri);
                Box::pin(async move {
                    let stream = connecting.await?;
                    Ok(hyper_rustls::MaybeHttpsStream::Http(stream))
                })
            }
        }
    }
}

type Boxed = Pin<
    Box<dyn Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>> + Send>,
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
    type Output = Result<Response<Incoming>, crate::error::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::H1 { future } => future.as_mut().poll(cx),
            KindProj::Plain { future } => future.poll(cx).map_err(Into::into),
            KindProj::ByAddress { future } => future.as_mut().poll(cx).map_err(Into::into),
        }
    }
}

impl<B> Service<Request<B>> for UpstreamClient<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<crate::error::BoxError>,
{
    type Response = Response<Incoming>;
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

#[cfg(all(test, feature = "rustls"))]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_that_cannot_be_read_or_parsed_is_an_error() {
        let missing = ClientBuilder::pem_roots(std::path::Path::new("/nonexistent/ca.pem"));
        assert!(missing.is_err());
        let dir = std::env::temp_dir().join(format!("tbg-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert_eq!(ClientBuilder::pem_roots(&empty).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_roots_are_the_ca_files_or_else_the_systems() {
        let missing = ClientBuilder::ca_roots(Some(std::path::Path::new("/nonexistent/ca.pem")));
        assert!(missing.unwrap_err().starts_with("/nonexistent/ca.pem: "));
        let dir = std::env::temp_dir().join(format!("tbg-ca-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (empty, bad) = (dir.join("empty.pem"), dir.join("bad.pem"));
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        std::fs::write(&bad, pem).unwrap();
        assert_eq!(ClientBuilder::ca_roots(Some(&empty)).unwrap().len(), 0);
        let err = ClientBuilder::ca_roots(Some(&bad)).unwrap_err();
        assert!(err.starts_with(&format!("{}: ", bad.display())), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        // No file: the system's roots, whatever this machine has (none is no error).
        assert!(ClientBuilder::ca_roots(None).is_ok());
    }
}
