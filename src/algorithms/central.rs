//! Central (parameter-server) all-reduce: everything goes through rank 0.
//!
//! Every other rank sends its vector to rank 0, which reduces them in rank
//! order (`op(op(x_0, x_1), x_2) …`) and sends the result back to each.
//!
//! # Cost
//! Root: 2(p − 1) rounds, (p − 1)·k·s bytes out and (p − 1)·k·s in,
//! (p − 1)·k elements reduced. Other ranks: 2 rounds, k·s bytes each way.

use super::{finish, Buffers, Cost, Knobs, Schedule};
use crate::element::{Element, Order, ReduceOp};
use crate::error::Result;
use crate::scratch::Scratch;
use crate::transport::Transport;

const ROOT: usize = 0;

pub(crate) struct Central;

impl Schedule for Central {
    const NAME: &'static str = "central";
    const TIE_ORDER: u8 = 3;

    /// The root's sends and receives happen one after another, so both
    /// count on its path.
    fn cost(zero: Cost, p: u64, k: u64, s: u64) -> Cost {
        // The root receives from and sends to each of the p − 1 others.
        let others = p - 1;
        let n = k * s;
        Cost {
            rounds: 2 * others,
            exchanges: 0,
            messages: others,
            bytes_sent: others * n,
            total_bytes: 2 * others * n,
            path_bytes: 2 * others * n,
            reduced: others * k,
            memory_bytes: 3 * others * n,
            footprint: 2 * n,
            ..zero
        }
    }

    fn run<T: Element, C: Transport + ?Sized>(
        comm: &C,
        data: Buffers<'_, T>,
        op: ReduceOp,
        _: Knobs,
    ) -> Result<()> {
        let buf = data.in_place();
        let p = comm.size();
        if comm.rank() != ROOT {
            comm.send(buf, ROOT)?;
            return comm.recv(buf, ROOT);
        }
        let mut scratch = Scratch::<T>::new(buf.len());
        for src in 1..p {
            // step src: gather rank src's vector and fold it in
            comm.recv(&mut scratch, src)?;
            T::reduce(op, buf, &scratch, Order::AccFirst);
        }
        finish(op, buf, p);
        for dest in 1..p {
            // step p - 1 + dest: hand the result back
            comm.send(buf, dest)?;
        }
        Ok(())
    }
}
