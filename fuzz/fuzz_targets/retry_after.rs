//! `Retry-After` parsing over arbitrary bytes and clocks: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let Some((clock, value)) = data.split_first_chunk::<8>() else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from_le_bytes(*clock) % 10_000_000_000);
    let _ = tower_bad_gateway::retry::parse_retry_after(value, now);
});
