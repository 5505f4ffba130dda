//! The clients the tests call upstreams with.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A hyper-util legacy client, HTTP/1.1, with a 150 ms connect timeout (shorter
/// than the tests' 300 ms call timeout, so a hanging connect is seen as one).
pub fn hyper_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(150)));
    Client::builder(TokioExecutor::new()).build(connector)
}

pub type TestBody = Full<Bytes>;

pub fn get(url: &str) -> http::Request<TestBody> {
    http::Request::get(url).body(Full::default()).unwrap()
}
