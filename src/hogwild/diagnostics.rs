//! How sparse a problem is, in the terms of the Hogwild! analysis.
//!
//! For examples e with supports (the coordinates each reads and writes):
//! - Ω = max |e|, the largest support;
//! - Δ = max over coordinates u of |{e : u ∈ e}| / n, the largest share of
//!   examples touching one coordinate;
//! - ρ = max over examples e of |{e' : e' ∩ e ≠ ∅}| / n (e counts itself),
//!   the largest share of examples one example conflicts with;
//! - the average degree of the conflict graph (examples adjacent when their
//!   supports share a coordinate; no self-loops): the perturbed-iterate
//!   analysis of Hogwild! (Mania, Pan, Papailiopoulos, Recht, Ramchandran,
//!   Jordan, "Perturbed Iterate Analysis for Asynchronous Stochastic
//!   Optimization", SIAM J. Optim. 2017) bounds the asynchrony noise by
//!   SGD's own when the number of updates in flight τ ≤ n / (2·average
//!   degree).
//!
//! Ω and Δ are exact. ρ and the degree need, per example, the union of its
//! coordinates' example lists: exact up to [`EXACT_UP_TO`] examples, and
//! beyond that estimated on a seeded sample (said in
//! [`Diagnostics::sampled`]).

use rand::seq::index::sample;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::models::Problem;

/// Problems of at most this many examples get exact ρ and degree.
pub const EXACT_UP_TO: usize = 2000;

/// Examples sampled for ρ and the degree of a larger problem (fewer when
/// they would visit more than [`VISIT_BUDGET`] list entries).
pub const SAMPLE: usize = 1000;

/// Largest number of example-list entries the sample may visit.
pub const VISIT_BUDGET: u64 = 300_000_000;

/// The sparsity figures of a problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// Examples (n).
    pub examples: usize,
    /// Coordinates (parameters).
    pub dim: usize,
    /// Ω: the largest support.
    pub omega: usize,
    /// Mean support.
    pub mean_support: f64,
    /// Δ: the largest share of examples touching one coordinate.
    pub delta: f64,
    /// ρ: the largest share of examples one example conflicts with (itself included).
    pub rho: f64,
    /// Average degree of the conflict graph.
    pub avg_degree: f64,
    /// `None`: ρ and the degree are exact; `Some(k)`: over a sample of k examples.
    pub sampled: Option<usize>,
}

impl Diagnostics {
    /// Computes the figures of `problem` (the sample drawn with `seed`).
    pub fn of<P: Problem + ?Sized>(problem: &P, seed: u64) -> Diagnostics {
        let n = problem.examples();
        let dim = problem.dim();
        // Each coordinate's examples (compressed, as CSC).
        let mut counts = vec![0u32; dim];
        let mut support = Vec::new();
        let mut omega = 0usize;
        let mut total = 0u64;
        for e in 0..n {
            problem.support(e, &mut support);
            omega = omega.max(support.len());
            total += support.len() as u64;
            for &u in &support {
                counts[u as usize] += 1;
            }
        }
        let mut start = Vec::with_capacity(dim + 1);
        start.push(0usize);
        for &c in &counts {
            start.push(start.last().copied().unwrap_or(0) + c as usize);
        }
        let mut fill = start.clone();
        let mut members = vec![0u32; total as usize];
        for e in 0..n {
            problem.support(e, &mut support);
            for &u in &support {
                members[fill[u as usize]] = e as u32;
                fill[u as usize] += 1;
            }
        }
        let delta_count = counts.iter().copied().max().unwrap_or(0);
        let chosen: Vec<usize> = if n <= EXACT_UP_TO {
            (0..n).collect()
        } else {
            sample(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xD1A6), n, SAMPLE).into_vec()
        };
        // Visit each chosen example's neighbours, stamping them once.
        let mut stamp = vec![u32::MAX; n];
        let (mut max_nb, mut sum_nb, mut visited, mut done) = (0usize, 0u64, 0u64, 0usize);
        for (k, &e) in chosen.iter().enumerate() {
            problem.support(e, &mut support);
            let mut nb = 0usize;
            for &u in &support {
                let list = &members[start[u as usize]..start[u as usize + 1]];
                visited += list.len() as u64;
                for &f in list {
                    if stamp[f as usize] != k as u32 {
                        stamp[f as usize] = k as u32;
                        nb += 1;
                    }
                }
            }
            // An example with an empty support conflicts with nothing, not even itself.
            max_nb = max_nb.max(nb);
            sum_nb += nb.saturating_sub(1) as u64;
            done += 1;
            if n > EXACT_UP_TO && visited > VISIT_BUDGET && done >= 50 {
                break;
            }
        }
        let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        Diagnostics {
            examples: n,
            dim,
            omega,
            mean_support: if n == 0 { 0.0 } else { total as f64 / n as f64 },
            delta: frac(delta_count as usize),
            rho: frac(max_nb),
            avg_degree: if done == 0 {
                0.0
            } else {
                sum_nb as f64 / done as f64
            },
            sampled: (done < n).then_some(done),
        }
    }

    /// The τ (updates in flight) up to which the analysis bounds the
    /// asynchrony noise by SGD's own: n / (2·average degree).
    pub fn tau_bound(&self) -> f64 {
        if self.avg_degree == 0.0 {
            f64::INFINITY
        } else {
            self.examples as f64 / (2.0 * self.avg_degree)
        }
    }
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.sampled {
            None => "exact".to_string(),
            Some(k) => format!("ρ and degree from {k} sampled examples"),
        };
        write!(
            f,
            "{} examples, {} coordinates: Ω {} (mean support {:.1}), Δ {:.4}, ρ {:.4}, average conflict degree {:.1} ({how}); τ ≤ n/(2·degree) = {:.1}",
            self.examples,
            self.dim,
            self.omega,
            self.mean_support,
            self.delta,
            self.rho,
            self.avg_degree,
            self.tau_bound()
        )
    }
}
