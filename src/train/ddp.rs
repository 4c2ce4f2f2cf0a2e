//! Data parallelism for a training loop of one's own, as Horovod's
//! `DistributedOptimizer` and PyTorch's `DistributedDataParallel` offer it:
//! register the parameter tensors, broadcast the initial parameters, report
//! each tensor's gradient as the backward pass finishes it, and get back
//! the averaged gradient to hand to one's optimizer.
//!
//! [`DataParallel`] runs any [`Strategy`] — synchronous SGD with any
//! algorithm, 16-bit wires, PowerSGD, random-k and the others as hooks on
//! the gradient (and on its buckets, when the strategy runs on buckets),
//! local SGD and DiLoCo as parameter averaging after the optimizer's step
//! ([`DataParallel::after_update`], PyTorch's `PeriodicModelAverager`) —
//! through the same [`Exchange`] the [`Trainer`](crate::train::Trainer)
//! runs on.
//!
//! ```
//! use ringreduce::train::{DataParallel, GradientAllReduce};
//! use ringreduce::Group;
//! let out = Group::local(2, |g| {
//!     // Two tensors: a 2×3 weight and a bias of 3.
//!     let mut ddp = DataParallel::new(&g, &[&[2, 3], &[3]], GradientAllReduce::default()).unwrap();
//!     let mut params = vec![g.rank() as f32; ddp.len()]; // different on each rank…
//!     ddp.broadcast_parameters(&mut params, 0).unwrap(); // …until rank 0's are everyone's
//!     for _ in 0..3 {
//!         ddp.step(&mut params, |sync| {
//!             // The backward pass, last layer first: each tensor's gradient once.
//!             sync.mark_ready(1, &[1.0 + g.rank() as f32; 3])?;
//!             sync.mark_ready(0, &[2.0; 6])
//!         })
//!         .unwrap();
//!         let grad = ddp.grad(); // averaged over the ranks
//!         for (w, d) in params.iter_mut().zip(grad) {
//!             *w -= 0.1 * d; // one's own optimizer
//!         }
//!     }
//!     (params, ddp.grad_of(1).to_vec())
//! });
//! assert_eq!(out[0], out[1]);
//! assert_eq!(out[0].1, vec![1.5; 3]);
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::buckets::Timeline;
use super::checkpoint::{Checkpoint, Header};
use super::exchange::{Exchange, Ready, StepAt};
use super::model::Matrix;
use super::optim::OptimizerState;
use super::strategies::{Section, Strategy};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::Transport;

/// Steps per "epoch" of a loop that has none: the strategies' schedules
/// see one long epoch.
const ONE_EPOCH: usize = u32::MAX as usize;

/// Data parallelism over registered parameter tensors; see the module docs.
pub struct DataParallel<'g, C: Transport, S: Strategy> {
    exchange: Exchange<'g, C, S>,
    layout: Vec<Range<usize>>,
    matrices: Vec<Matrix>,
    grad: Vec<f32>,
    steps_per_epoch: usize,
    /// Gradients summed by [`DataParallel::no_sync`] since the last step.
    accumulated: Option<Vec<f32>>,
    steps: usize,
    started: bool,
}

/// A step's backward pass: where each tensor's gradient is reported.
pub struct GradientSync<'s, 'f, C: Transport> {
    layout: &'s [Range<usize>],
    grad: &'s mut [f32],
    ready: &'s mut Ready<'f, C>,
    accumulated: Option<&'s [f32]>,
    marked: Vec<bool>,
    finite: bool,
    began: Instant,
    times: Vec<(Range<usize>, f64)>,
}

impl<C: Transport> GradientSync<'_, '_, C> {
    /// Reports tensor `i`'s gradient (`grad.len()` its element count) as
    /// final: copied once — into its bucket, whose all-reduce starts when
    /// the bucket is full, or into the gradient buffer. Tensors must be
    /// reported in the same order every step (the backward pass's).
    ///
    /// # Errors
    /// `i` out of range, a gradient of the wrong length, or a tensor
    /// reported twice in a step (on this rank).
    pub fn mark_ready(&mut self, i: usize, grad: &[f32]) -> Result<()> {
        let range = tensor(self.layout, i, grad.len())?;
        if std::mem::replace(&mut self.marked[i], true) {
            return Err(invalid(format!("tensor {i} was marked ready twice in one step")));
        }
        self.times
            .push((range.clone(), self.began.elapsed().as_secs_f64()));
        let dst = &mut self.grad[range.clone()];
        let src: &[f32] = match self.accumulated {
            Some(acc) => {
                for ((d, &a), &g) in dst.iter_mut().zip(&acc[range.clone()]).zip(grad) {
                    *d = a + g;
                }
                dst
            }
            None if self.ready.in_flight() => grad,
            None => {
                dst.copy_from_slice(grad);
                dst
            }
        };
        self.finite &= self.ready.ready(range, src, 1.0);
        Ok(())
    }
}

/// Gradients summed locally, without communication ([`DataParallel::no_sync`]).
pub struct Accumulate<'s> {
    layout: &'s [Range<usize>],
    sum: &'s mut [f32],
}

impl Accumulate<'_> {
    /// Adds tensor `i`'s gradient of this micro-batch to its sum.
    ///
    /// # Errors
    /// `i` out of range or a gradient of the wrong length.
    pub fn add(&mut self, i: usize, grad: &[f32]) -> Result<()> {
        let range = tensor(self.layout, i, grad.len())?;
        for (s, &g) in self.sum[range].iter_mut().zip(grad) {
            *s += g;
        }
        Ok(())
    }
}

/// A checkpoint's content, as rank 0 sends it to the others.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    steps: usize,
    params: Vec<f32>,
    buffers: Vec<Vec<f32>>,
    optimizer_steps: u64,
    strategy: Vec<(String, Vec<f32>)>,
}

/// Tensor `i`'s place in the flat buffers, for a gradient of `len` values.
fn tensor(layout: &[Range<usize>], i: usize, len: usize) -> Result<Range<usize>> {
    let Some(range) = layout.get(i).cloned() else {
        return Err(invalid(format!("tensor {i} of {}", layout.len())));
    };
    if len != range.len() {
        return Err(invalid(format!(
            "tensor {i} has {} elements, its gradient {len}",
            range.len()
        )));
    }
    Ok(range)
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "data-parallel gradient",
        reason,
    }
}

impl<'g, C: Transport, S: Strategy> DataParallel<'g, C, S> {
    /// Data parallelism over `group` for parameter tensors of the given
    /// shapes, laid out one after another in a flat buffer in this order;
    /// 2-D and larger tensors are the matrices PowerSGD compresses (rows:
    /// the first dimension). Collective (it may start a communication
    /// thread).
    ///
    /// # Errors
    /// A strategy that cannot run on this many ranks, bucket settings MPI
    /// cannot serve (see [`Exchange::new`]).
    pub fn new(group: &'g Group<C>, shapes: &[&[usize]], strategy: S) -> Result<Self> {
        let mut layout = Vec::with_capacity(shapes.len());
        let mut matrices = Vec::new();
        let mut at = 0;
        for shape in shapes {
            let n: usize = shape.iter().product();
            if let [rows, rest @ ..] = shape {
                if !rest.is_empty() && n > 0 {
                    matrices.push(Matrix {
                        offset: at,
                        rows: *rows,
                        cols: n / rows,
                    });
                }
            }
            layout.push(at..at + n);
            at += n;
        }
        Ok(DataParallel {
            exchange: Exchange::new(group, strategy, ONE_EPOCH, 1)?,
            layout,
            matrices,
            grad: vec![0.0; at],
            steps_per_epoch: ONE_EPOCH,
            accumulated: None,
            steps: 0,
            started: false,
        })
    }

    /// The run's length in steps, for the strategies that act by it: local
    /// SGD and one-shot averaging average after the last step, DiLoCo and
    /// the post-local warm-up count steps of the run. Without it the run
    /// is open-ended and nothing happens "at the end". Every rank alike.
    pub fn total_steps(self, steps: usize) -> Self {
        self.epochs(steps, 1)
    }

    /// The run as `epochs` epochs of `steps_per_epoch` steps: as
    /// [`DataParallel::total_steps`], and the compressors with error
    /// feedback gather their residuals at each epoch's end, so a
    /// checkpoint saved right after an epoch's last step holds them.
    /// Every rank alike.
    pub fn epochs(mut self, steps_per_epoch: usize, epochs: usize) -> Self {
        self.steps_per_epoch = steps_per_epoch.max(1);
        self.exchange.set_schedule(self.steps_per_epoch, epochs.max(1));
        self
    }

    /// Parameters in all.
    pub fn len(&self) -> usize {
        self.grad.len()
    }

    /// Whether no parameter is registered.
    pub fn is_empty(&self) -> bool {
        self.grad.is_empty()
    }

    /// Where tensor `i` lies in the flat buffers.
    ///
    /// # Panics
    /// `i` out of range.
    pub fn range(&self, i: usize) -> Range<usize> {
        self.layout[i].clone()
    }

    /// The strategy, with its state (for checkpoints: [`Strategy::state`]).
    pub fn strategy(&self) -> &S {
        self.exchange.strategy()
    }

    /// Makes every rank's `params` rank `root`'s (Horovod's
    /// `broadcast_parameters`) and starts the strategy. Call it once,
    /// before the first step. Collective.
    ///
    /// # Errors
    /// `params` not [`DataParallel::len`] long (on every rank), a root out
    /// of range, the strategy's errors.
    pub fn broadcast_parameters(&mut self, params: &mut [f32], root: usize) -> Result<()> {
        let group = self.exchange.group();
        group.agree(self.check_len(params))?;
        group.broadcast(params, root)?;
        if !self.started {
            let at = StepAt { epoch: 1, step: 0 };
            self.exchange
                .start(at, params, std::mem::take(&mut self.matrices))?;
            self.started = true;
        }
        Ok(())
    }

    fn check_len(&self, params: &[f32]) -> Result<()> {
        if params.len() == self.len() {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "data-parallel parameters",
                reason: format!("{} parameters for {} registered", params.len(), self.len()),
            })
        }
    }

    /// One synchronised step: `backward` reports every tensor's gradient
    /// through [`GradientSync::mark_ready`] (added to what [`DataParallel::no_sync`]
    /// summed since the last step); on return [`DataParallel::grad`] is
    /// the gradient to apply — averaged over the ranks by a synchronous
    /// strategy. `params` are the parameters the gradient is taken at
    /// (gossip mixes them here). Collective.
    ///
    /// # Errors
    /// On every rank alike: the error of `backward` or of a
    /// [`GradientSync::mark_ready`] on any rank, a tensor not reported, a gradient
    /// that is not finite, and the strategy's and the collectives' errors.
    pub fn step<R>(
        &mut self,
        params: &mut [f32],
        backward: impl FnOnce(&mut GradientSync<'_, '_, C>) -> Result<R>,
    ) -> Result<R> {
        let group = self.exchange.group();
        if !self.started {
            return Err(Error::InvalidArgument {
                what: "data-parallel step",
                reason: "call broadcast_parameters before the first step".into(),
            });
        }
        group.agree(self.check_len(params))?;
        let began = Instant::now();
        let at = StepAt {
            epoch: 1 + self.steps / self.steps_per_epoch,
            step: self.steps % self.steps_per_epoch,
        };
        let warming = self.exchange.warming();
        let accumulated = self.accumulated.take();
        let layout = &self.layout;
        let mut times = Vec::new();
        let mut backward_end = 0.0;
        let mut returned = began;
        let (out, synced) = self.exchange.step(at, params, &mut self.grad, |_, grad, ready| {
            let mut sync = GradientSync {
                layout,
                grad,
                ready,
                accumulated: accumulated.as_deref(),
                marked: vec![false; layout.len()],
                finite: true,
                began,
                times: Vec::new(),
            };
            let out = backward(&mut sync);
            backward_end = began.elapsed().as_secs_f64();
            let verdict = match out {
                Ok(_) => match sync.marked.iter().position(|&m| !m) {
                    Some(i) => Err(invalid(format!("tensor {i}'s gradient was not marked ready"))),
                    None if !sync.finite => Err(Error::NonFinite {
                        what: "gradient",
                        epoch: at.epoch,
                        step: at.step + 1,
                        rank: Some(group.rank()),
                    }),
                    None => Ok(()),
                },
                Err(ref e) => Err(e.clone()),
            };
            times = std::mem::take(&mut sync.times);
            group.agree(verdict)?;
            returned = Instant::now();
            out
        })?;
        self.steps += 1;
        // What the loop waited for the exchange, and the step: how the
        // buckets are chosen (and, for `auto`, tried).
        let exposed = synced.updated.map_or(0.0, |u| (u - returned).as_secs_f64());
        let timeline = warming.then_some(Timeline {
            layers: times,
            backward_end,
            rest: 0.0,
        });
        self.exchange
            .settle(timeline, exposed, began.elapsed().as_secs_f64())?;
        Ok(out)
    }

    /// Sums this micro-batch's gradients locally, without communication
    /// (PyTorch's `no_sync`): `backward` reports each tensor's gradient
    /// through [`Accumulate::add`]; the next [`DataParallel::step`]
    /// exchanges the sum of every micro-batch since the last step.
    /// Not collective.
    ///
    /// # Errors
    /// The error of `backward`.
    pub fn no_sync<R>(&mut self, backward: impl FnOnce(&mut Accumulate<'_>) -> Result<R>) -> Result<R> {
        let n = self.len();
        let sum = self.accumulated.get_or_insert_with(|| vec![0.0; n]);
        backward(&mut Accumulate {
            layout: &self.layout,
            sum,
        })
    }

    /// The gradient buckets, once chosen after the warm-up steps
    /// ([`crate::train::buckets`]; `None` when the strategy runs without).
    pub fn buckets(&self) -> Option<&crate::train::BucketChoice> {
        self.exchange.bucket_choice()
    }

    /// The gradient of the last step, every tensor in the flat layout.
    pub fn grad(&self) -> &[f32] {
        &self.grad
    }

    /// Tensor `i`'s gradient of the last step.
    ///
    /// # Panics
    /// `i` out of range.
    pub fn grad_of(&self, i: usize) -> &[f32] {
        &self.grad[self.layout[i].clone()]
    }

    /// After one's optimizer applied the step's gradient to `params`: the
    /// strategy's averaging of the parameters (local SGD every τ steps,
    /// DiLoCo's outer step), which may also reset `optimizer`'s state.
    /// Collective.
    ///
    /// # Errors
    /// The strategy's, and a call without a step before it.
    pub fn after_update(&mut self, params: &mut [f32], optimizer: &mut OptimizerState) -> Result<()> {
        self.exchange.after_step(params, optimizer).map(drop)
    }

    /// Steps taken (restored by [`DataParallel::load_checkpoint`]).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Where this rank's checkpoint lies: `path` while the ranks hold the
    /// same state, `path.rank<R>` for a strategy whose replicas differ.
    fn checkpoint_path(&self, path: &Path) -> PathBuf {
        if self.strategy().replicas_differ() {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".rank{}", self.exchange.group().rank()));
            PathBuf::from(p)
        } else {
            path.to_path_buf()
        }
    }

    /// Saves the run's state — `params`, the optimizer's state (its rule
    /// named `optimizer_name`, which loading checks), the strategy's state
    /// and the steps taken — as the trainer's checkpoints are (safetensors,
    /// written atomically). Rank 0 writes `path` while the replicas agree;
    /// with a strategy whose replicas differ (local SGD between averagings,
    /// gossip) every rank writes its own `path.rank<R>`. Collective.
    ///
    /// # Errors
    /// A file that cannot be written, on every rank.
    pub fn save_checkpoint(
        &self,
        path: &Path,
        params: &[f32],
        optimizer: &OptimizerState,
        optimizer_name: &str,
    ) -> Result<()> {
        let group = self.exchange.group();
        let writes = self.strategy().replicas_differ() || group.rank() == 0;
        let local = if writes {
            let header = Header {
                epoch: 1,
                step: 0,
                seed: 0,
                batch: 0,
                params: params.len(),
                optimizer: optimizer_name.to_string(),
                optimizer_steps: optimizer.steps,
                strategy: self.strategy().name(),
                settings: format!("data-parallel steps {}", self.steps),
                data: String::new(),
                sections: Vec::new(),
            };
            let c = Checkpoint::new(
                header,
                params.to_vec(),
                optimizer.clone(),
                self.strategy().state(),
            );
            c.save(&self.checkpoint_path(path))
        } else {
            Ok(())
        };
        group.agree(local)
    }

    /// Restores a state saved by [`DataParallel::save_checkpoint`] into
    /// `params`, the strategy and the step count, and returns the
    /// optimizer's state. While the replicas agree rank 0 reads the file
    /// and sends it to the others (no shared file system needed). Call it
    /// instead of [`DataParallel::broadcast_parameters`]. Collective.
    ///
    /// # Errors
    /// On every rank: a missing, corrupt or foreign file, and one saved by
    /// another strategy, another optimizer or for another parameter count.
    pub fn load_checkpoint(
        &mut self,
        path: &Path,
        params: &mut [f32],
        optimizer_name: &str,
    ) -> Result<OptimizerState> {
        let group = self.exchange.group();
        let differ = self.strategy().replicas_differ();
        let reads = differ || group.rank() == 0;
        let file = self.checkpoint_path(path);
        let mine = if reads {
            Checkpoint::load(&file).and_then(|c| {
                let misfit = |what: &str, theirs: &dyn std::fmt::Display, ours: &dyn std::fmt::Display| {
                    Err(Error::Data {
                        path: file.display().to_string(),
                        reason: format!("saved with {what} {theirs}, resumed with {ours}"),
                    })
                };
                let h = &c.header;
                let steps = h
                    .settings
                    .strip_prefix("data-parallel steps ")
                    .and_then(|n| n.parse::<usize>().ok());
                match steps {
                    None => misfit("settings", &h.settings, &"a data-parallel run"),
                    Some(_) if h.params != params.len() => misfit("parameters", &h.params, &params.len()),
                    Some(_) if h.strategy != self.strategy().name() => {
                        misfit("strategy", &h.strategy, &self.strategy().name())
                    }
                    Some(_) if h.optimizer != optimizer_name => {
                        misfit("optimizer", &h.optimizer, &optimizer_name)
                    }
                    Some(steps) => Ok(Saved {
                        steps,
                        params: c.params,
                        buffers: c.optimizer.buffers,
                        optimizer_steps: c.optimizer.steps,
                        strategy: c.strategy.into_iter().map(|s| (s.name, s.values)).collect(),
                    }),
                }
            })
        } else {
            Ok(Saved::default())
        };
        let mine = group.agree(mine)?;
        let saved = if differ {
            mine
        } else {
            group.broadcast_value(0, (group.rank() == 0).then_some(&mine))?
        };
        params.copy_from_slice(&saved.params);
        let sections: Vec<Section> = saved
            .strategy
            .into_iter()
            .map(|(name, values)| Section { name, values })
            .collect();
        group.agree(self.exchange.strategy_mut().restore(&sections))?;
        if !self.started {
            let at = StepAt { epoch: 1, step: 0 };
            self.exchange
                .start(at, params, std::mem::take(&mut self.matrices))?;
            self.started = true;
        }
        self.steps = saved.steps;
        Ok(OptimizerState {
            buffers: saved.buffers,
            steps: saved.optimizer_steps,
        })
    }

    /// After the last step: the strategy's end of the run (one-shot model
    /// averaging averages the parameters here). Collective.
    ///
    /// # Errors
    /// The strategy's.
    pub fn finish(&mut self, params: &mut [f32]) -> Result<()> {
        self.exchange.finish(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{BucketSize, GradientAllReduce, LocalSgd, Optimizer, Sgd};
    use crate::Algorithm;

    /// Per-rank gradients of a "model" of three tensors (a 4×5 weight, a
    /// bias of 5 and a 5×2 weight) at step `s` on rank `r`, as a backward
    /// pass yields them: last tensor first.
    fn grads(r: usize, s: usize) -> [Vec<f32>; 3] {
        let f = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7 + k * 13 + r * 31 + s * 5) % 17) as f32 * 0.1 - 0.8)
                .collect()
        };
        [f(20, 0), f(5, 1), f(10, 2)]
    }

    const SHAPES: [&[usize]; 3] = [&[4, 5], &[5], &[5, 2]];

    /// `steps` steps of `strategy` with plain SGD on p thread ranks: every
    /// rank's parameters.
    fn train<S: Strategy>(p: usize, steps: usize, strategy: S) -> Vec<Vec<f32>> {
        train_with(p, steps, strategy)
            .into_iter()
            .map(|(params, _)| params)
            .collect()
    }

    /// [`train`], with each rank's bucket sizes.
    fn train_with<S: Strategy>(p: usize, steps: usize, strategy: S) -> Vec<(Vec<f32>, Option<Vec<usize>>)> {
        Group::local(p, |g| {
            let mut ddp = DataParallel::new(&g, &SHAPES, strategy.clone()).unwrap();
            let mut params: Vec<f32> = (0..ddp.len())
                .map(|i| (i as f32 * 0.3).cos() + g.rank() as f32)
                .collect();
            ddp.broadcast_parameters(&mut params, 0).unwrap();
            let opt = Sgd::new(0.0, 0.0).unwrap();
            let mut state = OptimizerState::new(&opt, ddp.len());
            for s in 0..steps {
                let gs = grads(g.rank(), s);
                ddp.step(&mut params, |sync| {
                    for i in (0..3).rev() {
                        sync.mark_ready(i, &gs[i])?;
                    }
                    Ok(())
                })
                .unwrap();
                let grad = ddp.grad().to_vec();
                opt.step(&mut params, &grad, 0.1, &mut state);
                ddp.after_update(&mut params, &mut state).unwrap();
            }
            (params, ddp.buckets().map(|c| c.buckets.clone()))
        })
    }

    #[test]
    fn p_ranks_average_what_one_rank_would_sum() {
        // One rank applying the mean of every rank's gradient, by hand.
        let p = 3;
        let mut want: Vec<f32> = (0..35).map(|i| (i as f32 * 0.3).cos()).collect();
        for s in 0..4 {
            let mut mean = vec![0f32; 35];
            for r in 0..p {
                for (m, g) in mean.iter_mut().zip(grads(r, s).concat()) {
                    *m += g / p as f32;
                }
            }
            for (w, m) in want.iter_mut().zip(&mean) {
                *w -= 0.1 * m;
            }
        }
        let out = train(p, 4, GradientAllReduce::new(Algorithm::Ring));
        for params in &out {
            assert_eq!(params, &out[0], "ranks differ");
            for (a, b) in params.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn buckets_give_the_same_bits_as_one_all_reduce_at_two_ranks() {
        let whole = train(2, 40, GradientAllReduce::new(Algorithm::Ring));
        let bucketed = train_with(
            2,
            40,
            GradientAllReduce {
                buckets: BucketSize::Bytes(40), // 10 floats: three buckets once chosen
                ..GradientAllReduce::new(Algorithm::Ring)
            },
        );
        for (params, buckets) in &bucketed {
            // Last tensor first: its 10 floats, then the bias and the 4×5 weight (5 + 20).
            assert_eq!(buckets.as_deref(), Some(&[10, 25][..]), "the buckets in use");
            assert_eq!(params, &whole[0]);
        }
    }

    #[test]
    fn no_sync_micro_batches_sum_into_the_next_step() {
        let out = Group::local(2, |g| {
            let mut ddp = DataParallel::new(&g, &SHAPES, GradientAllReduce::default()).unwrap();
            let mut params = vec![0.0; ddp.len()];
            ddp.broadcast_parameters(&mut params, 0).unwrap();
            let (a, b) = (grads(g.rank(), 0), grads(g.rank(), 1));
            ddp.no_sync(|acc| (0..3).try_for_each(|i| acc.add(i, &a[i])))
                .unwrap();
            ddp.step(&mut params, |sync| {
                (0..3).rev().try_for_each(|i| sync.mark_ready(i, &b[i]))
            })
            .unwrap();
            let accumulated = ddp.grad().to_vec();
            // The same sums, exchanged in one step without no_sync.
            let sum: Vec<Vec<f32>> = (0..3)
                .map(|i| a[i].iter().zip(&b[i]).map(|(x, y)| x + y).collect())
                .collect();
            ddp.step(&mut params, |sync| {
                (0..3).rev().try_for_each(|i| sync.mark_ready(i, &sum[i]))
            })
            .unwrap();
            (accumulated, ddp.grad().to_vec())
        });
        for (acc, once) in &out {
            assert_eq!(acc, once);
        }
    }

    #[test]
    fn local_sgd_averages_the_parameters_every_period() {
        let out = train(3, 4, LocalSgd::new(2).unwrap());
        // Averaged after step 2 and step 4: the ranks agree again.
        assert!(out.iter().all(|p| p == &out[0]));
        let diverged = train(3, 3, LocalSgd::new(2).unwrap());
        assert!(
            diverged.iter().any(|p| p != &diverged[0]),
            "local steps must differ between averagings"
        );
    }

    #[test]
    fn every_strategy_runs_through_data_parallel() {
        use crate::train::AnyStrategy;
        for (spelling, replicas_agree) in [
            ("sync:ring,compress=bf16", true),
            ("sync:ring,compress=powersgd:rank=1", true),
            ("sync:ring,compress=randomk:0.25", true),
            ("sync,compress=topk:0.25", true),
            ("sync,compress=qsgd:levels=4", true),
            ("diloco:h=2", true),
            ("local:tau=2", true),
            ("gossip:ring", false),
        ] {
            let strategy: AnyStrategy = spelling.parse().unwrap();
            let out = train(3, 4, strategy);
            for params in &out {
                assert!(params.iter().all(|x| x.is_finite()), "{spelling}: {params:?}");
                if replicas_agree {
                    assert_eq!(params, &out[0], "{spelling}: the ranks differ");
                }
            }
            // Every strategy moved the parameters from where they began.
            let start: Vec<f32> = (0..35).map(|i| (i as f32 * 0.3).cos()).collect();
            assert_ne!(out[0], start, "{spelling}");
        }
    }

    #[test]
    fn one_shot_averaging_averages_after_the_runs_last_step() {
        use crate::train::AnyStrategy;
        let out = Group::local(3, |g| {
            let strategy: AnyStrategy = "oneshot".parse().unwrap();
            let mut ddp = DataParallel::new(&g, &SHAPES, strategy).unwrap().total_steps(1);
            let mut params = vec![0.0; ddp.len()];
            ddp.broadcast_parameters(&mut params, 0).unwrap();
            let gs = grads(g.rank(), 0);
            ddp.step(&mut params, |sync| {
                (0..3).rev().try_for_each(|i| sync.mark_ready(i, &gs[i]))
            })
            .unwrap();
            let grad = ddp.grad().to_vec();
            for (w, d) in params.iter_mut().zip(&grad) {
                *w -= d; // each rank its own gradient: the replicas differ
            }
            let before = params.clone();
            let mut state = OptimizerState::default();
            ddp.after_update(&mut params, &mut state).unwrap(); // the run's last step
            ddp.finish(&mut params).unwrap();
            (before, params)
        });
        assert_ne!(out[0].0, out[1].0, "local steps differ before the end");
        for (_, after) in &out {
            assert_eq!(after, &out[0].1, "averaged after the last step");
        }
        let mean: Vec<f32> = (0..35)
            .map(|i| out.iter().map(|o| o.0[i]).sum::<f32>() / 3.0)
            .collect();
        for (a, m) in out[0].1.iter().zip(&mean) {
            assert!((a - m).abs() < 1e-6, "{a} vs the mean {m}");
        }
    }

    /// `steps` steps from `params` and `state` with momentum SGD.
    fn run_steps<C: Transport, S: Strategy>(
        ddp: &mut DataParallel<'_, C, S>,
        rank: usize,
        params: &mut [f32],
        state: &mut OptimizerState,
        steps: std::ops::Range<usize>,
    ) {
        let opt = Sgd::new(0.9, 0.0).unwrap();
        for s in steps {
            let gs = grads(rank, s);
            ddp.step(params, |sync| {
                (0..3).rev().try_for_each(|i| sync.mark_ready(i, &gs[i]))
            })
            .unwrap();
            let grad = ddp.grad().to_vec();
            opt.step(params, &grad, 0.05, state);
            ddp.after_update(params, state).unwrap();
        }
    }

    #[test]
    fn a_checkpoint_resumes_the_same_bits() {
        use crate::train::AnyStrategy;
        let dir = std::env::temp_dir().join(format!("ringreduce-ddp-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for spelling in [
            "sync:ring",
            "sync:ring,compress=randomk:0.25,error-feedback=on",
            "local:tau=3",
            "diloco:h=2",
        ] {
            let path = dir.join("state.safetensors");
            let out = Group::local(3, |g| {
                let strategy: AnyStrategy = spelling.parse().unwrap();
                let opt = Sgd::new(0.9, 0.0).unwrap();
                // Five steps straight.
                // Epochs of 2 steps: error feedback's residuals reach the
                // checkpoint at an epoch's end.
                let mut ddp = DataParallel::new(&g, &SHAPES, strategy.clone())
                    .unwrap()
                    .epochs(2, 3);
                let mut params: Vec<f32> = (0..35).map(|i| (i as f32).sin()).collect();
                ddp.broadcast_parameters(&mut params, 0).unwrap();
                let mut state = OptimizerState::new(&opt, 35);
                run_steps(&mut ddp, g.rank(), &mut params, &mut state, 0..2);
                ddp.save_checkpoint(&path, &params, &state, opt.name()).unwrap();
                run_steps(&mut ddp, g.rank(), &mut params, &mut state, 2..5);
                // Two steps, a new run from the checkpoint, three more.
                let mut again = DataParallel::new(&g, &SHAPES, strategy).unwrap().epochs(2, 3);
                let mut resumed = vec![0.0; 35];
                let mut restored = again.load_checkpoint(&path, &mut resumed, opt.name()).unwrap();
                assert_eq!(again.steps(), 2);
                run_steps(&mut again, g.rank(), &mut resumed, &mut restored, 2..5);
                (params, resumed)
            });
            for (straight, resumed) in &out {
                assert_eq!(straight, resumed, "{spelling}: the resumed run differs");
            }
        }
        // Another strategy, or another optimizer: refused on every rank.
        let path = dir.join("state.safetensors");
        let errors = Group::local(2, |g| {
            let mut ddp = DataParallel::new(&g, &SHAPES, GradientAllReduce::new(Algorithm::Ring)).unwrap();
            let mut params = vec![0.0; 35];
            let other = ddp
                .load_checkpoint(&path, &mut params, "sgd")
                .unwrap_err()
                .to_string();
            let mut ddp =
                DataParallel::new(&g, &SHAPES, GradientAllReduce::new(Algorithm::Butterfly)).unwrap();
            let adam = ddp
                .load_checkpoint(&path, &mut params, "adam")
                .unwrap_err()
                .to_string();
            (other, adam)
        });
        assert!(errors[0].0.contains("saved with strategy"), "{}", errors[0].0);
        assert!(errors[1].0.contains("rank 0"), "{}", errors[1].0);
        assert!(errors[0].1.contains("saved with strategy"), "{}", errors[0].1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_misshapen_gradient_is_an_error_on_every_rank() {
        let out = Group::local(3, |g| {
            let mut ddp = DataParallel::new(&g, &SHAPES, GradientAllReduce::default()).unwrap();
            let mut params = vec![0.0; ddp.len()];
            let early = ddp.step(&mut params, |_| Ok(())).unwrap_err().to_string();
            ddp.broadcast_parameters(&mut params, 0).unwrap();
            let gs = grads(g.rank(), 0);
            let missing = ddp
                .step(&mut params, |sync| {
                    if g.rank() != 1 {
                        sync.mark_ready(0, &gs[0])?;
                    }
                    sync.mark_ready(1, &gs[1])?;
                    sync.mark_ready(2, &gs[2])
                })
                .unwrap_err()
                .to_string();
            let short = ddp
                .step(&mut params, |sync| {
                    sync.mark_ready(0, &gs[0][..if g.rank() == 2 { 19 } else { 20 }])?;
                    sync.mark_ready(1, &gs[1])?;
                    sync.mark_ready(2, &gs[2])
                })
                .unwrap_err()
                .to_string();
            // Still in step: a good one goes through.
            ddp.step(&mut params, |sync| {
                (0..3).try_for_each(|i| sync.mark_ready(i, &gs[i]))
            })
            .unwrap();
            (early, missing, short)
        });
        assert!(
            out[0].0.contains("broadcast_parameters before the first step"),
            "{}",
            out[0].0
        );
        assert!(
            out[1].1.contains("tensor 0's gradient was not marked ready"),
            "{}",
            out[1].1
        );
        assert!(out[0].1.contains("rank 1"), "{}", out[0].1);
        assert!(
            out[2].2.contains("tensor 0 has 20 elements, its gradient 19"),
            "{}",
            out[2].2
        );
        assert!(out[0].2.contains("rank 2"), "{}", out[0].2);
    }
}
