//! What went wrong: [`GatewayError`], its [`ErrorKind`], the [`Phase`] it happened in
//! and whether the request was sent ([`RequestSent`]).
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

mod kind;

pub use self::kind::{ErrorKind, Phase, RequestSent};

use crate::BoxError;
use http::StatusCode;
use http::uri::Authority;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    next_hop: Option<Authority>,
    retry_denied: Option<RetryDenied>,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

/// Why a failed request was not tried again (set by the
/// [`RetryLayer`](crate::retry::RetryLayer) on the error it gives up with).
///
/// ```
/// use tower_bad_gateway::{ErrorKind, GatewayError, RetryDenied};
/// let err = GatewayError::new(ErrorKind::ConnectionTerminated).with_retry_denied(RetryDenied::MaybeSent);
/// assert_eq!(err.retry_denied().map(RetryDenied::as_str), Some("maybe_sent"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryDenied {
    /// The failure is not one the policy retries.
    NotRetryable,
    /// The request may have reached the upstream and its method is not idempotent.
    MaybeSent,
    /// The policy's maximum number of attempts was reached.
    AttemptsExhausted,
    /// The retry budget was spent.
    BudgetExhausted,
    /// The deadline leaves no time for another attempt.
    Deadline,
    /// The request body cannot be sent again (it outgrew the replay buffer, or failed).
    BodyNotReplayable,
}

impl RetryDenied {
    /// A lowercase name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryDenied::NotRetryable => "not_retryable",
            RetryDenied::MaybeSent => "maybe_sent",
            RetryDenied::AttemptsExhausted => "attempts_exhausted",
            RetryDenied::BudgetExhausted => "budget_exhausted",
            RetryDenied::Deadline => "deadline",
            RetryDenied::BodyNotReplayable => "body_not_replayable",
        }
    }
}

impl fmt::Display for RetryDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many attempts an exchange took.
///
/// A [`RetryLayer`](crate::retry::RetryLayer) puts it in the extensions of an
/// upstream answer that took more than one attempt, and of every synthetic answer;
/// an answer without it took one attempt. [`Attempts::of`] reads it either way, so a
/// first-try success costs no allocation.
///
/// ```
/// use tower_bad_gateway::Attempts;
/// let mut res = http::Response::new(());
/// assert_eq!(Attempts::of(&res), 1);
/// res.extensions_mut().insert(Attempts(2));
/// assert_eq!(Attempts::of(&res), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempts a response took: its `Attempts` extension, or 1 without one.
    pub fn of<B>(response: &http::Response<B>) -> u32 {
        response.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }
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
            next_hop: None,
            retry_denied: None,
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

    /// Sets the upstream's authority (for logs; answers show it only with
    /// [`expose_details`](crate::BadGatewayLayer::expose_details)).
    pub fn with_next_hop(mut self, next_hop: Authority) -> Self {
        self.next_hop = Some(next_hop);
        self
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
    /// answers only when details are exposed.
    pub fn source_chain(&self) -> String {
        let mut out = String::new();
        let mut next = self.source.as_deref().map(|e| e as &(dyn Error + 'static));
        while let Some(err) = next {
            if !out.is_empty() {
                out.push_str(": ");
            }
            fmt::write(&mut out, format_args!("{err}")).ok();
            next = err.source();
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
            .field("next_hop", &self.next_hop)
            .field("retry_denied", &self.retry_denied)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream {} ({})", self.kind.as_str(), self.phase)
    }
}

/// A handler can return `Result<_, GatewayError>` and use `?` on the
/// [`RetryLayer`](crate::retry::RetryLayer)'s error: the failure is answered as
/// [`BadGatewayLayer`](crate::BadGatewayLayer) would with its defaults (plain
/// text; the request is not seen here, so there is no negotiation).
///
/// ```
/// use axum_core::response::IntoResponse;
/// use tower_bad_gateway::{ErrorKind, GatewayError};
///
/// let res = GatewayError::new(ErrorKind::ConnectionRefused).into_response();
/// assert_eq!(res.status(), 502);
/// assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; error=connection_refused");
/// ```
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl axum_core::response::IntoResponse for GatewayError {
    fn into_response(self) -> axum_core::response::Response {
        crate::render::Renderer::new()
            .render(&self, &crate::render::RequestInfo::default())
            .map(axum_core::body::Body::new)
    }
}

impl Error for GatewayError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The upstream's authority, copied inline so that capturing it per request costs
/// no allocation and no atomic operation (only failures build an `Authority`).
#[derive(Clone, Copy)]
pub(crate) struct NextHop {
    buf: [u8; 64],
    len: u8,
}

impl NextHop {
    pub(crate) fn of(uri: &http::Uri) -> Option<Self> {
        let authority = uri.authority()?.as_str().as_bytes();
        if authority.len() > 64 {
            return None;
        }
        let mut buf = [0; 64];
        buf[..authority.len()].copy_from_slice(authority);
        Some(Self {
            buf,
            len: authority.len() as u8,
        })
    }

    pub(crate) fn authority(&self) -> Option<http::uri::Authority> {
        http::uri::Authority::try_from(&self.buf[..usize::from(self.len)]).ok()
    }
}

/// Sets the time since `start`, and the next hop unless the error already names one.
pub(crate) fn stamp(
    err: GatewayError,
    start: std::time::Instant,
    next_hop: Option<&NextHop>,
) -> GatewayError {
    let err = err.with_elapsed(start.elapsed());
    if err.next_hop().is_some() {
        return err;
    }
    match next_hop.and_then(NextHop::authority) {
        Some(hop) => err.with_next_hop(hop),
        None => err,
    }
}
