//! Decentralized SGD (D-PSGD, Lian et al. 2017): every step each rank
//! averages its parameters with its neighbours' on a graph, then steps.

use crate::algorithms::Algorithm;
use crate::element::ReduceOp;
use crate::error::Result;
use crate::group::Group;
use crate::transport::Transport;

use super::{Registered, Spelling, Step, Strategy, Tally};
use crate::train::topology::Topology;
use crate::train::OptimizerState;

/// Gossip SGD on a [`Topology`].
///
/// Step t on rank i: the gradient g_i is computed at its own parameters
/// x_i; the rank sends x_i to its out-neighbours and receives its
/// in-neighbours' (one round, all at once); it sets x_i ← Σ_j W_ij·x_j
/// (the topology's weights, self included) and then applies g_i with the
/// optimizer: x_i^{t+1} = Σ_j W_ij x_j^t − η·g_i(x_i^t). W is doubly
/// stochastic, so the ranks' average moves exactly as synchronous SGD's
/// would with the mean of the g_i (up to rounding). Batches are as in
/// synchronous SGD (each rank B/p examples of each global batch). The last
/// step of the run ends with one all-reduce average, so the trained model
/// is the consensus model (counted in the bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Gossip {
    /// The graph.
    pub topology: Topology,
    received: Vec<f32>,
}

impl Gossip {
    /// Gossip on `topology`.
    pub fn new(topology: Topology) -> Self {
        Gossip {
            topology,
            received: Vec::new(),
        }
    }

    /// Mixes `params` with the neighbours' per the topology's plan for
    /// global step `step`: x ← Σ_j W_ij·x_j. Returns the bytes this rank
    /// sent. Collective.
    ///
    /// # Errors
    /// A topology that cannot be formed on the group, or a transport failure.
    pub fn mix<C: Transport>(&mut self, group: &Group<C>, step: usize, params: &mut [f32]) -> Result<u64> {
        let plan = self.topology.plan(group.size(), group.rank(), step);
        let n = params.len();
        self.received.resize(plan.recv_from.len() * n, 0.0);
        group.neighbor_exchange(params, &plan.send_to, &plan.recv_from, &mut self.received)?;
        let own = plan.self_weight as f32;
        let weights: Vec<f32> = plan.weights.iter().map(|&w| w as f32).collect();
        for (i, x) in params.iter_mut().enumerate() {
            let mut acc = own * *x;
            for (k, &w) in weights.iter().enumerate() {
                acc += w * self.received[k * n + i];
            }
            *x = acc;
        }
        Ok((plan.send_to.len() * std::mem::size_of_val(params)) as u64)
    }
}

impl Strategy for Gossip {
    fn name(&self) -> String {
        format!("gossip:{}", self.topology)
    }

    fn replicas_differ(&self) -> bool {
        true
    }

    fn check(&self, p: usize) -> Result<()> {
        self.topology.check(p)
    }

    fn after_backward<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _grad: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn before_update<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        params: &mut [f32],
        _grad: &[f32],
    ) -> Result<()> {
        let step = ctx.global_step();
        let sent = ctx.timed(|g| self.mix(g, step, params))?;
        ctx.count(sent, u64::from(sent > 0));
        Ok(())
    }

    fn after_step<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        params: &mut [f32],
        _optimizer: &mut OptimizerState,
    ) -> Result<()> {
        if ctx.is_last() {
            ctx.all_reduce(params, ReduceOp::Avg, Algorithm::Ring)?;
        }
        Ok(())
    }
}

impl Registered for Gossip {
    const SYNOPSIS: &'static str = "gossip:ring|torus|expo|expo1|complete|edges=0-1/1-2/…";
    const HELP: &'static str =
        "decentralized SGD: every step each rank averages its parameters with its neighbours' on the graph";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        if s.kind() != "gossip" {
            return None;
        }
        Some(match s.rest() {
            "" => Err(s.invalid(format!(
                "`{}` names no topology (gossip:ring, torus, expo, expo1, complete or edges=0-1/…)",
                s.text()
            ))),
            rest => rest.parse().map(Gossip::new),
        })
    }

    fn communication(&self, t: &mut Tally<'_>) {
        for step in 0..t.steps {
            // The busiest rank of the step: the most out-neighbours.
            let sends = (0..t.p)
                .map(|r| self.topology.plan(t.p, r, step).send_to.len())
                .max()
                .unwrap_or(0);
            let bytes = (sends * t.params * 4) as u64;
            if bytes > 0 {
                let line = t.cost.line_for(bytes);
                t.add(bytes, 1, line.alpha + bytes as f64 * line.beta);
            }
        }
        if t.steps > 0 {
            t.all_reduce(Algorithm::Ring, t.params, 1);
        }
    }

    fn describe(&self, p: usize) -> String {
        match self.topology.spectral_gap(p) {
            Some(gap) => format!("{}, spectral gap {gap:.4} per step", self.name()),
            None => self.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// Every rank's vector, gathered.
    fn gather<C: Transport>(g: &Group<C>, x: &[f32]) -> Vec<Vec<f32>> {
        let mut all = vec![0f32; g.size() * x.len()];
        g.all_gather(x, &mut all).unwrap();
        all.chunks(x.len()).map(<[f32]>::to_vec).collect()
    }

    fn mean(v: &[Vec<f32>], i: usize) -> f64 {
        v.iter().map(|x| f64::from(x[i])).sum::<f64>() / v.len() as f64
    }

    /// The ranks' average after a gossip step (mix, then x −= η·g with each
    /// rank's own gradient) is the synchronous SGD step of the average:
    /// x̄' = x̄ − η·mean(g_i). W is doubly stochastic; the only difference
    /// is float rounding: |error| ≤ 1e-5 for |x|, |g| ≤ 1 (f32 with p ≤ 5
    /// terms of weight ≤ 1/2 and 6 steps).
    #[test]
    fn a_gossip_step_moves_the_average_like_synchronous_sgd() {
        let n = 257;
        for name in ["ring", "torus", "expo", "expo1", "complete"] {
            for p in 2..=5 {
                let topology: Topology = name.parse().unwrap();
                if topology.check(p).is_err() {
                    continue;
                }
                let worst = Group::local(p, |g| {
                    let mut gossip = Gossip::new(topology.clone());
                    let mut x = random(g.rank() as u64, n);
                    let mut worst = 0f64;
                    for step in 0..6 {
                        let grad = random(100 + (step * p + g.rank()) as u64, n);
                        let (before, grads) = (gather(&g, &x), gather(&g, &grad));
                        gossip.mix(&g, step, &mut x).unwrap();
                        for (xi, gi) in x.iter_mut().zip(&grad) {
                            *xi -= 0.1 * gi;
                        }
                        let after = gather(&g, &x);
                        for i in 0..n {
                            let expected = mean(&before, i) - 0.1 * mean(&grads, i);
                            worst = worst.max((mean(&after, i) - expected).abs());
                        }
                    }
                    worst
                });
                assert!(worst.iter().all(|&w| w <= 1e-5), "{name} p={p}: {worst:?}");
            }
        }
    }

    #[test]
    fn on_the_complete_graph_one_mix_gives_every_rank_the_average() {
        for p in 2..=5 {
            let out = Group::local(p, |g| {
                let mut x = random(7 + g.rank() as u64, 100);
                let mut avg = x.clone();
                g.all_reduce_in_place(&mut avg, crate::element::ReduceOp::Avg, Algorithm::Ring)
                    .unwrap();
                let sent = Gossip::new(Topology::Complete).mix(&g, 0, &mut x).unwrap();
                assert_eq!(sent, ((p - 1) * 100 * 4) as u64);
                x.iter()
                    .zip(&avg)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
            });
            assert!(out.iter().all(|&d| d <= 1e-6), "p={p}: {out:?}");
        }
    }
}
