//! The request head kept for further attempts.
//!
//! Every request that may be retried keeps its head, and most never need it: the
//! first attempt succeeds. So the head is kept in the cheapest form to make and to
//! drop, not the one a retry sends: the header fields are packed into one buffer
//! (one allocation, no reference count touched, one free), and a retry unpacks
//! them into a new map. A clone of the `HeaderMap` costs two allocations and a
//! reference count taken and given back per field value.

use crate::error::NextHop;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Extensions, Method, Request, Uri, Version};

/// The request head kept for further attempts or, once the last attempt took it
/// (or none was allowed), only the upstream's authority, for the errors.
pub(super) enum Replay {
    Kept(KeptHead),
    Taken(Option<NextHop>),
}

impl Replay {
    pub(super) fn kept(&self) -> Option<&KeptHead> {
        match self {
            Replay::Kept(head) => Some(head),
            Replay::Taken(_) => None,
        }
    }

    pub(super) fn next_hop(&self) -> Option<NextHop> {
        match self {
            Replay::Kept(head) => NextHop::of(&head.uri),
            Replay::Taken(hop) => *hop,
        }
    }

    /// The parts for the next attempt; the last one leaves only the next hop.
    pub(super) fn next(&mut self, last: bool) -> Option<Parts> {
        let Replay::Kept(head) = self else {
            return None;
        };
        let parts = head.parts();
        if last {
            *self = Replay::Taken(NextHop::of(&head.uri));
        }
        parts
    }
}

/// A copy of a request head for further attempts.
pub(super) struct KeptHead {
    pub(super) method: Method,
    pub(super) uri: Uri,
    version: Version,
    headers: PackedHeaders,
    /// A copy of the extensions, unless the only ones were those the retry layer
    /// keeps aside itself (and puts back on every attempt).
    extensions: Option<Extensions>,
}

impl KeptHead {
    /// A copy of `parts`; their extensions are copied only if there are more
    /// than `kept` (those the caller keeps and puts back itself).
    pub(super) fn of(parts: &Parts, kept: usize) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: PackedHeaders::of(&parts.headers),
            extensions: (parts.extensions.len() > kept).then(|| parts.extensions.clone()),
        }
    }

    /// The first value of the header field `name` (for the retry events).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(super) fn header(&self, name: &HeaderName) -> Option<&[u8]> {
        self.headers
            .fields()
            .find(|f| f.name == name.as_str().as_bytes())
            .map(|f| f.value)
    }

    /// The parts for an attempt. `None` only if a field no longer parses, which
    /// a field taken from a `HeaderMap` always does.
    fn parts(&self) -> Option<Parts> {
        let mut req = Request::new(());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.unpack()?;
        if let Some(extensions) = &self.extensions {
            *req.extensions_mut() = extensions.clone();
        }
        Some(req.into_parts().0)
    }
}

/// Header fields packed into one buffer, in the map's order: for each value, its
/// name's length, its own length (the top bit set for a sensitive value), the
/// name, the value.
struct PackedHeaders {
    buf: Vec<u8>,
    /// The map's distinct names, for the capacity of the unpacked map.
    names: usize,
}

const WORD: usize = std::mem::size_of::<usize>();
const SENSITIVE: usize = 1 << (usize::BITS - 1);

struct Field<'a> {
    name: &'a [u8],
    value: &'a [u8],
    sensitive: bool,
}

impl PackedHeaders {
    fn of(map: &HeaderMap) -> Self {
        let size = map
            .iter()
            .map(|(name, value)| 2 * WORD + name.as_str().len() + value.len())
            .sum();
        let mut buf = Vec::with_capacity(size);
        for (name, value) in map {
            let (name, bytes) = (name.as_str().as_bytes(), value.as_bytes());
            // A slice's length is at most `isize::MAX`: the top bit is free.
            let flag = if value.is_sensitive() { SENSITIVE } else { 0 };
            buf.extend_from_slice(&name.len().to_ne_bytes());
            buf.extend_from_slice(&(bytes.len() | flag).to_ne_bytes());
            buf.extend_from_slice(name);
            buf.extend_from_slice(bytes);
        }
        Self {
            buf,
            names: map.keys_len(),
        }
    }

    fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        let mut rest = &self.buf[..];
        std::iter::from_fn(move || {
            let (name_len, tail) = rest.split_first_chunk::<WORD>()?;
            let (value_len, tail) = tail.split_first_chunk::<WORD>()?;
            let (name_len, value_len) = (
                usize::from_ne_bytes(*name_len),
                usize::from_ne_bytes(*value_len),
            );
            let (name, tail) = tail.split_at_checked(name_len)?;
            let (value, tail) = tail.split_at_checked(value_len & !SENSITIVE)?;
            rest = tail;
            Some(Field {
                name,
                value,
                sensitive: value_len & SENSITIVE != 0,
            })
        })
    }

    fn unpack(&self) -> Option<HeaderMap> {
        let mut map = HeaderMap::try_with_capacity(self.names).ok()?;
        for field in self.fields() {
            let name = HeaderName::from_bytes(field.name).ok()?;
            let mut value = HeaderValue::from_bytes(field.value).ok()?;
            value.set_sensitive(field.sensitive);
            map.try_append(name, value).ok()?;
        }
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&'static str, &[u8])]) -> Parts {
        let mut req = Request::builder()
            .method(Method::PUT)
            .uri("http://up:8080/a?b=c");
        for (name, value) in headers {
            req = req.header(*name, HeaderValue::from_bytes(value).unwrap());
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_kept_head_comes_back_field_for_field_in_the_maps_order() {
        let mut parts = head(&[
            ("accept", b"text/html"),
            ("x-custom", b"one"),
            ("accept", b"*/*"),
            ("cookie", b""),
            ("x-custom", b"two"),
            ("x-latin", b"caf\xe9 \t obs-text"),
            ("authorization", b"Bearer secret"),
        ]);
        parts
            .headers
            .get_mut("authorization")
            .unwrap()
            .set_sensitive(true);
        let kept = KeptHead::of(&parts, 0);
        let again = kept.parts().unwrap();
        assert_eq!(again.method, Method::PUT);
        assert_eq!(again.uri, parts.uri);
        assert_eq!(again.version, parts.version);
        let fields = |m: &HeaderMap| {
            m.iter()
                .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&again.headers), fields(&parts.headers));
        assert!(again.headers["authorization"].is_sensitive());
        assert!(!again.headers["accept"].is_sensitive());
        assert_eq!(kept.header(&http::header::ACCEPT), Some(&b"text/html"[..]));
        assert_eq!(kept.header(&http::header::HOST), None);
    }

    #[test]
    fn a_head_without_fields_packs_into_nothing() {
        let kept = KeptHead::of(&head(&[]), 0);
        assert!(kept.headers.buf.is_empty());
        assert!(kept.parts().unwrap().headers.is_empty());
    }

    #[test]
    fn extensions_are_copied_only_beyond_those_kept_aside() {
        #[derive(Clone)]
        struct Tenant;
        let mut parts = head(&[]);
        parts.extensions.insert(Tenant);
        assert!(KeptHead::of(&parts, 1).extensions.is_none());
        let kept = KeptHead::of(&parts, 0);
        assert!(kept.parts().unwrap().extensions.get::<Tenant>().is_some());
    }

    #[test]
    fn the_last_attempt_leaves_only_the_next_hop() {
        let mut replay = Replay::Kept(KeptHead::of(&head(&[("a", b"1")]), 0));
        assert!(replay.next(false).is_some());
        assert!(replay.kept().is_some());
        assert_eq!(replay.next(true).unwrap().headers["a"], "1");
        assert!(replay.kept().is_none() && replay.next(false).is_none());
        assert_eq!(replay.next_hop().unwrap().port(), Some(8080));
    }
}
