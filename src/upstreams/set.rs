//! The set itself: its members (replaced at runtime, or from a `Discover`
//! stream), their shared health, and what it reports. Picking is in `pick.rs`.

use super::endpoint::Problem;
use super::health::{EndpointState, Health, Peers, nanos};
use super::{Endpoint, EndpointError};
use super::{HealthPolicy, report};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::time::Instant;

/// The replicas of one upstream, and what the gateway has seen of each.
///
/// A handle: clones share the endpoints and their health, so every clone of the
/// service (axum clones it per request) sees the same ejections. Give it to
/// [`GatewayLayer::upstreams`](crate::GatewayLayer::upstreams) or an
/// [`UpstreamsLayer`](super::UpstreamsLayer); keep a clone to change the members at
/// runtime with [`replace`](Self::replace) or [`discover`](Self::discover).
///
/// ```
/// use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthPolicy};
///
/// let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])
///     .unwrap()
///     .health_policy(HealthPolicy::new().consecutive_failures(3));
/// assert_eq!(set.len(), 2);
/// assert!(set.health().iter().all(|(_, h)| *h == Health::Healthy));
///
/// // Later, from service discovery: .1 stays (with its health), .3 joins, .2 leaves.
/// set.replace(["http://10.0.0.1:8080".parse().unwrap(), "http://10.0.0.3:8080".parse().unwrap()])
///     .unwrap();
/// assert_eq!(set.len(), 2);
///
/// assert!(EndpointSet::from_urls(["10.0.0.1:8080"]).is_err()); // no scheme: a clear error
/// ```
#[derive(Clone)]
pub struct EndpointSet {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) members: ArcSwap<Members>,
    pub(super) policy: HealthPolicy,
    pub(super) epoch: Instant,
    /// Active health checkers running on the set: while one does, an ejected
    /// endpoint's probe is its check, never a request.
    pub(super) checkers: AtomicU32,
    /// Wakes the checkers when an endpoint is ejected, to probe it when its
    /// ejection ends.
    #[cfg(feature = "health-checks")]
    pub(super) ejections: tokio::sync::Notify,
    /// Why a set that follows a name has no member, while it has none.
    pub(super) unresolved: ArcSwapOption<Unresolved>,
}

/// Why a set that follows a DNS name has no member.
#[derive(Debug)]
#[cfg_attr(not(feature = "dns"), allow(dead_code))]
pub(crate) enum Unresolved {
    /// Its first lookup has not answered yet.
    Resolving,
    /// Its last lookup failed, as this kind (`DnsError`, `DnsTimeout`), for this
    /// reason.
    Failed {
        kind: crate::error::ErrorKind,
        reason: String,
    },
}

/// One version of the membership. Replacing it never disturbs a request in
/// flight: that request holds its endpoint's state.
pub(super) struct Members {
    pub(super) list: Vec<Arc<EndpointState>>,
}

impl EndpointSet {
    /// A set of these endpoints, with the default [`HealthPolicy`].
    ///
    /// An empty list, or an endpoint listed twice, is an error.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Result<Self, EndpointError> {
        let members = Members::build(endpoints, &HashMap::new(), None)?;
        Ok(Self {
            shared: Arc::new(Shared::new(
                ArcSwap::from_pointee(members),
                HealthPolicy::default(),
                Instant::now(),
            )),
        })
    }

    /// A set with no member, for the reason given.
    #[cfg_attr(not(feature = "dns"), allow(dead_code))]
    pub(super) fn empty(why: Unresolved) -> Self {
        let shared = Shared::new(
            ArcSwap::from_pointee(Members { list: Vec::new() }),
            HealthPolicy::default(),
            Instant::now(),
        );
        shared.unresolved.store(Some(Arc::new(why)));
        Self {
            shared: Arc::new(shared),
        }
    }

    /// A set of the endpoints these URLs name (`http://host:port` or `https://...`).
    pub fn from_urls<I>(urls: I) -> Result<Self, EndpointError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let endpoints = urls
            .into_iter()
            .map(|url| url.as_ref().parse())
            .collect::<Result<Vec<Endpoint>, _>>()?;
        Self::new(endpoints)
    }

    /// Judges the endpoints' health by `policy`. Set it before cloning the set:
    /// clones made earlier keep the policy they had (and the same endpoint health).
    pub fn health_policy(self, policy: HealthPolicy) -> Self {
        let members = self.shared.members.load_full();
        let shared = Shared::new(ArcSwap::new(members), policy, self.shared.epoch);
        shared.unresolved.store(self.shared.unresolved.load_full());
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Replaces the members. Endpoints that stay keep their health (an ejected one
    /// stays ejected); requests in flight to one that leaves complete normally.
    /// An empty list, or an endpoint listed twice, is an error and changes nothing.
    pub fn replace(
        &self,
        endpoints: impl IntoIterator<Item = Endpoint>,
    ) -> Result<(), EndpointError> {
        self.replace_with(endpoints, false)
    }

    pub(super) fn replace_with(
        &self,
        endpoints: impl IntoIterator<Item = Endpoint>,
        allow_empty: bool,
    ) -> Result<(), EndpointError> {
        let current = self.shared.members.load_full();
        let kept: HashMap<&Endpoint, &Arc<EndpointState>> = current
            .list
            .iter()
            .map(|state| (&state.endpoint, state))
            .collect();
        // Endpoints that join ramp up (slow start), when the policy says so.
        let warm_from = (!self.shared.policy.slow_start.is_zero()).then(|| self.shared.now());
        let members = match Members::build(endpoints, &kept, warm_from) {
            Err(e) if allow_empty && e.is_empty() => Members { list: Vec::new() },
            other => other?,
        };
        let stayed = members
            .list
            .iter()
            .filter(|s| kept.contains_key(&s.endpoint))
            .count();
        let endpoints = members.list.len();
        let (added, removed) = (endpoints - stayed, current.list.len() - stayed);
        self.shared.members.store(Arc::new(members));
        // Only a change is an event: a set that follows a name replaces its
        // members at every lookup.
        if added + removed != 0 {
            report::set_replaced(endpoints, added, removed);
        }
        Ok(())
    }

    /// Follows a [`tower::discover::Discover`] stream of endpoints: every insertion
    /// and removal changes the set, as [`replace`](Self::replace) does (endpoints
    /// that stay keep their health). Spawn the future; it ends when the stream does,
    /// or with the stream's error. A stream may remove every endpoint: the set then
    /// answers every request `503` until one comes back.
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::{Endpoint, EndpointSet};
    /// use tower::discover::Change;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let set = EndpointSet::from_urls(["http://10.0.0.1:8080"]).unwrap();
    /// // Any stream of `Change`s of `Endpoint`s: DNS, Kubernetes, Consul... Here, a fixed one.
    /// let ep = |url: &str| url.parse::<Endpoint>().unwrap();
    /// let changes = tokio_stream::iter([
    ///     Change::Insert("b", ep("http://10.0.0.2:8080")),
    ///     Change::Insert("c", ep("http://10.0.0.3:8080")),
    ///     Change::Remove("b"),
    /// ].map(Ok::<_, std::convert::Infallible>));
    /// set.discover(changes).await.unwrap();
    /// // What the stream says replaces the starting members.
    /// let now: Vec<String> = set.health().iter().map(|(ep, _)| ep.to_string()).collect();
    /// assert_eq!(now, ["http://10.0.0.3:8080"]);
    /// # }
    /// ```
    pub async fn discover<D>(&self, discover: D) -> Result<(), D::Error>
    where
        D: tower::discover::Discover<Service = Endpoint>,
        D::Key: Eq + std::hash::Hash,
    {
        use std::future::poll_fn;
        use std::task::Poll;
        use tower::discover::Change;
        let mut discover = std::pin::pin!(discover);
        let mut known: HashMap<D::Key, Endpoint> = HashMap::new();
        loop {
            // Take every change that is ready, then apply them at once.
            let mut changed = false;
            let ended = poll_fn(|cx| {
                loop {
                    match discover.as_mut().poll_discover(cx) {
                        Poll::Ready(Some(Ok(Change::Insert(key, ep)))) => {
                            known.insert(key, ep);
                            changed = true;
                        }
                        Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                            changed |= known.remove(&key).is_some();
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                        Poll::Ready(None) => return Poll::Ready(Ok(true)),
                        Poll::Pending if changed => return Poll::Ready(Ok(false)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await?;
            if changed {
                // Two keys may name the same endpoint: it is one member.
                let mut seen = std::collections::HashSet::new();
                let mut endpoints: Vec<Endpoint> = known.values().cloned().collect();
                endpoints.retain(|ep| seen.insert(ep.clone()));
                endpoints.sort_by_cached_key(Endpoint::to_string);
                // Cannot fail: no duplicates, and empty is allowed here.
                let _ = self.replace_with(endpoints, true);
            }
            if ended {
                return Ok(());
            }
        }
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.shared.members.load().list.len()
    }

    /// Whether the set has no endpoint (only a [`discover`](Self::discover) stream
    /// can empty it).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attempts in flight to the endpoints now in the set. A finished, failed or
    /// cancelled attempt no longer counts.
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::EndpointSet;
    /// assert_eq!(EndpointSet::from_urls(["http://10.0.0.1:8080"]).unwrap().in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> usize {
        let members = self.shared.members.load();
        members
            .list
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed) as usize)
            .sum()
    }

    /// Every endpoint and its health, in the order given.
    pub fn health(&self) -> Vec<(Endpoint, Health)> {
        let now = self.shared.now();
        self.shared
            .members
            .load()
            .list
            .iter()
            .map(|s| (s.endpoint.clone(), s.health(now)))
            .collect()
    }
}

impl Shared {
    fn new(members: ArcSwap<Members>, policy: HealthPolicy, epoch: Instant) -> Self {
        Self {
            members,
            policy,
            epoch,
            checkers: AtomicU32::new(0),
            #[cfg(feature = "health-checks")]
            ejections: tokio::sync::Notify::new(),
            unresolved: ArcSwapOption::empty(),
        }
    }

    /// Nanoseconds since the set's epoch: the time health is kept in.
    pub(super) fn now(&self) -> u64 {
        self.since_epoch(Instant::now())
    }

    /// `at` in the set's clock: nanoseconds since its epoch.
    pub(super) fn since_epoch(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch))
    }
}

impl Peers for Shared {
    /// Whether `state` may be ejected fully: fewer of the set than the policy's
    /// [`max_ejection_percent`](HealthPolicy::max_ejection_percent) (and always at
    /// least one, so a lone endpoint is still a circuit breaker) are out on full
    /// ejections, `state` aside. A scan of the members, asked only when an endpoint
    /// is ejected, never on a pick. Two endpoints ejected at the same instant may
    /// both see room for one: the share may be passed by the ejections racing.
    fn may_eject_fully(&self, state: &EndpointState) -> bool {
        let members = self.members.load();
        let list = &members.list;
        let share = usize::from(self.policy.max_ejection_percent);
        let allowed = (list.len() * share / 100).max(1);
        let out = list
            .iter()
            .filter(|s| !std::ptr::eq(s.as_ref(), state) && s.fully_out())
            .count();
        out < allowed
    }

    /// The mean of up to eight peers' last window failure rates, the peers drawn
    /// at random (all of them in a small set): O(1) at any size.
    fn peer_rate(&self, state: &EndpointState) -> Option<u32> {
        const SAMPLE: usize = 8;
        let members = self.members.load();
        let list = &members.list;
        let n = list.len();
        let (mut sum, mut seen) = (0u64, 0u64);
        let mut visit = |s: &Arc<EndpointState>| {
            if !std::ptr::eq(s.as_ref(), state) {
                if let Some(rate) = s.window_rate(self.policy.rate_window) {
                    sum += u64::from(rate);
                    seen += 1;
                }
            }
        };
        if n <= SAMPLE + 1 {
            list.iter().for_each(&mut visit);
        } else {
            let mut r = crate::random::next_u64();
            for _ in 0..SAMPLE {
                visit(&list[(r % n as u64) as usize]);
                r = r.rotate_left(21).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
        }
        (seen > 0).then(|| u32::try_from(sum / seen).unwrap_or(1000))
    }

    fn ejected(&self) {
        #[cfg(feature = "health-checks")]
        if self.checkers.load(Ordering::Relaxed) != 0 {
            self.ejections.notify_waiters();
            self.ejections.notify_one();
        }
    }
}

impl Members {
    fn build(
        endpoints: impl IntoIterator<Item = Endpoint>,
        kept: &HashMap<&Endpoint, &Arc<EndpointState>>,
        warm_from: Option<u64>,
    ) -> Result<Self, EndpointError> {
        let mut list: Vec<Arc<EndpointState>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ep in endpoints {
            if !seen.insert(ep.clone()) {
                return Err(EndpointError::new(&ep.to_string(), Problem::Duplicate));
            }
            let state = match kept.get(&ep) {
                Some(state) => Arc::clone(state),
                None => {
                    let state = EndpointState::new(ep);
                    if let Some(now) = warm_from {
                        state.start_warming(now);
                    }
                    Arc::new(state)
                }
            };
            list.push(state);
        }
        if list.is_empty() {
            return Err(EndpointError::new("", Problem::Empty));
        }
        Ok(Self { list })
    }
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSet")
            .field("endpoints", &self.health())
            .field("policy", &self.shared.policy)
            .finish()
    }
}
