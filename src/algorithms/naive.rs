//! Naive ring all-reduce: whole vectors travel round the ring.
//!
//! In round s every rank sends the vector it received in round s − 1 (its
//! own in round 0) to its right neighbour and receives a whole vector from
//! its left; rank r therefore sees x_{r−1}, x_{r−2}, …, x_{r+1} (indices mod p).
//!
//! To give every rank bitwise identical floating-point results, all ranks
//! evaluate the same expression, the right fold in rank order
//! `op(x_0, op(x_1, … op(x_{p−2}, x_{p−1})))`. Vectors from ranks above r
//! arrive in exactly the order that fold consumes them (p − 1 first); the r
//! vectors from ranks below r arrive too early and are kept until the end.
//!
//! # Cost
//! p − 1 rounds; (p − 1)·k·s bytes sent per rank; (p − 1)·k elements reduced;
//! up to (p − 1)·k elements of extra memory on rank p − 1.

use super::{finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

pub(crate) struct Naive;

impl Schedule for Naive {
    const NAME: &'static str = "naive";
    const TIE_ORDER: u8 = 2;
    const SHIFTS: bool = true;
    const COPIES_INPUT: bool = false;

    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        let n = k * s;
        Cost {
            rounds: p - 1,
            exchanges: p - 1,
            messages: p - 1,
            bytes_sent: (p - 1) * n,
            total_bytes: p * (p - 1) * n,
            path_bytes: (p - 1) * n,
            reduced: (p - 1) * k,
            // Each arrival is reduced once; the busiest rank (r = p − 3, or
            // the last two) also copies p − 2 of them to keep the order fixed.
            memory_bytes: (3 * (p - 1) + 2 * (p - 2)).saturating_mul(n),
            // buffer, incoming, forward (from 3 ranks on) and up to p − 2
            // kept copies
            footprint: (if p > 2 { p + 1 } else { p }).saturating_mul(n),
            ..zero
        }
    }

    /// Out of place, the input is sent and folded where it is: the output
    /// is written once, by the fold (a buffer a peer's core has just read
    /// for a send is slow to write: every line must be taken back).
    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        _: Knobs,
    ) -> Result<()> {
        let (input, buf) = match data {
            Buffers::InPlace(buf) => (None, buf),
            Buffers::OutOfPlace(input, buf) => (Some(input), buf),
        };
        let p = comm.size();
        let r = comm.rank();
        let right = (r + 1) % p;
        let left = (r + p - 1) % p;

        let k = buf.len();
        // The vector to pass on next round, and the one arriving.
        let mut forward = Scratch::<T>::new(if p > 2 { k } else { 0 });
        let mut incoming = Scratch::<T>::new(k);
        // Right fold of the vectors from ranks above r (None until p−1 arrives).
        let mut high: Option<Scratch<T>> = None;
        // Vectors from ranks r−1, r−2, …, 0, in arrival order.
        let mut low: Vec<Scratch<T>> = Vec::with_capacity(r);

        for s in 0..p - 1 {
            // step s: pass the vector of rank (r - s) right, receive rank (r - s - 1)'s from the left
            if s == 0 {
                comm.sendrecv(input.unwrap_or(buf), right, &mut incoming, left)?;
            } else {
                comm.sendrecv(&forward, right, &mut incoming, left)?;
            }
            let from = (r + 2 * p - s - 1) % p;
            // After the last round nothing is forwarded, so the arrival can be kept as is.
            let keep = |incoming: &mut Scratch<T>| {
                if s == p - 2 {
                    std::mem::replace(incoming, Scratch::new(0))
                } else {
                    let mut copy = Scratch::new(k);
                    T::copy(&mut copy, incoming);
                    copy
                }
            };
            if from < r {
                low.push(keep(&mut incoming));
            } else {
                match high.as_mut() {
                    None => high = Some(keep(&mut incoming)),
                    Some(acc) => T::reduce(op, acc, &incoming, Order::SrcFirst),
                }
            }
            std::mem::swap(&mut forward, &mut incoming);
        }

        // Finish the fold: own vector, then the lower ranks from r−1 down
        // to 0 (out of place, the first step reads the input: no copy).
        let mut lower = low.iter();
        match (high, input) {
            (Some(acc), None) => T::reduce(op, buf, &acc, Order::AccFirst),
            (Some(acc), Some(x)) => T::reduce_into(op, buf, x, &acc),
            (None, Some(x)) => match lower.next() {
                Some(below) => T::reduce_into(op, buf, below, x),
                None => T::copy(buf, x), // one rank
            },
            (None, None) => {}
        }
        for x in lower {
            T::reduce(op, buf, x, Order::SrcFirst);
        }
        finish(op, buf, p);
        Ok(())
    }
}
