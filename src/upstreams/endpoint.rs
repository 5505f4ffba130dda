use http::Uri;
use http::uri::{Authority, Scheme};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// One replica of an upstream: a scheme (`http` or `https`), an authority
/// (host and optional port) and an optional base path. Requests sent to it keep
/// their path and query, under the base path if it has one
/// (`http://10.0.0.7:8080/api` sends `/orders?id=7` as `/api/orders?id=7`, as
/// nginx's `proxy_pass http://host/api` does).
///
/// Parsing checks everything a request would otherwise trip on later, and says
/// what is wrong:
///
/// ```
/// use tower_bad_gateway::upstreams::Endpoint;
///
/// let ep: Endpoint = "http://10.0.0.7:8080".parse().unwrap();
/// assert_eq!(ep.authority(), "10.0.0.7:8080");
///
/// let err = "10.0.0.7:8080".parse::<Endpoint>().unwrap_err();
/// assert_eq!(err.to_string(), "upstream endpoint `10.0.0.7:8080`: no scheme (write http:// or https://)");
/// assert!("ftp://files.internal".parse::<Endpoint>().is_err());
/// assert!("http://".parse::<Endpoint>().is_err());
///
/// let api: Endpoint = "http://10.0.0.7:8080/api/".parse().unwrap();
/// assert_eq!(api.base_path(), "/api");
/// assert_eq!(api.to_string(), "http://10.0.0.7:8080/api");
/// assert!("http://10.0.0.7:8080/?q=1".parse::<Endpoint>().is_err());
/// ```
///
/// An endpoint found by resolving a name ([`Dns`](super::Dns)) also has the
/// address it was resolved to ([`at`](Self::at)): requests to it keep the name
/// (`Host`, `:authority`, and the name TLS verifies), and carry the address in
/// their extensions ([`Address`](super::Address)) for the client to connect to
/// ([`ByAddress`](super::ByAddress)).
///
/// ```
/// # use tower_bad_gateway::upstreams::Endpoint;
/// let ep: Endpoint = "http://orders.internal:8080".parse().unwrap();
/// let at = ep.at("10.1.2.3:8080".parse().unwrap());
/// assert_eq!(at.authority(), "orders.internal:8080");
/// assert_eq!(at.address(), Some("10.1.2.3:8080".parse().unwrap()));
/// assert_eq!(at.to_string(), "http://orders.internal:8080 at 10.1.2.3:8080");
/// assert_ne!(at, ep);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    /// The base path without its trailing `/`: empty for none.
    base: Box<str>,
    address: Option<SocketAddr>,
}

impl Endpoint {
    /// The endpoint `uri` names, if it names one.
    pub fn from_uri(uri: &Uri) -> Result<Self, EndpointError> {
        let error = |problem| EndpointError::new(&uri.to_string(), problem);
        let scheme = match uri.scheme() {
            None => return Err(error(Problem::NoScheme)),
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            Some(_) => return Err(error(Problem::Scheme)),
        };
        let authority = uri.authority().ok_or_else(|| error(Problem::NoHost))?;
        if authority.host().is_empty() {
            return Err(error(Problem::NoHost));
        }
        if authority.as_str().contains('@') {
            return Err(error(Problem::Credentials));
        }
        if uri.query().is_some() {
            return Err(error(Problem::Query));
        }
        let base = uri.path().trim_end_matches('/');
        if !base.is_empty() && !base.starts_with('/') {
            return Err(error(Problem::Invalid));
        }
        Ok(Self {
            scheme,
            authority: authority.clone(),
            base: base.into(),
            address: None,
        })
    }

    /// This endpoint's name (scheme and authority), reached at `address`.
    pub fn at(&self, address: SocketAddr) -> Self {
        Self {
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            base: self.base.clone(),
            address: Some(address),
        }
    }

    /// The address this endpoint's name was resolved to, if it was.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The port requests go to: the authority's, or the scheme's default.
    #[cfg_attr(not(any(feature = "dns", feature = "health-checks")), allow(dead_code))]
    pub(crate) fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.scheme == Scheme::HTTPS {
                443
            } else {
                80
            })
    }

    /// What an error names as its next hop, and the endpoint's key: the address
    /// when it has one, else the authority.
    pub(crate) fn hop(&self) -> Authority {
        match self.address {
            // Cannot fail: a socket address is an authority.
            Some(addr) => addr
                .to_string()
                .parse()
                .unwrap_or_else(|_| self.authority.clone()),
            None => self.authority.clone(),
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Host and port, as given.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The base path every request's path goes under, without its trailing `/`:
    /// `""` for none.
    pub fn base_path(&self) -> &str {
        &self.base
    }

    /// `uri` sent to this endpoint: its path and query under this base path, this
    /// scheme and authority. Without a base path nothing is copied.
    pub(crate) fn rewrite(&self, uri: Uri) -> Uri {
        let mut parts = uri.into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        let path = match parts.path_and_query.take() {
            None => http::uri::PathAndQuery::from_static("/"),
            Some(path) if self.base.is_empty() => path,
            Some(path) => {
                let rest = path.as_str();
                // `*` (OPTIONS) and a path without its `/` get one.
                let slash = if rest.starts_with('/') { "" } else { "/" };
                let mut joined = String::with_capacity(self.base.len() + slash.len() + rest.len());
                joined.push_str(&self.base);
                joined.push_str(slash);
                joined.push_str(rest);
                // Cannot fail: both halves were valid path (and query) text.
                http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(joined))
                    .unwrap_or(path)
            }
        };
        parts.path_and_query = Some(path);
        // Cannot fail: a scheme, an authority and a path are all there.
        Uri::from_parts(parts).unwrap_or_default()
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(EndpointError::new(s, Problem::Scheme));
            }
        }
        match s.parse::<Uri>() {
            Ok(uri) if uri.scheme().is_some() => Self::from_uri(&uri),
            // `host:port` parses as an authority alone: say what is missing.
            Ok(_) => Err(EndpointError::new(s, Problem::NoScheme)),
            Err(_) => Err(EndpointError::new(s, Problem::Invalid)),
        }
    }
}

impl TryFrom<&str> for Endpoint {
    type Error = EndpointError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<Uri> for Endpoint {
    type Error = EndpointError;

    fn try_from(uri: Uri) -> Result<Self, Self::Error> {
        Self::from_uri(&uri)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base)?;
        match self.address {
            Some(addr) => write!(f, " at {addr}"),
            None => Ok(()),
        }
    }
}

/// Why an [`Endpoint`] or an [`EndpointSet`](super::EndpointSet) could not be
/// built. Its message names the input (at most 100 characters of it, control
/// characters escaped) and the problem.
///
/// ```
/// use tower_bad_gateway::upstreams::{Endpoint, EndpointSet};
/// let err = EndpointSet::new(Vec::<Endpoint>::new()).unwrap_err();
/// assert_eq!(err.to_string(), "an endpoint set needs at least one endpoint");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    input: String,
    problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    Invalid,
    NoScheme,
    Scheme,
    NoHost,
    Credentials,
    Query,
    Empty,
    Duplicate,
}

impl EndpointError {
    pub(crate) fn new(input: &str, problem: Problem) -> Self {
        Self {
            input: escaped(input),
            problem,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problem == Problem::Empty
    }
}

/// At most 100 characters of `input`, control characters escaped: what an error
/// about a configuration string quotes of it (it may end up in a log line).
pub(crate) fn escaped(input: &str) -> String {
    input
        .chars()
        .take(100)
        .flat_map(char::escape_default)
        .collect()
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = match self.problem {
            Problem::Empty => return f.write_str("an endpoint set needs at least one endpoint"),
            Problem::Invalid => "not a URL",
            Problem::NoScheme => "no scheme (write http:// or https://)",
            Problem::Scheme => "the scheme must be http or https",
            Problem::NoHost => "no host",
            Problem::Credentials => "credentials in the URL are not supported",
            Problem::Query => "a query is not supported (requests keep their own)",
            Problem::Duplicate => "listed twice",
        };
        write!(f, "upstream endpoint `{}`: {problem}", self.input)
    }
}

impl std::error::Error for EndpointError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_input_is_a_clear_error_never_a_panic() {
        for (input, message) in [
            ("", "not a URL"),
            ("localhost:8080", "no scheme"),
            ("ftp://files", "the scheme must be http or https"),
            ("unix:///run/app.sock", "the scheme must be http or https"),
            ("http://", "not a URL"),
            ("http://user:pw@host", "credentials"),
            ("http://host/?q=1", "a query is not supported"),
            ("http://host/api?q=1", "a query is not supported"),
            ("http://ho st", "not a URL"),
            ("http://host\r\nx: y", "not a URL"),
        ] {
            let err = input.parse::<Endpoint>().unwrap_err().to_string();
            assert!(err.contains(message), "{input:?}: {err}");
            assert!(!err.contains('\r') && !err.contains('\n'), "{err}");
        }
    }

    proptest::proptest! {
        /// Any text: an endpoint or a clear error, never a panic, and the error
        /// never carries CR, LF or NUL (it may end up in a log line).
        #[test]
        fn any_text_is_an_endpoint_or_a_clean_error(text in ".{0,80}") {
            match text.parse::<Endpoint>() {
                Ok(ep) => {
                    let uri = ep.rewrite("/x?y".parse().unwrap());
                    proptest::prop_assert_eq!(uri.authority(), Some(ep.authority()));
                }
                Err(err) => {
                    let message = err.to_string();
                    proptest::prop_assert!(!message.contains(['\r', '\n', '\0']), "{:?}", message);
                }
            }
        }
    }

    #[test]
    fn a_request_keeps_its_path_and_query_and_takes_the_endpoints_scheme_and_authority() {
        let ep: Endpoint = "https://b.internal:8443/".parse().unwrap();
        let uri = ep.rewrite("/orders?id=7".parse().unwrap());
        assert_eq!(uri, "https://b.internal:8443/orders?id=7");
        let uri = ep.rewrite("http://gateway.example/x".parse().unwrap());
        assert_eq!(uri, "https://b.internal:8443/x");
        let uri = ep.rewrite("gateway.example:80".parse().unwrap());
        assert_eq!(uri, "https://b.internal:8443/");
    }

    #[test]
    fn a_base_path_prefixes_the_request_path_and_keeps_its_query() {
        for base in ["http://b:1/api", "http://b:1/api/", "http://b:1/api//"] {
            let ep: Endpoint = base.parse().unwrap();
            assert_eq!(ep.base_path(), "/api", "{base}");
            assert_eq!(
                ep.rewrite("/orders?id=7".parse().unwrap()),
                "http://b:1/api/orders?id=7"
            );
            assert_eq!(ep.rewrite("/".parse().unwrap()), "http://b:1/api/");
            assert_eq!(
                ep.rewrite("http://evil.example/x".parse().unwrap()),
                "http://b:1/api/x"
            );
        }
        let root: Endpoint = "http://b:1/".parse().unwrap();
        assert_eq!(root.base_path(), "");
        assert_eq!(root, "http://b:1".parse().unwrap());
        let other: Endpoint = "http://b:1/v2".parse().unwrap();
        assert_ne!(other, "http://b:1/api".parse().unwrap());
    }
}
