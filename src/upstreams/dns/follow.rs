//! The follower: looks the name up, makes its addresses the set's members, and
//! sleeps until the answer's TTL (within bounds) runs out.

use super::Dns;
use crate::error::ErrorKind;
use crate::upstreams::report;
use crate::upstreams::set::{Shared, Unresolved};
use crate::upstreams::{Endpoint, EndpointSet};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What one lookup found.
#[derive(Debug)]
pub(super) enum Answer {
    /// These addresses, good for this long (the answer's shortest TTL).
    Addresses(Vec<SocketAddr>, Duration),
    /// The name definitively has no address (`NXDOMAIN`, or no A or AAAA record),
    /// for this long (its negative TTL, if the answer gave one).
    Nothing(&'static str, Option<Duration>),
    /// The lookup failed for now, as this kind, for this reason.
    Failed(ErrorKind, String),
}

pub(super) async fn follow(shared: Arc<Shared>, dns: Dns) {
    let resolver = match resolver(&dns) {
        Ok(resolver) => Some(resolver),
        Err(e) => {
            report::lookup_failed(&dns.name, &e.to_string());
            None
        }
    };
    let set = EndpointSet { shared };
    let mut resolved_once = false;
    loop {
        // Every other handle of the set is gone: nothing is left to follow for.
        if Arc::strong_count(&set.shared) == 1 {
            return;
        }
        let answer = match &resolver {
            Some(resolver) => lookup(resolver, &dns).await,
            None => Answer::Failed(
                ErrorKind::DnsError,
                "no resolver configuration (/etc/resolv.conf)".to_owned(),
            ),
        };
        let wait = match answer {
            Answer::Addresses(addresses, ttl) => {
                let endpoints: Vec<Endpoint> = addresses.iter().map(|a| dns.name.at(*a)).collect();
                // Cannot fail: the addresses are distinct, and empty is allowed.
                let _ = set.replace_with(endpoints, true);
                set.shared.unresolved.store(None);
                resolved_once = true;
                ttl
            }
            Answer::Nothing(why, ttl) => {
                report::lookup_failed(&dns.name, why);
                let _ = set.replace_with(Vec::new(), true);
                set.shared
                    .unresolved
                    .store(Some(Arc::new(Unresolved::Failed {
                        kind: ErrorKind::DnsError,
                        reason: why.to_owned(),
                    })));
                ttl.unwrap_or(dns.min_ttl)
            }
            Answer::Failed(kind, reason) => {
                report::lookup_failed(&dns.name, &reason);
                // The last good set stays; a set that never resolved says why.
                if !resolved_once {
                    set.shared
                        .unresolved
                        .store(Some(Arc::new(Unresolved::Failed { kind, reason })));
                }
                dns.min_ttl
            }
        };
        tokio::time::sleep(wait.clamp(dns.min_ttl, dns.max_ttl.max(dns.min_ttl))).await;
    }
}

/// A resolver that asks `dns`'s servers (or the system's), with its cache off so
/// the TTLs are the set's, A and AAAA both.
fn resolver(dns: &Dns) -> Result<TokioResolver, ResolveError> {
    let (config, mut options) = if dns.servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()?
    } else {
        let mut group = NameServerConfigGroup::new();
        for server in &dns.servers {
            let mut config = NameServerConfig::new(*server, Protocol::Udp);
            // A loopback server is asked from loopback, not from every interface.
            if server.ip().is_loopback() {
                config.bind_addr = Some(SocketAddr::new(server.ip(), 0));
            }
            group.push(config);
        }
        (
            ResolverConfig::from_parts(None, Vec::new(), group),
            ResolverOpts::default(),
        )
    };
    options.cache_size = 0;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = dns.timeout;
    options.attempts = 1;
    let provider = TokioConnectionProvider::default();
    Ok(
        hickory_resolver::Resolver::builder_with_config(config, provider)
            .with_options(options)
            .build(),
    )
}

async fn lookup(resolver: &TokioResolver, dns: &Dns) -> Answer {
    let host = dns.name.authority().host();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = dns.name.port();
    resolver.clear_cache();
    match resolver.lookup_ip(host).await {
        Ok(found) => {
            let ttl = found
                .as_lookup()
                .records()
                .iter()
                .map(|r| r.ttl())
                .min()
                .unwrap_or(0);
            let mut addresses: Vec<SocketAddr> =
                found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
            addresses.sort();
            addresses.dedup();
            if addresses.is_empty() {
                return Answer::Nothing("no A or AAAA record", None);
            }
            Answer::Addresses(addresses, Duration::from_secs(u64::from(ttl)))
        }
        Err(e) => judge(&e),
    }
}

/// What a failed lookup means: definitively nothing, or a failure for now.
pub(super) fn judge(e: &ResolveError) -> Answer {
    if let Some(proto) = e.proto() {
        match proto.kind() {
            ProtoErrorKind::NoRecordsFound {
                response_code,
                negative_ttl,
                ..
            } if matches!(
                *response_code,
                ResponseCode::NXDomain | ResponseCode::NoError
            ) =>
            {
                let why = if *response_code == ResponseCode::NXDomain {
                    "NXDOMAIN"
                } else {
                    "no A or AAAA record"
                };
                return Answer::Nothing(
                    why,
                    negative_ttl.map(|t| Duration::from_secs(u64::from(t))),
                );
            }
            ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                return Answer::Failed(ErrorKind::DnsError, format!("{response_code}"));
            }
            ProtoErrorKind::Timeout => {
                return Answer::Failed(ErrorKind::DnsTimeout, "timed out".to_owned());
            }
            _ => {}
        }
    }
    Answer::Failed(ErrorKind::DnsError, clean(&e.to_string()))
}

/// A message fit for a log line and an error's text: control characters
/// escaped, at most 200 characters.
fn clean(message: &str) -> String {
    message
        .chars()
        .take(200)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}
