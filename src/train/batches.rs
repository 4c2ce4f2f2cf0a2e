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
    /// The order in which epoch `epoch` (1-based) visits the `n` examples
    /// on `p` ranks, from the run's `seed`; the same on every rank.
    fn order(&self, seed: u64, epoch: usize, n: usize, p: usize) -> Vec<usize>;
    /// The examples rank `rank` of `p` computes at `step` (0-based), given
    /// the epoch's `order`.
    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize];
}

fn shuffled(mut v: Vec<usize>, seed: u64) -> Vec<usize> {
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    v
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
        if !batch.is_multiple_of(p) {
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

    fn order(&self, seed: u64, epoch: usize, n: usize, _p: usize) -> Vec<usize> {
        shuffled(
            (0..n).collect(),
            seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }

    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize] {
        let local = batch / p;
        &order[step * batch + rank * local..step * batch + (rank + 1) * local]
    }
}

/// Each rank its own part of the data for the whole run: the examples are
/// split once, by a shuffle of the seed, into p shards of ⌊n/p⌋ (the rest
/// is left out); every epoch each rank shuffles its shard and takes B/p
/// examples per step from it — the data layout of SimuParallelSGD and of
/// decentralized SGD, where a node trains on its local data. Steps per
/// epoch are ⌊n/B⌋ as with [`SharedShuffle`]. On one rank it is
/// [`SharedShuffle`] over a fixed permutation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shards;

impl BatchSource for Shards {
    fn check(&self, batch: usize, n: usize, p: usize) -> Result<()> {
        SharedShuffle.check(batch, n, p)
    }

    fn steps(&self, batch: usize, n: usize) -> usize {
        n / batch.max(1)
    }

    fn order(&self, seed: u64, epoch: usize, n: usize, p: usize) -> Vec<usize> {
        let p = p.max(1);
        let m = n / p;
        let split = shuffled((0..n).collect(), seed ^ 0x5348_4152_4453);
        let mut order = Vec::with_capacity(p * m);
        for r in 0..p {
            let mix = (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (r as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            order.extend(shuffled(split[r * m..(r + 1) * m].to_vec(), seed ^ mix));
        }
        order
    }

    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize] {
        let (m, local) = (order.len() / p.max(1), batch / p.max(1));
        &order[rank * m + step * local..rank * m + (step + 1) * local]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_keep_each_rank_on_its_own_examples() {
        let (n, batch, p) = (103, 12, 4);
        let steps = Shards.steps(batch, n);
        let mine = |epoch: usize, r: usize| -> Vec<usize> {
            let order = Shards.order(7, epoch, n, p);
            let mut seen: Vec<usize> = (0..steps)
                .flat_map(|s| Shards.local(&order, batch, s, r, p).to_vec())
                .collect();
            seen.sort_unstable();
            seen
        };
        // Over several epochs a rank sees at most its shard (⌊n/p⌋ = 25
        // examples; each epoch uses 8 steps × 3 = 24 of them), never another's.
        let shard = |r: usize| -> Vec<usize> {
            let mut all: Vec<usize> = (1..=6).flat_map(|e| mine(e, r)).collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        assert_ne!(Shards.order(7, 1, n, p), Shards.order(7, 2, n, p));
        for r in 0..p {
            assert_eq!(mine(1, r).len(), steps * batch / p);
            assert!(
                shard(r).len() <= n / p && shard(r).len() > steps * batch / p,
                "{:?}",
                shard(r)
            );
            for q in 0..r {
                assert!(
                    shard(r).iter().all(|x| !shard(q).contains(x)),
                    "ranks {q} and {r} share examples"
                );
            }
        }
    }
}
