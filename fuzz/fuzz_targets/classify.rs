//! The classifier over arbitrary error chains: io errors of any kind wrapping each
//! other, with arbitrary messages (including the ones it matches on). Never panics,
//! and always settles on a kind whose phase and `request_sent` agree with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io;
use tower_bad_gateway::classify::Classifier;
use tower_bad_gateway::{Phase, RequestSent};

const KINDS: &[io::ErrorKind] = &[
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::TimedOut,
    io::ErrorKind::UnexpectedEof,
    io::ErrorKind::InvalidData,
    io::ErrorKind::InvalidInput,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::NotConnected,
    io::ErrorKind::HostUnreachable,
    io::ErrorKind::Other,
];

const MESSAGES: &[&str] = &[
    "dns error",
    "tcp connect error",
    "invalid URL, scheme is missing",
    "certificate",
    "tls handshake",
];

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let mut error: Option<io::Error> = None;
    for chunk in rest.chunks(9).take(40) {
        let kind = KINDS[usize::from(chunk[0]) % KINDS.len()];
        let text = match chunk.get(1) {
            Some(&m) if m < 64 => MESSAGES[usize::from(m) % MESSAGES.len()].to_owned(),
            _ => String::from_utf8_lossy(chunk.get(2..).unwrap_or_default()).into_owned(),
        };
        error = Some(match error.take() {
            None => io::Error::new(kind, text),
            Some(inner) if chunk[0] & 1 == 0 => io::Error::new(kind, inner),
            Some(inner) => io::Error::other(format!("{text}: {inner}")),
        });
    }
    let Some(error) = error else { return };
    let phase = if head & 1 == 0 {
        Phase::AwaitHead
    } else {
        Phase::ReadBody
    };
    let err = Classifier::new().classify(&error, phase);
    if phase == Phase::ReadBody {
        assert_eq!(err.phase(), Phase::ReadBody);
        assert_eq!(err.request_sent(), RequestSent::Yes);
    }
    let _ = Classifier::new().classify_owned(Box::new(error), phase);
});
