//! The default rules: one walk down the cause chain, most specific type first.

use super::{Hints, chain};
#[cfg(feature = "rustls")]
use crate::error::TlsAlert;
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
        m if m.starts_with("invalid URL") => return Some(ErrorKind::ProxyConfigurationError),
        _ => {}
    }
    None
}

/// The first bytes of an error's message, read without allocating.
struct Head {
    buf: [u8; 64],
    len: usize,
}

impl Head {
    fn of(e: &(dyn Error + 'static)) -> Self {
        use std::fmt::Write;
        let mut head = Head {
            buf: [0; 64],
            len: 0,
        };
        // Err only means the message was longer than the buffer: the head is kept.
        let _ = write!(head, "{e}");
        head
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for Head {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        if s.len() > room {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
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

/// A rustls error, by its variant. A handshake error means the connection was
/// never usable: nothing was sent.
#[cfg(feature = "rustls")]
fn rustls_kind(err: &rustls::Error, hints: &mut Hints) -> ErrorKind {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(_)
        | E::NoCertificatesPresented
        | E::UnsupportedNameType
        | E::InvalidCertRevocationList(_) => ErrorKind::TlsCertificateError,
        E::AlertReceived(alert) => {
            hints.tls_alert = Some(TlsAlert::new(u8::from(*alert)));
            ErrorKind::TlsAlertReceived
        }
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerIncompatible(_)
        | E::PeerMisbehaved(_)
        | E::PeerSentOversizedRecord
        | E::DecryptError
        | E::NoApplicationProtocol
        | E::InvalidEncryptedClientHello(_)
        | E::HandshakeNotComplete => ErrorKind::TlsProtocolError,
        // The gateway's own faults (no clock, no randomness, a bad key or
        // configuration) and errors rustls cannot say more about.
        _ => ErrorKind::Unclassified,
    }
}

/// The alert of a rustls error that h2 turned into text. h2 keeps only the kind
/// and the message of an I/O error (`h2::proto::Error::Io`), so over HTTP/2 an
/// alert the upstream sends after the client's side of the handshake is done
/// (TLS 1.3: a mutual-TLS upstream refusing the client's certificate, or the lack
/// of one) reaches us as `InvalidData` with rustls' message and no type. The
/// message is matched whole against what rustls itself writes for each of the
/// 256 alerts, so it is rustls' text, never a guess from words.
#[cfg(feature = "rustls")]
fn alert_h2_kept_as_text(io: &io::Error) -> Option<TlsAlert> {
    const PREFIX: &str = "received fatal alert: ";
    if io.kind() != io::ErrorKind::InvalidData {
        return None;
    }
    let text = Head::of(io.get_ref()?);
    if !text.as_str().starts_with(PREFIX) {
        return None;
    }
    (0..=u8::MAX).find_map(|id| {
        let rustls_text = Head::of(&rustls::Error::AlertReceived(id.into()));
        (rustls_text.as_str() == text.as_str()).then_some(TlsAlert::new(id))
    })
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

#[cfg(all(test, feature = "rustls"))]
mod tests {
    use crate::classify::Classifier;
    use crate::error::{ErrorKind, Phase, RequestSent};
    use rustls::{
        AlertDescription, CertificateError, Error as E, InvalidMessage, PeerIncompatible,
    };
    use std::io;

    /// As tokio-rustls (and so hyper-rustls, reqwest, tonic) hands a TLS error over.
    fn classify(tls: E) -> crate::error::GatewayError {
        let io = io::Error::new(io::ErrorKind::InvalidData, tls);
        Classifier::new().classify(&io, Phase::AwaitHead)
    }

    #[test]
    fn rustls_errors_are_classified_by_their_variant() {
        for (tls, kind) in [
            (
                E::InvalidCertificate(CertificateError::Expired),
                ErrorKind::TlsCertificateError,
            ),
            (
                E::InvalidCertificate(CertificateError::UnknownIssuer),
                ErrorKind::TlsCertificateError,
            ),
            (
                E::InvalidCertificate(CertificateError::NotValidForName),
                ErrorKind::TlsCertificateError,
            ),
            (E::NoCertificatesPresented, ErrorKind::TlsCertificateError),
            (
                E::InvalidMessage(InvalidMessage::InvalidContentType),
                ErrorKind::TlsProtocolError,
            ),
            (
                E::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
                ErrorKind::TlsProtocolError,
            ),
            (
                E::AlertReceived(AlertDescription::HandshakeFailure),
                ErrorKind::TlsAlertReceived,
            ),
            (E::FailedToGetRandomBytes, ErrorKind::Unclassified),
        ] {
            let err = classify(tls.clone());
            assert_eq!(err.kind(), kind, "{tls:?}");
            if kind != ErrorKind::Unclassified {
                assert_eq!(
                    (err.phase(), err.request_sent()),
                    (Phase::Connect, RequestSent::No)
                );
            }
        }
    }

    #[test]
    fn an_alert_keeps_its_number_even_one_rustls_does_not_know() {
        let err = classify(E::AlertReceived(AlertDescription::CertificateRequired));
        assert_eq!(
            err.tls_alert().map(|a| (a.id(), a.message())),
            Some((116, Some("certificate_required")))
        );
        let err = classify(E::AlertReceived(AlertDescription::Unknown(250)));
        assert_eq!(err.kind(), ErrorKind::TlsAlertReceived);
        assert_eq!(
            err.tls_alert().map(|a| (a.id(), a.message())),
            Some((250, None))
        );
    }

    /// Over HTTP/2, h2 keeps a post-handshake alert as rustls' text only: that
    /// exact text is read back; anything else that merely looks like it is not.
    #[test]
    fn an_alert_h2_kept_as_text_is_read_back_exactly() {
        for alert in [
            AlertDescription::CertificateRequired,
            AlertDescription::BadCertificateStatusResponse,
            AlertDescription::Unknown(250),
        ] {
            let text = E::AlertReceived(alert).to_string();
            let io = io::Error::new(io::ErrorKind::InvalidData, text);
            let err = Classifier::new().classify(&io, Phase::AwaitHead);
            assert_eq!(err.kind(), ErrorKind::TlsAlertReceived, "{alert:?}");
            assert_eq!(err.tls_alert().map(|a| a.id()), Some(u8::from(alert)));
        }
        for text in [
            "received fatal alert: SomethingElse",
            "received fatal alert: CertificateRequired and more",
        ] {
            let io = io::Error::new(io::ErrorKind::InvalidData, text);
            let err = Classifier::new().classify(&io, Phase::AwaitHead);
            assert_eq!(err.kind(), ErrorKind::ProtocolError, "{text}");
        }
    }

    /// The type decides, not the message: a certificate error reads "invalid peer
    /// certificate", but so might anything; and an `io::Error` wrapping it is not
    /// a protocol error by its own kind.
    #[test]
    fn the_wrapping_io_error_does_not_decide() {
        let err = classify(E::InvalidCertificate(CertificateError::Expired));
        assert_ne!(err.kind(), ErrorKind::ProtocolError);
        let plain = io::Error::new(io::ErrorKind::InvalidData, "certificate tls handshake");
        assert_eq!(
            Classifier::new().classify(&plain, Phase::AwaitHead).kind(),
            ErrorKind::ProtocolError
        );
    }
}
