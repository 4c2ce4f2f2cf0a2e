//! Two-level (node-aware) all-reduce: shared memory inside each node, the
//! ring across nodes.
//!
//! With L ranks on each of N nodes: (1) piece by piece (256 KiB per rank,
//! as in [`shm`](super::shm)), every rank copies its piece into the node's
//! segment; barrier; local rank i reduces slice i of the piece (chunk i of
//! L) over its node's ranks in rank order. (2) The N ranks with local
//! index i — one per node, its *rail* — all-reduce their slices of every
//! piece, end to end, with the bandwidth-optimal ring over messages: one
//! ring of n/L elements, large messages. (3) Piece by piece, each rank
//! publishes its finished slice; barrier; every rank copies the others out.
//! Each node sends only its reduced vector across, once, split over its L
//! rails, which share the nodes' links in parallel.
//!
//! Bitwise identical everywhere: a slice's node partials are reduced in
//! rank order, the ring leaves identical bits on every rail member, and
//! every rank copies them.
//!
//! Without a node segment (one rank per node) or with nodes of different
//! sizes it is the flat ring; on one node the inter-node step is empty.
//!
//! # Cost
//! 2 barriers per piece, plus on local index i one ring over N ranks of
//! its slices (≈ n/L): 2(N−1) rounds, ≈ 2(N−1)/N·n/L bytes. See
//! [`two_level_cost`] (held to the `Counting` transport).

use super::ring::Ring;
use super::shm::{all_gather_pieces, own_slices, reduce_scatter_pieces};
use super::{chunk_range, finish, Buffers, Cost, Schedule};
use crate::element::{Element, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::{Shape, Sub, Transport};

pub(crate) struct Hierarchical;

impl Schedule for Hierarchical {
    const NAME: &'static str = "hierarchical";
    const TIE_ORDER: u8 = 6;
    /// `auto` does not yet weigh node layouts.
    const AUTO: bool = false;

    /// One rank per node (what the registry's costs assume): the flat ring.
    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        Cost {
            algorithm: zero.algorithm,
            ..Ring::cost(zero, p, k, s)
        }
    }

    fn run<T: Element, C: Transport + ?Sized>(comm: &C, data: Buffers<'_, T>, op: ReduceOp) -> Result<()> {
        let seg = match comm.segment() {
            Some(seg) if !seg.rail().is_empty() => seg,
            _ => return Ring::run(comm, data, op),
        };
        let (input, buf) = match data {
            Buffers::InPlace(buf) => (None, buf),
            Buffers::OutOfPlace(input, buf) => (Some(input), buf),
        };
        let mut idle = |waited| comm.idle(waited);
        reduce_scatter_pieces(seg, &mut idle, input, buf, op)?;
        // This rank's slices of every piece, end to end: one ring across
        // the nodes with large messages.
        let slices = own_slices(seg, buf.len(), std::mem::size_of::<T>());
        let total: usize = slices.iter().map(|r| r.len()).sum();
        let mut joined = Scratch::<T>::new(total);
        let mut at = 0;
        for r in &slices {
            joined[at..at + r.len()].copy_from_slice(&buf[r.clone()]);
            at += r.len();
        }
        let rail = Sub::new(comm, seg.rail()).expect("a rank is on its own rail");
        if rail.size() > 1 && total > 0 {
            // Partial sums of an average travel as sums; divided once, below.
            let across = if op == ReduceOp::Avg { ReduceOp::Sum } else { op };
            Ring::run(&rail, Buffers::InPlace(&mut joined[..total]), across)?;
        }
        finish(op, &mut joined[..total], comm.size());
        let mut at = 0;
        for r in &slices {
            buf[r.clone()].copy_from_slice(&joined[at..at + r.len()]);
            at += r.len();
        }
        all_gather_pieces(seg, &mut idle, buf)
    }
}

/// The exact cost of the two-level all-reduce on `nodes` × `per_node`
/// ranks (`per_node` ≥ 2; with 1 it is the flat ring's, see
/// `Algorithm::exact_cost`) of `k` elements of `s` bytes, for the busiest rank
/// (local index 0, which holds the largest slice of every piece).
/// `total_bytes` sums every rail.
pub fn two_level_cost(nodes: u64, per_node: u64, k: u64, s: u64) -> Cost {
    let zero = Cost::zero(crate::Algorithm::Hierarchical);
    if per_node < 2 {
        return crate::Algorithm::Hierarchical
            .exact_cost((nodes * per_node) as usize, k as usize, s as usize)
            .unwrap_or(zero);
    }
    let e = (Shape::DEFAULT.piece as u64 / s.max(1)).max(1);
    // Slice lengths of each local index, summed over the pieces.
    let mut totals = vec![0u64; per_node as usize];
    let mut pieces = 0;
    let mut start = 0;
    while start < k {
        let len = e.min(k - start);
        for (i, t) in totals.iter_mut().enumerate() {
            *t += chunk_range(len as usize, per_node as usize, i).len() as u64;
        }
        pieces += 1;
        start += len;
    }
    let ring = |n: u64| match (nodes >= 2, n >= 1) {
        (true, true) => Ring::cost(zero, nodes, n, s),
        _ => zero,
    };
    let busiest = ring(totals[0]);
    Cost {
        rounds: 2 * pieces + busiest.rounds,
        exchanges: busiest.exchanges,
        messages: busiest.messages,
        bytes_sent: busiest.bytes_sent,
        total_bytes: totals.iter().map(|&t| ring(t).total_bytes).sum(),
        path_bytes: busiest.path_bytes,
        reduced: (per_node - 1) * totals[0] + busiest.reduced,
        ..zero
    }
}
