//! The taxonomy: every [`ErrorKind`] and its facts, in one table.
//!
//! The table below is the only place a kind's facts are written. One macro makes
//! the enum, [`ErrorKind::ALL`] and every lookup from it, so a new kind cannot be
//! left out of `ALL`, miss a fact, or fall into a `_ =>` arm: each lookup is an
//! exhaustive `match` the compiler checks.

use super::{GrpcCode, Phase, RequestSent};
use http::StatusCode;
use std::fmt;

/// Whether a kind is retried by default (see
/// [`RetryPolicy::retry_on`](crate::retry::RetryPolicy::retry_on)).
///
/// The safety rule applies on top: a request that may have reached the upstream
/// is retried only if it is idempotent.
///
/// ```
/// use tower_bad_gateway::{ErrorKind, error::RetryDefault};
/// assert_eq!(ErrorKind::ConnectionRefused.retry_default(), RetryDefault::On);
/// assert_eq!(ErrorKind::ResponseHeaderTimeout.retry_default(), RetryDefault::OptIn);
/// assert_eq!(ErrorKind::ReadTimeout.retry_default(), RetryDefault::Never);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryDefault {
    /// Retried by default.
    On,
    /// Not retried by default; a policy may opt in.
    OptIn,
    /// Never retried: opting in is ignored (the answer already began, or the
    /// failure repeats the same way every time).
    Never,
}

macro_rules! kinds {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident {
            token: $token:literal,
            status: $status:ident,
            grpc: $grpc:ident,
            sent: $sent:ident,
            phase: $phase:ident,
            timeout: $timeout:literal,
            retry: $retry:ident,
            description: $description:literal $(,)?
        }
    )+) => {
        /// What went wrong on the hop to the upstream.
        ///
        /// Each kind maps to one RFC 9209 `Proxy-Status` error type
        /// ([`as_str`](Self::as_str)), a default status code
        /// ([`default_status`](Self::default_status)), a gRPC status
        /// ([`grpc_code`](Self::grpc_code)), the phase it normally happens in, whether
        /// the request can have reached the upstream, and whether it is retried by
        /// default. The README's taxonomy table is checked against these facts.
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
            $($(#[doc = $doc])+ $name,)+
        }

        impl ErrorKind {
            /// Every kind, in the order of the taxonomy table.
            ///
            /// ```
            /// use tower_bad_gateway::ErrorKind;
            /// assert!(ErrorKind::ALL.contains(&ErrorKind::RefusedStream));
            /// assert!(ErrorKind::ALL.iter().all(|k| k.default_status().is_server_error()));
            /// ```
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name,)+];

            /// The number of kinds.
            ///
            /// ```
            /// use tower_bad_gateway::ErrorKind;
            /// assert_eq!(ErrorKind::COUNT, ErrorKind::ALL.len());
            /// ```
            pub const COUNT: usize = Self::ALL.len();

            /// The kind's position in [`ALL`](Self::ALL): always below
            /// [`COUNT`](Self::COUNT), so tables indexed by it need no bounds check
            /// to be right.
            pub(crate) const fn index(self) -> usize {
                // The enum has no explicit discriminants and `ALL` lists the same
                // variants in the same order: the discriminant is the position.
                self as usize
            }

            /// The RFC 9209 `Proxy-Status` error type (`error=` parameter).
            ///
            /// ```
            /// # use tower_bad_gateway::ErrorKind;
            /// assert_eq!(ErrorKind::RefusedStream.as_str(), "connection_terminated");
            /// ```
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorKind::$name => $token,)+ }
            }

            /// The status answered by default: 504 for timeouts, 503 when no upstream
            /// could be tried, 500 for the gateway's own faults (a misconfiguration,
            /// an internal error), 502 for everything else. A [`Renderer`](crate::render::Renderer) can override it per kind.
            pub const fn default_status(self) -> StatusCode {
                match self { $(ErrorKind::$name => StatusCode::$status,)+ }
            }

            /// The gRPC status a gRPC caller is answered with.
            ///
            /// ```
            /// # use tower_bad_gateway::{ErrorKind, GrpcCode};
            /// assert_eq!(ErrorKind::ConnectionRefused.grpc_code(), GrpcCode::Unavailable);
            /// assert_eq!(ErrorKind::ResponseHeaderTimeout.grpc_code(), GrpcCode::DeadlineExceeded);
            /// ```
            pub const fn grpc_code(self) -> GrpcCode {
                match self { $(ErrorKind::$name => GrpcCode::$grpc,)+ }
            }

            /// Whether the request can have reached the upstream when this kind
            /// happens before the response head.
            ///
            /// Errors read from a response body always have [`RequestSent::Yes`].
            pub const fn request_sent(self) -> RequestSent {
                match self { $(ErrorKind::$name => RequestSent::$sent,)+ }
            }

            /// The phase this kind normally happens in.
            pub const fn phase(self) -> Phase {
                match self { $(ErrorKind::$name => Phase::$phase,)+ }
            }

            /// Whether this kind is a timeout.
            pub const fn is_timeout(self) -> bool {
                match self { $(ErrorKind::$name => $timeout,)+ }
            }

            /// Whether this kind is retried by default.
            pub const fn retry_default(self) -> RetryDefault {
                match self { $(ErrorKind::$name => RetryDefault::$retry,)+ }
            }

            /// A short sentence for people, safe to show to any client: it names no
            /// host, address or internal message.
            pub const fn description(self) -> &'static str {
                match self { $(ErrorKind::$name => $description,)+ }
            }
        }
    };
}

kinds! {
    /// The upstream host name could not be resolved.
    DnsError {
        token: "dns_error", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: OptIn,
        description: "The upstream server's name could not be resolved.",
    }
    /// Resolving the upstream host name timed out.
    DnsTimeout {
        token: "dns_timeout", status: GATEWAY_TIMEOUT, grpc: Unavailable, sent: No,
        phase: Connect, timeout: true, retry: On,
        description: "Resolving the upstream server's name timed out.",
    }
    /// The upstream refused the TCP connection.
    ConnectionRefused {
        token: "connection_refused", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: On,
        description: "The upstream server refused the connection.",
    }
    /// The TCP connection to the upstream could not be set up in time.
    ConnectionTimeout {
        token: "connection_timeout", status: GATEWAY_TIMEOUT, grpc: Unavailable, sent: No,
        phase: Connect, timeout: true, retry: On,
        description: "The upstream server could not be reached in time.",
    }
    /// No route to the upstream address.
    DestinationUnreachable {
        token: "destination_ip_unroutable", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: On,
        description: "The upstream server is unreachable.",
    }
    /// The TLS handshake with the upstream failed: the peer does not speak TLS (a
    /// plaintext server on the port), misbehaved, or shares no protocol version or
    /// cipher suite.
    TlsProtocolError {
        token: "tls_protocol_error", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: OptIn,
        description: "The secure connection to the upstream server failed.",
    }
    /// The upstream's TLS certificate was rejected (expired, from an unknown
    /// issuer, for another name, ...).
    TlsCertificateError {
        token: "tls_certificate_error", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: OptIn,
        description: "The upstream server's certificate was not accepted.",
    }
    /// The upstream ended the TLS handshake with a fatal alert; the alert is in
    /// [`GatewayError::tls_alert`](crate::GatewayError::tls_alert), and in
    /// `Proxy-Status` as `alert-id` (RFC 9209 §2.3.15).
    TlsAlertReceived {
        token: "tls_alert_received", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: OptIn,
        description: "The upstream server refused the secure connection.",
    }
    /// The connection was closed or reset before any response arrived.
    ConnectionTerminated {
        token: "connection_terminated", status: BAD_GATEWAY, grpc: Unavailable, sent: Maybe,
        phase: AwaitHead, timeout: false, retry: On,
        description: "The upstream server closed the connection without answering.",
    }
    /// The upstream refused the HTTP/2 stream (`REFUSED_STREAM`, or a `GOAWAY` that
    /// excluded it): it provably did not process the request.
    RefusedStream {
        token: "connection_terminated", status: BAD_GATEWAY, grpc: Unavailable, sent: No,
        phase: SendRequest, timeout: false, retry: On,
        description: "The upstream server refused the request.",
    }
    /// The response head or body was cut short.
    ResponseIncomplete {
        token: "http_response_incomplete", status: BAD_GATEWAY, grpc: Unavailable, sent: Yes,
        phase: AwaitHead, timeout: false, retry: On,
        description: "The upstream server's answer was cut short.",
    }
    /// No response head arrived in time.
    ResponseHeaderTimeout {
        token: "http_response_timeout", status: GATEWAY_TIMEOUT, grpc: DeadlineExceeded, sent: Yes,
        phase: AwaitHead, timeout: true, retry: OptIn,
        description: "The upstream server did not answer in time.",
    }
    /// The response body stopped arriving: no new data for the idle timeout.
    ReadTimeout {
        token: "connection_read_timeout", status: GATEWAY_TIMEOUT, grpc: DeadlineExceeded, sent: Yes,
        phase: ReadBody, timeout: true, retry: Never,
        description: "The upstream server stopped sending its answer.",
    }
    /// The whole answer took too long: the body's total timeout, or the request's
    /// deadline, passed while the body was still arriving.
    ResponseTimeout {
        token: "http_response_timeout", status: GATEWAY_TIMEOUT, grpc: DeadlineExceeded, sent: Yes,
        phase: ReadBody, timeout: true, retry: Never,
        description: "The upstream server's answer took too long.",
    }
    /// Sending the request body to the upstream stalled.
    WriteTimeout {
        token: "connection_write_timeout", status: GATEWAY_TIMEOUT, grpc: DeadlineExceeded, sent: Maybe,
        phase: SendRequest, timeout: true, retry: On,
        description: "Sending the request to the upstream server stalled.",
    }
    /// The upstream's answer is not valid HTTP.
    ProtocolError {
        token: "http_protocol_error", status: BAD_GATEWAY, grpc: Internal, sent: Yes,
        phase: AwaitHead, timeout: false, retry: OptIn,
        description: "The upstream server's answer is not valid HTTP.",
    }
    /// The upstream's response head is too large.
    HeaderSectionTooLarge {
        token: "http_response_header_section_size", status: BAD_GATEWAY, grpc: ResourceExhausted, sent: Yes,
        phase: AwaitHead, timeout: false, retry: OptIn,
        description: "The upstream server's answer headers are too large.",
    }
    /// The upstream's response body is larger than allowed.
    BodyTooLarge {
        token: "http_response_body_size", status: BAD_GATEWAY, grpc: ResourceExhausted, sent: Yes,
        phase: ReadBody, timeout: false, retry: OptIn,
        description: "The upstream server's answer is too large.",
    }
    /// The upstream's transfer coding (chunking) is malformed.
    TransferCoding {
        token: "http_response_transfer_coding", status: BAD_GATEWAY, grpc: Internal, sent: Yes,
        phase: ReadBody, timeout: false, retry: OptIn,
        description: "The upstream server's answer is malformed.",
    }
    /// A protocol upgrade with the upstream failed.
    UpgradeFailed {
        token: "http_upgrade_failed", status: BAD_GATEWAY, grpc: Internal, sent: Yes,
        phase: AwaitHead, timeout: false, retry: OptIn,
        description: "The protocol upgrade with the upstream server failed.",
    }
    /// The upstream's answer was rejected by the [`ResponsePolicy`](crate::ResponsePolicy).
    InvalidResponse {
        token: "http_protocol_error", status: BAD_GATEWAY, grpc: Internal, sent: Yes,
        phase: AwaitHead, timeout: false, retry: OptIn,
        description: "The upstream server's answer was not acceptable.",
    }
    /// A local connection or concurrency limit was reached (pool full, load shed).
    ConnectionLimitReached {
        token: "connection_limit_reached", status: SERVICE_UNAVAILABLE, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: On,
        description: "The gateway is at its connection limit.",
    }
    /// No upstream is available (no endpoint, circuit open, retry budget spent).
    DestinationUnavailable {
        token: "destination_unavailable", status: SERVICE_UNAVAILABLE, grpc: Unavailable, sent: No,
        phase: Connect, timeout: false, retry: OptIn,
        description: "No upstream server is available.",
    }
    /// The gateway itself is misconfigured (bad upstream URI, unsupported scheme).
    ProxyConfigurationError {
        token: "proxy_configuration_error", status: INTERNAL_SERVER_ERROR, grpc: Internal, sent: No,
        phase: Connect, timeout: false, retry: Never,
        description: "The gateway is misconfigured.",
    }
    /// A fault of the gateway itself (a local port shortage), or an error no other
    /// kind fits. Answered 500, the status RFC 9209 recommends for its token.
    Unclassified {
        token: "proxy_internal_error", status: INTERNAL_SERVER_ERROR, grpc: Unknown, sent: Maybe,
        phase: AwaitHead, timeout: false, retry: OptIn,
        description: "The gateway could not get an answer from upstream.",
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_index_in_all() {
        assert_eq!(ErrorKind::COUNT, ErrorKind::ALL.len());
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    /// The table's columns agree: every timeout answers 504 and nothing else does;
    /// `DEADLINE_EXCEEDED` only ever answers a timeout; a request that never left
    /// is `UNAVAILABLE`, so gRPC retry policies retry it.
    #[test]
    fn the_columns_of_the_table_agree() {
        for &kind in ErrorKind::ALL {
            assert_eq!(
                kind.is_timeout(),
                kind.default_status() == StatusCode::GATEWAY_TIMEOUT,
                "{kind:?}"
            );
            if kind.grpc_code() == GrpcCode::DeadlineExceeded {
                assert!(kind.is_timeout(), "{kind:?}");
            }
            if kind.request_sent() == RequestSent::No && kind != ErrorKind::ProxyConfigurationError
            {
                assert_eq!(kind.grpc_code(), GrpcCode::Unavailable, "{kind:?}");
            }
        }
    }

    /// The README's taxonomy table is documentation users trust: it must say what
    /// the code does, kind by kind.
    #[test]
    fn the_readme_taxonomy_table_matches_the_code() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## The taxonomy")
            .nth(1)
            .expect("README has a taxonomy section");
        let rows: Vec<Vec<String>> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), ErrorKind::COUNT, "one row per kind");
        for (row, &kind) in rows.iter().zip(ErrorKind::ALL) {
            let name = format!("`{kind:?}`");
            assert!(row[0].starts_with(&name), "{row:?} should be {kind:?}");
            assert_eq!(row[1], format!("`{}`", kind.as_str()), "{kind:?} token");
            assert_eq!(
                row[2],
                kind.default_status().as_str(),
                "{kind:?} default status"
            );
            assert_eq!(
                row[3],
                format!("{} `{}`", kind.grpc_code().as_u8(), kind.grpc_code().name()),
                "{kind:?} gRPC code"
            );
            let sent = match kind.request_sent() {
                RequestSent::No => "no",
                RequestSent::Maybe => "maybe",
                RequestSent::Yes => "yes",
            };
            assert_eq!(row[4], sent, "{kind:?} request reached upstream");
            let retry = match kind.retry_default() {
                RetryDefault::On => "yes",
                RetryDefault::OptIn => "opt-in",
                RetryDefault::Never => "never",
            };
            assert_eq!(row[5], retry, "{kind:?} retried by default");
        }
    }
}
