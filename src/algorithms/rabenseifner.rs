//! Rabenseifner's all-reduce: reduce-scatter by recursive halving, then
//! all-gather by recursive doubling (Rabenseifner 2004; Thakur, Rabenseifner
//! & Gropp 2005), in MPICH's order: vector halving with distance doubling.
//!
//! Let p' be the largest power of two ≤ p. Ranks r ≥ p' first hand their
//! vector to rank r − p', which reduces it into its own, and get the result
//! back at the end — the same fold as the butterfly's, for every count (no
//! fallback to another schedule for small counts, cf. open-mpi/ompi#8186).
//! The p' remaining ranks cut the vector into p' chunks (lengths differing
//! by at most one). Reduce-scatter: in step j = 0 … log2 p' − 1 rank r
//! exchanges with r XOR 2^j — the butterfly's partners, in the butterfly's
//! order — keeps the half of its current chunk range on its side of the bit
//! (lower half when the bit is 0), sends the other half and reduces the
//! partner's copy of the kept half, lower rank's partial first. Every
//! element is therefore reduced by the butterfly's own tree: the results
//! are bitwise the butterfly's. After log2 p' steps rank r holds one
//! finished chunk. The all-gather undoes the steps in reverse order: in
//! step j rank r sends the range it kept in step j and receives the range
//! it gave away. Every element is finished on one rank and copied to the
//! others, so every rank ends with the same bits.
//!
//! The schedule runs on the butterfly's driver ([`recursive_doubling`] over
//! a [`Fold`]), so that the call checks' agreement can ride in its
//! reduce-scatter (see [`crate::group::check`]): by the last step of the
//! reduce-scatter every rank has heard from every rank.
//!
//! # Cost
//! 2·log2 p' rounds (+2 on the ranks that fold); bytes sent per rank
//! ≈ 2·(p' − 1)/p'·k·s (+k·s on folding ranks) — the ring's bandwidth in
//! logarithmically many rounds. Reduces ≈ (p' − 1)/p'·k elements.

use std::ops::Range;

use super::butterfly::{largest_power_of_two, recursive_doubling, Fold};
use super::{finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

pub(crate) struct Rabenseifner;

/// Element offset of chunk `i` of `n` chunks of `k` elements (i ≤ n).
fn at(k: usize, n: usize, i: usize) -> usize {
    i * (k / n) + i.min(k % n)
}

/// The reduce-scatter's steps on rank `r` of `pof2`, in chunks: in step j
/// (partner r XOR 2^j) the range kept and the range given away.
fn steps(r: usize, pof2: usize) -> impl Iterator<Item = ((usize, usize), (usize, usize))> {
    let (mut lo, mut hi, mut mask) = (0, pof2, 1);
    std::iter::from_fn(move || {
        if mask >= pof2 {
            return None;
        }
        let mid = lo + (hi - lo) / 2;
        let (keep, give) = if r & mask == 0 {
            ((lo, mid), (mid, hi))
        } else {
            ((mid, hi), (lo, mid))
        };
        (lo, hi) = keep;
        mask *= 2;
        Some((keep, give))
    })
}

/// Rank `r`'s place in the schedule for `k` elements among `pof2` ranks:
/// the element ranges of each reduce-scatter step, and how far it got.
pub(crate) struct Halving {
    r: usize,
    pof2: usize,
    /// Whether a rank ≥ p' folds its vector into this one first.
    folds_in: bool,
    /// (kept, given) element ranges of each step.
    ranges: Vec<(Range<usize>, Range<usize>)>,
    done: usize,
}

impl Halving {
    pub(crate) fn new(r: usize, p: usize, k: usize) -> Self {
        let pof2 = largest_power_of_two(p);
        let el = |(a, b): (usize, usize)| at(k, pof2, a)..at(k, pof2, b);
        let ranges = match r < pof2 {
            true => steps(r, pof2).map(|(keep, give)| (el(keep), el(give))).collect(),
            false => Vec::new(),
        };
        Halving {
            r,
            pof2,
            folds_in: r < p - pof2,
            ranges,
            done: 0,
        }
    }

    /// Whether a rank ≥ p' folds its vector into this one before the steps.
    pub(crate) fn folds_in(&self) -> bool {
        self.folds_in
    }

    /// The element ranges kept and given in the next step.
    pub(crate) fn next(&self) -> (Range<usize>, Range<usize>) {
        self.ranges[self.done.min(self.ranges.len().saturating_sub(1))].clone()
    }

    /// Moves on to the following step.
    pub(crate) fn advance(&mut self) {
        self.done += 1;
    }

    /// The elements this rank finished (after the last step).
    pub(crate) fn own(&self) -> Range<usize> {
        self.ranges.last().map_or(0..0, |(keep, _)| keep.clone())
    }

    /// The all-gather: the steps undone in reverse, over `buf` (whose
    /// [`Halving::own`] elements are finished). Collective over the p' ranks.
    pub(crate) fn gather<T: bytemuck::Pod, C: Transport + ?Sized>(
        &self,
        comm: &C,
        buf: &mut [T],
    ) -> Result<()> {
        let mut mask = self.pof2;
        for (keep, give) in self.ranges.iter().rev() {
            mask /= 2;
            let partner = self.r ^ mask;
            let (out, inc) = super::disjoint(buf, keep.clone(), give.clone());
            comm.sendrecv(out, partner, inc, partner)?;
        }
        Ok(())
    }
}

/// The plain all-reduce over the butterfly's driver: the caller's buffer
/// and an inbox of a whole vector (the fold-in's).
struct Halves<'a, T: Element> {
    rank: usize,
    buf: &'a mut [T],
    inbox: Scratch<T>,
    op: ReduceOp,
    steps: Halving,
    /// Whether this rank still receives a folding rank's vector.
    folding_in: bool,
}

impl<T: Element> Halves<'_, T> {
    fn exact(&self, got: usize, from: usize, count: usize) -> Result<()> {
        crate::transport::exact(self.rank, from, count * std::mem::size_of::<T>(), got)
    }
}

impl<T: Element> Fold for Halves<'_, T> {
    fn outgoing(&self) -> &[u8] {
        bytemuck::cast_slice(self.buf)
    }

    fn buffers(&mut self) -> (&[u8], &mut [u8]) {
        let k = self.buf.len();
        if self.folding_in {
            return (&[], bytemuck::cast_slice_mut(&mut self.inbox[..k]));
        }
        let (keep, give) = self.steps.next();
        (
            bytemuck::cast_slice(&self.buf[give]),
            bytemuck::cast_slice_mut(&mut self.inbox[..keep.len()]),
        )
    }

    fn merge(&mut self, got: usize, from: usize, order: Order) -> Result<()> {
        if std::mem::take(&mut self.folding_in) {
            self.exact(got, from, self.buf.len())?;
            let k = self.buf.len();
            T::reduce(self.op, self.buf, &self.inbox[..k], order);
            return Ok(());
        }
        let keep = self.steps.next().0;
        self.exact(got, from, keep.len())?;
        T::reduce(
            self.op,
            &mut self.buf[keep.clone()],
            &self.inbox[..keep.len()],
            order,
        );
        self.steps.advance();
        Ok(())
    }

    fn finish(&mut self, p: usize) {
        finish(self.op, &mut self.buf[self.steps.own()], p);
    }

    fn gather<C: Transport + ?Sized>(&mut self, comm: &C, _pof2: usize) -> Result<()> {
        self.steps.gather(comm, self.buf)
    }

    fn result(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(self.buf)
    }

    fn adopt(&mut self, got: usize, from: usize) -> Result<()> {
        self.exact(got, from, self.buf.len())
    }
}

impl Schedule for Rabenseifner {
    const NAME: &'static str = "rabenseifner";
    const TIE_ORDER: u8 = 4;

    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        let (p, k) = (p as usize, k as usize);
        let pof2 = largest_power_of_two(p);
        let extra = p - pof2;
        let at = |i: usize| at(k, pof2, i) as u64;
        let (k64, l) = (k as u64, u64::from(pof2.trailing_zeros()));
        let (mut sent_max, mut total, mut path_max, mut reduced_max) = (0u64, 0u64, 0u64, 0u64);
        for r in 0..pof2 {
            let folds = r < extra;
            let (mut sent, mut path, mut reduced) = if folds { (k64, 2 * k64, k64) } else { (0, 0, 0) };
            for (keep, give) in steps(r, pof2) {
                let (kept, given) = (at(keep.1) - at(keep.0), at(give.1) - at(give.0));
                // reduce-scatter: give one half, reduce the other; the
                // all-gather sends the kept half back and takes the given one
                sent += given + kept;
                path += 2 * kept.max(given);
                reduced += kept;
            }
            sent_max = sent_max.max(sent);
            path_max = path_max.max(path);
            reduced_max = reduced_max.max(reduced);
            total += sent;
        }
        let folds = u64::from(extra > 0);
        Cost {
            rounds: 2 * l + 2 * folds,
            exchanges: 2 * l,
            messages: 2 * l + folds,
            bytes_sent: sent_max.max(folds * k64) * s,
            total_bytes: (total + extra as u64 * k64) * s,
            path_bytes: path_max * s,
            reduced: reduced_max,
            memory_bytes: 3 * reduced_max * s,
            footprint: 2 * k64 * s,
            ..zero
        }
    }

    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        _: Knobs,
    ) -> Result<()> {
        let buf = data.in_place();
        let (p, r, k) = (comm.size(), comm.rank(), buf.len());
        let steps = Halving::new(r, p, k);
        let mut fold = Halves {
            rank: r,
            inbox: Scratch::new(k),
            op,
            folding_in: steps.folds_in(),
            steps,
            buf,
        };
        recursive_doubling(comm, &mut fold)
    }
}
