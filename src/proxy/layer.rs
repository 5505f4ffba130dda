use super::forwarding::{Trust, Via};
use super::service::Proxy;
use std::sync::Arc;
use tower_layer::Layer;

/// The proxy core as a layer: see the [module](super) for what it does.
///
/// Every setter records its own setting; the order of the calls never matters.
///
/// ```
/// use tower_bad_gateway::proxy::{ProxyLayer, Trust};
///
/// let layer = ProxyLayer::new()
///     .via_name("edge-1")       // `Via: 1.1 edge-1`
///     .forwarded(true)          // RFC 7239 `Forwarded` too
///     .trust(Trust::Edge)       // drop the client's own forwarding fields
///     .strip_prefix("/api");    // `/api/orders` goes upstream as `/orders`
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ProxyLayer {
    pub(crate) settings: Arc<Settings>,
}

/// What a [`ProxyLayer`] was told, shared by every clone of its services.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) via: Option<Via>,
    pub(crate) x_forwarded: bool,
    pub(crate) forwarded: bool,
    pub(crate) trust: Trust,
    pub(crate) https: bool,
    pub(crate) strip_prefix: Option<Box<str>>,
    pub(crate) preserve_host: bool,
    pub(crate) upstream_http2: bool,
    pub(crate) upgrades: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            via: Some(Via::new("tower-bad-gateway")),
            x_forwarded: true,
            forwarded: false,
            trust: Trust::Append,
            https: false,
            strip_prefix: None,
            preserve_host: false,
            upstream_http2: false,
            upgrades: true,
        }
    }
}

impl Default for ProxyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyLayer {
    /// `Via` as `tower-bad-gateway`, `X-Forwarded-*` appended, no `Forwarded`,
    /// [`Trust::Append`], upgrades joined, `Host` set by the client from the
    /// upstream's authority, an HTTP/1.1 upstream.
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings::default()),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::make_mut(&mut self.settings));
        self
    }

    /// The pseudonym this proxy appends to `Via` (RFC 9110 §7.6.3), both ways: a
    /// token; other characters are dropped. Default `tower-bad-gateway`.
    pub fn via_name(self, name: &str) -> Self {
        let via = Via::new(name);
        self.with(|s| s.via = Some(via))
    }

    /// Whether to append `Via` at all (default yes).
    pub fn via(self, on: bool) -> Self {
        self.with(|s| {
            if !on {
                s.via = None;
            } else if s.via.is_none() {
                s.via = Some(Via::new("tower-bad-gateway"));
            }
        })
    }

    /// Whether to append `X-Forwarded-For` (the client's address, from
    /// [`ClientAddr`](super::ClientAddr)), `X-Forwarded-Host` (the `Host` the
    /// client asked for) and `X-Forwarded-Proto` (default yes).
    pub fn x_forwarded(self, on: bool) -> Self {
        self.with(|s| s.x_forwarded = on)
    }

    /// Whether to append an RFC 7239 `Forwarded` element
    /// (`for=...;host="...";proto=...`; default no).
    pub fn forwarded(self, on: bool) -> Self {
        self.with(|s| s.forwarded = on)
    }

    /// What to do with the forwarding fields a request arrives with; see
    /// [`Trust`] for the rule an upstream must follow (default [`Trust::Append`]).
    pub fn trust(self, trust: Trust) -> Self {
        self.with(|s| s.trust = trust)
    }

    /// Whether clients reach this proxy over TLS: `X-Forwarded-Proto` and the
    /// `proto` of `Forwarded` say `https` (default no: `http`).
    pub fn https(self, on: bool) -> Self {
        self.with(|s| s.https = on)
    }

    /// A path prefix taken off every request path that has it (`/api` makes
    /// `/api/orders` `/orders`, and `/api` itself `/`); other paths go on as they
    /// are. Under axum's `nest_service` the router has stripped its own prefix
    /// already. An empty prefix or `/` strips nothing.
    pub fn strip_prefix(self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let prefix: Option<Box<str>> = (!prefix.is_empty()).then(|| prefix.into());
        self.with(|s| s.strip_prefix = prefix)
    }

    /// Whether the upstream sees the client's own `Host` (default no: the
    /// client under the gateway sets it from the endpoint's authority, and the
    /// client's goes in `X-Forwarded-Host`).
    pub fn preserve_host(self, on: bool) -> Self {
        self.with(|s| s.preserve_host = on)
    }

    /// Whether the upstream is spoken to over HTTP/2 (default no). HTTP/2 has no
    /// `Connection` field and no upgrades: none is announced or forwarded, and an
    /// upgrade request goes on as a plain one.
    pub fn upstream_http2(self, on: bool) -> Self {
        self.with(|s| s.upstream_http2 = on)
    }

    /// Whether HTTP/1.1 upgrades (WebSocket) are forwarded and joined (default
    /// yes). Off, an upgrade request goes on as a plain one.
    pub fn upgrades(self, on: bool) -> Self {
        self.with(|s| s.upgrades = on)
    }
}

impl<S> Layer<S> for ProxyLayer {
    type Service = Proxy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Proxy::from_parts(inner, self.settings.clone())
    }
}
