//! rustls errors, by type (feature `rustls`): which kind each variant is, and the
//! alert that h2 turned into text.

use super::Hints;
use super::head::Head;
use crate::error::{ErrorKind, TlsAlert};
use std::io;

/// A rustls error, by its variant. A handshake error means the connection was
/// never usable: nothing was sent.
pub(super) fn rustls_kind(err: &rustls::Error, hints: &mut Hints) -> ErrorKind {
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
pub(super) fn alert_h2_kept_as_text(io: &io::Error) -> Option<TlsAlert> {
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

#[cfg(test)]
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
