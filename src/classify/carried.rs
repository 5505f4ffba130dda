//! The classifier a request carries down the stack.

use super::Classifier;
use std::fmt;
use std::sync::Arc;

/// The classifier a request carries down the stack, in its extensions: the first
/// layer that has a classifier of its own puts it there, so that every layer
/// below classifies with it too, and no default further in can shadow it.
#[derive(Clone)]
pub(crate) struct Carried(Arc<Classifier>);

impl Carried {
    /// The classifier a layer whose own is `own` classifies this request with:
    /// what the request carries from further out, then `own`. The request then
    /// carries that on, for the layers below. `None`: `own` alone (nothing is
    /// carried and `own` is the default, the common case, which costs one lookup).
    pub(crate) fn resolve(
        own: &Arc<Classifier>,
        extensions: &mut http::Extensions,
    ) -> Option<Arc<Classifier>> {
        match extensions.get::<Carried>() {
            None if own.is_default() => None,
            None => {
                extensions.insert(Carried(own.clone()));
                Some(own.clone())
            }
            Some(Carried(outer)) if own.is_default() || Arc::ptr_eq(outer, own) => {
                Some(outer.clone())
            }
            Some(Carried(outer)) => {
                let both = Arc::new(outer.then(own));
                extensions.insert(Carried(both.clone()));
                Some(both)
            }
        }
    }

    /// Takes what the request carries out of `extensions`, resolved with `own`
    /// as [`resolve`](Self::resolve) does, for a layer that puts it back on every
    /// request it sends on (the retry layer: so a replayed request's extensions
    /// need no copy for it).
    pub(crate) fn take(
        own: &Arc<Classifier>,
        extensions: &mut http::Extensions,
    ) -> Option<Arc<Classifier>> {
        let resolved = Self::resolve(own, extensions);
        if resolved.is_some() {
            extensions.remove::<Carried>();
        }
        resolved
    }

    /// Puts `classifier` on a request sent on.
    pub(crate) fn put(classifier: Option<&Arc<Classifier>>, extensions: &mut http::Extensions) {
        if let Some(classifier) = classifier {
            extensions.insert(Carried(classifier.clone()));
        }
    }
}

impl fmt::Debug for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Carried").field(&self.0).finish()
    }
}
