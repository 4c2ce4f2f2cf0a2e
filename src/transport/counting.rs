//! A transport wrapper that counts what the algorithms put on the wire.

use std::cell::Cell;

use std::time::Duration;

use super::{AnySource, Done, Progress, Segment, Tag, Transport};
use crate::error::Result;

/// Calls and bytes one rank made through a [`Counting`] transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Waits (a blocking send, recv or sendrecv is one): the rank's
    /// sequential communication steps, i.e. its rounds.
    pub rounds: u64,
    /// Of those, waits that completed both a send and a receive (a `sendrecv`).
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
/// Messages and bytes are counted as operations start (sends) and complete
/// (receives); every [`Transport::wait_all`] is one round, so a blocking
/// `sendrecv` is one round with one message each way and a lone `send` or
/// `recv` a round of its own.
pub struct Counting<T> {
    inner: T,
    stats: Cell<CallStats>,
    barriers_before: Cell<u64>,
}

impl<T: Transport> Counting<T> {
    /// Wraps `inner` with all counters at zero.
    pub fn new(inner: T) -> Self {
        let before = inner.segment().map_or(0, Segment::barriers);
        Counting {
            inner,
            stats: Cell::new(CallStats::default()),
            barriers_before: Cell::new(before),
        }
    }

    /// The counters so far. Barriers on the shared [`Segment`] count as rounds.
    pub fn stats(&self) -> CallStats {
        let mut s = self.stats.get();
        s.rounds += self.barriers() - self.barriers_before.get();
        s
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.stats.set(CallStats::default());
        self.barriers_before.set(self.barriers());
    }

    fn barriers(&self) -> u64 {
        self.inner.segment().map_or(0, Segment::barriers)
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped transport, by value.
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn update(&self, f: impl FnOnce(&mut CallStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn received(&self, done: &Done) {
        if done.received {
            self.update(|s| {
                s.messages_received += 1;
                s.bytes_received += done.len as u64;
            });
        }
    }
}

impl<T: Transport> Transport for Counting<T> {
    type Request = T::Request;

    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    unsafe fn start_send(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<T::Request> {
        // SAFETY: the caller's obligations are passed on unchanged.
        let req = unsafe { self.inner.start_send(buf, dest, tag)? };
        self.update(|s| {
            s.messages_sent += 1;
            s.bytes_sent += buf.len() as u64;
        });
        Ok(req)
    }

    unsafe fn start_recv(&self, buf: &mut [u8], src: usize, tag: Tag) -> Result<T::Request> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.start_recv(buf, src, tag) }
    }

    fn test(&self, req: &mut T::Request) -> Result<Option<Done>> {
        let done = self.inner.test(req)?;
        if let Some(d) = &done {
            self.received(d);
        }
        Ok(done)
    }

    fn wait_all(&self, reqs: &mut [T::Request], done: &mut [Done]) -> Result<()> {
        self.inner.wait_all(reqs, done)?;
        let done = &done[..reqs.len()];
        let (sent, got) = (done.iter().any(|d| !d.received), done.iter().any(|d| d.received));
        self.update(|s| {
            s.rounds += 1;
            s.exchanges += u64::from(sent && got);
        });
        done.iter().for_each(|d| self.received(d));
        Ok(())
    }

    fn progress(&self) -> Option<&Progress> {
        self.inner.progress()
    }

    fn segment(&self) -> Option<&Segment> {
        self.inner.segment()
    }

    fn node(&self) -> (usize, usize) {
        self.inner.node()
    }

    fn ranks_per_node(&self) -> usize {
        self.inner.ranks_per_node()
    }

    fn idle(&self, waited: Duration) -> Result<bool> {
        self.inner.idle(waited)
    }

    fn abort_stalled(&self, message: &str) -> Result<()> {
        self.inner.abort_stalled(message)
    }
}

impl<T: AnySource> AnySource for Counting<T> {
    unsafe fn start_recv_any(&self, buf: &mut [u8], tag: Tag) -> Result<T::Request> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.start_recv_any(buf, tag) }
    }
}
