//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): whatever exporter the application installs (Prometheus, StatsD,
//! OpenTelemetry, ...) receives them; without one they cost a few label values
//! per exchange and go nowhere.
//!
//! Names follow OpenTelemetry's HTTP client semantic conventions where they exist;
//! a Prometheus exporter writes the dots as underscores.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `http.client.request.duration` | histogram, seconds | `http.request.method`, `server.address`, `http.response.status_code` (when the upstream answered), `error.type` (on failure) | each exchange [`BadGateway`](crate::BadGateway) sees, all attempts, until the response head or the failure |
//! | `tower_bad_gateway.failures` | counter | `error.type`, `phase` | each failure reported (the failure event), before the head or mid-body |
//! | `tower_bad_gateway.retries` | counter | `error.type` | each retry a [`RetryLayer`](crate::retry::RetryLayer) makes: one resend in OpenTelemetry's `http.request.resend_count` sense (an exchange of *n* attempts adds *n* − 1) |
//! | `tower_bad_gateway.retry_budget_exhausted` | counter | — | each retry the [budget](crate::retry::RetryBudget) refused |
//! | `tower_bad_gateway.deadline_exceeded` | counter | `phase` | each time the exchange's [`Deadline`](crate::timeout::Deadline) ended an attempt's wait for its head or its body |
//!
//! Label values come from bounded sets only: `http.request.method` is one of
//! the nine standard methods or `_OTHER`; `error.type` is an RFC 9209 token
//! ([`ErrorKind::as_str`](crate::ErrorKind::as_str)), or the upstream's status
//! code (400 to 599) when it answered with an error status;
//! `http.response.status_code` is a status code; `server.address` is the
//! upstream's host, as the request's URI names it after your routing (keep that
//! URI from the client's `Host` if your gateway forwards to arbitrary hosts).
//! Never a path, a request id or a message.
//!
//! Call [`describe`] once after installing a recorder to give each metric its
//! unit and description.
//!
//! ```
//! // With no recorder installed this does nothing; after one is, it describes
//! // the metrics above to it.
//! tower_bad_gateway::metrics::describe();
//! ```

use crate::error::NextHop;
use http::{Method, StatusCode};
use metrics::{Key, Label, Level, Metadata, SharedString, Unit};
use std::sync::OnceLock;
use std::time::Duration;

/// `http.client.request.duration`.
pub const REQUEST_DURATION: &str = "http.client.request.duration";
/// `tower_bad_gateway.failures`.
pub const FAILURES: &str = "tower_bad_gateway.failures";
/// `tower_bad_gateway.retries`.
pub const RETRIES: &str = "tower_bad_gateway.retries";
/// `tower_bad_gateway.retry_budget_exhausted`.
pub const RETRY_BUDGET_EXHAUSTED: &str = "tower_bad_gateway.retry_budget_exhausted";
/// `tower_bad_gateway.deadline_exceeded`.
pub const DEADLINE_EXCEEDED: &str = "tower_bad_gateway.deadline_exceeded";
/// `tower_bad_gateway.endpoint.state_changes` (recorded by the endpoint set).
pub const ENDPOINT_STATE_CHANGES: &str = "tower_bad_gateway.endpoint.state_changes";

static METADATA: Metadata<'static> =
    Metadata::new("tower_bad_gateway", Level::INFO, Some(module_path!()));

/// Gives each metric its unit and description, in the recorder installed now.
pub fn describe() {
    metrics::with_recorder(|r| {
        r.describe_histogram(
            REQUEST_DURATION.into(),
            Some(Unit::Seconds),
            "Duration of each exchange with the upstream, all attempts, until the response head or the failure.".into(),
        );
        r.describe_counter(
            FAILURES.into(),
            None,
            "Upstream failures the gateway answered or ended a body for.".into(),
        );
        r.describe_counter(RETRIES.into(), None, "Requests sent again.".into());
        r.describe_counter(
            RETRY_BUDGET_EXHAUSTED.into(),
            None,
            "Retries the retry budget refused.".into(),
        );
        r.describe_counter(
            DEADLINE_EXCEEDED.into(),
            None,
            "Waits the exchange's deadline ended.".into(),
        );
        r.describe_counter(
            ENDPOINT_STATE_CHANGES.into(),
            None,
            "Endpoint health changes (ejected, probing, restored).".into(),
        );
    });
}

fn counter(key: &Key) {
    metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
}

/// A status code as a `'static` label value (no allocation per use).
fn status_label(status: StatusCode) -> SharedString {
    static CODES: OnceLock<Box<[String]>> = OnceLock::new();
    let codes = CODES.get_or_init(|| (100..1000).map(|c: u16| c.to_string()).collect());
    let text: &'static str = codes
        .get(usize::from(status.as_u16()).wrapping_sub(100))
        .map_or("_OTHER", String::as_str);
    SharedString::const_str(text)
}

/// One exchange, as [`BadGateway`](crate::BadGateway) saw it: `status` when the
/// upstream answered, `error` (a token) when the exchange failed or the answer
/// was rejected.
pub(crate) fn exchange(
    method: &Method,
    next_hop: Option<&NextHop>,
    status: Option<StatusCode>,
    error: Option<&'static str>,
    duration: Duration,
) {
    let mut labels = Vec::with_capacity(4);
    labels.push(Label::from_static_parts(
        "http.request.method",
        crate::otel::method(method),
    ));
    if let Some(host) = next_hop.and_then(NextHop::host) {
        labels.push(Label::new("server.address", host.to_owned()));
    }
    if let Some(status) = status {
        labels.push(Label::new(
            "http.response.status_code",
            status_label(status),
        ));
    }
    let error: Option<SharedString> = match (error, status) {
        (Some(token), _) => Some(SharedString::const_str(token)),
        (None, Some(s)) if s.is_client_error() || s.is_server_error() => Some(status_label(s)),
        _ => None,
    };
    if let Some(error) = error {
        labels.push(Label::new("error.type", error));
    }
    let key = Key::from_parts(REQUEST_DURATION, labels);
    metrics::with_recorder(|r| {
        r.register_histogram(&key, &METADATA)
            .record(duration.as_secs_f64());
    });
}

/// A failure reported once (the failure event).
pub(crate) fn failure(error_type: &'static str, phase: &'static str) {
    counter(&Key::from_parts(
        FAILURES,
        vec![
            Label::from_static_parts("error.type", error_type),
            Label::from_static_parts("phase", phase),
        ],
    ));
}

/// A retry, for `error_type` (a token) or for an upstream `status`.
pub(crate) fn retry(why: Result<&'static str, StatusCode>) {
    let value = match why {
        Ok(token) => SharedString::const_str(token),
        Err(status) => status_label(status),
    };
    counter(&Key::from_parts(
        RETRIES,
        vec![Label::new("error.type", value)],
    ));
}

/// A retry the budget refused.
pub(crate) fn retry_budget_exhausted() {
    counter(&Key::from_static_name(RETRY_BUDGET_EXHAUSTED));
}

/// The deadline ended a wait, in `phase` (`await_head` or `read_body`).
pub(crate) fn deadline_exceeded(phase: &'static str) {
    counter(&Key::from_parts(
        DEADLINE_EXCEEDED,
        vec![Label::from_static_parts("phase", phase)],
    ));
}

/// For the endpoint set (`upstreams/`): an endpoint at `address` (its
/// `host:port`, from the configured set, so a bounded label) changed to `state`
/// (`"ejected"`, `"probing"` or `"restored"`). Counted in
/// `tower_bad_gateway.endpoint.state_changes` with labels `state` and
/// `server.address`.
#[allow(dead_code)] // called by the endpoint set
pub(crate) fn endpoint_state_change(state: &'static str, address: &str) {
    counter(&Key::from_parts(
        ENDPOINT_STATE_CHANGES,
        vec![
            Label::from_static_parts("state", state),
            Label::new("server.address", address.to_owned()),
        ],
    ));
}
