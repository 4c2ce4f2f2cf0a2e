//! The synchronous SGD loop.

use std::path::PathBuf;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::checkpoint::{Checkpoint, Header};
use super::data::Dataset;
use super::model::Model;
use crate::algorithms::{all_reduce_in_place, Algorithm};
use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::transport::Transport;

/// Learning-rate schedule over the whole run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The same rate every step.
    Constant,
    /// Cosine decay from the base rate to zero over all steps.
    Cosine,
}

/// What one epoch did, the same on every rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's examples.
    pub train_loss: f64,
    /// Accuracy on the test set (0 when none was given).
    pub test_accuracy: f64,
    /// Wall time of the epoch on rank 0's clock, seconds (training steps only).
    pub epoch_secs: f64,
    /// Seconds of the epoch spent in the gradient all-reduce.
    pub allreduce_secs: f64,
    /// Bytes all-reduced (gradient buffer size × steps).
    pub allreduce_bytes: u64,
}

/// Builder of [`SyncSgd`].
#[derive(Debug, Clone)]
pub struct SyncSgdBuilder {
    cfg: SyncSgd,
}

/// Synchronous data-parallel SGD with momentum and weight decay.
#[derive(Debug, Clone)]
pub struct SyncSgd {
    algorithm: Algorithm,
    batch: usize,
    lr: f32,
    schedule: Schedule,
    momentum: f32,
    weight_decay: f32,
    epochs: usize,
    seed: u64,
    checkpoint: Option<PathBuf>,
    resume: bool,
}

impl SyncSgd {
    /// Defaults: ring all-reduce, global batch 256, lr 0.1, constant, no
    /// momentum or weight decay, 5 epochs, seed 42.
    pub fn builder() -> SyncSgdBuilder {
        SyncSgdBuilder {
            cfg: SyncSgd {
                algorithm: Algorithm::Ring,
                batch: 256,
                lr: 0.1,
                schedule: Schedule::Constant,
                momentum: 0.0,
                weight_decay: 0.0,
                epochs: 5,
                seed: 42,
                checkpoint: None,
                resume: false,
            },
        }
    }

    /// Initial parameters from the seed (the same on every rank).
    pub fn init_params<M: Model>(&self, model: &M) -> Vec<f32> {
        let mut p = vec![0f32; model.num_params()];
        model.init(&mut p, &mut ChaCha8Rng::seed_from_u64(self.seed));
        p
    }

    /// Global batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The order in which epoch `epoch` (1-based) visits `n` examples: step s
    /// uses positions `s·B .. (s+1)·B`, rank r of p the slice
    /// `s·B + r·B/p .. s·B + (r+1)·B/p`. The same on every rank and rank
    /// count, so one can tell which rank saw which example.
    pub fn epoch_order(&self, epoch: usize, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        order
    }

    /// Trains `params` on `train` for the configured epochs and evaluates on
    /// `test` after each; `on_epoch` sees every epoch's metrics (on every
    /// rank; print on rank 0). Collective over `comm`.
    ///
    /// Each epoch shuffles the example order with a permutation seeded by
    /// (seed, epoch), identical on every rank; step s uses examples
    /// `s·B .. (s+1)·B` of it, of which rank r computes the slice
    /// `r·B/p .. (r+1)·B/p`. The last partial batch is dropped.
    ///
    /// # Errors
    /// A global batch not divisible by the rank count or larger than the
    /// data set, a model whose input width differs from the data's, labels
    /// beyond the model's classes, a non-finite loss or gradient
    /// ([`Error::NonFinite`], naming epoch, step and the first rank), or a
    /// transport failure.
    pub fn fit<M, C>(
        &self,
        comm: &C,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        test: Option<&Dataset>,
        on_epoch: impl FnMut(&EpochMetrics),
    ) -> Result<Vec<EpochMetrics>>
    where
        M: Model,
        C: Transport + ?Sized,
    {
        self.fit_with_progress(comm, model, params, train, test, |_, _, _| {}, on_epoch)
    }

    /// [`SyncSgd::fit`] that also calls `on_step(epoch, step, steps)` after
    /// every step (for progress bars).
    #[allow(clippy::too_many_arguments)]
    pub fn fit_with_progress<M, C>(
        &self,
        comm: &C,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        test: Option<&Dataset>,
        mut on_step: impl FnMut(usize, usize, usize),
        mut on_epoch: impl FnMut(&EpochMetrics),
    ) -> Result<Vec<EpochMetrics>>
    where
        M: Model,
        C: Transport + ?Sized,
    {
        let (p, rank) = (comm.size(), comm.rank());
        let invalid = |reason: String| Error::InvalidArgument {
            what: "training setup",
            reason,
        };
        if self.batch % p != 0 {
            return Err(invalid(format!(
                "global batch {} is not divisible by {p} ranks",
                self.batch
            )));
        }
        if self.batch > train.len() {
            return Err(invalid(format!(
                "global batch {} exceeds the {} training examples",
                self.batch,
                train.len()
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
        let local = self.batch / p;
        let steps = train.len() / self.batch;
        let n = params.len();
        let mut grad = vec![0f32; n];
        let mut velocity = vec![0f32; n];
        let mut x = vec![0f32; local * train.dim];
        let mut y = vec![0u32; local];
        let mut history = Vec::new();
        let done = if self.resume {
            self.restore(comm, params, &mut velocity)?
        } else {
            0
        };
        for epoch in done + 1..=self.epochs {
            let order = self.epoch_order(epoch, train.len());
            let start = Instant::now();
            let (mut reduce_secs, mut loss_sum) = (0.0, 0.0f64);
            for step in 0..steps {
                let mine = &order[step * self.batch + rank * local..step * self.batch + (rank + 1) * local];
                for (j, &i) in mine.iter().enumerate() {
                    x[j * train.dim..(j + 1) * train.dim].copy_from_slice(train.row(i));
                    y[j] = train.labels[i];
                }
                let loss = model.loss_and_grad(params, &x, &y, &mut grad);
                // Local mean gradient (averaged over ranks it is the global
                // mean), checked for finiteness in the same pass.
                let scale = 1.0 / local as f32;
                let mut grad_finite = true;
                for g in grad.iter_mut() {
                    *g *= scale;
                    grad_finite &= g.is_finite();
                }
                // Agree on finiteness first, so every rank stops at the same step.
                let bad = !loss.is_finite() || !grad_finite;
                let mut first_bad = [if bad { rank as i64 } else { p as i64 }];
                all_reduce_in_place(comm, &mut first_bad, ReduceOp::Min, Algorithm::Butterfly)?;
                if first_bad[0] < p as i64 {
                    return Err(Error::NonFinite {
                        what: if bad && !loss.is_finite() {
                            "loss"
                        } else {
                            "gradient"
                        },
                        epoch,
                        step: step + 1,
                        rank: Some(first_bad[0] as usize),
                    });
                }
                let t = Instant::now();
                all_reduce_in_place(comm, &mut grad, ReduceOp::Avg, self.algorithm)?;
                reduce_secs += t.elapsed().as_secs_f64();
                let lr = self.rate((epoch - 1) * steps + step, self.epochs * steps);
                for ((w, v), g) in params.iter_mut().zip(&mut velocity).zip(&grad) {
                    *v = self.momentum * *v + g + self.weight_decay * *w;
                    *w -= lr * *v;
                }
                loss_sum += loss as f64;
                on_step(epoch, step + 1, steps);
            }
            let epoch_secs = start.elapsed().as_secs_f64();
            let mut totals = [loss_sum, 0.0];
            all_reduce_in_place(comm, &mut totals, ReduceOp::Sum, Algorithm::Butterfly)?;
            let accuracy = match test {
                Some(t) => evaluate(comm, model, params, t)?,
                None => 0.0,
            };
            // Rank 0's timings, so the report is the same everywhere.
            let mut times = [epoch_secs, reduce_secs];
            let mut from0 = if rank == 0 { times } else { [0.0; 2] };
            all_reduce_in_place(comm, &mut from0, ReduceOp::Sum, Algorithm::Butterfly)?;
            times = from0;
            let m = EpochMetrics {
                epoch,
                train_loss: totals[0] / (steps * self.batch).max(1) as f64,
                test_accuracy: accuracy,
                epoch_secs: times[0],
                allreduce_secs: times[1],
                allreduce_bytes: (n * 4 * steps) as u64,
            };
            if let (Some(path), 0) = (&self.checkpoint, rank) {
                let header = Header {
                    epoch,
                    seed: self.seed,
                    batch: self.batch,
                    params: n,
                };
                Checkpoint {
                    header,
                    params: params.to_vec(),
                    velocity: velocity.clone(),
                }
                .save(path)?;
            }
            on_epoch(&m);
            history.push(m);
        }
        Ok(history)
    }

    /// Rank 0 loads the checkpoint and hands its state to every rank;
    /// returns the epochs already done. Collective.
    fn restore<C: Transport + ?Sized>(
        &self,
        comm: &C,
        params: &mut [f32],
        velocity: &mut [f32],
    ) -> Result<usize> {
        let path = self.checkpoint.as_ref().ok_or_else(|| Error::InvalidArgument {
            what: "resume",
            reason: "resuming needs a checkpoint path".into(),
        })?;
        let (p, rank) = (comm.size(), comm.rank());
        // Rank 0's verdict first: epochs done, or −1 when it could not load.
        let loaded = if rank == 0 {
            Some(Checkpoint::load(path).and_then(|c| {
                if c.header.params != params.len() || c.header.seed != self.seed || c.header.batch != self.batch {
                    Err(Error::Data {
                        path: path.display().to_string(),
                        reason: format!(
                            "checkpoint of {} parameters, seed {}, batch {} does not match this run ({}, {}, {})",
                            c.header.params,
                            c.header.seed,
                            c.header.batch,
                            params.len(),
                            self.seed,
                            self.batch
                        ),
                    })
                } else {
                    Ok(c)
                }
            }))
        } else {
            None
        };
        let mut verdict = [match &loaded {
            Some(Ok(c)) => c.header.epoch as i64,
            Some(Err(_)) => -1,
            None => 0,
        }];
        all_reduce_in_place(comm, &mut verdict, ReduceOp::Sum, Algorithm::Butterfly)?;
        if verdict[0] < 0 {
            // Every rank reports rank 0's reason.
            return match loaded {
                Some(Err(e)) => {
                    let text = e.to_string().into_bytes();
                    for dest in 1..p {
                        comm.send(&[text.len() as i64], dest)?;
                        comm.send(&text, dest)?;
                    }
                    Err(e)
                }
                _ => {
                    let mut len = [0i64];
                    comm.recv(&mut len, 0)?;
                    let mut text = vec![0u8; len[0] as usize];
                    comm.recv(&mut text, 0)?;
                    Err(Error::InvalidArgument {
                        what: "checkpoint",
                        reason: format!("rank 0: {}", String::from_utf8_lossy(&text)),
                    })
                }
            };
        }
        if let Some(Ok(c)) = loaded {
            params.copy_from_slice(&c.params);
            velocity.copy_from_slice(&c.velocity);
            for dest in 1..p {
                comm.send(params, dest)?;
                comm.send(velocity, dest)?;
            }
        } else {
            comm.recv(params, 0)?;
            comm.recv(velocity, 0)?;
        }
        Ok(verdict[0] as usize)
    }

    fn rate(&self, step: usize, total: usize) -> f32 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = step as f32 / total.max(1) as f32;
                self.lr * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}

/// Test accuracy, each rank scoring a slice of `data`. Collective.
pub(crate) fn evaluate<M, C>(comm: &C, model: &M, params: &[f32], data: &Dataset) -> Result<f64>
where
    M: Model,
    C: Transport + ?Sized,
{
    let (p, r) = (comm.size(), comm.rank());
    let range = crate::algorithms::chunk_range(data.len(), p, r);
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
    all_reduce_in_place(comm, &mut c, ReduceOp::Sum, Algorithm::Butterfly)?;
    Ok(c[0] as f64 / data.len().max(1) as f64)
}

impl SyncSgdBuilder {
    /// All-reduce algorithm for the gradients.
    pub fn algorithm(mut self, a: Algorithm) -> Self {
        self.cfg.algorithm = a;
        self
    }
    /// Global batch size (split evenly across ranks).
    pub fn batch(mut self, b: usize) -> Self {
        self.cfg.batch = b;
        self
    }
    /// Base learning rate.
    pub fn lr(mut self, lr: f32) -> Self {
        self.cfg.lr = lr;
        self
    }
    /// Learning-rate schedule.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.cfg.schedule = s;
        self
    }
    /// Momentum (0 = plain SGD).
    pub fn momentum(mut self, m: f32) -> Self {
        self.cfg.momentum = m;
        self
    }
    /// L2 weight decay.
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.cfg.weight_decay = wd;
        self
    }
    /// Epochs to train.
    pub fn epochs(mut self, e: usize) -> Self {
        self.cfg.epochs = e;
        self
    }
    /// Seed of initialisation and shuffling.
    pub fn seed(mut self, s: u64) -> Self {
        self.cfg.seed = s;
        self
    }
    /// Rank 0 writes a checkpoint here after every epoch.
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.checkpoint = Some(path.into());
        self
    }
    /// Continue from the checkpoint (on any rank count that divides the batch).
    pub fn resume(mut self, yes: bool) -> Self {
        self.cfg.resume = yes;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A zero batch, a non-positive or non-finite learning rate, momentum
    /// outside [0, 1), or a negative weight decay.
    pub fn build(self) -> Result<SyncSgd> {
        let c = &self.cfg;
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "optimizer setting",
                reason,
            })
        };
        if c.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if !(c.lr.is_finite() && c.lr > 0.0) {
            return bad(format!("learning rate {} must be finite and > 0", c.lr));
        }
        if !(0.0..1.0).contains(&c.momentum) {
            return bad(format!("momentum {} must be in [0, 1)", c.momentum));
        }
        if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be ≥ 0", c.weight_decay));
        }
        Ok(self.cfg)
    }
}
