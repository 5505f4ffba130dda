//! What the integration tests share, by role.

mod bodies;
mod clients;
mod clock;
mod dns;
mod prometheus;
mod through;
pub mod tls;
mod tracing_capture;
mod upstreams;

pub use bodies::{Upload, collect};
pub use clients::{Counting, TestBody, get, hyper_client};
pub use clock::{Frozen, PATIENCE, eventually, real_sleep, within};
pub use dns::{DnsServer, Zone};
pub use prometheus::prometheus_value;
pub use through::{through, through_with_timeout};
pub use tracing_capture::EventLog;
pub use upstreams::{After, Recorder, Replica, Script, Upstream, blackhole_port, refused_port};
