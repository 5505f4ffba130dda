//! The client's address, a request extension: put there by the server
//! (`proxy::serve`), read by the proxy core for the forwarding fields; a leaf,
//! so that the retry layer can keep it across attempts without a copy of the
//! whole extension map.

/// The address of the client a request came from, in its extensions: what
/// `X-Forwarded-For` and `Forwarded` tell the upstream. [`serve`] puts it
/// there; under another server, put it there yourself:
///
/// ```
/// use std::net::SocketAddr;
/// use tower_bad_gateway::proxy::ClientAddr;
///
/// let mut req = http::Request::new(());
/// let peer: SocketAddr = "192.0.2.7:50123".parse().unwrap();
/// req.extensions_mut().insert(ClientAddr(peer));
/// ```
///
/// [`serve`]: crate::proxy::serve
// Public as `proxy::ClientAddr`; without the `proxy` feature only the retry
// layer reads it.
#[cfg_attr(not(feature = "proxy"), allow(unreachable_pub))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);
