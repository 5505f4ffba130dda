//! A small DNS server on loopback UDP, answering A queries for every name with
//! the records the test sets (AAAA with no record), or NXDOMAIN, or nothing at
//! all; it counts the A queries it gets.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Zone {
    /// These A records, with this TTL (seconds).
    Records(Vec<Ipv4Addr>, u32),
    /// `NXDOMAIN`.
    NxDomain,
    /// `NOERROR` with no record.
    Empty,
    /// No answer at all.
    Silent,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start(zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(zone));
        let queries = Arc::new(AtomicUsize::new(0));
        let (z, q) = (zone.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let zone = z.lock().unwrap().clone();
                if let Some(reply) = answer(&buf[..n], &zone, &q) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Self {
            addr,
            zone,
            queries,
            task,
        }
    }

    pub fn set(&self, zone: Zone) {
        *self.zone.lock().unwrap() = zone;
    }

    /// A queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to `query`, if any.
fn answer(query: &[u8], zone: &Zone, queries: &AtomicUsize) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the zero length, then type and class.
    let mut i = 12;
    while i < query.len() && query[i] != 0 {
        i += 1 + usize::from(query[i]);
    }
    let end = i + 5;
    if end > query.len() {
        return None;
    }
    let qtype = u16::from_be_bytes([query[i + 1], query[i + 2]]);
    if qtype == 1 {
        queries.fetch_add(1, Ordering::SeqCst);
    }
    let (rcode, records): (u8, Vec<Ipv4Addr>) = match zone {
        Zone::Silent => return None,
        Zone::NxDomain => (3, Vec::new()),
        Zone::Empty => (0, Vec::new()),
        Zone::Records(ips, _) if qtype == 1 => (0, ips.clone()),
        Zone::Records(..) => (0, Vec::new()),
    };
    let ttl = match zone {
        Zone::Records(_, ttl) => *ttl,
        _ => 0,
    };
    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[..2]); // id
    // QR, opcode 0, AA, RD copied; RA; rcode.
    reply.push(0x84 | (query[2] & 0x01));
    reply.push(0x80 | rcode);
    reply.extend_from_slice(&[0, 1]); // one question
    reply.extend_from_slice(&u16::try_from(records.len()).unwrap().to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    reply.extend_from_slice(&query[12..end]);
    for ip in records {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]); // the question's name, A, IN
        reply.extend_from_slice(&ttl.to_be_bytes());
        reply.extend_from_slice(&[0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}
