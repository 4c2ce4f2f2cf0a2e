//! Some of a transport's ranks as a group of their own.

use std::time::Duration;

use super::{valid_target, Done, Progress, Tag, Transport};
use crate::error::Result;

/// The ranks `ranks` of `inner` as a group: its rank i is `ranks[i]` of
/// `inner`. What runs over it talks only to those ranks, through the same
/// transport (so with its stall timeout and counters). The two-level
/// all-reduce runs its inter-node ring over one.
pub(crate) struct Sub<'a, C: Transport + ?Sized> {
    inner: &'a C,
    ranks: &'a [usize],
    me: usize,
}

impl<'a, C: Transport + ?Sized> Sub<'a, C> {
    /// The subset `ranks` (which must hold `inner`'s own rank).
    pub(crate) fn new(inner: &'a C, ranks: &'a [usize]) -> Option<Self> {
        let me = ranks.iter().position(|&r| r == inner.rank())?;
        Some(Sub { inner, ranks, me })
    }

    fn outer(&self, done: &mut Done) {
        if let Some(i) = self.ranks.iter().position(|&r| r == done.peer) {
            done.peer = i;
        }
    }
}

impl<C: Transport + ?Sized> Transport for Sub<'_, C> {
    type Request = C::Request;

    fn rank(&self) -> usize {
        self.me
    }

    fn size(&self) -> usize {
        self.ranks.len()
    }

    unsafe fn start_send(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<C::Request> {
        valid_target(dest, self.ranks.len(), tag)?;
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.start_send(buf, self.ranks[dest], tag) }
    }

    unsafe fn start_recv(&self, buf: &mut [u8], src: usize, tag: Tag) -> Result<C::Request> {
        valid_target(src, self.ranks.len(), tag)?;
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.start_recv(buf, self.ranks[src], tag) }
    }

    fn test(&self, req: &mut C::Request) -> Result<Option<Done>> {
        let mut done = self.inner.test(req)?;
        if let Some(d) = &mut done {
            self.outer(d);
        }
        Ok(done)
    }

    fn wait_all(&self, reqs: &mut [C::Request], done: &mut [Done]) -> Result<()> {
        self.inner.wait_all(reqs, done)?;
        let n = reqs.len();
        done[..n].iter_mut().for_each(|d| self.outer(d));
        Ok(())
    }

    fn progress(&self) -> Option<&Progress> {
        self.inner.progress()
    }

    fn idle(&self, waited: Duration) -> Result<bool> {
        self.inner.idle(waited)
    }

    fn abort_stalled(&self, message: &str) -> Result<()> {
        self.inner.abort_stalled(message)
    }
}
