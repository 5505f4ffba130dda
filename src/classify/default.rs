//! The default rules: one walk down the cause chain, most specific type first.

use super::head::Head;
#[cfg(feature = "rustls")]
use super::tls::{alert_h2_kept_as_text, rustls_kind};
use super::{Hints, chain};
use crate::error::{
    BodyTimeout, BodyTimeoutKind, DeadlineExceeded, ErrorKind, HeadTimeout, Phase,
    WriteTimeoutError,
};
use std::error::Error;
use std::io;

/// Classifies `err` seen in `phase`, returning the kind and what the walk learned.
pub(super) fn classify(err: &(dyn Error + 'static), phase: Phase) -> (ErrorKind, Hints) {
    let mut hints = Hints::default();
    for cause in chain(err) {
        if let Some(kind) = step(cause, phase, &mut hints) {
            return (kind, hints);
        }
    }
    (fallback(err, hints), hints)
}

/// Looks at one cause: `Some(kind)` decides, `None` goes on to the next.
fn step(e: &(dyn Error + 'static), phase: Phase, hints: &mut Hints) -> Option<ErrorKind> {
    if e.is::<HeadTimeout>() {
        return Some(ErrorKind::ResponseHeaderTimeout);
    }
    if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
        return Some(match timeout.kind() {
            BodyTimeoutKind::Idle => ErrorKind::ReadTimeout,
            BodyTimeoutKind::Total => ErrorKind::ResponseTimeout,
        });
    }
    if e.is::<WriteTimeoutError>() {
        return Some(ErrorKind::WriteTimeout);
    }
    if e.is::<DeadlineExceeded>() {
        // In a body, `settle` makes this the whole answer's timeout.
        return Some(ErrorKind::ResponseHeaderTimeout);
    }
    if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
        return Some(elapsed(phase, *hints));
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Some(ErrorKind::ConnectionLimitReached);
    }
    #[cfg(feature = "tonic")]
    if let Some(kind) = tonic_step(e, phase, hints) {
        return Some(kind);
    }
    #[cfg(feature = "reqwest")]
    if let Some(kind) = reqwest_step(e, phase, hints) {
        return Some(kind);
    }
    #[cfg(feature = "reqwest013")]
    if let Some(kind) = reqwest013_step(e, phase, hints) {
        return Some(kind);
    }
    #[cfg(feature = "hyper")]
    if let Some(kind) = hyper_step(e, phase, hints) {
        return Some(kind);
    }
    #[cfg(feature = "h2")]
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        if let Some(kind) = h2_reason(h2) {
            return Some(kind);
        }
    }
    #[cfg(feature = "rustls")]
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(rustls_kind(tls, hints));
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        // tokio-rustls wraps the TLS error in an `InvalidData`: the TLS error
        // decides, on the next step of the walk.
        #[cfg(feature = "rustls")]
        if io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return None;
        }
        #[cfg(feature = "rustls")]
        if let Some(alert) = alert_h2_kept_as_text(io) {
            hints.tls_alert = Some(alert);
            return Some(ErrorKind::TlsAlertReceived);
        }
        return io_kind(io.kind(), phase, *hints);
    }
    // hyper-util's connector error is private; its message is all there is.
    let msg = Head::of(e);
    match msg.as_str() {
        "dns error" => {
            hints.connect = true;
            return Some(dns_kind(e));
        }
        "tcp connect error" | "tcp open error" | "tcp bind local error" => hints.connect = true,
        // hyper's message, which the proxy's own HTTP/1.1 path says too.
        "message head is too large" => return Some(ErrorKind::HeaderSectionTooLarge),
        m if m.starts_with("invalid URL") => return Some(ErrorKind::ProxyConfigurationError),
        _ => {}
    }
    None
}

/// A timeout that wrapped the whole call: what was it waiting for?
fn elapsed(phase: Phase, hints: Hints) -> ErrorKind {
    if hints.connect {
        ErrorKind::ConnectionTimeout
    } else if phase == Phase::ReadBody {
        ErrorKind::ReadTimeout
    } else {
        ErrorKind::ResponseHeaderTimeout
    }
}

/// `getaddrinfo`'s `EAI_AGAIN` ("Temporary failure in name resolution") is what a
/// resolver that got no answer in time says; every other resolver failure is final.
fn dns_kind(e: &(dyn Error + 'static)) -> ErrorKind {
    let temporary = chain(e).skip(1).any(|cause| {
        cause
            .to_string()
            .contains("Temporary failure in name resolution")
    });
    if temporary {
        ErrorKind::DnsTimeout
    } else {
        ErrorKind::DnsError
    }
}

fn io_kind(kind: io::ErrorKind, phase: Phase, hints: Hints) -> Option<ErrorKind> {
    use io::ErrorKind as K;
    Some(match kind {
        K::ConnectionRefused => ErrorKind::ConnectionRefused,
        K::TimedOut if hints.connect => ErrorKind::ConnectionTimeout,
        // A socket read that timed out: no new data.
        K::TimedOut if phase == Phase::ReadBody => ErrorKind::ReadTimeout,
        K::TimedOut => ErrorKind::ResponseHeaderTimeout,
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => {
            ErrorKind::DestinationUnreachable
        }
        // No local address or port to connect from: the gateway's own shortage,
        // not the destination's fault.
        K::AddrNotAvailable => ErrorKind::Unclassified,
        // hyper-util's connector says "Network unreachable" this way when no
        // address could be tried.
        K::NotConnected if hints.connect => ErrorKind::DestinationUnreachable,
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::NotConnected
        | K::UnexpectedEof => ErrorKind::ConnectionTerminated,
        // hyper's body decoder reports bad chunking as invalid input; before the head
        // it is a malformed answer.
        K::InvalidInput | K::InvalidData if phase == Phase::ReadBody => ErrorKind::TransferCoding,
        K::InvalidInput | K::InvalidData => ErrorKind::ProtocolError,
        _ => return None,
    })
}

/// Nothing decided. A failure while connecting that is none of the above is most
/// likely the TLS handshake (hyper-tls and native-tls report those as connect
/// errors with their own types): tell the two TLS kinds apart by message. The
/// fallback only: with the `rustls` feature, rustls errors are told apart by
/// type (`rustls_kind`) before this.
fn fallback(err: &(dyn Error + 'static), hints: Hints) -> ErrorKind {
    for cause in chain(err) {
        let msg = cause.to_string().to_ascii_lowercase();
        if hints.connect && msg.contains("certificate") {
            return ErrorKind::TlsCertificateError;
        }
        if hints.connect
            && (msg.contains("tls") || msg.contains("ssl") || msg.contains("handshake"))
        {
            return ErrorKind::TlsProtocolError;
        }
        // h2's message for REFUSED_STREAM, when the `h2` feature is off.
        if msg.contains("refused stream before processing") {
            return ErrorKind::RefusedStream;
        }
    }
    ErrorKind::Unclassified
}

#[cfg(feature = "tonic")]
fn tonic_step(e: &(dyn Error + 'static), phase: Phase, hints: &mut Hints) -> Option<ErrorKind> {
    if e.is::<tonic::ConnectError>() {
        hints.connect = true;
    } else if e.is::<tonic::TimeoutExpired>() {
        return Some(elapsed(phase, *hints));
    }
    None
}

/// reqwest's predicates, the same in 0.12 and 0.13 (0.13 adds `is_dns`).
#[cfg(any(feature = "reqwest", feature = "reqwest013"))]
macro_rules! reqwest_step {
    ($name:ident, $error:ty, $dns:expr) => {
        fn $name(e: &(dyn Error + 'static), phase: Phase, hints: &mut Hints) -> Option<ErrorKind> {
            let err = e.downcast_ref::<$error>()?;
            if err.is_builder() {
                return Some(ErrorKind::ProxyConfigurationError);
            }
            if err.is_upgrade() {
                return Some(ErrorKind::UpgradeFailed);
            }
            if err.is_connect() {
                hints.connect = true;
            }
            let dns: fn(&$error) -> bool = $dns;
            if dns(err) {
                hints.connect = true;
                return Some(if err.is_timeout() {
                    ErrorKind::DnsTimeout
                } else {
                    dns_kind(e)
                });
            }
            // reqwest's own timeout error type is private: `is_timeout` is how to see it.
            if err.is_timeout() {
                let phase = if err.is_body() || err.is_decode() {
                    Phase::ReadBody
                } else {
                    phase
                };
                return Some(elapsed(phase, *hints));
            }
            None
        }
    };
}

#[cfg(feature = "reqwest")]
reqwest_step!(reqwest_step, ::reqwest012::Error, |_| false);
#[cfg(feature = "reqwest013")]
reqwest_step!(reqwest013_step, ::reqwest::Error, ::reqwest::Error::is_dns);

#[cfg(feature = "hyper")]
fn hyper_step(e: &(dyn Error + 'static), phase: Phase, hints: &mut Hints) -> Option<ErrorKind> {
    if let Some(err) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
        if err.is_connect() {
            hints.connect = true;
        } else {
            // The kind is private; its name is in the message, e.g.
            // "client error (UserAbsoluteUriRequired)".
            let head = Head::of(e);
            let msg = head.as_str();
            if msg.contains("(User") {
                return Some(ErrorKind::ProxyConfigurationError);
            }
            if msg.contains("(Canceled)") || msg.contains("(ChannelClosed)") {
                hints.not_dispatched = true;
            }
        }
        return None;
    }
    let err = e.downcast_ref::<hyper::Error>()?;
    if err.is_timeout() {
        return Some(elapsed(phase, *hints));
    }
    if err.is_parse() {
        // `is_parse_too_large` exists only with hyper's `server` feature, which a
        // client-only application does not enable; its message is stable.
        if Head::of(e).as_str() == "message head is too large" {
            return Some(ErrorKind::HeaderSectionTooLarge);
        }
        return Some(ErrorKind::ProtocolError);
    }
    if err.is_canceled() || err.is_closed() {
        // The request was dropped before it could be dispatched to a connection.
        hints.not_dispatched = true;
        return None;
    }
    if err.is_incomplete_message() || err.is_shutdown() {
        return Some(ErrorKind::ConnectionTerminated);
    }
    None
}

#[cfg(feature = "h2")]
fn h2_reason(err: &h2::Error) -> Option<ErrorKind> {
    use h2::Reason;
    let reason = err.reason()?;
    Some(match reason {
        Reason::REFUSED_STREAM => ErrorKind::RefusedStream,
        // A graceful GOAWAY only fails the streams past its last stream id: those the
        // upstream promises it never processed (RFC 9113 §6.8).
        Reason::NO_ERROR if err.is_go_away() && err.is_remote() => ErrorKind::RefusedStream,
        Reason::PROTOCOL_ERROR
        | Reason::FRAME_SIZE_ERROR
        | Reason::COMPRESSION_ERROR
        | Reason::FLOW_CONTROL_ERROR
        | Reason::STREAM_CLOSED
        | Reason::HTTP_1_1_REQUIRED => ErrorKind::ProtocolError,
        _ => ErrorKind::ConnectionTerminated,
    })
}
