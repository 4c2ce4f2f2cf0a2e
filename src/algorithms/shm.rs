//! Shared-memory all-reduce for ranks on one node.
//!
//! No messages: the ranks read each other's data from the group's
//! [`Segment`] (`MPI_Win_allocate_shared`), synchronised by the segment's
//! barrier (one counter per rank in its own cache line).
//!
//! - **Small** (at most a slot, 4064 bytes): every rank writes its vector into
//!   its slot, one barrier, and every rank reduces all p slots in rank
//!   order — `op(op(x0, x1), x2)…` — into its result.
//! - **Large**: piece by piece (512 KiB per rank), every rank copies its
//!   piece into its buffer; barrier; rank r reduces slice r of the piece
//!   (chunk r of p, see [`chunk_range`]) reading it from every rank's buffer
//!   in rank order, and publishes the result in its own buffer; barrier;
//!   every rank copies the other finished slices out. Buffers alternate by
//!   piece, so a piece costs two barriers and the working set stays in cache.
//!
//! Every slice is reduced once, in rank order, and copied bitwise to every
//! rank: the results are bitwise identical everywhere.
//!
//! **The call check rides in the first barrier** at every size: the
//! check's words travel at the front of the slot (the same cache line as
//! a small call's data), and every rank compares them right after that
//! barrier — before it writes anything of the caller's buffer (the copy
//! into its own piece buffer or slot is all that has happened). On a
//! mismatch every rank returns after that one barrier, so the ranks stay
//! in step; piece buffers are chosen by the barrier count, not by pieces,
//! so a call that stopped after one piece's first barrier leaves nobody
//! out of step. Checked or not, a call has the same barriers.
//!
//! # Cost
//! No bytes on the wire. Small: 1 barrier, (p−1)·k elements reduced per
//! rank. Large: 2 barriers per piece; the busiest rank (rank 0, which gets
//! the largest slice) reduces (p−1)·⌈len/p⌉ per piece. Memory traffic per
//! rank ≈ n read + n written to copy in, n read + n/p written to reduce,
//! n/p read and written to publish, n·(p−1)/p read and written to copy out.

use super::{chunk_range, finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::{Error, Result};
use std::time::Instant;

use crate::transport::{whole_segment, Segment, Shape, Transport, CALL_WORDS};

pub(crate) struct Shm;

impl Schedule for Shm {
    const NAME: &'static str = "shm";
    const TIE_ORDER: u8 = 5;
    /// Not yet a candidate: `auto` does not know yet whether the ranks share a node.
    const AUTO: bool = false;
    const COPIES_INPUT: bool = false;

    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        let shape = Shape::DEFAULT;
        if k * s <= shape.slot as u64 {
            // Post a copy into the slot, then reduce all p slots.
            return Cost {
                rounds: 1,
                reduced: (p - 1) * k,
                memory_bytes: (2 + 3 * (p - 1)) * k * s,
                footprint: (1 + p) * k * s,
                ..zero
            };
        }
        let e = piece_elements(shape.piece, s as usize) as u64;
        let (full, last) = (k / e, k % e);
        let slices = full * e.div_ceil(p) + last.div_ceil(p);
        // Per piece of len elements the busiest rank copies len in, reduces
        // its slice, publishes it and copies the len − slice others out:
        // 4·len bytes of copy traffic and 3 per byte reduced.
        Cost {
            rounds: 2 * (full + u64::from(last > 0)),
            reduced: (p - 1) * slices,
            memory_bytes: (4 * k + 3 * (p - 1) * slices) * s,
            footprint: k * s + p * (k * s).min(2 * e * s),
            ..zero
        }
    }

    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        _: Knobs,
    ) -> Result<()> {
        let seg = segment(comm)?;
        let (input, buf) = match data {
            Buffers::InPlace(buf) => (None, buf),
            Buffers::OutOfPlace(input, buf) => (Some(input), buf),
        };
        let mut idle = |waited| comm.idle(waited);
        run(seg, &mut idle, input, buf, op, None).map(drop)
    }
}

/// The group's segment, or the error for ranks not sharing one.
pub(crate) fn segment<C: Transport + ?Sized>(comm: &C) -> Result<&Segment> {
    whole_segment(comm).ok_or_else(|| Error::InvalidArgument {
        what: "algorithm",
        reason: "`shm` needs every rank of the group on one node (MPI_COMM_TYPE_SHARED spanning it); \
                 use `ring` or `auto` across nodes"
            .into(),
    })
}

/// Elements of type size `s` in a piece of `piece` bytes.
pub(crate) fn piece_elements(piece: usize, s: usize) -> usize {
    (piece / s.max(1)).max(1)
}

/// `len` elements of `T` at `ptr`, shared.
///
/// # Safety
/// `ptr` is aligned for `T` and `len` elements lie within one part of the
/// segment that no rank writes while the slice lives (the barrier protocol).
unsafe fn shared<'a, T>(ptr: *const u8, len: usize) -> &'a [T] {
    // SAFETY: as the caller promises.
    unsafe { std::slice::from_raw_parts(ptr.cast::<T>(), len) }
}

/// `len` elements of `T` at `ptr`, exclusively.
///
/// # Safety
/// As [`shared`], and no rank reads them while the slice lives.
unsafe fn exclusive<'a, T>(ptr: *mut u8, len: usize) -> &'a mut [T] {
    // SAFETY: as the caller promises.
    unsafe { std::slice::from_raw_parts_mut(ptr.cast::<T>(), len) }
}

/// The shared-memory all-reduce of `buf` (of `input`, out of place) on
/// `seg` (module docs). With `words`, its first barrier carries them
/// ([`Segment::barrier_with`]) and it returns `false` right after that
/// barrier — having written nothing of `buf` — unless every rank passed
/// the same words: the call check rides in the call, at every size.
/// Without, it returns `true`.
pub(crate) fn run<T: Element>(
    seg: &Segment,
    idle: &mut dyn FnMut(std::time::Duration) -> Result<bool>,
    input: Option<&[T]>,
    buf: &mut [T],
    op: ReduceOp,
    words: Option<[i64; CALL_WORDS]>,
) -> Result<bool> {
    if std::mem::size_of_val(buf) > seg.shape().slot {
        return pieces(seg, idle, input, buf, op, &mut |_| Ok(()), seg.size(), words);
    }
    let slot = seg.next_slot();
    post(seg, slot, input.unwrap_or(&*buf));
    if !first_barrier(seg, idle, words)? {
        return Ok(false);
    }
    reduce_slots(seg, slot, buf, op);
    Ok(true)
}

/// A call's first barrier, with its words when it has any: whether every
/// rank passed the same.
fn first_barrier(
    seg: &Segment,
    idle: &mut dyn FnMut(std::time::Duration) -> Result<bool>,
    words: Option<[i64; CALL_WORDS]>,
) -> Result<bool> {
    match words {
        Some(words) => seg.barrier_with(words, idle).map(|()| seg.words_agree()),
        None => seg.barrier(idle).map(|()| true),
    }
}

/// Writes `data` (at most a slot's bytes) into this rank's slot `slot`,
/// before the barrier that publishes it.
fn post<T: Element>(seg: &Segment, slot: usize, data: &[T]) {
    assert!(std::mem::size_of_val(data) <= seg.shape().slot);
    let base = seg.slot(seg.rank(), slot);
    // SAFETY: this rank's own slot for the coming barrier: the others read
    // it only after that barrier and are done with it before the next one,
    // which this rank passes before it writes the slot again (module docs
    // of the segment). The data fit the slot (asserted) and start 32-byte
    // aligned.
    unsafe { T::copy(exclusive::<T>(base, data.len()), data) }
}

/// After the barrier that published slot `slot`: `buf` = `op` over every
/// rank's slot data, in rank order (`buf.len()` elements each), averaged
/// for `Avg`.
fn reduce_slots<T: Element>(seg: &Segment, slot: usize, buf: &mut [T], op: ReduceOp) {
    let len = buf.len();
    let data = |j: usize| -> &[T] {
        // SAFETY: written by its owner before the barrier this rank has
        // passed, not rewritten before the next barrier (see `post`); every
        // rank posted `len` elements (the call checks, or the caller's
        // contract, guarantee equal lengths).
        unsafe { shared(seg.slot(j, slot), len) }
    };
    let p = seg.size();
    T::reduce_into(op, buf, data(0), data(1));
    for j in 2..p {
        T::reduce(op, buf, data(j), Order::AccFirst);
    }
    finish(op, buf, p);
}

/// The piece-by-piece path (module docs), over the ranks of `seg`. Each
/// rank's reduced slice goes through `across` before it is published (the
/// two-level all-reduce reduces it across nodes there; empty slices skip
/// it, on every rank alike), and `Avg` divides by `ranks`. What the others
/// read is written the segment's way ([`Segment::pick`]). `words` and the
/// result as in [`run`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn pieces<T: Element>(
    seg: &Segment,
    idle: &mut dyn FnMut(std::time::Duration) -> Result<bool>,
    input: Option<&[T]>,
    buf: &mut [T],
    op: ReduceOp,
    across: &mut dyn FnMut(&mut [T]) -> Result<()>,
    ranks: usize,
    mut words: Option<[i64; CALL_WORDS]>,
) -> Result<bool> {
    let (p, r) = (seg.size(), seg.rank());
    let s = std::mem::size_of::<T>();
    let e = piece_elements(seg.piece(), s);
    let k = buf.len();
    let mut start = 0;
    while start < k {
        let len = e.min(k - start);
        let piece = start..start + len;
        let b = seg.take_buffer();
        let at = |j: usize, i: usize| {
            // SAFETY: i ≤ len ≤ e elements: within buffer b of j's part.
            unsafe { seg.buffer(j, b).add(i * s) }
        };
        // SAFETY: this rank's own buffer b: others read it only after the
        // next barrier and are done with it before this rank takes buffer
        // b again two pieces on (which follows two more barriers).
        let mine = unsafe { exclusive::<T>(at(r, 0), len) };
        let way = seg.pick(len * s);
        let copying = (way.probe && r == 0).then(Instant::now);
        publish(mine, &input.unwrap_or(&*buf)[piece.clone()], way.stream);
        if let Some(t) = copying {
            seg.record(len * s, way, t.elapsed().as_secs_f64() / (len * s) as f64);
        }
        if !first_barrier(seg, idle, words.take())? {
            return Ok(false);
        }

        let own = chunk_range(len, p, r);
        if !own.is_empty() {
            // SAFETY: slice `own` of every buffer b is written by no one
            // until the next barrier (each rank writes only its own slice).
            let part = |j: usize| unsafe { shared::<T>(at(j, own.start), own.len()) };
            let out = &mut buf[piece.start + own.start..piece.start + own.end];
            T::reduce_into(op, out, part(0), part(1));
            for j in 2..p {
                T::reduce(op, out, part(j), Order::AccFirst);
            }
            across(out)?;
            finish(op, out, ranks);
            // SAFETY: our own slice, which only this rank reads until the barrier.
            publish(
                unsafe { exclusive::<T>(at(r, own.start), own.len()) },
                out,
                way.stream,
            );
        }
        seg.barrier(idle)?;

        for j in (0..p).filter(|&j| j != r) {
            let theirs = chunk_range(len, p, j);
            // SAFETY: rank j's finished slice, published before the barrier,
            // unchanged until j takes buffer b again (two barriers on).
            let done = unsafe { shared::<T>(at(j, theirs.start), theirs.len()) };
            T::copy(
                &mut buf[piece.start + theirs.start..piece.start + theirs.end],
                done,
            );
        }
        start += len;
    }
    Ok(true)
}

/// Not an all-reduce: the bytes one must move between the cores. Piece by
/// piece, every rank copies its piece of `src` into its buffer (written the
/// way the all-reduce writes its pieces now, [`Segment::pick`]); barrier;
/// copies its right neighbour's (rank r + 1 of `seg`) into `dst`; barrier.
/// With 2 ranks each core receives the n bytes the other has just
/// written — what any 2-rank all-reduce must bring into each core (half of
/// the other's input and half of its result); bench's `peer-copy`
/// roofline. The first barrier carries the length: ranks that passed
/// different ones all return an error after it, having copied nothing.
#[cfg(feature = "tools")]
pub(crate) fn peer_copy(
    seg: &Segment,
    idle: &mut dyn FnMut(std::time::Duration) -> Result<bool>,
    src: &[u8],
    dst: &mut [u8],
) -> Result<()> {
    /// Tells the length's words from a call's (which begin with its number).
    const PEER_COPY: i64 = -0x7065_6572;
    assert_eq!(src.len(), dst.len());
    let (p, r, n) = (seg.size(), seg.rank(), src.len());
    let right = (r + 1) % p;
    let piece = seg.piece();
    for k in 0..n.div_ceil(piece).max(1) {
        let at = k * piece..((k + 1) * piece).min(n);
        let b = seg.take_buffer();
        // SAFETY: this rank's own buffer b, which the others read only
        // between the next two barriers; buffer b is taken again two
        // pieces on, after four more barriers (as in `pieces`). A piece
        // fits the buffer.
        let mine = unsafe { exclusive::<u8>(seg.buffer(r, b), at.len()) };
        // Probes are the all-reduce's to time: written through the cache, untimed.
        publish(mine, &src[at.clone()], seg.pick(at.len()).stream);
        if k == 0 {
            seg.barrier_with([PEER_COPY, n as i64, piece as i64], idle)?;
            if !seg.words_agree() {
                return Err(Error::InvalidArgument {
                    what: "peer-copy",
                    reason: "the ranks passed different lengths".into(),
                });
            }
        } else {
            seg.barrier(idle)?;
        }
        // SAFETY: the neighbour wrote `at.len()` bytes (the lengths agreed)
        // into its buffer b before the barrier just passed and does not
        // write it again before the next one.
        dst[at.clone()].copy_from_slice(unsafe { shared::<u8>(seg.buffer(right, b), at.len()) });
        seg.barrier(idle)?;
    }
    Ok(())
}

/// Copies `src` into this rank's part of the segment for the other cores
/// to read: through the cache, or with `stream` around it (non-temporal
/// stores on x86-64, to memory: see [`Writes`](crate::transport::Writes)), then a store fence, so
/// the barrier that follows publishes them.
fn publish<T: Element>(dst: &mut [T], src: &[T], stream: bool) {
    if stream {
        stream_copy(bytemuck::cast_slice_mut(dst), bytemuck::cast_slice(src));
    } else {
        T::copy(dst, src);
    }
}

#[cfg(target_arch = "x86_64")]
fn stream_copy(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    assert_eq!(dst.len(), src.len());
    // The unaligned head and tail go through the cache.
    let head = dst.as_ptr().align_offset(16).min(dst.len());
    let body = (dst.len() - head) / 16 * 16;
    dst[..head].copy_from_slice(&src[..head]);
    let (d, s) = (dst[head..].as_mut_ptr(), src[head..].as_ptr());
    for j in (0..body).step_by(16) {
        // SAFETY: j + 16 ≤ body bytes past head in both slices (same
        // length, asserted); `d + j` is 16-byte aligned (head aligned it);
        // SSE2 is part of x86-64.
        unsafe {
            let v = _mm_loadu_si128(s.add(j).cast::<__m128i>());
            _mm_stream_si128(d.add(j).cast::<__m128i>(), v);
        }
    }
    dst[head + body..].copy_from_slice(&src[head + body..]);
    // SAFETY: a fence, no memory operands; SSE is part of x86-64.
    unsafe { _mm_sfence() };
}

#[cfg(not(target_arch = "x86_64"))]
fn stream_copy(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    use crate::transport::{Local, Shape, Writes};
    use crate::{Algorithm, Group, ReduceOp};

    /// `shm` over `p` thread ranks with 4 KiB pieces written `writes`: each
    /// rank's result of an f32 sum and an i64 max of `len` elements, in
    /// place and out of place.
    fn results(p: usize, len: usize, writes: Writes) -> Vec<(Vec<f32>, Vec<i64>, Vec<f32>)> {
        let shape = Shape {
            piece: 4096,
            writes,
            ..Shape::DEFAULT
        };
        Local::run_on(Local::endpoints_shaped(&vec![0; p], shape), |ep| {
            let g = Group::new(ep);
            let r = g.rank();
            let x: Vec<f32> = (0..len).map(|i| ((i * 7 + r * 13) % 101) as f32 / 3.0).collect();
            let mut sum = x.clone();
            g.all_reduce_in_place(&mut sum, ReduceOp::Sum, Algorithm::Shm)
                .unwrap();
            let mut max: Vec<i64> = (0..len as i64)
                .map(|i| (i * 31 + r as i64 * 17) % 97 - 40)
                .collect();
            g.all_reduce_in_place(&mut max, ReduceOp::Max, Algorithm::Shm)
                .unwrap();
            let mut out = vec![0f32; len];
            g.all_reduce(&x, &mut out, ReduceOp::Sum, Algorithm::Shm).unwrap();
            (sum, max, out)
        })
    }

    #[test]
    fn pieces_written_around_the_cache_reduce_to_the_same_bits() {
        // Lengths that make slices start off 16 bytes and pieces end short.
        for (p, len) in [(2, 1030), (3, 2049), (4, 5000), (3, 1)] {
            let cached = results(p, len, Writes::Cached);
            let streamed = results(p, len, Writes::Streamed);
            for r in 0..p {
                assert_eq!(streamed[r].1, cached[r].1, "p = {p}, len = {len}, rank {r}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&streamed[r].0),
                    bits(&cached[r].0),
                    "p = {p}, len = {len}, rank {r}"
                );
                assert_eq!(
                    bits(&streamed[r].2),
                    bits(&cached[r].0),
                    "p = {p}, len = {len}, rank {r}"
                );
            }
            // And they are the sum and the max.
            let want: Vec<i64> = (0..len as i64)
                .map(|i| (0..p as i64).map(|r| (i * 31 + r * 17) % 97 - 40).max().unwrap())
                .collect();
            assert_eq!(streamed[0].1, want);
        }
    }
}
