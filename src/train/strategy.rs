//! Strategies: what crosses the network around each training step.
//!
//! The training loop computes each rank's gradient on its examples and
//! applies the optimizer; a [`Strategy`] decides what the ranks exchange,
//! through hooks around those two: before the step (a parameter server
//! would pull, gossip would mix with neighbours), after the backward pass
//! (all-reduce the gradient — [`GradientAllReduce`], synchronous data
//! parallelism), after the optimizer step (local SGD would average every τ
//! steps), and at the end. A strategy may keep state; what it returns from
//! [`Strategy::state`] goes into checkpoints.

use std::fmt;

use crate::algorithms::Algorithm;
use crate::compress::codec::{gathered_traffic, reduced_traffic};
use crate::compress::{wire_cost, CodecTimes, Compressor, Linear, Wire};
use crate::element::{Element, ReduceOp};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::Transport;

use super::optim::OptimizerState;

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
    pub(crate) matrices: Vec<super::model::Matrix>,
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

    /// The model's weight matrices ([`Model::matrices`](super::Model::matrices));
    /// set for [`Strategy::start`].
    pub fn matrices(&self) -> &[super::model::Matrix] {
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

/// A named buffer of a strategy's state, saved in checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Name, unique within the strategy.
    pub name: String,
    /// Values.
    pub values: Vec<f32>,
}

/// What the ranks exchange around each training step; see the module docs.
///
/// The loop clones the strategy for every run, so a strategy value is a
/// configuration and its clone's fields the run's state. Every hook is
/// collective: every rank calls it at the same point.
pub trait Strategy: Clone + Send + Sync + fmt::Debug {
    /// Name in reports and checkpoints (`sync:ring`).
    fn name(&self) -> String;

    /// Whether the ranks' parameters (and optimizer state) may differ
    /// between steps — local SGD between averagings, gossip always. The
    /// loop then evaluates the ranks' average, reports the consensus
    /// distance, and checkpoints every rank's state. Default: no.
    fn replicas_differ(&self) -> bool {
        false
    }

    /// Checks the strategy's settings for `p` ranks before the run starts.
    ///
    /// # Errors
    /// Settings that cannot work on `p` ranks (a torus on a prime count).
    fn check(&self, _p: usize) -> Result<()> {
        Ok(())
    }

    /// Before the first step (after the parameters are initialised or
    /// restored, the same on every rank).
    fn start<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _params: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// Before the gradient of a step is computed.
    fn before_step<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _params: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// After the backward pass: `grad` holds this rank's mean gradient over
    /// its examples; on return it is the gradient the optimizer applies.
    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()>;

    /// Whether the gradient's average may be cut into buckets that start
    /// during the backward pass (see [`super::buckets`]), and with which
    /// algorithm; the trainer then does [`after_backward`](Strategy::after_backward)'s
    /// averaging itself. Default: no.
    fn buckets(&self) -> Option<(super::BucketSize, Algorithm)> {
        None
    }

    /// After [`after_backward`](Strategy::after_backward), before the
    /// optimizer: `params` are still those the gradient `grad` was computed
    /// at. Gossip mixes the parameters with the neighbours' here.
    fn before_update<C: Transport>(
        &mut self,
        _ctx: &mut Step<'_, C>,
        _params: &mut [f32],
        _grad: &[f32],
    ) -> Result<()> {
        Ok(())
    }

    /// After the optimizer updated `params`.
    fn after_step<C: Transport>(
        &mut self,
        _ctx: &mut Step<'_, C>,
        _params: &mut [f32],
        _optimizer: &mut OptimizerState,
    ) -> Result<()> {
        Ok(())
    }

    /// After the last step of the run.
    fn finish<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _params: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// State to checkpoint (nothing by default).
    fn state(&self) -> Vec<Section> {
        Vec::new()
    }

    /// Takes back what [`Strategy::state`] returned.
    ///
    /// # Errors
    /// Sections that do not fit this strategy.
    fn restore(&mut self, _sections: &[Section]) -> Result<()> {
        Ok(())
    }
}

/// Synchronous data parallelism: every step the flat gradient buffer is
/// averaged over the ranks with one all-reduce of `algorithm`, so every
/// rank applies the same update — parallel minibatch SGD, equal to serial
/// minibatch SGD with the same global batch. With a [`Wire`] the gradient
/// travels as 16-bit floats through the ring, accumulated in f32
/// ([`Group::all_reduce_wire`]): half the bytes, every rank still applying
/// the same update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientAllReduce {
    /// The all-reduce schedule (or `Auto`); the ring when `wire` is set.
    pub algorithm: Algorithm,
    /// 16-bit floats on the wire, or f32 (`None`).
    pub wire: Option<Wire>,
    /// Gradient buckets overlapping the backward pass ([`super::buckets`]);
    /// f32 on the wire only. Default: off.
    pub buckets: super::BucketSize,
}

impl GradientAllReduce {
    /// All-reduce the gradient with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        GradientAllReduce {
            algorithm,
            wire: None,
            buckets: super::BucketSize::Off,
        }
    }

    /// All-reduce the gradient with the ring, as `wire` on the wire.
    pub fn on_wire(wire: Wire) -> Self {
        GradientAllReduce {
            algorithm: Algorithm::Ring,
            wire: Some(wire),
            buckets: super::BucketSize::Off,
        }
    }
}

impl Default for GradientAllReduce {
    /// The ring.
    fn default() -> Self {
        GradientAllReduce::new(Algorithm::Ring)
    }
}

impl Strategy for GradientAllReduce {
    fn name(&self) -> String {
        match self.wire {
            None => format!("sync:{}", self.algorithm),
            Some(w) => format!("sync:{},compress={w}", self.algorithm),
        }
    }

    fn check(&self, _p: usize) -> Result<()> {
        match (self.wire, self.algorithm) {
            (Some(w), a) if a != Algorithm::Ring => Err(Error::InvalidArgument {
                what: "strategy",
                reason: format!("compress={w} runs the ring with 16-bit floats on the wire, not {a}"),
            }),
            _ => Ok(()),
        }
    }

    fn buckets(&self) -> Option<(super::BucketSize, Algorithm)> {
        match self.wire {
            None => Some((self.buckets, self.algorithm)),
            Some(_) => None,
        }
    }

    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        match self.wire {
            Some(w) => ctx.all_reduce_wire(grad, ReduceOp::Avg, w),
            None => ctx.all_reduce(grad, ReduceOp::Avg, self.algorithm),
        }
    }
}
