//! # ringreduce
//!
//! MPI-style all-reduce for distributed machine learning, on top of rsmpi:
//! naive, butterfly (recursive doubling), bandwidth-optimal ring, and the
//! parameter-server "central" pattern as a baseline.
//!
//! Layers, bottom to top: [`element`] (types, ops, reduce kernels),
//! [`transport`] (rank, size, send, recv, sendrecv; MPI, threads, counting),
//! [`algorithms`] (one file each, written against the transport only),
//! [`cost`] (rounds, bytes and predicted time; what `Auto` chooses by),
//! [`train`] (data, models on flat buffers, synchronous data-parallel SGD).
//! [`check`] keeps every call honest (mismatched calls, stalled ranks).
//! Beside them: [`verify`], [`soak`], [`bench`](mod@bench) and [`calibrate`] (what the
//! `ringreduce` subcommands of those names run), [`plot`] (PNG/SVG charts)
//! and [`units`] (byte sizes on command lines).
//!
//! ```
//! use ringreduce::{all_reduce_in_place, Algorithm, Local, ReduceOp, Transport};
//! // Four ranks as threads; under mpirun use `ringreduce::Mpi::new(&world)`.
//! let results = Local::run(4, |t| {
//!     let mut grad = vec![t.rank() as f32; 6];
//!     all_reduce_in_place(&t, &mut grad, ReduceOp::Avg, Algorithm::Ring).unwrap();
//!     grad
//! });
//! assert!(results.iter().all(|g| g == &vec![1.5; 6]));
//! ```
#![warn(missing_docs)]

pub mod algorithms;
pub mod bench;
pub mod calibrate;
pub mod check;
pub mod cost;
pub mod element;
pub mod error;
pub mod plot;
pub mod soak;
pub mod train;
pub mod transport;
pub mod units;
pub mod verify;

mod scratch;

pub use algorithms::{all_reduce, all_reduce_in_place, chunk_range, Algorithm};
pub use element::{DType, Element, Order, ReduceOp};
pub use error::{Error, Result};
pub use transport::{CallStats, Counting, Local, LocalEndpoint, Mpi, Transport};

// Re-exported so `with_dtype!` and users can name the 16-bit types.
pub use half;
