//! Endpoint sets that follow a DNS name, against a DNS server the test runs on
//! loopback and replicas on 127.0.0.x: records that change (health kept for the
//! addresses that stay), a TTL of 0, a server that goes silent, NXDOMAIN, a name
//! that never resolved; requests keep the name. Tokio's clock held still.

use super::{health_of_endpoint, no_backoff, send};
use crate::support::{DnsServer, Frozen, Replica, Zone, eventually};
use http::Method;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tower::Layer;
use tower_bad_gateway::upstreams::{
    ByAddress, Dns, Endpoint, EndpointSet, Health, HealthPolicy, ResolveTo,
};
use tower_bad_gateway::{GatewayLayer, UpstreamBody};

type Body = UpstreamBody<crate::support::TestBody>;

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// A hyper-util client that connects to one address.
type PerAddress = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector<ResolveTo>,
    Body,
>;

/// The client a gateway over a followed name needs: one hyper-util client per
/// address, connecting there whatever the URI's name.
fn by_address(
    set: &EndpointSet,
) -> ByAddress<impl Fn(Option<SocketAddr>) -> PerAddress, PerAddress> {
    ByAddress::new(set, |address: Option<SocketAddr>| {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
            ResolveTo::new(address),
        );
        connector.set_connect_timeout(Some(Duration::from_millis(150)));
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector)
    })
}

/// The first answer whose status is not `status`: the set's state changes on
/// its follower's task, which the test waits for in real time.
async fn until_not<S, B>(svc: &S, status: u16) -> super::Answer
where
    S: tower::Service<
            http::Request<crate::support::TestBody>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    crate::support::within("the set's state to change", async {
        loop {
            let answer = send(svc, Method::GET, "until").await;
            if answer.status != status {
                return answer;
            }
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(5)))
                .await
                .unwrap();
        }
    })
    .await
}

fn at(name: &str, ip: Ipv4Addr, port: u16) -> Endpoint {
    name.parse::<Endpoint>()
        .unwrap()
        .at(SocketAddr::from((ip, port)))
}

fn addresses(set: &EndpointSet) -> Vec<SocketAddr> {
    set.health()
        .iter()
        .filter_map(|(e, _)| e.address())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_set_follows_the_names_records_and_addresses_that_stay_keep_their_health() {
    let clock = Frozen::hold();
    let replicas = Replica::start_at(&["a", "b", "c"], &[A, B, C]).await;
    let port = replicas[0].addr.port();
    let name = format!("http://orders.test:{port}");
    let server = DnsServer::start(Zone::Records(vec![A, B], 30)).await;
    let dns = Dns::new(&name).unwrap().server(server.addr);
    let set = EndpointSet::resolving(&dns).health_policy(
        HealthPolicy::new()
            .no_jitter()
            .consecutive_failures(1)
            .base_ejection(Duration::from_secs(600)),
    );
    tokio::spawn(set.follow_dns(dns));
    eventually("the first answer", || set.len() == 2).await;
    assert_eq!(
        addresses(&set),
        [SocketAddr::from((A, port)), SocketAddr::from((B, port))]
    );

    // b dies and is ejected by requests (each refusal retried on a).
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(by_address(&set));
    replicas[1].kill();
    for i in 0..40 {
        assert_eq!(
            send(&svc, Method::GET, &format!("b-dies-{i}")).await.status,
            200
        );
        if matches!(
            health_of_endpoint(&set, &at(&name, B, port)),
            Health::Ejected { .. }
        ) {
            break;
        }
    }
    assert!(matches!(
        health_of_endpoint(&set, &at(&name, B, port)),
        Health::Ejected { .. }
    ));

    // The records change: a leaves, c joins, b stays, still ejected.
    server.set(Zone::Records(vec![B, C], 30));
    clock.advance(Duration::from_secs(30)).await;
    eventually("the second answer", || {
        addresses(&set).contains(&SocketAddr::from((C, port)))
    })
    .await;
    assert_eq!(set.len(), 2);
    assert!(
        matches!(
            health_of_endpoint(&set, &at(&name, B, port)),
            Health::Ejected { .. }
        ),
        "b kept its health across the change"
    );
    assert_eq!(
        health_of_endpoint(&set, &at(&name, C, port)),
        Health::Healthy
    );
    let before = replicas[0].seen().len();
    for i in 0..10 {
        let answer = send(&svc, Method::GET, &format!("after-{i}")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "c", "only c is in and healthy");
    }
    assert_eq!(replicas[0].seen().len(), before, "a left the set");
    // The requests kept the name: `Host` is the name and port, never the address.
    assert!(
        replicas[2]
            .hosts()
            .iter()
            .all(|h| *h == format!("orders.test:{port}")),
        "{:?}",
        replicas[2].hosts()
    );
}

#[tokio::test(start_paused = true)]
async fn a_ttl_of_zero_is_asked_again_after_the_floor_not_in_a_loop() {
    let clock = Frozen::hold();
    let server = DnsServer::start(Zone::Records(vec![A], 0)).await;
    let dns = Dns::new("http://orders.test:8080")
        .unwrap()
        .server(server.addr)
        .min_ttl(Duration::from_secs(5));
    let set = EndpointSet::resolving(&dns);
    tokio::spawn(set.follow_dns(dns));
    eventually("the first answer", || set.len() == 1).await;
    for step in 1..=20 {
        clock.advance(Duration::from_secs(1)).await;
        let expected = 1 + step / 5;
        eventually(&format!("{expected} queries at {step} s"), || {
            server.queries() >= expected
        })
        .await;
    }
    assert_eq!(
        server.queries(),
        5,
        "one query every 5 s, the floor, over 20 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_name_server_keeps_the_last_good_set() {
    let clock = Frozen::hold();
    let replicas = Replica::start_at(&["a"], &[A]).await;
    let port = replicas[0].addr.port();
    let server = DnsServer::start(Zone::Records(vec![A], 10)).await;
    let dns = Dns::new(&format!("http://orders.test:{port}"))
        .unwrap()
        .server(server.addr);
    let set = EndpointSet::resolving(&dns);
    tokio::spawn(set.follow_dns(dns));
    eventually("the first answer", || set.len() == 1).await;
    server.set(Zone::Silent);
    // The TTL runs out; the lookup gets no answer to either of its two tries
    // (2 s each).
    clock.advance(Duration::from_secs(10)).await;
    eventually("the second query", || server.queries() == 2).await;
    clock.advance(Duration::from_secs(2)).await;
    eventually("its second try", || server.queries() == 3).await;
    clock.advance(Duration::from_secs(2)).await;
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(by_address(&set));
    // The lookup failed (it is asked again after the floor, 5 s), and the last
    // good set stayed.
    clock.advance(Duration::from_secs(5)).await;
    eventually("the next lookup", || server.queries() == 4).await;
    assert_eq!(set.len(), 1, "the last good set stays");
    assert_eq!(send(&svc, Method::GET, "still").await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn nxdomain_after_a_good_set_empties_it_and_the_set_follows_the_name_when_it_is_back() {
    let clock = Frozen::hold();
    let replicas = Replica::start_at(&["a"], &[A]).await;
    let port = replicas[0].addr.port();
    let server = DnsServer::start(Zone::Records(vec![A], 10)).await;
    let dns = Dns::new(&format!("http://orders.test:{port}"))
        .unwrap()
        .server(server.addr);
    let set = EndpointSet::resolving(&dns);
    tokio::spawn(set.follow_dns(dns));
    eventually("the first answer", || set.len() == 1).await;
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(by_address(&set));
    server.set(Zone::NxDomain);
    clock.advance(Duration::from_secs(10)).await;
    eventually("emptied", || set.is_empty()).await;
    let answer = send(&svc, Method::GET, "gone").await;
    assert_eq!(answer.status, 502);
    let proxy_status = answer.headers["proxy-status"].to_str().unwrap();
    assert!(proxy_status.contains("error=dns_error"), "{proxy_status}");
    server.set(Zone::Records(vec![A], 10));
    clock.advance(Duration::from_secs(5)).await;
    eventually("back", || set.len() == 1).await;
    assert_eq!(send(&svc, Method::GET, "back").await.status, 200);
    // An answer with no A or AAAA record says the same as NXDOMAIN.
    server.set(Zone::Empty);
    clock.advance(Duration::from_secs(10)).await;
    eventually("emptied again", || set.is_empty()).await;
    assert_eq!(send(&svc, Method::GET, "no-records").await.status, 502);
}

#[tokio::test(start_paused = true)]
async fn a_name_that_never_resolved_answers_503_then_dns_error_then_follows_it() {
    let clock = Frozen::hold();
    let replicas = Replica::start_at(&["a"], &[A]).await;
    let port = replicas[0].addr.port();
    let server = DnsServer::start(Zone::Silent).await;
    let dns = Dns::new(&format!("http://orders.test:{port}"))
        .unwrap()
        .server(server.addr);
    let set = EndpointSet::resolving(&dns);
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(by_address(&set));
    // Before any answer: 503, come back in a second.
    let waiting = send(&svc, Method::GET, "waiting").await;
    assert_eq!(waiting.status, 503);
    assert_eq!(waiting.headers["retry-after"], "1");
    tokio::spawn(set.follow_dns(dns));
    eventually("the first query", || server.queries() == 1).await;
    // Each try times out (2 s), the second too: 504 dns_timeout.
    clock.advance(Duration::from_secs(2)).await;
    eventually("the query tried again", || server.queries() == 2).await;
    assert_eq!(send(&svc, Method::GET, "trying").await.status, 503);
    clock.advance(Duration::from_secs(2)).await;
    let answer = until_not(&svc, 503).await;
    assert_eq!(answer.status, 504);
    assert!(
        answer.headers["proxy-status"]
            .to_str()
            .unwrap()
            .contains("error=dns_timeout")
    );
    // NXDOMAIN: 502 dns_error.
    server.set(Zone::NxDomain);
    clock.advance(Duration::from_secs(5)).await;
    eventually("the next lookup", || server.queries() == 3).await;
    let answer = until_not(&svc, 504).await;
    assert_eq!(answer.status, 502);
    assert!(
        answer.headers["proxy-status"]
            .to_str()
            .unwrap()
            .contains("error=dns_error")
    );
    // It resolves: followed.
    server.set(Zone::Records(vec![A], 10));
    clock.advance(Duration::from_secs(5)).await;
    eventually("resolved", || set.len() == 1).await;
    assert_eq!(send(&svc, Method::GET, "resolved").await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn the_follower_ends_when_the_set_is_dropped() {
    let _clock = Frozen::hold();
    let server = DnsServer::start(Zone::Records(vec![A], 0)).await;
    let dns = Dns::new("http://orders.test:8080")
        .unwrap()
        .server(server.addr);
    let set = EndpointSet::resolving(&dns);
    let follower = tokio::spawn(set.follow_dns(dns));
    eventually("the first answer", || set.len() == 1).await;
    drop(set);
    tokio::time::advance(Duration::from_secs(5)).await;
    crate::support::within("the follower to end", follower)
        .await
        .unwrap();
}
