//! Endpoint URLs and endpoint sets from arbitrary text: a clear error or an
//! endpoint, never a panic; an error message never carries CR, LF or NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bad_gateway::upstreams::{Endpoint, EndpointSet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match text.parse::<Endpoint>() {
        Ok(ep) => {
            // What parses rewrites any request URI to a valid one.
            let _ = ep.to_string();
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.contains(['\r', '\n', '\0']), "{message:?}");
        }
    }
    let _ = EndpointSet::from_urls(text.split(' '));
});
