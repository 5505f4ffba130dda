//! A response body's framing (RFC 9112 §6.3): from the head's `Content-Length`
//! and `Transfer-Encoding`, its status and the request's method, how the body
//! ends and whether the connection can carry another request after it.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};

/// How a response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length` bytes (zero: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// The framing fields of a head.
pub(super) struct Framed {
    pub(super) lengths: Lengths,
    /// `Transfer-Encoding`: whether its last coding is `chunked`, if it came.
    pub(super) chunked: Option<bool>,
}

/// The `Content-Length` values of a head.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Lengths {
    None,
    /// Every value so far says this.
    One(u64),
    /// A value is not a number, or two differ.
    Invalid,
}

impl Lengths {
    pub(super) fn add(&mut self, value: &HeaderValue) {
        // One number, as nearly every upstream sends it; else a list (`5, 5`).
        match (digits(value.as_bytes()), value.to_str()) {
            (Some(n), _) => self.add_one(Some(n)),
            (None, Ok(list)) => {
                for part in list.split(',') {
                    self.add_one(digits(part.trim().as_bytes()));
                }
            }
            (None, Err(_)) => *self = Lengths::Invalid,
        }
    }

    fn add_one(&mut self, n: Option<u64>) {
        *self = match (*self, n) {
            (Lengths::Invalid, _) | (_, None) => Lengths::Invalid,
            (Lengths::One(l), Some(n)) if l != n => Lengths::Invalid,
            (_, Some(n)) => Lengths::One(n),
        };
    }
}

/// A response body's framing (RFC 9112 §6.3), and whether the connection can be
/// used again after it; `Err`: why the head is invalid.
pub(super) fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    framed: Framed,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), &'static str> {
    if status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD
    {
        return Ok((Framing::Length(0), true));
    }
    if let Some(chunked) = framed.chunked {
        if version == Version::HTTP_10 {
            return Err("Transfer-Encoding in an HTTP/1.0 response");
        }
        // Both framings: Transfer-Encoding wins, the length goes (a forwarded
        // message must not carry both) and so does the connection, which may
        // have been split differently by whoever sent it (§6.3, item 3).
        let both = framed.lengths != Lengths::None;
        if both {
            headers.remove(header::CONTENT_LENGTH);
        }
        return Ok(match chunked {
            true => (Framing::Chunked, !both),
            false => (Framing::Close, false),
        });
    }
    match framed.lengths {
        Lengths::None => Ok((Framing::Close, false)),
        Lengths::One(n) => Ok((Framing::Length(n), true)),
        Lengths::Invalid => Err("invalid Content-Length"),
    }
}

/// Whether the last transfer coding of `value` is `chunked`.
pub(super) fn ends_with_chunked(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// Decimal digits only (no sign, unlike `u64::from_str`).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}
