//! gRPC-Web (`PROTOCOL-WEB.md`): its status travels in a trailer frame at the end
//! of the body (flag `0x80`, a 4-byte length, then `name:value\r\n` lines), which
//! `-text` callers receive base64-encoded.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

/// Builds the trailer frame that carries `trailers` (`grpc-status`,
/// `grpc-message`), base64-encoded for a `-text` caller.
pub(crate) fn trailer_frame(trailers: &HeaderMap, text: bool) -> Bytes {
    let mut block = Vec::with_capacity(64);
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.push(b':');
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + block.len());
    frame.put_u8(0x80);
    frame.put_u32(u32::try_from(block.len()).unwrap_or(u32::MAX));
    frame.extend_from_slice(&block);
    if text {
        Bytes::from(base64(&frame))
    } else {
        frame.freeze()
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Follows the message framing of a gRPC-Web response body as it streams, to
/// know whether it stands at a message boundary, where a trailer frame may go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Framing {
    /// The body is base64 (`-text`).
    text: bool,
    /// The 5-byte prefix of the message being read, as far as it came.
    prefix: [u8; 5],
    prefix_len: u8,
    /// Payload bytes of the current message still to come.
    remaining: u64,
    /// For `-text`: base64 characters of a group not yet complete.
    quad: [u8; 4],
    quad_len: u8,
    /// Something could not be followed (bad base64): never at a boundary again.
    lost: bool,
}

impl Framing {
    /// A body at its start; `text`: it is base64 (`-text`).
    pub(crate) fn new(text: bool) -> Self {
        Self {
            text,
            ..Self::default()
        }
    }

    /// Whether the body is base64 (`-text`).
    pub(crate) fn is_text(&self) -> bool {
        self.text
    }

    /// Takes the next bytes of the body as the caller receives them.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.lost {
            return;
        }
        if !self.text {
            self.feed_binary(chunk);
            return;
        }
        for &c in chunk {
            if c.is_ascii_whitespace() {
                continue;
            }
            self.quad[usize::from(self.quad_len)] = c;
            self.quad_len += 1;
            if self.quad_len == 4 {
                self.quad_len = 0;
                match decode_quad(self.quad) {
                    Some((bytes, n)) => self.feed_binary(&bytes[..n]),
                    None => {
                        self.lost = true;
                        return;
                    }
                }
            }
        }
    }

    fn feed_binary(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take =
                    usize::try_from(self.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                self.remaining -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            self.prefix[usize::from(self.prefix_len)] = bytes[0];
            self.prefix_len += 1;
            bytes = &bytes[1..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.remaining = u64::from(len);
            }
        }
    }

    /// Whether everything received so far is whole messages.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.lost && self.prefix_len == 0 && self.remaining == 0 && self.quad_len == 0
    }
}

/// Decodes one group of four base64 characters: up to three bytes.
fn decode_quad(quad: [u8; 4]) -> Option<([u8; 3], usize)> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    };
    let pads = quad.iter().rev().take_while(|&&c| c == b'=').count();
    if pads > 2 {
        return None;
    }
    let mut n = 0u32;
    for &c in &quad[..4 - pads] {
        n = n << 6 | value(c)?;
    }
    n <<= 6 * pads as u32;
    let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    Some((bytes, 3 - pads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trailers() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("14"));
        t
    }

    #[test]
    fn the_trailer_frame_is_flagged_and_length_prefixed() {
        let frame = trailer_frame(&trailers(), false);
        assert_eq!(&frame[..], b"\x80\x00\x00\x00\x10grpc-status:14\r\n");
        assert_eq!(
            &trailer_frame(&trailers(), true)[..],
            &base64(&frame).into_bytes()[..]
        );
        assert_eq!(base64(b"\x80\x00\x00\x00\x10"), "gAAAABA=");
    }

    #[test]
    fn framing_follows_messages_split_anywhere() {
        // Two messages: 3 bytes, then 0 bytes.
        let body = b"\x00\x00\x00\x00\x03abc\x00\x00\x00\x00\x00";
        for split in 0..body.len() {
            let mut framing = Framing::new(false);
            framing.feed(&body[..split]);
            let boundary = matches!(split, 0 | 8 | 13);
            assert_eq!(framing.at_boundary(), boundary, "after {split} bytes");
            framing.feed(&body[split..]);
            assert!(framing.at_boundary());
        }
    }

    #[test]
    fn text_framing_decodes_base64_split_anywhere() {
        let body = base64(b"\x00\x00\x00\x00\x03abc");
        for split in 0..body.len() {
            let mut framing = Framing::new(true);
            framing.feed(&body.as_bytes()[..split]);
            assert!(!framing.at_boundary() || split == 0, "after {split} chars");
            framing.feed(&body.as_bytes()[split..]);
            assert!(framing.at_boundary());
        }
        let mut framing = Framing::new(true);
        framing.feed(b"!!!!");
        assert!(!framing.at_boundary(), "bad base64 is never a boundary");
    }
}
