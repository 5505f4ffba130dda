//! The statuses a set holds: numbers, one bit each.

use crate::error::ErrorStatus;
use http::StatusCode;

/// What a set takes as a status: a [`StatusCode`], an [`ErrorStatus`], or a number.
pub trait IntoStatus: sealed::Sealed {
    /// The status as a number.
    fn into_status(self) -> u16;
}

impl IntoStatus for StatusCode {
    fn into_status(self) -> u16 {
        self.as_u16()
    }
}

impl IntoStatus for ErrorStatus {
    fn into_status(self) -> u16 {
        self.get().as_u16()
    }
}

impl IntoStatus for u16 {
    fn into_status(self) -> u16 {
        self
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for http::StatusCode {}
    impl Sealed for crate::error::ErrorStatus {}
    impl Sealed for u16 {}
}

/// One bit per status number below 1024 (every status the `http` crate can hold).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct StatusSet([u64; 16]);

impl StatusSet {
    pub(super) fn insert(&mut self, status: u16) {
        if !(100..=999).contains(&status) {
            return; // no answer can carry it
        }
        if let Some(word) = self.0.get_mut(usize::from(status / 64)) {
            *word |= 1 << (status % 64);
        }
    }

    pub(super) fn contains(&self, status: u16) -> bool {
        self.0
            .get(usize::from(status / 64))
            .is_some_and(|word| word & 1 << (status % 64) != 0)
    }

    pub(super) fn union(&mut self, other: &StatusSet) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..1024u16).filter(|s| self.contains(*s))
    }

    pub(super) fn retain(&mut self, keep: impl Fn(u16) -> bool) {
        for status in 0..1024u16 {
            if self.contains(status) && !keep(status) {
                self.0[usize::from(status / 64)] &= !(1 << (status % 64));
            }
        }
    }
}
