//! The timeout layer's reporting seam: its one metric goes through here, so the
//! future and the body carry no `cfg`.

/// The request's deadline passed while waiting in `phase` (`await_head`,
/// `read_body`): counted (feature `metrics`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(super) fn deadline_exceeded(phase: &'static str) {
    #[cfg(feature = "metrics")]
    crate::metrics::deadline_exceeded(phase);
}
