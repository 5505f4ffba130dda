//! Deciding: upstream error → [`GatewayError`], and which upstream answers to reject.
//!
//! The [`Classifier`] walks an error's causes, outermost first, and downcasts each
//! to the types it knows, most specific first:
//!
//! 1. the rules you added ([`Classifier::rule`], [`Classifier::custom`]), over the
//!    whole chain, an inner layer's [`GatewayError`] included;
//! 2. a [`GatewayError`] already made by an inner layer, kept as it is;
//! 3. this crate's own [timeout errors](crate::error::HeadTimeout), then `tower` timeouts (`Elapsed`) and load shedding (`Overloaded`), `tokio` timeouts;
//! 4. with the `tonic` feature, tonic's `ConnectError` and `TimeoutExpired`;
//! 5. with the `reqwest` feature, reqwest's own predicates (`is_connect`, `is_timeout`,
//!    `is_body`, `is_decode`, `is_builder`, `is_upgrade`);
//! 6. with the `hyper` feature, hyper-util's `is_connect` and its connector's
//!    `dns error`, then hyper's predicates (`is_parse_too_large`, `is_parse`,
//!    `is_incomplete_message`, `is_canceled`, `is_timeout`, ...);
//! 7. with the `h2` feature, HTTP/2 reason codes (`REFUSED_STREAM`, `GOAWAY`, ...);
//! 8. with the `rustls` feature, rustls' `Error`, by its variant (see
//!    [TLS errors](#tls-errors));
//! 9. last, [`std::io::ErrorKind`] (refused, reset, timed out, unreachable, ...),
//!    and the messages of errors whose types are private (hyper-util's connector
//!    errors; "message head is too large", which hyper and the proxy's own
//!    HTTP/1.1 client both say).
//!
//! What it learns on the way (the failure was in connecting, the request was never
//! dispatched) decides the [`Phase`] and [`RequestSent`] of the result.
//!
//! ```
//! use tower_bad_gateway::classify::Classifier;
//! use tower_bad_gateway::{ErrorKind, Phase, RequestSent};
//! use std::io;
//!
//! let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
//! let err = Classifier::new().classify(&refused, Phase::AwaitHead);
//! assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
//! assert_eq!(err.request_sent(), RequestSent::No);
//!
//! // A reset while reading the body is a cut-short answer.
//! let reset = io::Error::from(io::ErrorKind::ConnectionReset);
//! let err = Classifier::new().classify(&reset, Phase::ReadBody);
//! assert_eq!(err.kind(), ErrorKind::ResponseIncomplete);
//! ```
//!
//! # One classifier for the whole stack
//!
//! A classifier set on any layer ([`BadGatewayLayer`](crate::BadGatewayLayer),
//! [`RetryPolicy`](crate::retry::RetryPolicy),
//! [`UpstreamsLayer`](crate::upstreams::UpstreamsLayer), the tonic
//! `IntoStatusLayer`, [`GatewayLayer`](crate::GatewayLayer)) applies to every
//! failure that layer and the layers below it see: each request carries it down in
//! its extensions, and each layer classifies with the rules it carries first, then
//! with its own, then with the defaults. So the retry layer retries by the kinds your
//! rule gives, the endpoint set judges health by them, and the answer shows them; no
//! default further in can shadow your rule. Set it once, on the outermost layer.
//! When no layer has rules of its own, nothing is carried, and no layer looks for a
//! carried classifier until some request of the process was given one: the default
//! stack pays one load per layer. A [`GatewayLayer`](crate::GatewayLayer) gives all
//! its layers one shared classifier, so its requests carry nothing either.
//!
//! ```
//! use tower_bad_gateway::classify::{Classifier, chain};
//! use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
//! use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError};
//! use tower::{ServiceBuilder, ServiceExt};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = calls.clone();
//! let refused = tower::service_fn(move |_req: http::Request<ReplayBody<http_body_util::Empty<bytes::Bytes>>>| {
//!     counted.fetch_add(1, Ordering::SeqCst);
//!     async { Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) }
//! });
//! // Here, a refused connection means the service is switched off: not retried.
//! let switched_off = Classifier::new().rule(|err, _| {
//!     chain(err)
//!         .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused))
//!         .then_some(ErrorKind::DestinationUnavailable)
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new().classifier(switched_off))
//!     .layer(RetryLayer::new(RetryPolicy::new().no_backoff())) // no classifier of its own
//!     .service(refused);
//! let res = svc.oneshot(http::Request::new(http_body_util::Empty::new())).await.unwrap();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.extensions().get::<GatewayError>().unwrap().kind(), ErrorKind::DestinationUnavailable);
//! assert_eq!(calls.load(Ordering::SeqCst), 1, "the retry layer used the rule too");
//! # }
//! ```
//!
//! # TLS errors
//!
//! With the `rustls` feature, a `rustls::Error` anywhere in the chain decides by
//! its type, whatever its message says. hyper-rustls, tokio-rustls, reqwest
//! and tonic hand it over inside an [`std::io::Error`] (`InvalidData`), which
//! [`chain`] steps into; an `io::Error` that wraps one is never judged by its own
//! kind.
//!
//! | rustls error | kind |
//! |---|---|
//! | `InvalidCertificate(_)` (expired, unknown issuer, wrong name, revoked, ...), `NoCertificatesPresented`, `UnsupportedNameType`, `InvalidCertRevocationList(_)` | [`TlsCertificateError`](crate::ErrorKind::TlsCertificateError) |
//! | `AlertReceived(alert)` | [`TlsAlertReceived`](crate::ErrorKind::TlsAlertReceived), the alert in [`GatewayError::tls_alert`] (also when h2 kept it as text, below) |
//! | `InvalidMessage(_)`, `InappropriateMessage`, `InappropriateHandshakeMessage` (a peer that does not speak TLS, e.g. plaintext HTTP on the port), `PeerIncompatible(_)`, `PeerMisbehaved(_)`, `PeerSentOversizedRecord`, `DecryptError`, `NoApplicationProtocol`, `InvalidEncryptedClientHello(_)`, `HandshakeNotComplete` | [`TlsProtocolError`](crate::ErrorKind::TlsProtocolError) |
//! | anything else (`General`, `Other`, the gateway's own faults such as `FailedToGetRandomBytes` or a bad configuration) | [`Unclassified`](crate::ErrorKind::Unclassified) |
//!
//! ```
//! # #[cfg(feature = "rustls")] {
//! use tower_bad_gateway::classify::Classifier;
//! use tower_bad_gateway::{ErrorKind, Phase};
//! use std::io;
//!
//! // As tokio-rustls reports an alert from the server.
//! let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
//! let err = Classifier::new().classify(&io::Error::new(io::ErrorKind::InvalidData, alert), Phase::AwaitHead);
//! assert_eq!(err.kind(), ErrorKind::TlsAlertReceived);
//! assert_eq!(err.tls_alert().map(|a| a.id()), Some(40));
//! # }
//! ```
//!
//! One case has no type left: h2 keeps only the kind and the message of an I/O
//! error, so over HTTP/2 (reqwest with `http2`, tonic) an alert that comes after
//! the client's side of the handshake is done (with TLS 1.3, a mutual-TLS upstream
//! refusing the client's certificate or its lack of one: `certificate_required`,
//! `bad_certificate`, `unknown_ca`) arrives as an `InvalidData` whose message is
//! rustls'. That message, compared whole with what rustls writes for each alert,
//! is read back as the alert.
//!
//! Without the feature, TLS failures are recognised by message only, and only when
//! nothing else decided: a failure while connecting whose message says
//! "certificate" is a `TlsCertificateError`, one that says "tls", "ssl" or
//! "handshake" a `TlsProtocolError`. That is a guess (an `io::Error` of kind
//! `InvalidData` decides first, as a protocol error), and it never finds an alert:
//! with rustls, turn the feature on.
//!
//! # A known limit of HTTP/1 with hyper
//!
//! hyper reports an upstream that closes before sending any byte and one that closes
//! in the middle of the response head with the same error (`is_incomplete_message`).
//! Both are classified [`ConnectionTerminated`](crate::ErrorKind::ConnectionTerminated),
//! as Envoy does ("upstream connect error or disconnect/reset before headers"); a
//! cut-short *body* is [`ResponseIncomplete`](crate::ErrorKind::ResponseIncomplete).

mod carried;
mod default;
mod head;
mod policy;
#[cfg(feature = "rustls")]
mod tls;

pub(crate) use self::carried::Carried;

pub use self::policy::ResponsePolicy;

use crate::error::{BoxError, ErrorKind, GatewayError, Phase, RequestSent, TlsAlert};
use std::error::Error;
use std::fmt;
use std::sync::Arc;

type Rule = dyn Fn(&(dyn Error + 'static), Phase) -> Option<ErrorKind> + Send + Sync;

/// Turns the error of an upstream call into a [`GatewayError`].
///
/// [`Classifier::new`] is the default classifier described in the
/// [module docs](self). Extend it with your own rules, tried before the default
/// ones, with [`rule`](Self::rule), or replace it with [`custom`](Self::custom).
///
/// ```
/// use tower_bad_gateway::classify::Classifier;
/// use tower_bad_gateway::{ErrorKind, Phase};
///
/// #[derive(Debug)]
/// struct CircuitOpen;
/// impl std::fmt::Display for CircuitOpen {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("circuit open")
///     }
/// }
/// impl std::error::Error for CircuitOpen {}
///
/// let classifier = Classifier::new().rule(|err, _phase| {
///     tower_bad_gateway::classify::chain(err)
///         .any(|e| e.is::<CircuitOpen>())
///         .then_some(ErrorKind::DestinationUnavailable)
/// });
/// let err = classifier.classify(&CircuitOpen, Phase::AwaitHead);
/// assert_eq!(err.kind(), ErrorKind::DestinationUnavailable);
/// ```
#[derive(Clone, Default)]
pub struct Classifier {
    rules: Vec<Arc<Rule>>,
    replace: bool,
}

impl Classifier {
    /// The default classifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// A classifier that uses only `f`: the default rules are not consulted.
    ///
    /// ```
    /// use tower_bad_gateway::classify::Classifier;
    /// use tower_bad_gateway::{ErrorKind, Phase};
    ///
    /// let everything_unavailable = Classifier::custom(|_err, _phase| ErrorKind::DestinationUnavailable);
    /// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// assert_eq!(
    ///     everything_unavailable.classify(&io, Phase::AwaitHead).kind(),
    ///     ErrorKind::DestinationUnavailable,
    /// );
    /// ```
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&(dyn Error + 'static), Phase) -> ErrorKind + Send + Sync + 'static,
    {
        Self {
            rules: vec![Arc::new(move |err: &(dyn Error + 'static), phase| {
                Some(f(err, phase))
            })],
            replace: true,
        }
    }

    /// Adds a rule. Rules accumulate: they are tried in the order they were added,
    /// all before the default rules, and the first that returns a kind decides; a
    /// rule returns `None` to pass the error on. On a [`custom`](Self::custom)
    /// classifier they are tried before its function.
    pub fn rule<F>(mut self, f: F) -> Self
    where
        F: Fn(&(dyn Error + 'static), Phase) -> Option<ErrorKind> + Send + Sync + 'static,
    {
        let at = self.rules.len() - usize::from(self.replace);
        self.rules.insert(at, Arc::new(f));
        self
    }

    /// Whether this is the default classifier, unchanged.
    #[inline]
    pub(crate) fn is_default(&self) -> bool {
        self.rules.is_empty() && !self.replace
    }

    /// This classifier's rules, then `inner`'s: what a request classified by
    /// `self` further out and by `inner` here is classified with.
    pub(crate) fn then(&self, inner: &Classifier) -> Classifier {
        if self.replace || inner.is_default() {
            return self.clone();
        }
        Classifier {
            rules: self.rules.iter().chain(&inner.rules).cloned().collect(),
            replace: inner.replace,
        }
    }

    /// The kind the user's rules give `err`, if one of them decides.
    fn by_rules(&self, err: &(dyn Error + 'static), phase: Phase) -> Option<ErrorKind> {
        self.rules.iter().find_map(|rule| rule(err, phase))
    }

    /// Classifies `err`, which happened in `phase` ([`Phase::AwaitHead`] for errors of
    /// the call itself, [`Phase::ReadBody`] for errors of a response body frame).
    ///
    /// One order, whatever the error: the [rules](Self::rule) (or the
    /// [custom](Self::custom) function) first, over the whole chain of causes, a
    /// [`GatewayError`] made by an inner layer included; then such a `GatewayError`,
    /// kept as it is; then the default rules. A rule that decides on an error an
    /// inner layer already classified changes only its kind: what the inner layer
    /// learned (the phase, whether the request was sent, the next hop, the attempts)
    /// stays.
    ///
    /// The result has no elapsed time or next hop unless an inner layer's error had
    /// them: the caller adds them.
    pub fn classify(&self, err: &(dyn Error + 'static), phase: Phase) -> GatewayError {
        let inner = || chain(err).find_map(|e| e.downcast_ref::<GatewayError>());
        if let Some(kind) = self.by_rules(err, phase) {
            return match inner() {
                Some(done) => reclassified(done.clone(), kind, phase),
                None => settle(kind, phase, Hints::default()),
            };
        }
        if let Some(done) = inner() {
            return done.clone();
        }
        let (kind, hints) = default::classify(err, phase);
        settle(kind, phase, hints)
    }

    /// Classifies an owned error, in the [same order](Self::classify), and keeps it
    /// as the result's source. An error that is already a [`GatewayError`] (made by
    /// an inner layer) is returned as it is, unless a rule decides otherwise.
    ///
    /// With the `hyper` feature, an error of hyper-util's legacy `Client` that
    /// happened on an established connection names that connection's peer address
    /// as the [`next_hop`](GatewayError::next_hop).
    pub fn classify_owned(&self, error: BoxError, phase: Phase) -> GatewayError {
        match error.downcast::<GatewayError>() {
            Ok(inner) => match self.by_rules(&*inner, phase) {
                Some(kind) if kind != inner.kind() => reclassified(*inner, kind, phase),
                _ => *inner,
            },
            Err(error) => {
                let err = self.classify(&*error, phase);
                #[cfg(feature = "hyper")]
                let err = match (err.next_hop(), connected_peer(&*error)) {
                    (None, Some(peer)) => err.with_next_hop(peer),
                    _ => err,
                };
                if std::error::Error::source(&err).is_some() {
                    err
                } else {
                    err.with_source(error)
                }
            }
        }
    }
}

/// An inner layer's error, given `kind` by a rule: the facts it learned stay.
fn reclassified(err: GatewayError, kind: ErrorKind, seen_in: Phase) -> GatewayError {
    if seen_in == Phase::ReadBody {
        err.with_kind(body_kind(kind))
            .with_phase(Phase::ReadBody)
            .with_request_sent(RequestSent::Yes)
    } else {
        err.with_kind(kind)
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("rules", &self.rules.len())
            .field("replace", &self.replace)
            .finish()
    }
}

/// The peer address of the connection a hyper-util client error happened on.
#[cfg(feature = "hyper")]
fn connected_peer(err: &(dyn Error + 'static)) -> Option<http::uri::Authority> {
    use hyper_util::client::legacy::connect::HttpInfo;
    let connected = chain(err)
        .find_map(|e| e.downcast_ref::<hyper_util::client::legacy::Error>())?
        .connect_info()?;
    let mut extensions = http::Extensions::new();
    connected.get_extras(&mut extensions);
    let addr = extensions.get::<HttpInfo>()?.remote_addr();
    http::uri::Authority::try_from(addr.to_string().as_str()).ok()
}

/// What the walk learned besides the kind.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Hints {
    /// Some cause says the failure was in connecting.
    pub(crate) connect: bool,
    /// Some cause says the request was never handed to a connection.
    pub(crate) not_dispatched: bool,
    /// The TLS alert the upstream sent, for `TlsAlertReceived`.
    pub(crate) tls_alert: Option<TlsAlert>,
}

/// Fixes the phase and whether the request was sent, from the kind, where the error
/// was seen, and what the walk learned.
fn settle(kind: ErrorKind, seen_in: Phase, hints: Hints) -> GatewayError {
    let kind = if seen_in == Phase::ReadBody {
        body_kind(kind)
    } else {
        kind
    };
    let (phase, sent) = if seen_in == Phase::ReadBody {
        (Phase::ReadBody, RequestSent::Yes)
    } else if hints.connect {
        (Phase::Connect, RequestSent::No)
    } else if hints.not_dispatched {
        (Phase::SendRequest, RequestSent::No)
    } else {
        let phase = match kind.phase() {
            Phase::ReadBody => seen_in,
            other => other,
        };
        (phase, kind.request_sent())
    };
    let err = GatewayError::new(kind)
        .with_phase(phase)
        .with_request_sent(sent);
    match hints.tls_alert {
        Some(alert) if kind == ErrorKind::TlsAlertReceived => err.with_tls_alert(alert),
        _ => err,
    }
}

/// Once the head went out, a connection that ends is a cut-short answer, a
/// deadline that passes is the whole answer's timeout, and any other timeout
/// means no new data came.
fn body_kind(kind: ErrorKind) -> ErrorKind {
    match kind {
        ErrorKind::ConnectionTerminated | ErrorKind::RefusedStream => ErrorKind::ResponseIncomplete,
        ErrorKind::ResponseHeaderTimeout => ErrorKind::ResponseTimeout,
        ErrorKind::ConnectionTimeout => ErrorKind::ReadTimeout,
        other => other,
    }
}

/// The error and its causes, outermost first.
///
/// Unlike following [`Error::source`] alone, this also steps into the error an
/// [`std::io::Error`] wraps (`io::Error::source` skips it).
///
/// ```
/// use std::io;
/// use tower_bad_gateway::classify::chain;
///
/// let inner = io::Error::new(io::ErrorKind::TimedOut, "slow");
/// let outer = io::Error::other(inner);
/// // `source()` alone never reaches the wrapped timeout; `chain` does.
/// assert!(std::error::Error::source(&outer).is_none());
/// assert!(chain(&outer).any(|e| {
///     e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
/// }));
/// ```
pub fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    // Bounded: a cyclic or absurdly deep chain must not hang the gateway.
    const MAX_DEPTH: usize = 32;
    std::iter::successors(Some(err), |e| next_cause(*e)).take(MAX_DEPTH)
}

fn next_cause<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner as &(dyn Error + 'static));
        }
    }
    err.source()
}
