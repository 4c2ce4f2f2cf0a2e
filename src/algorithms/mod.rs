//! The all-reduce algorithms, one file each, and the one dispatch `match`.
//!
//! All of them are written against [`Transport`] only. Every algorithm keeps
//! the invariants of the design notes: bitwise identical results on every
//! rank, agreement with `MPI_Allreduce`, and support for p = 1, count = 0,
//! count < p, non-power-of-two p and odd counts.

mod butterfly;
mod central;
mod naive;
mod ring;

pub(crate) use butterfly::{all_reduce as butterfly_all_reduce, largest_power_of_two};

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use crate::check::{self, Begun, Signature};
use crate::element::{names, Element, ReduceOp};
use crate::error::{Error, Result};
use crate::transport::Transport;

/// Which all-reduce schedule to run. p = ranks, k = elements, s = element size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ring of whole vectors: in each of p−1 rounds every rank passes a whole
    /// vector to its right neighbour and receives one from its left.
    /// Rounds p−1; bytes sent per rank (p−1)·k·s. To end bitwise identical
    /// on every rank it reduces in rank order, which keeps up to p−1
    /// received vectors in memory on the last rank.
    Naive,
    /// Recursive doubling: in round j rank r exchanges its whole partial
    /// result with rank r XOR 2^j. For p not a power of two the ranks above
    /// the largest power of two p' first fold into a partner and get the
    /// result back at the end. Rounds log2 p' (+2 when p ≠ p'); bytes k·s per round.
    Butterfly,
    /// Bandwidth-optimal ring (Patarasuk & Yuan 2009): reduce-scatter of p
    /// chunks in p−1 rounds, then all-gather in p−1 rounds. Rounds 2(p−1);
    /// bytes sent per rank ≈ 2·(p−1)/p·k·s, the lower bound.
    Ring,
    /// Parameter-server pattern: every rank sends to rank 0, which reduces
    /// in rank order and sends the result back. Root: 2(p−1) rounds,
    /// (p−1)·k·s bytes out and in.
    Central,
    /// Picks one of the above per call: the lowest time predicted by the
    /// cost model ([`crate::cost::select`]) for this p and size, under the
    /// transport's [`Tuning`](crate::cost::Tuning) (a calibration file via
    /// `RINGREDUCE_CALIBRATION`, or built-in defaults). `RINGREDUCE_ALGO`
    /// overrides the choice, like `NCCL_ALGO`. Every rank makes the same choice.
    Auto,
}

impl Algorithm {
    /// Every concrete schedule (all but `Auto`), in a fixed order.
    pub const CONCRETE: [Algorithm; 4] = [
        Algorithm::Naive,
        Algorithm::Butterfly,
        Algorithm::Ring,
        Algorithm::Central,
    ];

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Naive => "naive",
            Algorithm::Butterfly => "butterfly",
            Algorithm::Ring => "ring",
            Algorithm::Central => "central",
            Algorithm::Auto => "auto",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        let all = Algorithm::CONCRETE.into_iter().chain([Algorithm::Auto]);
        all.clone()
            .find(|a| a.name() == lower)
            .ok_or_else(|| Error::UnknownName {
                kind: "algorithm",
                name: s.to_string(),
                expected: names(all.map(|a| a.name())),
            })
    }
}

/// All-reduces `buf` in place: on return every rank holds `op` over all
/// ranks' buffers, bitwise identical on every rank.
///
/// Every rank of the transport must call it with the same length, element
/// type, op and algorithm; the call checks catch it when they do not.
///
/// # Examples
/// See `examples/allreduce.rs`; with threads instead of MPI:
/// ```
/// use ringreduce::{all_reduce_in_place, Algorithm, Local, ReduceOp, Transport};
/// let out = Local::run(3, |t| {
///     let mut v = vec![t.rank() as i64; 5];
///     all_reduce_in_place(&t, &mut v, ReduceOp::Max, Algorithm::Butterfly).unwrap();
///     v
/// });
/// assert!(out.iter().all(|v| v == &vec![2; 5]));
/// ```
///
/// # Errors
/// [`Error::Mismatch`], the same on every rank and before any data moved,
/// when ranks passed different lengths, element types, ops or algorithms
/// (the transport's call checks, [`crate::check`]; on by default for
/// [`Mpi`](crate::Mpi) and [`Local`](crate::Local)). With the checks off,
/// [`Error::MessageSize`] when the transport noticed. [`Error::Transport`]
/// when a peer went away. MPI's own failures abort the job (rsmpi's
/// default error handler), and so does a stall past the MPI transport's
/// timeout.
///
/// # Cost
/// See [`Algorithm`] for rounds and bytes of each schedule.
pub fn all_reduce_in_place<T, C>(comm: &C, buf: &mut [T], op: ReduceOp, algorithm: Algorithm) -> Result<()>
where
    T: Element,
    C: Transport + ?Sized,
{
    // Validate first (every rank agrees on the call), trivial exits next, then the work.
    if comm.size() <= 1 {
        return Ok(());
    }
    let algorithm = match algorithm {
        Algorithm::Auto => comm
            .tuning()
            .resolve(comm.size(), buf.len(), std::mem::size_of::<T>()),
        concrete => concrete,
    };
    let signature = Signature {
        count: buf.len() as u64,
        dtype: T::DTYPE,
        op,
        algorithm,
    };
    if check::begin(comm, signature, buf)? == Begun::Done || buf.is_empty() {
        return Ok(());
    }
    match algorithm {
        Algorithm::Naive => naive::all_reduce(comm, buf, op),
        Algorithm::Butterfly => butterfly::all_reduce(comm, buf, op),
        Algorithm::Ring => ring::all_reduce(comm, None, buf, op),
        Algorithm::Central => central::all_reduce(comm, buf, op),
        Algorithm::Auto => unreachable!("resolved above"),
    }
}

/// Out-of-place all-reduce: `recv` gets `op` over every rank's `send`.
///
/// # Errors
/// [`Error::LengthMismatch`] when `send` and `recv` differ in length; the
/// errors of [`all_reduce_in_place`] otherwise.
pub fn all_reduce<T, C>(
    comm: &C,
    send: &[T],
    recv: &mut [T],
    op: ReduceOp,
    algorithm: Algorithm,
) -> Result<()>
where
    T: Element,
    C: Transport + ?Sized,
{
    if send.len() != recv.len() {
        return Err(Error::LengthMismatch {
            send: send.len(),
            recv: recv.len(),
        });
    }
    recv.copy_from_slice(send);
    all_reduce_in_place(comm, recv, op, algorithm)
}

/// The element range of chunk `i` when `k` elements are cut into `p`
/// chunks: the first `k % p` chunks have one element more, so chunk sizes
/// differ by at most one and may be empty when k < p.
pub fn chunk_range(k: usize, p: usize, i: usize) -> Range<usize> {
    let base = k / p;
    let rem = k % p;
    let start = i * base + i.min(rem);
    let len = base + usize::from(i < rem);
    start..start + len
}

/// Final step of [`ReduceOp::Avg`]: divide by the number of ranks.
pub(crate) fn finish<T: Element>(op: ReduceOp, buf: &mut [T], p: usize) {
    if op == ReduceOp::Avg {
        T::divide(buf, p);
    }
}

#[cfg(test)]
mod tests;
