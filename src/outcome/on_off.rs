//! A policy's sets: what counts, and what never does.

use super::{Outcome, Outcomes};
use crate::error::ErrorKind;
use http::{HeaderMap, StatusCode};

/// An outcome counts when it is in `on` and not in `off`: `no_` wins whatever the
/// order of the calls.
#[derive(Clone, Default, Debug)]
pub(crate) struct OnOff {
    pub(crate) on: Outcomes,
    pub(crate) off: Outcomes,
}

impl OnOff {
    pub(crate) fn with_defaults(on: Outcomes) -> Self {
        Self {
            on,
            off: Outcomes::new(),
        }
    }

    pub(crate) fn on(mut self, outcomes: impl Into<Outcomes>) -> Self {
        self.on = self.on.union(outcomes);
        self
    }

    pub(crate) fn off(mut self, outcomes: impl Into<Outcomes>) -> Self {
        self.off = self.off.union(outcomes);
        self
    }

    /// Turns failures of `kind` on or off over whatever was said before: for a
    /// setting documented to win over the policy's either way.
    pub(crate) fn force_kind(mut self, kind: ErrorKind, on: bool) -> Self {
        let (add, remove) = if on {
            (&mut self.on, &mut self.off)
        } else {
            (&mut self.off, &mut self.on)
        };
        add.kinds = add.kinds.with(kind);
        remove.kinds = remove.kinds.without(kind);
        self
    }

    pub(crate) fn counts(&self, outcome: &Outcome<'_>) -> bool {
        self.on.contains(outcome) && !self.off.contains(outcome)
    }

    /// Whether no answer can count (a fast path for every answer).
    pub(crate) fn counts_no_answer(&self) -> bool {
        self.on.holds_no_answer()
    }

    /// Whether an upstream answer counts: the fast path first, then the sets.
    pub(crate) fn counts_answer(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        !self.counts_no_answer() && self.counts(&Outcome::Response { status, headers })
    }
}
