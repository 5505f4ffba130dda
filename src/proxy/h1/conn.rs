//! The client's own path: a connection, one exchange over it, and the body of
//! its answer, read in the request's own task (no connection task, no channel
//! between the two, no oneshot for the answer).

use super::decode::{Decoded, Decoder};
use super::framing::Framing;
use super::head::{self, Parsed};
use crate::error::BoxError;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How much room a read has at least (the buffer grows by this much).
const READ_CHUNK: usize = 8192;

/// A connection to an upstream: its socket and what was read but not used.
pub(super) struct Conn {
    io: TcpStream,
    read: BytesMut,
    /// The last request head written, its allocation kept for the next.
    write: Vec<u8>,
}

/// Where a connection goes back when its answer has been read whole.
pub(super) trait Home: Send + Sync {
    fn put_back_conn(&self, authority: Authority, conn: Conn);
}

impl Conn {
    pub(super) fn new(io: TcpStream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
        }
    }

    /// The socket, for hyper to take over.
    pub(super) fn into_io(self) -> TcpStream {
        self.io
    }

    /// Whether the upstream closed this idle connection or sent on it (an idle
    /// connection has nothing to say): then it cannot take a request. No system
    /// call unless the reactor saw the socket become readable.
    pub(super) fn is_stale(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut byte = [0; 1];
                !matches!(self.io.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 8 {
            self.read.reserve(READ_CHUNK);
        }
        // Through `AsyncRead`, not `try_read_buf`: a read shorter than the room
        // it had tells tokio the socket is drained (epoll and kqueue), so the
        // next read waits for the reactor instead of paying a system call to
        // learn `WouldBlock`. nginx reads the same way: two `recvfrom` per
        // exchange, not three.
        let read = tokio::io::AsyncReadExt::read_buf(&mut self.io, &mut self.read);
        std::pin::pin!(read).poll(cx)
    }
}

/// An error of the client itself (hyper's errors pass through as they are):
/// connecting failed, or the URI names no upstream. Its message is what the
/// default classifier reads, the same as hyper-util's connector says.
#[derive(Debug)]
pub(super) struct ClientError {
    pub(super) message: &'static str,
    pub(super) source: Option<BoxError>,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

pub(super) fn error(message: &'static str, source: impl Into<BoxError>) -> BoxError {
    Box::new(ClientError {
        message,
        source: Some(source.into()),
    })
}

/// A request without a body, as the own path sends it.
pub(super) struct Plain {
    pub(super) method: Method,
    pub(super) target: PathAndQuery,
    /// The `Host` to write first, when the fields hold none.
    pub(super) host: Option<HeaderValue>,
    pub(super) headers: HeaderMap,
    /// Whether the request asks to close its connection.
    pub(super) close: bool,
}

/// Sends `req` on `conn` and reads the head of its answer. The body is read as
/// the answer's body is polled; the connection goes `home` when it has been
/// read whole and the upstream keeps the connection.
pub(super) async fn exchange(
    mut conn: Conn,
    req: Plain,
    home: Arc<dyn Home>,
    authority: Authority,
) -> Result<Response<UpstreamClientBody>, BoxError> {
    head::encode_head(
        &mut conn.write,
        &req.method,
        &req.target,
        req.host.as_ref(),
        &req.headers,
    );
    // A request that asks to close its connection ends it whatever the answer says.
    let close = req.close;
    drop(req.headers);
    conn.io.write_all(&conn.write).await?;
    let head = loop {
        if !conn.read.is_empty() {
            match head::parse_head(&mut conn.read, &req.method)? {
                Parsed::Head(head) => break head,
                Parsed::Partial => {}
                Parsed::TooLarge => return Err(head::TOO_LARGE.into()),
            }
        }
        if std::future::poll_fn(|cx| conn.poll_fill(cx)).await? == 0 {
            return Err(head::incomplete().into());
        }
    };
    let mut res = Response::new(());
    *res.status_mut() = head.status;
    *res.version_mut() = head.version;
    *res.headers_mut() = head.headers;
    if let Some(reason) = head.reason {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
            res.extensions_mut().insert(reason);
        }
    }
    let home = (head.keep_alive && !close).then_some((home, authority));
    let body = match head.framing {
        // The whole body is here already (a small answer usually is): the
        // connection goes back before the answer is even forwarded.
        Framing::Length(n) if conn.read.len() as u64 >= n => {
            let data = conn.read.split_to(n as usize).freeze();
            go_home(conn, home);
            State::Full(Some(data).filter(|d| !d.is_empty()))
        }
        framing => State::Reading(Box::new(Reading {
            conn,
            decoder: Decoder::new(framing),
            home,
            delivered: false,
            failed: None,
        })),
    };
    Ok(res.map(|()| UpstreamClientBody {
        kind: Kind::Own(body),
    }))
}

/// A connection whose answer has been read whole goes `home`, if the upstream
/// keeps it and sent nothing after the answer.
fn go_home(conn: Conn, home: Option<(Arc<dyn Home>, Authority)>) {
    if let Some((home, authority)) = home {
        if conn.read.is_empty() {
            home.put_back_conn(authority, conn);
        }
    }
}

/// The body of an [`UpstreamClient`](crate::proxy::UpstreamClient)'s answer:
/// read by this crate's own HTTP/1.1 path, or hyper's (HTTP/2, TLS, requests
/// with a body, upgrades).
pub struct UpstreamClientBody {
    kind: Kind,
}

enum Kind {
    Hyper(hyper::body::Incoming),
    Own(State),
}

enum State {
    /// Read whole with the head (`None`: no more data).
    Full(Option<Bytes>),
    Reading(Box<Reading>),
    Done,
}

struct Reading {
    conn: Conn,
    decoder: Decoder,
    /// Where the connection goes when the body has been read whole, if the
    /// upstream keeps it.
    home: Option<(Arc<dyn Home>, Authority)>,
    /// Data went out since the body last waited for the socket.
    delivered: bool,
    /// The error that ends the body, held back for one poll (see `poll_frame`).
    failed: Option<io::Error>,
}

impl UpstreamClientBody {
    pub(crate) fn hyper(body: hyper::body::Incoming) -> Self {
        Self {
            kind: Kind::Hyper(body),
        }
    }
}

impl State {
    /// The body has been read whole: the connection goes home, if it may.
    fn finish(&mut self) {
        if let State::Reading(reading) = std::mem::replace(self, State::Done) {
            let Reading { conn, home, .. } = *reading;
            go_home(conn, home);
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let reading = match self {
            State::Full(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            State::Done => return Poll::Ready(None),
            State::Reading(reading) => reading,
        };
        loop {
            if let Some(err) = reading.failed.take() {
                *self = State::Done;
                return Poll::Ready(Some(Err(err.into())));
            }
            let decoded = match reading.decoder.decode(&mut reading.conn.read) {
                Ok(Decoded::More) => match reading.conn.poll_fill(cx) {
                    Poll::Pending => {
                        reading.delivered = false;
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(0)) => reading.decoder.eof(),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(err)) => Err(err),
                },
                decoded => decoded,
            };
            if reading.delivered && decoded.is_err() {
                // What came before the error is still to be sent on: hyper's
                // server drops what it has buffered when a body fails in the
                // same turn, so the error waits for one turn (the data is
                // flushed first, as when hyper's own client delivers a body).
                reading.failed = decoded.err();
                reading.delivered = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(match decoded {
                Ok(Decoded::Data(data)) => {
                    reading.delivered = true;
                    if reading.decoder.is_done() {
                        self.finish();
                    }
                    Some(Ok(Frame::data(data)))
                }
                Ok(Decoded::Trailers(trailers)) => {
                    self.finish();
                    Some(Ok(Frame::trailers(trailers)))
                }
                Ok(Decoded::End) => {
                    self.finish();
                    None
                }
                Ok(Decoded::More) => continue,
                Err(err) => {
                    // The connection goes with the body: it is out of step.
                    *self = State::Done;
                    Some(Err(err.into()))
                }
            });
        }
    }
}

impl Body for UpstreamClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Own(state) => state.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper(body) => body.is_end_stream(),
            Kind::Own(State::Full(data)) => data.is_none(),
            Kind::Own(State::Reading(reading)) => reading.decoder.is_done(),
            Kind::Own(State::Done) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper(body) => body.size_hint(),
            Kind::Own(State::Full(data)) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Own(State::Reading(reading)) => match reading.decoder.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Kind::Own(State::Done) => SizeHint::with_exact(0),
        }
    }
}

impl std::fmt::Debug for UpstreamClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Hyper(body) => f.debug_tuple("UpstreamClientBody").field(body).finish(),
            Kind::Own(_) => f.write_str("UpstreamClientBody::Own"),
        }
    }
}
