//! Synchronous data-parallel SGD: every rank computes the gradient of its
//! slice of each global batch, the flat gradient buffer is all-reduced
//! (average) every step, and every rank applies the same update — parallel
//! minibatch SGD, equal to serial minibatch SGD with the same global batch.
//!
//! ```
//! use ringreduce::train::{data, Mlp, Model, SyncSgd};
//! use ringreduce::{Local, Algorithm};
//! let train = data::synthetic(240, 4, 3, 1);
//! let model = Mlp::softmax(4, 3).unwrap();
//! let sgd = SyncSgd::builder().batch(24).lr(0.5).epochs(3).algorithm(Algorithm::Ring).build().unwrap();
//! let accuracy = Local::run(2, |t| {
//!     let mut params = sgd.init_params(&model);
//!     let metrics = sgd.fit(&t, &model, &mut params, &train, Some(&train), |_| {}).unwrap();
//!     metrics.last().unwrap().test_accuracy
//! });
//! assert!(accuracy[0] > 0.8 && accuracy[0] == accuracy[1]);
//! ```

pub mod checkpoint;
pub mod data;
mod model;
mod sgd;

pub use self::data::Dataset;
pub use self::model::{Mlp, Model};
pub use self::sgd::{EpochMetrics, Schedule, SyncSgd, SyncSgdBuilder};
