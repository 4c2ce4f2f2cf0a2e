//! Data-parallel training on flat buffers (feature `train`).
//!
//! The pieces, each replaceable:
//! - [`Model`]: a differentiable classifier over one flat parameter buffer
//!   ([`Mlp`] built in);
//! - [`Optimizer`]: the update rule ([`Sgd`] with momentum and weight decay,
//!   [`Adam`]); its state lives in the loop and in checkpoints;
//! - [`BatchSource`]: which examples each rank computes at each step
//!   ([`SharedShuffle`]: one shuffle, every global batch split across ranks;
//!   [`Shards`]: each rank its own part of the data for the whole run);
//! - [`Strategy`]: what crosses the network around each step
//!   ([`GradientAllReduce`]: synchronous data parallelism; [`LocalSgd`]:
//!   local SGD, post-local SGD and one-shot model averaging; [`Gossip`]:
//!   decentralized SGD on a [`topology`]; [`AnyStrategy`]: any of them,
//!   parsed from its command-line spelling);
//! - [`ShardedOptimizer`]: ZeRO-1, the optimizer state split over the
//!   ranks (a reduce-scatter, a sharded update, an all-gather), bitwise the
//!   unsharded step;
//! - [`Trainer`]: the loop — batches, gradients, the strategy's hooks, the
//!   optimizer, metrics, checkpoints and resume.
//!
//! [`SyncSgd`] is the trainer with the gradient all-reduce: every rank
//! computes the gradient of its slice of each global batch, the flat
//! gradient buffer is averaged over the ranks every step, and every rank
//! applies the same update — parallel minibatch SGD, equal to serial
//! minibatch SGD with the same global batch.
//!
//! ```
//! use ringreduce::train::{data, Adam, Mlp, Model, SyncSgd};
//! use ringreduce::{Algorithm, Group};
//! let train = data::synthetic(240, 4, 3, 1);
//! let model = Mlp::softmax(4, 3).unwrap();
//! let sgd = SyncSgd::builder().batch(24).lr(0.05).epochs(3).optimizer(Adam::default()).build().unwrap();
//! let accuracy = Group::local(2, |g| {
//!     let mut params = sgd.init_params(&model);
//!     let metrics = sgd.fit(&g, &model, &mut params, &train, Some(&train), |_| {}).unwrap();
//!     metrics.last().unwrap().test_accuracy.unwrap()
//! });
//! assert!(accuracy[0] > 0.8 && accuracy[0] == accuracy[1]);
//! ```

mod batches;
pub mod buckets;
pub mod checkpoint;
pub mod codec;
pub mod data;
mod ddp;
mod exchange;
pub mod log;
mod model;
mod optim;
pub mod plan;
pub mod ps;
pub mod strategies;
pub mod topology;
pub mod trace;
mod trainer;
mod zero;

pub use self::batches::{BatchSource, Shards, SharedShuffle};
pub use self::buckets::{BucketChoice, BucketHook, BucketSize};
pub use self::data::Dataset;
pub use self::ddp::{Accumulate, DataParallel, GradientSync};
pub use self::exchange::{Exchange, Ready, StepAt, Synced};
pub use self::log::MetricsLog;
pub use self::model::{Matrix, Mlp, Model};
pub use self::optim::{Adam, LrSchedule, Optimizer, OptimizerState, Sgd};
pub use self::plan::{Plan, PlanOptions};
pub use self::ps::{ParameterServer, PsTraffic};
pub use self::strategies::*;
pub use self::topology::Topology;
pub use self::trace::TraceEvent;
pub use self::trainer::{
    EpochMetrics, EvalPoint, PlanEpoch, Resumed, StepMetrics, SyncSgd, Trainer, TrainerBuilder, MAX_STRAGGLER,
};
pub use self::zero::ShardedOptimizer;
