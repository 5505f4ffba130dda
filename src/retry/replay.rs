//! The request head kept for further attempts.

use crate::error::NextHop;
use http::request::Parts;

/// The request head kept for further attempts or, once the last attempt took it
/// (or none was allowed), only the upstream's authority, for the errors.
pub(super) enum Replay {
    Parts(Parts),
    Taken(Option<NextHop>),
}

impl Replay {
    pub(super) fn parts(&self) -> Option<&Parts> {
        match self {
            Replay::Parts(parts) => Some(parts),
            Replay::Taken(_) => None,
        }
    }

    pub(super) fn next_hop(&self) -> Option<NextHop> {
        match self {
            Replay::Parts(parts) => NextHop::of(&parts.uri),
            Replay::Taken(hop) => *hop,
        }
    }

    /// The parts for the next attempt: a clone, or, for the last one, the parts.
    pub(super) fn next(&mut self, last: bool) -> Option<Parts> {
        let Replay::Parts(parts) = self else {
            return None;
        };
        if !last {
            return Some(parts.clone());
        }
        let hop = NextHop::of(&parts.uri);
        match std::mem::replace(self, Replay::Taken(hop)) {
            Replay::Parts(parts) => Some(parts),
            Replay::Taken(_) => None,
        }
    }
}
