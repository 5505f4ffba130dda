//! Request bodies to send, and collecting the bodies that come back.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Duration;

/// Collects a body, giving up after five seconds so a bug cannot hang the suite.
pub async fn collect<B>(body: B) -> Result<Bytes, B::Error>
where
    B: http_body::Body,
{
    tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("body neither ended nor failed within 5 s")
        .map(|c| c.to_bytes())
}

/// A request body of chunks, with or without a known length.
pub struct Upload {
    chunks: std::collections::VecDeque<Bytes>,
    len: Option<u64>,
}

impl Upload {
    /// `size` bytes of a repeating pattern in `chunk`-byte chunks.
    pub fn pattern(size: usize, chunk: usize, known_length: bool) -> Self {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let chunks = data.chunks(chunk).map(Bytes::copy_from_slice).collect();
        Self {
            chunks,
            len: known_length.then_some(size as u64),
        }
    }

    /// The same chunk `count` times (zero-copy), of unknown length.
    pub fn repeat(chunk: Bytes, count: usize) -> Self {
        Self {
            chunks: std::iter::repeat_n(chunk, count).collect(),
            len: None,
        }
    }

    pub fn empty() -> Self {
        Self {
            chunks: Default::default(),
            len: Some(0),
        }
    }
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.chunks
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.len {
            Some(len) => http_body::SizeHint::with_exact(len),
            None => http_body::SizeHint::default(),
        }
    }
}
