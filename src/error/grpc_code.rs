use std::fmt;

macro_rules! grpc_codes {
    ($($(#[doc = $doc:literal])+ $name:ident = $value:literal, $upper:literal;)+) => {
        /// A gRPC status code (gRPC `statuscodes.md`).
        ///
        /// ```
        /// use tower_bad_gateway::GrpcCode;
        /// assert_eq!(GrpcCode::Unavailable.as_u8(), 14);
        /// assert_eq!(GrpcCode::from_u8(4), Some(GrpcCode::DeadlineExceeded));
        /// assert_eq!(GrpcCode::Unavailable.name(), "UNAVAILABLE");
        /// assert_eq!(GrpcCode::from_u8(17), None);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum GrpcCode {
            $($(#[doc = $doc])+ $name = $value,)+
        }

        impl GrpcCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [GrpcCode] = &[$(GrpcCode::$name,)+];

            /// The code for `value`, if it is one (0 to 16).
            pub const fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $($value => Some(GrpcCode::$name),)+
                    _ => None,
                }
            }

            /// The code's number.
            pub const fn as_u8(self) -> u8 {
                self as u8
            }

            /// The code's decimal text, as sent in `grpc-status`.
            pub const fn as_str(self) -> &'static str {
                match self { $(GrpcCode::$name => stringify!($value),)+ }
            }

            /// The code's name in the gRPC spec, e.g. `UNAVAILABLE`.
            pub const fn name(self) -> &'static str {
                match self { $(GrpcCode::$name => $upper,)+ }
            }
        }
    };
}

grpc_codes! {
    /// Not an error.
    Ok = 0, "OK";
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1, "CANCELLED";
    /// An unknown error.
    Unknown = 2, "UNKNOWN";
    /// The client specified an invalid argument.
    InvalidArgument = 3, "INVALID_ARGUMENT";
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4, "DEADLINE_EXCEEDED";
    /// Some requested entity was not found.
    NotFound = 5, "NOT_FOUND";
    /// The entity a client tried to create already exists.
    AlreadyExists = 6, "ALREADY_EXISTS";
    /// The caller may not perform the operation.
    PermissionDenied = 7, "PERMISSION_DENIED";
    /// Some resource has been exhausted (a quota, a message size limit).
    ResourceExhausted = 8, "RESOURCE_EXHAUSTED";
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9, "FAILED_PRECONDITION";
    /// The operation was aborted (a concurrency conflict).
    Aborted = 10, "ABORTED";
    /// The operation was attempted past the valid range.
    OutOfRange = 11, "OUT_OF_RANGE";
    /// The operation is not implemented or supported.
    Unimplemented = 12, "UNIMPLEMENTED";
    /// An internal error: an invariant the system expects is broken.
    Internal = 13, "INTERNAL";
    /// The service is currently unavailable; the call can be retried.
    Unavailable = 14, "UNAVAILABLE";
    /// Unrecoverable data loss or corruption.
    DataLoss = 15, "DATA_LOSS";
    /// The request has no valid authentication credentials.
    Unauthenticated = 16, "UNAUTHENTICATED";
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::GrpcCode;

    #[test]
    fn codes_round_trip_through_their_numbers_and_text() {
        for (i, &code) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.as_u8()), i);
            assert_eq!(GrpcCode::from_u8(code.as_u8()), Some(code));
            assert_eq!(code.as_str(), i.to_string());
        }
        assert_eq!(GrpcCode::from_u8(17), None);
    }
}
