//! Typed sets of error kinds and gRPC codes, for the retry conditions and the
//! endpoint health policy.

use super::{ErrorKind, GrpcCode, RetryDefault};
use std::fmt;

// One bit per kind.
const _: () = assert!(ErrorKind::COUNT <= 64);

/// A set of [`ErrorKind`]s.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct KindSet(u64);

impl KindSet {
    /// The kinds the taxonomy retries by default.
    pub(crate) fn defaults() -> Self {
        ErrorKind::ALL
            .iter()
            .filter(|k| k.retry_default() == RetryDefault::On)
            .fold(Self::default(), |set, &k| set.with(k))
    }

    pub(crate) fn with(self, kind: ErrorKind) -> Self {
        Self(self.0 | 1 << kind.index())
    }

    pub(crate) fn contains(self, kind: ErrorKind) -> bool {
        self.0 & 1 << kind.index() != 0
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub(crate) fn without(self, kind: ErrorKind) -> Self {
        Self(self.0 & !(1 << kind.index()))
    }
}

impl fmt::Debug for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(ErrorKind::ALL.iter().filter(|k| self.contains(**k)))
            .finish()
    }
}

/// A set of [`GrpcCode`]s.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CodeSet(u32);

impl CodeSet {
    pub(crate) fn with(self, code: GrpcCode) -> Self {
        Self(self.0 | 1 << code.as_u8())
    }

    pub(crate) fn contains(self, code: GrpcCode) -> bool {
        self.0 & 1 << code.as_u8() != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(GrpcCode::ALL.iter().filter(|c| self.contains(**c)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_exactly_what_was_put_in() {
        let set = KindSet::default()
            .with(ErrorKind::Unclassified)
            .with(ErrorKind::DnsError);
        for &kind in ErrorKind::ALL {
            let expected = matches!(kind, ErrorKind::Unclassified | ErrorKind::DnsError);
            assert_eq!(set.contains(kind), expected, "{kind:?}");
        }
        let codes = CodeSet::default().with(GrpcCode::Unauthenticated);
        assert!(codes.contains(GrpcCode::Unauthenticated));
        assert!(!codes.contains(GrpcCode::Ok));
    }
}
