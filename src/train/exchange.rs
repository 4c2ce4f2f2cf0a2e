//! The loop-level engine of data parallelism over a flat parameter buffer:
//! a [`Strategy`]'s hooks and the gradient buckets, around a backward pass
//! and an optimizer step that the caller runs.
//!
//! [`Exchange`] is what both the [`Trainer`](crate::train::Trainer) and a
//! user's own loop ([`DataParallel`](crate::train::DataParallel), which adds
//! parameter tensors and a gradient buffer) drive, so there is one road for
//! every strategy: `start` once, then per step [`Exchange::step`] (the
//! strategy's `before_step`, the caller's backward pass reporting each
//! finished part of the gradient to [`Ready`] — which starts that bucket's
//! all-reduce on the communication thread — then the landing of the buckets
//! or the strategy's `after_backward`, then `before_update`), the caller's
//! optimizer, and [`Exchange::after_step`] (local SGD and DiLoCo average
//! the parameters there); `finish` after the last step.

use std::ops::Range;
use std::time::Instant;

use super::buckets::{BucketChoice, Bucketer, Flight, FlightSpan, Timeline};
use super::model::Matrix;
use super::optim::OptimizerState;
use super::strategies::{Step, Strategy};
use crate::compress::CodecTimes;
use crate::error::Result;
use crate::group::Group;
use crate::transport::Transport;

/// Where a step lies in the run: what the strategies' schedules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepAt {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Step within the epoch, from 0.
    pub step: usize,
}

/// A strategy and its gradient buckets over a run; see the module docs.
pub struct Exchange<'g, C: Transport, S: Strategy> {
    group: &'g Group<C>,
    strategy: S,
    buckets: Option<Bucketer>,
    steps_per_epoch: usize,
    epochs: usize,
    /// Checkpoints are written after every this many steps of the run.
    save_every: Option<usize>,
    /// The current step's context, from [`Exchange::step`] to [`Exchange::after_step`].
    ctx: Option<Step<'g, C>>,
}

/// What [`Exchange::step`] did besides the caller's backward pass.
#[derive(Default)]
pub struct Synced {
    /// Bytes this rank sent and its rounds, in the step's hooks and buckets.
    pub bytes: u64,
    /// Communication rounds.
    pub rounds: u64,
    /// A compressor's encoding and decoding time.
    pub(crate) codec: CodecTimes,
    /// Seconds the buckets' all-reduces took, when the step ran on buckets.
    pub bucket_secs: Option<f64>,
    pub(crate) spans: Vec<FlightSpan>,
    /// When the strategy's `before_step` ended.
    pub before_done: Option<Instant>,
    /// When the gradient's exchange ended (the buckets landed, or `after_backward`).
    pub exchanged: Option<Instant>,
    /// When `before_update` ended.
    pub updated: Option<Instant>,
}

/// The backward pass's side of a step: report each finished part of the
/// gradient, so its bucket starts as soon as it is full.
pub struct Ready<'a, C: Transport> {
    flight: Option<Flight<'a, C>>,
}

impl Synced {
    /// Seconds a compressor spent encoding and decoding in the step.
    pub fn codec_secs(&self) -> (f64, f64) {
        (self.codec.encode.as_secs_f64(), self.codec.decode.as_secs_f64())
    }
}

impl<C: Transport> Ready<'_, C> {
    /// Whether the step runs on buckets: then every part of the gradient
    /// must be reported through [`Ready::ready`], which copies it (scaled)
    /// into its bucket, and the gradient buffer is written when the
    /// buckets land. Otherwise the gradient buffer must hold the whole
    /// (scaled) gradient when the pass returns, and `ready` only checks.
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// Reports `values` — the gradient of the parameters `range`, times
    /// `scale` — as final. Parts come in the order of the warm-up steps
    /// (the backward pass's, last layer first). Returns whether the scaled
    /// values are all finite.
    pub fn ready(&mut self, range: Range<usize>, values: &[f32], scale: f32) -> bool {
        match self.flight.as_mut() {
            Some(f) => f.ready(range, values, scale),
            None => values.iter().all(|v| (v * scale).is_finite()),
        }
    }
}

impl<'g, C: Transport, S: Strategy> Exchange<'g, C, S> {
    /// `strategy` over `group` for a run of `epochs` epochs of
    /// `steps_per_epoch` steps (the strategies' schedules read them; a
    /// loop without epochs passes 1 and its step count). Starts the
    /// communication thread when the strategy runs on buckets. Collective.
    ///
    /// # Errors
    /// Settings the strategy cannot run on this many ranks, and bucket
    /// sizes that need a communication thread MPI cannot give.
    pub fn new(group: &'g Group<C>, strategy: S, steps_per_epoch: usize, epochs: usize) -> Result<Self> {
        strategy.check(group.size())?;
        let buckets = match strategy.buckets() {
            Some(hook) => Bucketer::new(group, hook)?,
            None => None,
        };
        Ok(Exchange {
            group,
            strategy,
            buckets,
            steps_per_epoch,
            epochs,
            save_every: None,
            ctx: None,
        })
    }

    /// Sets the run's length: `epochs` of `steps_per_epoch` steps (what the
    /// strategies' schedules read). Not collective; every rank alike.
    pub fn set_schedule(&mut self, steps_per_epoch: usize, epochs: usize) {
        self.steps_per_epoch = steps_per_epoch;
        self.epochs = epochs;
    }

    /// Tells the strategy's steps that a checkpoint follows every
    /// `steps`-th step of the run (besides each epoch's last), so state
    /// it gathers for checkpoints is gathered there ([`Step::saves`]).
    /// Not collective; every rank alike.
    pub fn set_save_every(&mut self, steps: Option<usize>) {
        self.save_every = steps;
    }

    /// The group.
    pub fn group(&self) -> &'g Group<C> {
        self.group
    }

    /// The strategy, with its state.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The strategy, to restore its state from a checkpoint.
    pub fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }

    /// Steps per epoch of the run.
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    fn context(&self, at: StepAt) -> Step<'g, C> {
        let mut ctx = Step::new(self.group, at.epoch, at.step, self.steps_per_epoch, self.epochs);
        ctx.saves = at.step + 1 == self.steps_per_epoch
            || self
                .save_every
                .is_some_and(|k| k > 0 && (ctx.global_step() + 1).is_multiple_of(k));
        ctx
    }

    /// Before the first step at `at` (the parameters the same on every
    /// rank); `matrices` are the model's weight matrices, which PowerSGD
    /// compresses. Collective.
    ///
    /// # Errors
    /// The strategy's.
    pub fn start(&mut self, at: StepAt, params: &mut [f32], matrices: Vec<Matrix>) -> Result<()> {
        let mut ctx = self.context(at);
        ctx.matrices = matrices;
        self.strategy.start(&mut ctx, params)
    }

    /// One step's exchange around the caller's `backward`, which computes
    /// this rank's gradient into `grad` at `params` and reports its parts
    /// to the [`Ready`]; on return `grad` is the gradient the optimizer
    /// applies (averaged over the ranks, for synchronous strategies).
    /// Collective.
    ///
    /// # Errors
    /// The error of `backward` (every rank's buckets are drained first,
    /// so `backward` should make its own error collective, as the
    /// trainer's finiteness check does), a pass that did not fill its
    /// buckets, and the strategy's and the collectives' errors.
    pub fn step<R>(
        &mut self,
        at: StepAt,
        params: &mut [f32],
        grad: &mut [f32],
        backward: impl FnOnce(&[f32], &mut [f32], &mut Ready<'_, C>) -> Result<R>,
    ) -> Result<(R, Synced)> {
        let mut ctx = self.context(at);
        self.strategy.before_step(&mut ctx, params)?;
        let mut synced = Synced {
            before_done: Some(Instant::now()),
            ..Synced::default()
        };
        let global = ctx.global_step();
        let codec = self.strategy.bucket_codec();
        let flight = self
            .buckets
            .as_ref()
            .and_then(|b| b.flight(self.group, codec, global, grad.len()));
        let mut ready = Ready { flight };
        let out = backward(params, grad, &mut ready);
        let flight = ready.flight.take();
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                if let Some(f) = flight {
                    f.abandon(); // every rank drains its buckets alike
                }
                return Err(e);
            }
        };
        match flight {
            Some(f) => {
                let landed = f.land(grad)?;
                ctx.count(landed.bytes, landed.rounds);
                ctx.codec.encode += landed.codec.encode;
                ctx.codec.decode += landed.codec.decode;
                synced.bucket_secs = Some(landed.comm);
                synced.spans = landed.spans;
            }
            None => self.strategy.after_backward(&mut ctx, grad)?,
        }
        synced.exchanged = Some(Instant::now());
        self.strategy.before_update(&mut ctx, params, grad)?;
        synced.updated = Some(Instant::now());
        synced.bytes = ctx.bytes;
        synced.rounds = ctx.rounds;
        synced.codec = ctx.codec;
        self.ctx = Some(ctx);
        Ok((out, synced))
    }

    /// After the caller's optimizer updated `params` (its state
    /// `optimizer`): the strategy's `after_step`. Returns the bytes and
    /// rounds it added. Collective.
    ///
    /// # Errors
    /// The strategy's; a call without a step before it.
    pub fn after_step(&mut self, params: &mut [f32], optimizer: &mut OptimizerState) -> Result<(u64, u64)> {
        let Some(mut ctx) = self.ctx.take() else {
            return Err(crate::error::Error::InvalidArgument {
                what: "after_step",
                reason: "called without a step before it".into(),
            });
        };
        let before = (ctx.bytes, ctx.rounds);
        self.strategy.after_step(&mut ctx, params, optimizer)?;
        Ok((ctx.bytes - before.0, ctx.rounds - before.1))
    }

    /// After the last step of the run. Collective.
    ///
    /// # Errors
    /// The strategy's.
    pub fn finish(&mut self, params: &mut [f32]) -> Result<()> {
        let mut ctx = self.context(StepAt {
            epoch: self.epochs.max(1),
            step: self.steps_per_epoch,
        });
        self.strategy.finish(&mut ctx, params)
    }

    /// The buckets chosen after the warm-up steps, once chosen (`None`
    /// also when the strategy runs without buckets).
    pub fn bucket_choice(&self) -> Option<&BucketChoice> {
        self.buckets.as_ref().and_then(|b| b.choice.as_ref())
    }

    /// Whether warm-up steps are being timed to choose the buckets: the
    /// caller then passes each step's [`Timeline`] to [`Exchange::settle`].
    pub fn warming(&self) -> bool {
        self.buckets.as_ref().is_some_and(Bucketer::warming)
    }

    /// Records a step while the buckets are being chosen: a warm-up step's
    /// `timeline`, the seconds it waited for communication and the
    /// step's. Returns the choice once it is made. Collective.
    ///
    /// # Errors
    /// A transport failure.
    pub fn settle(
        &mut self,
        timeline: Option<Timeline>,
        exposed: f64,
        step_secs: f64,
    ) -> Result<Option<&BucketChoice>> {
        match self.buckets.as_mut().filter(|b| b.settling()) {
            Some(b) => b.record(self.group, timeline, exposed, step_secs),
            None => Ok(None),
        }
    }
}
