//! The small transport every algorithm is written against.
//!
//! Like Gloo's `transport::Pair` or NCCL's `Primitives`, the algorithms only
//! need a rank, a size and three blocking point-to-point calls. Implementations
//! move bytes; the typed methods cast with `bytemuck` on top of them.
//!
//! - [`Mpi`]: any rsmpi communicator (the real path, under `mpirun`);
//! - [`Local`]: p ranks as threads of one process (fast tests, criterion);
//! - [`Counting`]: wraps any transport and records calls and bytes per rank,
//!   which is how the tests hold the cost model to the code.
//!
//! A recv must be matched by a send of exactly the same length; a different
//! length is reported as [`Error::MessageSize`].
//! Messages between one pair of ranks arrive in the order they were sent.

mod counting;
mod local;
mod mpi;

pub use self::counting::{CallStats, Counting};
pub use self::local::{Local, LocalEndpoint};
pub(crate) use self::mpi::agree_on;
pub use self::mpi::Mpi;

use crate::check::CallChecks;
use crate::cost::Tuning;
use crate::element::Element;
use crate::error::{Error, Result};

/// Point-to-point transport between the ranks of one group.
///
/// Implementors provide the byte-level methods; algorithms call the typed
/// ones. Every call is blocking: it returns when the local buffer may be
/// reused (send) or holds the message (recv).
pub trait Transport {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;

    /// Sends `buf` to rank `dest`.
    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()>;
    /// Receives exactly `buf.len()` bytes from rank `src`.
    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()>;
    /// Sends `send` to `dest` while receiving exactly `recv.len()` bytes from
    /// `src`, without deadlocking when every rank does the same.
    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()>;

    /// Receives a message of at most `buf.len()` bytes from `src` into the
    /// front of `buf` and returns its length. The default accepts only
    /// messages of exactly `buf.len()` bytes; transports that keep
    /// [`checks`](Transport::checks) must accept shorter ones (the call
    /// check's messages differ in length when ranks disagree).
    fn recv_bytes_upto(&self, buf: &mut [u8], src: usize) -> Result<usize> {
        self.recv_bytes(buf, src).map(|()| buf.len())
    }
    /// [`sendrecv_bytes`](Transport::sendrecv_bytes) with the receive of
    /// [`recv_bytes_upto`](Transport::recv_bytes_upto).
    fn sendrecv_bytes_upto(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<usize> {
        self.sendrecv_bytes(send, dest, recv, src).map(|()| recv.len())
    }

    /// How [`Algorithm::Auto`](crate::Algorithm::Auto) chooses on this group.
    /// Plain data, identical on every rank; built-in defaults unless the
    /// implementation was given others.
    fn tuning(&self) -> Tuning {
        Tuning::default()
    }

    /// The group's call checks ([`crate::check`]): its call counter and
    /// settings. `None` (the default) makes calls unchecked and unnumbered.
    fn checks(&self) -> Option<&CallChecks> {
        None
    }

    /// Sends a typed slice to `dest`.
    fn send<T: Element>(&self, buf: &[T], dest: usize) -> Result<()> {
        self.send_bytes(bytemuck::cast_slice(buf), dest)
    }
    /// Receives a typed slice from `src`; the sender must send the same length.
    fn recv<T: Element>(&self, buf: &mut [T], src: usize) -> Result<()> {
        self.recv_bytes(bytemuck::cast_slice_mut(buf), src)
    }
    /// Sends to `dest` and receives from `src` at once.
    fn sendrecv<T: Element>(&self, send: &[T], dest: usize, recv: &mut [T], src: usize) -> Result<()> {
        self.sendrecv_bytes(
            bytemuck::cast_slice(send),
            dest,
            bytemuck::cast_slice_mut(recv),
            src,
        )
    }
}

impl<X: Transport + ?Sized> Transport for &X {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()> {
        (**self).send_bytes(buf, dest)
    }
    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()> {
        (**self).recv_bytes(buf, src)
    }
    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()> {
        (**self).sendrecv_bytes(send, dest, recv, src)
    }
    fn recv_bytes_upto(&self, buf: &mut [u8], src: usize) -> Result<usize> {
        (**self).recv_bytes_upto(buf, src)
    }
    fn sendrecv_bytes_upto(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<usize> {
        (**self).sendrecv_bytes_upto(send, dest, recv, src)
    }
    fn tuning(&self) -> Tuning {
        (**self).tuning()
    }
    fn checks(&self) -> Option<&CallChecks> {
        (**self).checks()
    }
}

/// Returns an error unless `peer` is a valid rank of a group of `size`.
pub(crate) fn check_peer(peer: usize, size: usize) -> Result<()> {
    if peer < size {
        Ok(())
    } else {
        Err(Error::InvalidRank { rank: peer, size })
    }
}
