//! # ringreduce
//!
//! MPI-style all-reduce for distributed machine learning, on top of rsmpi:
//! naive, butterfly (recursive doubling), bandwidth-optimal ring, and the
//! parameter-server "central" pattern as a baseline.
//!
//! Layers, bottom to top (arrows only point down):
//! - [`element`]: element types, ops, fast reduce kernels;
//! - [`transport`]: rank, size, non-blocking byte movement — [`Mpi`],
//!   [`Local`] (threads), [`Counting`];
//! - [`algorithms`]: one file per all-reduce schedule with its exact cost;
//! - [`cost`]: predicted time, `auto`'s choice, calibration files;
//! - [`group`]: the front door — [`Group`] owns a transport, the settings
//!   and the call checks, and offers every collective;
//! - `train` (feature `train`): data, models on flat buffers, optimizers,
//!   the training loop and its strategies;
//! - `hogwild` (feature `train`): Hogwild!, threads updating one shared
//!   model through relaxed atomics on sparse problems; beside `train`, not
//!   in it (it borrows only the data files' reader);
//! - tools (feature `tools`): `verify`, `bench`, `soak`, `calibrate`, the
//!   subcommands of the `ringreduce` binary (feature `cli`).
//!
//! ```
//! use ringreduce::{Algorithm, Group, ReduceOp};
//! // Four ranks as threads; under mpirun use `Group::mpi(&world)`.
//! let results = Group::local(4, |g| {
//!     let mut grad = vec![g.rank() as f32; 6];
//!     g.all_reduce_in_place(&mut grad, ReduceOp::Avg, Algorithm::Ring).unwrap();
//!     grad
//! });
//! assert!(results.iter().all(|g| g == &vec![1.5; 6]));
//! ```
#![warn(missing_docs)]

pub mod algorithms;
pub mod compress;
pub mod cost;
pub mod element;
pub mod error;
pub mod group;
pub mod transport;

pub mod files;
mod scratch;
mod wire;

#[cfg(feature = "tools")]
pub mod bench;
#[cfg(feature = "tools")]
pub mod calibrate;
#[cfg(feature = "train")]
pub mod hogwild;
#[cfg(feature = "cli")]
pub mod plot;
#[cfg(feature = "tools")]
pub mod soak;
#[cfg(feature = "tools")]
pub mod summary;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "tools")]
pub mod units;
#[cfg(feature = "tools")]
pub mod vendor;
#[cfg(feature = "tools")]
pub mod verify;

pub use algorithms::{chunk_range, Algorithm};
pub use element::{DType, Element, Order, ReduceOp};
pub use error::{Error, Result};
pub use group::{all_reduce, all_reduce_in_place, check, CheckConfig, Group, Settings};
pub use transport::{AnySource, CallStats, Counting, Local, LocalEndpoint, Mpi, Transport};

// Re-exported so users name the same versions the API exposes.
pub use half;
pub use mpi;
