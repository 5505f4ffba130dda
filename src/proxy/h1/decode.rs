//! The body decoders of the own path (RFC 9112 §6.3, §7.1): a length, chunked
//! with its trailers, or until the connection closes, each taking what it can
//! from the connection's read buffer. Bad chunking is an `InvalidData` I/O
//! error ([`TransferCoding`](crate::ErrorKind::TransferCoding)); a body cut
//! short an `UnexpectedEof` (what hyper's decoders say too).

use super::framing::Framing;
use super::head::{MAX_HEADERS, invalid};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::io;

/// The longest chunk-size line, extensions included (hyper allows 16 KiB of
/// extensions over a whole body; one line is plenty at 4 KiB).
const MAX_CHUNK_LINE: usize = 4096;

/// The largest trailer section (hyper's default).
const MAX_TRAILERS: usize = 16 * 1024;

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
                Ok(Decoded::Data(take(buf, left)))
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

/// As much of the `left` bytes still to come as `buf` holds, `left` counted down.
fn take(buf: &mut BytesMut, left: &mut u64) -> Bytes {
    let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    *left -= n as u64;
    buf.split_to(n).freeze()
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
            Chunk::Data(mut left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let data = take(buf, &mut left);
                *state = match left {
                    0 => Chunk::DataEnd,
                    left => Chunk::Data(left),
                };
                return Ok(Decoded::Data(data));
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
    use super::super::head::parse_head;
    use super::*;
    use http::Method;

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
