use super::ClientAddr;
use super::body::ProxyBody;
use super::forwarding::{
    FORWARDED, Forwarding, Trust, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
    forwarded_value, ip_value,
};
use super::future::ResponseFuture;
use super::headers;
use super::layer::{ProxyLayer, Settings};
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The proxy core around a gateway stack: see the [module](super).
///
/// ```
/// use tower_bad_gateway::proxy::Proxy;
/// # let gateway = tower::service_fn(|_req: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let proxy = Proxy::new(gateway);
/// # let _ = proxy;
/// ```
#[derive(Debug, Clone)]
pub struct Proxy<S> {
    inner: S,
    settings: Arc<Settings>,
    /// The last client's address and its `X-Forwarded-For` value: a service is
    /// cloned per connection, so each connection writes its value once.
    last_client: Option<(IpAddr, HeaderValue)>,
}

impl<S> Proxy<S> {
    /// The proxy core with [`ProxyLayer::new`]'s settings around `inner`.
    pub fn new(inner: S) -> Self {
        ProxyLayer::new().wrap(inner)
    }

    pub(crate) fn from_parts(inner: S, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            settings,
            last_client: None,
        }
    }

    /// A [`ProxyLayer`], to set it up.
    pub fn layer() -> ProxyLayer {
        ProxyLayer::new()
    }

    crate::macros::define_inner_service_accessors!();
}

impl ProxyLayer {
    fn wrap<S>(&self, inner: S) -> Proxy<S> {
        Proxy::from_parts(inner, self.settings.clone())
    }
}

impl<S, B, ResBody> Service<Request<B>> for Proxy<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ProxyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if headers::is_connect(req.method()) {
            return ResponseFuture::refused();
        }
        let settings = &*self.settings;
        let version = req.version();
        let downstream = if settings.upgrades
            && !settings.upstream_http2
            && headers::wants_upgrade(version, req.headers())
        {
            // Only a server that can hand the connection over puts this there.
            req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        let client = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        let client_value = match (client, &self.last_client) {
            (Some(ip), Some((last, value))) if ip == *last => Some(value.clone()),
            (Some(ip), _) if settings.x_forwarded => {
                let value = ip_value(ip);
                self.last_client = Some((ip, value.clone()));
                Some(value)
            }
            _ => None,
        };
        // Read for `X-Forwarded-Host`; taken out at once when the upstream's
        // authority is to be the `Host` (one lookup, not a read and a removal).
        let host = if settings.preserve_host {
            req.headers().get(header::HOST).cloned()
        } else {
            req.headers_mut().remove(header::HOST)
        };
        let facts = Forwarding {
            client,
            client_value,
            host: host.or_else(|| {
                req.uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
        };
        let upgrading = downstream.is_some();
        let uri = origin_form(req.uri(), settings.strip_prefix.as_deref());
        let headers = req.headers_mut();
        headers::strip_hop_by_hop(headers, upgrading, !settings.upstream_http2, true);
        headers::drop_expect_continue(headers, version);
        add_forwarding(headers, settings, version, facts);
        *req.uri_mut() = uri;
        // The client under the gateway picks the upstream's version.
        *req.version_mut() = Version::HTTP_11;
        ResponseFuture::new(self.inner.call(req), self.settings.clone(), downstream)
    }
}

/// Adds the forwarding fields and `Via` to a request received over `version`.
fn add_forwarding(
    headers: &mut HeaderMap,
    settings: &Settings,
    version: Version,
    facts: Forwarding,
) {
    if settings.trust == Trust::Edge {
        headers.remove(X_FORWARDED_FOR);
        headers.remove(X_FORWARDED_HOST);
        headers.remove(X_FORWARDED_PROTO);
        headers.remove(FORWARDED);
    }
    // Room for the fields below at once: one growth of the map, not several.
    headers.reserve(5);
    let proto = if settings.https {
        HeaderValue::from_static("https")
    } else {
        HeaderValue::from_static("http")
    };
    if settings.x_forwarded {
        if let Some(value) = facts.client_value {
            headers.append(X_FORWARDED_FOR, value);
        }
        if let Some(host) = &facts.host {
            headers.append(X_FORWARDED_HOST, host.clone());
        }
        headers.append(X_FORWARDED_PROTO, proto);
    }
    if settings.forwarded {
        if let Some(value) = forwarded_value(facts.client, facts.host.as_ref(), settings.https) {
            headers.append(FORWARDED, value);
        }
    }
    if let Some(via) = &settings.via {
        headers.append(header::VIA, via.value(version));
    }
}

/// The request target the upstream sees: the path and query alone, so that an
/// absolute-form URI (`GET http://elsewhere/ HTTP/1.1`) never chooses the
/// upstream; `prefix` taken off when the path has it.
fn origin_form(uri: &Uri, prefix: Option<&str>) -> Uri {
    let path = match uri.path_and_query() {
        Some(path) => path,
        None => return Uri::from_static("/"),
    };
    if let Some(prefix) = prefix {
        let rest = path
            .as_str()
            .strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'));
        if let Some(rest) = rest {
            let stripped = if rest.is_empty() || rest.starts_with('?') {
                let mut s = String::with_capacity(rest.len() + 1);
                s.push('/');
                s.push_str(rest);
                PathAndQuery::from_maybe_shared(bytes::Bytes::from(s))
            } else {
                PathAndQuery::from_maybe_shared(bytes::Bytes::copy_from_slice(rest.as_bytes()))
            };
            if let Ok(stripped) = stripped {
                return Uri::from(stripped);
            }
        }
    }
    // Sharing the bytes, not copying them.
    Uri::from(path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-connection cache of the `X-Forwarded-For` value never tells one
    /// client's address for another's (a service clone may serve several).
    #[tokio::test]
    async fn each_request_forwards_its_own_client_address() {
        let echo = tower::service_fn(|req: Request<()>| async move {
            let xff = req.headers().get_all(X_FORWARDED_FOR).iter();
            let xff: Vec<_> = xff.map(|v| v.to_str().unwrap().to_owned()).collect();
            Ok::<_, std::convert::Infallible>(Response::new(xff.join(" | ")))
        });
        let mut proxy = Proxy::new(echo);
        for addr in [
            "10.0.0.1:1",
            "10.0.0.1:2",
            "10.0.0.2:1",
            "[::1]:1",
            "10.0.0.1:3",
        ] {
            let mut req = Request::new(());
            req.extensions_mut()
                .insert(ClientAddr(addr.parse().unwrap()));
            let ip = addr
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .ip()
                .to_string();
            assert_eq!(forwarded(&mut proxy, req).await, ip, "from {addr}");
        }
        let unknown = forwarded(&mut proxy, Request::new(())).await;
        assert_eq!(unknown, "", "no address, no field");
    }

    async fn forwarded<S>(proxy: &mut Proxy<S>, req: Request<()>) -> String
    where
        S: Service<Request<()>, Response = Response<String>, Error = std::convert::Infallible>,
    {
        use http_body_util::BodyExt;
        let body = proxy.call(req).await.unwrap().into_body().collect().await;
        String::from_utf8(body.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_target_is_origin_form_and_a_prefix_comes_off_only_whole() {
        let t = |uri: &str, prefix| origin_form(&uri.parse().unwrap(), prefix).to_string();
        assert_eq!(t("http://evil.example/x?y", None), "/x?y");
        assert_eq!(t("/api/orders?id=1", Some("/api")), "/orders?id=1");
        assert_eq!(t("/api", Some("/api")), "/");
        assert_eq!(t("/api?x", Some("/api")), "/?x");
        assert_eq!(t("/apiary", Some("/api")), "/apiary");
        assert_eq!(t("/other", Some("/api")), "/other");
        assert_eq!(t("evil.example:443", None), "/");
    }
}
