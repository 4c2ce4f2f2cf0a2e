//! A sharded optimizer step, ZeRO stage 1 (Rajbhandari et al., SC 2020):
//! each of p ranks keeps the optimizer state (momentum, Adam's moments)
//! of its own 1/p of the parameters only.
//!
//! One step: the gradient is reduce-scattered (averaged) so each rank
//! holds the averaged gradient of its shard, the rank updates that shard
//! of the parameters from its shard of the state, and the parameters are
//! all-gathered. The bytes on the wire are the all-reduce's (a reduce-scatter
//! and an all-gather are the ring's two halves); the optimizer's memory and
//! its arithmetic fall to 1/p per rank.
//!
//! The update rules are element-wise and the shards are the ring's chunks
//! in the ring's order, so the step is **bitwise** the unsharded one: an
//! all-reduce of the gradient with [`Algorithm::Ring`](crate::Algorithm::Ring)
//! and the optimizer on the whole buffer, on every rank.
//!
//! ```
//! use ringreduce::train::{Optimizer, Sgd, ShardedOptimizer};
//! use ringreduce::Group;
//! let out = Group::local(2, |g| {
//!     let mut params = vec![1.0f32; 10];
//!     let mut opt = ShardedOptimizer::new(&g, Sgd::new(0.9, 0.0).unwrap(), params.len());
//!     for _ in 0..3 {
//!         let mut grad = vec![0.5 + g.rank() as f32; 10]; // this rank's gradient
//!         opt.step(&g, &mut params, &mut grad, 0.1).unwrap();
//!     }
//!     (params, opt.state_bytes())
//! });
//! assert_eq!(out[0].0, out[1].0);
//! assert_eq!(out[0].1, 5 * 4); // momentum for 5 of the 10 parameters
//! ```

use std::ops::Range;

use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::train::optim::{Optimizer, OptimizerState};
use crate::transport::Transport;

/// An optimizer whose state is sharded over the ranks (ZeRO-1).
#[derive(Debug)]
pub struct ShardedOptimizer<O> {
    optimizer: O,
    state: OptimizerState,
    count: usize,
    shard: Range<usize>,
}

impl<O: Optimizer> ShardedOptimizer<O> {
    /// `optimizer` for `count` parameters over `group`, with zeroed state
    /// for this rank's shard ([`Group::shard`]) only. Not collective.
    pub fn new<C: Transport>(group: &Group<C>, optimizer: O, count: usize) -> Self {
        let shard = group.shard(count);
        let state = OptimizerState::new(&optimizer, shard.len());
        ShardedOptimizer {
            optimizer,
            state,
            count,
            shard,
        }
    }

    /// One data-parallel step: averages `grad` (this rank's gradient of
    /// every parameter; left holding partial sums) over the ranks by a
    /// reduce-scatter, updates this rank's shard of `params` at learning
    /// rate `lr`, and all-gathers `params`. Collective.
    ///
    /// # Errors
    /// `params` or `grad` not `count` long (on this rank; the others get
    /// [`Error::Remote`]), and the errors of the collectives.
    pub fn step<C: Transport>(
        &mut self,
        group: &Group<C>,
        params: &mut [f32],
        grad: &mut [f32],
        lr: f32,
    ) -> Result<()> {
        let n = self.count;
        group.agree(if params.len() == n && grad.len() == n {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "sharded step",
                reason: format!(
                    "{} parameters and {} gradients for an optimizer of {n}",
                    params.len(),
                    grad.len()
                ),
            })
        })?;
        let mine = group.reduce_scatter_in_place(grad, ReduceOp::Avg)?;
        debug_assert_eq!(mine, self.shard);
        self.optimizer
            .step(&mut params[mine.clone()], &grad[mine], lr, &mut self.state);
        group.all_gather_in_place(params)
    }

    /// This rank's shard of the parameters.
    pub fn shard(&self) -> Range<usize> {
        self.shard.clone()
    }

    /// This rank's optimizer state: buffers as long as its shard.
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// Bytes of optimizer state this rank holds: ≈ 1/p of the unsharded
    /// optimizer's (`buffers × count × 4`).
    pub fn state_bytes(&self) -> usize {
        self.state.buffers.iter().map(|b| b.len() * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::train::optim::{Adam, Sgd};
    use crate::Algorithm;

    /// `steps` steps of `make()` sharded and unsharded on p thread ranks
    /// from the same random gradients: the parameters, sharded and not.
    fn both<O: Optimizer>(
        p: usize,
        n: usize,
        steps: usize,
        make: impl Fn() -> O + Sync,
    ) -> Vec<(Vec<f32>, Vec<f32>, usize)> {
        Group::local(p, |g| {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            rng.set_stream(g.rank() as u64);
            let init: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let (mut sharded, mut whole) = (init.clone(), init);
            let mut zero = ShardedOptimizer::new(&g, make(), n);
            let plain = make();
            let mut state = OptimizerState::new(&plain, n);
            for step in 0..steps {
                let grad: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let lr = 0.05 / (1 + step) as f32;
                let mut g1 = grad.clone();
                zero.step(&g, &mut sharded, &mut g1, lr).unwrap();
                let mut g2 = grad;
                g.all_reduce_in_place(&mut g2, ReduceOp::Avg, Algorithm::Ring)
                    .unwrap();
                plain.step(&mut whole, &g2, lr, &mut state);
            }
            (sharded, whole, zero.state_bytes())
        })
    }

    fn assert_bitwise(out: &[(Vec<f32>, Vec<f32>, usize)], what: &str) {
        for (r, (sharded, whole, _)) in out.iter().enumerate() {
            let (a, b): (&[u32], &[u32]) = (bytemuck::cast_slice(sharded), bytemuck::cast_slice(whole));
            assert!(
                a == b,
                "{what}: rank {r}'s sharded parameters differ from the unsharded step"
            );
            assert!(sharded == &out[0].0, "{what}: rank {r} differs from rank 0");
        }
    }

    #[test]
    fn the_sharded_step_is_bitwise_the_unsharded_one_at_2_3_4_ranks() {
        for p in [2, 3, 4] {
            for n in [1, p - 1, 1001] {
                let what = |o: &str| format!("{o} p={p} n={n}");
                assert_bitwise(&both(p, n, 5, || Sgd::new(0.0, 0.0).unwrap()), &what("sgd"));
                assert_bitwise(&both(p, n, 5, || Sgd::new(0.9, 1e-4).unwrap()), &what("momentum"));
                assert_bitwise(&both(p, n, 5, Adam::default), &what("adam"));
            }
        }
    }

    #[test]
    fn each_rank_keeps_a_pth_of_the_state() {
        for p in [1, 2, 3, 4] {
            let n = 1001;
            let out = both(p, n, 1, Adam::default);
            let bytes: Vec<usize> = out.iter().map(|o| o.2).collect();
            // Two moments of 4 bytes for each parameter of the shard.
            assert_eq!(bytes.iter().sum::<usize>(), 2 * 4 * n, "p={p}");
            assert!(
                bytes.iter().all(|&b| b.abs_diff(2 * 4 * n / p) <= 8),
                "p={p}: {bytes:?}"
            );
        }
    }

    #[test]
    fn a_wrong_length_is_an_error_on_every_rank() {
        let out = Group::local(2, |g| {
            let mut opt = ShardedOptimizer::new(&g, Sgd::new(0.0, 0.0).unwrap(), 4);
            let mut params = vec![0.0f32; if g.rank() == 1 { 3 } else { 4 }];
            opt.step(&g, &mut params, &mut [1.0; 4], 0.1)
                .unwrap_err()
                .to_string()
        });
        assert!(
            out[1].contains("3 parameters and 4 gradients for an optimizer of 4"),
            "{}",
            out[1]
        );
        assert!(out[0].contains("rank 1"), "{}", out[0]);
    }
}
