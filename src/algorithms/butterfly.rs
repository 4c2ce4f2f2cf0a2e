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
//! # Cost
//! log2 p' rounds, plus 2 when p ≠ p' (on the ranks that fold); k·s bytes
//! sent per round; k elements reduced per round.

use super::finish;
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

/// Largest power of two that is ≤ `p` (p ≥ 1).
pub(crate) fn largest_power_of_two(p: usize) -> usize {
    1 << (usize::BITS - 1 - p.leading_zeros())
}

pub(crate) fn all_reduce<T: Element, C: Transport + ?Sized>(
    comm: &C,
    buf: &mut [T],
    op: ReduceOp,
) -> Result<()> {
    let p = comm.size();
    let r = comm.rank();
    let pof2 = largest_power_of_two(p);
    let extra = p - pof2;

    if r >= pof2 {
        // fold-in: hand the vector to the partner, then wait for the result
        let partner = r - pof2;
        comm.send(buf, partner)?;
        comm.recv(buf, partner)?;
        return Ok(());
    }

    let mut scratch = Scratch::<T>::new(buf.len());
    if r < extra {
        // fold-in: the partner is a higher rank, so its vector goes second
        comm.recv(&mut scratch, r + pof2)?;
        T::reduce(op, buf, &scratch, Order::AccFirst);
    }

    let mut mask = 1;
    while mask < pof2 {
        // round log2(mask): swap whole partial results with r XOR mask
        let partner = r ^ mask;
        comm.sendrecv(buf, partner, &mut scratch, partner)?;
        let order = if partner < r {
            Order::SrcFirst
        } else {
            Order::AccFirst
        };
        T::reduce(op, buf, &scratch, order);
        mask <<= 1;
    }

    finish(op, buf, p);
    if r < extra {
        // fold-out: return the finished result to the partner
        comm.send(buf, r + pof2)?;
    }
    Ok(())
}
