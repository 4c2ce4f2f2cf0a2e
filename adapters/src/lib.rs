//! ringreduce's data parallelism for models of real Rust ML frameworks.
//!
//! - `ndarray` (feature `ndarray`): parameters and gradients kept in
//!   [`ndarray`] arrays, handed to [`DataParallel`](ringreduce::train::DataParallel)
//!   as the flat slices they are in memory — no copy of ours.
//! - `candle` (feature `candle`): a candle [`VarMap`](candle_nn::VarMap)'s
//!   variables as registered tensors (in name order, the same on every
//!   rank), each gradient of a [`GradStore`](candle_core::backprop::GradStore)
//!   read where candle keeps it and copied once into its bucket, and the
//!   averaged gradients handed back as a `GradStore` for candle's own
//!   optimizers (one copy per tensor).
//!
//! `examples/lenet.rs` trains a LeNet-style CNN on Fashion-MNIST with
//! candle's autodiff and optimizer, data-parallel through ringreduce.

#[cfg(feature = "candle")]
pub mod candle;
#[cfg(feature = "ndarray")]
pub mod ndarray;
