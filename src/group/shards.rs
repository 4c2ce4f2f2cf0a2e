//! The halves of the ring and the reduce: what sharded training needs
//! (ZeRO / FSDP reduce-scatter gradients into shards and all-gather
//! parameters back), and MPI's `Reduce_scatter_block`, `Reduce` and
//! `Allgather` over a flat buffer.
//!
//! A flat buffer of k elements is cut into p **shards** that differ in
//! length by at most one element; [`Group::shard`] says which is this
//! rank's. The shards are the ring all-reduce's own chunks, in its order:
//! [`Group::reduce_scatter_in_place`] is exactly the ring's first half and
//! [`Group::all_gather_in_place`] its second, so the two in a row give the
//! bits of [`Algorithm::Ring`](crate::Algorithm::Ring), and a sharded
//! optimizer step the bits of the unsharded one.
//!
//! # Cost
//! p ranks, k elements of s bytes, q = ⌊k/p⌋ ([`crate::cost::collective_cost`]):
//! a reduce-scatter and an all-gather are p − 1 rounds each, the busiest
//! rank sending (k − q)·s bytes; a reduce is the reduce-scatter and one
//! more round in which every rank but the root sends its shard to the root
//! (k·s bytes from each of those). Each call begins with the call check's
//! agreement, as an all-reduce does.

use std::ops::Range;

use bytemuck::Pod;

use super::check::{Kind, Signature};
use super::Group;
use crate::algorithms::{finish, owned_chunk, ring_all_gather, ring_reduce_scatter, Wide, WideSum};
use crate::element::{Element, ReduceOp};
use crate::error::{Error, Result};
use crate::scratch::Scratch;
use crate::transport::Transport;

/// `root` of a reduce-scatter's signature: the layout of its result.
const SHARDS: usize = 0;
const BLOCKS: usize = 1;

impl<C: Transport> Group<C> {
    /// This rank's shard of a flat buffer of `count` elements: one of p
    /// ranges that differ in length by at most one element and together
    /// cover `0..count` ([`Group::shard_of`] for another rank's).
    ///
    /// ```
    /// use ringreduce::Group;
    /// let shards = Group::local(3, |g| g.shard(10));
    /// let mut covered: Vec<usize> = shards.into_iter().flatten().collect();
    /// covered.sort();
    /// assert_eq!(covered, (0..10).collect::<Vec<_>>());
    /// ```
    pub fn shard(&self, count: usize) -> Range<usize> {
        self.shard_of(self.rank(), count)
    }

    /// Rank `rank`'s shard of a flat buffer of `count` elements (see
    /// [`Group::shard`]). Not collective.
    ///
    /// # Panics
    /// When `rank` is not below [`Group::size`].
    pub fn shard_of(&self, rank: usize, count: usize) -> Range<usize> {
        assert!(rank < self.size(), "rank {rank} of a group of {}", self.size());
        owned_chunk(count, self.size(), rank)
    }

    /// Reduce-scatter in place: on return `buf[self.shard(buf.len())]`
    /// holds `op` over every rank's elements there (the range is
    /// returned); the rest of `buf` holds partial results. The ring's
    /// first half: p − 1 rounds, ≈ (p − 1)/p of the buffer sent.
    ///
    /// ```
    /// use ringreduce::{Group, ReduceOp};
    /// let out = Group::local(2, |g| {
    ///     let mut grad = vec![1.0f32 + g.rank() as f32; 5];
    ///     let mine = g.reduce_scatter_in_place(&mut grad, ReduceOp::Avg).unwrap();
    ///     grad[mine].to_vec()
    /// });
    /// assert_eq!(out.concat(), vec![1.5f32; 5]);
    /// ```
    ///
    /// # Errors
    /// As [`Group::all_reduce_in_place`]: [`Error::Mismatch`] on every rank
    /// when the ranks passed different lengths, types or ops (checks on).
    pub fn reduce_scatter_in_place<T: Element>(&self, buf: &mut [T], op: ReduceOp) -> Result<Range<usize>> {
        self.agree_plain(
            Kind::ReduceScatter,
            scatter::<T>(buf.len(), op, SHARDS),
            Ok(()),
            false,
        )?;
        let (k, p) = (buf.len(), self.size());
        let mine = self.shard(k);
        if p > 1 && k > 0 {
            let owned = |i: usize| owned_chunk(k, p, i);
            self.scatter_in_place(buf, op, &owned, mine.clone())?;
        }
        Ok(mine)
    }

    /// Reduce-scatter of blocks, as `MPI_Reduce_scatter_block`: `send`
    /// holds p blocks of `recv.len()` elements, and rank r's `recv` gets
    /// `op` over every rank's block r. `send` is only read.
    ///
    /// ```
    /// use ringreduce::{Group, ReduceOp};
    /// let out = Group::local(3, |g| {
    ///     let send: Vec<i32> = (0..6).map(|i| i * 10 + g.rank() as i32).collect();
    ///     let mut recv = [0i32; 2];
    ///     g.reduce_scatter(&send, &mut recv, ReduceOp::Sum).unwrap();
    ///     recv
    /// });
    /// assert_eq!(out, vec![[3, 33], [63, 93], [123, 153]]);
    /// ```
    ///
    /// # Errors
    /// `send` not p·`recv.len()` long ([`Error::InvalidArgument`] on this
    /// rank, [`Error::Remote`] on the others); otherwise as
    /// [`Group::reduce_scatter_in_place`].
    pub fn reduce_scatter<T: Element>(&self, send: &[T], recv: &mut [T], op: ReduceOp) -> Result<()> {
        let (p, n) = (self.size(), recv.len());
        let local = if send.len() == p.saturating_mul(n) {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "reduce_scatter input",
                reason: format!("{} elements for {p} ranks × {n}", send.len()),
            })
        };
        self.agree_plain(
            Kind::ReduceScatter,
            scatter::<T>(send.len(), op, BLOCKS),
            local,
            false,
        )?;
        if n == 0 {
            return Ok(());
        }
        let r = self.rank();
        let block = |i: usize| i * n..(i + 1) * n;
        if p == 1 {
            T::copy(recv, send);
            return Ok(());
        }
        match averaged(send, op, p) {
            None => {
                ring_reduce_scatter(&self.transport, Some(send), recv, op, &block)?;
                finish(op, recv, p);
            }
            Some(mut wide) => {
                wide.sum(&mut WideScatter {
                    comm: &self.transport,
                    owned: &block,
                })?;
                wide.narrow(block(r), recv);
            }
        }
        Ok(())
    }

    /// Gathers every rank's shard of `buf` ([`Group::shard`] of
    /// `buf.len()`) into `buf` on every rank: the ring's second half, p − 1
    /// rounds. What follows a [`Group::reduce_scatter_in_place`] (or a
    /// sharded optimizer step) to give every rank the whole vector.
    ///
    /// ```
    /// use ringreduce::Group;
    /// let out = Group::local(3, |g| {
    ///     let mut params = vec![0u8; 7];
    ///     let mine = g.shard(params.len());
    ///     params[mine].fill(g.rank() as u8 + 1);
    ///     g.all_gather_in_place(&mut params).unwrap();
    ///     params
    /// });
    /// assert!(out.iter().all(|v| v == &out[0] && !v.contains(&0)));
    /// ```
    ///
    /// # Errors
    /// A mismatch (different lengths or element sizes) or a transport failure.
    pub fn all_gather_in_place<T: Pod>(&self, buf: &mut [T]) -> Result<()> {
        let sig = Signature::moving(Kind::ShardGather, std::mem::size_of_val(buf) as u64, 0);
        self.agree_plain(Kind::ShardGather, sig, Ok(()), false)?;
        let (k, p) = (buf.len(), self.size());
        if p > 1 && k > 0 {
            ring_all_gather(&self.transport, buf, &|i| owned_chunk(k, p, i))?;
        }
        Ok(())
    }

    /// Reduces every rank's `buf` with `op` into `buf` on rank `root`, as
    /// `MPI_Reduce`; the other ranks' `buf` is left as it was. A ring
    /// reduce-scatter, then every rank sends its finished shard to the
    /// root: p rounds, the root receiving (p − 1)/p of the buffer at once.
    ///
    /// ```
    /// use ringreduce::{Group, ReduceOp};
    /// let out = Group::local(3, |g| {
    ///     let mut v = vec![g.rank() as f64 + 1.0; 4];
    ///     g.reduce(&mut v, ReduceOp::Max, 1).unwrap();
    ///     v
    /// });
    /// assert_eq!(out, vec![vec![1.0; 4], vec![3.0; 4], vec![3.0; 4]]);
    /// ```
    ///
    /// # Errors
    /// A root out of range (on every rank); otherwise as
    /// [`Group::all_reduce_in_place`].
    pub fn reduce<T: Element>(&self, buf: &mut [T], op: ReduceOp, root: usize) -> Result<()> {
        let local = crate::transport::valid_rank(root, self.size());
        let sig = Signature {
            count: buf.len() as u64,
            dtype: T::DTYPE,
            op,
            root,
            ..Signature::of(Kind::Reduce)
        };
        self.agree_plain(Kind::Reduce, sig, local, false)?;
        let (k, p, r) = (buf.len(), self.size(), self.rank());
        if p == 1 || k == 0 {
            return Ok(());
        }
        let owned = |i: usize| owned_chunk(k, p, i);
        if let Some(mut wide) = averaged(buf, op, p) {
            // The root gathers the wide sums and narrows them all.
            wide.sum(&mut WideScatter {
                comm: &self.transport,
                owned: &owned,
            })?;
            wide.sum(&mut WideGather {
                comm: &self.transport,
                owned: &owned,
                root,
            })?;
            if r == root {
                wide.narrow(0..k, buf);
            }
            return Ok(());
        }
        if r == root {
            // The other shards' partial sums are overwritten by the gather.
            ring_reduce_scatter(&self.transport, None, buf, op, &owned)?;
            finish(op, &mut buf[owned(r)], p);
            gather_to_root(&self.transport, buf, &owned, root)
        } else {
            let mut mine = Scratch::<T>::new(owned(r).len());
            ring_reduce_scatter(&self.transport, Some(buf), &mut mine, op, &owned)?;
            finish(op, &mut mine, p);
            gather_to_root(&self.transport, &mut mine, &owned, root)
        }
    }

    /// The reduce-scatter in place over `owned`, this rank's result at
    /// `mine` (widened for the averages that need it). p ≥ 2.
    fn scatter_in_place<T: Element>(
        &self,
        buf: &mut [T],
        op: ReduceOp,
        owned: &dyn Fn(usize) -> Range<usize>,
        mine: Range<usize>,
    ) -> Result<()> {
        match averaged(buf, op, self.size()) {
            None => {
                ring_reduce_scatter(&self.transport, None, buf, op, owned)?;
                finish(op, &mut buf[mine], self.size());
            }
            Some(mut wide) => {
                wide.sum(&mut WideScatter {
                    comm: &self.transport,
                    owned,
                })?;
                wide.narrow(mine.clone(), &mut buf[mine]);
            }
        }
        Ok(())
    }
}

/// The signature of a reduce-scatter of `count` elements in `layout`
/// ([`SHARDS`] or [`BLOCKS`]).
fn scatter<T: Element>(count: usize, op: ReduceOp, layout: usize) -> Signature {
    Signature {
        count: count as u64,
        dtype: T::DTYPE,
        op,
        root: layout,
        ..Signature::of(Kind::ReduceScatter)
    }
}

/// `x` widened, when `op` is an average its type takes in a wider type.
fn averaged<T: Element>(x: &[T], op: ReduceOp, p: usize) -> Option<Wide> {
    if op == ReduceOp::Avg {
        Wide::of(x, p)
    } else {
        None
    }
}

/// `owned(i)` of a vector in words `words` times as wide.
fn widened(range: Range<usize>, words: usize) -> Range<usize> {
    range.start * words..range.end * words
}

/// The reduce-scatter of a widened vector, in place (summed).
struct WideScatter<'a, C: ?Sized> {
    comm: &'a C,
    owned: &'a dyn Fn(usize) -> Range<usize>,
}

impl<C: Transport + ?Sized> WideSum for WideScatter<'_, C> {
    fn sum<W: Element>(&mut self, wide: &mut [W], words: usize) -> Result<()> {
        let owned = |i: usize| widened((self.owned)(i), words);
        ring_reduce_scatter(self.comm, None, wide, ReduceOp::Sum, &owned)
    }
}

/// The gather of a widened vector's shards to the root.
struct WideGather<'a, C: ?Sized> {
    comm: &'a C,
    owned: &'a dyn Fn(usize) -> Range<usize>,
    root: usize,
}

impl<C: Transport + ?Sized> WideSum for WideGather<'_, C> {
    fn sum<W: Element>(&mut self, wide: &mut [W], words: usize) -> Result<()> {
        let owned = |i: usize| widened((self.owned)(i), words);
        let r = self.comm.rank();
        if r == self.root {
            gather_to_root(self.comm, wide, &owned, self.root)
        } else {
            gather_to_root(self.comm, &mut wide[owned(r)], &owned, self.root)
        }
    }
}

/// Every rank but the root sends its shard (`buf`: `owned(rank)`'s
/// elements) to the root, whose `buf` is the whole vector and receives
/// them all at once: one round each. Collective.
fn gather_to_root<T: Pod, C: Transport + ?Sized>(
    comm: &C,
    buf: &mut [T],
    owned: &dyn Fn(usize) -> Range<usize>,
    root: usize,
) -> Result<()> {
    let (p, r) = (comm.size(), comm.rank());
    if r != root {
        return comm.send(buf, root);
    }
    // The other ranks' shards, as disjoint pieces of `buf` in address order.
    let mut shards: Vec<(usize, Range<usize>)> =
        (0..p).filter(|&q| q != root).map(|q| (q, owned(q))).collect();
    shards.sort_by_key(|(_, range)| range.start);
    let mut pieces = Vec::with_capacity(shards.len());
    let (mut rest, mut at) = (&mut buf[..], 0);
    for (q, range) in shards {
        let (_, tail) = rest.split_at_mut(range.start - at);
        let (piece, tail) = tail.split_at_mut(range.len());
        pieces.push((q, bytemuck::cast_slice_mut::<T, u8>(piece)));
        (rest, at) = (tail, range.end);
    }
    comm.scope(|s| {
        let mut handles = Vec::with_capacity(pieces.len());
        for (q, piece) in pieces {
            let expected = piece.len();
            handles.push((s.recv(piece, q)?, expected));
        }
        s.wait_all()?;
        for (h, expected) in handles {
            let got = s.wait_recv(h)?;
            if got.done.len != expected {
                return Err(Error::MessageSize {
                    rank: r,
                    from: got.done.peer,
                    expected,
                    got: got.done.len,
                });
            }
        }
        Ok(())
    })
}

#[cfg(all(test, feature = "tools"))]
mod tests;
