//! The MPI transport: any rsmpi communicator.

use mpi::point_to_point as p2p;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::{check_peer, Transport};
use crate::cost::Tuning;
use crate::error::{Error, Result};

/// Largest message handed to MPI in one call. MPI counts are C `int`s, so
/// larger buffers are sent as several messages of at most this many bytes.
const MAX_MESSAGE: usize = 1 << 30;

/// Transport over an rsmpi communicator.
///
/// [`Mpi::new`] duplicates the communicator (`MPI_Comm_dup`, a collective
/// call), so the library's messages can never be matched by the
/// application's own sends and receives on the original communicator — the
/// same isolation NCCL and Gloo get from their own contexts.
///
/// MPI errors abort the job under rsmpi's default error handler
/// (`MPI_ERRORS_ARE_FATAL`); they are not returned as [`Error`].
///
/// # Examples
/// ```no_run
/// use ringreduce::{Algorithm, Mpi, ReduceOp};
/// let universe = mpi::initialize().expect("MPI already initialised");
/// let comm = Mpi::new(&universe.world())?;
/// let mut grad = vec![1.0f32; 1024];
/// ringreduce::all_reduce_in_place(&comm, &mut grad, ReduceOp::Sum, Algorithm::Ring)?;
/// # Ok::<(), ringreduce::Error>(())
/// ```
pub struct Mpi {
    comm: SimpleCommunicator,
    rank: usize,
    size: usize,
    tuning: Tuning,
}

impl Mpi {
    /// Wraps a private duplicate of `comm` (world or a split communicator).
    /// Collective: every rank of `comm` must call it.
    ///
    /// Rank 0 reads the [`Tuning`] for `Algorithm::Auto` from the environment
    /// (`RINGREDUCE_CALIBRATION`, `RINGREDUCE_ALGO`) and broadcasts it, so
    /// every rank chooses alike even if their files or environments differ.
    ///
    /// # Errors
    /// On every rank, when rank 0's calibration file is unreadable or
    /// malformed or `RINGREDUCE_ALGO` names no algorithm.
    pub fn new<C: Communicator>(comm: &C) -> Result<Self> {
        let comm = comm.duplicate();
        let root = comm.process_at_rank(0);
        let from_env = if comm.rank() == 0 {
            Some(Tuning::from_env())
        } else {
            None
        };
        // Broadcast rank 0's verdict: the error text (empty when fine) and the tuning.
        let mut error = match &from_env {
            Some(Err(e)) => e.to_string().into_bytes(),
            _ => Vec::new(),
        };
        let mut len = error.len() as u64;
        root.broadcast_into(&mut len);
        error.resize(len as usize, 0);
        if len > 0 {
            root.broadcast_into(&mut error[..]);
            return Err(Error::InvalidArgument {
                what: "tuning from the environment",
                reason: String::from_utf8_lossy(&error).into_owned(),
            });
        }
        let tuning = from_env.and_then(|t| t.ok()).unwrap_or_default();
        Ok(Mpi::agree(comm, tuning))
    }

    /// Like [`Mpi::new`] with an explicit tuning; rank 0's value is used on
    /// every rank. Collective.
    pub fn with_tuning<C: Communicator>(comm: &C, tuning: Tuning) -> Self {
        Mpi::agree(comm.duplicate(), tuning)
    }

    fn agree(comm: SimpleCommunicator, tuning: Tuning) -> Self {
        let mut wire = tuning.to_wire();
        comm.process_at_rank(0).broadcast_into(&mut wire[..]);
        let rank = comm.rank() as usize;
        let size = comm.size() as usize;
        Mpi {
            comm,
            rank,
            size,
            tuning: Tuning::from_wire(wire),
        }
    }

    /// The duplicated communicator the transport sends on.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.comm
    }

    fn check_count(&self, status: mpi::point_to_point::Status, expected: usize, src: usize) -> Result<()> {
        let got = status.count(u8::equivalent_datatype()) as usize;
        if got == expected {
            Ok(())
        } else {
            Err(Error::MessageSize {
                rank: self.rank,
                from: src,
                expected,
                got,
            })
        }
    }
}

/// A zero-length slice with a real address. An empty slice's dangling
/// pointer can equal a sentinel MPI gives meaning to (OpenMPI's
/// `MPI_IN_PLACE` is `(void*)1`, the dangling pointer of an empty `[u8]`).
fn safe_empty(buf: &[u8]) -> &[u8] {
    static EMPTY: [u8; 1] = [0];
    if buf.is_empty() {
        &EMPTY[..0]
    } else {
        buf
    }
}

/// Splits `len` bytes into the pieces sent as separate MPI messages
/// (always at least one piece, so empty buffers still send one message).
fn pieces(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let n = len.div_ceil(MAX_MESSAGE).max(1);
    (0..n).map(move |i| (i * MAX_MESSAGE).min(len)..((i + 1) * MAX_MESSAGE).min(len))
}

impl Transport for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn tuning(&self) -> Tuning {
        self.tuning
    }

    fn size(&self) -> usize {
        self.size
    }

    fn send_bytes(&self, buf: &[u8], dest: usize) -> Result<()> {
        check_peer(dest, self.size)?;
        let buf = safe_empty(buf);
        let process = self.comm.process_at_rank(dest as i32);
        for r in pieces(buf.len()) {
            process.send(&buf[r]);
        }
        Ok(())
    }

    fn recv_bytes(&self, buf: &mut [u8], src: usize) -> Result<()> {
        check_peer(src, self.size)?;
        let mut empty = [0u8; 1];
        let buf = if buf.is_empty() { &mut empty[..0] } else { buf };
        let process = self.comm.process_at_rank(src as i32);
        for r in pieces(buf.len()) {
            let expected = r.len();
            let status = process.receive_into(&mut buf[r]);
            self.check_count(status, expected, src)?;
        }
        Ok(())
    }

    fn sendrecv_bytes(&self, send: &[u8], dest: usize, recv: &mut [u8], src: usize) -> Result<()> {
        check_peer(dest, self.size)?;
        check_peer(src, self.size)?;
        let send = safe_empty(send);
        let mut empty = [0u8; 1];
        let recv = if recv.is_empty() { &mut empty[..0] } else { recv };
        let to = self.comm.process_at_rank(dest as i32);
        let from = self.comm.process_at_rank(src as i32);
        if send.len() <= MAX_MESSAGE && recv.len() <= MAX_MESSAGE {
            let status = p2p::send_receive_into(send, &to, recv, &from);
            return self.check_count(status, recv.len(), src);
        }
        // Buffers over MAX_MESSAGE go as several messages. The sends are
        // non-blocking so that a ring of ranks all sending large pieces
        // cannot deadlock waiting for receives that come later.
        mpi::request::scope(|scope| {
            let requests: Vec<_> = pieces(send.len())
                .map(|r| to.immediate_send(scope, &send[r]))
                .collect();
            let mut result = Ok(());
            for r in pieces(recv.len()) {
                let expected = r.len();
                let status = from.receive_into(&mut recv[r]);
                if result.is_ok() {
                    result = self.check_count(status, expected, src);
                }
            }
            for request in requests {
                request.wait();
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_buffer() {
        assert_eq!(pieces(0).collect::<Vec<_>>(), vec![0..0]);
        assert_eq!(pieces(5).collect::<Vec<_>>(), vec![0..5]);
        let big = 2 * MAX_MESSAGE + 7;
        let p: Vec<_> = pieces(big).collect();
        assert_eq!(
            p,
            vec![0..MAX_MESSAGE, MAX_MESSAGE..2 * MAX_MESSAGE, 2 * MAX_MESSAGE..big]
        );
    }
}
