use super::handler::Handler;
use crate::error::BoxError;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_service::Service;

/// How long [`serve`] keeps a connection that has no request in flight, unless
/// [`Server::idle_timeout`] says otherwise: one whose client sends nothing,
/// trickles a request head (slowloris), or idles between requests is closed
/// after between this and twice this (its connection's watch looks every
/// `IDLE_TIMEOUT`; nginx's `client_header_timeout` and `keepalive_timeout` are
/// 60 s and 75 s). A request in flight, its body streaming either way however
/// slowly, keeps its connection. An idle HTTP/2 connection is closed the same
/// way, without a `GOAWAY` (no stream is open to lose; its client connects
/// again when it next has a call).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`serve`] and [`serve_threads`] serve, for what their defaults do not
/// fit: today, how long a connection without a request in flight is kept.
///
/// Behind a load balancer that keeps idle connections to its backends (an AWS
/// ALB: 60 s by default), keep them longer than it does, or it may send a
/// request on a connection this side is closing, and answer its client 502:
///
/// ```no_run
/// use std::time::Duration;
/// use tower_bad_gateway::proxy::Server;
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// # let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// Server::new()
///     .idle_timeout(Duration::from_secs(75))
///     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Server {
    idle_timeout: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// [`serve`]'s settings: connections idle for [`IDLE_TIMEOUT`] closed.
    pub fn new() -> Self {
        Self {
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// Closes a connection without a request in flight after between `timeout`
    /// and twice that (default [`IDLE_TIMEOUT`]); at least a millisecond. A
    /// request in flight keeps its connection however long it takes.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// [`serve`] with these settings.
    pub async fn serve<S, B>(
        self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let _tick = Tick::start();
        // Every connection holds a sender; all dropped: all closed.
        let (open, mut closed) = tokio::sync::mpsc::channel::<()>(1);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        if !is_connection_error(&err) {
                            // Out of file descriptors, most likely: let some close.
                            #[cfg(feature = "tracing")]
                            tracing::warn!(error = %err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let idle_timeout = self.idle_timeout;
            let (handler, activity) = Handler::new(&service, peer);
            let open = open.clone();
            let mut stopping = stopping.clone();
            drop(tokio::spawn(async move {
                // HTTP/1.1, or HTTP/2 with prior knowledge (gRPC, h2c), as the client starts.
                let builder = Builder::new(hyper_util::rt::TokioExecutor::new());
                let conn = builder
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), handler);
                let mut conn = std::pin::pin!(conn);
                let stop = async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                };
                // A clock read per look, none per request: each request only marks
                // that it began, and counts itself in flight until its answer's body
                // is done with.
                let idle = async move {
                    loop {
                        tokio::time::sleep(idle_timeout).await;
                        if activity.idle_since_last_look() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = conn.as_mut() => {}
                    // Dropping the connection closes it; nothing was under way.
                    () = idle => {}
                    () = stop => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
                drop(open);
            }));
        }
        drop(listener);
        let _ = stop.send(true);
        drop(open);
        let _ = closed.recv().await;
        Ok(())
    }

    /// [`serve_threads`] with these settings.
    pub fn serve_threads<S, B, M, D, F>(
        self,
        addr: std::net::SocketAddr,
        threads: usize,
        make: M,
        on_bound: impl FnOnce(std::net::SocketAddr),
        shutdown: D,
    ) -> std::io::Result<()>
    where
        M: Fn() -> S + Send + Sync + 'static,
        D: Fn() -> F + Send + Sync + 'static,
        F: Future<Output = ()>,
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let threads = if cfg!(unix) { threads.max(1) } else { 1 };
        let bind = |addr: std::net::SocketAddr| -> std::io::Result<tokio::net::TcpSocket> {
            let socket = match addr {
                std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            Ok(socket)
        };
        let first = bind(addr)?;
        let bound = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(bind(bound)?);
        }
        let make = std::sync::Arc::new((make, shutdown));
        // Each thread says when its listener listens: only then is `on_bound` told.
        let (listening, listened) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let handles: Vec<_> = sockets
            .into_iter()
            .map(|socket| {
                let make = make.clone();
                let listening = listening.clone();
                std::thread::spawn(move || -> std::io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        let listener = match socket.listen(1024) {
                            Ok(listener) => listener,
                            Err(err) => {
                                let _ = listening
                                    .send(Err(std::io::Error::new(err.kind(), err.to_string())));
                                return Err(err);
                            }
                        };
                        let _ = listening.send(Ok(()));
                        drop(listening);
                        let (make, shutdown) = &*make;
                        self.serve(listener, make(), shutdown()).await
                    })
                })
            })
            .collect();
        drop(listening);
        // Every thread reports once (or drops its sender when its runtime fails).
        if listened
            .iter()
            .take(threads)
            .all(|listened| listened.is_ok())
        {
            on_bound(bound);
        }
        let mut result = Ok(());
        for handle in handles {
            let outcome = handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

/// Serves `service` over HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC clients
/// and h2c speak it) on `listener` (HTTP/1.1 with upgrades, each request
/// carrying its [`ClientAddr`](super::ClientAddr)) until `shutdown` completes; then stops accepting,
/// lets every connection finish the request it is on, and returns once all have
/// closed. An axum `Router` serves here too.
///
/// A connection without a request in flight for [`IDLE_TIMEOUT`] (to twice
/// that; [`Server::idle_timeout`] sets another) is closed: no answer is lost,
/// as none is under way.
///
/// A plain hyper server loop, without a router in front: the cheapest way in.
///
/// ```no_run
/// use tower_bad_gateway::proxy::{ClientAddr, serve};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let hello = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
///     let who = req.extensions().get::<ClientAddr>().map(|c| c.0.to_string());
///     Ok::<_, std::convert::Infallible>(http::Response::new(who.unwrap_or_default()))
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// serve(listener, hello, async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Server::new().serve(listener, service, shutdown).await
}

fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
    )
}

/// Completes on Ctrl-C or (on Unix) SIGTERM: the `shutdown` of [`serve`] for a
/// gateway that drains before it stops. Prints nothing; logs at `INFO`.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    #[cfg(feature = "tracing")]
    tracing::info!("shutting down: finishing requests in flight");
}

/// Serves over HTTP/1.1 and HTTP/2 on `addr` from `threads` threads, each with a
/// current-thread tokio runtime and a listener of its own on the same address
/// (`SO_REUSEPORT`: the kernel spreads connections over them), each serving the
/// service `make` builds for it, as [`serve`] does, until Ctrl-C or SIGTERM
/// ([`shutdown_signal`]). No task ever moves between threads, so no wake-up
/// crosses one: nginx's model, one worker per core. Build what must be shared
/// (an [`EndpointSet`](crate::upstreams::EndpointSet): its health is one state)
/// once, outside `make`, and clone it in; build the client inside, so that its
/// connections live on the thread that uses them.
///
/// `on_bound` is told the address bound (its port, when `addr` has port 0) once
/// every thread listens on it.
/// Blocks until every thread has drained; returns the first bind error at once.
/// Unix only (elsewhere: one thread, one listener).
pub fn serve_threads<S, B, M, D, F>(
    addr: std::net::SocketAddr,
    threads: usize,
    make: M,
    on_bound: impl FnOnce(std::net::SocketAddr),
    shutdown: D,
) -> std::io::Result<()>
where
    M: Fn() -> S + Send + Sync + 'static,
    D: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = ()>,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Server::new().serve_threads(addr, threads, make, on_bound, shutdown)
}

/// A timer due at most a second from now, for as long as a server serves.
///
/// tokio's timer wheel wakes its own driver (a write to its eventfd, and one more
/// `epoll_wait`) when a new timer is due before whatever the driver went to sleep
/// for. Between bursts a server has nothing due for up to its idle timeout, so
/// every burst's first request (its attempt timeout) would cost those two
/// system calls: 0.39 per request end to end (`strace -c`). With this timer the
/// driver never sleeps longer than a second, and a timeout of a second or more
/// never wakes it.
struct Tick(tokio::task::JoinHandle<()>);

impl Tick {
    fn start() -> Self {
        Self(tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
            }
        }))
    }
}

impl Drop for Tick {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tick is a task of its own that ends when its server stops serving
    /// (a server future dropped unfinished included).
    #[tokio::test]
    async fn the_tick_ends_with_its_server() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let tick = Tick::start();
        assert_eq!(metrics.num_alive_tasks(), 1);
        drop(tick);
        for _ in 0..100 {
            if metrics.num_alive_tasks() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the tick outlived its server");
    }
}
