//! [`TlsAlert`]: the alert a TLS peer sent, for `tls_alert_received`.

use std::fmt;

/// A TLS alert the upstream sent during the handshake: its `AlertDescription`
/// number (RFC 8446 §6, the IANA "TLS Alerts" registry) and, when the registry
/// names it, its name.
///
/// A [`GatewayError`](crate::GatewayError) of kind
/// [`TlsAlertReceived`](crate::ErrorKind::TlsAlertReceived) carries it
/// ([`tls_alert`](crate::GatewayError::tls_alert)), and `Proxy-Status` shows it as
/// RFC 9209 §2.3.15 says: `alert-id` always, `alert-message` only with
/// [`expose_details`](crate::render::Renderer::expose_details). With the `rustls`
/// feature the classifier finds it in rustls' `Error::AlertReceived`.
///
/// ```
/// use tower_bad_gateway::error::TlsAlert;
///
/// let alert = TlsAlert::new(40);
/// assert_eq!(alert.id(), 40);
/// assert_eq!(alert.message(), Some("handshake_failure"));
/// assert_eq!(TlsAlert::new(250).message(), None); // not in the registry
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsAlert {
    id: u8,
}

impl TlsAlert {
    /// The alert numbered `id`.
    pub const fn new(id: u8) -> Self {
        Self { id }
    }

    /// The alert's number (`AlertDescription`): `alert-id` in `Proxy-Status`.
    pub const fn id(self) -> u8 {
        self.id
    }

    /// The alert's name in the IANA registry (`handshake_failure`,
    /// `certificate_required`, ...), `None` for a number the registry does not name:
    /// `alert-message` in `Proxy-Status` when details are exposed. A static name,
    /// never text from the peer.
    pub const fn message(self) -> Option<&'static str> {
        Some(match self.id {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            21 => "decryption_failed",
            22 => "record_overflow",
            30 => "decompression_failure",
            40 => "handshake_failure",
            41 => "no_certificate",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            52 => "too_many_cids_requested",
            60 => "export_restriction",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            100 => "no_renegotiation",
            109 => "missing_extension",
            110 => "unsupported_extension",
            111 => "certificate_unobtainable",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            114 => "bad_certificate_hash_value",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            117 => "general_error",
            120 => "no_application_protocol",
            121 => "ech_required",
            _ => return None,
        })
    }
}

impl fmt::Debug for TlsAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAlert")
            .field("id", &self.id)
            .field("message", &self.message())
            .finish()
    }
}

impl fmt::Display for TlsAlert {
    /// The name and the number, e.g. `handshake_failure (40)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(name) => write!(f, "{name} ({})", self.id),
            None => write!(f, "alert {}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_a_token_safe_in_a_header() {
        for id in 0..=u8::MAX {
            if let Some(name) = TlsAlert::new(id).message() {
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{id}: {name}"
                );
            }
        }
    }
}
