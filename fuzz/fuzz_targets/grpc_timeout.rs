//! `grpc-timeout` values through the deadline layer: never panics, and a deadline
//! it sets is never later than the caller allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service};
use tower_bad_gateway::deadline::{Deadline, SetDeadlineLayer};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let req = http::Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", value)
        .body(())
        .unwrap();
    let mut seen = None;
    let before = tokio::time::Instant::now();
    {
        let mut svc = SetDeadlineLayer::new(std::time::Duration::from_secs(3600)).layer(
            tower::service_fn(|req: http::Request<()>| {
                seen = req.extensions().get::<Deadline>().copied();
                std::future::ready(Ok::<_, std::convert::Infallible>(()))
            }),
        );
        drop(svc.call(req));
    }
    if let Some(deadline) = seen {
        assert!(deadline.at() <= before + std::time::Duration::from_secs(3601));
    }
});
