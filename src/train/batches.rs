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
    /// Steps per epoch for a global batch of `batch` over `n` examples on
    /// `p` ranks.
    fn steps(&self, batch: usize, n: usize, p: usize) -> usize;
    /// The order in which epoch `epoch` (1-based) visits the `n` examples
    /// on `p` ranks, from the run's `seed`; the same on every rank.
    fn order(&self, seed: u64, epoch: usize, n: usize, p: usize) -> Vec<usize>;
    /// The examples rank `rank` of `p` computes at `step` (0-based), given
    /// the epoch's `order`: [`share`]`(batch, rank, p)` of them.
    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize];
}

/// Rank `rank`'s part of a global batch of `batch` on `p` ranks, as a
/// range of positions in the batch: ⌊B/p⌋ examples each and one more for
/// the first B mod p ranks, so any batch of at least p examples splits on
/// any rank count. The global batch's mean gradient is then the mean of
/// the ranks' gradients each scaled by its share ([`share_scale`]), not
/// the mean of their local means.
pub fn share(batch: usize, rank: usize, p: usize) -> std::ops::Range<usize> {
    let p = p.max(1);
    let at = |r: usize| r * (batch / p) + r.min(batch % p);
    at(rank)..at(rank + 1)
}

/// The factor on a rank's summed gradient that makes the mean over `p`
/// ranks the mean over the global batch of `batch` examples: p/B, whatever
/// the rank's share. With an even split it is 1/(B/p), the local mean's
/// factor, to the bit (both are the correctly rounded p/B).
pub fn share_scale(batch: usize, p: usize) -> f32 {
    (p.max(1) as f64 / batch.max(1) as f64) as f32
}

/// The largest share of a global batch of `batch` on `p` ranks: ⌈B/p⌉.
pub fn largest_share(batch: usize, p: usize) -> usize {
    batch.div_ceil(p.max(1))
}

/// The checks every source shares: each rank gets at least one example of
/// a batch, and a batch fits in the data.
fn check_batch(batch: usize, n: usize, p: usize) -> Result<()> {
    let invalid = |reason: String| Error::InvalidArgument {
        what: "training setup",
        reason,
    };
    if batch < p {
        return Err(invalid(format!(
            "global batch {batch} leaves some of the {p} ranks without an example: use a batch of at least {p}"
        )));
    }
    if batch > n {
        return Err(invalid(format!(
            "global batch {batch} exceeds the {n} training examples"
        )));
    }
    Ok(())
}

fn shuffled(mut v: Vec<usize>, seed: u64) -> Vec<usize> {
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    v
}

/// One shuffle per epoch shared by every rank: step s uses positions
/// `s·B .. (s+1)·B` of it, rank r of p its [`share`] of them — parallel
/// minibatch SGD, the same examples per step on any rank count. The last
/// partial batch is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedShuffle;

impl BatchSource for SharedShuffle {
    fn check(&self, batch: usize, n: usize, p: usize) -> Result<()> {
        check_batch(batch, n, p)
    }

    fn steps(&self, batch: usize, n: usize, _p: usize) -> usize {
        n / batch.max(1)
    }

    fn order(&self, seed: u64, epoch: usize, n: usize, _p: usize) -> Vec<usize> {
        shuffled(
            (0..n).collect(),
            seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }

    fn local<'a>(&self, order: &'a [usize], batch: usize, step: usize, rank: usize, p: usize) -> &'a [usize] {
        let mine = share(batch, rank, p);
        &order[step * batch + mine.start..step * batch + mine.end]
    }
}

/// Each rank its own part of the data for the whole run: the examples are
/// split once, by a shuffle of the seed, into p shards of ⌊n/p⌋ (the rest
/// is left out); every epoch each rank shuffles its shard and takes its
/// [`share`] of the global batch per step from it — the data layout of
/// SimuParallelSGD and of decentralized SGD, where a node trains on its
/// local data. Steps per epoch are as many as the largest share fits in a
/// shard, ⌊⌊n/p⌋/⌈B/p⌉⌋: ⌊n/B⌋ as with [`SharedShuffle`] when p divides B.
/// On one rank it is [`SharedShuffle`] over a fixed permutation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shards;

impl BatchSource for Shards {
    fn check(&self, batch: usize, n: usize, p: usize) -> Result<()> {
        check_batch(batch, n, p)?;
        if self.steps(batch, n, p) == 0 {
            return Err(Error::InvalidArgument {
                what: "training setup",
                reason: format!(
                    "a shard of {} examples ({n} on {p} ranks) holds no step of {} examples (global batch {batch})",
                    n / p.max(1),
                    largest_share(batch, p)
                ),
            });
        }
        Ok(())
    }

    fn steps(&self, batch: usize, n: usize, p: usize) -> usize {
        (n / p.max(1)) / largest_share(batch, p).max(1)
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
        let (m, local) = (order.len() / p.max(1), share(batch, rank, p).len());
        &order[rank * m + step * local..rank * m + (step + 1) * local]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_keep_each_rank_on_its_own_examples() {
        let (n, batch, p) = (103, 12, 4);
        let steps = Shards.steps(batch, n, p);
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

    #[test]
    fn shares_split_any_batch_on_any_rank_count_exactly() {
        for p in 1..=9 {
            for batch in p..=3 * p + 5 {
                let parts: Vec<_> = (0..p).map(|r| share(batch, r, p)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[p - 1].end, batch, "p={p} B={batch}");
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let (lo, hi) = (batch / p, batch.div_ceil(p));
                assert!(parts.iter().all(|r| r.len() == lo || r.len() == hi));
                assert_eq!(parts.iter().map(|r| r.len()).max(), Some(largest_share(batch, p)));
            }
        }
        // 128 on 3 ranks: 43, 43, 42.
        assert_eq!(
            (0..3).map(|r| share(128, r, 3).len()).collect::<Vec<_>>(),
            [43, 43, 42]
        );
        // Even splits keep the local mean's factor, to the bit.
        for (batch, p) in [(128, 4), (240, 2), (96, 3), (128, 1)] {
            assert_eq!(share_scale(batch, p), 1.0 / (batch / p) as f32);
        }
    }

    #[test]
    fn every_example_of_a_step_is_computed_once_at_any_rank_count() {
        let (n, batch) = (1000, 128);
        for p in [1, 3, 5, 7] {
            let order = SharedShuffle.order(3, 1, n, p);
            for step in 0..SharedShuffle.steps(batch, n, p) {
                let mut got: Vec<usize> = (0..p)
                    .flat_map(|r| SharedShuffle.local(&order, batch, step, r, p).to_vec())
                    .collect();
                got.sort_unstable();
                let mut want = order[step * batch..(step + 1) * batch].to_vec();
                want.sort_unstable();
                assert_eq!(got, want, "p={p} step={step}");
            }
            // Shards: each rank within its own shard, its share per step.
            let order = Shards.order(3, 1, n, p);
            let m = n / p;
            for r in 0..p {
                for step in 0..Shards.steps(batch, n, p) {
                    let mine = Shards.local(&order, batch, step, r, p);
                    assert_eq!(mine.len(), share(batch, r, p).len());
                    assert!(mine.iter().all(|i| order[r * m..(r + 1) * m].contains(i)));
                }
            }
        }
    }

    #[test]
    fn batches_that_leave_a_rank_idle_or_overflow_are_errors() {
        let err = SharedShuffle.check(2, 100, 3).unwrap_err().to_string();
        assert!(err.contains("at least 3"), "{err}");
        assert!(SharedShuffle.check(128, 100, 3).is_err());
        assert!(SharedShuffle.check(128, 1000, 7).is_ok());
        // 10 examples on 3 ranks: shards of 3 hold no step of 4.
        let err = Shards.check(10, 10, 3).unwrap_err().to_string();
        assert!(err.contains("holds no step"), "{err}");
    }
}
