//! The head of an error's message, for the rules that must read it.

use std::error::Error;

/// The first bytes of an error's message, read without allocating.
pub(super) struct Head {
    buf: [u8; 64],
    len: usize,
}

impl Head {
    pub(super) fn of(e: &(dyn Error + 'static)) -> Self {
        use std::fmt::Write;
        let mut head = Head {
            buf: [0; 64],
            len: 0,
        };
        // Err only means the message was longer than the buffer: the head is kept.
        let _ = write!(head, "{e}");
        head
    }

    pub(super) fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for Head {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        if s.len() > room {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}
