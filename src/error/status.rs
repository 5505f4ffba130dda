//! The statuses a failure may be answered with: [`ErrorStatus`].

use http::StatusCode;
use std::fmt;

/// An HTTP status a failure can be answered with: a client error (4xx) or a server
/// error (5xx), never anything a client or a cache could take for a success.
///
/// A status outside that range is refused where it is made, with an
/// [`InvalidErrorStatus`] that says why, rather than dropped later.
///
/// ```
/// use tower_bad_gateway::ErrorStatus;
/// use http::StatusCode;
///
/// assert_eq!(ErrorStatus::SERVICE_UNAVAILABLE.get(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(ErrorStatus::try_from(529).unwrap().get().as_u16(), 529);
/// let refused = ErrorStatus::try_from(StatusCode::OK).unwrap_err();
/// assert_eq!(refused.to_string(), "200 is not an error status: a failure is answered with 4xx or 5xx");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorStatus(StatusCode);

impl ErrorStatus {
    /// `500 Internal Server Error`.
    pub const INTERNAL_SERVER_ERROR: Self = Self(StatusCode::INTERNAL_SERVER_ERROR);
    /// `502 Bad Gateway`.
    pub const BAD_GATEWAY: Self = Self(StatusCode::BAD_GATEWAY);
    /// `503 Service Unavailable`.
    pub const SERVICE_UNAVAILABLE: Self = Self(StatusCode::SERVICE_UNAVAILABLE);
    /// `504 Gateway Timeout`.
    pub const GATEWAY_TIMEOUT: Self = Self(StatusCode::GATEWAY_TIMEOUT);
    /// `429 Too Many Requests`.
    pub const TOO_MANY_REQUESTS: Self = Self(StatusCode::TOO_MANY_REQUESTS);

    /// `status`, if it is a 4xx or 5xx status.
    pub fn new(status: StatusCode) -> Result<Self, InvalidErrorStatus> {
        if status.is_client_error() || status.is_server_error() {
            Ok(Self(status))
        } else {
            Err(InvalidErrorStatus(status.as_u16()))
        }
    }

    /// The status.
    pub fn get(self) -> StatusCode {
        self.0
    }
}

impl TryFrom<StatusCode> for ErrorStatus {
    type Error = InvalidErrorStatus;

    fn try_from(status: StatusCode) -> Result<Self, Self::Error> {
        Self::new(status)
    }
}

impl TryFrom<u16> for ErrorStatus {
    type Error = InvalidErrorStatus;

    fn try_from(status: u16) -> Result<Self, Self::Error> {
        StatusCode::from_u16(status)
            .map_err(|_| InvalidErrorStatus(status))
            .and_then(Self::new)
    }
}

impl From<ErrorStatus> for StatusCode {
    fn from(status: ErrorStatus) -> Self {
        status.0
    }
}

impl PartialEq<StatusCode> for ErrorStatus {
    fn eq(&self, other: &StatusCode) -> bool {
        self.0 == *other
    }
}

impl fmt::Debug for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A status refused as the answer to a failure: it is not a 4xx or 5xx status.
///
/// ```
/// use tower_bad_gateway::ErrorStatus;
/// assert!(ErrorStatus::try_from(302).is_err());
/// assert!(ErrorStatus::try_from(1000).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidErrorStatus(u16);

impl fmt::Display for InvalidErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not an error status: a failure is answered with 4xx or 5xx",
            self.0
        )
    }
}

impl std::error::Error for InvalidErrorStatus {}
