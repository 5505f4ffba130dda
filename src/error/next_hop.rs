use super::GatewayError;
use tokio::time::Instant;

/// The upstream's authority, copied inline so that capturing it per request costs
/// no allocation and no atomic operation (only failures build an `Authority`).
#[derive(Clone, Copy)]
pub(crate) struct NextHop {
    buf: [u8; 64],
    len: u8,
}

impl NextHop {
    pub(crate) fn of(uri: &http::Uri) -> Option<Self> {
        let authority = uri.authority()?.as_str().as_bytes();
        if authority.len() > 64 {
            return None;
        }
        let mut buf = [0; 64];
        buf[..authority.len()].copy_from_slice(authority);
        Some(Self {
            buf,
            len: authority.len() as u8,
        })
    }

    pub(crate) fn authority(&self) -> Option<http::uri::Authority> {
        http::uri::Authority::try_from(&self.buf[..usize::from(self.len)]).ok()
    }
}

/// Sets the time since `start`, and the next hop unless the error already names one.
pub(crate) fn stamp(err: GatewayError, start: Instant, next_hop: Option<&NextHop>) -> GatewayError {
    let err = err.with_elapsed(start.elapsed());
    if err.next_hop().is_some() {
        return err;
    }
    match next_hop.and_then(NextHop::authority) {
        Some(hop) => err.with_next_hop(hop),
        None => err,
    }
}
