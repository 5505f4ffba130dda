//! The connector of a client made for one address of an endpoint set: to the
//! address whatever the URI's name; with `rustls`, TLS to `https://` URIs.

use crate::upstreams::ResolveTo;
use hyper_util::client::legacy::connect::HttpConnector;
#[cfg(feature = "rustls")]
use std::future::Future;
#[cfg(feature = "rustls")]
use std::pin::Pin;
#[cfg(feature = "rustls")]
use std::task::{Context, Poll};
#[cfg(feature = "rustls")]
use tower_service::Service;

/// The connector of a client made for one address (without `rustls`): to the
/// address whatever the URI's name.
#[cfg(not(feature = "rustls"))]
pub(super) type AddressConnector = HttpConnector<ResolveTo>;

/// The connector of a client made for one address, with TLS configured: TLS to
/// `https://` URIs, plain TCP to `http://` ones.
#[cfg(feature = "rustls")]
#[derive(Clone)]
pub(super) enum AddressConnector {
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
