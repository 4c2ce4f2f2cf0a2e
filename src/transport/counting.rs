//! A transport wrapper that counts what the algorithms put on the wire.

use std::cell::Cell;

use super::Transport;
use crate::error::Result;

/// Calls and bytes one rank made through a [`Counting`] transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Transport calls (send, recv or sendrecv): the rank's sequential
    /// communication steps, i.e. its rounds.
    pub rounds: u64,
    /// Of those, `sendrecv` calls (both directions at once).
    pub exchanges: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// Wraps a transport and records [`CallStats`] for this rank.
///
/// A `sendrecv` is one round with one message each way; a lone `send` or
/// `recv` is a round of its own. Calls through it are unchecked
/// ([`Transport::checks`] is `None`), so the counts are the algorithm's alone.
pub struct Counting<T> {
    inner: T,
    stats: Cell<CallStats>,
}

impl<T: Transport> Counting<T> {
    /// Wraps `inner` with all counters at zero.
    pub fn new(inner: T) -> Self {
        Counting {
            inner,
            stats: Cell::new(CallStats::default()),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CallStats {
        self.stats.get()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.stats.set(CallStats::default());
    }

    /// The wrapped transport.
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn record(&self, sent: Option<usize>, received: Option<usize>) {
        let mut s = self.stats.get();
        s.rounds += 1;
        if let Some(n) = sent {
            s.messages_sent += 1;
            s.bytes_sent += n as u64;
        }
        if let Some(n) = received {
            s.messages_received += 1;
            s.bytes_received += n as u64;
        }
        self.stats.set(s);
    }
}

impl<T: Transport> Transport for Counting<T> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn tuning(&self) -> crate::cost::Tuning {
        self.inner.tuning()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()> {
        self.inner.send_bytes(buf, dest)?;
        self.record(Some(buf.len()), None);
        Ok(())
    }

    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()> {
        self.inner.recv_bytes(buf, src)?;
        self.record(None, Some(buf.len()));
        Ok(())
    }

    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()> {
        self.inner.sendrecv_bytes(send, dest, recv, src)?;
        self.record(Some(send.len()), Some(recv.len()));
        let mut s = self.stats.get();
        s.exchanges += 1;
        self.stats.set(s);
        Ok(())
    }
}
