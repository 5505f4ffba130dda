//! A `reqwest::Client` of reqwest 0.12 (the `reqwest` feature) as a
//! `tower::Service<http::Request<B>>`, so the whole stack
//! ([`GatewayLayer`](crate::GatewayLayer), or any of its layers) can wrap it.
//! For reqwest 0.13, what `cargo add reqwest` gives today, the `reqwest013`
//! feature has the same adapter in `tower_bad_gateway::reqwest013`.
//!
//! ```text
//! your code ─▶ [Retry ─▶ Timeout] ─▶ ReqwestService ─▶ reqwest::Client ─▶ upstream
//! ```
//!
//! Its errors are reqwest's own, which the classifier reads with reqwest's
//! predicates (`is_connect`, `is_timeout`, `is_body`, `is_decode`, `is_builder`).
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::reqwest::ReqwestService;
//! use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! use std::time::Duration;
//! # use reqwest012 as reqwest; // the tests' name for reqwest 0.12
//!
//! let api = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryPolicy::new()))
//!     .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(2)))
//!     .service(ReqwestService::new(reqwest::Client::new()));
//! # let _ = api;
//! ```
use crate::error::BoxError;
use bytes::Bytes;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

crate::reqwest_adapter::reqwest_adapter!(
    reqwest,
    reqwest012,
    "# use reqwest012 as reqwest; // the tests' name for reqwest 0.12"
);
