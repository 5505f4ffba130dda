//! The classifier a request carries down the stack.

use super::Classifier;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether any request of this process was ever given a classifier to carry.
/// Until one is, no layer looks for one: the default stack pays one load per
/// layer, not a lookup. Set before the first is inserted, so a layer that receives
/// such a request (handed over with its own synchronisation) sees it set.
static EVER_CARRIED: AtomicBool = AtomicBool::new(false);

fn carry(classifier: &Arc<Classifier>, extensions: &mut http::Extensions) {
    EVER_CARRIED.store(true, Ordering::Relaxed);
    extensions.insert(Carried(classifier.clone()));
}

/// The classifier a request carries down the stack, in its extensions: the first
/// layer that has a classifier of its own puts it there, so that every layer
/// below classifies with it too, and no default further in can shadow it.
#[derive(Clone)]
pub(crate) struct Carried(Arc<Classifier>);

impl Carried {
    /// The classifier a layer whose own is `own` classifies this request with:
    /// what the request carries from further out, then `own`. `None`: `own` alone
    /// (nothing is carried and `own` is the default), and whether the request
    /// carries it already.
    #[inline]
    fn resolved(
        own: &Arc<Classifier>,
        extensions: &http::Extensions,
    ) -> (Option<Arc<Classifier>>, bool) {
        if !EVER_CARRIED.load(Ordering::Relaxed) {
            let own = if own.is_default() {
                None
            } else {
                Some(own.clone())
            };
            return (own, false);
        }
        match extensions.get::<Carried>() {
            None if own.is_default() => (None, false),
            None => (Some(own.clone()), false),
            Some(Carried(outer)) if own.is_default() || Arc::ptr_eq(outer, own) => {
                (Some(outer.clone()), true)
            }
            Some(Carried(outer)) => (Some(Arc::new(outer.then(own))), false),
        }
    }

    /// [`read`](Self::read), and the request carries the result on for the layers
    /// below, unless `below_hold_own` says they hold `own` already (a
    /// [`GatewayLayer`](crate::GatewayLayer) gives every layer of its stack the same
    /// classifier) and the result is `own`.
    #[inline(always)]
    pub(crate) fn resolve(
        own: &Arc<Classifier>,
        extensions: &mut http::Extensions,
        below_hold_own: bool,
    ) -> Option<Arc<Classifier>> {
        if own.is_default() && !EVER_CARRIED.load(Ordering::Relaxed) {
            return None;
        }
        let (resolved, carried) = Self::resolved(own, extensions);
        if let Some(classifier) = &resolved {
            if !carried && Self::must_carry(classifier, own, below_hold_own) {
                carry(classifier, extensions);
            }
        }
        resolved
    }

    /// Whether the layers below must be told `classifier`.
    pub(crate) fn must_carry(
        classifier: &Arc<Classifier>,
        own: &Arc<Classifier>,
        below_hold_own: bool,
    ) -> bool {
        !below_hold_own || !Arc::ptr_eq(classifier, own)
    }

    /// The classifier this request is classified with by a layer whose own is
    /// `own`, for a layer with nothing of this crate's below it to tell.
    #[inline(always)]
    pub(crate) fn read(own: &Arc<Classifier>, extensions: &http::Extensions) -> Arc<Classifier> {
        if !EVER_CARRIED.load(Ordering::Relaxed) {
            return own.clone();
        }
        Self::resolved(own, extensions)
            .0
            .unwrap_or_else(|| own.clone())
    }

    /// Takes what the request carries out of `extensions`, resolved with `own`,
    /// for a layer that puts it back on every request it sends on (the retry
    /// layer: so a replayed request's extensions need no copy for it).
    #[inline(always)]
    pub(crate) fn take(
        own: &Arc<Classifier>,
        extensions: &mut http::Extensions,
    ) -> Option<Arc<Classifier>> {
        if own.is_default() && !EVER_CARRIED.load(Ordering::Relaxed) {
            return None;
        }
        let (resolved, carried) = Self::resolved(own, extensions);
        if carried {
            extensions.remove::<Carried>();
        }
        resolved
    }

    /// Puts `classifier` on a request sent on, unless the layers below hold it
    /// already (see [`resolve`](Self::resolve)).
    #[inline]
    pub(crate) fn put(
        classifier: Option<&Arc<Classifier>>,
        own: &Arc<Classifier>,
        below_hold_own: bool,
        extensions: &mut http::Extensions,
    ) {
        if let Some(classifier) = classifier {
            if Self::must_carry(classifier, own, below_hold_own) {
                carry(classifier, extensions);
            }
        }
    }
}

impl fmt::Debug for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Carried").field(&self.0).finish()
    }
}
