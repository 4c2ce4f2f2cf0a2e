//! The training loop: batches, gradients, the optimizer, the strategy's
//! hooks, metrics and checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::batches::{BatchSource, SharedShuffle};
use super::buckets::{BucketChoice, FlightSpan, Timeline};
use super::checkpoint::{Checkpoint, Header};
use super::data::Dataset;
use super::exchange::{Exchange, StepAt};
use super::model::Model;
use super::optim::{LrSchedule, Optimizer, OptimizerState, Sgd};
use super::strategies::{GradientAllReduce, Section, Strategy};
use super::trace::{Args, Recorder, TraceEvent, COMM, MAIN};
use crate::algorithms::{chunk_range, Algorithm};
use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::Transport;

/// What one epoch did, the same on every rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Steps taken over the whole run at the end of this epoch.
    pub step: usize,
    /// Mean training loss over the epoch's examples.
    pub train_loss: f64,
    /// Accuracy on the held-out set given to `fit`; `None` without one.
    pub test_accuracy: Option<f64>,
    /// Wall time of the epoch on rank 0's clock, seconds (training steps only).
    pub epoch_secs: f64,
    /// Training examples per second over all ranks (global batch × steps ÷
    /// `epoch_secs`).
    pub samples_per_sec: f64,
    /// Seconds of the epoch spent in the strategy's communication (the
    /// gradient all-reduce, for synchronous SGD), on rank 0's clock.
    pub allreduce_secs: f64,
    /// Of `allreduce_secs`, a compressor's encoding (0 without one): the
    /// conversions to 16 bits inside the fp16 ring, top-k's selection with
    /// error feedback's add-back, QSGD's quantization, PowerSGD's
    /// projections and orthogonalisation.
    pub encode_secs: f64,
    /// Of `allreduce_secs`, a compressor's decoding (0 without one): what
    /// turns the received codes back into a dense gradient.
    pub decode_secs: f64,
    /// Bytes the busiest rank sent for the strategy (the exact cost model
    /// of each all-reduce, the bytes of each gossip exchange; for
    /// synchronous SGD with the ring ≈ 2·(p−1)/p × gradient size × steps;
    /// 0 on one rank).
    pub allreduce_bytes: u64,
    /// Sequential communication rounds of those sends.
    pub rounds: u64,
    /// Seconds of the epoch's forward and backward passes (a straggler's
    /// extra time included), rank 0.
    pub compute_secs: f64,
    /// Seconds the strategy's communication took, hidden or not: with
    /// gradient buckets the bucket all-reduces' own time on the
    /// communication thread, of which `allreduce_secs` is what the
    /// training loop waited for; without, equal to `allreduce_secs`.
    pub comm_secs: f64,
    /// For strategies whose ranks' parameters differ (local SGD, gossip):
    /// the mean over ranks of ‖w_i − w̄‖₂ at the end of the epoch; `None`
    /// for the others. The accuracy is then that of the average w̄.
    pub consensus_distance: Option<f64>,
    /// Bytes the busiest rank sent to score the epoch (its evaluations
    /// within and at the end): the all-reduce that averages replicas that
    /// differ, the consensus distance's and the count of right answers.
    /// A separate budget: not in `allreduce_bytes`, which is the
    /// strategy's own traffic.
    pub scoring_bytes: u64,
    /// The evaluations within the epoch, with
    /// [`eval_every`](TrainerBuilder::eval_every) (empty without; the
    /// epoch's end is not among them: it is this row).
    pub evals: Vec<EvalPoint>,
}

/// An evaluation within an epoch ([`TrainerBuilder::eval_every`]): how far
/// the epoch had come and the accuracy there, the same on every rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalPoint {
    /// Steps over the whole run when it was taken.
    pub step: usize,
    /// Training seconds of the epoch so far on rank 0's clock (earlier
    /// evaluations excluded, as [`EpochMetrics::epoch_secs`] excludes them).
    pub epoch_secs: f64,
    /// Bytes the busiest rank sent for the strategy in the epoch so far.
    pub allreduce_bytes: u64,
    /// Rounds of those sends.
    pub rounds: u64,
    /// Accuracy on the held-out set (of the replicas' average where they
    /// differ).
    pub test_accuracy: f64,
    /// As [`EpochMetrics::consensus_distance`], at this step.
    pub consensus_distance: Option<f64>,
}

/// One epoch of a plan: the usual metrics and, for the parameter server,
/// how stale its updates were.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanEpoch {
    /// The metrics (for the parameter server see [`ParameterServer::fit`](super::ParameterServer::fit):
    /// the parameters scored are the servers' shards when the last worker's
    /// last push of the epoch was applied; `allreduce_bytes` is what the
    /// busiest worker sent).
    pub metrics: EpochMetrics,
    /// `staleness[s]`: updates of the epoch applied with staleness s,
    /// summed over servers (empty for the trainer's strategies).
    pub staleness: Vec<u64>,
    /// The same per worker (worker index = rank − servers).
    pub per_worker: Vec<Vec<u64>>,
}

impl PlanEpoch {
    pub(crate) fn of(metrics: EpochMetrics) -> Self {
        PlanEpoch {
            metrics,
            staleness: Vec::new(),
            per_worker: Vec::new(),
        }
    }
}

/// Where a resumed run continues, given to [`Trainer::on_resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// Epochs the checkpoint had completed.
    pub epoch: usize,
    /// Steps it had completed of the next epoch (0 when it was written at
    /// an epoch's end).
    pub step: usize,
    /// Steps it had completed over the run.
    pub global_step: usize,
}

/// What one step did, given to the [`Trainer::on_step`] hook on every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Step within the epoch, from 1.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// Steps over the whole run, this one included.
    pub global_step: usize,
    /// Mean loss over this step's global batch (the same on every rank);
    /// for strategies whose replicas differ, over this rank's examples
    /// (their ranks agree on finiteness and the loss only every
    /// [`AGREE_EVERY`] steps; the epoch's `train_loss` is still the global
    /// mean).
    pub loss: f64,
    /// Seconds since the epoch began, on this rank's clock.
    pub epoch_secs: f64,
    /// Seconds of this step, this rank.
    pub step_secs: f64,
    /// Of them, the forward and backward pass.
    pub compute_secs: f64,
    /// Seconds the step waited for communication after the pass (all of
    /// the all-reduce without buckets; what was not hidden with them).
    pub exposed_secs: f64,
    /// Seconds the step's communication took, hidden or not.
    pub comm_secs: f64,
}

impl StepMetrics {
    /// The share of the communication hidden behind the pass:
    /// 1 − exposed ÷ communication (0 without communication).
    pub fn overlap(&self) -> f64 {
        overlap(self.exposed_secs, self.comm_secs)
    }
}

impl EpochMetrics {
    /// The share of the epoch's communication hidden behind computation:
    /// 1 − `allreduce_secs` ÷ `comm_secs` (0 without communication).
    pub fn overlap(&self) -> f64 {
        overlap(self.allreduce_secs, self.comm_secs)
    }
}

fn overlap(exposed: f64, comm: f64) -> f64 {
    match comm > 0.0 {
        true => (1.0 - exposed / comm).clamp(0.0, 1.0),
        false => 0.0,
    }
}

/// Data-parallel training: a [`Strategy`] (what the ranks exchange), an
/// [`Optimizer`], a [`BatchSource`] and the run's settings.
///
/// ```
/// use ringreduce::train::{data, Mlp, Model, SyncSgd};
/// use ringreduce::{Algorithm, Group};
/// let train = data::synthetic(240, 4, 3, 1);
/// let model = Mlp::softmax(4, 3).unwrap();
/// let sgd = SyncSgd::builder().batch(24).lr(0.5).epochs(3).algorithm(Algorithm::Ring).build().unwrap();
/// let accuracy = Group::local(2, |g| {
///     let mut params = sgd.init_params(&model);
///     let metrics = sgd.fit(&g, &model, &mut params, &train, Some(&train), |_| {}).unwrap();
///     metrics.last().unwrap().test_accuracy.unwrap()
/// });
/// assert!(accuracy[0] > 0.8 && accuracy[0] == accuracy[1]);
/// ```
#[derive(Debug, Clone)]
pub struct Trainer<S: Strategy = GradientAllReduce> {
    pub(crate) strategy: S,
    pub(crate) optimizer: Arc<dyn Optimizer>,
    pub(crate) cfg: Config,
}

/// The settings of a run besides the strategy and the optimizer.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) batches: Arc<dyn BatchSource>,
    pub(crate) batch: usize,
    pub(crate) lr: f32,
    pub(crate) schedule: LrSchedule,
    pub(crate) epochs: usize,
    pub(crate) seed: u64,
    pub(crate) straggler: Option<(usize, f64)>,
    pub(crate) checkpoint: Option<PathBuf>,
    pub(crate) resume: bool,
    pub(crate) stop_after: Option<usize>,
    pub(crate) eval_every: Option<usize>,
    pub(crate) checkpoint_every: Option<usize>,
    on_step: Option<Hook<StepMetrics>>,
    on_resume: Option<Hook<Resumed>>,
    on_buckets: Option<Hook<BucketChoice>>,
    on_trace: Option<Hook<Vec<TraceEvent>>>,
    on_stale: Option<Hook<Vec<PathBuf>>>,
}

/// A callback of the loop (for progress bars and logs).
struct Hook<T>(Arc<dyn Fn(&T) + Send + Sync>);

impl<T: 'static> Hook<T> {
    /// `f` after `first`, when there is one: hooks set twice both run, in
    /// the order they were set.
    fn then(first: Option<Hook<T>>, f: impl Fn(&T) + Send + Sync + 'static) -> Self {
        match first {
            Some(first) => Hook(Arc::new(move |t: &T| {
                (first.0)(t);
                f(t)
            })),
            None => Hook(Arc::new(f)),
        }
    }
}

impl<T> Clone for Hook<T> {
    fn clone(&self) -> Self {
        Hook(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Hook<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Synchronous data-parallel SGD: the trainer with [`GradientAllReduce`].
pub type SyncSgd = Trainer<GradientAllReduce>;

/// Builder of a [`Trainer`].
#[derive(Debug, Clone)]
pub struct TrainerBuilder<S: Strategy> {
    strategy: S,
    optimizer: Option<Arc<dyn Optimizer>>,
    momentum: f32,
    weight_decay: f32,
    cfg: Config,
}

impl Trainer<GradientAllReduce> {
    /// Defaults: gradient all-reduce with the ring, SGD without momentum or
    /// weight decay, global batch 256, lr 0.1, constant, 5 epochs, seed 42.
    pub fn builder() -> TrainerBuilder<GradientAllReduce> {
        TrainerBuilder {
            strategy: GradientAllReduce::default(),
            optimizer: None,
            momentum: 0.0,
            weight_decay: 0.0,
            cfg: Config {
                batches: Arc::new(SharedShuffle),
                batch: 256,
                lr: 0.1,
                schedule: LrSchedule::Constant,
                epochs: 5,
                seed: 42,
                checkpoint: None,
                resume: false,
                stop_after: None,
                eval_every: None,
                checkpoint_every: None,
                straggler: None,
                on_step: None,
                on_resume: None,
                on_buckets: None,
                on_trace: None,
                on_stale: None,
            },
        }
    }
}

/// The hooks below add up: setting one twice runs both, in order.
impl<S: Strategy> Trainer<S> {
    /// Calls `f` after every step, on every rank (for progress bars and
    /// logs).
    pub fn on_step(mut self, f: impl Fn(&StepMetrics) + Send + Sync + 'static) -> Self {
        self.cfg.on_step = Some(Hook::then(self.cfg.on_step.take(), f));
        self
    }

    /// Calls `f` with where the run continues on every rank once a resumed
    /// run has restored its checkpoint, before its first step.
    pub fn on_resume(mut self, f: impl Fn(&Resumed) + Send + Sync + 'static) -> Self {
        self.cfg.on_resume = Some(Hook::then(self.cfg.on_resume.take(), f));
        self
    }

    /// Calls `f` on every rank once the gradient buckets are chosen (after
    /// the warm-up steps of a run that asked for buckets).
    pub fn on_buckets(mut self, f: impl Fn(&BucketChoice) + Send + Sync + 'static) -> Self {
        self.cfg.on_buckets = Some(Hook::then(self.cfg.on_buckets.take(), f));
        self
    }

    /// Records the run's timeline ([`super::trace`]) and calls `f` with
    /// every rank's events, on every rank, once the run ends (the events
    /// are gathered to every rank: collective).
    /// [`trace::write_chrome`](super::trace::write_chrome) writes them.
    pub fn on_trace(mut self, f: impl Fn(&Vec<TraceEvent>) + Send + Sync + 'static) -> Self {
        self.cfg.on_trace = Some(Hook::then(self.cfg.on_trace.take(), f));
        self
    }

    /// Calls `f` with the temporary files a killed run left beside a
    /// checkpoint this run writes, once they are removed at the start (on
    /// the rank that writes the file: rank 0, a parameter server its
    /// shard's). Only this host's files of processes that are gone are
    /// removed ([`crate::files::remove_stale_temporaries`]).
    pub fn on_stale(mut self, f: impl Fn(&Vec<PathBuf>) + Send + Sync + 'static) -> Self {
        self.cfg.on_stale = Some(Hook::then(self.cfg.on_stale.take(), f));
        self
    }

    /// Removes the temporary files killed runs left beside `path`, which
    /// this rank writes, and tells [`Trainer::on_stale`] which.
    pub(crate) fn tidy(&self, path: &std::path::Path) {
        let removed = crate::files::remove_stale_temporaries(path);
        if let (false, Some(hook)) = (removed.is_empty(), &self.cfg.on_stale) {
            (hook.0)(&removed);
        }
    }

    /// The same trainer (settings, optimizer, hooks) with `strategy`.
    pub fn with_strategy<S2: Strategy>(&self, strategy: S2) -> Trainer<S2> {
        Trainer {
            strategy,
            optimizer: self.optimizer.clone(),
            cfg: self.cfg.clone(),
        }
    }

    /// Initial parameters from the seed (the same on every rank).
    pub fn init_params<M: Model>(&self, model: &M) -> Vec<f32> {
        let mut p = vec![0f32; model.num_params()];
        model.init(&mut p, self.cfg.seed);
        p
    }

    /// Where rank 0 writes the checkpoint, when the run has one.
    pub fn checkpoint_path(&self) -> Option<&std::path::Path> {
        self.cfg.checkpoint.as_deref()
    }

    /// Global batch size.
    pub fn batch(&self) -> usize {
        self.cfg.batch
    }

    /// The strategy.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The order in which epoch `epoch` (1-based) visits `n` examples on
    /// `p` ranks: with the default batch source step s uses positions
    /// `s·B .. (s+1)·B`, rank r of p the slice `s·B + r·B/p .. s·B +
    /// (r+1)·B/p` — the same on every rank and rank count, so one can tell
    /// which rank saw which example.
    pub fn epoch_order(&self, epoch: usize, n: usize, p: usize) -> Vec<usize> {
        self.cfg.batches.order(self.cfg.seed, epoch, n, p)
    }

    /// Trains `params` on `train` for the configured epochs and evaluates on
    /// `test` after each; `on_epoch` sees every epoch's metrics (on every
    /// rank; print on rank 0). Collective over `group`.
    ///
    /// # Errors
    /// A global batch the batch source refuses (smaller than the rank
    /// count, larger than the data set), a model whose input width differs
    /// from the data's, a non-finite loss or gradient ([`Error::NonFinite`],
    /// naming epoch, step and the first rank), a checkpoint that cannot be
    /// read or does not fit, or a transport failure.
    pub fn fit<M, C>(
        &self,
        group: &Group<C>,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        test: Option<&Dataset>,
        mut on_epoch: impl FnMut(&EpochMetrics),
    ) -> Result<Vec<EpochMetrics>>
    where
        M: Model,
        C: Transport,
    {
        self.check_setup(group.size(), model, params, train, test)?;
        if let Some((r, _)) = self.cfg.straggler {
            if r >= group.size() {
                return Err(Error::InvalidArgument {
                    what: "training setup",
                    reason: format!("straggler rank {r} is not one of the {} ranks", group.size()),
                });
            }
        }
        if let (0, Some(path)) = (group.rank(), &self.cfg.checkpoint) {
            self.tidy(path);
        }
        let steps = self.cfg.batches.steps(self.cfg.batch, train.len(), group.size());
        let mut run = Run {
            trainer: self,
            group,
            exchange: Exchange::new(group, self.strategy.clone(), steps, self.cfg.epochs)?,
            optimizer: OptimizerState::new(&*self.optimizer, params.len()),
            steps,
            data: match &self.cfg.checkpoint {
                Some(_) => fingerprint(train),
                None => String::new(),
            },
            trace: None,
            deferred: (self.strategy.replicas_differ() && group.size() > 1).then_some(None),
        };
        let (done, from) = if self.cfg.resume {
            run.restore(params)?
        } else {
            (0, 0)
        };
        if let (true, Some(hook)) = (self.cfg.resume, &self.cfg.on_resume) {
            (hook.0)(&Resumed {
                epoch: done,
                step: from,
                global_step: done * steps + from,
            });
        }
        let at = match from {
            0 => StepAt {
                epoch: done.max(1),
                step: 0,
            },
            _ => StepAt {
                epoch: done + 1,
                step: from,
            },
        };
        run.exchange
            .set_save_every(self.cfg.checkpoint.as_ref().and(self.cfg.checkpoint_every));
        run.exchange.start(at, params, model.matrices())?;
        if self.cfg.on_trace.is_some() {
            // Every rank's clock starts here, right after a barrier.
            group.barrier()?;
            run.trace = Some(Recorder::new(group.rank()));
        }
        let mut history = Vec::new();
        let last = self
            .cfg
            .stop_after
            .map_or(self.cfg.epochs, |s| s.min(self.cfg.epochs));
        for epoch in done + 1..=last {
            let first = if epoch == done + 1 { from } else { 0 };
            let m = run.epoch(epoch, first, model, params, train, test)?;
            on_epoch(&m);
            history.push(m);
        }
        if last == self.cfg.epochs {
            run.exchange.finish(params)?;
        }
        if let (Some(rec), Some(hook)) = (run.trace.take(), &self.cfg.on_trace) {
            let all: Vec<TraceEvent> = group
                .all_gather_value(&rec.events)?
                .into_iter()
                .flatten()
                .collect();
            (hook.0)(&all);
        }
        Ok(history)
    }

    pub(crate) fn check_setup<M: Model>(
        &self,
        p: usize,
        model: &M,
        params: &[f32],
        train: &Dataset,
        test: Option<&Dataset>,
    ) -> Result<()> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: "training setup",
            reason,
        };
        self.cfg.batches.check(self.cfg.batch, train.len(), p)?;
        self.strategy.check(p)?;
        if let (Some(k), None) = (self.cfg.eval_every, test) {
            return Err(invalid(format!(
                "evaluating every {k} steps needs a held-out set to score"
            )));
        }
        for d in std::iter::once(train).chain(test) {
            if d.dim != model.input_dim() {
                return Err(invalid(format!(
                    "data has {} features, the model expects {}",
                    d.dim,
                    model.input_dim()
                )));
            }
        }
        if params.len() != model.num_params() {
            return Err(invalid(format!(
                "{} parameters given, the model has {}",
                params.len(),
                model.num_params()
            )));
        }
        Ok(())
    }
}

/// One call of `fit`: its state.
struct Run<'a, S: Strategy, C: Transport> {
    trainer: &'a Trainer<S>,
    group: &'a Group<C>,
    /// The strategy and its gradient buckets.
    exchange: Exchange<'a, C, S>,
    optimizer: OptimizerState,
    steps: usize,
    /// What the checkpoints say of the training data ([`fingerprint`]).
    data: String,
    /// The timeline, when asked for.
    trace: Option<Recorder>,
    /// Strategies whose replicas differ check finiteness on each rank and
    /// agree on it only every [`AGREE_EVERY`] steps and at the epoch's end
    /// (see [`Run::agree_deferred`]): the first non-finite step this rank
    /// saw since, as (global step, whether the gradient — not the loss).
    deferred: Option<Option<(usize, bool)>>,
}

/// Steps between two finiteness agreements of a strategy whose replicas
/// differ. Such a strategy communicates every τ steps, or with its
/// neighbours only: an all-reduce every step to agree on finiteness would
/// be the run's only global round, ⌈log2 p⌉ latencies a step (on a 10 ms
/// link, 20 ms of a local step's few). A rank that goes non-finite is
/// named at the next agreement, with the step it happened at.
pub const AGREE_EVERY: usize = 32;

/// Adds a step's events to the timeline. `marks` are when the step began,
/// the strategy's `before_step` ended, the forward pass began, the
/// backward pass (and a straggler's wait) ended, the loss agreement began
/// and ended, the gradient's exchange ended (the buckets landed, or
/// `after_backward`), `before_update` ended, the optimizer ended and
/// `after_step` ended; `ready` holds when each layer's gradient was,
/// `spans` the buckets' work.
fn record_step(
    rec: &mut Recorder,
    global: usize,
    bucketed: bool,
    marks: &[Instant; 10],
    ready: &[(std::ops::Range<usize>, Instant)],
    spans: &[FlightSpan],
) {
    let [step, before, fwd, bwd, agree, agreed, exchanged, updated, optimized, end] = *marks;
    let args = || Args::step(global);
    rec.span("step", "step", MAIN, step, end - step, args());
    let exchange = match bucketed {
        true => ("wait for buckets", "wait"),
        false => ("gradient exchange", "comm"),
    };
    for (name, cat, a, b) in [
        ("before step", "comm", step, before),
        ("forward+backward", "compute", fwd, bwd),
        ("loss agreement", "comm", agree, agreed),
        (exchange.0, exchange.1, agreed, exchanged),
        ("before update", "comm", exchanged, updated),
        ("optimizer", "compute", updated, optimized),
        ("after step", "comm", optimized, end),
    ] {
        if b > a {
            rec.span(name, cat, MAIN, a, b - a, args());
        }
    }
    for (range, at) in ready {
        rec.instant("gradient ready", "compute", *at, args().params(range));
    }
    for s in spans {
        let tid = if s.comm { COMM } else { MAIN };
        let cat = if s.what == "all-reduce" { "comm" } else { "codec" };
        let a = args().params(&s.params).with("round", s.round);
        rec.span(s.what, cat, tid, s.began, s.took, a);
    }
}

/// Size, shape and checksum of a data set: what a resumed run must match.
fn fingerprint(d: &Dataset) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(bytemuck::cast_slice(&d.features));
    h.update(bytemuck::cast_slice(&d.labels));
    format!(
        "{} examples × {} features, {} classes, CRC-32 {:08x}",
        d.len(),
        d.dim,
        d.classes,
        h.finalize()
    )
}

/// What an epoch's steps add up to (this rank's clock).
#[derive(Default)]
struct Sums {
    /// The epoch's first step: 0 but in a run resumed within the epoch.
    from: usize,
    comm_secs: f64,
    loss: f64,
    bytes: u64,
    rounds: u64,
    encode_secs: f64,
    decode_secs: f64,
    compute_secs: f64,
    hidden_secs: f64,
    /// Seconds spent in evaluations and checkpoints within the epoch
    /// (left out of its time).
    paused_secs: f64,
    /// Bytes of those evaluations.
    scoring_bytes: u64,
    evals: Vec<EvalPoint>,
}

/// What scoring the parameters found ([`Run::score`]).
struct Score {
    /// The replicas' average, for strategies whose replicas differ.
    mean: Option<Vec<f32>>,
    consensus: Option<f64>,
    accuracy: Option<f64>,
    /// Bytes the busiest rank sent to score.
    bytes: u64,
}

/// A step's buffers, allocated once per epoch.
struct Scratch {
    grad: Vec<f32>,
    x: Vec<f32>,
    y: Vec<u32>,
    order: Vec<usize>,
    start: Instant,
}

impl<S: Strategy, C: Transport> Run<'_, S, C> {
    /// One epoch of steps from step `from` (0 but in a run resumed within
    /// an epoch), then the loss, the test accuracy, the metrics and the
    /// checkpoint.
    #[allow(clippy::too_many_arguments)] // the run's state, passed down
    fn epoch<M: Model>(
        &mut self,
        epoch: usize,
        from: usize,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        test: Option<&Dataset>,
    ) -> Result<EpochMetrics> {
        let t = self.trainer;
        let p = self.group.size();
        let local = super::batches::largest_share(t.cfg.batch, p);
        let mut scratch = Scratch {
            grad: vec![0f32; params.len()],
            x: vec![0f32; local * train.dim],
            y: vec![0u32; local],
            order: t.cfg.batches.order(t.cfg.seed, epoch, train.len(), p),
            start: Instant::now(),
        };
        let mut sums = Sums {
            from,
            ..Sums::default()
        };
        for step in from..self.steps {
            self.step(epoch, step, model, params, train, &mut scratch, &mut sums)?;
            let global = (epoch - 1) * self.steps + step + 1;
            // The epoch's last step is scored and saved by the epoch's end.
            let within = step + 1 < self.steps;
            if let (Some(k), Some(test), true) = (t.cfg.eval_every, test, within) {
                if global.is_multiple_of(k) {
                    let point = self.eval_point(global, model, params, test, scratch.start, &mut sums)?;
                    sums.evals.push(point);
                }
            }
            if let (Some(k), Some(_), true) = (t.cfg.checkpoint_every, &t.cfg.checkpoint, within) {
                if global.is_multiple_of(k) {
                    let began = Instant::now();
                    self.save_within(epoch, step + 1, params)?;
                    sums.paused_secs += began.elapsed().as_secs_f64();
                }
            }
        }
        let epoch_secs = scratch.start.elapsed().as_secs_f64() - sums.paused_secs;
        let ending = Instant::now();
        let m = self.end_epoch(epoch, epoch_secs, model, params, test, sums)?;
        if let Some(rec) = self.trace.as_mut() {
            // Evaluation, metrics, the checkpoint.
            rec.since(
                "end of epoch",
                "step",
                ending,
                Args::default().with("epoch", epoch),
            );
        }
        Ok(m)
    }

    /// One step: the strategy's hooks around this rank's gradient and the
    /// optimizer's update; adds its figures to `sums`.
    #[allow(clippy::too_many_arguments)] // the epoch's state, passed down
    fn step<M: Model>(
        &mut self,
        epoch: usize,
        step: usize,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        scratch: &mut Scratch,
        sums: &mut Sums,
    ) -> Result<()> {
        let t = self.trainer;
        let group = self.group;
        let (p, rank) = (group.size(), group.rank());
        let Scratch {
            grad,
            x,
            y,
            order,
            start,
        } = scratch;
        let step_began = Instant::now();
        let mine = t.cfg.batches.local(order, t.cfg.batch, step, rank, p);
        // This rank's summed gradient times p/B: averaged over the ranks
        // it is the global batch's mean, even where the shares differ by
        // one (the local mean where they do not); checked for finiteness
        // in the same pass.
        let scale = super::batches::share_scale(t.cfg.batch, p);
        let warming = self.exchange.warming();
        let tracing = self.trace.is_some();
        let (mut layers, mut ready) = (Vec::new(), Vec::new());
        let mut marks = [step_began; 4]; // began, backward done, agree from, agree done
        let mut step_compute = 0.0;
        let mut backward_end = 0.0;
        let at = StepAt { epoch, step };
        let deferred = self.deferred.is_some();
        let mut went_bad = None;
        let (agreed, synced) = self.exchange.step(at, params, grad, |params, grad, flight| {
            for (j, &i) in mine.iter().enumerate() {
                x[j * train.dim..(j + 1) * train.dim].copy_from_slice(train.row(i));
                y[j] = train.labels[i];
            }
            marks[0] = Instant::now();
            let mut grad_finite = true;
            let (xs, ys) = (&x[..mine.len() * train.dim], &y[..mine.len()]);
            let loss = model.loss_and_grad_layered(params, xs, ys, grad, &mut |range, values| {
                if warming {
                    layers.push((range.clone(), step_began.elapsed().as_secs_f64()));
                }
                if tracing {
                    ready.push((range.clone(), Instant::now()));
                }
                if flight.in_flight() {
                    grad_finite &= flight.ready(range, values, scale);
                }
            });
            straggle(t.cfg.straggler, rank, marks[0]);
            marks[1] = Instant::now();
            step_compute = (marks[1] - marks[0]).as_secs_f64();
            backward_end = (marks[1] - step_began).as_secs_f64();
            if !flight.in_flight() {
                for g in grad.iter_mut() {
                    *g *= scale;
                    grad_finite &= g.is_finite();
                }
            }
            marks[2] = Instant::now();
            let agreed = match deferred {
                // This rank's loss; finiteness is agreed on later.
                true => {
                    if !loss.is_finite() || !grad_finite {
                        went_bad = Some(loss.is_finite());
                    }
                    loss as f64
                }
                false => Self::agree_finite(group, epoch, step, loss, grad_finite)?,
            };
            marks[3] = Instant::now();
            Ok(agreed)
        })?;
        let [began, backward_done, agree_from, agree_done] = marks;
        let before_done = synced.before_done.unwrap_or(step_began);
        let (exchanged, updated) = (
            synced.exchanged.unwrap_or(agree_done),
            synced.updated.unwrap_or(agree_done),
        );
        let mut step_comm = (before_done - step_began).as_secs_f64();
        let exposed = (updated - agree_done).as_secs_f64();
        // The buckets' time on the communication thread the loop did
        // not wait for.
        let hidden = synced.bucket_secs.map_or(0.0, |b| (b - exposed).max(0.0));
        step_comm += exposed;
        let lr = t.cfg.schedule.rate(
            t.cfg.lr,
            (epoch - 1) * self.steps + step,
            t.cfg.epochs * self.steps,
        );
        t.optimizer.step(params, grad, lr, &mut self.optimizer);
        let timer = Instant::now();
        let (after_bytes, after_rounds) = self.exchange.after_step(params, &mut self.optimizer)?;
        step_comm += timer.elapsed().as_secs_f64();
        let global_step = (epoch - 1) * self.steps + step;
        if let Some(first) = self.deferred.as_mut() {
            if let (None, Some(gradient)) = (*first, went_bad) {
                *first = Some((global_step, gradient));
            }
            if (global_step + 1).is_multiple_of(AGREE_EVERY) || step + 1 == self.steps {
                let timer = Instant::now();
                self.agree_deferred()?;
                step_comm += timer.elapsed().as_secs_f64();
            }
        }
        if let Some(rec) = self.trace.as_mut() {
            let marks = [
                step_began,
                before_done,
                began,
                backward_done,
                agree_from,
                agree_done,
                exchanged,
                updated,
                timer,
                Instant::now(),
            ];
            record_step(
                rec,
                global_step,
                synced.bucket_secs.is_some(),
                &marks,
                &ready,
                &synced.spans,
            );
        }
        sums.comm_secs += step_comm;
        sums.hidden_secs += hidden;
        sums.compute_secs += step_compute;
        sums.bytes += synced.bytes + after_bytes;
        sums.rounds += synced.rounds + after_rounds;
        sums.encode_secs += synced.codec.encode.as_secs_f64();
        sums.decode_secs += synced.codec.decode.as_secs_f64();
        sums.loss += agreed;
        let step_secs = step_began.elapsed().as_secs_f64();
        let timeline = warming.then_some(Timeline {
            layers,
            backward_end,
            rest: 0.0,
        });
        self.settle_buckets(timeline, exposed, step_secs)?;
        if let Some(hook) = &t.cfg.on_step {
            (hook.0)(&StepMetrics {
                epoch,
                epochs: t.cfg.epochs,
                step: step + 1,
                steps: self.steps,
                global_step: global_step + 1,
                loss: match deferred {
                    true => agreed / mine.len().max(1) as f64,
                    false => agreed / t.cfg.batch as f64,
                },
                epoch_secs: start.elapsed().as_secs_f64() - sums.paused_secs,
                step_secs,
                compute_secs: step_compute,
                exposed_secs: step_comm,
                comm_secs: step_comm + hidden,
            });
        }
        Ok(())
    }

    /// Records a step while the buckets are being chosen (a warm-up step's
    /// `timeline`, the seconds it waited for communication and the step's),
    /// and reports the choice once it is made. Collective.
    fn settle_buckets(&mut self, timeline: Option<Timeline>, exposed: f64, step_secs: f64) -> Result<()> {
        if let Some(choice) = self.exchange.settle(timeline, exposed, step_secs)? {
            if let Some(hook) = &self.trainer.cfg.on_buckets {
                (hook.0)(choice);
            }
        }
        Ok(())
    }

    /// A strategy whose replicas differ: every rank learns the first
    /// non-finite step any rank saw since the last agreement, and stops
    /// with [`Error::NonFinite`] naming it and the lowest rank that saw it.
    /// Collective (at the same steps on every rank).
    fn agree_deferred(&mut self) -> Result<()> {
        let rank = self.group.rank() as i64;
        let mut first = [match self.deferred.flatten() {
            Some((g, gradient)) => (g as i64) << 24 | rank << 1 | i64::from(gradient),
            None => i64::MAX,
        }];
        self.group
            .all_reduce_in_place(&mut first, ReduceOp::Min, Algorithm::Butterfly)?;
        if first[0] == i64::MAX {
            return Ok(());
        }
        let g = (first[0] >> 24) as usize;
        Err(Error::NonFinite {
            what: if first[0] & 1 == 1 { "gradient" } else { "loss" },
            epoch: g / self.steps.max(1) + 1,
            step: g % self.steps.max(1) + 1,
            rank: Some((first[0] >> 1 & 0x7f_ffff) as usize),
        })
    }

    /// Agrees on finiteness first, so every rank stops at the same step;
    /// the same all-reduce sums the batch's loss, which it returns.
    ///
    /// # Errors
    /// [`Error::NonFinite`] on every rank, naming the first rank whose
    /// loss or gradient was not finite.
    fn agree_finite(
        group: &Group<C>,
        epoch: usize,
        step: usize,
        loss: f32,
        grad_finite: bool,
    ) -> Result<f64> {
        let (p, rank) = (group.size(), group.rank());
        let bad = !loss.is_finite() || !grad_finite;
        let mut agreed = [if bad { 0.0 } else { loss as f64 }, f64::from(u8::from(bad))];
        group.all_reduce_in_place(&mut agreed, ReduceOp::Sum, Algorithm::Butterfly)?;
        if agreed[1] == 0.0 {
            return Ok(agreed[0]);
        }
        // Rare: a second all-reduce names the first rank.
        let mut first_bad = [if bad { rank as i64 } else { p as i64 }];
        group.all_reduce_in_place(&mut first_bad, ReduceOp::Min, Algorithm::Butterfly)?;
        Err(Error::NonFinite {
            what: if bad && !loss.is_finite() {
                "loss"
            } else {
                "gradient"
            },
            epoch,
            step: step + 1,
            rank: Some(first_bad[0] as usize),
        })
    }

    /// Scores `params` on `test`: ranks whose parameters differ as their
    /// average, with their consensus distance. Collective; its bytes are
    /// counted apart from the strategy's.
    fn score<M: Model>(&self, model: &M, params: &[f32], test: Option<&Dataset>) -> Result<Score> {
        let group = self.group;
        let p = group.size();
        let sent = |a: Algorithm, count: usize, size: usize| {
            a.exact_cost(p, count, size).map_or(0, |c| c.bytes_sent)
        };
        let mut bytes = 0;
        let differ = self.exchange.strategy().replicas_differ();
        let mean = if differ && p > 1 {
            let mut mean = params.to_vec();
            group.all_reduce_in_place(&mut mean, ReduceOp::Avg, Algorithm::Ring)?;
            bytes += sent(Algorithm::Ring, mean.len(), 4);
            Some(mean)
        } else {
            None
        };
        let consensus = match &mean {
            Some(mean) => {
                bytes += sent(Algorithm::Butterfly, 1, 8);
                Some(consensus_distance(group, params, mean)?)
            }
            None if differ => Some(0.0),
            None => None,
        };
        let scored = mean.as_deref().unwrap_or(params);
        let accuracy = match test {
            Some(d) => {
                bytes += sent(Algorithm::Butterfly, 1, 8);
                Some(evaluate(group, model, scored, d)?)
            }
            None => None,
        };
        Ok(Score {
            mean,
            consensus,
            accuracy,
            bytes,
        })
    }

    /// An evaluation after global step `global`, within the epoch that
    /// began at `start`. Collective.
    fn eval_point<M: Model>(
        &self,
        global: usize,
        model: &M,
        params: &[f32],
        test: &Dataset,
        start: Instant,
        sums: &mut Sums,
    ) -> Result<EvalPoint> {
        let began = Instant::now();
        // Rank 0's clock, so the point is the same everywhere.
        let mut secs = [(began - start).as_secs_f64() - sums.paused_secs];
        let score = self.score(model, params, Some(test))?;
        self.group.broadcast(&mut secs, 0)?;
        sums.scoring_bytes += score.bytes;
        sums.paused_secs += began.elapsed().as_secs_f64();
        Ok(EvalPoint {
            step: global,
            epoch_secs: secs[0],
            allreduce_bytes: sums.bytes,
            rounds: sums.rounds,
            test_accuracy: score.accuracy.unwrap_or(f64::NAN),
            consensus_distance: score.consensus,
        })
    }

    /// The epoch's end: the replicas' average where they differ, the test
    /// accuracy, rank 0's timings for everyone, the metrics and the checkpoint.
    fn end_epoch<M: Model>(
        &mut self,
        epoch: usize,
        epoch_secs: f64,
        model: &M,
        params: &mut [f32],
        test: Option<&Dataset>,
        sums: Sums,
    ) -> Result<EpochMetrics> {
        let t = self.trainer;
        let group = self.group;
        let Score {
            mean,
            consensus,
            accuracy,
            bytes: scoring,
        } = self.score(model, params, test)?;
        // With deferred agreements each rank summed its own examples' loss.
        let mut loss = [sums.loss];
        if self.deferred.is_some() {
            group.all_reduce_in_place(&mut loss, ReduceOp::Sum, Algorithm::Butterfly)?;
        }
        // Rank 0's timings, so the report is the same everywhere.
        let mut times = [
            epoch_secs,
            sums.comm_secs,
            sums.encode_secs,
            sums.decode_secs,
            sums.compute_secs,
            sums.comm_secs + sums.hidden_secs,
        ];
        group.broadcast(&mut times, 0)?;
        // A run resumed within the epoch reports the steps it took.
        let examples = (self.steps - sums.from) * t.cfg.batch;
        let m = EpochMetrics {
            epoch,
            step: epoch * self.steps,
            train_loss: loss[0] / examples.max(1) as f64,
            test_accuracy: accuracy,
            epoch_secs: times[0],
            samples_per_sec: examples as f64 / times[0].max(1e-9),
            allreduce_secs: times[1],
            encode_secs: times[2],
            decode_secs: times[3],
            allreduce_bytes: sums.bytes,
            rounds: sums.rounds,
            compute_secs: times[4],
            comm_secs: times[5],
            consensus_distance: consensus,
            scoring_bytes: sums.scoring_bytes + scoring,
            evals: sums.evals,
        };
        self.checkpoint(epoch, 0, params, mean)?;
        Ok(m)
    }

    /// A checkpoint after `step` steps of epoch `epoch` (not its last):
    /// the finiteness agreement a strategy whose replicas differ defers
    /// first, so no checkpoint holds a value the run would stop on.
    /// Collective.
    fn save_within(&mut self, epoch: usize, step: usize, params: &[f32]) -> Result<()> {
        if self.deferred.is_some() {
            self.agree_deferred()?;
        }
        let group = self.group;
        let mean = match self.exchange.strategy().replicas_differ() && group.size() > 1 {
            true => {
                let mut mean = params.to_vec();
                group.all_reduce_in_place(&mut mean, ReduceOp::Avg, Algorithm::Ring)?;
                Some(mean)
            }
            false => None,
        };
        self.checkpoint(epoch - 1, step, params, mean)
    }

    /// Writes the checkpoint, when the run has one, after `epoch` epochs
    /// and `step` steps of the next; `mean` is the replicas' average where
    /// they differ. Collective.
    fn checkpoint(&self, epoch: usize, step: usize, params: &[f32], mean: Option<Vec<f32>>) -> Result<()> {
        let Some(path) = &self.trainer.cfg.checkpoint else {
            return Ok(());
        };
        // Ranks that differ hand rank 0 their parameters and optimizer
        // state; the file's `params` is their average.
        let replicas = match mean {
            Some(mean) => Some((mean, self.gather_replicas(params)?)),
            None => None,
        };
        // Rank 0 writes; every rank learns whether that worked, so a
        // failed write ends every rank at once with its error.
        let saved = if self.group.rank() == 0 {
            self.save(path, epoch, step, params, replicas)
        } else {
            Ok(())
        };
        self.group.agree(saved)
    }

    /// Every rank's parameters and optimizer buffers, as checkpoint
    /// sections `replicas.params` and `replicas.optimizer.K` of p × n
    /// values (rank r's at r·n). Collective.
    fn gather_replicas(&self, params: &[f32]) -> Result<Vec<Section>> {
        let group = self.group;
        let p = group.size();
        let gather = |name: String, mine: &[f32]| -> Result<Section> {
            let mut values = vec![0f32; p * mine.len()];
            group.all_gather(mine, &mut values)?;
            Ok(Section { name, values })
        };
        let mut out = vec![gather("replicas.params".into(), params)?];
        for (k, b) in self.optimizer.buffers.iter().enumerate() {
            out.push(gather(format!("replicas.optimizer.{k}"), b)?);
        }
        Ok(out)
    }

    fn header(&self, epoch: usize, n: usize) -> Header {
        let t = self.trainer;
        Header {
            epoch,
            step: 0,
            seed: t.cfg.seed,
            batch: t.cfg.batch,
            params: n,
            optimizer: t.optimizer.name().to_string(),
            optimizer_steps: 0,
            strategy: self.exchange.strategy().name(),
            settings: format!(
                "lr {}, {:?} schedule, {:?}, batches {:?}",
                t.cfg.lr, t.cfg.schedule, t.optimizer, t.cfg.batches
            ),
            data: self.data.clone(),
            sections: Vec::new(),
        }
    }

    fn save(
        &self,
        path: &std::path::Path,
        epoch: usize,
        step: usize,
        params: &[f32],
        replicas: Option<(Vec<f32>, Vec<Section>)>,
    ) -> Result<()> {
        let mut sections = self.exchange.strategy().state();
        let params = match replicas {
            Some((mean, gathered)) => {
                sections.extend(gathered);
                mean
            }
            None => params.to_vec(),
        };
        let header = Header {
            step,
            ..self.header(epoch, params.len())
        };
        Checkpoint::new(header, params, self.optimizer.clone(), sections).save(path)
    }

    /// `c` when it was made by a run like this one (`expected` is this
    /// run's header); an error naming what differs.
    fn fits(&self, path: &std::path::Path, c: Checkpoint, expected: &Header) -> Result<Option<Checkpoint>> {
        let t = self.trainer;
        let h = &c.header;
        if h.params != expected.params || h.seed != expected.seed || h.batch != expected.batch {
            Err(mismatch(
                path,
                format!(
                    "checkpoint of {} parameters, seed {}, batch {} does not match this run ({}, {}, {})",
                    h.params, h.seed, h.batch, expected.params, t.cfg.seed, t.cfg.batch
                ),
            ))
        } else if h.optimizer != expected.optimizer || c.optimizer.buffers.len() != t.optimizer.buffers() {
            Err(mismatch(
                path,
                format!(
                    "checkpoint of optimizer {} does not match this run's {}",
                    h.optimizer, expected.optimizer
                ),
            ))
        } else if h.strategy != expected.strategy {
            Err(mismatch(
                path,
                format!(
                    "checkpoint was made with strategy {}; this run's is {} (resume with the same --strategy)",
                    h.strategy, expected.strategy
                ),
            ))
        } else if h.settings != expected.settings {
            Err(mismatch(
                path,
                format!(
                    "checkpoint was made with {}; this run has {} (resume with the same settings)",
                    h.settings, expected.settings
                ),
            ))
        } else if h.data != expected.data {
            Err(mismatch(
                path,
                format!(
                    "checkpoint was made on {}; this run's data are {}",
                    h.data, expected.data
                ),
            ))
        } else if let Some(e) = forged(h, self.steps, &c.optimizer.buffers) {
            Err(mismatch(path, format!("bad checkpoint header: {e}")))
        } else if h.epoch >= t.cfg.epochs {
            Err(mismatch(
                path,
                format!(
                    "checkpoint is at epoch {} and this run trains {}: nothing left to do (raise --epochs)",
                    h.epoch, t.cfg.epochs
                ),
            ))
        } else {
            Ok(Some(c))
        }
    }

    /// Every rank takes back its own parameters and optimizer state from
    /// the checkpoint's `replicas.*` sections (of a strategy whose ranks
    /// differ, `strategy`). On another rank count every rank starts from
    /// the replicas' average instead: the parameters the file holds (their
    /// mean) and the mean of their optimizer buffers. Every rank sees the
    /// same lengths, so all fail or none.
    fn take_replicas(
        &mut self,
        path: &std::path::Path,
        strategy: &str,
        params: &mut [f32],
        replicas: &[Section],
    ) -> Result<()> {
        if replicas.is_empty() {
            return Ok(());
        }
        let group = self.group;
        let (p, r, n) = (group.size(), group.rank(), params.len());
        let saved = replicas[0].values.len() / n.max(1);
        if saved == 0 || replicas.iter().any(|s| s.values.len() != saved * n) {
            return Err(mismatch(
                path,
                format!("checkpoint's replicas of {strategy} are not whole copies of the {n} parameters"),
            ));
        }
        for s in replicas {
            let target = match s
                .name
                .strip_prefix("replicas.optimizer.")
                .map(str::parse::<usize>)
            {
                None if saved == p => &mut *params,
                // The file's parameters are the replicas' mean already.
                None => continue,
                Some(Ok(k)) if k < self.optimizer.buffers.len() => &mut self.optimizer.buffers[k][..],
                Some(_) => return Err(mismatch(path, format!("unexpected section {}", s.name))),
            };
            if saved == p {
                target.copy_from_slice(&s.values[r * n..(r + 1) * n]);
            } else {
                super::checkpoint::mean_of(&s.values, target);
            }
        }
        Ok(())
    }

    /// Rank 0 loads the checkpoint and hands its state to every rank;
    /// returns the epochs already done and the steps of the next. Collective.
    fn restore(&mut self, params: &mut [f32]) -> Result<(usize, usize)> {
        let t = self.trainer;
        let group = self.group;
        let path = t.cfg.checkpoint.as_ref().ok_or_else(|| Error::InvalidArgument {
            what: "resume",
            reason: "resuming needs a checkpoint path".into(),
        })?;
        let expected = self.header(0, params.len());
        let loaded = if group.rank() == 0 {
            Checkpoint::load(path).and_then(|c| self.fits(path, c, &expected))
        } else {
            Ok(None)
        };
        // Every rank gets rank 0's verdict, then its header and values.
        let mine = group.agree(loaded)?;
        let header = group.broadcast_value(0, mine.as_ref().map(|c| &c.header))?;
        let mut c = mine.unwrap_or_else(|| Checkpoint {
            params: vec![0.0; header.params],
            optimizer: OptimizerState {
                buffers: Vec::new(),
                steps: header.optimizer_steps,
            },
            strategy: Vec::new(),
            header: header.clone(),
        });
        if group.rank() != 0 {
            // The section table tells every rank what is coming.
            for s in &header.sections {
                if let Some(name) = s.name.strip_prefix("strategy.") {
                    c.strategy.push(super::strategies::Section {
                        name: name.to_string(),
                        values: vec![0.0; s.len],
                    });
                } else {
                    c.optimizer.buffers.push(vec![0.0; s.len]);
                }
            }
        }
        group.broadcast(&mut c.params, 0)?;
        for b in &mut c.optimizer.buffers {
            group.broadcast(b, 0)?;
        }
        for s in &mut c.strategy {
            group.broadcast(&mut s.values, 0)?;
        }
        let (replicas, own): (Vec<Section>, Vec<Section>) = c
            .strategy
            .into_iter()
            .partition(|s| s.name.starts_with("replicas."));
        let restored = self.exchange.strategy_mut().restore(&own);
        group.agree(restored)?;
        params.copy_from_slice(&c.params);
        self.optimizer = c.optimizer;
        self.take_replicas(path, &header.strategy, params, &replicas)?;
        Ok((header.epoch, header.step))
    }
}

/// What a checkpoint's header claims that its file and this run's shape
/// contradict (a checksum recomputed over edited metadata passes the
/// checksum): every epoch is `steps` optimizer steps, and every optimizer
/// buffer is as long as the parameters.
fn forged(h: &Header, steps: usize, buffers: &[Vec<f32>]) -> Option<String> {
    if h.step >= steps.max(1) {
        return Some(format!(
            "`step` is {}, and an epoch of this run has {steps} steps",
            h.step
        ));
    }
    let made = (h.epoch as u64)
        .checked_mul(steps as u64)
        .and_then(|m| m.checked_add(h.step as u64));
    if made != Some(h.optimizer_steps) {
        return Some(format!(
            "`optimizer_steps` is {}, but {} epoch(s) of {steps} steps and {} step(s) make {}",
            h.optimizer_steps,
            h.epoch,
            h.step,
            made.map_or("more than 2^64".into(), |m| m.to_string())
        ));
    }
    super::checkpoint::misfit_buffer(buffers, h.params)
}

fn mismatch(path: &std::path::Path, reason: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        reason,
    }
}

/// The mean over ranks of ‖params − mean‖₂. Collective.
fn consensus_distance<C: Transport>(group: &Group<C>, params: &[f32], mean: &[f32]) -> Result<f64> {
    let squares: f64 = params
        .iter()
        .zip(mean)
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum();
    let mut d = [squares.sqrt()];
    group.all_reduce_in_place(&mut d, ReduceOp::Avg, Algorithm::Butterfly)?;
    Ok(d[0])
}

/// The straggler's sleep: `(factor − 1)` × the time since `began`, on
/// its rank only.
/// The largest straggler factor: a rank 1000 times slower than the others
/// is a straggler already; a larger factor would only overflow the sleep.
pub const MAX_STRAGGLER: f64 = 1000.0;

pub(crate) fn straggle(straggler: Option<(usize, f64)>, rank: usize, began: Instant) {
    if let Some((r, f)) = straggler {
        if r == rank && f > 1.0 {
            std::thread::sleep(began.elapsed().mul_f64(f - 1.0));
        }
    }
}

/// Test accuracy, each rank scoring a slice of `data`. Collective.
pub(crate) fn evaluate<M, C>(group: &Group<C>, model: &M, params: &[f32], data: &Dataset) -> Result<f64>
where
    M: Model,
    C: Transport,
{
    let (p, r) = (group.size(), group.rank());
    let range = chunk_range(data.len(), p, r);
    let mut correct = 0u64;
    let mut pred = vec![0u32; 512];
    for start in range.clone().step_by(512) {
        let end = (start + 512).min(range.end);
        let rows = end - start;
        model.predict(
            params,
            &data.features[start * data.dim..end * data.dim],
            &mut pred[..rows],
        );
        correct += pred[..rows]
            .iter()
            .zip(&data.labels[start..end])
            .filter(|(a, b)| a == b)
            .count() as u64;
    }
    let mut c = [correct as i64];
    group.all_reduce_in_place(&mut c, ReduceOp::Sum, Algorithm::Butterfly)?;
    Ok(c[0] as f64 / data.len().max(1) as f64)
}

impl TrainerBuilder<GradientAllReduce> {
    /// All-reduce algorithm for the gradients.
    pub fn algorithm(mut self, a: Algorithm) -> Self {
        self.strategy = GradientAllReduce {
            buckets: self.strategy.buckets,
            ..GradientAllReduce::new(a)
        };
        self
    }
    /// Gradient buckets that start their all-reduce during the backward
    /// pass ([`super::buckets`]; default: off). Needs MPI initialised at
    /// `MPI_THREAD_MULTIPLE` for a given size; `Auto` turns itself off
    /// without it.
    pub fn buckets(mut self, size: super::BucketSize) -> Self {
        self.strategy.buckets = size;
        self
    }
}

/// Builder methods that set one field each.
macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty => $($field:ident).+; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$($field).+ = value;
                self
            }
        )*
    };
}

impl<S: Strategy> TrainerBuilder<S> {
    /// What the ranks exchange around each step (default: the gradient
    /// all-reduce with the ring).
    pub fn strategy<S2: Strategy>(self, strategy: S2) -> TrainerBuilder<S2> {
        let TrainerBuilder {
            optimizer,
            momentum,
            weight_decay,
            cfg,
            ..
        } = self;
        TrainerBuilder {
            strategy,
            optimizer,
            momentum,
            weight_decay,
            cfg,
        }
    }
    /// The update rule (default: [`Sgd`] with [`momentum`](Self::momentum)
    /// and [`weight_decay`](Self::weight_decay), which this replaces).
    pub fn optimizer(mut self, o: impl Optimizer + 'static) -> Self {
        self.optimizer = Some(Arc::new(o));
        self
    }
    /// Which examples each rank computes at each step (default: [`SharedShuffle`]).
    pub fn batches(mut self, b: impl BatchSource + 'static) -> Self {
        self.cfg.batches = Arc::new(b);
        self
    }
    /// [`batches`](Self::batches) from a shared batch source.
    pub fn batches_from(mut self, b: Arc<dyn BatchSource>) -> Self {
        self.cfg.batches = b;
        self
    }
    /// Rank 0 writes a checkpoint here after every epoch.
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.checkpoint = Some(path.into());
        self
    }
    setters! {
        /// Global batch size (split evenly across ranks).
        batch: usize => cfg.batch;
        /// Base learning rate.
        lr: f32 => cfg.lr;
        /// Learning-rate schedule.
        schedule: LrSchedule => cfg.schedule;
        /// Momentum of the default SGD (0 = plain SGD).
        momentum: f32 => momentum;
        /// L2 weight decay of the default SGD.
        weight_decay: f32 => weight_decay;
        /// Epochs to train.
        epochs: usize => cfg.epochs;
        /// Seed of initialisation and shuffling.
        seed: u64 => cfg.seed;
        /// Continue from the checkpoint, on any rank count (see
        /// [`Trainer::fit`] for what another rank count keeps).
        resume: bool => cfg.resume;
        /// Stop after this epoch (of the planned [`epochs`](Self::epochs),
        /// whose length still sets the schedule and a strategy's final
        /// averaging): a time slice of a longer run, continued later with
        /// [`resume`](Self::resume).
        stop_after: Option<usize> => cfg.stop_after;
        /// Slow one rank's computation by a factor ≥ 1: after each
        /// gradient it sleeps (factor − 1) × the gradient's compute time —
        /// a straggler, to compare strategies where one rank is slow.
        straggler: Option<(usize, f64)> => cfg.straggler;
        /// Also score the held-out set every this many steps (counted over
        /// the run), not only at each epoch's end: time and bytes to an
        /// accuracy at the granularity of steps ([`EpochMetrics::evals`]).
        /// The time spent scoring is left out of the epoch's; its bytes go
        /// to [`EpochMetrics::scoring_bytes`]. Needs a held-out set.
        eval_every: Option<usize> => cfg.eval_every;
        /// With a [`checkpoint`](Self::checkpoint), also write it after
        /// every this many steps (counted over the run), not only at each
        /// epoch's end, so a run resumed after a crash loses fewer steps.
        /// A strategy whose replicas differ gathers them to rank 0 each
        /// time (an all-reduce and an all-gather of the parameters); the
        /// time is left out of the epoch's, the bytes out of every count.
        checkpoint_every: Option<usize> => cfg.checkpoint_every;
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A zero batch, a non-positive or non-finite learning rate, momentum
    /// outside [0, 1), or a negative weight decay.
    pub fn build(self) -> Result<Trainer<S>> {
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "optimizer setting",
                reason,
            })
        };
        if let Some((_, f)) = self.cfg.straggler {
            if !(1.0..=MAX_STRAGGLER).contains(&f) {
                return bad(format!(
                    "straggler factor {f} must lie between 1 and {MAX_STRAGGLER}"
                ));
            }
        }
        if self.cfg.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if self.cfg.eval_every == Some(0) {
            return Err(Error::InvalidArgument {
                what: "evaluation setting",
                reason: "evaluating every 0 steps: give at least 1".into(),
            });
        }
        if self.cfg.checkpoint_every == Some(0) {
            return Err(Error::InvalidArgument {
                what: "checkpoint setting",
                reason: "checkpointing every 0 steps: give at least 1".into(),
            });
        }
        if let (Some(k), None) = (self.cfg.checkpoint_every, &self.cfg.checkpoint) {
            return Err(Error::InvalidArgument {
                what: "checkpoint setting",
                reason: format!("checkpointing every {k} steps needs a checkpoint path"),
            });
        }
        if !(self.cfg.lr.is_finite() && self.cfg.lr > 0.0) {
            return bad(format!("learning rate {} must be finite and > 0", self.cfg.lr));
        }
        let optimizer = match self.optimizer {
            Some(o) => o,
            None => Arc::new(Sgd::new(self.momentum, self.weight_decay)?),
        };
        Ok(Trainer {
            strategy: self.strategy,
            optimizer,
            cfg: self.cfg,
        })
    }
}
