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
//! | `http.client.request.duration` | histogram, seconds | `http.request.method`, `server.address` and `server.port` (the endpoint the attempt went to: the replica an endpoint set picked, else the request URI's), `http.response.status_code` (when the upstream answered), `error.type` (on failure) | each attempt, as the conventions define it, until the response head or the failure; recorded by the [`Upstreams`](crate::upstreams::Upstreams) layer every [`GatewayLayer`](crate::GatewayLayer) has |
//! | `tower_bad_gateway.exchange.duration` | histogram, seconds | `http.request.method`, `http.response.status_code`, `error.type` | each exchange [`BadGateway`](crate::BadGateway) sees, all its attempts, until the response head or the failure |
//! | `tower_bad_gateway.failures` | counter, `{failure}` | `error.type`, `tower_bad_gateway.phase` | each failure reported (the failure event), before the head or mid-body |
//! | `tower_bad_gateway.intercepted` | counter, `{response}` | `http.response.status_code` | each upstream error answer the [`ResponsePolicy`](crate::ResponsePolicy) intercepted (replaced by the gateway's page) |
//! | `tower_bad_gateway.retries` | counter, `{retry}` | `error.type` | each retry a [`RetryLayer`](crate::retry::RetryLayer) makes: one resend in OpenTelemetry's `http.request.resend_count` sense (an exchange of *n* attempts adds *n* − 1) |
//! | `tower_bad_gateway.retries.refused` | counter, `{retry}` | — | each retry the [budget](crate::retry::RetryBudget) refused |
//! | `tower_bad_gateway.hedges` | counter, `{hedge}` | — | each hedge sent: an attempt of a request whose earlier attempt is still in flight ([`HedgePolicy`](crate::retry::HedgePolicy)) |
//! | `tower_bad_gateway.hedges.won` | counter, `{hedge}` | — | each hedge whose answer was used (the other attempts cancelled) |
//! | `tower_bad_gateway.hedges.refused` | counter, `{hedge}` | — | each hedge the hedging budget refused |
//! | `tower_bad_gateway.deadline.expirations` | counter, `{expiration}` | `tower_bad_gateway.phase` | each time the exchange's [`Deadline`](crate::deadline::Deadline) ended an attempt's wait for its head or its body |
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

use http::StatusCode;
use metrics::{Key, Label, Level, Metadata, SharedString, Unit};
use std::sync::OnceLock;

mod durations;

pub(crate) use self::durations::{attempt, exchange};

/// `http.client.request.duration`: each attempt, as OpenTelemetry's conventions
/// define it (one HTTP client request per attempt).
pub const REQUEST_DURATION: &str = "http.client.request.duration";
/// `tower_bad_gateway.exchange.duration`: each exchange, all its attempts.
pub const EXCHANGE_DURATION: &str = "tower_bad_gateway.exchange.duration";
/// `tower_bad_gateway.failures`.
pub const FAILURES: &str = "tower_bad_gateway.failures";
/// `tower_bad_gateway.retries`.
pub const RETRIES: &str = "tower_bad_gateway.retries";
/// `tower_bad_gateway.retries.refused`: retries the budget refused.
pub const RETRIES_REFUSED: &str = "tower_bad_gateway.retries.refused";
/// `tower_bad_gateway.hedges`: hedges sent.
pub const HEDGES: &str = "tower_bad_gateway.hedges";
/// `tower_bad_gateway.hedges.won`: hedges whose answer was used.
pub const HEDGES_WON: &str = "tower_bad_gateway.hedges.won";
/// `tower_bad_gateway.hedges.refused`: hedges the hedging budget refused.
pub const HEDGES_REFUSED: &str = "tower_bad_gateway.hedges.refused";
/// `tower_bad_gateway.deadline.expirations`: waits the exchange's deadline ended.
pub const DEADLINE_EXPIRATIONS: &str = "tower_bad_gateway.deadline.expirations";

/// The bucket boundaries (seconds) OpenTelemetry's HTTP semantic conventions
/// give `http.client.request.duration`: give them to your exporter (with
/// `metrics-exporter-prometheus`, `set_buckets_for_metric`), whose defaults are
/// others.
///
/// ```
/// use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
/// use tower_bad_gateway::metrics::{DURATION_BUCKETS, REQUEST_DURATION};
/// let builder = PrometheusBuilder::new()
///     .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &DURATION_BUCKETS)
///     .unwrap();
/// # let _ = builder;
/// ```
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The attribute naming an upstream exchange's phase (`connect`, `await_head`,
/// `read_body`, ...).
pub const PHASE: &str = "tower_bad_gateway.phase";
/// The attribute naming an endpoint's new state.
pub const ENDPOINT_STATE: &str = "tower_bad_gateway.endpoint.state";
/// `tower_bad_gateway.intercepted`.
pub const INTERCEPTED: &str = "tower_bad_gateway.intercepted";
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
            "Duration of each attempt to the upstream, until the response head or the failure."
                .into(),
        );
        r.describe_histogram(
            EXCHANGE_DURATION.into(),
            Some(Unit::Seconds),
            "Duration of each exchange with the upstream, all its attempts, until the response head or the failure.".into(),
        );
        // OpenTelemetry's units for counts are annotations (`{failure}`); the
        // `metrics` crate's is a count.
        let count = Some(Unit::Count);
        r.describe_counter(
            FAILURES.into(),
            count,
            "Upstream failures the gateway answered or ended a body for ({failure}).".into(),
        );
        r.describe_counter(
            RETRIES.into(),
            count,
            "Requests sent again ({retry}).".into(),
        );
        r.describe_counter(
            RETRIES_REFUSED.into(),
            count,
            "Retries the retry budget refused ({retry}).".into(),
        );
        r.describe_counter(
            HEDGES.into(),
            count,
            "Hedges sent: attempts of requests whose earlier attempt was still in flight ({hedge}).".into(),
        );
        r.describe_counter(
            HEDGES_WON.into(),
            count,
            "Hedges whose answer was used ({hedge}).".into(),
        );
        r.describe_counter(
            HEDGES_REFUSED.into(),
            count,
            "Hedges the hedging budget refused ({hedge}).".into(),
        );
        r.describe_counter(
            DEADLINE_EXPIRATIONS.into(),
            count,
            "Waits the exchange's deadline ended ({expiration}).".into(),
        );
        r.describe_counter(
            INTERCEPTED.into(),
            count,
            "Upstream error answers replaced by the gateway's page ({response}).".into(),
        );
        r.describe_counter(
            ENDPOINT_STATE_CHANGES.into(),
            count,
            "Endpoint health changes: ejected, probing, restored, down ({change}).".into(),
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

/// A failure reported once (the failure event).
pub(crate) fn failure(error_type: &'static str, phase: &'static str) {
    counter(&Key::from_parts(
        FAILURES,
        vec![
            Label::from_static_parts("error.type", error_type),
            Label::from_static_parts(PHASE, phase),
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

/// An upstream error answer with `status`, intercepted.
pub(crate) fn intercepted(status: StatusCode) {
    counter(&Key::from_parts(
        INTERCEPTED,
        vec![Label::new(
            "http.response.status_code",
            status_label(status),
        )],
    ));
}

/// A retry the budget refused.
pub(crate) fn retry_budget_exhausted() {
    counter(&Key::from_static_name(RETRIES_REFUSED));
}

/// A hedge sent.
pub(crate) fn hedge() {
    counter(&Key::from_static_name(HEDGES));
}

/// A hedge's answer used.
pub(crate) fn hedge_won() {
    counter(&Key::from_static_name(HEDGES_WON));
}

/// A hedge the budget refused.
pub(crate) fn hedge_refused() {
    counter(&Key::from_static_name(HEDGES_REFUSED));
}

/// The deadline ended a wait, in `phase` (`await_head` or `read_body`).
pub(crate) fn deadline_exceeded(phase: &'static str) {
    counter(&Key::from_parts(
        DEADLINE_EXPIRATIONS,
        vec![Label::from_static_parts(PHASE, phase)],
    ));
}

/// For the endpoint set (`upstreams/`): an endpoint at `address` (its
/// `host:port`, from the configured set, so a bounded label) changed to `state`
/// (`"ejected"`, `"probing"`, `"restored"` or `"down"`: failing its active health
/// checks). Counted in `tower_bad_gateway.endpoint.state_changes` with labels
/// `tower_bad_gateway.endpoint.state`, `server.address` (the host) and
/// `server.port`.
pub(crate) fn endpoint_state_change(state: &'static str, host: &str, port: u16) {
    counter(&Key::from_parts(
        ENDPOINT_STATE_CHANGES,
        vec![
            Label::from_static_parts(ENDPOINT_STATE, state),
            Label::new("server.address", host.to_owned()),
            Label::new("server.port", port.to_string()),
        ],
    ));
}
