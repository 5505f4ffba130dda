//! One clock reading per synchronous `call` chain.
//!
//! Several layers of a stack want the time a request came in (`BadGateway` for
//! `GatewayError::elapsed`, `Retry` for its budget, `SetDeadline` for the deadline),
//! and each read of the clock costs about as much as all the rest of a layer's
//! `call` (about 24 ns on a KVM guest). Their `call`s run one inside the other,
//! synchronously, within a microsecond, so the outermost one reads the clock and
//! the inner ones reuse its reading, the way nginx reads the clock once per turn
//! of its event loop. The reading is visible only while the inner `call` runs:
//! anything that waits (a retry, a timer, a body) reads the clock again.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The time now: the enclosing `call` chain's reading if there is one.
pub(crate) fn now() -> Instant {
    NOW.try_with(Cell::get)
        .ok()
        .flatten()
        .unwrap_or_else(Instant::now)
}

/// Runs `call` (a layer's synchronous call of its inner service) with `now` as
/// the reading the layers inside see; the previous one is restored after, also
/// when `call` panics.
pub(crate) fn with_now<R>(now: Instant, call: impl FnOnce() -> R) -> R {
    struct Restore(Option<Option<Instant>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0 {
                let _ = NOW.try_with(|cell| cell.set(previous));
            }
        }
    }
    let _restore = Restore(NOW.try_with(|cell| cell.replace(Some(now))).ok());
    call()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn inner_calls_see_the_outer_reading_and_only_while_it_runs() {
        let outer = Instant::now() - Duration::from_secs(60);
        let seen = with_now(outer, || {
            let inner = now();
            let nested = with_now(now(), now);
            (inner, nested)
        });
        assert_eq!(seen, (outer, outer));
        assert!(now() > outer, "after the call the clock is read again");
    }

    #[test]
    fn the_reading_is_restored_when_the_call_panics() {
        let outer = Instant::now() - Duration::from_secs(60);
        let caught = std::panic::catch_unwind(|| with_now(outer, || panic!("inner")));
        assert!(caught.is_err());
        assert!(now() > outer);
    }
}
