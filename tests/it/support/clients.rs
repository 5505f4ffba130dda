//! The clients the tests call upstreams with.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

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

/// A client (any service) that counts its `poll_ready`s and, per authority, its
/// calls.
#[derive(Clone)]
pub struct Counting<S> {
    inner: S,
    pub readies: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            readies: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// The calls whose URI named `authority`.
    pub fn calls_to(&self, authority: std::net::SocketAddr) -> usize {
        let authority = authority.to_string();
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|a| **a == authority)
            .count()
    }

    /// All the calls.
    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl<S: Service<Request<B>>, B> Service<Request<B>> for Counting<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.readies.fetch_add(1, Ordering::SeqCst);
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        self.calls.lock().unwrap().push(authority);
        self.inner.call(req)
    }
}
