//! The small transport every algorithm is written against.
//!
//! Like Gloo's `transport::Pair` or NCCL's `Primitives`, a transport knows a
//! rank, a size and how to move bytes — nothing else. Its primitives are
//! non-blocking: a send or receive is *started* and later *tested* or
//! *waited* for, so an algorithm can reduce one segment while the next one
//! travels. The blocking calls ([`send_bytes`](Transport::send_bytes),
//! [`sendrecv_bytes`](Transport::sendrecv_bytes), …) and the safe scoped
//! API ([`Transport::scope`]) are built on them.
//!
//! - [`Mpi`]: any rsmpi communicator (the real path, under `mpirun`);
//! - [`Local`]: p ranks as threads of one process (fast tests, criterion);
//! - [`Counting`]: wraps any transport and records rounds, messages and
//!   bytes per rank, which is how the tests hold the modelled traffic to the code.
//!
//! Messages carry a [`Tag`]; between one pair of ranks, messages of one tag
//! arrive in the order they were sent (MPI's non-overtaking rule), and a
//! receive takes the first matching message. [`AnySource`] adds receives
//! from whichever rank sends first.
//!
//! A transport does not know what its caller is doing. The layer above
//! ([`Group`](crate::Group)) writes what it is doing into the transport's
//! [`Progress`] record; a transport that can wait with a deadline (the MPI
//! one) reads it when a wait stalls, to say which call the ranks are in.

mod counting;
mod local;
mod mpi;
mod scope;
mod shm;
mod sub;

use std::cell::Cell;
use std::time::Duration;

pub use self::counting::{CallStats, Counting};
pub use self::local::{Local, LocalEndpoint, LocalRequest};
#[cfg(feature = "train")]
pub(crate) use self::mpi::format_secs;
pub use self::mpi::{
    set_mpi_defaults, set_overlap_mpi_defaults, Mpi, MpiRequest, ThreadDuplicate, MPI_DEFAULTS,
    OVERLAP_MPI_DEFAULTS, STALL_EXIT, STALL_FILE,
};
pub use self::scope::{Received, RecvHandle, Scope, SendHandle};
pub(crate) use self::shm::CALL_WORDS;
pub use self::shm::{Segment, Shape, Writes, SLOW_WRITES};
pub(crate) use self::sub::Sub;

use crate::error::{Error, Result};

/// The transport's [`Segment`] when it spans the whole group (every rank
/// on one node); `None` when the group spans nodes.
pub fn whole_segment<C: Transport + ?Sized>(comm: &C) -> Option<&Segment> {
    comm.segment().filter(|s| s.size() == comm.size())
}

/// A message tag. Tags from 0 to [`MAX_TAG`] are valid on every transport.
pub type Tag = u16;

/// The tag of the blocking calls and of the algorithms' messages.
pub const DATA: Tag = 0;

/// The largest valid tag (MPI guarantees at least 32767).
pub const MAX_TAG: Tag = 32767;

/// A completed send or receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Done {
    /// The destination of a send, or the rank a receive's message came from.
    pub peer: usize,
    /// The message's tag.
    pub tag: Tag,
    /// Bytes sent, or bytes received (at most the receive buffer's length).
    pub len: usize,
    /// True for a receive.
    pub received: bool,
}

/// What the layer above a transport is doing, for stall reports: the
/// collective call in progress, its number, and whether the ranks are
/// still agreeing on it. Written by [`Group`](crate::Group), read by the
/// transport when a wait passes its deadline.
#[derive(Debug)]
pub struct Progress {
    label: Cell<&'static str>,
    call: Cell<u64>,
    agreeing: Cell<bool>,
    timeout: Cell<Option<Duration>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            label: Cell::new("call"),
            call: Cell::new(0),
            agreeing: Cell::new(false),
            timeout: Cell::new(None),
        }
    }
}

impl Progress {
    /// Records that call number `call`, a `label` (e.g. `all_reduce`), has begun.
    pub fn begin(&self, label: &'static str, call: u64) {
        self.label.set(label);
        self.call.set(call);
    }
    /// Records whether the ranks are still agreeing on the current call
    /// (no rank can yet be sure that every other one has joined it).
    pub fn set_agreeing(&self, agreeing: bool) {
        self.agreeing.set(agreeing);
    }
    /// Sets how long a wait may make no progress before the transport
    /// reports a stall; `None` waits forever (the default).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.timeout.set(timeout);
    }
    /// The current call's label.
    pub fn label(&self) -> &'static str {
        self.label.get()
    }
    /// The current (or last) call's number; 0 before the first.
    pub fn call(&self) -> u64 {
        self.call.get()
    }
    /// Whether the ranks are agreeing on the current call.
    pub fn agreeing(&self) -> bool {
        self.agreeing.get()
    }
    /// The stall timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout.get()
    }
}

/// Point-to-point byte movement between the ranks of one group.
///
/// Implementors provide the four primitives (`start_send`, `start_recv`,
/// `test`, `wait_all`); everything else is built on them. A receive
/// accepts any message of at most its buffer's length and reports the
/// length in [`Done::len`]; the exact-length blocking calls turn
/// a different length into [`Error::MessageSize`].
pub trait Transport {
    /// A started send or receive, until it completes.
    type Request;

    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;

    /// Starts sending `buf` to rank `dest` with `tag`.
    ///
    /// # Safety
    /// The bytes of `buf` must stay valid and unmodified until the request
    /// is complete: [`test`](Transport::test) returned `Some`, or
    /// [`wait_all`](Transport::wait_all) returned (with `Ok` or `Err`). The
    /// request must not be dropped before that.
    ///
    /// # Errors
    /// [`Error::InvalidRank`], or [`Error::InvalidArgument`] for a tag above
    /// [`MAX_TAG`] — and only those: nothing has started then. Failures of
    /// the transfer itself (a peer that left) are reported at completion.
    unsafe fn start_send(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<Self::Request>;

    /// Starts receiving a message of at most `buf.len()` bytes from `src`
    /// with `tag` into the front of `buf`.
    ///
    /// # Safety
    /// `buf` must stay valid and must be neither read nor written by anyone
    /// else until the request is complete (see [`Transport::start_send`]).
    ///
    /// # Errors
    /// As [`Transport::start_send`].
    unsafe fn start_recv(&self, buf: &mut [u8], src: usize, tag: Tag) -> Result<Self::Request>;

    /// Whether `req` has completed; `Some` exactly once, after which the
    /// request is inert.
    ///
    /// # Errors
    /// [`Error::MessageSize`] for a message longer than the receive buffer
    /// ([`Error::Truncated`] from a transport that cannot tell its length:
    /// [`Mpi`]), [`Error::Transport`] when the peer left or MPI reported an
    /// error. The request is complete then too.
    fn test(&self, req: &mut Self::Request) -> Result<Option<Done>>;

    /// Waits until every request in `reqs` has completed, writing each
    /// one's [`Done`] to the same index of `done` (which must be at least as
    /// long). On return — `Ok` or `Err` — no request accesses its buffer any more.
    ///
    /// # Errors
    /// The first error of any request.
    fn wait_all(&self, reqs: &mut [Self::Request], done: &mut [Done]) -> Result<()>;

    /// The record the layer above writes its progress into, if this
    /// transport keeps one (see [`Progress`]).
    fn progress(&self) -> Option<&Progress> {
        None
    }

    /// The memory this rank shares with the group's other ranks on its
    /// node, when there are any and the transport set it up (see
    /// [`Segment`]; [`whole_segment`] when it must span the group).
    fn segment(&self) -> Option<&Segment> {
        None
    }

    /// This rank's index among the ranks of its node, and how many ranks
    /// the node holds (an MPI shared-memory split): `(0, 1)` for a rank
    /// alone on its node. By default read from the [`Segment`].
    fn node(&self) -> (usize, usize) {
        self.segment().map_or((0, 1), |s| (s.rank(), s.size()))
    }

    /// Ranks on each node when every node of the group holds as many (1:
    /// one rank per node), 0 when the nodes hold different numbers: the
    /// same on every rank, the placement `auto`'s rules are matched
    /// against ([`crate::cost::Rules`]). By default: the [`Segment`]'s size
    /// when it spans the group, else 1.
    fn ranks_per_node(&self) -> usize {
        whole_segment(self).map_or(1, Segment::size)
    }

    /// What a rank does while it spins on the [`Segment`] waiting for
    /// others, `waited` into the wait: yield the core, and (a transport with
    /// a stall timeout) report a stall. Returns `true` when the wait's clock
    /// should restart (a census was taken).
    ///
    /// # Errors
    /// The transport's own, e.g. a peer known to have failed.
    fn idle(&self, waited: Duration) -> Result<bool> {
        let _ = waited;
        std::thread::yield_now();
        Ok(false)
    }

    /// Ends the whole job because this rank found a stall the waits do not
    /// see (e.g. a parameter server whose other workers go on while one is
    /// silent): the MPI transport prints `ringreduce: {message}; aborting
    /// the job` and calls `MPI_Abort` with exit code 3, as for any stall.
    /// A transport that cannot end the job returns the message as an error.
    ///
    /// # Errors
    /// [`Error::Transport`] with `message`, where the job cannot be ended.
    fn abort_stalled(&self, message: &str) -> Result<()> {
        Err(Error::Transport {
            rank: self.rank(),
            reason: message.to_string(),
        })
    }

    /// This transport's communicator for a second thread of this process,
    /// which makes it its own [`Mpi`] over a private duplicate
    /// ([`ThreadDuplicate::open`], on that thread): how a caller runs
    /// collectives in the background while it computes (rsmpi's
    /// `Communicator::duplicate`, for another thread). `None`: this
    /// transport has none, and such callers run their calls in place;
    /// `Some(Err)`: it has one but cannot hand it out (MPI not initialised
    /// at `MPI_THREAD_MULTIPLE`). Not collective; opening it is.
    fn thread_duplicate(&self) -> Option<Result<ThreadDuplicate>> {
        None
    }

    /// Sends `buf` to `dest` and returns when `buf` may be reused.
    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()> {
        // SAFETY: the request is waited for before `buf`'s borrow ends.
        let mut reqs = [unsafe { self.start_send(buf, dest, DATA)? }];
        self.wait_all(&mut reqs, &mut [Done::default()])
    }

    /// Receives a message of at most `buf.len()` bytes from `src` into the
    /// front of `buf`; returns its length.
    fn recv_bytes_upto(&self, buf: &mut [u8], src: usize) -> Result<usize> {
        let mut done = [Done::default()];
        // SAFETY: the request is waited for before `buf`'s borrow ends.
        let mut reqs = [unsafe { self.start_recv(buf, src, DATA)? }];
        self.wait_all(&mut reqs, &mut done)?;
        Ok(done[0].len)
    }

    /// Receives exactly `buf.len()` bytes from `src`.
    ///
    /// # Errors
    /// [`Error::MessageSize`] when the message has another length.
    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()> {
        let expected = buf.len();
        let got = self.recv_bytes_upto(buf, src)?;
        exact(self.rank(), src, expected, got)
    }

    /// Sends `send` to `dest` while receiving a message of at most
    /// `recv.len()` bytes from `src`, without deadlocking when every rank
    /// does the same; returns the length received.
    fn sendrecv_bytes_upto(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<usize> {
        valid_rank(dest, self.size())?;
        let mut done = [Done::default(); 2];
        // SAFETY: both requests are waited for before the borrows end. The
        // receive is posted first; starting the send can fail only on an
        // invalid rank, ruled out above, so no started request is left behind.
        let mut reqs = unsafe {
            [
                self.start_recv(recv, src, DATA)?,
                self.start_send(send, dest, DATA)?,
            ]
        };
        self.wait_all(&mut reqs, &mut done)?;
        Ok(done[0].len)
    }

    /// [`sendrecv_bytes_upto`](Transport::sendrecv_bytes_upto) receiving
    /// exactly `recv.len()` bytes.
    ///
    /// # Errors
    /// [`Error::MessageSize`] when the message has another length.
    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()> {
        let expected = recv.len();
        let got = self.sendrecv_bytes_upto(send, dest, recv, src)?;
        exact(self.rank(), src, expected, got)
    }

    /// Sends a typed slice to `dest`.
    fn send<T: bytemuck::Pod>(&self, buf: &[T], dest: usize) -> Result<()> {
        self.send_bytes(bytemuck::cast_slice(buf), dest)
    }

    /// Receives a typed slice from `src`; the sender must send the same length.
    fn recv<T: bytemuck::Pod>(&self, buf: &mut [T], src: usize) -> Result<()> {
        self.recv_bytes(bytemuck::cast_slice_mut(buf), src)
    }

    /// Sends to `dest` and receives from `src` at once (typed, exact length).
    fn sendrecv<T: bytemuck::Pod>(&self, send: &[T], dest: usize, recv: &mut [T], src: usize) -> Result<()> {
        self.sendrecv_bytes(
            bytemuck::cast_slice(send),
            dest,
            bytemuck::cast_slice_mut(recv),
            src,
        )
    }

    /// Runs `f` with a [`Scope`] in which sends and receives can be started
    /// and later tested or waited for, while the caller computes. Every
    /// operation started in the scope is complete when `scope` returns.
    ///
    /// ```
    /// use ringreduce::{Local, Transport};
    /// let out = Local::run(2, |t| {
    ///     let peer = 1 - t.rank();
    ///     let mine = [t.rank() as u8; 4];
    ///     let mut theirs = [0u8; 4];
    ///     t.scope(|s| {
    ///         let r = s.recv(&mut theirs, peer)?;
    ///         s.send(&mine, peer)?;
    ///         let overlapped: u32 = (0..1000).sum(); // local work while the bytes travel
    ///         let got = s.wait_recv(r)?;
    ///         Ok((overlapped, got.data.to_vec()))
    ///     })
    ///     .unwrap()
    /// });
    /// assert_eq!(out[0].1, vec![1; 4]);
    /// ```
    ///
    /// # Errors
    /// The first error of `f` or of completing the remaining operations.
    fn scope<'env, R, F>(&'env self, f: F) -> Result<R>
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env, Self>) -> Result<R>,
    {
        scope::run(self, f)
    }
}

/// Receives from whichever rank sends first: what a parameter server's
/// loop needs. Implemented by [`Mpi`], [`LocalEndpoint`] and [`Counting`].
pub trait AnySource: Transport {
    /// Starts receiving a message of at most `buf.len()` bytes with `tag`
    /// from any rank; [`Done::peer`] tells which.
    ///
    /// # Safety
    /// As [`Transport::start_recv`].
    ///
    /// # Errors
    /// As [`Transport::start_recv`].
    unsafe fn start_recv_any(&self, buf: &mut [u8], tag: Tag) -> Result<Self::Request>;

    /// Sends `buf` to `dest` with `tag` (blocking).
    fn send_tagged(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<()> {
        // SAFETY: the request is waited for before `buf`'s borrow ends.
        let mut reqs = [unsafe { self.start_send(buf, dest, tag)? }];
        self.wait_all(&mut reqs, &mut [Done::default()])
    }

    /// Receives the first message with `tag` from any rank (blocking).
    fn recv_any(&self, buf: &mut [u8], tag: Tag) -> Result<Done> {
        let mut done = [Done::default()];
        // SAFETY: the request is waited for before `buf`'s borrow ends.
        let mut reqs = [unsafe { self.start_recv_any(buf, tag)? }];
        self.wait_all(&mut reqs, &mut done)?;
        Ok(done[0])
    }
}

impl<X: Transport + ?Sized> Transport for &X {
    type Request = X::Request;
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    unsafe fn start_send(&self, buf: &[u8], dest: usize, tag: Tag) -> Result<Self::Request> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { (**self).start_send(buf, dest, tag) }
    }
    unsafe fn start_recv(&self, buf: &mut [u8], src: usize, tag: Tag) -> Result<Self::Request> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { (**self).start_recv(buf, src, tag) }
    }
    fn test(&self, req: &mut Self::Request) -> Result<Option<Done>> {
        (**self).test(req)
    }
    fn wait_all(&self, reqs: &mut [Self::Request], done: &mut [Done]) -> Result<()> {
        (**self).wait_all(reqs, done)
    }
    fn progress(&self) -> Option<&Progress> {
        (**self).progress()
    }
    fn ranks_per_node(&self) -> usize {
        (**self).ranks_per_node()
    }
    fn abort_stalled(&self, message: &str) -> Result<()> {
        (**self).abort_stalled(message)
    }
}

impl<X: AnySource + ?Sized> AnySource for &X {
    unsafe fn start_recv_any(&self, buf: &mut [u8], tag: Tag) -> Result<Self::Request> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { (**self).start_recv_any(buf, tag) }
    }
}

/// Returns an error unless `peer` is a valid rank of a group of `size`.
#[inline]
pub(crate) fn valid_rank(peer: usize, size: usize) -> Result<()> {
    if peer < size {
        Ok(())
    } else {
        Err(Error::InvalidRank { rank: peer, size })
    }
}

/// Returns an error unless `peer` and `tag` are a valid destination or source.
#[inline]
pub(crate) fn valid_target(peer: usize, size: usize, tag: Tag) -> Result<()> {
    if peer < size && tag <= MAX_TAG {
        return Ok(());
    }
    valid_rank(peer, size)?;
    valid_tag(tag)
}

/// Returns an error unless `tag` is valid on every transport.
pub(crate) fn valid_tag(tag: Tag) -> Result<()> {
    if tag <= MAX_TAG {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "tag",
            reason: format!("{tag} is above the largest tag {MAX_TAG}"),
        })
    }
}

/// `Ok` when `got` bytes are what `rank` expected from `from`.
pub(crate) fn exact(rank: usize, from: usize, expected: usize, got: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::MessageSize {
            rank,
            from,
            expected,
            got,
        })
    }
}
