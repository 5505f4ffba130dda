//! OpenTelemetry's names for what the events and the metrics report, where the
//! HTTP semantic conventions define them; and the one thing the conventions
//! require users be able to change: the list of known methods.

use arc_swap::ArcSwapOption;
use http::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether [`set_known_methods`] replaced the list (checked first, so the
/// default list costs one relaxed load).
static OVERRIDDEN: AtomicBool = AtomicBool::new(false);
static KNOWN: ArcSwapOption<Vec<&'static str>> = ArcSwapOption::const_empty();

/// Replaces the methods `http.request.method` names as they are (the nine of
/// RFC 9110 and RFC 5789 by default): any other is `_OTHER`, so that a log field
/// or a metric label is one of a bounded set whatever the client sends. The
/// conventions require that users can override it
/// (`OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`); a WebDAV or cache-purging gateway
/// adds `PROPFIND` or `PURGE`. The list replaces the default entirely, as the
/// conventions say; call it once at startup (each name is kept for the rest of the
/// process).
///
/// ```no_run
/// use http::Method;
/// use tower_bad_gateway::otel::{DEFAULT_KNOWN_METHODS, set_known_methods};
/// // The standard methods, and PURGE.
/// set_known_methods(DEFAULT_KNOWN_METHODS.into_iter().chain([Method::from_bytes(b"PURGE").unwrap()]));
/// ```
pub fn set_known_methods(methods: impl IntoIterator<Item = Method>) {
    let names: Vec<&'static str> = methods
        .into_iter()
        .map(|m| &*Box::leak(m.as_str().to_owned().into_boxed_str()))
        .collect();
    KNOWN.store(Some(Arc::new(names)));
    OVERRIDDEN.store(true, Ordering::Release);
}

/// The methods known by default: the nine of RFC 9110 and RFC 5789.
pub const DEFAULT_KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// The method as OpenTelemetry's `http.request.method` names it: a known method
/// as it is, any other `_OTHER`.
#[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
pub(crate) fn method(method: &Method) -> &'static str {
    if OVERRIDDEN.load(Ordering::Acquire) {
        if let Some(known) = KNOWN.load().as_ref() {
            return named_in(known, method);
        }
    }
    by_default(method)
}

/// `method` as named in the list `known`, or `_OTHER`.
fn named_in(known: &[&'static str], method: &Method) -> &'static str {
    known
        .iter()
        .find(|k| **k == method.as_str())
        .copied()
        .unwrap_or("_OTHER")
}

/// `method` as named by the default list.
fn by_default(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    // The process-wide list is not changed here: tests run in parallel.
    #[test]
    fn an_extension_method_is_other_unless_the_known_list_says_otherwise() {
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(super::by_default(&purge), "_OTHER");
        assert_eq!(super::by_default(&Method::PATCH), "PATCH");
        let known = ["GET", "PURGE"];
        assert_eq!(super::named_in(&known, &purge), "PURGE");
        assert_eq!(
            super::named_in(&known, &Method::PATCH),
            "_OTHER",
            "the list replaces the default"
        );
        for m in super::DEFAULT_KNOWN_METHODS {
            assert_eq!(super::by_default(&m), m.as_str());
        }
    }
}
