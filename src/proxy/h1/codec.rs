//! HTTP/1.1 on the wire for the client's own path (RFC 9112): a request head
//! written, a response head read, a response body's framing decided and decoded.
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
//! - bad chunking is an `InvalidData` in the body ([`TransferCoding`](crate::ErrorKind::TransferCoding)).

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

/// The longest chunk-size line, extensions included (hyper allows 16 KiB of
/// extensions over a whole body; one line is plenty at 4 KiB).
const MAX_CHUNK_LINE: usize = 4096;

/// The largest trailer section (hyper's default).
const MAX_TRAILERS: usize = 16 * 1024;

/// Writes the request head: `METHOD target HTTP/1.1`, the fields, the blank
/// line. Every part is already checked (`Method`, `PathAndQuery`, `HeaderValue`):
/// no CR, LF or NUL can be written.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &PathAndQuery,
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
            }
            headers.append(name, value);
        }
        let framed = Framed { lengths, chunked };
        let (framing, reusable) = framing(status, version, method, framed, &mut headers)?;
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

/// The framing fields of a head.
struct Framed {
    lengths: Lengths,
    /// `Transfer-Encoding`: whether its last coding is `chunked`, if it came.
    chunked: Option<bool>,
}

/// The `Content-Length` values of a head.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lengths {
    None,
    /// Every value so far says this.
    One(u64),
    /// A value is not a number, or two differ.
    Invalid,
}

impl Lengths {
    fn add(&mut self, value: &HeaderValue) {
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
/// used again after it.
fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    framed: Framed,
    headers: &mut HeaderMap,
) -> io::Result<(Framing, bool)> {
    if status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD
    {
        return Ok((Framing::Length(0), true));
    }
    if let Some(chunked) = framed.chunked {
        if version == Version::HTTP_10 {
            return Err(invalid("Transfer-Encoding in an HTTP/1.0 response"));
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
        Lengths::Invalid => Err(invalid("invalid Content-Length")),
    }
}

/// Whether the last transfer coding of `value` is `chunked`.
fn ends_with_chunked(value: &HeaderValue) -> bool {
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

/// Whether a `Connection` field of `headers` says `close`.
pub(super) fn asks_to_close(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONNECTION).iter();
    values.any(|value| has_token(value, "close"))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}

/// What a body decoder gave from the buffer.
#[derive(Debug)]
pub(super) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body ended.
    End,
    /// More bytes are needed.
    More,
}

/// Decodes one body from a connection's read buffer.
#[derive(Debug)]
pub(super) enum Decoder {
    Length(u64),
    Close,
    Chunked(Chunk),
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this much left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields or the final CRLF.
    Trailers,
    Done,
}

impl Decoder {
    pub(super) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunk::Size),
            Framing::Close => Self::Close,
        }
    }

    /// Whether the body has ended (nothing more is read).
    pub(super) fn is_done(&self) -> bool {
        matches!(self, Self::Length(0) | Self::Chunked(Chunk::Done))
    }

    /// What the body's length is known to be.
    pub(super) fn remaining(&self) -> Option<u64> {
        match self {
            Self::Length(n) => Some(*n),
            Self::Chunked(Chunk::Done) => Some(0),
            _ => None,
        }
    }

    /// Takes what it can from `buf`.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Decoded> {
        match self {
            Self::Length(0) => Ok(Decoded::End),
            Self::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            Self::Close if buf.is_empty() => Ok(Decoded::More),
            Self::Close => Ok(Decoded::Data(buf.split().freeze())),
            Self::Chunked(state) => decode_chunked(state, buf),
        }
    }

    /// The connection closed: the end of a close-delimited body, an error for
    /// any other.
    pub(super) fn eof(&mut self) -> io::Result<Decoded> {
        match self {
            Self::Close => Ok(Decoded::End),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of file before message length reached",
            )),
        }
    }
}

fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> io::Result<Decoded> {
    loop {
        match *state {
            Chunk::Size => {
                let Some(end) = line_end(buf, MAX_CHUNK_LINE)? else {
                    return Ok(Decoded::More);
                };
                let size = chunk_size(&buf[..end])?;
                drop(buf.split_to(end + 2));
                *state = match size {
                    0 => Chunk::Trailers,
                    n => Chunk::Data(n),
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                *state = match left - n as u64 {
                    0 => Chunk::DataEnd,
                    left => Chunk::Data(left),
                };
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid("no CRLF after chunk data"));
                }
                drop(buf.split_to(2));
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                    drop(buf.split_to(2));
                    *state = Chunk::Done;
                    return Ok(Decoded::End);
                }
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let len = match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, _))) => len,
                    Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                        return Err(invalid("trailer section too large"));
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                    Err(_) => return Err(invalid("invalid trailer section")),
                };
                if len > MAX_TRAILERS {
                    return Err(invalid("trailer section too large"));
                }
                let mut trailers = HeaderMap::new();
                for field in fields.iter().take_while(|f| !f.name.is_empty()) {
                    let name = HeaderName::from_bytes(field.name.as_bytes());
                    let value = HeaderValue::from_bytes(field.value);
                    match (name, value) {
                        (Ok(name), Ok(value)) => drop(trailers.append(name, value)),
                        _ => return Err(invalid("invalid trailer field")),
                    }
                }
                drop(buf.split_to(len));
                *state = Chunk::Done;
                return Ok(Decoded::Trailers(trailers));
            }
            Chunk::Done => return Ok(Decoded::End),
        }
    }
}

/// Where the first CRLF of `buf` is; an error when a bare LF comes first or no
/// CRLF comes within `limit` bytes.
fn line_end(buf: &[u8], limit: usize) -> io::Result<Option<usize>> {
    match buf.iter().take(limit).position(|&b| b == b'\n') {
        Some(0) => Err(invalid("bare LF in chunked body")),
        Some(lf) if buf[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(invalid("bare LF in chunked body")),
        None if buf.len() >= limit => Err(invalid("chunk-size line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line's size: hex digits, then optional whitespace and
/// extensions (ignored, RFC 9112 §7.1.1).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let hex = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if hex == 0 {
        return Err(invalid("invalid chunk size"));
    }
    let rest = &line[hex..];
    let rest = rest.trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') || rest.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(invalid("invalid chunk size line"));
    }
    line[..hex].iter().try_fold(0u64, |n, &b| {
        let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
        n.checked_mul(16)
            .and_then(|n| n.checked_add(digit))
            .ok_or_else(|| invalid("chunk size overflows"))
    })
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
        encode_head(&mut out, &Method::DELETE, &target, &headers);
        assert_eq!(
            out,
            b"DELETE /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
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

    /// Decodes `input` fed `step` bytes at a time.
    fn chunked(input: &[u8], step: usize) -> io::Result<(Vec<u8>, Option<HeaderMap>)> {
        let mut decoder = Decoder::new(Framing::Chunked);
        let (mut buf, mut body, mut trailers, mut fed) = (BytesMut::new(), Vec::new(), None, 0);
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => return Ok((body, trailers)),
                Decoded::More if fed == input.len() => return decoder.eof().map(|_| (body, None)),
                Decoded::More => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_split_with_their_trailers() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-sum: 9\r\n\r\n";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, trailers) = chunked(input, step).unwrap();
            assert_eq!(body, b"hello, world", "step {step}");
            assert_eq!(trailers.unwrap()["x-sum"], "9", "step {step}");
        }
        let (body, trailers) = chunked(b"3 \r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!((&body[..], trailers), (&b"abc"[..], None));
    }

    /// Random bytes, and valid heads and bodies with random bytes changed, never
    /// panic the parser or a decoder (whatever they return).
    #[test]
    fn no_input_panics_the_parser_or_the_decoders() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No\r\ntransfer-encoding: chunked\r\n\r\n",
            b"5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        ];
        for round in 0..20_000 {
            let mut input = match round % 4 {
                3 => (0..next() % 64).map(|_| next() as u8).collect::<Vec<u8>>(),
                i => seeds[i as usize].to_vec(),
            };
            for _ in 0..1 + next() % 4 {
                let len = input.len().max(1) as u64;
                match next() % 3 {
                    0 if !input.is_empty() => input[(next() % len) as usize] = next() as u8,
                    1 => input.insert((next() % len) as usize % (input.len() + 1), next() as u8),
                    _ => input.truncate((next() % len) as usize),
                }
            }
            let method = if round % 7 == 0 {
                Method::HEAD
            } else {
                Method::GET
            };
            let _ = parse_head(&mut BytesMut::from(&input[..]), &method);
            for framing in [Framing::Chunked, Framing::Length(7), Framing::Close] {
                let mut decoder = Decoder::new(framing);
                let mut buf = BytesMut::from(&input[..]);
                for _ in 0..input.len() + 2 {
                    match decoder.decode(&mut buf) {
                        Ok(Decoded::End) | Err(_) => break,
                        Ok(Decoded::More) => {
                            let _ = decoder.eof();
                            break;
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    #[test]
    fn bad_chunking_is_invalid_data_and_a_cut_body_is_an_unexpected_eof() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"5 5\r\nhello\r\n",
        ] {
            let err = chunked(bad, 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert_eq!(
            chunked(long.as_bytes(), 64).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let cut = chunked(b"5\r\nhel", 2).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        let mut length = Decoder::new(Framing::Length(5));
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert!(matches!(length.decode(&mut buf), Ok(Decoded::Data(d)) if d == "hel"));
        assert_eq!(
            length.eof().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(matches!(
            Decoder::new(Framing::Close).eof(),
            Ok(Decoded::End)
        ));
    }
}
