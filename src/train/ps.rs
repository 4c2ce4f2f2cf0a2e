//! Asynchronous parameter-server SGD (Downpour; bounded staleness) on one
//! MPI job, with the staleness each update had made visible and an
//! asynchronous run recorded and replayed bit for bit.
//!
//! Ranks `0..S` are servers, each holding a contiguous shard of the
//! parameters ([`shard_ranges`]); the others are workers. A worker pulls
//! every shard (all servers at once), computes the gradient of its part of
//! the global batch, accumulates `n_push` of them and pushes each shard's
//! slice to its server. A server applies each push as it arrives with the
//! trainer's optimizer (momentum at the server, as Downpour), at the
//! learning rate divided by the number of workers (a push is one worker's
//! share of a global batch) and, with `staleness_lr`, by the update's
//! staleness. Staleness = the shard's version when the push is applied −
//! the version the worker computed on.
//!
//! With `max_staleness = Some(s)` (SSP) a server answers a worker's pull
//! only while that worker is at most `s` pushes ahead of the slowest
//! unfinished worker; `s = 0` is bulk-synchronous, and with one server,
//! `n_push = n_fetch = 1` and plain SGD it is synchronous SGD (up to the
//! order of the floating-point sum).
//!
//! Epochs: by default every worker computes its own part of every step
//! of every epoch (fixed shares), so an epoch ends when the slowest worker
//! has pushed its part — a straggler sets the pace, as in synchronous SGD.
//! With [`ParameterServer::dynamic`] (Downpour's way) the workers run on
//! through their parts of successive epochs, each at its own speed, and
//! the servers count: an epoch ends when they have applied one epoch's
//! worth of batches (steps × workers, from whichever workers), and the
//! run ends after the planned epochs — later pushes are dropped and every
//! pull is answered "stop". Fast workers then contribute more updates
//! than a straggler instead of waiting for it.
//!
//! A record ([`ParameterServer::record`]) lists, per server, the order in
//! which it served pulls and applied pushes; a replay forces the same order
//! (a server buffers early messages until the log names them), so the run's
//! parameters repeat bit for bit.
//!
//! The asynchronous phase uses the transport's tagged point-to-point
//! messages directly; everything after it (snapshots, metrics, the record)
//! goes through the group's checked collectives.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Instant;

use crate::algorithms::{chunk_range, Algorithm};
use crate::cost::CostParams;
use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::{AnySource, Done, Tag, Transport};

use super::checkpoint::{Checkpoint, Header};
use super::data::Dataset;
use super::model::Model;
use super::optim::OptimizerState;
use super::strategies::Communication;
use super::strategies::Strategy;
use super::trainer::{evaluate, straggle, EpochMetrics, EvalPoint, PlanEpoch, Trainer};

/// Messages to a server.
const TO_SERVER: Tag = 301;
/// A server's answer to a pull.
const TO_WORKER: Tag = 302;

const PULL: u64 = 1;
const PUSH: u64 = 2;
const DONE: u64 = 3;
/// A worker stopped (a non-finite loss or gradient): servers answer every
/// pull with it from then on.
const ABORT: u64 = 4;
const REPLY: u64 = 5;
/// The answer to a pull once the planned epochs are applied (dynamic shares).
const STOP: u64 = 6;
/// Header words of every message: kind, clock, version, worker step.
const HEADER: usize = 4;

/// The contiguous shards of `n` parameters over `servers` servers,
/// balanced in bytes (sizes differ by at most one; empty when there are
/// fewer parameters than servers).
pub fn shard_ranges(n: usize, servers: usize) -> Vec<Range<usize>> {
    (0..servers).map(|k| chunk_range(n, servers, k)).collect()
}

/// The explicit momentum for an update of staleness τ when the optimizer's
/// is μ: max(0, μ − τ/(τ+1)).
///
/// Asynchrony begets momentum (Mitliagkas, Zhang, Hadjis & Ré 2016): an
/// update computed τ versions ago behaves, in expectation, like a step of
/// momentum SGD with momentum 1 − 1/(τ+1) — with M workers and staleness
/// about M − 1, the paper's 1 − 1/M. That implicit momentum adds to the
/// optimizer's explicit μ, and with μ = 0.9 on top of it the
/// asynchronous runs overshoot and stall (ps:async at 0.27 test accuracy
/// on Fashion-MNIST with 4 workers). The paper's remedy is to lower the
/// explicit momentum as asynchrony grows, so that the total stays at what
/// the optimizer was tuned for; taking τ per update keeps it exact for
/// fresh updates (τ = 0: μ unchanged, so the bulk-synchronous server
/// with one worker is plain momentum SGD), deterministic under a replayed
/// record and stateless across a checkpoint.
pub fn stale_momentum(mu: f32, staleness: u64) -> f32 {
    let tau = staleness as f64;
    (f64::from(mu) - tau / (tau + 1.0)).max(0.0) as f32
}

/// The parameter-server strategy's settings (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterServer {
    /// Server ranks (the first ones), at least 1, fewer than the ranks.
    pub servers: usize,
    /// `None`: asynchronous; `Some(s)`: a worker at most `s` pushes ahead
    /// of the slowest (SSP; 0 is bulk-synchronous).
    pub max_staleness: Option<u64>,
    /// Steps whose gradients a worker sums into one push (≥ 1); a push
    /// also ends every epoch.
    pub n_push: usize,
    /// A worker pulls every `n_fetch` steps (≥ 1).
    pub n_fetch: usize,
    /// Divide an update's learning rate by its staleness (when ≥ 1).
    pub staleness_lr: bool,
    /// Discount the server optimizer's heavy-ball momentum by the momentum
    /// an update's staleness already implies ([`stale_momentum`]); `false`
    /// (spelled `,keep-momentum`): the optimizer's momentum on every update.
    pub discount_momentum: bool,
    /// Write the order of every server's events to this file.
    pub record: Option<PathBuf>,
    /// Force the order of a file `record` wrote.
    pub replay: Option<PathBuf>,
    /// Dynamic shares: workers run at their own speed and the servers end
    /// epochs by counting applied batches (see the module docs); `false`
    /// (fixed shares): every worker computes its part of every step.
    pub dynamic: bool,
}

impl Default for ParameterServer {
    /// One server, asynchronous, pushes and pulls every step.
    fn default() -> Self {
        ParameterServer {
            servers: 1,
            max_staleness: None,
            n_push: 1,
            n_fetch: 1,
            staleness_lr: false,
            discount_momentum: true,
            record: None,
            replay: None,
            dynamic: false,
        }
    }
}

/// What a parameter-server run moves ([`ParameterServer::traffic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsTraffic {
    /// Bytes each worker sends: pull requests and pushes.
    pub worker_sent: u64,
    /// Bytes the busiest server receives (its ingress: workers × shard
    /// bytes per push).
    pub server_received: u64,
    /// Bytes the busiest server sends (its shard to each pull).
    pub server_sent: u64,
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "parameter server",
        reason,
    }
}

impl ParameterServer {
    /// Checks the settings on `p` ranks.
    ///
    /// # Errors
    /// One-line reasons: no server, no worker, `n_push` or `n_fetch` 0,
    /// record and replay together; with a trainer's
    /// [`straggler`](super::TrainerBuilder::straggler), one that is no worker.
    pub fn check(&self, p: usize) -> Result<()> {
        if self.servers == 0 {
            return Err(invalid("--servers must be at least 1".into()));
        }
        if self.servers >= p {
            return Err(invalid(format!(
                "{} servers on {p} ranks leave no worker: use fewer servers than ranks",
                self.servers
            )));
        }
        if self.n_push == 0 || self.n_fetch == 0 {
            return Err(invalid("n_push and n_fetch must be at least 1".into()));
        }
        if self.record.is_some() && self.replay.is_some() {
            return Err(invalid("record and replay are exclusive".into()));
        }
        Ok(())
    }

    /// Bytes of a run of `epochs` × `steps` steps on `p` ranks for `n`
    /// parameters (exact: message headers of 32 bytes included).
    pub fn traffic(&self, p: usize, n: usize, steps: usize, epochs: usize) -> PsTraffic {
        let (s, w) = (self.servers as u64, p.saturating_sub(self.servers) as u64);
        let total = (steps * epochs) as u64;
        let pulls = total.div_ceil(self.n_fetch as u64);
        let pushes = epochs as u64 * (steps as u64).div_ceil(self.n_push as u64);
        let head = (HEADER * 8) as u64;
        let largest = shard_ranges(n, self.servers)
            .iter()
            .map(|r| r.len())
            .max()
            .unwrap_or(0) as u64;
        PsTraffic {
            worker_sent: pulls * s * head + pushes * (s * head + 4 * n as u64),
            server_received: w * (pulls * head + pushes * (head + 4 * largest)),
            server_sent: w * pulls * (head + 4 * largest),
        }
    }

    /// What the busiest rank sends over `steps` steps on `p` ranks for
    /// `n` parameters, the rounds of a worker, and the predicted time: a
    /// push costs α + the busiest server's ingress (workers × its shard)
    /// at β, a pull α + its egress; a server's link carries both
    /// directions at once, so the time is the larger of the two sums
    /// plus every round's α.
    pub fn communication(&self, p: usize, n: usize, steps: usize, params: &CostParams) -> Communication {
        let t = self.traffic(p, n, steps, 1);
        let s = self.servers;
        let pulls = (steps as u64).div_ceil(self.n_fetch as u64);
        let pushes = (steps as u64).div_ceil(self.n_push as u64);
        let largest = shard_ranges(n, s).iter().map(|r| r.len()).max().unwrap_or(0) as u64;
        let message = (HEADER * 8) as u64 + 4 * largest;
        let line = params.line_for(message);
        let wire = (t.server_received.max(t.server_sent)) as f64 * line.beta;
        Communication {
            strategy: self.name_with_servers(),
            steps,
            bytes: t.server_sent.max(t.worker_sent),
            rounds: pulls + pushes,
            predicted_secs: wire + (pulls + pushes) as f64 * line.alpha,
        }
    }

    /// `ps:async,servers=2`.
    pub fn name_with_servers(&self) -> String {
        format!("{},servers={}", self.name(), self.servers)
    }

    /// The spelling (`ps:async`, `ps:ssp=2`, `ps:async,dynamic`).
    pub fn name(&self) -> String {
        let base = match self.max_staleness {
            None => "ps:async".into(),
            Some(s) => format!("ps:ssp={s}"),
        };
        let base = if self.dynamic { base + ",dynamic" } else { base };
        if self.discount_momentum {
            base
        } else {
            base + ",keep-momentum"
        }
    }

    /// Trains `params` (the same initial values on every rank) with the
    /// trainer's optimizer, batches, learning rate, schedule, epochs and
    /// seed; on return every rank holds the final parameters. Collective.
    ///
    /// # Errors
    /// Bad settings or data (on every rank before anything is sent); a
    /// worker's non-finite loss or gradient ([`Error::NonFinite`] on every
    /// rank); a record that cannot be written or a replay log that does not
    /// fit this run; transport failures.
    pub fn fit<S, M, C>(
        &self,
        trainer: &Trainer<S>,
        group: &Group<C>,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        test: Option<&Dataset>,
    ) -> Result<Vec<PlanEpoch>>
    where
        S: Strategy,
        M: Model,
        C: AnySource,
    {
        let p = group.size();
        let setup = self.check(p).and_then(|()| {
            if let Some((r, _)) = trainer.cfg.straggler {
                if r < self.servers || r >= p {
                    return Err(invalid(format!(
                        "straggler rank {r} is not a worker (workers are ranks {}..{})",
                        self.servers,
                        p - 1
                    )));
                }
            }
            if let Some(k) = trainer.cfg.checkpoint_every {
                return Err(invalid(format!(
                    "checkpointing every {k} steps: the parameter server writes its shards at epoch ends only"
                )));
            }
            if let (Some(k), true) = (trainer.cfg.eval_every, self.dynamic) {
                return Err(invalid(format!(
                    "evaluating every {k} steps needs fixed shares (with dynamic shares the workers' steps are not the servers')"
                )));
            }
            let w = p.saturating_sub(self.servers).max(1);
            trainer.check_setup(w, model, params, train, test)
        });
        let log = match (&setup, &self.replay) {
            (Ok(()), Some(path)) => Some(Log::load(path)),
            _ => None,
        }
        .transpose();
        let log = group.agree(setup.and(log))?;
        let r = group.rank();
        if let (Some(path), true) = (&trainer.cfg.checkpoint, r < self.servers) {
            trainer.tidy(&self.shard_path(path, r));
        }
        // A resumed run: each server its shard; every rank the same epoch.
        let restored = match (trainer.cfg.resume, &trainer.cfg.checkpoint) {
            (true, Some(path)) if r < self.servers => {
                let w = p - self.servers;
                let steps = trainer.cfg.batches.steps(trainer.cfg.batch, train.len(), w);
                let pushes = (steps * w) as u64;
                Some(match self.shard_path(path, r).exists() {
                    true => self.load_shard(trainer, path, params.len(), r, pushes),
                    // Written with another server count: cut this
                    // server's range from those shards.
                    false => self.reshard(trainer, path, params.len(), r),
                })
            }
            _ => None,
        }
        .transpose();
        let restored = group.agree(restored)?;
        let done = restored.as_ref().map_or(0, |c| c.header.epoch);
        let mut range = [done as i64, -(done as i64)];
        if r >= self.servers && trainer.cfg.resume {
            range = [i64::MAX, i64::MAX];
        }
        group.all_reduce_in_place(&mut range, ReduceOp::Min, Algorithm::Ring)?;
        let (first, last) = (range[0], -range[1]);
        if first != last {
            return Err(invalid(format!(
                "the servers' shard checkpoints are of different epochs ({first} to {last}): resume needs all of one epoch"
            )));
        }
        let shape = RunShape::of(self, trainer, train.len(), p, first.max(0) as usize);
        if shape.run == 0 {
            return Ok(Vec::new());
        }
        if let Some(l) = &log {
            group.agree(l.fits(&shape, &self.replay))?;
        }
        let outcome = if r < self.servers {
            let mine = log.as_ref().map(|l| l.events_of(r));
            Side::Server(serve(
                self,
                trainer,
                group.transport(),
                params,
                &shape,
                mine,
                restored,
            )?)
        } else {
            Side::Worker(work(
                self,
                trainer,
                group.transport(),
                model,
                params,
                train,
                &shape,
            )?)
        };
        self.finish(group, model, params, test, &shape, outcome)
    }

    /// Server `k`'s part of the checkpoint at `path`: `PATH.shardKofS`,
    /// written by that server when every worker has finished an epoch.
    pub fn shard_path(&self, path: &std::path::Path, k: usize) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".shard{k}of{}", self.servers));
        PathBuf::from(name)
    }

    fn shard_header<S: Strategy>(&self, t: &Trainer<S>, epoch: usize) -> Header {
        Header {
            epoch,
            step: 0,
            seed: t.cfg.seed,
            batch: t.cfg.batch,
            params: 0,
            optimizer: t.optimizer.name().to_string(),
            optimizer_steps: 0,
            strategy: self.name_with_servers(),
            settings: String::new(),
            data: String::new(),
            sections: Vec::new(),
        }
    }

    /// Server `k`'s shard cut from a checkpoint written by another number
    /// of servers: the complete set of `PATH.shardJofK` files (the newest,
    /// when several counts left one), every one checked as
    /// [`Self::load_shard`] checks its own and of one epoch. Parameters and
    /// optimizer buffers are per element, so any range of them is a shard;
    /// every server takes the same number of optimizer steps (one a push).
    fn reshard<S: Strategy>(
        &self,
        t: &Trainer<S>,
        path: &std::path::Path,
        n: usize,
        k: usize,
    ) -> Result<Checkpoint> {
        let missing = || Error::Data {
            path: self.shard_path(path, k).display().to_string(),
            reason: "no such shard, and no complete set of another server count beside it".into(),
        };
        let old = self.shard_counts(path).ok_or_else(missing)?;
        let before = ParameterServer {
            servers: old,
            ..self.clone()
        };
        let shards: Vec<Checkpoint> = (0..old)
            .map(|j| before.load_shard(t, path, n, j, u64::MAX))
            .collect::<Result<_>>()?;
        let epoch = shards[0].header.epoch;
        if let Some(j) = shards.iter().position(|c| c.header.epoch != epoch) {
            return Err(Error::Data {
                path: before.shard_path(path, j).display().to_string(),
                reason: format!(
                    "a shard of epoch {} beside one of epoch {epoch}: resume needs all of one epoch",
                    shards[j].header.epoch
                ),
            });
        }
        let mut whole = vec![0f32; n];
        let buffers = shards[0].optimizer.buffers.len();
        let mut whole_buffers = vec![vec![0f32; n]; buffers];
        for (c, range) in shards.iter().zip(shard_ranges(n, old)) {
            whole[range.clone()].copy_from_slice(&c.params);
            for (b, w) in c.optimizer.buffers.iter().zip(&mut whole_buffers) {
                w[range.clone()].copy_from_slice(b);
            }
        }
        let mine = shard_ranges(n, self.servers)[k].clone();
        let optimizer = crate::train::OptimizerState {
            buffers: whole_buffers.iter().map(|w| w[mine.clone()].to_vec()).collect(),
            steps: shards[0].optimizer.steps,
        };
        Ok(Checkpoint::new(
            self.shard_header(t, epoch),
            whole[mine].to_vec(),
            optimizer,
            Vec::new(),
        ))
    }

    /// The server count of the newest complete set of shard files beside
    /// `path` (`PATH.shard0ofK` … `PATH.shard{K-1}ofK`).
    fn shard_counts(&self, path: &std::path::Path) -> Option<usize> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let prefix = format!("{}.shard0of", path.file_name()?.to_string_lossy());
        let mut sets: Vec<(std::time::SystemTime, usize)> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let count: usize = name.strip_prefix(&prefix)?.parse().ok()?;
                let when = e.metadata().ok()?.modified().ok()?;
                let set = ParameterServer {
                    servers: count,
                    ..self.clone()
                };
                (count > 0 && (0..count).all(|j| set.shard_path(path, j).exists())).then_some((when, count))
            })
            .collect();
        sets.sort();
        sets.last().map(|&(_, count)| count)
    }

    fn load_shard<S: Strategy>(
        &self,
        t: &Trainer<S>,
        path: &std::path::Path,
        n: usize,
        k: usize,
        pushes_per_epoch: u64,
    ) -> Result<Checkpoint> {
        let file = self.shard_path(path, k);
        let c = Checkpoint::load(&file)?;
        let want = self.shard_header(t, c.header.epoch);
        let len = shard_ranges(n, self.servers)[k].len();
        let bad = |what: String| Error::Data {
            path: file.display().to_string(),
            reason: format!("{what}: resume with the settings it was written with"),
        };
        if c.header.strategy != want.strategy {
            return Err(bad(format!(
                "a shard of {}, this run is {}",
                c.header.strategy, want.strategy
            )));
        }
        if (c.header.seed, c.header.batch) != (want.seed, want.batch) || c.header.optimizer != want.optimizer
        {
            return Err(bad("another seed, batch or optimizer".into()));
        }
        if c.params.len() != len {
            return Err(bad(format!(
                "{} parameters, this server holds {len}",
                c.params.len()
            )));
        }
        let (e, h) = (t.cfg.epochs, &c.header);
        if h.epoch >= e {
            return Err(Error::Data {
                path: file.display().to_string(),
                reason: format!(
                    "shard is at epoch {} and this run trains {e}: nothing left to do (raise --epochs)",
                    h.epoch
                ),
            });
        }
        // Every push is one optimizer step of every server: after `epoch`
        // epochs, at least one per epoch, at most every batch of the run.
        let most = (e as u64).saturating_mul(pushes_per_epoch);
        if !(h.epoch as u64..=most).contains(&h.optimizer_steps) {
            return Err(Error::Data {
                path: file.display().to_string(),
                reason: format!(
                    "bad checkpoint header: `optimizer_steps` is {}, outside {}..={most} for {} epochs of this run",
                    h.optimizer_steps, h.epoch, h.epoch
                ),
            });
        }
        if let Some(e) = super::checkpoint::misfit_buffer(&c.optimizer.buffers, len) {
            return Err(Error::Data {
                path: file.display().to_string(),
                reason: format!("bad checkpoint header: {e}"),
            });
        }
        Ok(c)
    }

    /// The collective phase: the first failure, snapshots, metrics, record.
    fn finish<M: Model, C: Transport>(
        &self,
        group: &Group<C>,
        model: &M,
        params: &mut [f32],
        test: Option<&Dataset>,
        shape: &RunShape,
        mut outcome: Side,
    ) -> Result<Vec<PlanEpoch>> {
        let (e, w, s) = (shape.run, shape.workers, self.servers);
        agree_outcome(group, &mut outcome)?;
        // Snapshots of every shard at every epoch end, in server order.
        let (snaps, hist, times, events, received) = match &outcome {
            Side::Server(sv) => (
                sv.snapshots.concat(),
                sv.hist.clone(),
                sv.times.clone(),
                sv.events.clone(),
                sv.received.iter().map(|&b| b as i64).collect(),
            ),
            Side::Worker(_) => (
                Vec::new(),
                Vec::new(),
                vec![0.0; e],
                Vec::new(),
                vec![0i64; e * w],
            ),
        };
        let all = group.all_gather_varying(&snaps)?;
        let ranges = shard_ranges(params.len(), s);
        // The parameters of snapshot `i` of every server's `all`.
        let assemble = |all: &[Vec<f32>], i: usize| -> Vec<f32> {
            let mut v = vec![0f32; params.len()];
            for (k, range) in ranges.iter().enumerate() {
                let len = range.len();
                v[range.clone()].copy_from_slice(&all[k][i * len..(i + 1) * len]);
            }
            v
        };
        let at = |epoch: usize| assemble(&all, epoch);
        // The evaluations within epochs: the servers' shards and times,
        // the busiest worker's bytes.
        let k = shape.evals.len();
        let (point_snaps, mut point_times, mut point_bytes) = match &outcome {
            Side::Server(sv) => (sv.points.concat(), sv.point_times.clone(), vec![0i64; k]),
            Side::Worker(wk) => {
                let mut b: Vec<i64> = wk.point_bytes.iter().map(|&b| b as i64).collect();
                b.resize(k, 0);
                (Vec::new(), vec![0.0; k], b)
            }
        };
        let points = group.all_gather_varying(&point_snaps)?;
        group.all_reduce_in_place(&mut point_times, ReduceOp::Max, Algorithm::Ring)?;
        group.all_reduce_in_place(&mut point_bytes, ReduceOp::Max, Algorithm::Ring)?;
        let (h, depth) = staleness_counts(group, &hist, e, w)?;
        let mut times = times;
        group.all_reduce_in_place(&mut times, ReduceOp::Max, Algorithm::Ring)?;
        let (mut loss, mut sent, mut samples) = match &outcome {
            Side::Worker(wk) => (
                wk.loss.clone(),
                wk.bytes.iter().map(|&b| b as i64).collect(),
                wk.samples.iter().map(|&n| n as i64).collect(),
            ),
            Side::Server(_) => (vec![0.0; e], vec![0i64; e], vec![0i64; e]),
        };
        group.all_reduce_in_place(&mut loss, ReduceOp::Sum, Algorithm::Ring)?;
        group.all_reduce_in_place(&mut samples, ReduceOp::Sum, Algorithm::Ring)?;
        group.all_reduce_in_place(&mut sent, ReduceOp::Max, Algorithm::Ring)?;
        if shape.dynamic {
            // A worker's epochs are not the servers': count what the
            // servers received from each worker in each of their epochs.
            let mut received = received;
            group.all_reduce_in_place(&mut received, ReduceOp::Sum, Algorithm::Ring)?;
            for (epoch, x) in sent.iter_mut().enumerate() {
                *x = received[epoch * w..(epoch + 1) * w]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(0);
            }
        }
        if let Some(path) = &self.record {
            let every = group.all_gather_varying(&events)?;
            let written = match group.rank() {
                0 => Log::write(path, shape, &every[..s]),
                _ => Ok(()),
            };
            group.agree(written)?;
        }
        // Scoring an epoch: its snapshot's part of the ring all-gather (the
        // busiest rank forwards every shard but a worker's empty block:
        // the whole parameter vector) and the count of right answers.
        let p = group.size();
        let scoring = 4 * params.len() as u64
            + match test {
                Some(_) => Algorithm::Butterfly
                    .exact_cost(p, 1, 8)
                    .map_or(0, |c| c.bytes_sent),
                None => 0,
            };
        let mut evals: Vec<Vec<EvalPoint>> = vec![Vec::new(); e];
        for (i, &g) in shape.evals.iter().enumerate() {
            let epoch = (g - 1) / shape.steps.max(1) - shape.first;
            let accuracy = match test {
                Some(d) => evaluate(group, model, &assemble(&points, i), d)?,
                None => f64::NAN,
            };
            let began = if epoch == 0 { 0.0 } else { times[epoch - 1] };
            evals[epoch].push(EvalPoint {
                step: g,
                epoch_secs: point_times[i] - began,
                allreduce_bytes: point_bytes[i] as u64,
                rounds: 0,
                test_accuracy: accuracy,
                consensus_distance: None,
            });
        }
        let mut out = Vec::with_capacity(e);
        for (epoch, evals) in evals.into_iter().enumerate() {
            let scored = at(epoch);
            let accuracy = match test {
                Some(d) => Some(evaluate(group, model, &scored, d)?),
                None => None,
            };
            let secs = times[epoch] - if epoch == 0 { 0.0 } else { times[epoch - 1] };
            let per_worker: Vec<Vec<u64>> = (0..w)
                .map(|wi| trimmed(&h[(epoch * w + wi) * depth..(epoch * w + wi + 1) * depth]))
                .collect();
            let staleness: Vec<u64> = (0..depth)
                .map(|d| per_worker.iter().map(|v| v.get(d).copied().unwrap_or(0)).sum())
                .collect();
            let staleness = trimmed(&staleness);
            out.push(PlanEpoch {
                metrics: EpochMetrics {
                    scoring_bytes: scoring * (1 + evals.len() as u64),
                    evals,
                    ..shape.metrics(
                        epoch,
                        loss[epoch],
                        samples[epoch] as usize,
                        sent[epoch] as u64,
                        secs,
                        accuracy,
                    )
                },
                staleness,
                per_worker,
            });
        }
        if e > 0 {
            params.copy_from_slice(&at(e - 1));
        }
        Ok(out)
    }
}

/// Every rank learns the outcome's first failure: a worker that stopped
/// (the lowest such rank names itself) or a shard checkpoint a server
/// could not write. Collective.
fn agree_outcome<C: Transport>(group: &Group<C>, outcome: &mut Side) -> Result<()> {
    // A worker that stopped names itself: the lowest such rank wins.
    let stopped = match &*outcome {
        Side::Worker(wk) => wk.stopped.map_or(i64::MAX, |(epoch, step)| {
            ((group.rank() as i64) << 40) | ((epoch as i64) << 20) | step as i64
        }),
        Side::Server(_) => i64::MAX,
    };
    let mut first = [stopped];
    group.all_reduce_in_place(&mut first, ReduceOp::Min, Algorithm::Ring)?;
    if first[0] != i64::MAX {
        return Err(Error::NonFinite {
            what: "loss or gradient",
            epoch: ((first[0] >> 20) & 0xfffff) as usize,
            step: (first[0] & 0xfffff) as usize,
            rank: Some((first[0] >> 40) as usize),
        });
    }
    // A shard checkpoint that could not be written stops every rank.
    let written = match outcome {
        Side::Server(sv) => sv.unwritten.take().map_or(Ok(()), Err),
        Side::Worker(_) => Ok(()),
    };
    group.agree(written)?;
    Ok(())
}

/// The servers' staleness histograms `hist` ([epoch][worker][staleness])
/// summed over servers as one flat [epoch][worker][depth] table, at the
/// deepest staleness any server saw (`depth`). Collective.
fn staleness_counts<C: Transport>(
    group: &Group<C>,
    hist: &[Vec<Vec<u64>>],
    e: usize,
    w: usize,
) -> Result<(Vec<u64>, usize)> {
    // Staleness: [epoch][worker][staleness] counts, summed over servers
    // at the deepest staleness any server saw.
    let mut depth = [hist.iter().flatten().map(Vec::len).max().unwrap_or(0) as i64];
    group.all_reduce_in_place(&mut depth, ReduceOp::Max, Algorithm::Ring)?;
    let depth = depth[0] as usize;
    let mut h = vec![0i64; e * w * depth];
    for (epoch, per) in hist.iter().enumerate() {
        for (wi, counts) in per.iter().enumerate() {
            let at = (epoch * w + wi) * depth;
            for (x, &c) in h[at..at + counts.len()].iter_mut().zip(counts) {
                *x = c as i64;
            }
        }
    }
    group.all_reduce_in_place(&mut h, ReduceOp::Sum, Algorithm::Ring)?;
    Ok((h.into_iter().map(|c| c as u64).collect(), depth))
}

/// A histogram without its trailing empty bins.
fn trimmed(counts: &[u64]) -> Vec<u64> {
    let len = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    counts[..len].to_vec()
}

/// The run's fixed figures, the same on every rank.
#[derive(Debug, Clone, PartialEq)]
struct RunShape {
    servers: usize,
    workers: usize,
    /// Epochs planned (the schedule's length).
    epochs: usize,
    /// Epochs done before this run (a resumed run), and to run now.
    first: usize,
    run: usize,
    steps: usize,
    batch: usize,
    n_push: usize,
    n_fetch: usize,
    seed: u64,
    dynamic: bool,
    /// The global steps of the evaluations within epochs (fixed shares).
    evals: Vec<usize>,
}

impl RunShape {
    /// The metrics of epoch `epoch` (from 0) of the run: the loss summed
    /// over the workers' `samples` examples, the busiest worker's `sent`
    /// bytes, `secs` on the servers' clocks, the test accuracy.
    fn metrics(
        &self,
        epoch: usize,
        loss: f64,
        samples: usize,
        sent: u64,
        secs: f64,
        accuracy: Option<f64>,
    ) -> EpochMetrics {
        EpochMetrics {
            epoch: self.first + epoch + 1,
            step: (self.first + epoch + 1) * self.steps,
            // Fixed shares: the epoch's batches; dynamic: the
            // examples the workers computed in their parts of it.
            train_loss: loss
                / match self.dynamic {
                    false => self.steps * self.batch,
                    true => samples,
                }
                .max(1) as f64,
            test_accuracy: accuracy,
            epoch_secs: secs,
            samples_per_sec: (self.steps * self.batch) as f64 / secs.max(1e-9),
            allreduce_secs: 0.0,
            compute_secs: 0.0,
            comm_secs: 0.0,
            encode_secs: 0.0,
            decode_secs: 0.0,
            allreduce_bytes: sent,
            rounds: 0,
            consensus_distance: None,
            scoring_bytes: 0,
            evals: Vec::new(),
        }
    }

    fn of<S: Strategy>(ps: &ParameterServer, t: &Trainer<S>, n: usize, p: usize, first: usize) -> RunShape {
        let until = t.cfg.stop_after.unwrap_or(t.cfg.epochs).min(t.cfg.epochs);
        RunShape {
            servers: ps.servers,
            workers: p - ps.servers,
            epochs: t.cfg.epochs,
            first,
            run: until.saturating_sub(first),
            steps: t.cfg.batches.steps(t.cfg.batch, n, p - ps.servers),
            batch: t.cfg.batch,
            n_push: ps.n_push,
            n_fetch: ps.n_fetch,
            seed: t.cfg.seed,
            dynamic: ps.dynamic,
            evals: Vec::new(),
        }
        .with_evals(t.cfg.eval_every)
    }

    /// The evaluations every `k` global steps of the steps this run
    /// takes, but at epochs' ends (scored there anyway).
    fn with_evals(mut self, every: Option<usize>) -> RunShape {
        if let (Some(k), false) = (every, self.dynamic) {
            let (from, to) = (self.first * self.steps, (self.first + self.run) * self.steps);
            self.evals = (from + 1..to)
                .filter(|g| g.is_multiple_of(k) && !g.is_multiple_of(self.steps.max(1)))
                .collect();
        }
        self
    }

    fn header(&self) -> String {
        let shares = if self.dynamic { " shares=dynamic" } else { "" };
        format!(
            "# ringreduce ps log v1 servers={} workers={} epochs={} from={} run={} steps={} batch={} n_push={} n_fetch={} seed={}{shares}",
            self.servers,
            self.workers,
            self.epochs,
            self.first,
            self.run,
            self.steps,
            self.batch,
            self.n_push,
            self.n_fetch,
            self.seed
        )
    }
}

enum Side {
    Server(ServerOut),
    Worker(WorkerOut),
}

/// What a server did: its shard at each epoch end, when, the staleness
/// counts (`[epoch][worker][staleness]`) and its events in order.
struct ServerOut {
    /// The first shard checkpoint that could not be written.
    unwritten: Option<Error>,
    snapshots: Vec<Vec<f32>>,
    times: Vec<f64>,
    /// The shard at each evaluation within an epoch, and when.
    points: Vec<Vec<f32>>,
    point_times: Vec<f64>,
    hist: Vec<Vec<Vec<u64>>>,
    /// Bytes received from each worker during each epoch (`[epoch * w +
    /// worker]`), by this server's clock.
    received: Vec<u64>,
    events: Vec<u64>,
}

/// What a worker did: its loss sum and bytes sent per epoch, and where it
/// stopped on a non-finite value.
struct WorkerOut {
    loss: Vec<f64>,
    /// Examples whose loss `loss` sums, per epoch.
    samples: Vec<u64>,
    bytes: Vec<u64>,
    /// Bytes sent in its epoch up to each evaluation within an epoch.
    point_bytes: Vec<u64>,
    stopped: Option<(usize, usize)>,
}

/// One logged event of a server: 4 words (kind, worker, clock, version).
const EVENT: usize = 4;

fn header(kind: u64, clock: u64, version: u64, step: u64) -> [u64; HEADER] {
    [kind, clock, version, step]
}

fn message(h: [u64; HEADER], payload: &[f32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER * 8 + payload.len() * 4);
    for w in h {
        m.extend_from_slice(&w.to_le_bytes());
    }
    m.extend_from_slice(bytemuck::cast_slice(payload));
    m
}

fn parse(m: &[u8]) -> ([u64; HEADER], &[u8]) {
    let mut h = [0u64; HEADER];
    for (i, w) in h.iter_mut().enumerate() {
        *w = u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    }
    (h, &m[HEADER * 8..])
}

fn floats(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Names what this rank waits for in stall reports (`parameter-server
/// update #12: no message from any rank for 60 s; not responding: rank 3`):
/// the servers count updates, the workers their pushes.
fn label<C: Transport>(comm: &C, what: &'static str, number: u64) {
    if let Some(p) = comm.progress() {
        p.begin(what, number);
        p.set_agreeing(false);
    }
}

/// A message a server has received and not yet handled (replay).
struct Pending {
    worker: usize,
    head: [u64; HEADER],
    body: Vec<u8>,
}

/// A server's state through the asynchronous phase.
struct Server<'a, S: Strategy, C: AnySource> {
    ps: &'a ParameterServer,
    t: &'a Trainer<S>,
    comm: &'a C,
    shape: &'a RunShape,
    start: Instant,
    shard: Vec<f32>,
    state: OptimizerState,
    grad: Vec<f32>,
    version: u64,
    /// Pushes applied per worker.
    clocks: Vec<u64>,
    done: Vec<bool>,
    /// Per worker, the global step after its last push.
    pushed: Vec<usize>,
    /// Batches applied, from the start of training (dynamic shares).
    batches: usize,
    /// When each worker's last message came, and any message.
    heard: Vec<Instant>,
    last_any: Instant,
    aborted: bool,
    out: ServerOut,
}

impl<S: Strategy, C: AnySource> Server<'_, S, C> {
    fn fail(&self, reason: String) -> Error {
        Error::Transport {
            rank: self.comm.rank(),
            reason: format!("parameter server: {reason}"),
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Pending> {
        label(self.comm, "parameter-server update", self.version + 1);
        let d: Done = self.comm.recv_any(buf, TO_SERVER)?;
        let (head, body) = parse(&buf[..d.len]);
        let worker = d.peer - self.ps.servers;
        let now = Instant::now();
        // After a long gap in which nothing came (or this server did not
        // run) no worker can be judged silent: every clock starts again.
        let timeout = self.comm.progress().and_then(|p| p.timeout());
        if timeout.is_some_and(|t| now - self.last_any >= t / 2) {
            self.heard.fill(now);
        }
        self.last_any = now;
        self.heard[worker] = now;
        let epoch = self.out.snapshots.len().min(self.shape.run.saturating_sub(1));
        if let Some(b) = self.out.received.get_mut(epoch * self.shape.workers + worker) {
            *b += d.len as u64;
        }
        Ok(Pending {
            worker,
            head,
            body: body.to_vec(),
        })
    }

    /// A worker silent for the stall timeout while others go on (its
    /// server never waits in vain, so the transport's stall report cannot
    /// see it) ends the job with a message naming it. Workers that have
    /// finished, or whose pull this server holds, are not silent.
    fn check_silence(&self, waiting: &[(usize, u64)]) -> Result<()> {
        let Some(timeout) = self.comm.progress().and_then(|p| p.timeout()) else {
            return Ok(());
        };
        let silent = (0..self.shape.workers).find(|&i| {
            !self.done[i] && !waiting.iter().any(|&(w, _)| w == i) && self.heard[i].elapsed() >= timeout
        });
        let Some(i) = silent else {
            return Ok(());
        };
        self.comm.abort_stalled(&format!(
            "parameter-server update #{}: worker rank {} has sent nothing for {} s while the others went on (its last push was #{})",
            self.version + 1,
            i + self.ps.servers,
            crate::transport::format_secs(timeout),
            self.clocks[i]
        ))
    }

    /// Dynamic shares: the planned epochs are all applied.
    fn finished(&self) -> bool {
        self.shape.dynamic && self.out.snapshots.len() >= self.shape.run
    }

    fn apply(&mut self, m: &Pending) {
        let (w, e, first) = (self.shape.workers, self.shape.run, self.shape.first);
        let [_, clock, base, step] = m.head;
        // Batches this push sums: its worker's steps since its last push.
        let count = (step as usize + 1).saturating_sub(self.pushed[m.worker]);
        self.clocks[m.worker] = clock;
        self.pushed[m.worker] = step as usize + 1;
        if self.finished() {
            // Past the planned epochs: dropped, but logged so that a
            // replay meets it in the same place.
            self.out
                .events
                .extend_from_slice(&[PUSH, m.worker as u64, clock, self.version]);
            return;
        }
        floats(&m.body, &mut self.grad);
        let staleness = self.version.saturating_sub(base);
        let total = self.shape.epochs * self.shape.steps;
        let mut lr = self.t.cfg.schedule.rate(self.t.cfg.lr, step as usize, total) / w as f32;
        if self.ps.staleness_lr && staleness >= 1 {
            lr /= staleness as f32;
        }
        let optimizer = &self.t.optimizer;
        match optimizer.momentum().filter(|_| self.ps.discount_momentum) {
            Some(mu) => {
                let mu = stale_momentum(mu, staleness);
                optimizer.step_with_momentum(&mut self.shard, &self.grad, lr, mu, &mut self.state);
            }
            None => optimizer.step(&mut self.shard, &self.grad, lr, &mut self.state),
        }
        self.version += 1;
        let per_epoch = (self.shape.steps * w).max(1);
        let epoch = if self.shape.dynamic {
            self.batches / per_epoch
        } else {
            step as usize / self.shape.steps.max(1)
        }
        .saturating_sub(first)
        .min(e.saturating_sub(1));
        self.batches += count;
        let counts = &mut self.out.hist[epoch][m.worker];
        if counts.len() <= staleness as usize {
            counts.resize(staleness as usize + 1, 0);
        }
        counts[staleness as usize] += 1;
        self.out
            .events
            .extend_from_slice(&[PUSH, m.worker as u64, clock, self.version]);
        // Epochs every worker has finished (dynamic: epochs' worth of
        // batches applied): snapshot once.
        let slowest = self.pushed.iter().copied().min().unwrap_or(0);
        let (dynamic, batches, steps) = (self.shape.dynamic, self.batches, self.shape.steps);
        let ended = |next: usize| match dynamic {
            true => batches >= next * per_epoch,
            false => slowest >= next * steps,
        };
        while self.out.snapshots.len() < e && ended(first + self.out.snapshots.len() + 1) {
            self.snapshot();
        }
        // Evaluations within epochs: every worker has pushed that step.
        while self
            .shape
            .evals
            .get(self.out.points.len())
            .is_some_and(|&g| slowest >= g)
        {
            self.point();
        }
    }

    /// The shard at an epoch's end: kept for scoring, and with a
    /// checkpoint path written (with the optimizer state) as this server's
    /// part of the checkpoint.
    fn snapshot(&mut self) {
        self.out.snapshots.push(self.shard.clone());
        self.out.times.push(self.start.elapsed().as_secs_f64());
        let epoch = self.shape.first + self.out.snapshots.len();
        if let (Some(path), None) = (&self.t.cfg.checkpoint, &self.out.unwritten) {
            let c = Checkpoint::new(
                self.ps.shard_header(self.t, epoch),
                self.shard.clone(),
                self.state.clone(),
                Vec::new(),
            );
            if let Err(e) = c.save(&self.ps.shard_path(path, self.comm.rank())) {
                self.out.unwritten = Some(e);
            }
        }
    }

    /// The shard at an evaluation within an epoch.
    fn point(&mut self) {
        self.out.points.push(self.shard.clone());
        self.out.point_times.push(self.start.elapsed().as_secs_f64());
    }

    fn answer(&mut self, worker: usize, clock: u64) -> Result<()> {
        let kind = if self.aborted {
            ABORT
        } else if self.finished() {
            STOP
        } else {
            REPLY
        };
        let body: &[f32] = if kind == REPLY { &self.shard } else { &[] };
        let m = message(header(kind, 0, self.version, 0), body);
        self.comm.send_tagged(&m, worker + self.ps.servers, TO_WORKER)?;
        self.out
            .events
            .extend_from_slice(&[PULL, worker as u64, clock, self.version]);
        Ok(())
    }

    /// Marks a DONE or ABORT; false for any other message.
    fn ends(&mut self, m: &Pending) -> bool {
        match m.head[0] {
            DONE => self.done[m.worker] = true,
            ABORT => {
                self.aborted = true;
                self.done[m.worker] = true;
            }
            _ => return false,
        }
        true
    }

    fn all_done(&self) -> bool {
        self.done.iter().all(|&d| d)
    }

    /// Bulk-synchronous: applies every complete round of held pushes (one
    /// of each unfinished worker with the next clock), in worker order.
    fn apply_rounds(&mut self, held: &mut Vec<Pending>) {
        loop {
            // A worker whose DONE overtook its held push is still in the round.
            let live: Vec<usize> = (0..self.shape.workers)
                .filter(|&i| !self.done[i] || held.iter().any(|m| m.worker == i))
                .collect();
            let Some(round) = live.iter().map(|&i| self.clocks[i] + 1).min() else {
                return;
            };
            let mut of_round: Vec<Pending> = Vec::new();
            let mut i = 0;
            while i < held.len() {
                if held[i].head[1] == round && live.contains(&held[i].worker) {
                    of_round.push(held.remove(i));
                } else {
                    i += 1;
                }
            }
            if of_round.len() < live.len() {
                held.extend(of_round);
                return;
            }
            of_round.sort_by_key(|m| m.worker);
            for m in &of_round {
                self.apply(m);
            }
        }
    }

    /// As the messages come, pulls answered within the staleness bound.
    /// With a bound of 0 (bulk-synchronous) pushes wait for their round:
    /// every worker of a round computes on the same version, and the round
    /// is applied in worker order.
    fn run(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut waiting: Vec<(usize, u64)> = Vec::new();
        let bsp = self.ps.max_staleness == Some(0);
        let mut held: Vec<Pending> = Vec::new();
        while !self.all_done() {
            let m = self.receive(buf)?;
            match m.head[0] {
                PULL => waiting.push((m.worker, m.head[1])),
                PUSH if bsp => {
                    held.push(m);
                    self.apply_rounds(&mut held);
                }
                PUSH => self.apply(&m),
                kind => {
                    if !self.ends(&m) {
                        return Err(
                            self.fail(format!("unknown message kind {kind} from worker {}", m.worker))
                        );
                    }
                }
            }
            self.check_silence(&waiting)?;
            let slowest = (0..self.shape.workers)
                .filter(|&i| !self.done[i])
                .map(|i| self.clocks[i])
                .min();
            let mut i = 0;
            while i < waiting.len() {
                let (worker, clock) = waiting[i];
                let allowed = match self.ps.max_staleness {
                    None => true,
                    Some(s) => slowest.is_none_or(|low| clock <= low + s),
                };
                if allowed || self.aborted || self.finished() {
                    self.answer(worker, clock)?;
                    waiting.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        if !held.is_empty() && !self.aborted && !self.finished() {
            return Err(self.fail(format!("{} pushes of an unfinished round were left", held.len())));
        }
        Ok(())
    }

    /// In the order of `log`: early messages wait until the log names them.
    fn replay(&mut self, buf: &mut [u8], log: &[[u64; EVENT]]) -> Result<()> {
        let mut early: Vec<Pending> = Vec::new();
        for (i, &[kind, worker, clock, version]) in log.iter().enumerate() {
            let m = loop {
                let at = early
                    .iter()
                    .position(|m| m.worker as u64 == worker && m.head[0] == kind && m.head[1] == clock);
                if let Some(at) = at {
                    break early.remove(at);
                }
                let m = self.receive(buf)?;
                if !self.ends(&m) {
                    early.push(m);
                } else if self.aborted || self.all_done() {
                    return Err(self.fail(format!(
                        "the replay stopped at event {} of the record: a worker ended or stopped before it",
                        i + 1
                    )));
                }
            };
            match kind {
                PUSH => self.apply(&m),
                _ => self.answer(m.worker, clock)?,
            }
            if self.version != version {
                return Err(self.fail(format!(
                    "the replay diverged at event {} of the record: version {} where the record has {version}",
                    i + 1,
                    self.version
                )));
            }
        }
        while !self.all_done() {
            let m = self.receive(buf)?;
            if !self.ends(&m) {
                return Err(self.fail(format!(
                    "worker {} sent a message the record does not hold (kind {}, clock {})",
                    m.worker, m.head[0], m.head[1]
                )));
            }
        }
        if let Some(m) = early.first() {
            return Err(self.fail(format!(
                "worker {} sent a message the record does not hold (kind {}, clock {})",
                m.worker, m.head[0], m.head[1]
            )));
        }
        Ok(())
    }
}

fn serve<S: Strategy, C: AnySource>(
    ps: &ParameterServer,
    t: &Trainer<S>,
    comm: &C,
    params: &[f32],
    shape: &RunShape,
    replay: Option<Vec<[u64; EVENT]>>,
    restored: Option<Checkpoint>,
) -> Result<ServerOut> {
    // Epoch times run from here on every server.
    let start = Instant::now();
    let (w, e) = (shape.workers, shape.run);
    let range = shard_ranges(params.len(), ps.servers)[comm.rank()].clone();
    let (shard, state) = match restored {
        Some(c) => (c.params, c.optimizer),
        None => (
            params[range.clone()].to_vec(),
            OptimizerState::new(t.optimizer.as_ref(), range.len()),
        ),
    };
    let mut buf = vec![0u8; HEADER * 8 + shard.len() * 4];
    let mut sv = Server {
        ps,
        t,
        comm,
        shape,
        start,
        state,
        grad: vec![0f32; shard.len()],
        shard,
        version: 0,
        clocks: vec![0; w],
        done: vec![false; w],
        pushed: vec![shape.first * shape.steps; w],
        batches: shape.first * shape.steps * w,
        heard: vec![Instant::now(); w],
        last_any: Instant::now(),
        aborted: false,
        out: ServerOut {
            unwritten: None,
            snapshots: Vec::new(),
            times: Vec::new(),
            points: Vec::new(),
            point_times: Vec::new(),
            hist: vec![vec![Vec::new(); w]; e],
            received: vec![0; e * w],
            events: Vec::new(),
        },
    };
    match &replay {
        Some(log) => sv.replay(&mut buf, log)?,
        None => sv.run(&mut buf)?,
    }
    while sv.out.points.len() < shape.evals.len() {
        sv.point();
    }
    while sv.out.snapshots.len() < e {
        sv.snapshot();
    }
    Ok(sv.out)
}

fn work<S: Strategy, M: Model, C: AnySource>(
    ps: &ParameterServer,
    t: &Trainer<S>,
    comm: &C,
    model: &M,
    params: &[f32],
    train: &Dataset,
    shape: &RunShape,
) -> Result<WorkerOut> {
    let (r, s, w) = (comm.rank(), ps.servers, shape.workers);
    let wi = r - s;
    let n = params.len();
    let ranges = shard_ranges(n, s);
    let mut local = params.to_vec();
    let mut versions = vec![0u64; s];
    let mut base = vec![0u64; s];
    let mut grad = vec![0f32; n];
    let mut acc = vec![0f32; n];
    let mut in_acc = 0usize;
    let mut clock = 0u64;
    let per = crate::train::batches::largest_share(shape.batch, w);
    let mut x = vec![0f32; per * train.dim];
    let mut y = vec![0u32; per];
    let mut out = WorkerOut {
        loss: vec![0.0; shape.run],
        samples: vec![0; shape.run],
        bytes: vec![0; shape.run],
        point_bytes: Vec::new(),
        stopped: None,
    };
    let mut replies: Vec<Vec<u8>> = ranges
        .iter()
        .map(|r| vec![0u8; HEADER * 8 + r.len() * 4])
        .collect();
    // With dynamic shares a worker runs on (through its parts of later
    // epochs) until a server answers "stop"; what it does past the planned
    // epochs is not reported.
    'run: for epoch in shape.first + 1.. {
        if (!shape.dynamic && epoch > shape.first + shape.run) || shape.steps == 0 {
            break;
        }
        let at = epoch - shape.first - 1;
        let order = t.cfg.batches.order(t.cfg.seed, epoch, train.len(), w);
        for step in 0..shape.steps {
            let g = (epoch - 1) * shape.steps + step;
            if g.is_multiple_of(shape.n_fetch) {
                let (sent, stop) = pull(comm, &mut replies, clock, g, &ranges, &mut versions, &mut local)?;
                if let Some(b) = out.bytes.get_mut(at) {
                    *b += sent;
                }
                if stop {
                    break 'run;
                }
            }
            if in_acc == 0 {
                base.copy_from_slice(&versions);
            }
            let mine = t.cfg.batches.local(&order, shape.batch, step, wi, w);
            for (j, &i) in mine.iter().enumerate() {
                x[j * train.dim..(j + 1) * train.dim].copy_from_slice(train.row(i));
                y[j] = train.labels[i];
            }
            let began = Instant::now();
            let loss = model.loss_and_grad(&local, &x[..mine.len() * train.dim], &y[..mine.len()], &mut grad);
            straggle(t.cfg.straggler, r, began);
            // The summed gradient times w/B: the mean over the workers'
            // pushes is the global batch's mean, whatever the shares.
            let scale = crate::train::batches::share_scale(shape.batch, w);
            let mut finite = loss.is_finite();
            for (a, g) in acc.iter_mut().zip(&grad) {
                let v = g * scale;
                finite &= v.is_finite();
                *a += v;
            }
            if !finite {
                out.stopped = Some((epoch, step + 1));
                for k in 0..s {
                    comm.send_tagged(&message(header(ABORT, clock, 0, g as u64), &[]), k, TO_SERVER)?;
                }
                return Ok(out);
            }
            if at < shape.run {
                out.loss[at] += loss as f64;
                out.samples[at] += mine.len() as u64;
            }
            in_acc += 1;
            if in_acc == shape.n_push || step + 1 == shape.steps {
                clock += 1;
                let sent = push(comm, &ranges, &acc, &base, clock, g)?;
                if let Some(b) = out.bytes.get_mut(at) {
                    *b += sent;
                }
                acc.fill(0.0);
                in_acc = 0;
            }
            if shape.evals.get(out.point_bytes.len()) == Some(&(g + 1)) {
                out.point_bytes.push(out.bytes.get(at).copied().unwrap_or(0));
            }
        }
    }
    for k in 0..s {
        comm.send_tagged(&message(header(DONE, clock, 0, 0), &[]), k, TO_SERVER)?;
    }
    Ok(out)
}

/// A worker's pull at global step `g`: every server's shard into `local`
/// and its version into `versions`. Returns the bytes sent and whether a
/// server answered stop or abort.
fn pull<C: AnySource>(
    comm: &C,
    replies: &mut [Vec<u8>],
    clock: u64,
    g: usize,
    ranges: &[Range<usize>],
    versions: &mut [u64],
    local: &mut [f32],
) -> Result<(u64, bool)> {
    let s = ranges.len();
    // Receives first, then the requests: a server's answer always finds
    // its receive posted.
    let request = message(header(PULL, clock, 0, g as u64), &[]);
    let mut reqs = Vec::with_capacity(2 * s);
    for (k, b) in replies.iter_mut().enumerate() {
        // SAFETY: every request is waited for below, before `replies` is
        // touched again or dropped.
        reqs.push(unsafe { comm.start_recv(b, k, TO_WORKER)? });
    }
    for k in 0..s {
        // SAFETY: as above; `request` outlives the wait.
        reqs.push(unsafe { comm.start_send(&request, k, TO_SERVER)? });
    }
    let mut done = vec![Done::default(); reqs.len()];
    label(comm, "parameter-server pull", clock + 1);
    comm.wait_all(&mut reqs, &mut done)?;
    let sent = (s * request.len()) as u64;
    for (k, b) in replies.iter().enumerate() {
        let (h, body) = parse(b);
        if h[0] == ABORT || h[0] == STOP {
            return Ok((sent, true));
        }
        versions[k] = h[2];
        floats(body, &mut local[ranges[k].clone()]);
    }
    Ok((sent, false))
}

/// A worker's push `clock` of the accumulated gradient `acc` at global
/// step `g`: each shard's slice to its server, computed on versions
/// `base`. Returns the bytes sent.
fn push<C: AnySource>(
    comm: &C,
    ranges: &[Range<usize>],
    acc: &[f32],
    base: &[u64],
    clock: u64,
    g: usize,
) -> Result<u64> {
    let msgs: Vec<Vec<u8>> = ranges
        .iter()
        .enumerate()
        .map(|(k, range)| message(header(PUSH, clock, base[k], g as u64), &acc[range.clone()]))
        .collect();
    let mut reqs = Vec::with_capacity(ranges.len());
    for (k, m) in msgs.iter().enumerate() {
        // SAFETY: waited for below, while `msgs` lives.
        reqs.push(unsafe { comm.start_send(m, k, TO_SERVER)? });
    }
    let mut done = vec![Done::default(); ranges.len()];
    label(comm, "parameter-server push", clock);
    comm.wait_all(&mut reqs, &mut done)?;
    Ok(msgs.iter().map(|m| m.len() as u64).sum())
}

/// A record: per server, its events in order.
#[derive(Debug, Clone, PartialEq)]
struct Log {
    header: String,
    events: HashMap<usize, Vec<[u64; EVENT]>>,
}

impl Log {
    fn write(path: &std::path::Path, shape: &RunShape, every: &[Vec<u64>]) -> Result<()> {
        let mut text = shape.header() + "\n";
        for (k, ev) in every.iter().enumerate() {
            for e in ev.chunks_exact(EVENT) {
                let kind = if e[0] == PUSH { "apply" } else { "serve" };
                text += &format!(
                    "{kind} server={k} worker={} clock={} version={}\n",
                    e[1], e[2], e[3]
                );
            }
        }
        crate::files::write_atomically(path, text.as_bytes()).map_err(|e| Error::Data {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn load(path: &std::path::Path) -> Result<Log> {
        let data = |reason: String| Error::Data {
            path: path.display().to_string(),
            reason,
        };
        let text = crate::files::read_text(path)?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("").to_string();
        if !header.starts_with("# ringreduce ps log v1 ") {
            return Err(data("not a parameter-server record (`--record`)".into()));
        }
        let mut events: HashMap<usize, Vec<[u64; EVENT]>> = HashMap::new();
        for (i, line) in lines.enumerate() {
            let bad = || {
                data(format!(
                    "line {}: `{line}` is not `apply|serve server=K worker=W clock=C version=V`",
                    i + 2
                ))
            };
            let mut f = line.split_whitespace();
            let kind = match f.next() {
                Some("apply") => PUSH,
                Some("serve") => PULL,
                _ => return Err(bad()),
            };
            let mut num = |key: &str| -> Result<u64> {
                f.next()
                    .and_then(|s| s.strip_prefix(key))
                    .and_then(|s| s.strip_prefix('='))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)
            };
            let (k, w, c, v) = (num("server")?, num("worker")?, num("clock")?, num("version")?);
            events.entry(k as usize).or_default().push([kind, w, c, v]);
        }
        Ok(Log { header, events })
    }

    fn fits(&self, shape: &RunShape, path: &Option<PathBuf>) -> Result<()> {
        if self.header == shape.header() {
            return Ok(());
        }
        Err(Error::Data {
            path: path.as_ref().map_or(String::new(), |p| p.display().to_string()),
            reason: format!(
                "the record is of another run (`{}`; this run: `{}`)",
                self.header.trim_start_matches("# ringreduce ps log v1 "),
                shape.header().trim_start_matches("# ringreduce ps log v1 ")
            ),
        })
    }

    fn events_of(&self, server: usize) -> Vec<[u64; EVENT]> {
        self.events.get(&server).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
