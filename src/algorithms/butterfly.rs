//! Butterfly (recursive doubling) all-reduce.
//!
//! Let p' be the largest power of two ≤ p. Ranks r ≥ p' first send their
//! vector to rank r − p', which reduces it into its own (fold-in). The p'
//! remaining ranks then run log2 p' rounds: in round j rank r exchanges its
//! whole partial result with rank r XOR 2^j and both reduce. Finally rank
//! r − p' sends the result back to rank r (fold-out).
//!
//! Both partners of a round evaluate `op(lower rank's partial, higher
//! rank's partial)`, so every rank ends with bitwise identical values.
//!
//! The schedule is written once, over a [`Fold`] (what travels and how two
//! partial results merge), so that the call checks' agreement — a
//! minimum over small headers, optionally with a small all-reduce riding
//! along — runs on this same butterfly.
//!
//! # Cost
//! log2 p' rounds, plus 2 when p ≠ p' (on the ranks that fold); k·s bytes
//! sent per round; k elements reduced per round.

use super::{finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

pub(crate) struct Butterfly;

impl Schedule for Butterfly {
    const NAME: &'static str = "butterfly";
    const TIE_ORDER: u8 = 1;
    const COPIES_INPUT: bool = false;

    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        let pof2 = largest_power_of_two(p as usize) as u64;
        let n = k * s;
        let extra = p - pof2;
        let l = u64::from(pof2.trailing_zeros());
        let folds = u64::from(extra > 0);
        Cost {
            rounds: l + 2 * folds,
            exchanges: l,
            messages: l + folds,
            bytes_sent: (l + folds) * n,
            total_bytes: (pof2 * l + 2 * extra) * n,
            path_bytes: (l + 2 * folds) * n,
            reduced: (l + folds) * k,
            memory_bytes: 3 * (l + folds) * n,
            footprint: 2 * n,
            ..zero
        }
    }

    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        _: Knobs,
    ) -> Result<()> {
        // Out of place, the input is sent where it is and the first merge
        // writes the output from it: no copy in, and the output's lines
        // are never read by a partner before this rank writes them (a
        // partner that just read a line makes the write wait for it).
        let (input, buf) = match data {
            Buffers::InPlace(buf) => (None, buf),
            Buffers::OutOfPlace(input, buf) => (Some(input), buf),
        };
        let mut scratch = Scratch::<T>::new(buf.len());
        let mut fold = Typed {
            rank: comm.rank(),
            input,
            buf,
            scratch: &mut scratch,
            op,
        };
        recursive_doubling(comm, &mut fold)
    }
}

/// Largest power of two that is ≤ `p` (p ≥ 1).
pub(crate) fn largest_power_of_two(p: usize) -> usize {
    1 << (usize::BITS - 1 - p.leading_zeros())
}

/// One rank's side of the recursive-doubling schedule: what it sends, where
/// it receives, and how two partial results merge.
pub(crate) trait Fold {
    /// The bytes this rank sends next (its partial result).
    fn outgoing(&self) -> &[u8];
    /// The outgoing bytes and, beside them, where a partner's partial
    /// result arrives (its capacity bounds the message).
    fn buffers(&mut self) -> (&[u8], &mut [u8]);
    /// Merges the `got` bytes that arrived from `from` into this rank's
    /// partial result; `order` says whose operand comes first.
    fn merge(&mut self, got: usize, from: usize, order: Order) -> Result<()>;
    /// Called once on every rank that holds the finished result, before it
    /// is handed to a folded-in partner (e.g. the division of `avg`).
    fn finish(&mut self, p: usize);
    /// Where a folded-in rank receives the finished result.
    fn result(&mut self) -> &mut [u8];
    /// Checks the `got` bytes of the finished result that arrived from `from`.
    fn adopt(&mut self, got: usize, from: usize) -> Result<()>;
    /// Called once on every rank of the power-of-two set after
    /// [`Fold::finish`], before the fold-out: a schedule whose rounds left
    /// the result scattered over the ranks gathers it here (Rabenseifner's).
    fn gather<C: Transport + ?Sized>(&mut self, _comm: &C, _pof2: usize) -> Result<()> {
        Ok(())
    }
}

/// Runs the butterfly over `fold` (see the module docs). Collective.
pub(crate) fn recursive_doubling<C: Transport + ?Sized, F: Fold>(comm: &C, fold: &mut F) -> Result<()> {
    let (p, r) = (comm.size(), comm.rank());
    let pof2 = largest_power_of_two(p);
    let extra = p - pof2;

    if r >= pof2 {
        // fold-in: hand the partial result to the partner, then take the finished one
        let partner = r - pof2;
        comm.send_bytes(fold.outgoing(), partner)?;
        let got = comm.recv_bytes_upto(fold.result(), partner)?;
        return fold.adopt(got, partner);
    }
    if r < extra {
        // fold-in: the partner is a higher rank, so its data go second
        let got = comm.recv_bytes_upto(fold.buffers().1, r + pof2)?;
        fold.merge(got, r + pof2, Order::AccFirst)?;
    }
    let mut mask = 1;
    while mask < pof2 {
        // round log2(mask): swap whole partial results with r XOR mask
        let partner = r ^ mask;
        let (out, inbox) = fold.buffers();
        let got = comm.sendrecv_bytes_upto(out, partner, inbox, partner)?;
        let order = if partner < r {
            Order::SrcFirst
        } else {
            Order::AccFirst
        };
        fold.merge(got, partner, order)?;
        mask <<= 1;
    }
    fold.finish(p);
    fold.gather(comm, pof2)?;
    if r < extra {
        // fold-out: return the finished result to the partner
        comm.send_bytes(fold.outgoing(), r + pof2)?;
    }
    Ok(())
}

/// The plain all-reduce: a typed buffer and a scratch inbox.
struct Typed<'a, T: Element> {
    rank: usize,
    /// An out-of-place call's input until the first merge writes `buf`
    /// from it: sent in place of `buf` until then.
    input: Option<&'a [T]>,
    buf: &'a mut [T],
    scratch: &'a mut [T],
    op: ReduceOp,
}

impl<T: Element> Typed<'_, T> {
    fn exact(&self, got: usize, from: usize) -> Result<()> {
        crate::transport::exact(self.rank, from, std::mem::size_of_val(self.buf), got)
    }
}

impl<T: Element> Fold for Typed<'_, T> {
    fn outgoing(&self) -> &[u8] {
        bytemuck::cast_slice(self.input.unwrap_or(self.buf))
    }
    fn buffers(&mut self) -> (&[u8], &mut [u8]) {
        (
            bytemuck::cast_slice(self.input.unwrap_or(self.buf)),
            bytemuck::cast_slice_mut(self.scratch),
        )
    }
    fn merge(&mut self, got: usize, from: usize, order: Order) -> Result<()> {
        self.exact(got, from)?;
        match self.input.take() {
            // op(lower rank's partial, higher rank's): bitwise the copy
            // followed by `reduce` (`Element::reduce_into`).
            Some(input) => match order {
                Order::AccFirst => T::reduce_into(self.op, self.buf, input, self.scratch),
                Order::SrcFirst => T::reduce_into(self.op, self.buf, self.scratch, input),
            },
            None => T::reduce(self.op, self.buf, self.scratch, order),
        }
        Ok(())
    }
    fn finish(&mut self, p: usize) {
        // Every rank that finishes merged at least once (p ≥ 2), which
        // took the input: `buf` holds the result.
        debug_assert!(self.input.is_none());
        finish(self.op, self.buf, p);
    }
    fn result(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(self.buf)
    }
    fn adopt(&mut self, got: usize, from: usize) -> Result<()> {
        self.exact(got, from)
    }
}
