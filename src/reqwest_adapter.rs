//! The reqwest adapters, generated for each supported reqwest version.

/// Defines `ReqwestService` and its future for the reqwest crate named `$krate`.
macro_rules! reqwest_adapter {
    ($krate:ident) => {
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
