//! The durations (`http.client.request.duration` per attempt,
//! `tower_bad_gateway.exchange.duration` per exchange) and the cache of their
//! keys, one per label set, so that a record costs a lookup and no allocation.

use super::{EXCHANGE_DURATION, METADATA, REQUEST_DURATION, status_label};
use crate::error::NextHop;
use http::{Method, StatusCode};
use metrics::{Key, Label, SharedString};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

/// What tells one exchange's labels from another's, compactly: the key of the
/// cache of `http.client.request.duration` keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Labels {
    name: Static,
    method: Static,
    next_hop: Option<NextHop>,
    status: Option<StatusCode>,
    error: Option<Static>,
}

/// A `'static` label value, told apart by where it is, not by its text: every
/// one comes from a table of constants (the metric names, the methods, the error
/// tokens), so one address is one text, and the cache's lookup hashes a pointer
/// instead of the bytes. Two copies of one text would only be two cached keys.
#[derive(Clone, Copy)]
struct Static(&'static str);

impl PartialEq for Static {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Static {}

impl std::hash::Hash for Static {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.as_ptr() as usize);
        state.write_usize(self.0.len());
    }
}

/// At most this many label sets are kept built (the labels are bounded sets: an
/// endpoint set's replicas times the statuses they answer, a few hundred bytes
/// each); past it, keys are built per record.
const MAX_CACHED_KEYS: usize = 16 * 1024;

/// A multiply-rotate hasher (as rustc's `FxHasher`): the cache's keys are small
/// and trusted (bounded label values), so no need for SipHash's cost.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap = HashMap<Labels, &'static Key, BuildHasherDefault<Fx>>;
/// Read on every exchange without a lock (an `arc-swap` snapshot: no shared
/// counter to contend on across cores); written, copy on write, only for a
/// label set not seen before.
type KeyCache = arc_swap::ArcSwap<KeyMap>;

/// One exchange, as [`BadGateway`](crate::BadGateway) saw it, in
/// `tower_bad_gateway.exchange.duration`: `status` when the upstream answered,
/// `error` (a token) when the exchange failed or the answer was rejected.
pub(crate) fn exchange(
    method: &Method,
    status: Option<StatusCode>,
    error: Option<&'static str>,
    duration: Duration,
) {
    record_duration(EXCHANGE_DURATION, method, None, status, error, duration);
}

/// One attempt, to the endpoint `next_hop` names, in
/// `http.client.request.duration`.
pub(crate) fn attempt(
    method: &'static str,
    next_hop: Option<&NextHop>,
    status: Option<StatusCode>,
    error: Option<&'static str>,
    duration: Duration,
) {
    record_duration_named(REQUEST_DURATION, method, next_hop, status, error, duration);
}

fn record_duration(
    name: &'static str,
    method: &Method,
    next_hop: Option<&NextHop>,
    status: Option<StatusCode>,
    error: Option<&'static str>,
    duration: Duration,
) {
    let method = crate::otel::method(method);
    record_duration_named(name, method, next_hop, status, error, duration);
}

/// The key of each label set is built (allocated and hashed) once and kept, so
/// a record costs a cache lookup, not two allocations and a hash of the labels,
/// with or without a recorder: at most [`MAX_CACHED_KEYS`] keys (a few hundred
/// bytes each) live for the rest of the process.
fn record_duration_named(
    name: &'static str,
    method: &'static str,
    next_hop: Option<&NextHop>,
    status: Option<StatusCode>,
    error: Option<&'static str>,
    duration: Duration,
) {
    static KEYS: OnceLock<KeyCache> = OnceLock::new();
    let labels = Labels {
        name: Static(name),
        method: Static(method),
        next_hop: next_hop.copied(),
        status,
        error: error.map(Static),
    };
    let keys = KEYS.get_or_init(KeyCache::default);
    let cached = keys.load().get(&labels).copied();
    let record = |key: &Key| {
        metrics::with_recorder(|r| {
            r.register_histogram(key, &METADATA)
                .record(duration.as_secs_f64());
        });
    };
    if let Some(key) = cached {
        return record(key);
    }
    let key = exchange_key(&labels);
    if keys.load().len() >= MAX_CACHED_KEYS {
        return record(&key);
    }
    let key: &'static Key = Box::leak(Box::new(key));
    // Two threads may race to add the same labels: the first key stays, and the
    // other is leaked once (bounded by the racing threads, not by traffic).
    keys.rcu(|map| {
        let mut map = KeyMap::clone(map);
        if map.len() < MAX_CACHED_KEYS {
            map.entry(labels).or_insert(key);
        }
        map
    });
    record(key);
}

/// The duration key for `labels`.
fn exchange_key(l: &Labels) -> Key {
    let mut labels = Vec::with_capacity(5);
    labels.push(Label::from_static_parts("http.request.method", l.method.0));
    let (next_hop, status, error) = (l.next_hop.as_ref(), l.status, l.error);
    if let Some(host) = next_hop.and_then(NextHop::host) {
        labels.push(Label::new("server.address", host.to_owned()));
        if let Some(port) = next_hop.and_then(NextHop::port) {
            labels.push(Label::new("server.port", port.to_string()));
        }
    }
    if let Some(status) = status {
        labels.push(Label::new(
            "http.response.status_code",
            status_label(status),
        ));
    }
    let error: Option<SharedString> = match (error.map(|e| e.0), status) {
        (Some(token), _) => Some(SharedString::const_str(token)),
        (None, Some(s)) if s.is_client_error() || s.is_server_error() => Some(status_label(s)),
        _ => None,
    };
    if let Some(error) = error {
        labels.push(Label::new("error.type", error));
    }
    Key::from_parts(l.name.0, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use std::sync::{Arc, Mutex};

    /// Counts the records of each histogram, by its key's labels.
    #[derive(Default)]
    struct Records(Arc<Mutex<Vec<String>>>);

    struct Recorded {
        key: String,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl HistogramFn for Recorded {
        fn record(&self, _: f64) {
            self.log.lock().unwrap().push(self.key.clone());
        }
    }

    impl Recorder for Records {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let labels: Vec<String> = key.labels().map(|l| l.value().to_owned()).collect();
            let key = format!("{} {}", key.name(), labels.join(" "));
            Histogram::from_arc(Arc::new(Recorded {
                key,
                log: self.0.clone(),
            }))
        }
    }

    /// Twelve label sets in turn, each recorded twice in a row, all of it twice
    /// over: each record goes to its own series, whether its key was built for
    /// it or found in the cache.
    #[test]
    fn each_record_goes_to_its_own_labels_through_the_key_cache() {
        let recorder = Records::default();
        let log = recorder.0.clone();
        let hop = NextHop::of(&"http://10.0.0.1:8080/".parse().unwrap());
        let statuses = [200, 201, 202, 203, 204, 206].map(|s| StatusCode::from_u16(s).unwrap());
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..2 {
                for status in statuses {
                    // The second time, both keys come from the cache.
                    for _ in 0..2 {
                        attempt("GET", hop.as_ref(), Some(status), None, Duration::ZERO);
                        exchange(&Method::GET, Some(status), None, Duration::ZERO);
                    }
                }
            }
        });
        let log = log.lock().unwrap();
        let expected: Vec<String> = (0..2)
            .flat_map(|_| statuses.iter().flat_map(|s| [*s, *s]))
            .flat_map(|status| {
                let code = status.as_str().to_owned();
                [
                    format!("{REQUEST_DURATION} GET 10.0.0.1 8080 {code}"),
                    format!("{EXCHANGE_DURATION} GET {code}"),
                ]
            })
            .collect();
        assert_eq!(*log, expected);
    }
}
