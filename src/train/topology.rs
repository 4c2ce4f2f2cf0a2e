//! Gossip graphs: which ranks exchange parameters at each step, with what
//! weights, and how fast those weights mix.
//!
//! A topology gives every rank, at every step, a [`Plan`]: the ranks it
//! sends its parameters to, the ranks it receives from with the weight of
//! each, and its own weight. Row r of the mixing matrix W is rank r's plan;
//! every topology here gives a doubly stochastic W (rows and columns sum to
//! 1), so a gossip step keeps the average of the ranks' parameters.
//!
//! | spelling | graph | weights |
//! |---|---|---|
//! | `ring` | r ± 1 | Metropolis–Hastings (1/3 each; 1/2 at p = 2) |
//! | `torus` | 2-D torus rows × cols = p, rows the largest divisor ≤ √p, both ≥ 2 | Metropolis–Hastings |
//! | `expo` | directed: sends to r + 2^k, receives from r − 2^k, 2^k < p | 1/(degree + 1) |
//! | `expo1` | one peer per step: at step t, k = t mod ⌈log2 p⌉, send to r + 2^k, receive from r − 2^k | 1/2, 1/2 |
//! | `complete` | every other rank | 1/p |
//! | `edges=0-1/1-2/…` | the undirected edges listed | Metropolis–Hastings |
//!
//! Metropolis–Hastings: W_ij = 1 / (1 + max(d_i, d_j)) on an edge, W_ii
//! the rest of the row — symmetric, so doubly stochastic on any undirected
//! graph. A torus cannot be formed on a prime rank count (refused: use
//! `ring` or `expo`), and a graph that leaves some ranks unreachable is
//! refused, naming them.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A gossip graph; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// r ± 1.
    Ring,
    /// A 2-D torus.
    Torus,
    /// Exponential graph: neighbours at distance 2^k.
    Expo,
    /// One-peer exponential graph: one neighbour per step, cycling k.
    Expo1,
    /// Every rank with every other.
    Complete,
    /// Undirected edges given by the user.
    Edges(Vec<(usize, usize)>),
}

/// What one rank does in one gossip step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Ranks this rank sends its parameters to.
    pub send_to: Vec<usize>,
    /// Ranks it receives from, in this order.
    pub recv_from: Vec<usize>,
    /// The weight of each received vector (same order).
    pub weights: Vec<f64>,
    /// The weight of its own vector.
    pub self_weight: f64,
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "gossip topology",
        reason,
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Ring => f.write_str("ring"),
            Topology::Torus => f.write_str("torus"),
            Topology::Expo => f.write_str("expo"),
            Topology::Expo1 => f.write_str("expo1"),
            Topology::Complete => f.write_str("complete"),
            Topology::Edges(e) => {
                f.write_str("edges=")?;
                for (i, (a, b)) in e.iter().enumerate() {
                    write!(f, "{}{a}-{b}", if i == 0 { "" } else { "/" })?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Topology {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "ring" => Topology::Ring,
            "torus" => Topology::Torus,
            "expo" => Topology::Expo,
            "expo1" => Topology::Expo1,
            "complete" => Topology::Complete,
            other => {
                let Some(list) = other.strip_prefix("edges=") else {
                    return Err(invalid(format!(
                        "unknown topology `{other}` (expected ring, torus, expo, expo1, complete or edges=0-1/1-2/…)"
                    )));
                };
                let mut edges = Vec::new();
                for pair in list.split('/') {
                    let parsed = pair
                        .split_once('-')
                        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                    match parsed {
                        Some((a, b)) if a != b => edges.push((a, b)),
                        _ => {
                            return Err(invalid(format!(
                                "`{pair}` is not an edge like 0-1 between two ranks"
                            )))
                        }
                    }
                }
                Topology::Edges(edges)
            }
        })
    }
}

/// The distinct offsets 2^k mod p (2^k < p) of the exponential graphs.
fn offsets(p: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut d = 1;
    while d < p {
        out.push(d);
        d *= 2;
    }
    out
}

/// rows × cols of the torus on p ranks: rows the largest divisor ≤ √p.
fn torus_shape(p: usize) -> Option<(usize, usize)> {
    let rows = (2..=p)
        .take_while(|r| r * r <= p)
        .filter(|r| p.is_multiple_of(*r))
        .last()?;
    Some((rows, p / rows))
}

impl Topology {
    /// Checks that the graph can be formed on `p` ranks and is connected.
    ///
    /// # Errors
    /// A torus on a prime (or < 4) rank count, an edge naming a rank ≥ p,
    /// or a graph in which some ranks never hear from the others.
    pub fn check(&self, p: usize) -> Result<()> {
        if p <= 1 {
            return Ok(());
        }
        match self {
            Topology::Torus if torus_shape(p).is_none() => {
                return Err(invalid(format!(
                "a 2-D torus needs p = rows × cols with rows, cols ≥ 2, and {p} ranks {}: use ring or expo",
                if p < 4 { "are too few" } else { "is prime" }
            )))
            }
            Topology::Edges(e) => {
                if let Some(&(a, b)) = e.iter().find(|&&(a, b)| a >= p || b >= p) {
                    return Err(invalid(format!("edge {a}-{b} names a rank ≥ {p}")));
                }
            }
            _ => {}
        }
        // Reachability from rank 0 over the union of one period's plans.
        let mut seen = vec![false; p];
        let mut stack = vec![0];
        seen[0] = true;
        let plans: Vec<Vec<Plan>> = (0..self.period(p))
            .map(|t| (0..p).map(|r| self.plan(p, r, t)).collect())
            .collect();
        while let Some(r) = stack.pop() {
            for step in &plans {
                for &j in step[r].send_to.iter().chain(&step[r].recv_from) {
                    if !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        if seen.iter().all(|&s| s) {
            return Ok(());
        }
        let cut: Vec<String> = (0..p).filter(|&r| !seen[r]).map(|r| r.to_string()).collect();
        Err(invalid(format!(
            "the graph {self} is disconnected on {p} ranks: ranks {} never exchange with rank 0",
            cut.join(", ")
        )))
    }

    /// Steps after which the plans repeat (⌈log2 p⌉ for `expo1`, else 1).
    pub fn period(&self, p: usize) -> usize {
        match self {
            Topology::Expo1 => offsets(p).len().max(1),
            _ => 1,
        }
    }

    /// Undirected neighbours of `r` (sorted, without r), for the
    /// undirected graphs.
    fn neighbours(&self, p: usize, r: usize) -> Vec<usize> {
        let mut n: Vec<usize> = match self {
            Topology::Ring => vec![(r + 1) % p, (r + p - 1) % p],
            Topology::Torus => {
                let (rows, cols) = torus_shape(p).unwrap_or((1, p));
                let (i, j) = (r / cols, r % cols);
                vec![
                    i * cols + (j + 1) % cols,
                    i * cols + (j + cols - 1) % cols,
                    ((i + 1) % rows) * cols + j,
                    ((i + rows - 1) % rows) * cols + j,
                ]
            }
            Topology::Complete => (0..p).collect(),
            Topology::Edges(e) => e
                .iter()
                .filter_map(|&(a, b)| {
                    if a == r {
                        Some(b)
                    } else if b == r {
                        Some(a)
                    } else {
                        None
                    }
                })
                .collect(),
            Topology::Expo | Topology::Expo1 => Vec::new(),
        };
        n.retain(|&j| j != r && j < p);
        n.sort_unstable();
        n.dedup();
        n
    }

    /// What rank `r` of `p` does at global step `step`.
    pub fn plan(&self, p: usize, r: usize, step: usize) -> Plan {
        if p <= 1 {
            return Plan {
                send_to: Vec::new(),
                recv_from: Vec::new(),
                weights: Vec::new(),
                self_weight: 1.0,
            };
        }
        match self {
            Topology::Expo | Topology::Expo1 => {
                let all = offsets(p);
                let ds: Vec<usize> = match self {
                    Topology::Expo1 => vec![all[step % all.len()]],
                    _ => all,
                };
                let mut send_to: Vec<usize> = ds.iter().map(|d| (r + d) % p).collect();
                let mut recv_from: Vec<usize> = ds.iter().map(|d| (r + p - d) % p).collect();
                send_to.dedup();
                recv_from.dedup();
                let w = 1.0 / (recv_from.len() + 1) as f64;
                Plan {
                    weights: vec![w; recv_from.len()],
                    self_weight: w,
                    send_to,
                    recv_from,
                }
            }
            _ => {
                let mine = self.neighbours(p, r);
                let weights: Vec<f64> = mine
                    .iter()
                    .map(|&j| 1.0 / (1 + mine.len().max(self.neighbours(p, j).len())) as f64)
                    .collect();
                Plan {
                    self_weight: 1.0 - weights.iter().sum::<f64>(),
                    send_to: mine.clone(),
                    recv_from: mine,
                    weights,
                }
            }
        }
    }

    /// The mixing matrix W of step `step` (row-major p × p): row r is rank
    /// r's plan.
    pub fn matrix(&self, p: usize, step: usize) -> Vec<f64> {
        let mut w = vec![0.0; p * p];
        for r in 0..p {
            let plan = self.plan(p, r, step);
            w[r * p + r] += plan.self_weight;
            for (&j, &x) in plan.recv_from.iter().zip(&plan.weights) {
                w[r * p + j] += x;
            }
        }
        w
    }

    /// The spectral gap per step, 1 − ρ^(1/L), where ρ = ‖Π W_t − J‖₂ over
    /// one period of L steps (J the averaging matrix): how much closer to
    /// the average one step brings the ranks. 1 means one step averages
    /// exactly (the complete graph; `expo1` over its period on a power of
    /// two), 0 never converges. Exact (Jacobi eigenvalues), for p ≤ 64.
    pub fn spectral_gap(&self, p: usize) -> Option<f64> {
        if p > 64 {
            return None;
        }
        if p <= 1 {
            return Some(1.0);
        }
        let period = self.period(p);
        let mut prod = identity(p);
        for t in 0..period {
            prod = matmul(&self.matrix(p, t), &prod, p);
        }
        for x in &mut prod {
            *x -= 1.0 / p as f64;
        }
        let rho = spectral_norm(&prod, p);
        Some(1.0 - rho.powf(1.0 / period as f64))
    }
}

fn identity(p: usize) -> Vec<f64> {
    let mut m = vec![0.0; p * p];
    for i in 0..p {
        m[i * p + i] = 1.0;
    }
    m
}

fn matmul(a: &[f64], b: &[f64], p: usize) -> Vec<f64> {
    let mut c = vec![0.0; p * p];
    for i in 0..p {
        for k in 0..p {
            let x = a[i * p + k];
            for j in 0..p {
                c[i * p + j] += x * b[k * p + j];
            }
        }
    }
    c
}

/// ‖A‖₂: the square root of the largest eigenvalue of AᵀA, by cyclic Jacobi.
fn spectral_norm(a: &[f64], p: usize) -> f64 {
    let mut m = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..p {
            m[i * p + j] = (0..p).map(|k| a[k * p + i] * a[k * p + j]).sum();
        }
    }
    jacobi_eigenvalues(&mut m, p)
        .into_iter()
        .fold(0.0f64, f64::max)
        .max(0.0)
        .sqrt()
}

/// Eigenvalues of the symmetric matrix `m` (destroyed), cyclic Jacobi rotations.
fn jacobi_eigenvalues(m: &mut [f64], p: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..p)
            .flat_map(|i| (0..p).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * p + j] * m[i * p + j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for i in 0..p {
            for j in i + 1..p {
                let aij = m[i * p + j];
                if aij.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[j * p + j] - m[i * p + i]) / (2.0 * aij);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..p {
                    let (mki, mkj) = (m[k * p + i], m[k * p + j]);
                    m[k * p + i] = c * mki - s * mkj;
                    m[k * p + j] = s * mki + c * mkj;
                }
                for k in 0..p {
                    let (mik, mjk) = (m[i * p + k], m[j * p + k]);
                    m[i * p + k] = c * mik - s * mjk;
                    m[j * p + k] = s * mik + c * mjk;
                }
            }
        }
    }
    (0..p).map(|i| m[i * p + i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 6] = [
        "ring",
        "torus",
        "expo",
        "expo1",
        "complete",
        "edges=0-1/1-2/2-3/3-0/0-2",
    ];

    #[test]
    fn every_matrix_is_doubly_stochastic_and_the_plans_match_across_ranks() {
        for name in ALL {
            let t: Topology = name.parse().unwrap();
            for p in 1..=16 {
                if t.check(p).is_err() {
                    continue;
                }
                for step in 0..t.period(p) + 1 {
                    let w = t.matrix(p, step);
                    for i in 0..p {
                        let row: f64 = (0..p).map(|j| w[i * p + j]).sum();
                        let col: f64 = (0..p).map(|j| w[j * p + i]).sum();
                        assert!(
                            (row - 1.0).abs() < 1e-12 && (col - 1.0).abs() < 1e-12,
                            "{name} p={p} i={i}"
                        );
                        assert!((0..p).all(|j| w[i * p + j] >= 0.0), "{name} p={p}");
                    }
                    // i sends to j exactly when j receives from i.
                    for i in 0..p {
                        for j in 0..p {
                            let sends = t.plan(p, i, step).send_to.contains(&j);
                            let recvs = t.plan(p, j, step).recv_from.contains(&i);
                            assert_eq!(sends, recvs, "{name} p={p} step={step} {i}->{j}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn spectral_gaps_match_closed_forms() {
        // Complete graph, uniform weights: one step averages exactly.
        assert!((Topology::Complete.spectral_gap(8).unwrap() - 1.0).abs() < 1e-9);
        // Ring with weights 1/3: eigenvalues (1 + 2 cos(2πk/p)) / 3; the
        // largest modulus besides k = 0 is at k = 1 for p = 8.
        let p = 8.0f64;
        let rho = (1.0 + 2.0 * (2.0 * std::f64::consts::PI / p).cos()) / 3.0;
        let gap = Topology::Ring.spectral_gap(8).unwrap();
        assert!((gap - (1.0 - rho)).abs() < 1e-9, "{gap} vs {}", 1.0 - rho);
        // One-peer exponential on a power of two averages exactly over its period.
        assert!((Topology::Expo1.spectral_gap(8).unwrap() - 1.0).abs() < 1e-9);
        // More edges mix faster.
        let ring = Topology::Ring.spectral_gap(16).unwrap();
        let expo = Topology::Expo.spectral_gap(16).unwrap();
        assert!(0.0 < ring && ring < expo && expo <= 1.0, "{ring} {expo}");
    }

    #[test]
    fn bad_graphs_are_refused_with_a_reason() {
        let e = Topology::Torus.check(5).unwrap_err().to_string();
        assert!(
            e.contains("5 ranks is prime") && e.contains("use ring or expo"),
            "{e}"
        );
        assert!(Topology::Torus.check(6).is_ok());
        let split: Topology = "edges=0-1/2-3".parse().unwrap();
        let e = split.check(4).unwrap_err().to_string();
        assert!(e.contains("disconnected") && e.contains("ranks 2, 3"), "{e}");
        let e = "edges=0-9"
            .parse::<Topology>()
            .unwrap()
            .check(4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("edge 0-9"), "{e}");
        let e = "star".parse::<Topology>().unwrap_err().to_string();
        assert!(e.contains("unknown topology `star`"), "{e}");
        assert!("edges=1-1".parse::<Topology>().is_err());
    }
}
