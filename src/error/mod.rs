//! What went wrong: [`GatewayError`], its [`ErrorKind`], the [`Phase`] it happened in
//! and whether the request was sent ([`RequestSent`]); and the typed errors the
//! timeout layers raise ([`HeadTimeout`], [`BodyTimeout`], [`DeadlineExceeded`],
//! [`WriteTimeoutError`]), which the classifier recognises; and [`TlsAlert`], the
//! alert of a [`TlsAlertReceived`](ErrorKind::TlsAlertReceived).
//!
//! A `GatewayError` is what [`BadGateway`](crate::BadGateway) makes of every failure of
//! the upstream call. It is cheap to clone (the original error sits behind an `Arc`),
//! `Send + Sync`, and rides in the extensions of every synthetic response:
//!
//! ```
//! use tower_bad_gateway::{ErrorKind, GatewayError, Phase, RequestSent};
//! use std::io;
//!
//! let err = GatewayError::new(ErrorKind::ConnectionRefused)
//!     .with_source(io::Error::from(io::ErrorKind::ConnectionRefused));
//! assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
//! assert_eq!(err.phase(), Phase::Connect);
//! assert_eq!(err.request_sent(), RequestSent::No);
//! assert!(std::error::Error::source(&err).is_some());
//! ```

mod attempts;
mod grpc_code;
mod kind;
mod next_hop;
mod phase;
mod sets;
mod status;
mod timeout;
mod tls_alert;

pub use self::attempts::{Attempts, RetryDenied};
pub use self::grpc_code::GrpcCode;
pub use self::kind::{ErrorKind, RetryDefault};
pub(crate) use self::next_hop::{NextHop, stamp};
pub use self::phase::{Phase, RequestSent};
pub(crate) use self::sets::{CodeSet, KindSet};
pub use self::status::{ErrorStatus, InvalidErrorStatus};
pub use self::timeout::{
    BodyTimeout, BodyTimeoutKind, DeadlineExceeded, HeadTimeout, WriteTimeoutError,
};
pub use self::tls_alert::TlsAlert;

use http::StatusCode;
use http::uri::Authority;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The boxed error type upstream errors are converted into.
///
/// ```
/// let err: tower_bad_gateway::BoxError = std::io::Error::other("boom").into();
/// assert_eq!(err.to_string(), "boom");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many causes [`GatewayError::source_chain`] follows: a cyclic or absurdly
/// deep chain must not hang the gateway (it runs on every failure's log event).
const MAX_CHAIN: usize = 32;

/// A failure of the call to the upstream, classified.
///
/// Made by the [`Classifier`](crate::classify::Classifier) from the error the upstream
/// service returned (or a body frame failed with), or by the
/// [`ResponsePolicy`](crate::ResponsePolicy) from an answer it rejects. The original
/// error stays reachable through [`source`](Error::source).
///
/// ```
/// use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, RequestSent};
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let upstream = tower::service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
/// });
/// let res = BadGatewayLayer::new().layer(upstream).oneshot(http::Request::new(())).await.unwrap();
/// let err = res.extensions().get::<GatewayError>().unwrap();
/// assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
/// assert_eq!(err.request_sent(), RequestSent::No);
/// assert_eq!(err.attempts(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct GatewayError {
    kind: ErrorKind,
    phase: Phase,
    request_sent: RequestSent,
    attempts: u32,
    elapsed: Duration,
    received_status: Option<StatusCode>,
    status: Option<StatusCode>,
    next_hop: Option<Authority>,
    retry_denied: Option<RetryDenied>,
    retry_after: Option<Duration>,
    tls_alert: Option<TlsAlert>,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl GatewayError {
    /// A new error of this kind, with the kind's usual [`phase`](ErrorKind::phase) and
    /// [`request_sent`](ErrorKind::request_sent), one attempt, and no source.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            phase: kind.phase(),
            request_sent: kind.request_sent(),
            attempts: 1,
            elapsed: Duration::ZERO,
            received_status: None,
            status: None,
            next_hop: None,
            retry_denied: None,
            retry_after: None,
            tls_alert: None,
            source: None,
        }
    }

    /// Records why the request was not tried again.
    pub fn with_retry_denied(mut self, reason: RetryDenied) -> Self {
        self.retry_denied = Some(reason);
        self
    }

    /// Why the request was not tried again, when a retry layer considered it.
    pub fn retry_denied(&self) -> Option<RetryDenied> {
        self.retry_denied
    }

    /// Sets the phase the failure happened in.
    pub fn with_phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// Sets whether the request can have reached the upstream.
    pub fn with_request_sent(mut self, request_sent: RequestSent) -> Self {
        self.request_sent = request_sent;
        self
    }

    /// Sets the number of attempts made.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// Sets the time from the start of the request to the failure.
    pub fn with_elapsed(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self
    }

    /// Sets the status the upstream answered with, when it answered.
    pub fn with_received_status(mut self, status: StatusCode) -> Self {
        self.received_status = Some(status);
        self
    }

    /// Sets the status this failure is answered with. A
    /// [`Renderer`](crate::render::Renderer) answers with it, over its per-kind
    /// statuses, and sets it to what it answered (a
    /// [custom](crate::render::Renderer::custom) renderer's status included), so
    /// that [`status`](Self::status) always says what the client got.
    pub fn with_status(mut self, status: ErrorStatus) -> Self {
        self.status = Some(status.get());
        self
    }

    /// Records the status the client got: a renderer's answer, or, for a failure
    /// after the head went out, the head's.
    pub(crate) fn answered_with(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The status set with [`with_status`](Self::with_status) or answered, if any.
    pub(crate) fn status_if_set(&self) -> Option<StatusCode> {
        self.status
    }

    /// Gives the error another kind (a user's rule decided on an inner layer's
    /// error); what else it holds stays.
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the upstream's authority (for logs; answers show it only with
    /// [`expose_details`](crate::render::Renderer::expose_details)).
    pub fn with_next_hop(mut self, next_hop: Authority) -> Self {
        self.next_hop = Some(next_hop);
        self
    }

    /// Sets when the upstream is expected to take requests again; the answer says so
    /// in `Retry-After` (whole seconds, rounded up).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// When the upstream is expected to take requests again: for an
    /// [`EndpointSet`](crate::upstreams::EndpointSet) with no healthy endpoint, the
    /// time until its next probe.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Sets the TLS alert the upstream sent: what
    /// [`TlsAlertReceived`](ErrorKind::TlsAlertReceived) shows in `Proxy-Status`.
    ///
    /// ```
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    /// use tower_bad_gateway::error::TlsAlert;
    ///
    /// let err = GatewayError::new(ErrorKind::TlsAlertReceived).with_tls_alert(TlsAlert::new(40));
    /// assert_eq!(err.tls_alert().map(TlsAlert::id), Some(40));
    /// ```
    pub fn with_tls_alert(mut self, alert: TlsAlert) -> Self {
        self.tls_alert = Some(alert);
        self
    }

    /// The TLS alert the upstream sent, for
    /// [`TlsAlertReceived`](ErrorKind::TlsAlertReceived): found by the
    /// [`Classifier`](crate::classify::Classifier) in a rustls error (feature
    /// `rustls`), or set with [`with_tls_alert`](Self::with_tls_alert).
    pub fn tls_alert(&self) -> Option<TlsAlert> {
        self.tls_alert
    }

    /// Sets the original error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where in the exchange it went wrong.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the request can have reached the upstream.
    pub fn request_sent(&self) -> RequestSent {
        self.request_sent
    }

    /// How many attempts were made (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time from the start of the request to the failure.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The status the upstream answered with, if it answered
    /// (for [`ErrorKind::InvalidResponse`], and failures while reading a body).
    pub fn received_status(&self) -> Option<StatusCode> {
        self.received_status
    }

    /// The HTTP status this failure is answered with: once answered, the status the
    /// client got (the answering [`Renderer`](crate::render::Renderer)'s, its
    /// per-kind statuses and a custom renderer's own included; for a failure after
    /// the head went out, that head's status; for a gRPC call answered
    /// trailers-only, the status its kind maps to, the gRPC code being in
    /// `grpc-status`); before, the one set with [`with_status`](Self::with_status),
    /// or else the kind's [default](ErrorKind::default_status).
    ///
    /// ```
    /// use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError};
    /// use tower_bad_gateway::render::Renderer;
    /// use http::StatusCode;
    /// use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert_eq!(GatewayError::new(ErrorKind::ConnectionRefused).status(), StatusCode::BAD_GATEWAY);
    ///
    /// let refused = tower::service_fn(|_req: http::Request<()>| async {
    ///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    /// });
    /// let renderer = Renderer::new().status(ErrorKind::ConnectionRefused, tower_bad_gateway::ErrorStatus::SERVICE_UNAVAILABLE);
    /// let res = BadGatewayLayer::new().renderer(renderer).layer(refused).oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(res.extensions().get::<GatewayError>().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    /// # }
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(self.kind.default_status())
    }

    /// The upstream's authority, when known. For logs: it is not shown to clients
    /// unless details are exposed.
    pub fn next_hop(&self) -> Option<&Authority> {
        self.next_hop.as_ref()
    }

    /// Whether the failure is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind.is_timeout()
    }

    /// The original error and its causes, joined with `": "`: for logs, and for
    /// answers only when details are exposed. At most 32 causes are followed, so an
    /// error whose `source()` is itself cannot hang it.
    pub fn source_chain(&self) -> String {
        let mut out = String::new();
        let first = self.source.as_deref().map(|e| e as &(dyn Error + 'static));
        let causes = std::iter::successors(first, |e| (*e).source());
        for err in causes.take(MAX_CHAIN) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            fmt::write(&mut out, format_args!("{err}")).ok();
        }
        out
    }
}

impl fmt::Debug for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayError")
            .field("kind", &self.kind)
            .field("phase", &self.phase)
            .field("request_sent", &self.request_sent)
            .field("attempts", &self.attempts)
            .field("elapsed", &self.elapsed)
            .field("received_status", &self.received_status)
            .field("status", &self.status)
            .field("next_hop", &self.next_hop)
            .field("retry_denied", &self.retry_denied)
            .field("retry_after", &self.retry_after)
            .field("tls_alert", &self.tls_alert)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream {} ({})", self.kind.as_str(), self.phase)
    }
}

impl Error for GatewayError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that names itself as its own cause.
    #[derive(Debug)]
    struct Ouroboros;

    impl fmt::Display for Ouroboros {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loop")
        }
    }

    impl Error for Ouroboros {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn source_chain_ends_on_an_error_that_is_its_own_source() {
        let err = GatewayError::new(ErrorKind::Unclassified).with_source(Ouroboros);
        let chain = err.source_chain();
        assert_eq!(chain.matches("loop").count(), MAX_CHAIN);
    }
}
