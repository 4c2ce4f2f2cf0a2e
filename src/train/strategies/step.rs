//! [`Step`]: where a strategy's hook is called, and what it counts.

use crate::algorithms::Algorithm;
use crate::compress::codec::{gathered_traffic, reduced_traffic};
use crate::compress::CodecTimes;
use crate::compress::{wire_cost, Compressor, Linear, Wire};
use crate::element::{Element, ReduceOp};
use crate::error::Result;
use crate::group::Group;
use crate::train::buckets::{exchange_whole, BucketCodec};
use crate::transport::Transport;

/// Where a hook is called: the group, the position in the run, and the
/// tally of what the strategy put on the wire.
pub struct Step<'a, C: Transport> {
    /// The ranks.
    pub group: &'a Group<C>,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Step within the epoch, from 0.
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Steps of the whole run (epochs × steps per epoch).
    pub total_steps: usize,
    pub(crate) bytes: u64,
    pub(crate) rounds: u64,
    pub(crate) matrices: Vec<crate::train::Matrix>,
    /// Whether a checkpoint follows this step (an epoch's last, or one of
    /// [`Exchange::set_save_every`](crate::train::Exchange::set_save_every)'s):
    /// state a strategy saves is gathered at such steps.
    pub saves: bool,
    /// Of the hooks' time, encoding and decoding by a compressor.
    pub(crate) codec: CodecTimes,
}

impl<'a, C: Transport> Step<'a, C> {
    pub(crate) fn new(
        group: &'a Group<C>,
        epoch: usize,
        step: usize,
        steps_per_epoch: usize,
        epochs: usize,
    ) -> Self {
        Step {
            group,
            epoch,
            step,
            steps_per_epoch,
            total_steps: epochs * steps_per_epoch,
            bytes: 0,
            rounds: 0,
            matrices: Vec::new(),
            codec: CodecTimes::default(),
            saves: step + 1 == steps_per_epoch,
        }
    }

    /// Runs `f` (a collective call on the group).
    pub fn timed<R>(&mut self, f: impl FnOnce(&Group<C>) -> Result<R>) -> Result<R> {
        f(self.group)
    }

    /// Runs `f` (a compressor's encoding outside the calls below) and
    /// counts its time as encoding.
    pub fn encoding<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let start = std::time::Instant::now();
        let out = f();
        self.codec.encode += start.elapsed();
        out
    }

    /// Runs `f` and counts its time as decoding; see [`Step::encoding`].
    pub fn decoding<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let start = std::time::Instant::now();
        let out = f();
        self.codec.decode += start.elapsed();
        out
    }

    /// Runs a compressed collective that reports its own split.
    fn split<R>(&mut self, f: impl FnOnce(&Group<C>, &mut CodecTimes) -> Result<R>) -> Result<R> {
        let mut t = CodecTimes::default();
        let out = f(self.group, &mut t);
        self.codec.encode += t.encode;
        self.codec.decode += t.decode;
        out
    }

    /// [`Group::all_reduce_compressed`]: the codes of a linear compressor
    /// all-reduced by `algorithm`, averaged; counted from the algorithm's
    /// exact cost for the code, encoding and decoding timed apart.
    ///
    /// # Errors
    /// As [`Group::all_reduce_compressed`].
    pub fn all_reduce_compressed<L>(&mut self, c: &mut L, buf: &mut [f32], algorithm: Algorithm) -> Result<()>
    where
        L: Linear,
        L::Word: Element,
    {
        let stream = self.global_step() as u64;
        self.split(|g, t| g.compressed_reduce(c, buf, ReduceOp::Avg, algorithm, stream, t))?;
        let (len, size) = (c.code_len(buf.len()), std::mem::size_of::<L::Word>());
        let concrete = self.group.resolve(algorithm, len, size);
        if let Some(t) = reduced_traffic(c, concrete, self.group.size(), buf.len()) {
            self.count(t.bytes_sent, t.rounds);
        }
        Ok(())
    }

    /// Runs `codec` on the whole gradient `grad` as one bucket
    /// (the [`BucketCodec`]'s rounds in order): each round's buffer averaged by `algorithm`
    /// and counted as [`Step::all_reduce`] counts it, the codec's work
    /// timed as encoding and decoding.
    ///
    /// # Errors
    /// As [`Group::all_reduce_in_place`].
    pub fn exchange(
        &mut self,
        codec: &mut dyn BucketCodec,
        grad: &mut [f32],
        algorithm: Algorithm,
    ) -> Result<()> {
        let step = self.global_step();
        let mut times = CodecTimes::default();
        exchange_whole(
            codec,
            step,
            grad,
            &mut |buf| self.all_reduce(buf, ReduceOp::Avg, algorithm),
            &mut times,
        )?;
        self.codec.encode += times.encode;
        self.codec.decode += times.decode;
        Ok(())
    }

    /// [`Group::all_gather_compressed`]: every rank's code all-gathered,
    /// all decoded and averaged; counted as the ring all-gather's (p − 1)
    /// codes in p − 1 rounds, encoding and decoding timed apart.
    ///
    /// # Errors
    /// As [`Group::all_gather_compressed`].
    pub fn all_gather_compressed<K: Compressor>(&mut self, c: &mut K, buf: &mut [f32]) -> Result<()> {
        let stream = self.global_step() as u64;
        self.split(|g, t| g.compressed_gather(c, buf, ReduceOp::Avg, stream, t))?;
        let t = gathered_traffic(c, self.group.size(), buf.len());
        self.count(t.bytes_sent, t.rounds);
        Ok(())
    }

    /// [`Group::all_gather`], timed as communication; not counted (the
    /// caller counts what it sends with [`Step::count`]).
    ///
    /// # Errors
    /// As [`Group::all_gather`].
    pub fn all_gather<T: bytemuck::Pod>(&mut self, mine: &[T], out: &mut [T]) -> Result<()> {
        self.timed(|g| g.all_gather(mine, out))
    }

    /// The model's weight matrices ([`Model::matrices`](crate::train::Model::matrices));
    /// set for [`Strategy::start`](super::Strategy::start).
    pub fn matrices(&self) -> &[crate::train::Matrix] {
        &self.matrices
    }

    /// Steps taken before this one over the whole run.
    pub fn global_step(&self) -> usize {
        (self.epoch - 1) * self.steps_per_epoch + self.step
    }

    /// Whether this is the run's last step.
    pub fn is_last(&self) -> bool {
        self.global_step() + 1 == self.total_steps
    }
    /// Records `bytes` this rank sent in `rounds` sequential rounds (for
    /// the epoch's metrics). On one rank nothing crosses a network, and
    /// nothing is counted.
    pub fn count(&mut self, bytes: u64, rounds: u64) {
        if self.group.size() > 1 {
            self.bytes += bytes;
            self.rounds += rounds;
        }
    }

    /// Records `bytes` sent in one round; see [`Step::count`].
    pub fn count_bytes(&mut self, bytes: u64) {
        self.count(bytes, 1);
    }

    /// All-reduces `buf` in place over the group and counts what the
    /// busiest rank sends and its rounds, from the algorithm's exact cost
    /// model (which the `Counting` transport's tests hold to the bytes on
    /// the wire).
    ///
    /// # Errors
    /// As [`Group::all_reduce_in_place`].
    pub fn all_reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        algorithm: Algorithm,
    ) -> Result<()> {
        self.timed(|g| g.all_reduce_in_place(buf, op, algorithm))?;
        let size = std::mem::size_of::<T>();
        let concrete = self.group.resolve(algorithm, buf.len(), size);
        if let Some(c) = concrete.exact_cost(self.group.size(), buf.len(), size) {
            self.count(c.bytes_sent, c.rounds);
        }
        Ok(())
    }

    /// [`Group::all_reduce_wire`] (16-bit floats on the wire, f32
    /// accumulation), counted from [`wire_cost`].
    ///
    /// # Errors
    /// As [`Group::all_reduce_wire`].
    pub fn all_reduce_wire(&mut self, buf: &mut [f32], op: ReduceOp, wire: Wire) -> Result<()> {
        self.split(|g, t| g.wire_reduce(buf, op, wire, t))?;
        let c = wire_cost(self.group.size(), buf.len());
        self.count(c.bytes_sent, c.rounds);
        Ok(())
    }
}
