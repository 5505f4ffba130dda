//! TLS upstreams over loopback, with certificates made in the test: every failure
//! of the handshake is classified by the rustls error's type (feature `rustls`),
//! the same through hyper-rustls, reqwest 0.12 and 0.13 (each through
//! `BadGatewayLayer`, so the answer's `Proxy-Status` is checked too) and tonic
//! (through `IntoStatusLayer`, so the `Status`'s `GatewayError` is). A good
//! certificate passes for every client (tonic's health check against a gRPC
//! upstream), and the server sees the name the client asked for as SNI.

use crate::support::{self, within};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use support::tls::{self, Ca, RawTlsPort, TlsUpstream};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Layer, ServiceExt};
use tower_bad_gateway::render::Renderer;
use tower_bad_gateway::tonic::IntoStatusLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, Phase, RequestSent};

#[derive(Clone, Copy, Debug)]
enum HttpClient {
    HyperRustls,
    Reqwest012,
    Reqwest013,
}

const HTTP_CLIENTS: [HttpClient; 3] = [
    HttpClient::HyperRustls,
    HttpClient::Reqwest012,
    HttpClient::Reqwest013,
];

/// What the gateway's client got.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    error: Option<GatewayError>,
    body: Bytes,
}

impl Seen {
    fn proxy_status(&self) -> &str {
        self.headers
            .get("proxy-status")
            .map_or("", |v| v.to_str().unwrap())
    }

    /// A failure of the handshake: 502, the kind in `Proxy-Status`, and a
    /// `GatewayError` that says the request never left.
    #[track_caller]
    fn assert_failed(&self, client: HttpClient, kind: ErrorKind) -> &GatewayError {
        let err = self
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{client:?}: no GatewayError: {self:?}"));
        assert_eq!(err.kind(), kind, "{client:?}: {err:?}");
        assert_eq!(self.status, StatusCode::BAD_GATEWAY, "{client:?}");
        assert!(
            self.proxy_status()
                .starts_with(&format!("tower-bad-gateway; error={}", kind.as_str())),
            "{client:?}: {}",
            self.proxy_status()
        );
        assert_eq!(
            (err.phase(), err.request_sent()),
            (Phase::Connect, RequestSent::No),
            "{client:?}: {err:?}"
        );
        err
    }
}

/// One GET to `https://localhost:PORT/` (PORT of `addr`, on 127.0.0.1) through
/// `BadGatewayLayer`, with `client` trusting `ca` only.
async fn call(client: HttpClient, ca: &Ca, addr: SocketAddr, expose_details: bool) -> Seen {
    let layer = BadGatewayLayer::new().renderer(Renderer::new().expose_details(expose_details));
    let req = support::get(&tls::url(addr));
    let res = within(&format!("{client:?}: the answer"), async {
        match client {
            HttpClient::HyperRustls => {
                let res = layer.layer(tls::hyper_rustls_client(ca)).oneshot(req);
                res.await.unwrap().map(|b| b.boxed_unsync())
            }
            HttpClient::Reqwest012 => {
                let svc = tower_bad_gateway::reqwest::ReqwestService::new(tls::reqwest012_client(
                    ca, addr,
                ));
                let res = layer.layer(svc).oneshot(req);
                res.await.unwrap().map(|b| b.boxed_unsync())
            }
            HttpClient::Reqwest013 => {
                let svc = tower_bad_gateway::reqwest013::ReqwestService::new(
                    tls::reqwest013_client(ca, addr),
                );
                let res = layer.layer(svc).oneshot(req);
                res.await.unwrap().map(|b| b.boxed_unsync())
            }
        }
    })
    .await;
    let (parts, body) = res.into_parts();
    Seen {
        status: parts.status,
        error: parts.extensions.get::<GatewayError>().cloned(),
        headers: parts.headers,
        body: support::collect(body).await.unwrap(),
    }
}

/// What a tonic client, its channel wrapped in `IntoStatusLayer`, gets from a
/// health check against `addr`: the `Status`'s code and its `GatewayError`.
async fn tonic_error(ca: &Ca, addr: SocketAddr) -> (tonic::Code, GatewayError) {
    let channel = tls::tonic_channel(ca, addr);
    let mut client = HealthClient::new(IntoStatusLayer::new().layer(channel));
    let status = within(
        "tonic: the answer",
        client.check(HealthCheckRequest::default()),
    )
    .await
    .expect_err("the handshake must fail");
    let err = std::error::Error::source(&status)
        .and_then(|e| e.downcast_ref::<GatewayError>())
        .unwrap_or_else(|| panic!("tonic: no GatewayError in {status:?}"))
        .clone();
    (status.code(), err)
}

/// Every client against one upstream that fails the handshake: each sees `kind`
/// (all compared at once, so a failure names every client that got it wrong).
async fn every_client_sees(ca: &Ca, addr: SocketAddr, kind: ErrorKind) {
    let mut answers = Vec::new();
    for client in HTTP_CLIENTS {
        answers.push((client, call(client, ca, addr, false).await));
    }
    let (code, tonic) = tonic_error(ca, addr).await;
    let kinds: Vec<_> = answers
        .iter()
        .map(|(client, seen)| (format!("{client:?}"), seen.error.as_ref().map(|e| e.kind())))
        .chain([("tonic".to_owned(), Some(tonic.kind()))])
        .collect();
    let expected: Vec<_> = kinds.iter().map(|(c, _)| (c.clone(), Some(kind))).collect();
    assert_eq!(kinds, expected);
    for (client, seen) in &answers {
        seen.assert_failed(*client, kind);
    }
    assert_eq!(code, tonic::Code::Unavailable, "tonic: {tonic:?}");
}

#[tokio::test]
async fn a_good_certificate_passes_and_the_server_sees_the_name_the_client_sent() {
    let ca = Ca::new("test CA");
    let upstream = TlsUpstream::start(ca.leaf(&tls::good_names())).await;
    for client in HTTP_CLIENTS {
        let seen = call(client, &ca, upstream.addr, false).await;
        assert_eq!(seen.status, StatusCode::OK, "{client:?}: {seen:?}");
        assert_eq!(seen.body, "ok", "{client:?}");
        assert!(seen.error.is_none(), "{client:?}");
    }
    assert_eq!(
        upstream.server_names(),
        vec![Some(tls::NAME.to_owned()); HTTP_CLIENTS.len()],
        "every client sent SNI for the name, never for the address"
    );

    let grpc = TlsUpstream::start_grpc(ca.leaf(&tls::good_names())).await;
    let channel = tls::tonic_channel(&ca, grpc.addr);
    let mut client = HealthClient::new(IntoStatusLayer::new().layer(channel));
    let answer = within(
        "tonic: the answer",
        client.check(HealthCheckRequest::default()),
    )
    .await
    .expect("a good certificate passes");
    assert_eq!(
        answer.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert_eq!(
        grpc.server_names(),
        [Some(tls::NAME.to_owned())],
        "tonic's SNI"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_certificate_error() {
    let ca = Ca::new("test CA");
    let upstream = TlsUpstream::start(ca.expired_leaf(&tls::good_names())).await;
    every_client_sees(&ca, upstream.addr, ErrorKind::TlsCertificateError).await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_a_tls_certificate_error() {
    let trusted = Ca::new("trusted CA");
    let unknown = Ca::new("unknown CA");
    let upstream = TlsUpstream::start(unknown.leaf(&tls::good_names())).await;
    every_client_sees(&trusted, upstream.addr, ErrorKind::TlsCertificateError).await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_tls_certificate_error() {
    let ca = Ca::new("test CA");
    let upstream = TlsUpstream::start(ca.leaf(&["other.example"])).await;
    every_client_sees(&ca, upstream.addr, ErrorKind::TlsCertificateError).await;
    assert!(
        upstream
            .server_names()
            .iter()
            .all(|n| n.as_deref() == Some(tls::NAME)),
        "the name verified is the name sent: {:?}",
        upstream.server_names()
    );
}

#[tokio::test]
async fn plaintext_http_on_the_tls_port_is_a_tls_protocol_error() {
    let ca = Ca::new("test CA");
    let plaintext = RawTlsPort::start(tls::PLAINTEXT_HTTP.to_vec()).await;
    every_client_sees(&ca, plaintext.addr, ErrorKind::TlsProtocolError).await;
}

/// RFC 9209 §2.3.15: `tls_alert_received` with the alert's `alert-id`; its
/// `alert-message` only when details are exposed.
#[tokio::test]
async fn a_fatal_alert_is_tls_alert_received_with_its_alert_id() {
    const HANDSHAKE_FAILURE: u8 = 40;
    let ca = Ca::new("test CA");
    let alerting = RawTlsPort::start(tls::fatal_alert(HANDSHAKE_FAILURE)).await;
    for client in HTTP_CLIENTS {
        let seen = call(client, &ca, alerting.addr, false).await;
        let err = seen.assert_failed(client, ErrorKind::TlsAlertReceived);
        let alert = err.tls_alert().expect("the alert is kept");
        assert_eq!(
            (alert.id(), alert.message()),
            (HANDSHAKE_FAILURE, Some("handshake_failure")),
            "{client:?}"
        );
        assert_eq!(
            seen.proxy_status(),
            "tower-bad-gateway; error=tls_alert_received; alert-id=40",
            "{client:?}: no message without details"
        );

        let seen = call(client, &ca, alerting.addr, true).await;
        seen.assert_failed(client, ErrorKind::TlsAlertReceived);
        assert!(
            seen.proxy_status().starts_with(
                "tower-bad-gateway; error=tls_alert_received; alert-id=40; \
                 alert-message=\"handshake_failure\"; "
            ),
            "{client:?}: {}",
            seen.proxy_status()
        );
    }
    let (code, err) = tonic_error(&ca, alerting.addr).await;
    assert_eq!(err.kind(), ErrorKind::TlsAlertReceived, "tonic: {err:?}");
    assert_eq!(code, tonic::Code::Unavailable);
    assert_eq!(err.tls_alert().map(|a| a.id()), Some(HANDSHAKE_FAILURE));
}

/// A mutual-TLS upstream refuses a client without a certificate with the
/// `certificate_required` alert (116; in TLS 1.3 it comes after the client's
/// side of the handshake is done, as the answer to the request): still
/// `tls_alert_received`, with that alert.
#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_is_tls_alert_received_116() {
    const CERTIFICATE_REQUIRED: u8 = 116;
    let ca = Ca::new("test CA");
    let clients = Ca::new("client CA");
    let upstream =
        TlsUpstream::start_requiring_client_certificates(ca.leaf(&tls::good_names()), &clients)
            .await;
    every_client_sees(&ca, upstream.addr, ErrorKind::TlsAlertReceived).await;
    for client in HTTP_CLIENTS {
        let seen = call(client, &ca, upstream.addr, false).await;
        assert_eq!(
            seen.error
                .as_ref()
                .and_then(|e| e.tls_alert())
                .map(|a| a.id()),
            Some(CERTIFICATE_REQUIRED),
            "{client:?}"
        );
        assert_eq!(
            seen.proxy_status(),
            "tower-bad-gateway; error=tls_alert_received; alert-id=116",
            "{client:?}"
        );
    }
}

/// An `https://` endpoint set that follows a DNS name: the set connects to the
/// address the name resolved to, and TLS still sends the name as SNI and
/// verifies the certificate against the name (never the address); a certificate
/// for another name is `tls_certificate_error`.
#[tokio::test]
async fn an_https_name_resolved_to_an_address_is_verified_against_the_name() {
    use support::{DnsServer, Zone};
    use tower_bad_gateway::upstreams::{ByAddress, Dns, EndpointSet, ResolveTo};
    type Body = tower_bad_gateway::UpstreamBody<http_body_util::Full<Bytes>>;

    async fn through(ca: &Ca, leaf_names: &[&str]) -> (http::Response<Bytes>, Vec<Option<String>>) {
        let upstream = TlsUpstream::start(ca.leaf(leaf_names)).await;
        let port = upstream.addr.port();
        let dns_server =
            DnsServer::start(Zone::Records(vec![std::net::Ipv4Addr::LOCALHOST], 30)).await;
        let dns = Dns::new(&format!("https://orders.test:{port}"))
            .unwrap()
            .server(dns_server.addr);
        let set = EndpointSet::resolving(&dns);
        tokio::spawn(set.follow_dns(dns));
        support::eventually("the name resolved", || set.len() == 1).await;
        let config = tls::client_config(&[ca.der()]);
        let client = ByAddress::new(&set, move |address| {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
                ResolveTo::new(address),
            );
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config.clone())
                .https_only()
                .enable_http1()
                .wrap_connector(http);
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Body>(https)
        });
        let svc = tower_bad_gateway::GatewayLayer::new()
            .upstreams(set.clone())
            .max_attempts(1)
            .layer(client);
        let req = http::Request::get("/orders")
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let res = within("the answer", svc.oneshot(req)).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (
            http::Response::from_parts(parts, body),
            upstream.server_names(),
        )
    }

    let ca = Ca::new("dns test ca");
    let (res, names) = through(&ca, &["orders.test"]).await;
    assert_eq!(res.status(), 200, "{res:?}");
    assert_eq!(
        names,
        [Some("orders.test".to_owned())],
        "SNI is the name, not the address"
    );

    // The address (127.0.0.1) is in no certificate the test makes here: one for
    // another name fails, though the connection went to the right address.
    let (res, _) = through(&ca, &["other.test"]).await;
    assert_eq!(res.status(), 502);
    let proxy_status = res.headers()["proxy-status"].to_str().unwrap();
    assert!(
        proxy_status.contains("error=tls_certificate_error"),
        "{proxy_status}"
    );
}
