//! The retry layer's side of gRPC's retry protocol (gRFC A6): marking further
//! attempts with `grpc-previous-rpc-attempts`, and whether an answer's
//! `grpc-retry-pushback-ms` set the wait before the next one. (The throttle is
//! `throttle.rs`; the wire format is the crate's `grpc` module.)

use crate::grpc::{self, GRPC_PREVIOUS_RPC_ATTEMPTS, Pushback};
use http::{HeaderMap, HeaderValue, header};

/// Marks an attempt of a gRPC call (by its `content-type`) that `previous`
/// attempts of this layer came before: `grpc-previous-rpc-attempts` is
/// `previous` more than the caller said it had made (none, unless it sent a
/// valid count), so a call retried by its client and then by the gateway is
/// counted whole. The first attempt (`previous` 0) and other requests are left
/// as they are. The value is digits only: no CR, LF or NUL can be written.
///
/// Called on each retried attempt, and on each hedged one.
pub(super) fn mark_attempt(headers: &mut HeaderMap, previous: u32) {
    if previous == 0
        || !headers
            .get(header::CONTENT_TYPE)
            .is_some_and(grpc::is_grpc_content_type)
    {
        return;
    }
    let total = grpc::previous_attempts(headers).saturating_add(previous);
    headers.insert(GRPC_PREVIOUS_RPC_ATTEMPTS, HeaderValue::from(total));
}

/// Whether an answer that is retried was retried after its pushback's wait
/// (then the backoff starts again from its first step: A6, "If this attempt
/// also fails, retry delay will reset to initial backoff").
pub(super) fn pushed_back(headers: &HeaderMap) -> bool {
    matches!(grpc::pushback(headers), Some(Pushback::After(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(content_type: &'static str, previous: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(p) = previous {
            headers.insert(GRPC_PREVIOUS_RPC_ATTEMPTS, HeaderValue::from_static(p));
        }
        headers
    }

    fn marked(mut headers: HeaderMap, previous: u32) -> Option<HeaderValue> {
        mark_attempt(&mut headers, previous);
        let mut values = headers.get_all(GRPC_PREVIOUS_RPC_ATTEMPTS).iter();
        let value = values.next().cloned();
        assert!(values.next().is_none(), "one value at most");
        value
    }

    #[test]
    fn further_attempts_of_a_grpc_call_count_the_attempts_before_them() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web",
        ] {
            assert_eq!(marked(call(ct, None), 0), None, "{ct}: the first attempt");
            assert_eq!(marked(call(ct, None), 1).unwrap(), "1", "{ct}");
            assert_eq!(marked(call(ct, None), 2).unwrap(), "2", "{ct}");
        }
    }

    #[test]
    fn other_requests_get_no_header() {
        assert_eq!(marked(call("application/json", None), 1), None);
        assert_eq!(marked(HeaderMap::new(), 2), None);
    }

    #[test]
    fn a_callers_own_count_is_added_to_and_a_bad_one_replaced() {
        let ct = "application/grpc";
        assert_eq!(
            marked(call(ct, Some("1")), 0).unwrap(),
            "1",
            "passed as sent"
        );
        assert_eq!(marked(call(ct, Some("1")), 1).unwrap(), "2");
        assert_eq!(marked(call(ct, Some("1x")), 1).unwrap(), "1");
        assert_eq!(
            marked(call(ct, Some("4294967295")), 3).unwrap(),
            "4294967295",
            "saturates"
        );
    }

    #[test]
    fn only_a_wait_pushback_resets_the_backoff() {
        let with = |v: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(grpc::GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static(v));
            headers
        };
        assert!(pushed_back(&with("100")));
        assert!(!pushed_back(&with("-1")));
        assert!(!pushed_back(&HeaderMap::new()));
    }
}
