//! The sparse problems Hogwild! was made for: a linear SVM and logistic
//! regression on sparse examples, and low-rank matrix completion.
//!
//! Each is a [`Problem`]: a sum of per-example terms f_e whose gradient
//! touches only the example's *support* (the coordinates it reads and
//! writes). Regularisation is split over the examples as in the Hogwild!
//! paper, so that it too touches only the support: coordinate u's share
//! in each of its d_u examples is λ·w_u²/d_u, and the shares add up to
//! λ‖w‖².

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::libsvm::SparseSet;
use super::store::Weights;
use crate::error::{Error, Result};

/// An objective Σ_e f_e(w) over examples with sparse supports.
pub trait Problem: Sync {
    /// Number of examples (terms).
    fn examples(&self) -> usize;

    /// Number of parameters.
    fn dim(&self) -> usize;

    /// The coordinates example `e` reads and writes, ascending, into `out`
    /// (cleared first).
    fn support(&self, e: usize, out: &mut Vec<u32>);

    /// Reads example `e`'s support (as [`Problem::support`] gave it) from
    /// `w` into `read` and writes the gradient of f_e at the values read
    /// into `grad` (both parallel to `support`). Each coordinate is read
    /// once, so under concurrent updates the gradient is that of one
    /// (perhaps mixed) point.
    fn gradient<W: Weights + ?Sized>(
        &self,
        w: &W,
        e: usize,
        support: &[u32],
        read: &mut Vec<f32>,
        grad: &mut Vec<f32>,
    );

    /// f_e(w).
    fn loss(&self, w: &[f32], e: usize) -> f64;

    /// Whether `w` classifies example `e` right (`None`: not a classifier).
    fn correct(&self, w: &[f32], e: usize) -> Option<bool>;

    /// The squared error of `w` on example `e` (`None`: not a regression).
    fn squared_error(&self, w: &[f32], e: usize) -> Option<f64> {
        let _ = (w, e);
        None
    }

    /// The starting point (seeded).
    fn init(&self, seed: u64) -> Vec<f32>;
}

/// The loss of a linear classifier on the margin m = y·⟨w, x⟩.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// max(0, 1 − m): the SVM.
    Hinge,
    /// log(1 + e^(−m)): logistic regression.
    Logistic,
}

impl Loss {
    fn value(self, m: f64) -> f64 {
        match self {
            Loss::Hinge => (1.0 - m).max(0.0),
            // log(1 + e^−m) without overflow for large |m|.
            Loss::Logistic => (-m).max(0.0) + (-m.abs()).exp().ln_1p(),
        }
    }

    /// d loss / d m.
    fn slope(self, m: f32) -> f32 {
        match self {
            Loss::Hinge => {
                if m < 1.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Loss::Logistic => -1.0 / (1.0 + m.exp()),
        }
    }
}

/// A linear classifier on sparse examples labelled ±1: f_e(w) =
/// loss(y_e·⟨w, x_e⟩) + λ Σ_{u ∈ e} w_u² / d_u, where d_u counts the
/// training examples with feature u. [`Loss::Hinge`] is the sparse SVM of
/// the Hogwild! paper.
#[derive(Debug, Clone)]
pub struct SparseLinear {
    /// The examples (labels ±1).
    pub data: SparseSet,
    /// The loss.
    pub loss: Loss,
    /// λ.
    pub lambda: f32,
    /// λ / d_u per feature: the regulariser's weight on coordinate u in
    /// each of u's examples (from the training set, also when `data` is a
    /// test set).
    reg: Vec<f32>,
}

impl SparseLinear {
    /// A classifier on `data` (labels must be ±1: see
    /// [`SparseSet::to_binary`]).
    ///
    /// # Errors
    /// A label other than ±1, or λ negative or not finite.
    pub fn new(data: SparseSet, loss: Loss, lambda: f32) -> Result<SparseLinear> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidArgument {
                what: "lambda",
                reason: format!("{lambda} is not a finite number ≥ 0"),
            });
        }
        if let Some(i) = data.labels().iter().position(|&y| y != 1.0 && y != -1.0) {
            return Err(Error::InvalidArgument {
                what: "labels",
                reason: format!(
                    "example {i} is labelled {}; a linear classifier needs ±1",
                    data.labels()[i]
                ),
            });
        }
        let reg = data
            .feature_counts()
            .iter()
            .map(|&d| if d == 0 { 0.0 } else { lambda / d as f32 })
            .collect();
        Ok(SparseLinear {
            data,
            loss,
            lambda,
            reg,
        })
    }

    /// The same classifier on other examples (a test set): the
    /// regulariser's weights stay those of this training set; features
    /// beyond this set's dimension are ignored (they have no weight).
    pub fn with_data(&self, data: SparseSet) -> SparseLinear {
        SparseLinear {
            data,
            loss: self.loss,
            lambda: self.lambda,
            reg: self.reg.clone(),
        }
    }

    fn margin(&self, w: &[f32], e: usize) -> f64 {
        let (idx, val) = self.data.row(e);
        let dot: f64 = idx
            .iter()
            .zip(val)
            .filter(|(&j, _)| (j as usize) < w.len())
            .map(|(&j, &x)| w[j as usize] as f64 * x as f64)
            .sum();
        self.data.labels()[e] as f64 * dot
    }
}

impl Problem for SparseLinear {
    fn examples(&self) -> usize {
        self.data.len()
    }

    fn dim(&self) -> usize {
        self.reg.len()
    }

    fn support(&self, e: usize, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(self.data.row(e).0);
    }

    fn gradient<W: Weights + ?Sized>(
        &self,
        w: &W,
        e: usize,
        support: &[u32],
        read: &mut Vec<f32>,
        grad: &mut Vec<f32>,
    ) {
        let (_, val) = self.data.row(e);
        let y = self.data.labels()[e];
        read.clear();
        let mut dot = 0.0f32;
        for (&j, &x) in support.iter().zip(val) {
            let v = w.load(j as usize);
            read.push(v);
            dot += v * x;
        }
        let s = self.loss.slope(y * dot) * y;
        grad.clear();
        grad.extend(
            support
                .iter()
                .zip(val)
                .zip(read.iter())
                .map(|((&j, &x), &v)| s * x + 2.0 * self.reg[j as usize] * v),
        );
    }

    fn loss(&self, w: &[f32], e: usize) -> f64 {
        let (idx, _) = self.data.row(e);
        let reg: f64 = idx
            .iter()
            .filter(|&&j| (j as usize) < w.len())
            .map(|&j| self.reg[j as usize] as f64 * (w[j as usize] as f64).powi(2))
            .sum();
        self.loss.value(self.margin(w, e)) + reg
    }

    fn correct(&self, w: &[f32], e: usize) -> Option<bool> {
        Some(self.margin(w, e) > 0.0)
    }

    fn init(&self, _seed: u64) -> Vec<f32> {
        vec![0.0; self.dim()]
    }
}

/// Observed entries of a matrix: (row, column, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Ratings {
    /// Rows of the matrix.
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// The observed entries.
    pub entries: Vec<(u32, u32, f32)>,
}

impl Ratings {
    /// A seeded rank-`rank` matrix M = U·Vᵀ (entries of U and V uniform in
    /// ±√(3/rank), so M's entries have variance ≈ 1) plus Gaussian-like
    /// noise of standard deviation `noise`, observed at `observed` entries
    /// drawn uniformly (without repeats); the first `test` of them (a
    /// seeded choice) are returned apart as a held-out set.
    ///
    /// # Errors
    /// More observations than entries, a zero size or rank, or `test` not
    /// below `observed`.
    pub fn synthetic(
        rows: usize,
        cols: usize,
        rank: usize,
        observed: usize,
        test: usize,
        noise: f32,
        seed: u64,
    ) -> Result<(Ratings, Ratings)> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "matrix completion",
            reason,
        };
        if rows == 0 || cols == 0 || rank == 0 || rows > u32::MAX as usize || cols > u32::MAX as usize {
            return Err(bad(format!("a {rows}×{cols} matrix of rank {rank}")));
        }
        if observed as u128 > rows as u128 * cols as u128
            || test >= observed
            || observed > super::libsvm::MAX_EXAMPLES
        {
            return Err(bad(format!(
                "{observed} observed entries ({test} held out) of a {rows}×{cols} matrix"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4D43_0000_0000_0001);
        let a = (3.0 / rank as f32).sqrt();
        let u: Vec<f32> = (0..rows * rank).map(|_| rng.gen_range(-a..a)).collect();
        let v: Vec<f32> = (0..cols * rank).map(|_| rng.gen_range(-a..a)).collect();
        let mut seen = std::collections::HashSet::with_capacity(observed);
        let mut entries = Vec::with_capacity(observed);
        while entries.len() < observed {
            let (i, j) = (rng.gen_range(0..rows), rng.gen_range(0..cols));
            if !seen.insert((i, j)) {
                continue;
            }
            let m: f32 = (0..rank).map(|k| u[i * rank + k] * v[j * rank + k]).sum();
            // Sum of 4 uniforms on (−1, 1), scaled to standard deviation 1.
            let z: f32 = (0..4).map(|_| rng.gen_range(-1.0f32..1.0)).sum::<f32>() * 0.866;
            entries.push((i as u32, j as u32, m + noise * z));
        }
        let held = entries.split_off(observed - test);
        Ok((
            Ratings { rows, cols, entries },
            Ratings {
                rows,
                cols,
                entries: held,
            },
        ))
    }
}

/// Low-rank matrix completion: parameters L (rows × r) then R (cols × r),
/// f_e = (⟨L_i, R_j⟩ − M_ij)² + μ/2·(‖L_i‖²/d_i + ‖R_j‖²/d_j) for the
/// observed entry e = (i, j), d_i and d_j the observed entries of row i and
/// column j. An update touches one row of L and one of R (2r coordinates).
#[derive(Debug, Clone)]
pub struct Completion {
    /// The observed entries.
    pub data: Ratings,
    /// r.
    pub rank: usize,
    /// μ.
    pub mu: f32,
    /// μ/(2 d) per row, then per column (from the training entries).
    reg: Vec<f32>,
}

impl Completion {
    /// Completion of `data` with factors of rank `rank`.
    ///
    /// # Errors
    /// A rank of 0, μ negative or not finite, or an entry outside the matrix.
    pub fn new(data: Ratings, rank: usize, mu: f32) -> Result<Completion> {
        if rank == 0 || !(mu >= 0.0 && mu.is_finite()) {
            return Err(Error::InvalidArgument {
                what: "matrix completion",
                reason: format!("rank {rank} and μ {mu} (need rank ≥ 1 and a finite μ ≥ 0)"),
            });
        }
        let params = (data.rows + data.cols).checked_mul(rank);
        if params.is_none_or(|p| p > super::libsvm::MAX_FEATURES) {
            return Err(Error::InvalidArgument {
                what: "matrix completion",
                reason: format!(
                    "(rows + columns) × rank = ({} + {}) × {rank} exceeds {} parameters",
                    data.rows,
                    data.cols,
                    super::libsvm::MAX_FEATURES
                ),
            });
        }
        let mut deg = vec![0u32; data.rows + data.cols];
        for &(i, j, m) in &data.entries {
            if i as usize >= data.rows || j as usize >= data.cols || !m.is_finite() {
                return Err(Error::InvalidArgument {
                    what: "matrix completion",
                    reason: format!("entry ({i}, {j}) = {m} of a {}×{} matrix", data.rows, data.cols),
                });
            }
            deg[i as usize] += 1;
            deg[data.rows + j as usize] += 1;
        }
        let reg = deg
            .iter()
            .map(|&d| if d == 0 { 0.0 } else { mu / (2.0 * d as f32) })
            .collect();
        Ok(Completion { data, rank, mu, reg })
    }

    /// The same model on other entries (a held-out set; the regulariser's
    /// weights stay this set's).
    pub fn with_data(&self, data: Ratings) -> Completion {
        Completion {
            data,
            rank: self.rank,
            mu: self.mu,
            reg: self.reg.clone(),
        }
    }

    fn offsets(&self, e: usize) -> (usize, usize, f32, f32, f32) {
        let (i, j, m) = self.data.entries[e];
        let r = self.rank;
        (
            i as usize * r,
            (self.data.rows + j as usize) * r,
            m,
            self.reg[i as usize],
            self.reg[self.data.rows + j as usize],
        )
    }

    fn error(&self, w: &[f32], e: usize) -> f64 {
        let (li, rj, m, _, _) = self.offsets(e);
        let dot: f64 = (0..self.rank).map(|k| w[li + k] as f64 * w[rj + k] as f64).sum();
        dot - m as f64
    }
}

impl Problem for Completion {
    fn examples(&self) -> usize {
        self.data.entries.len()
    }

    fn dim(&self) -> usize {
        (self.data.rows + self.data.cols) * self.rank
    }

    fn support(&self, e: usize, out: &mut Vec<u32>) {
        let (li, rj, ..) = self.offsets(e);
        out.clear();
        out.extend((li..li + self.rank).map(|c| c as u32));
        out.extend((rj..rj + self.rank).map(|c| c as u32));
    }

    fn gradient<W: Weights + ?Sized>(
        &self,
        w: &W,
        e: usize,
        support: &[u32],
        read: &mut Vec<f32>,
        grad: &mut Vec<f32>,
    ) {
        let (_, _, m, ri, rj) = self.offsets(e);
        let r = self.rank;
        read.clear();
        read.extend(support.iter().map(|&c| w.load(c as usize)));
        let (l, rr) = read.split_at(r);
        let err: f32 = l.iter().zip(rr).map(|(a, b)| a * b).sum::<f32>() - m;
        grad.clear();
        grad.extend(l.iter().zip(rr).map(|(&a, &b)| 2.0 * err * b + 2.0 * ri * a));
        grad.extend(l.iter().zip(rr).map(|(&a, &b)| 2.0 * err * a + 2.0 * rj * b));
    }

    fn loss(&self, w: &[f32], e: usize) -> f64 {
        let (li, rj, _, ri, rjr) = self.offsets(e);
        let sq = |o: usize| (0..self.rank).map(|k| (w[o + k] as f64).powi(2)).sum::<f64>();
        self.error(w, e).powi(2) + ri as f64 * sq(li) + rjr as f64 * sq(rj)
    }

    fn correct(&self, _w: &[f32], _e: usize) -> Option<bool> {
        None
    }

    fn squared_error(&self, w: &[f32], e: usize) -> Option<f64> {
        Some(self.error(w, e).powi(2))
    }

    fn init(&self, seed: u64) -> Vec<f32> {
        // Small random factors: zero is a saddle point of the product.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4D43_1417);
        let a = 0.5 / (self.rank as f32).sqrt();
        (0..self.dim()).map(|_| rng.gen_range(-a..a)).collect()
    }
}
