//! Two-level (node-aware) all-reduce: shared memory inside each node, the
//! ring across nodes.
//!
//! With L ranks on each of N nodes, piece by piece (4 MiB per rank,
//! [`Shape::rail_piece`](crate::transport::Shape::rail_piece): larger
//! than [`shm`](super::shm)'s, so that the rails' rings keep the link
//! busy): every rank copies its piece into the node's segment; barrier; local rank i reduces slice i of the piece (chunk i of
//! L) over its node's ranks in rank order; then the N ranks with local
//! index i — one per node, its *rail* — all-reduce that slice with the
//! bandwidth-optimal ring over messages; local rank i publishes the result;
//! barrier; every rank copies the other slices out. Each node sends only
//! its own reduced vector across, once per rail: the bytes between nodes
//! fall by a factor L against a flat ring, and the L rails share the
//! nodes' links in parallel.
//!
//! Bitwise identical everywhere: a slice's node partials are reduced in
//! rank order, the ring leaves identical bits on every rail member, and
//! every rank copies them.
//!
//! Without a node segment (one rank per node) or with nodes of different
//! sizes it is the flat ring; on one node the inter-node step is empty.
//!
//! # Cost
//! Per piece: 2 barriers, plus on rank (local index) i the ring over N
//! ranks on slice i: 2(N−1) rounds, ≈ 2(N−1)/N·|slice| bytes. See
//! [`two_level_cost`] (held to the `Counting` transport).

use super::ring::Ring;
use super::shm::{piece_elements, pieces};
use super::{chunk_range, Algorithm, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, ReduceOp};
use crate::error::Result;
use crate::transport::{Shape, Sub, Transport};

pub(crate) struct Hierarchical;

impl Schedule for Hierarchical {
    const NAME: &'static str = "hierarchical";
    const TIE_ORDER: u8 = 6;
    const SHIFTS: bool = true;
    const COPIES_INPUT: bool = false;
    /// The model does not weigh node layouts; `auto` runs it where a
    /// measured rule says so (`calibrate --rules`).
    const AUTO: bool = false;

    /// One rank per node (what the registry's costs assume): the flat ring.
    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        Cost {
            algorithm: zero.algorithm,
            ..Ring::cost(zero, p, k, s)
        }
    }

    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        knobs: Knobs,
    ) -> Result<()> {
        let seg = match comm.segment() {
            Some(seg) if !seg.rail().is_empty() => seg,
            _ => return Ring::run(comm, data, op, knobs),
        };
        let (input, buf) = match data {
            Buffers::InPlace(buf) => (None, buf),
            Buffers::OutOfPlace(input, buf) => (Some(input), buf),
        };
        let rail = Sub::new(comm, seg.rail()).expect("a rank is on its own rail");
        // The partial sums of an average travel as sums; `pieces` divides once.
        let across_op = if op == ReduceOp::Avg { ReduceOp::Sum } else { op };
        let mut across = |slice: &mut [T]| -> Result<()> {
            if rail.size() < 2 {
                return Ok(());
            }
            Ring::run(&rail, Buffers::InPlace(slice), across_op, knobs)
        };
        let mut idle = |waited| comm.idle(waited);
        pieces(seg, &mut idle, input, buf, op, &mut across, comm.size(), None).map(drop)
    }
}

/// The exact cost, with the default [`Shape`]'s pieces, of the two-level
/// all-reduce on `nodes` × `per_node` ranks (`per_node` ≥ 2; with 1 it is
/// the flat ring's, see `Algorithm::exact_cost`) of `k` elements of `s`
/// bytes, for the busiest rank (local index 0, which holds the largest
/// slice of every piece).
/// `total_bytes` sums every rail.
pub fn two_level_cost(nodes: u64, per_node: u64, k: u64, s: u64) -> Cost {
    let zero = Cost::zero(Algorithm::Hierarchical);
    if per_node < 2 {
        return Algorithm::Hierarchical
            .exact_cost((nodes * per_node) as usize, k as usize, s as usize)
            .unwrap_or(zero);
    }
    let e = piece_elements(Shape::DEFAULT.piece_for(nodes > 1), s as usize) as u64;
    let mut c = zero;
    let mut start = 0;
    while start < k {
        let len = e.min(k - start);
        c.rounds += 2;
        for i in 0..per_node {
            let sl = chunk_range(len as usize, per_node as usize, i as usize).len() as u64;
            let ring = match (nodes >= 2, sl >= 1) {
                (true, true) => Ring::cost(zero, nodes, sl, s),
                _ => zero,
            };
            c.total_bytes += ring.total_bytes;
            if i == 0 {
                c.rounds += ring.rounds;
                c.exchanges += ring.exchanges;
                c.messages += ring.messages;
                c.bytes_sent += ring.bytes_sent;
                c.path_bytes += ring.path_bytes;
                c.reduced += (per_node - 1) * sl + ring.reduced;
                // shm's copies and reduction of the piece (see `Shm`), then the rail's ring
                c.memory_bytes += (4 * len + 3 * (per_node - 1) * sl) * s + ring.memory_bytes;
            }
        }
        start += len;
    }
    c.footprint = k * s + per_node * (k * s).min(2 * e * s);
    c
}
