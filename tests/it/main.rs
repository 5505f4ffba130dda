//! The integration tests, as one binary (`cargo test --test it`): each module is
//! what used to be a test target of its own, and shares `support`.
//!
//! Run one module with a filter on its path: `cargo test --test it retry::`.

mod support;

mod abuse;
mod answers;
mod axum_proxy;
mod backpressure;
mod cancellation;
mod classify_real_clients;
mod grpc;
mod grpc_retry;
mod hedge;
mod http2;
mod intercept;
mod invariants;
mod load_under_faults;
mod observability;
mod one_classifier;
mod proxy;
mod retry;
mod reverse_proxy;
mod timed_out_attempts;
mod timeouts;
mod tls;
mod tower_http;
mod upstream_client;
mod upstreams;
