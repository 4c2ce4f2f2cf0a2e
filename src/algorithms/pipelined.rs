//! Pipelined (segmented) ring all-reduce.
//!
//! The ring's schedule (see [`ring`](super::ring)) with every chunk cut
//! into m segments that travel on their own: as soon as segment j of a
//! step has arrived and been reduced, it is forwarded to the right as
//! segment j of the next step — while segments j+1… of the current step are
//! still in flight. A rank no longer waits for the whole chunk of a step
//! before it sends the next, so the steps of the ring overlap and a slow
//! rank or link delays one segment, not a whole step. The segments of two
//! consecutive steps land in two alternating incoming buffers; the
//! all-gather receives straight into the result and forwards from there.
//!
//! m ≈ √(2(p−1)·n·β/α) — the segment count that balances the per-message
//! latency against the pipeline's fill time — from the built-in model's
//! exchange lines ([`BUILT_IN_LINES`]), clamped to 1..=64 and to the chunk
//! length; [`Knobs::segments`] (the group's `RINGREDUCE_SEGMENTS`) sets it
//! instead.
//! Operand order is the ring's, so results are bitwise the ring's.
//!
//! # Cost
//! The ring's bytes in 2(p−1)·m messages; every receive is waited for on
//! its own (2(p−1)·m rounds, one-way) plus one wait for each phase's sends.

use super::ring::Ring;
use super::{chunk_range, finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::{Done, Transport, DATA};

pub(crate) struct Pipelined;

/// Most segments per chunk.
const MAX_SEGMENTS: u64 = 64;

/// The built-in model's exchange lines, `(up_to, α, β)`: seconds per
/// message and per byte of an exchange of at most `up_to` bytes (the last
/// line covers every larger one), measured by `ringreduce calibrate` at
/// `-n 2` over shared memory on the project's 2-core x86-64 machines. The
/// segment count is cut by them; the cost model's built-in constants take
/// their exchange lines from here, so the two never drift apart.
pub(crate) const BUILT_IN_LINES: [(u64, f64, f64); 3] = [
    (256, 1.35e-6, 0.4e-9),
    (2048, 2.4e-6, 0.33e-9),
    (u64::MAX, 8.2e-6, 0.27e-9),
];

impl Schedule for Pipelined {
    const NAME: &'static str = "pipelined";
    const TIE_ORDER: u8 = 7;
    /// Not yet a candidate: its predicted time is not checked against measurements.
    const AUTO: bool = false;
    /// Every segment goes right while the next arrives from the left.
    const SHIFTS: bool = true;
    const COPIES_INPUT: bool = false;

    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        segmented_cost(zero, p, k, s, None)
    }

    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        knobs: Knobs,
    ) -> Result<()> {
        let over = knobs.segments;
        match data {
            Buffers::InPlace(buf) => all_reduce(comm, None, buf, op, over),
            Buffers::OutOfPlace(input, buf) => all_reduce(comm, Some(input), buf, op, over),
        }
    }
}

/// The exact cost with `over` segments per chunk ([`Knobs::segments`]),
/// or the model's count.
pub(crate) fn segmented_cost(zero: Cost, p: u64, k: u64, s: u64, over: Option<u32>) -> Cost {
    let m = segments(p, k, s, over);
    let ring = Ring::cost(zero, p, k, s);
    Cost {
        rounds: 2 * (p - 1) * m + 2,
        exchanges: 0,
        messages: 2 * (p - 1) * m,
        path_bytes: ring.path_bytes,
        footprint: ring.footprint + (ring.footprint - k * s),
        ..ring
    }
}

/// Segments per chunk for `p` ranks and `k` elements of `s` bytes: the same
/// on every rank (a function of the call alone).
pub(crate) fn segments(p: u64, k: u64, s: u64, over: Option<u32>) -> u64 {
    let most = k.div_ceil(p).max(1);
    if let Some(m) = over {
        return u64::from(m).clamp(1, most);
    }
    let n = (k * s) as f64;
    let chunk = (k * s).div_ceil(p);
    let &(_, alpha, beta) = BUILT_IN_LINES
        .iter()
        .find(|&&(up_to, ..)| chunk <= up_to)
        .unwrap_or(&BUILT_IN_LINES[BUILT_IN_LINES.len() - 1]);
    let m = (2.0 * (p - 1) as f64 * n * beta / alpha).sqrt().round() as u64;
    m.clamp(1, MAX_SEGMENTS).min(k.div_ceil(p).max(1))
}

fn wait_one<C: Transport + ?Sized>(comm: &C, req: C::Request) -> Result<()> {
    let mut reqs = [req];
    comm.wait_all(&mut reqs, &mut [Done::default()])
}

/// The operations of one phase still outstanding.
struct Outstanding<R> {
    sends: Vec<R>,
    recvs: Vec<Option<R>>,
}

impl<R> Outstanding<R> {
    /// Waits for everything still outstanding (after an error, so that no
    /// request outlives the buffers it uses); their own errors are moot.
    fn drain<C: Transport<Request = R> + ?Sized>(&mut self, comm: &C) {
        let mut all: Vec<R> = self
            .sends
            .drain(..)
            .chain(self.recvs.iter_mut().filter_map(Option::take))
            .collect();
        let mut done = vec![Done::default(); all.len()];
        let _ = comm.wait_all(&mut all, &mut done);
    }
}

/// One phase of m pipelined segment streams over `steps` steps: post step
/// 0 of every stream, then, stream by stream, wait for step t's receive,
/// `arrived(t, j)`, and post step t + 1 of that stream.
fn phase<C: Transport + ?Sized>(
    comm: &C,
    m: usize,
    steps: usize,
    post_recv: &dyn Fn(usize, usize) -> Result<C::Request>,
    post_send: &dyn Fn(usize, usize) -> Result<C::Request>,
    arrived: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let mut out = Outstanding {
        sends: Vec::with_capacity(m * steps),
        recvs: (0..m).map(|_| None).collect(),
    };
    let mut run = |out: &mut Outstanding<C::Request>| -> Result<()> {
        for j in 0..m {
            out.recvs[j] = Some(post_recv(0, j)?);
            out.sends.push(post_send(0, j)?);
        }
        for t in 0..steps {
            for j in 0..m {
                let Some(req) = out.recvs[j].take() else { continue };
                wait_one(comm, req)?;
                arrived(t, j);
                if t + 1 < steps {
                    out.recvs[j] = Some(post_recv(t + 1, j)?);
                    out.sends.push(post_send(t + 1, j)?);
                }
            }
        }
        let mut done = vec![Done::default(); out.sends.len()];
        comm.wait_all(&mut out.sends, &mut done)?;
        out.sends.clear();
        Ok(())
    };
    let result = run(&mut out);
    if result.is_err() {
        out.drain(comm);
    }
    result
}

fn all_reduce<T: Element, C: Transport + ?Sized>(
    comm: &C,
    input: Option<&[T]>,
    buf: &mut [T],
    op: ReduceOp,
    over: Option<u32>,
) -> Result<()> {
    let p = comm.size();
    let r = comm.rank();
    let k = buf.len();
    let s = std::mem::size_of::<T>();
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let m = segments(p as u64, k as u64, s as u64, over) as usize;
    let steps = p - 1;
    let chunk = |i: usize| chunk_range(k, p, i % p);
    // Segment j of chunk c, as an element range of the vector.
    let seg = |c: usize, j: usize| {
        let ch = chunk(c);
        let sub = chunk_range(ch.len(), m, j);
        ch.start + sub.start..ch.start + sub.end
    };
    // Everything below goes through these raw pointers (requests in flight
    // hold some of their segments while others are reduced).
    let base = buf.as_mut_ptr();
    let mut incoming = [
        Scratch::<T>::new(chunk(0).len()),
        Scratch::<T>::new(chunk(0).len()),
    ];
    let inc = [incoming[0].as_mut_ptr(), incoming[1].as_mut_ptr()];
    // SAFETY (for the four helpers): `ptr..ptr + len` lies in `buf`, the
    // input or an incoming buffer, whichever the caller names.
    let shared = |ptr: *const T, len: usize| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len * s) };
    let exclusive =
        |ptr: *mut T, len: usize| unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len * s) };

    // Reduce-scatter: step t sends chunk r − t and receives chunk r − t − 1
    // (its segments into incoming buffer t % 2, at their offsets in the chunk).
    let recv_chunk = |t: usize| r + 2 * p - t - 1;
    let post_recv = |t: usize, j: usize| -> Result<C::Request> {
        let range = seg(recv_chunk(t), j);
        let off = range.start - chunk(recv_chunk(t)).start;
        // SAFETY: segment j of incoming buffer t % 2 is written only by this
        // receive until it is waited for; its previous use (step t − 2) was
        // reduced before this receive was posted.
        unsafe { comm.start_recv(exclusive(inc[t % 2].add(off), range.len()), left, DATA) }
    };
    let post_send = |t: usize, j: usize| -> Result<C::Request> {
        let range = seg(r + p - t, j);
        let ptr = match input {
            Some(x) if t == 0 => x[range.clone()].as_ptr(),
            // SAFETY: in `buf`; the segment was reduced at step t − 1 and is
            // not written again in this phase.
            _ => unsafe { base.add(range.start).cast_const() },
        };
        // SAFETY: the bytes stay unmodified until the phase waits for the send.
        unsafe { comm.start_send(shared(ptr, range.len()), right, DATA) }
    };
    let mut reduce = |t: usize, j: usize| {
        let range = seg(recv_chunk(t), j);
        let off = range.start - chunk(recv_chunk(t)).start;
        // SAFETY: the receive of this segment has completed; nothing else
        // reads or writes this part of `buf` or of the incoming buffer now.
        let (acc, got) = unsafe {
            (
                std::slice::from_raw_parts_mut(base.add(range.start), range.len()),
                std::slice::from_raw_parts(inc[t % 2].add(off).cast_const(), range.len()),
            )
        };
        match input {
            Some(x) => T::reduce_into(op, acc, got, &x[range]),
            None => T::reduce(op, acc, got, Order::SrcFirst),
        }
    };
    phase(comm, m, steps, &post_recv, &post_send, &mut reduce)?;

    // Rank r owns the finished chunk r + 1; average it once, here.
    let owned = chunk(r + 1);
    // SAFETY: every request of the reduce-scatter has completed.
    finish(
        op,
        unsafe { std::slice::from_raw_parts_mut(base.add(owned.start), owned.len()) },
        p,
    );

    // All-gather: step t sends chunk r + 1 − t and receives chunk r − t
    // straight into `buf`; a received segment is forwarded at step t + 1.
    let post_recv = |t: usize, j: usize| -> Result<C::Request> {
        let range = seg(r + p - t, j);
        // SAFETY: chunk r − t is written only by this receive and read by no
        // send before it has arrived.
        unsafe { comm.start_recv(exclusive(base.add(range.start), range.len()), left, DATA) }
    };
    let post_send = |t: usize, j: usize| -> Result<C::Request> {
        let range = seg(r + 1 + p - t, j);
        // SAFETY: chunk r + 1 − t is finished (owned, or received at step
        // t − 1) and no receive writes it again.
        unsafe {
            comm.start_send(
                shared(base.add(range.start).cast_const(), range.len()),
                right,
                DATA,
            )
        }
    };
    phase(comm, m, steps, &post_recv, &post_send, &mut |_, _| {})
}
