//! HTTP/1.1 heads on the wire for the client's own path (RFC 9112): a request
//! head written, a response head read (its body's framing is `framing`'s, the
//! body itself `decode`'s).
//!
//! Only what that path needs: requests without a body (the body is known to be
//! empty before the head goes out, so there is nothing to write while reading),
//! no upgrade, no CONNECT. Everything else goes through hyper. The limits and
//! the errors are hyper's, so the classifier answers a broken upstream the same
//! whichever path the request took:
//!
//! - a head over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields is "message head
//!   is too large" ([`HeaderSectionTooLarge`](crate::ErrorKind::HeaderSectionTooLarge));
//! - a head that does not parse, or a `Content-Length` that is not one number,
//!   is an `InvalidData` I/O error ([`ProtocolError`](crate::ErrorKind::ProtocolError));
//! - the connection closing before a whole head, or before the body's length,
//!   is an `UnexpectedEof` ([`ConnectionTerminated`](crate::ErrorKind::ConnectionTerminated));
//! - bad chunking is an `InvalidData` in the body (`decode`) ([`TransferCoding`](crate::ErrorKind::TransferCoding)).

use super::framing::{Framed, Framing, Lengths, ends_with_chunked, framing};
use crate::proxy::headers::has_token;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};
use std::io;
use std::mem::MaybeUninit;

/// The longest response head read (hyper's default buffer limit).
pub(super) const MAX_HEAD: usize = 8192 + 4096 * 100;

/// The most fields a response head may have (hyper's default).
pub(super) const MAX_HEADERS: usize = 100;

/// Writes the request head: `METHOD target HTTP/1.1`, the fields, the blank
/// line. Every part is already checked (`Method`, `PathAndQuery`, `HeaderValue`):
/// no CR, LF or NUL can be written.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &PathAndQuery,
    host: Option<&HeaderValue>,
    headers: &HeaderMap,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    match target.as_str() {
        "" => out.push(b'/'),
        target => out.extend_from_slice(target.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head, read.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    /// The reason phrase when it is not the status's canonical one.
    pub(super) reason: Option<Bytes>,
    pub(super) headers: HeaderMap,
    pub(super) framing: Framing,
    /// Whether the connection can carry another request after this answer.
    pub(super) keep_alive: bool,
}

/// The message of a head too large, hyper's: the classifier reads it.
pub(super) const TOO_LARGE: &str = "message head is too large";

pub(super) fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The connection closed before the whole message came.
pub(super) fn incomplete() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed before message completed",
    )
}

/// What parsing the start of `buf` gave.
#[derive(Debug)]
pub(super) enum Parsed {
    /// A final answer's head; its bytes are gone from `buf`.
    Head(Head),
    /// Not a whole head yet.
    Partial,
    /// The head is over a limit.
    TooLarge,
}

/// Parses a response head to a request of `method` from the start of `buf`,
/// skipping interim (1xx) answers. A `101` is an error here: this path never
/// asks for an upgrade.
pub(super) fn parse_head(buf: &mut BytesMut, method: &Method) -> io::Result<Parsed> {
    loop {
        // Not zeroed: httparse writes the fields it returns.
        let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut res, buf, &mut fields) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Ok(Parsed::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Ok(Parsed::TooLarge),
            Err(_) => return Err(invalid("invalid HTTP response head")),
        };
        if len > MAX_HEAD {
            return Ok(Parsed::TooLarge);
        }
        let code = res.code.unwrap_or_default();
        let status = StatusCode::from_u16(code).map_err(|_| invalid("invalid HTTP status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(invalid("101 Switching Protocols without an upgrade asked"));
        }
        if status.is_informational() {
            // 100 Continue, 103 Early Hints: the final answer follows.
            drop(buf.split_to(len));
            continue;
        }
        let version = match res.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        let reason = res
            .reason
            .filter(|r| Some(*r) != status.canonical_reason())
            .map(|r| Bytes::copy_from_slice(r.as_bytes()));
        // Where each field's name and value lie in the head, so the values can
        // share the head's bytes once they are split off `buf`.
        // (The head is at most `MAX_HEAD` bytes: every offset fits a `u32`.)
        let base = buf.as_ptr() as usize;
        let at = |part: *const u8| (part as usize - base) as u32;
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let count = res.headers.len();
        for (span, field) in spans.iter_mut().zip(res.headers.iter()) {
            let (name, value) = (at(field.name.as_ptr()), at(field.value.as_ptr()));
            *span = (
                name,
                field.name.len() as u32,
                value,
                field.value.len() as u32,
            );
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut keep_alive = version == Version::HTTP_11;
        let mut close = false;
        // The framing fields, noted on the way (no lookups after).
        let mut lengths = Lengths::None;
        let mut chunked = None;
        for &(name_at, name_len, value_at, value_len) in &spans[..count] {
            let (name_at, value_at) = (name_at as usize, value_at as usize);
            let name = &head[name_at..name_at + name_len as usize];
            let name =
                HeaderName::from_bytes(name).map_err(|_| invalid("invalid HTTP header name"))?;
            let value = head.slice(value_at..value_at + value_len as usize);
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|_| invalid("invalid HTTP header value"))?;
            if name == header::CONTENT_LENGTH {
                lengths.add(&value);
            } else if name == header::TRANSFER_ENCODING {
                // The last coding of the last field decides.
                chunked = Some(ends_with_chunked(&value));
            } else if name == header::CONNECTION {
                // Once any `Connection` line asks to close, a later
                // `keep-alive` does not undo it.
                if close || has_token(&value, "close") {
                    close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
                // The connection's own options, acted on here: a field of
                // nothing else is not passed on (a proxy would only strip it,
                // RFC 9110 §7.6.1). One naming other fields stays, for them.
                if names_only_options(&value) {
                    continue;
                }
            }
            headers.append(name, value);
        }
        let framed = Framed { lengths, chunked };
        let (framing, reusable) =
            framing(status, version, method, framed, &mut headers).map_err(invalid)?;
        return Ok(Parsed::Head(Head {
            status,
            version,
            reason,
            headers,
            framing,
            keep_alive: keep_alive && reusable,
        }));
    }
}

/// Whether a `Connection` field of `headers` says `close`.
pub(super) fn asks_to_close(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONNECTION).iter();
    values.any(|value| has_token(value, "close"))
}

/// Whether a `Connection` value holds `keep-alive` and `close` alone (and at
/// least one of them): options of the connection, naming no field.
fn names_only_options(value: &HeaderValue) -> bool {
    let mut any = false;
    let only = value.as_bytes().split(|b| *b == b',').all(|part| {
        let part = part.trim_ascii();
        any |= !part.is_empty();
        part.is_empty()
            || part.eq_ignore_ascii_case(b"keep-alive")
            || part.eq_ignore_ascii_case(b"close")
    });
    only && any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8], method: Method) -> io::Result<Parsed> {
        parse_head(&mut BytesMut::from(bytes), &method)
    }

    fn parsed(bytes: &[u8]) -> Head {
        match head(bytes, Method::GET) {
            Ok(Parsed::Head(head)) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_head_is_written_with_its_fields_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.example"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        let target = PathAndQuery::from_static("/p?q=1");
        encode_head(&mut out, &Method::DELETE, &target, None, &headers);
        assert_eq!(
            out,
            b"DELETE /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        // A `Host` given apart goes first.
        headers.remove(header::HOST);
        let host = HeaderValue::from_static("b.example:8080");
        encode_head(&mut out, &Method::GET, &target, Some(&host), &headers);
        assert_eq!(
            out,
            b"GET /p?q=1 HTTP/1.1\r\nhost: b.example:8080\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let res = |fields: &str| parsed(format!("HTTP/1.1 200 OK\r\n{fields}\r\n").as_bytes());
        assert_eq!(res("content-length: 5\r\n").framing, Framing::Length(5));
        assert_eq!(res("content-length: 5, 5\r\n").framing, Framing::Length(5));
        assert_eq!(
            res("transfer-encoding: chunked\r\n").framing,
            Framing::Chunked
        );
        assert!(res("transfer-encoding: chunked\r\n").keep_alive);
        assert_eq!(res("transfer-encoding: gzip\r\n").framing, Framing::Close);
        assert_eq!(res("").framing, Framing::Close);
        assert!(
            !res("").keep_alive,
            "a close-delimited body ends the connection"
        );
        // Both: chunked wins, the length goes, and so does the connection.
        let both = res("content-length: 3\r\ntransfer-encoding: chunked\r\n");
        assert_eq!(both.framing, Framing::Chunked);
        assert!(!both.headers.contains_key(header::CONTENT_LENGTH));
        assert!(!both.keep_alive);
        let no_body = parsed(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n");
        assert_eq!(no_body.framing, Framing::Length(0));
        match head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            Method::HEAD,
        ) {
            Ok(Parsed::Head(h)) => assert_eq!(h.framing, Framing::Length(0)),
            other => panic!("{other:?}"),
        }
        for bad in [
            "content-length: 5, 6\r\n",
            "content-length: +5\r\n",
            "content-length: x\r\n",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\n{bad}\r\n");
            let err = head(text.as_bytes(), Method::GET).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        let res = |text: &str| parsed(text.as_bytes()).keep_alive;
        assert!(res("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!res(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!res(
            "HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!res("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(res(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        // A byte past ASCII in another member (obs-text) does not hide the
        // `close`: the connection is not reused.
        let head = b"HTTP/1.1 200 OK\r\nconnection: close, x-caf\xe9\r\ncontent-length: 0\r\n\r\n";
        assert!(!parsed(head).keep_alive);
    }

    #[test]
    fn a_connection_field_of_options_alone_is_acted_on_and_not_passed_on() {
        let head = |field: &str| {
            parsed(format!("HTTP/1.1 200 OK\r\n{field}\r\ncontent-length: 0\r\n\r\n").as_bytes())
        };
        for (field, keep_alive) in [
            ("connection: keep-alive", true),
            ("Connection: Keep-Alive ", true),
            ("connection: close", false),
            ("connection: keep-alive, close", false),
        ] {
            let head = head(field);
            assert!(!head.headers.contains_key(header::CONNECTION), "{field}");
            assert_eq!(head.keep_alive, keep_alive, "{field}");
            assert!(head.headers.contains_key(header::CONTENT_LENGTH), "{field}");
        }
        // One that names a field stays whole, for the proxy to strip what it names.
        let named = head("connection: keep-alive, x-trace");
        let values: Vec<_> = named.headers.get_all(header::CONNECTION).iter().collect();
        assert_eq!(values, ["keep-alive, x-trace"]);
        assert!(named.keep_alive);
        // An empty one names nothing and asks nothing: passed on as it came.
        assert!(
            head("connection: ")
                .headers
                .contains_key(header::CONNECTION)
        );
    }

    #[test]
    fn interim_answers_are_skipped_and_a_stray_101_is_an_error() {
        let text = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parsed(text).status, StatusCode::CREATED);
        let partial = head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", Method::GET);
        assert!(matches!(partial, Ok(Parsed::Partial)));
        let upgrade = head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET);
        assert_eq!(upgrade.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_head_over_a_limit_is_too_large_and_garbage_is_invalid() {
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "x-a: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            head(many.as_bytes(), Method::GET),
            Ok(Parsed::TooLarge)
        ));
        let long = format!("HTTP/1.1 200 OK\r\nx-a: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(
            head(long.as_bytes(), Method::GET),
            Ok(Parsed::TooLarge)
        ));
        let err = head(b"HTTP/1.1 2x0 OK\r\n\r\n", Method::GET).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = head(b"SSH-2.0-OpenSSH\r\n\r\n", Method::GET).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_reason_phrase_is_kept_only_when_it_is_not_the_canonical_one() {
        let text = |reason: &str| format!("HTTP/1.1 200 {reason}\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(parsed(text("OK").as_bytes()).reason, None);
        assert_eq!(
            parsed(text("Fine").as_bytes()).reason.as_deref(),
            Some(&b"Fine"[..])
        );
    }
}
