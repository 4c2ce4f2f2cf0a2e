//! Which examples each rank computes at each step.

use std::fmt;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Where every step's examples come from.
pub trait BatchSource: Send + Sync + fmt::Debug {
    /// Checks that a global batch of `batch` suits `n` examples on `p` ranks.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] saying why not.
    fn check(&self, batch: usize, n: usize, p: usize) -> Result<()>;
    /// Steps per epoch for a global batch of `batch` over `n` examples.
    fn steps(&self, batch: usize, n: usize) -> usize;
    /// The order in which epoch `epoch` (1-based) visits the `n` examples,
    /// from the run's `seed`; the same on every rank.
    fn order(&self, seed: u64, epoch: usize, n: usize) -> Vec<usize>;
    /// The examples rank `rank` of `p` computes at `step` (0-based), given
    /// the epoch's `order`.
    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize];
}

/// One shuffle per epoch shared by every rank: step s uses positions
/// `s·B .. (s+1)·B` of it, rank r of p the slice `s·B + r·B/p .. s·B +
/// (r+1)·B/p` — parallel minibatch SGD, the same examples per step on any
/// rank count. The last partial batch is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedShuffle;

impl BatchSource for SharedShuffle {
    fn check(&self, batch: usize, n: usize, p: usize) -> Result<()> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: "training setup",
            reason,
        };
        if batch % p != 0 {
            return Err(invalid(format!(
                "global batch {batch} is not divisible by {p} ranks"
            )));
        }
        if batch > n {
            return Err(invalid(format!(
                "global batch {batch} exceeds the {n} training examples"
            )));
        }
        Ok(())
    }

    fn steps(&self, batch: usize, n: usize) -> usize {
        n / batch.max(1)
    }

    fn order(&self, seed: u64, epoch: usize, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        order
    }

    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize] {
        let local = batch / p;
        &order[step * batch + rank * local..step * batch + (rank + 1) * local]
    }
}
