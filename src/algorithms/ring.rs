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

use std::ops::Range;

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
    const COPIES_INPUT: bool = false;

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
    let (p, r, k) = (comm.size(), comm.rank(), buf.len());
    let owned = |i: usize| owned_chunk(k, p, i);
    match input {
        None => reduce_scatter(comm, None, buf, op, &owned)?,
        // Only the chunk this rank finishes is written before the all-gather.
        Some(x) => reduce_scatter(comm, Some(x), &mut buf[owned(r)], op, &owned)?,
    }
    // Rank r now owns its finished chunk; average it once, here.
    finish(op, &mut buf[owned(r)], p);
    all_gather(comm, buf, &owned)
}

/// The chunk of `k` elements rank `i` finishes in the ring's reduce-scatter
/// (and starts the all-gather with): [`chunk_range`] `(i + 1) mod p`. Its
/// reduction starts at the rank after `i`, and rank `i` reduces it last.
pub(crate) fn owned_chunk(k: usize, p: usize, i: usize) -> Range<usize> {
    chunk_range(k, p, (i + 1) % p)
}

/// The ring's reduce-scatter (p − 1 rounds): `owned(i)` (for i in 0..p)
/// are disjoint ranges of a k-element vector, and on return this rank
/// holds `op` over every rank's `owned(rank)` — not yet divided for
/// [`ReduceOp::Avg`] ([`finish`] does that).
///
/// In place (`input` = None): `buf` is the whole vector, the result lands
/// in `buf[owned(rank)]` and the rest of `buf` holds partial sums. Out of
/// place: `input` is the whole vector, only read, and `buf` (of
/// `owned(rank).len()` elements) receives the result.
///
/// In step s every rank r sends `owned(r − s − 1)` right and reduces the
/// arriving `owned(r − s − 2)` from the left, the partial sum first: the
/// block of rank i is reduced as op(op(x_{i+1}, x_{i+2}), …, x_i).
/// Collective; p ≥ 2.
pub(crate) fn reduce_scatter<T: Element, C: Transport + ?Sized>(
    comm: &C,
    input: Option<&[T]>,
    buf: &mut [T],
    op: ReduceOp,
    owned: &dyn Fn(usize) -> Range<usize>,
) -> Result<()> {
    let (p, r) = (comm.size(), comm.rank());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let chunk = |i: usize| owned(i % p);
    let widest = (0..p).map(|i| owned(i).len()).max().unwrap_or(0);
    let mut incoming = Scratch::<T>::new(widest);
    // Out of place, the partial sum this rank passes on next.
    let mut partial = Scratch::<T>::new(if input.is_some() { widest } else { 0 });
    for s in 0..p - 1 {
        let send = chunk(r + 2 * p - s - 1);
        let recv = chunk(r + 2 * p - s - 2);
        let inc = &mut incoming[..recv.len()];
        match input {
            None => {
                comm.sendrecv(&buf[send], right, inc, left)?;
                T::reduce(op, &mut buf[recv], inc, Order::SrcFirst);
            }
            Some(x) => {
                // Only step 0 sends an untouched block of the input.
                let outgoing = if s == 0 { &x[send] } else { &partial[..send.len()] };
                comm.sendrecv(outgoing, right, inc, left)?;
                let dst = if s == p - 2 {
                    &mut *buf
                } else {
                    &mut partial[..recv.len()]
                };
                T::reduce_into(op, dst, inc, &x[recv]);
            }
        }
    }
    if p == 1 {
        if let Some(x) = input {
            T::copy(buf, &x[owned(0)]);
        }
    }
    Ok(())
}

/// The ring's all-gather (p − 1 rounds): rank i's block `owned(i)` of
/// `buf` is in place on rank i; on return every rank holds every block. In
/// step s every rank r forwards `owned(r − s)` right and receives
/// `owned(r − s − 1)` from the left. Collective.
pub(crate) fn all_gather<T: bytemuck::Pod, C: Transport + ?Sized>(
    comm: &C,
    buf: &mut [T],
    owned: &dyn Fn(usize) -> Range<usize>,
) -> Result<()> {
    let (p, r) = (comm.size(), comm.rank());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    for s in 0..p.saturating_sub(1) {
        let send = owned((r + p - s) % p);
        let recv = owned((r + 2 * p - s - 1) % p);
        let (send_buf, recv_buf) = disjoint(buf, send, recv);
        comm.sendrecv(send_buf, right, recv_buf, left)?;
    }
    Ok(())
}
