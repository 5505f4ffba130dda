//! OpenTelemetry's names for what the failure event and the metrics report,
//! where the HTTP semantic conventions define them.

use http::Method;

/// The method as OpenTelemetry's `http.request.method` names it: one of the
/// standard methods, or `_OTHER`, so that a log field or a metric label is one of
/// a bounded set whatever the client sends.
#[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
pub(crate) fn method(method: &Method) -> &'static str {
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
    #[test]
    fn an_extension_method_is_other() {
        let m = http::Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(super::method(&m), "_OTHER");
        assert_eq!(super::method(&http::Method::PATCH), "PATCH");
    }
}
