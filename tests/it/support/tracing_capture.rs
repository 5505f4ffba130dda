//! Capturing this crate's `tracing` events in a test.

use std::sync::Arc;

/// Records this crate's `tracing` events on the current thread (a
/// `#[tokio::test]` runs its tasks there), as `field=value` lines.
pub struct EventLog {
    events: Arc<std::sync::Mutex<Vec<String>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl EventLog {
    pub fn install() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        // tracing decides whether a callsite is enabled once, when it is first hit,
        // over the live dispatchers; with exactly one live it asks the hitting
        // thread's default instead. So a test on another thread (no subscriber)
        // hitting a callsite first, while this log is the only dispatcher, would
        // disable it for this log too. A second dispatcher, alive for the whole run,
        // makes every decision ask all of them.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
        let events: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let subscriber = tracing_subscriber::registry().with(EventRecorder(events.clone()));
        let guard = tracing::subscriber::set_default(subscriber);
        Self {
            events,
            _guard: guard,
        }
    }

    pub fn messages(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// The lines recorded so far and from now on, readable from another task.
    pub fn lines(&self) -> EventLines {
        EventLines(self.events.clone())
    }
}

/// The lines of an [`EventLog`], shareable across tasks.
#[derive(Clone)]
pub struct EventLines(Arc<std::sync::Mutex<Vec<String>>>);

impl EventLines {
    pub fn messages(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct EventRecorder(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventRecorder {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!("{}={} ", field.name(), value));
            }
        }
        if event.metadata().target().starts_with("tower_bad_gateway") {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}
