//! Bandwidth-optimal ring all-reduce: reduce-scatter, then all-gather.
//!
//! The vector is cut into p chunks that differ in length by at most one
//! element (see [`chunk_range`]). In reduce-scatter step s every rank r
//! sends chunk (r − s) mod p to its right neighbour and reduces the chunk
//! (r − s − 1) mod p arriving from its left; after p − 1 steps rank r holds
//! the complete result of chunk (r + 1) mod p. All-gather then circulates
//! the finished chunks for another p − 1 steps.
//!
//! # Cost
//! 2(p − 1) rounds; rank r sends Σ of p − 1 chunk sizes in each phase,
//! ≈ 2·(p − 1)/p·k·s bytes in all — the lower bound of Patarasuk & Yuan (2009).
//! Reduces ≈ (p − 1)/p·k elements.

use super::{chunk_range, disjoint, finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

pub(crate) struct Ring;

impl Schedule for Ring {
    const NAME: &'static str = "ring";
    const TIE_ORDER: u8 = 0;
    const SHIFTS: bool = true;

    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        let q = k / p;
        let m = k % p;
        let big = q + u64::from(m > 0);
        // Rank r skips chunk r+1 in reduce-scatter and r+2 in all-gather;
        // the busiest rank skips the two smallest neighbouring chunks.
        let skipped = if m == 0 || p - m >= 2 { 2 * q } else { 2 * q + 1 };
        Cost {
            rounds: 2 * (p - 1),
            exchanges: 2 * (p - 1),
            messages: 2 * (p - 1),
            bytes_sent: (2 * k - skipped) * s,
            total_bytes: 2 * (p - 1) * k * s,
            path_bytes: 2 * (p - 1) * big * s,
            reduced: k - q,
            memory_bytes: 3 * (k - q) * s,
            footprint: (k + big) * s,
            ..zero
        }
    }

    /// Out of place, the input is read where it is: never copied.
    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        _: Knobs,
    ) -> Result<()> {
        match data {
            Buffers::InPlace(buf) => all_reduce(comm, None, buf, op),
            Buffers::OutOfPlace(input, buf) => all_reduce(comm, Some(input), buf, op),
        }
    }
}

/// In place (`input` = None), or out of place reading the input from
/// `input` and writing only `buf`: every element of `buf` is written by a
/// reduction or an arriving chunk, so the input is never copied.
fn all_reduce<T: Element, C: Transport + ?Sized>(
    comm: &C,
    input: Option<&[T]>,
    buf: &mut [T],
    op: ReduceOp,
) -> Result<()> {
    let p = comm.size();
    let r = comm.rank();
    let k = buf.len();
    let right = (r + 1) % p;
    let left = (r + p - 1) % p;
    let chunk = |i: usize| chunk_range(k, p, i % p);
    let mut incoming = Scratch::<T>::new(chunk(0).len());

    // Reduce-scatter.
    for s in 0..p - 1 {
        // step s: push chunk (r - s) to the right, reduce chunk (r - s - 1) from the left
        let send = chunk(r + p - s);
        let recv = chunk(r + 2 * p - s - 1);
        let inc = &mut incoming[..recv.len()];
        // Only step 0 sends an untouched chunk of the input.
        let outgoing = match input {
            Some(x) if s == 0 => &x[send],
            _ => &buf[send],
        };
        comm.sendrecv(outgoing, right, inc, left)?;
        // The partial sum travelling round the ring comes first, so chunk c
        // is reduced as op(op(x_c, x_{c+1}), …) on whichever rank finishes it.
        match input {
            Some(x) => T::reduce_into(op, &mut buf[recv.clone()], inc, &x[recv]),
            None => T::reduce(op, &mut buf[recv], inc, Order::SrcFirst),
        }
    }

    // Rank r now owns the finished chunk r + 1; average it once, here.
    let owned = chunk(r + 1);
    finish(op, &mut buf[owned], p);

    // All-gather.
    for s in 0..p - 1 {
        // step s: forward finished chunk (r + 1 - s), receive chunk (r - s)
        let send = chunk(r + 1 + p - s);
        let recv = chunk(r + p - s);
        let (send_buf, recv_buf) = disjoint(buf, send, recv);
        comm.sendrecv(send_buf, right, recv_buf, left)?;
    }
    Ok(())
}
