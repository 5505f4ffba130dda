//! TLS for the tests, all on 127.0.0.1: certificates made here (rcgen), a TLS
//! upstream that records the SNI name each client sent, servers that answer a
//! ClientHello with something that is not a handshake, and the TLS clients the
//! tests call them with (hyper-rustls, reqwest 0.12 and 0.13, tonic), each trusting
//! only the roots it is given.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The name every test upstream is reached by (it resolves to 127.0.0.1).
pub const NAME: &str = "localhost";

/// A certificate authority, made for one test.
pub struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A server's certificate chain and key.
pub struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A leaf for `names` that expired in 2001.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |params| {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test upstream");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.der()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

/// The leaf every good upstream has: `localhost` and 127.0.0.1.
pub fn good_names() -> [&'static str; 2] {
    [NAME, "127.0.0.1"]
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS upstream on 127.0.0.1 serving `leaf`, answering every HTTP/1.1 request
/// `200 ok`, and recording the SNI name of every ClientHello it reads.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    server_names: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    pub async fn start(leaf: Leaf) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, PrivateKeyDer::Pkcs8(leaf.key))
            .unwrap();
        Self::start_with(config, false).await
    }

    /// A gRPC upstream serving `leaf`: HTTP/2 only (ALPN `h2`, which tonic
    /// insists on), answering `grpc.health.v1` checks `SERVING`.
    pub async fn start_grpc(leaf: Leaf) -> Self {
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, PrivateKeyDer::Pkcs8(leaf.key))
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::start_with(config, true).await
    }

    /// An upstream that wants a client certificate issued by `clients` (mutual
    /// TLS): a client without one is refused with a `certificate_required` alert.
    pub async fn start_requiring_client_certificates(leaf: Leaf, clients: &Ca) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(clients.der()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring())
                .build()
                .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain, PrivateKeyDer::Pkcs8(leaf.key))
            .unwrap();
        // It never serves; offering h2 keeps tonic, which insists on it, reading on
        // to the alert.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start_with(config, false).await
    }

    /// Serves HTTP/1.1 `200 ok`, or with `grpc` the gRPC health service.
    async fn start_with(config: rustls::ServerConfig, grpc: bool) -> Self {
        let config = Arc::new(config);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_names: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let names = server_names.clone();
        // The gRPC server takes the connections once their handshake is done.
        let (grpc_conns, incoming) =
            tokio::sync::mpsc::channel::<tokio_rustls::server::TlsStream<TcpStream>>(16);
        let grpc_server = async move {
            if !grpc {
                return;
            }
            let (_reporter, health) = tonic_health::server::health_reporter();
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::ReceiverStream::new(incoming),
                Ok::<_, std::io::Error>,
            );
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(incoming)
                .await;
        };
        let accept = async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let config = config.clone();
                let names = names.clone();
                let grpc_conns = grpc_conns.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                        rustls::server::Acceptor::default(),
                        tcp,
                    );
                    let Ok(start) = acceptor.await else { return };
                    let sni = start.client_hello().server_name().map(str::to_owned);
                    names.lock().unwrap().push(sni);
                    // A failed handshake (the client rejected the certificate, or
                    // sent none when one is required) ends here: once the client
                    // has closed, so that closing sends no reset that could
                    // overtake the alert.
                    let tls = match start.into_stream(config).into_fallible().await {
                        Ok(tls) => tls,
                        Err((_, tcp)) => return linger(tcp).await,
                    };
                    if grpc {
                        let _ = grpc_conns.send(tls).await;
                        return;
                    }
                    let ok = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), ok)
                        .await;
                });
            }
        };
        let task = tokio::spawn(async move {
            tokio::join!(accept, grpc_server);
        });
        Self {
            addr,
            server_names,
            task,
        }
    }

    /// The SNI name of every ClientHello so far (`None`: the client sent none).
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.server_names.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `https://localhost:PORT/` for a server on 127.0.0.1.
pub fn url(addr: SocketAddr) -> String {
    format!("https://{NAME}:{}/", addr.port())
}

/// A server on 127.0.0.1 that reads each client's first TLS record (its
/// ClientHello), answers `reply` whatever it was, and closes once the client has.
pub struct RawTlsPort {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// What a plain HTTP/1.1 server answers bytes that are not HTTP.
pub const PLAINTEXT_HTTP: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A fatal alert record (TLS 1.2 record version, as TLS 1.3 servers send it too):
/// level 2 (fatal), then the description.
pub fn fatal_alert(description: u8) -> Vec<u8> {
    vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

impl RawTlsPort {
    pub async fn start(reply: Vec<u8>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Bytes::from(reply);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(answer_hello(tcp, reply.clone()));
            }
        });
        Self { addr, task }
    }
}

impl Drop for RawTlsPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one TLS record, writes `reply`, half-closes, and waits for the client to
/// close (bounded): everything the client sent has been read, so closing sends no
/// reset that could overtake the reply.
async fn answer_hello(mut tcp: TcpStream, reply: Bytes) {
    let patience = super::PATIENCE;
    let read_hello = async {
        let mut header = [0u8; 5];
        tcp.read_exact(&mut header).await?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut body = vec![0u8; len.min(1 << 15)];
        tcp.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(())
    };
    if !matches!(tokio::time::timeout(patience, read_hello).await, Ok(Ok(()))) {
        return;
    }
    if tcp.write_all(&reply).await.is_err() {
        return;
    }
    linger(tcp).await;
}

/// Half-closes `tcp` and reads until the client closes (bounded).
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(super::PATIENCE, drain).await;
}

/// A rustls client configuration (ring) trusting `roots` only.
pub fn client_config(roots: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth()
}

/// A resolver that answers every name with 127.0.0.1: the request keeps the name
/// (for SNI and verification), the connection stays on loopback.
#[derive(Clone, Copy)]
pub struct Loopback;

impl tower::Service<Name> for Loopback {
    type Response = std::iter::Once<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        Box::pin(async { Ok(std::iter::once(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))) })
    }
}

pub type HyperRustls = Client<hyper_rustls::HttpsConnector<HttpConnector<Loopback>>, Full<Bytes>>;

/// A hyper-util client over hyper-rustls, trusting `ca` only.
pub fn hyper_rustls_client(ca: &Ca) -> HyperRustls {
    let mut http = HttpConnector::new_with_resolver(Loopback);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&[ca.der()]))
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// reqwest 0.12 (its `rustls-tls` backend, ring), trusting `ca` only.
pub fn reqwest012_client(ca: &Ca, addr: SocketAddr) -> reqwest012::Client {
    reqwest012::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest012::Certificate::from_der(&ca.der()).unwrap())
        .resolve(NAME, addr)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// reqwest 0.13 (its `rustls` backend), trusting `ca` only.
pub fn reqwest013_client(ca: &Ca, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_der(&ca.der()).unwrap()])
        .resolve(NAME, addr)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A tonic channel (its `tls-ring` TLS) to `https://localhost:PORT`, trusting `ca`
/// only, connecting on first use.
pub fn tonic_channel(ca: &Ca, addr: SocketAddr) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
        .domain_name(NAME);
    tonic::transport::Channel::from_shared(url(addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}
