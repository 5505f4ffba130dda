//! A `reqwest::Client` of reqwest 0.13 (the `reqwest013` feature) as a
//! `tower::Service<http::Request<B>>`: the same adapter as
//! [`crate::reqwest`] offers for reqwest 0.12.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::reqwest013::ReqwestService;
//! use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
//!
//! let api = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryPolicy::new()))
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

crate::reqwest_adapter::reqwest_adapter!(reqwest013, reqwest, "#");
