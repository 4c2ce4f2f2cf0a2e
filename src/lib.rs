//! # ringreduce
//!
//! MPI-style collectives and distributed training for machine learning, on
//! top of rsmpi: all-reduce by the naive ring, the butterfly (recursive
//! doubling), the bandwidth-optimal ring and its pipelined form,
//! Rabenseifner, the parameter-server "central" pattern, a hierarchical
//! and a shared-memory path, and `auto` (chosen by a calibrated cost
//! model); with feature `train`, a data-parallel trainer and the other ways
//! to train — local SGD, DiLoCo, gossip, gradient compression, an
//! asynchronous parameter server, Hogwild!. The book is in `docs/`.
//!
//! Layers, bottom to top. Arrows only point down: a module names only
//! modules of its own layer or of those below, never one above, and names
//! nothing through the crate root's re-exports (`tests/layers.rs` holds
//! every module of `src/` to it):
//! - the ground: [`error`]; [`element`] — element types, ops, fast reduce
//!   kernels; small helpers beside them ([`files`], `wire`, `scratch`, and
//!   `units` with feature `tools`);
//! - [`transport`]: rank, size, non-blocking byte movement — [`Mpi`],
//!   [`Local`] (threads), [`Counting`]; an MPI communicator can be handed
//!   to a second thread ([`transport::ThreadDuplicate`]);
//! - [`algorithms`]: one file per all-reduce schedule with its exact cost;
//!   a schedule sees the transport and the few knobs a call passes down
//!   (the pipelined ring's segment count), nothing of the layers above;
//! - [`cost`]: predicted time, `auto`'s choice, calibration files, and the
//!   price of the call checks (their header, [`cost::FUSE_MAX`]);
//! - [`compress`]: fewer bytes on the wire — 16-bit wires, linear and
//!   gathered compressors, and the time their codecs take;
//! - [`group`]: the front door — [`Group`] owns a transport, the settings
//!   and the call checks, offers every collective, and builds the
//!   communication thread ([`group::Overlapped`]) from the transport's;
//! - `train` (feature `train`): data, models on flat buffers, optimizers,
//!   the training loop and its strategies;
//! - `hogwild` (feature `train`): Hogwild!, threads updating one shared
//!   model through relaxed atomics on sparse problems; beside `train`, not
//!   in it (it reads data files through [`files`]);
//! - tools (feature `tools`): `vendor` (the MPI library's own collectives,
//!   to compare with), `calibrate`, `verify`, `bench`, `soak`, `summary`,
//!   and `plot` with the subcommands of the `ringreduce` binary (feature
//!   `cli`).
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
