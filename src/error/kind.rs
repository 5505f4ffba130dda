use http::StatusCode;
use std::fmt;

/// What went wrong on the hop to the upstream.
///
/// Each kind maps to one RFC 9209 `Proxy-Status` error type ([`as_str`](Self::as_str)),
/// a default status code ([`default_status`](Self::default_status)), the phase it
/// normally happens in, and whether the request can have reached the upstream.
///
/// ```
/// use tower_bad_gateway::ErrorKind;
/// use http::StatusCode;
///
/// assert_eq!(ErrorKind::ConnectionRefused.as_str(), "connection_refused");
/// assert_eq!(ErrorKind::ResponseHeaderTimeout.default_status(), StatusCode::GATEWAY_TIMEOUT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The upstream host name could not be resolved.
    DnsError,
    /// Resolving the upstream host name timed out.
    DnsTimeout,
    /// The upstream refused the TCP connection.
    ConnectionRefused,
    /// The TCP connection to the upstream could not be set up in time.
    ConnectionTimeout,
    /// No route to the upstream address.
    DestinationUnreachable,
    /// The TLS handshake with the upstream failed.
    TlsProtocolError,
    /// The upstream's TLS certificate was rejected.
    TlsCertificateError,
    /// The connection was closed or reset before any response arrived.
    ConnectionTerminated,
    /// The upstream refused the HTTP/2 stream (`REFUSED_STREAM`, or a `GOAWAY` that
    /// excluded it): it provably did not process the request.
    RefusedStream,
    /// The response head or body was cut short.
    ResponseIncomplete,
    /// No response head arrived in time.
    ResponseHeaderTimeout,
    /// The response body stopped arriving in time.
    ReadTimeout,
    /// Sending the request body to the upstream stalled.
    WriteTimeout,
    /// The upstream's answer is not valid HTTP.
    ProtocolError,
    /// The upstream's response head is too large.
    HeaderSectionTooLarge,
    /// The upstream's response body is larger than allowed.
    BodyTooLarge,
    /// The upstream's transfer coding (chunking) is malformed.
    TransferCoding,
    /// A protocol upgrade with the upstream failed.
    UpgradeFailed,
    /// The upstream's answer was rejected by the [`ResponsePolicy`](crate::ResponsePolicy).
    InvalidResponse,
    /// A local connection or concurrency limit was reached (pool full, load shed).
    ConnectionLimitReached,
    /// No upstream is available (no endpoint, circuit open).
    DestinationUnavailable,
    /// The gateway itself is misconfigured (bad upstream URI, unsupported scheme).
    ProxyConfigurationError,
    /// An error that no other kind fits.
    Unclassified,
}

impl ErrorKind {
    /// Every kind, in the order of the taxonomy table.
    ///
    /// ```
    /// use tower_bad_gateway::ErrorKind;
    /// assert!(ErrorKind::ALL.contains(&ErrorKind::RefusedStream));
    /// assert!(ErrorKind::ALL.iter().all(|k| k.default_status().is_server_error()));
    /// ```
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::DnsError,
        ErrorKind::DnsTimeout,
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionTimeout,
        ErrorKind::DestinationUnreachable,
        ErrorKind::TlsProtocolError,
        ErrorKind::TlsCertificateError,
        ErrorKind::ConnectionTerminated,
        ErrorKind::RefusedStream,
        ErrorKind::ResponseIncomplete,
        ErrorKind::ResponseHeaderTimeout,
        ErrorKind::ReadTimeout,
        ErrorKind::WriteTimeout,
        ErrorKind::ProtocolError,
        ErrorKind::HeaderSectionTooLarge,
        ErrorKind::BodyTooLarge,
        ErrorKind::TransferCoding,
        ErrorKind::UpgradeFailed,
        ErrorKind::InvalidResponse,
        ErrorKind::ConnectionLimitReached,
        ErrorKind::DestinationUnavailable,
        ErrorKind::ProxyConfigurationError,
        ErrorKind::Unclassified,
    ];

    /// The RFC 9209 `Proxy-Status` error type (`error=` parameter).
    ///
    /// ```
    /// # use tower_bad_gateway::ErrorKind;
    /// assert_eq!(ErrorKind::RefusedStream.as_str(), "connection_terminated");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::DnsError => "dns_error",
            ErrorKind::DnsTimeout => "dns_timeout",
            ErrorKind::ConnectionRefused => "connection_refused",
            ErrorKind::ConnectionTimeout => "connection_timeout",
            ErrorKind::DestinationUnreachable => "destination_ip_unroutable",
            ErrorKind::TlsProtocolError => "tls_protocol_error",
            ErrorKind::TlsCertificateError => "tls_certificate_error",
            ErrorKind::ConnectionTerminated | ErrorKind::RefusedStream => "connection_terminated",
            ErrorKind::ResponseIncomplete => "http_response_incomplete",
            ErrorKind::ResponseHeaderTimeout => "http_response_timeout",
            ErrorKind::ReadTimeout => "connection_read_timeout",
            ErrorKind::WriteTimeout => "connection_write_timeout",
            ErrorKind::ProtocolError | ErrorKind::InvalidResponse => "http_protocol_error",
            ErrorKind::HeaderSectionTooLarge => "http_response_header_section_size",
            ErrorKind::BodyTooLarge => "http_response_body_size",
            ErrorKind::TransferCoding => "http_response_transfer_coding",
            ErrorKind::UpgradeFailed => "http_upgrade_failed",
            ErrorKind::ConnectionLimitReached => "connection_limit_reached",
            ErrorKind::DestinationUnavailable => "destination_unavailable",
            ErrorKind::ProxyConfigurationError => "proxy_configuration_error",
            ErrorKind::Unclassified => "proxy_internal_error",
        }
    }

    /// The status answered by default: 504 for timeouts, 503 when no upstream could
    /// be tried, 500 for a misconfigured gateway, 502 for everything else.
    pub const fn default_status(self) -> StatusCode {
        match self {
            ErrorKind::DnsTimeout
            | ErrorKind::ConnectionTimeout
            | ErrorKind::ResponseHeaderTimeout
            | ErrorKind::ReadTimeout
            | ErrorKind::WriteTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::ConnectionLimitReached | ErrorKind::DestinationUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::ProxyConfigurationError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the request can have reached the upstream when this kind happens
    /// before the response head.
    ///
    /// Errors read from a response body always have [`RequestSent::Yes`].
    pub const fn request_sent(self) -> RequestSent {
        match self {
            ErrorKind::DnsError
            | ErrorKind::DnsTimeout
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionTimeout
            | ErrorKind::DestinationUnreachable
            | ErrorKind::TlsProtocolError
            | ErrorKind::TlsCertificateError
            | ErrorKind::RefusedStream
            | ErrorKind::ConnectionLimitReached
            | ErrorKind::DestinationUnavailable
            | ErrorKind::ProxyConfigurationError => RequestSent::No,
            ErrorKind::ConnectionTerminated | ErrorKind::WriteTimeout | ErrorKind::Unclassified => {
                RequestSent::Maybe
            }
            _ => RequestSent::Yes,
        }
    }

    /// The phase this kind normally happens in.
    pub const fn phase(self) -> Phase {
        match self {
            ErrorKind::DnsError
            | ErrorKind::DnsTimeout
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionTimeout
            | ErrorKind::DestinationUnreachable
            | ErrorKind::TlsProtocolError
            | ErrorKind::TlsCertificateError
            | ErrorKind::ConnectionLimitReached
            | ErrorKind::DestinationUnavailable
            | ErrorKind::ProxyConfigurationError => Phase::Connect,
            ErrorKind::RefusedStream | ErrorKind::WriteTimeout => Phase::SendRequest,
            ErrorKind::ReadTimeout | ErrorKind::BodyTooLarge | ErrorKind::TransferCoding => {
                Phase::ReadBody
            }
            _ => Phase::AwaitHead,
        }
    }

    /// Whether this kind is a timeout (answered `504`, or gRPC `DEADLINE_EXCEEDED`).
    pub const fn is_timeout(self) -> bool {
        matches!(
            self,
            ErrorKind::DnsTimeout
                | ErrorKind::ConnectionTimeout
                | ErrorKind::ResponseHeaderTimeout
                | ErrorKind::ReadTimeout
                | ErrorKind::WriteTimeout
        )
    }

    /// A short sentence for people, safe to show to any client: it names no host,
    /// address or internal message.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorKind::DnsError => "The upstream server's name could not be resolved.",
            ErrorKind::DnsTimeout => "Resolving the upstream server's name timed out.",
            ErrorKind::ConnectionRefused => "The upstream server refused the connection.",
            ErrorKind::ConnectionTimeout => "The upstream server could not be reached in time.",
            ErrorKind::DestinationUnreachable => "The upstream server is unreachable.",
            ErrorKind::TlsProtocolError => "The secure connection to the upstream server failed.",
            ErrorKind::TlsCertificateError => "The upstream server's certificate was not accepted.",
            ErrorKind::ConnectionTerminated => {
                "The upstream server closed the connection without answering."
            }
            ErrorKind::RefusedStream => "The upstream server refused the request.",
            ErrorKind::ResponseIncomplete => "The upstream server's answer was cut short.",
            ErrorKind::ResponseHeaderTimeout => "The upstream server did not answer in time.",
            ErrorKind::ReadTimeout => "The upstream server stopped sending its answer.",
            ErrorKind::WriteTimeout => "Sending the request to the upstream server stalled.",
            ErrorKind::ProtocolError => "The upstream server's answer is not valid HTTP.",
            ErrorKind::HeaderSectionTooLarge => {
                "The upstream server's answer headers are too large."
            }
            ErrorKind::BodyTooLarge => "The upstream server's answer is too large.",
            ErrorKind::TransferCoding => "The upstream server's answer is malformed.",
            ErrorKind::UpgradeFailed => "The protocol upgrade with the upstream server failed.",
            ErrorKind::InvalidResponse => "The upstream server's answer was not acceptable.",
            ErrorKind::ConnectionLimitReached => "The gateway is at its connection limit.",
            ErrorKind::DestinationUnavailable => "No upstream server is available.",
            ErrorKind::ProxyConfigurationError => "The gateway is misconfigured.",
            ErrorKind::Unclassified => "The gateway could not get an answer from upstream.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    /// The renderer's cache indexes by discriminant: `ALL` must list every kind,
    /// in declaration order.
    #[test]
    fn all_is_in_declaration_order() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?}");
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
