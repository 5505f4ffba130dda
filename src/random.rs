//! The crate's one source of randomness: backoff jitter and endpoint picks.

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fast pseudo-random sequence (splitmix64) shared by the process: one atomic
/// add per draw, seeded once from the standard library's per-process random
/// hasher keys. Jitter needs spread, not secrecy; no per-thread state.
pub(crate) fn next_u64() -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    static SEED: OnceLock<u64> = OnceLock::new();
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
    let mut z = seed.wrapping_add(
        DRAWS
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
