//! Rabenseifner's all-reduce: reduce-scatter by recursive halving, then
//! all-gather by recursive doubling (Rabenseifner 2004; Thakur, Rabenseifner
//! & Gropp 2005).
//!
//! Let p' be the largest power of two ≤ p. Ranks r ≥ p' first hand their
//! vector to rank r − p', which reduces it into its own, and get the result
//! back at the end — the same fold as the butterfly's, for every count (no
//! fallback to another schedule for small counts, cf. open-mpi/ompi#8186).
//! The p' remaining ranks cut the vector into p' chunks (lengths differing
//! by at most one). Reduce-scatter: in step j = log2 p' − 1 … 0 rank r
//! exchanges with r XOR 2^j, keeps the half of its current chunk range on
//! its side of the bit (lower half when the bit is 0), sends the other half
//! and reduces the partner's copy of the kept half — lower rank's partial
//! first. After log2 p' steps rank r holds the finished chunk r. The
//! all-gather doubles the blocks back: in step j rank r swaps its aligned
//! block of 2^j chunks with r XOR 2^j. Every element is finished on one
//! rank and copied to the others, so every rank ends with the same bits.
//!
//! # Cost
//! 2·log2 p' rounds (+2 on the ranks that fold); bytes sent per rank
//! ≈ 2·(p' − 1)/p'·k·s (+k·s on folding ranks) — the ring's bandwidth in
//! logarithmically many rounds. Reduces ≈ (p' − 1)/p'·k elements.

use super::butterfly::largest_power_of_two;
use super::{disjoint, finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

pub(crate) struct Rabenseifner;

/// Element offset of chunk `i` of `n` chunks of `k` elements (i ≤ n).
fn at(k: usize, n: usize, i: usize) -> usize {
    i * (k / n) + i.min(k % n)
}

/// One step of the reduce-scatter on rank `r` (among `pof2`): the chunk
/// ranges kept and given away, from the current range `lo..hi`.
fn halve(r: usize, mask: usize, lo: usize, hi: usize) -> ((usize, usize), (usize, usize)) {
    let mid = lo + (hi - lo) / 2;
    if r & mask == 0 {
        ((lo, mid), (mid, hi))
    } else {
        ((mid, hi), (lo, mid))
    }
}

impl Schedule for Rabenseifner {
    const NAME: &'static str = "rabenseifner";
    const TIE_ORDER: u8 = 4;
    const AUTO: bool = false;

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
            let (mut lo, mut hi, mut mask) = (0, pof2, pof2 / 2);
            while mask > 0 {
                let (keep, give) = halve(r, mask, lo, hi);
                let (kept, given) = (at(keep.1) - at(keep.0), at(give.1) - at(give.0));
                sent += given;
                path += kept.max(given);
                reduced += kept;
                (lo, hi) = keep;
                mask /= 2;
            }
            let mut mask = 1;
            while mask < pof2 {
                let (mine, theirs) = (r & !(mask - 1), (r ^ mask) & !(mask - 1));
                let (out, inc) = (at(mine + mask) - at(mine), at(theirs + mask) - at(theirs));
                sent += out;
                path += out.max(inc);
                mask *= 2;
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
        all_reduce(comm, data.in_place(), op)
    }
}

fn all_reduce<T: Element, C: Transport + ?Sized>(comm: &C, buf: &mut [T], op: ReduceOp) -> Result<()> {
    let (p, r, k) = (comm.size(), comm.rank(), buf.len());
    let pof2 = largest_power_of_two(p);
    let extra = p - pof2;
    if r >= pof2 {
        // fold-in: hand the vector to the partner, then take the result
        comm.send(buf, r - pof2)?;
        return comm.recv(buf, r - pof2);
    }
    let mut scratch = Scratch::<T>::new(k);
    if r < extra {
        // fold-in: the partner is a higher rank, so its data go second
        comm.recv(&mut scratch[..k], r + pof2)?;
        T::reduce(op, buf, &scratch[..k], Order::AccFirst);
    }
    let at = |i: usize| at(k, pof2, i);
    // Reduce-scatter by recursive halving.
    let (mut lo, mut hi, mut mask) = (0, pof2, pof2 / 2);
    while mask > 0 {
        let partner = r ^ mask;
        let (keep, give) = halve(r, mask, lo, hi);
        let (kept, given) = (at(keep.0)..at(keep.1), at(give.0)..at(give.1));
        let inbox = &mut scratch[..kept.len()];
        comm.sendrecv(&buf[given], partner, inbox, partner)?;
        let order = if partner < r {
            Order::SrcFirst
        } else {
            Order::AccFirst
        };
        T::reduce(op, &mut buf[kept], inbox, order);
        (lo, hi) = keep;
        mask /= 2;
    }
    debug_assert_eq!((lo, hi), (r, r + 1));
    finish(op, &mut buf[at(r)..at(r + 1)], p);
    // All-gather by recursive doubling.
    let mut mask = 1;
    while mask < pof2 {
        let partner = r ^ mask;
        let (mine, theirs) = (r & !(mask - 1), partner & !(mask - 1));
        let (out, inc) = disjoint(buf, at(mine)..at(mine + mask), at(theirs)..at(theirs + mask));
        comm.sendrecv(out, partner, inc, partner)?;
        mask *= 2;
    }
    if r < extra {
        // fold-out: return the result to the partner
        comm.send(buf, r + pof2)?;
    }
    Ok(())
}
