use std::fmt;

/// Where in the exchange with the upstream a failure happened.
///
/// ```
/// use tower_bad_gateway::{ErrorKind, Phase};
/// assert_eq!(ErrorKind::ConnectionRefused.phase(), Phase::Connect);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Resolving and connecting (TCP, TLS), or getting a connection from a pool.
    Connect,
    /// Writing the request head or body.
    SendRequest,
    /// Waiting for the response head.
    AwaitHead,
    /// Reading the response body, after the head was passed on.
    ReadBody,
}

impl Phase {
    /// A lowercase name for logs: `connect`, `send_request`, `await_head`, `read_body`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::SendRequest => "send_request",
            Phase::AwaitHead => "await_head",
            Phase::ReadBody => "read_body",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the request can have reached the upstream: what decides whether a
/// non-idempotent request may be sent again.
///
/// ```
/// use tower_bad_gateway::{ErrorKind, RequestSent};
/// assert_eq!(ErrorKind::ConnectionRefused.request_sent(), RequestSent::No);
/// assert_eq!(ErrorKind::ConnectionTerminated.request_sent(), RequestSent::Maybe);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestSent {
    /// Provably not: no byte of it reached the upstream application.
    No,
    /// Perhaps: it may have been received and acted on.
    Maybe,
    /// Yes: the upstream received it (it answered, at least in part).
    Yes,
}

impl RequestSent {
    /// A lowercase name for logs: `no`, `maybe`, `yes`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestSent::No => "no",
            RequestSent::Maybe => "maybe",
            RequestSent::Yes => "yes",
        }
    }
}

impl fmt::Display for RequestSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
