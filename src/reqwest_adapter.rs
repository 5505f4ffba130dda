//! The reqwest adapters, generated for each supported reqwest version.

/// Defines `ReqwestService` and its future in the module `$module`, for the reqwest
/// crate named `$krate`; `$alias` is a hidden doctest line that names the
/// dev-dependency of that version `reqwest`, as a user's `Cargo.toml` does.
macro_rules! reqwest_adapter {
    ($module:ident, $krate:ident, $alias:literal) => {
        /// A `reqwest::Client` as a `Service<http::Request<B>>`, answering
        /// `http::Response<reqwest::Body>`. Cheap to clone (reqwest's client is an `Arc`).
        #[derive(Debug, Clone, Default)]
        pub struct ReqwestService {
            client: ::$krate::Client,
        }

        impl ReqwestService {
            /// Wraps `client`, with its connection pool and settings.
            pub fn new(client: ::$krate::Client) -> Self {
                Self { client }
            }

            /// The wrapped client.
            pub fn client(&self) -> &::$krate::Client {
                &self.client
            }
        }

        type Pending = <::$krate::Client as Service<::$krate::Request>>::Future;

        pin_project! {
            /// Response future of [`ReqwestService`].
            pub struct ResponseFuture {
                #[pin]
                state: State,
            }
        }

        pin_project! {
            #[project = StateProj]
            enum State {
                Sending {
                    #[pin]
                    pending: Pending,
                },
                Invalid {
                    error: Option<::$krate::Error>,
                },
            }
        }

        impl std::fmt::Debug for ResponseFuture {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ReqwestService::ResponseFuture").finish_non_exhaustive()
            }
        }

        /// Sends a reqwest request through `svc` (the layers you put around a
        /// [`ReqwestService`]) and gives back a `reqwest::Response`: code written
        /// against reqwest keeps its types, and gets the layers' retries, timeouts
        /// and typed errors. The error is the layers' (a
        /// [`GatewayError`](crate::GatewayError) from a
        /// [`RetryLayer`](crate::retry::RetryLayer)), or the request's own if it
        /// cannot be turned into an `http::Request`.
        ///
        /// ```
        #[doc = concat!("use tower_bad_gateway::", stringify!($module), "::{ReqwestService, execute};")]
        /// use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
        /// use tower_bad_gateway::GatewayError;
        /// use tower::ServiceBuilder;
        ///
        #[doc = $alias]
        /// # #[tokio::main(flavor = "current_thread")] async fn main() {
        /// let client = reqwest::Client::new();
        /// let mut api = ServiceBuilder::new()
        ///     .layer(RetryLayer::new(RetryPolicy::new().max_attempts(1)))
        ///     .service(ReqwestService::new(client.clone()));
        /// // Nothing listens on port 9 of loopback: the connection is refused.
        /// let request = client.get("http://127.0.0.1:9/").build().unwrap();
        /// let err = execute(&mut api, request).await.unwrap_err();
        /// let err = err.downcast_ref::<GatewayError>().unwrap();
        /// assert_eq!(err.kind(), tower_bad_gateway::ErrorKind::ConnectionRefused);
        /// # }
        /// ```
        pub async fn execute<S, B>(
            svc: &mut S,
            request: ::$krate::Request,
        ) -> Result<::$krate::Response, BoxError>
        where
            S: Service<http::Request<::$krate::Body>, Response = http::Response<B>>,
            S::Error: Into<BoxError>,
            B: http_body::Body + Send + Sync + 'static,
            B::Data: Into<Bytes>,
            B::Error: Into<BoxError>,
        {
            let request = http::Request::<::$krate::Body>::try_from(request)?;
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let response = svc.call(request).await.map_err(Into::into)?;
            Ok(::$krate::Response::from(response.map(::$krate::Body::wrap)))
        }

        impl Future for ResponseFuture {
            type Output = Result<http::Response<::$krate::Body>, ::$krate::Error>;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                match self.project().state.project() {
                    StateProj::Sending { pending } => pending.poll(cx).map_ok(http::Response::from),
                    StateProj::Invalid { error } => match error.take() {
                        Some(error) => Poll::Ready(Err(error)),
                        // Polled again after completion.
                        None => Poll::Pending,
                    },
                }
            }
        }

        impl<B> Service<http::Request<B>> for ReqwestService
        where
            B: http_body::Body + Send + Sync + 'static,
            B::Data: Into<Bytes>,
            B::Error: Into<BoxError>,
        {
            type Response = http::Response<::$krate::Body>;
            type Error = ::$krate::Error;
            type Future = ResponseFuture;

            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Service::<::$krate::Request>::poll_ready(&mut self.client, cx)
            }

            fn call(&mut self, req: http::Request<B>) -> Self::Future {
                let state = match ::$krate::Request::try_from(req.map(::$krate::Body::wrap)) {
                    Ok(req) => State::Sending {
                        pending: self.client.call(req),
                    },
                    // An invalid URL, for one: reqwest calls it a builder error, classified
                    // as a proxy configuration error.
                    Err(error) => State::Invalid { error: Some(error) },
                };
                ResponseFuture { state }
            }
        }
    };
}

pub(crate) use reqwest_adapter;
