//! The end-to-end baseline (`benches/e2e.sh`; it was `reverse_proxy --bare`): the
//! same proxy core, client (`proxy::ClientBuilder`) and server as `examples/reverse_proxy.rs`, without any
//! gateway layer, every client error answered with a plain 502. The difference to
//! the example is what the `GatewayLayer` costs.
//!
//! ```text
//! cargo run --release --example bare_proxy -- --listen 127.0.0.1:3001 --upstream http://127.0.0.1:8080 [--threads N]
//! ```

use http::{Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use tower::{Layer, Service};
use tower_bad_gateway::proxy::{self, ClientBuilder, ProxyLayer};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = UnsyncBoxBody<bytes::Bytes, tower_bad_gateway::BoxError>;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream) = ("127.0.0.1:3001".to_owned(), None::<Uri>);
    let mut threads = std::thread::available_parallelism().map_or(1, usize::from);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--upstream", Some(v)) => upstream = Some(v.parse().expect("--upstream: a URL")),
            ("--threads", Some(v)) => threads = v.parse().expect("--threads: a number"),
            // reverse_proxy's other flags (`benches/memory.py` gives `--timeout-ms`):
            // this baseline has no layer they could set.
            (other, Some(_)) if other.starts_with("--") => {}
            _ => panic!("usage: bare_proxy --listen ADDR --upstream URL [--threads N]"),
        }
    }
    let upstream = upstream.expect("--upstream URL");
    let (scheme, authority) = (upstream.scheme().cloned(), upstream.authority().cloned());
    let make = move || {
        let (scheme, authority) = (scheme.clone(), authority.clone());
        let mut client = ClientBuilder::new().build::<hyper::body::Incoming>();
        let bare = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            parts.scheme = scheme.clone();
            parts.authority = authority.clone();
            *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
            let answer = client.call(req);
            async move {
                Ok::<_, std::convert::Infallible>(match answer.await {
                    Ok(res) => res.map(|b| b.boxed_unsync()),
                    Err(_) => {
                        let body: Body = Empty::new().map_err(|e| match e {}).boxed_unsync();
                        let mut res = Response::new(body);
                        *res.status_mut() = StatusCode::BAD_GATEWAY;
                        res
                    }
                })
            }
        });
        ProxyLayer::new().layer(bare)
    };
    let listen = listen.parse().expect("--listen: an address");
    proxy::serve_threads(listen, threads, make, |_| {}, proxy::shutdown_signal).expect("serve");
}
