//! A small HTTP/1.1 client for plain `http://` upstreams, with a pool of idle
//! connections per authority.
//!
//! A request without a body (most of a gateway's: `GET`, `HEAD`, `DELETE`, a
//! `POST` with `Content-Length: 0`) takes this crate's own path ([`conn`],
//! [`head`], [`framing`], [`decode`]): its head is written and the answer read in the request's own
//! task, and a small answer's connection goes back to the pool as soon as its
//! head and body have been read. Everything else (a body to stream up,
//! an upgrade, CONNECT, HTTP/1.0) goes through hyper's connection
//! (`hyper::client::conn::http1`), over the same pool: an idle connection of
//! either kind serves either path.
//!
//! The own path acts on the answer's connection options (`keep-alive`, `close`)
//! and does not pass on a `Connection` field that holds nothing else.
//!
//! Idle connections expire after the pool's idle timeout: one is dropped when it
//! would be handed out, and every pool is swept as connections come back (so an
//! authority no longer asked for lets its connections and its pool go).
//!
//! Each [`UpstreamClient`](super::UpstreamClient) has its own pool; under
//! [`serve_threads`](super::serve_threads) each thread builds its own client,
//! so a pool's lock is never contended and a connection lives on the thread
//! that uses it.

mod conn;
mod decode;
mod framing;
mod head;
mod pool;

pub use self::conn::UpstreamClientBody;

use self::conn::{ClientError, Conn, Plain};
use self::pool::{Reused, Shared};
use crate::error::BoxError;
use crate::proxy::headers::{SCAN_AT_MOST, has_token};
use http::header::{self, HeaderMap};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, Uri, Version};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct H1<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for H1<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

pub(crate) type H1Future =
    Pin<Box<dyn Future<Output = Result<Response<UpstreamClientBody>, BoxError>> + Send>>;

impl<B> H1<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(connect_timeout: Option<Duration>, idle_timeout: Duration) -> Self {
        Self::to(None, connect_timeout, idle_timeout)
    }

    /// A client whose connections all go to `address` (if given), the requests
    /// keeping their authority in `Host`.
    pub(crate) fn to(
        address: Option<std::net::SocketAddr>,
        connect_timeout: Option<Duration>,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(address, connect_timeout, idle_timeout)),
        }
    }

    pub(crate) fn request(&self, mut req: Request<B>) -> H1Future {
        let shared = self.shared.clone();
        let uri = req.uri();
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(authority)) => authority.clone(),
            _ => {
                let err = ClientError {
                    message: "invalid URL, scheme is not http or the authority is missing",
                    source: None,
                };
                return Box::pin(std::future::ready(Err(Box::new(err) as BoxError)));
            }
        };
        // The target is the path and query (the bytes shared, not copied).
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let fields = Fields::of(req.headers());
        let own = is_plain(&req, &fields);
        let (host, reused) = shared.checkout(&authority, own);
        // The authority's `Host`, unless the request brings its own.
        let host = host.filter(|_| !fields.host);
        if own && !matches!(reused, Some(Reused::Hyper(_))) {
            // The body is empty: nothing of it is sent. `Host` is written with
            // the head, first (RFC 9110 §7.2), not put in the map.
            let (parts, _empty) = req.into_parts();
            let plain = Plain {
                method: parts.method,
                target: path,
                host,
                headers: parts.headers,
                close: fields.close,
            };
            return match reused {
                Some(Reused::Own(conn)) => Box::pin(conn::exchange(conn, plain, shared, authority)),
                _ => Box::pin(async move {
                    let conn = Conn::new(shared.connect(&authority).await?);
                    conn::exchange(conn, plain, shared, authority).await
                }),
            };
        }
        if let Some(host) = host {
            req.headers_mut().insert(header::HOST, host);
        }
        *req.uri_mut() = Uri::from(path);
        let sender = match reused {
            Some(Reused::Hyper(sender)) => Some(sender),
            Some(Reused::Own(conn)) => {
                return Box::pin(async move {
                    let sender = handshake(conn.into_io()).await?;
                    via_hyper(shared, authority, Some(sender), req).await
                });
            }
            None => None,
        };
        Box::pin(via_hyper(shared, authority, sender, req))
    }
}

/// What the client reads of a request's fields before sending it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields {
    /// An `Upgrade`, a `Transfer-Encoding`, or a first `Content-Length` other
    /// than `0`: only hyper's path sends it.
    needs_hyper: bool,
    /// The request brings its own `Host`.
    host: bool,
    /// A `Connection` field asks to close.
    close: bool,
}

impl Fields {
    fn of(headers: &HeaderMap) -> Self {
        if headers.len() <= SCAN_AT_MOST {
            Self::scan(headers)
        } else {
            Self::look_up(headers)
        }
    }

    fn scan(headers: &HeaderMap) -> Self {
        let mut fields = Self::default();
        let mut length_seen = false;
        for (name, value) in headers {
            if name == header::UPGRADE || name == header::TRANSFER_ENCODING {
                fields.needs_hyper = true;
            } else if name == header::CONTENT_LENGTH {
                fields.needs_hyper |= !length_seen && value != "0";
                length_seen = true;
            } else if name == header::HOST {
                fields.host = true;
            } else if name == header::CONNECTION {
                fields.close |= has_token(value, "close");
            }
        }
        fields
    }

    fn look_up(headers: &HeaderMap) -> Self {
        Self {
            needs_hyper: headers.contains_key(header::UPGRADE)
                || headers.contains_key(header::TRANSFER_ENCODING)
                || headers
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|length| length != "0"),
            host: headers.contains_key(header::HOST),
            close: head::asks_to_close(headers),
        }
    }
}

/// Whether `req` can take the own path: no body, nothing hyper is needed for.
fn is_plain<B: http_body::Body>(req: &Request<B>, fields: &Fields) -> bool {
    req.body().is_end_stream()
        && req.version() == Version::HTTP_11
        && req.method() != Method::CONNECT
        && !fields.needs_hyper
}

/// Sends `req` through hyper: on `sender` if it can still take it, else on a
/// new connection.
async fn via_hyper<B>(
    shared: Arc<Shared<B>>,
    authority: Authority,
    sender: Option<SendRequest<B>>,
    mut req: Request<B>,
) -> Result<Response<UpstreamClientBody>, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if let Some(mut sender) = sender {
        match sender.try_send_request(req).await {
            Ok(res) => {
                shared.put_back(authority, sender);
                return Ok(res.map(UpstreamClientBody::hyper));
            }
            Err(mut err) => match err.take_message() {
                // Closed before the request went out: a new connection.
                Some(back) => req = back,
                None => return Err(err.into_error().into()),
            },
        }
    }
    let mut sender = handshake(shared.connect(&authority).await?).await?;
    let res = sender.send_request(req).await?;
    shared.put_back(authority, sender);
    Ok(res.map(UpstreamClientBody::hyper))
}

/// hyper's HTTP/1.1 connection over `stream`, driven by a task of its own.
async fn handshake<B>(stream: tokio::net::TcpStream) -> Result<SendRequest<B>, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (mut sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    drop(tokio::spawn(conn.with_upgrades()));
    sender.ready().await?;
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            let name = header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn one_pass_over_the_fields_reads_what_the_lookups_read() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("host", "a"), ("accept", "*/*")],
            &[("upgrade", "websocket"), ("connection", "upgrade")],
            &[("transfer-encoding", "chunked")],
            &[("content-length", "0")],
            &[("content-length", "5")],
            // The first `Content-Length` decides, as `get` reads it.
            &[("content-length", "0"), ("content-length", "5")],
            &[("content-length", "5"), ("content-length", "0")],
            &[("connection", "keep-alive"), ("connection", "Close")],
            &[("connection", "x-a, close")],
            &[("connection", "closed")],
        ];
        for case in cases {
            let headers = map(case);
            let scanned = Fields::scan(&headers);
            assert_eq!(scanned, Fields::look_up(&headers), "{case:?}");
            // And with more lines than a pass is for, `of` looks them up.
            let mut long = headers.clone();
            for i in 0..SCAN_AT_MOST {
                long.append(
                    header::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_static("1"),
                );
            }
            assert_eq!(Fields::of(&long), scanned, "{case:?} and more");
            assert_eq!(Fields::of(&headers), scanned, "{case:?}");
        }
        let close = Fields::scan(&map(&[("connection", "x-a, close")]));
        assert!(close.close && !close.needs_hyper && !close.host);
        let body = Fields::scan(&map(&[("host", "a"), ("content-length", "5")]));
        assert!(body.needs_hyper && body.host && !body.close);
    }
}
