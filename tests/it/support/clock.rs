//! Time the tests control, and waits that cannot flake.
//!
//! The crate times everything with tokio's `Instant`, so a test can pause tokio's
//! clock and say when time moves. Left to itself a paused clock auto-advances to
//! the next timer whenever the runtime is idle, and a runtime waiting on a real
//! socket looks idle: a client's connect timeout could fire while a loopback
//! connection is being accepted. [`Frozen`] holds the paused clock still instead
//! (tokio does not auto-advance while a `spawn_blocking` task runs): real sockets
//! do their work in no time at all, and time moves only when the test calls
//! [`Frozen::advance`].
//!
//! While the clock is frozen no tokio timer can bound a wait, so [`within`] and
//! [`eventually`] bound theirs in real time, generously: they wait for an event
//! and give up only when it is clearly never coming.

use std::future::Future;
use std::time::Duration;

/// How long a wait for an event may take before the test gives up on it: far
/// beyond anything a loaded machine needs, far below "hung".
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Tokio's clock, paused and held still while this lives.
pub struct Frozen {
    _release: std::sync::mpsc::Sender<()>,
}

impl Frozen {
    /// Holds tokio's clock still. The test must start with it paused,
    /// `#[tokio::test(start_paused = true)]`, and hold it before its first `.await`:
    /// then every timer falls due on a whole millisecond that [`advance`] reaches
    /// exactly (tokio rounds a timer's deadline up to its next millisecond tick,
    /// counted from when the clock was paused).
    ///
    /// [`advance`]: Frozen::advance
    pub fn hold() -> Self {
        let (release, released) = std::sync::mpsc::channel::<()>();
        // While this blocking task runs the runtime never auto-advances; it ends
        // when `release` is dropped.
        drop(tokio::task::spawn_blocking(move || {
            let _ = released.recv();
        }));
        Self { _release: release }
    }

    /// Moves the clock on by `by`, firing every timer that falls due, and lets the
    /// tasks they woke run.
    pub async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
        // The woken tasks run before this one is polled again.
        tokio::task::yield_now().await;
    }
}

impl Frozen {
    /// Drives `fut`, which now waits on timers only (not on a socket), moving the
    /// clock on a millisecond at a time until it completes; at most [`PATIENCE`] of
    /// real time.
    pub async fn run<F: Future>(&self, what: &str, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        within(what, async {
            loop {
                if let std::task::Poll::Ready(out) = futures_poll_once(fut.as_mut()).await {
                    return out;
                }
                self.advance(Duration::from_millis(1)).await;
            }
        })
        .await
    }
}

/// Polls `fut` once.
async fn futures_poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| std::task::Poll::Ready(fut.take().unwrap().poll(cx))).await
}

/// `fut`'s output, or a panic naming `what` if it takes longer than [`PATIENCE`] of
/// real time. Works whether tokio's clock runs, is paused or is frozen.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    let (expired, expiry) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(PATIENCE) {
            let _ = expired.send(());
        }
    });
    tokio::select! {
        biased;
        out = fut => {
            drop(done);
            out
        }
        _ = expiry => panic!("{what}: not within {PATIENCE:?}"),
    }
}

/// Waits until `cond` holds, checking every few milliseconds of real time; panics
/// naming `what` if it does not within [`PATIENCE`]. Works whether tokio's clock
/// runs, is paused or is frozen (it never sleeps on tokio's clock).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        real_sleep(Duration::from_millis(5)).await;
    }
}

/// Sleeps `d` of real time without tokio's timers (and so without letting a
/// paused clock auto-advance meanwhile).
pub async fn real_sleep(d: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(d))
        .await
        .unwrap();
}
