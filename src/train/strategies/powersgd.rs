//! PowerSGD (Vogels, Karimireddy and Jaggi, 2019): low-rank gradient
//! compression that stays all-reducible.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::algorithms::Algorithm;
use crate::compress::CodecTimes;
use crate::error::Result;
use crate::transport::Transport;

use super::hooks::codec_hooks;
use super::residuals::{invalid, residual_after_step, Residuals};
use super::{Registered, Section, Spelling, Step, Strategy, Tally};
use crate::train::buckets::{exchange_whole, BucketCodec};
use crate::train::model::{gemm, Matrix};
use crate::train::BucketSize;

/// Synchronous SGD whose weight-matrix gradients travel as rank-r factors.
///
/// For each weight matrix M (n × m, with error feedback M = gradient +
/// residual) and its Q (m × r, warm-started from the previous step, the
/// same on every rank): P = M·Q; all-reduce the P's (mean); orthogonalize
/// each P (Gram–Schmidt); Q = Mᵀ·P; all-reduce the Q's (mean); the
/// gradient applied is P·Qᵀ, and the residual keeps M − P·Qᵀ. Both
/// all-reduces are linear in the ranks' matrices — every rank projects on
/// the same P — so they run through the ordinary all-reduce (`algorithm`).
/// Small tensors (biases, and matrices that rank r would compress less than
/// `min_compression_rate` times) travel uncompressed in the first all-reduce.
/// Two all-reduces a step, of Σ(n·r) + small and Σ(m·r) elements.
///
/// The residuals (different on every rank) and the Q's (the same) are
/// saved in checkpoints, so a resumed run continues exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSgd {
    /// Rank r of the factors.
    pub rank: usize,
    /// Keep what the factors did not carry and add it back next step.
    pub error_feedback: bool,
    /// The all-reduce of the factors.
    pub algorithm: Algorithm,
    /// Compress a matrix only when its n·m elements are at least this many
    /// times the factors' (n + m)·r (PyTorch's `min_compression_rate`,
    /// default 2); the others travel uncompressed.
    pub min_compression_rate: f64,
    residual: Vec<f32>,
    residuals: Residuals,
    /// The compressed matrices and their Q's (m × r each, concatenated).
    compressed: Vec<Matrix>,
    qs: Vec<f32>,
    /// Where each compressed matrix's Q starts in `qs`.
    q_at: Vec<usize>,
    /// Gradient buckets overlapping the backward pass
    /// ([`crate::train::buckets`]): each bucket compresses the weight
    /// matrices wholly inside it (a matrix cut by the bucket's edge travels
    /// uncompressed), so with buckets along the layers, as the trainer
    /// cuts them, and the algorithms of
    /// [`position_free`](crate::train::buckets::position_free) the bits
    /// are those without buckets. Default: off.
    pub buckets: BucketSize,
    restored_q: Option<Vec<f32>>,
}

impl PowerSgd {
    /// This rank's residual (empty without error feedback or before the run).
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }

    /// Rank-`rank` factors, with error feedback, over the ring.
    ///
    /// # Errors
    /// A rank of 0.
    pub fn new(rank: usize) -> Result<Self> {
        let s = PowerSgd {
            rank,
            error_feedback: true,
            algorithm: Algorithm::Ring,
            min_compression_rate: 2.0,
            residual: Vec::new(),
            residuals: Residuals::default(),
            compressed: Vec::new(),
            qs: Vec::new(),
            q_at: Vec::new(),
            buckets: BucketSize::Off,
            restored_q: None,
        };
        s.check(1)?;
        Ok(s)
    }

    /// Elements of the two all-reduces of a step for a model of `n`
    /// parameters whose weight matrices are `matrices`.
    pub fn sizes(&self, n: usize, matrices: &[Matrix]) -> (usize, usize) {
        let (rank, mut first, mut second, mut compressed) = (self.rank, 0, 0, 0);
        for m in matrices.iter().filter(|m| self.worth(m)) {
            first += m.rows * rank;
            second += m.cols * rank;
            compressed += m.rows * m.cols;
        }
        (first + n - compressed, second)
    }

    /// Which of the weight matrices `matrices` are compressed, and their
    /// starting Q's.
    fn prepare(&mut self, matrices: &[Matrix]) -> Result<()> {
        let r = self.rank;
        self.compressed = matrices.iter().copied().filter(|m| self.worth(m)).collect();
        self.q_at = self
            .compressed
            .iter()
            .scan(0, |at, m| {
                let here = *at;
                *at += m.cols * r;
                Some(here)
            })
            .collect();
        // Q starts random and the same on every rank (a fixed seed).
        let len: usize = self.compressed.iter().map(|m| m.cols * r).sum();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_9051);
        self.qs = (0..len).map(|_| normal(&mut rng)).collect();
        if let Some(q) = self.restored_q.take() {
            if q.len() != len {
                return Err(invalid(format!(
                    "the checkpoint holds PowerSGD factors of {} elements, this model and rank need {len}",
                    q.len()
                )));
            }
            self.qs = q;
        }
        Ok(())
    }

    /// The compressed matrices wholly inside `range` (indices into
    /// `compressed`, in its order), and the rest of `range` — which
    /// travels uncompressed — in increasing order.
    fn split(&self, range: &Range<usize>) -> (Vec<usize>, Vec<Range<usize>>) {
        let inside: Vec<usize> = (0..self.compressed.len())
            .filter(|&i| {
                let m = &self.compressed[i];
                m.offset >= range.start && m.offset + m.rows * m.cols <= range.end
            })
            .collect();
        let mut covered: Vec<(usize, usize)> = inside
            .iter()
            .map(|&i| (self.compressed[i].offset, self.compressed[i].end()))
            .collect();
        covered.sort_unstable();
        let mut small = Vec::new();
        let mut at = range.start;
        for (a, b) in covered {
            if a > at {
                small.push(at..a);
            }
            at = b;
        }
        if at < range.end {
            small.push(at..range.end);
        }
        (inside, small)
    }

    /// Seconds of this rank's local work in one step (the products,
    /// Gram–Schmidt and error feedback, no communication) for a model of
    /// `n` parameters whose weight matrices are `matrices`: the median of 5
    /// runs on random data here.
    pub fn measure_codec_secs(&self, n: usize, matrices: &[Matrix]) -> Result<f64> {
        let mut s = self.clone();
        s.prepare(matrices)?;
        s.residual = vec![0.0; if s.error_feedback { n } else { 0 }];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let grad: Vec<f32> = (0..n).map(|_| normal(&mut rng) * 1e-2).collect();
        let mut times = Vec::new();
        for _ in 0..5 {
            let mut g = grad.clone();
            let t = std::time::Instant::now();
            exchange_whole(&mut s, 1, &mut g, &mut |_| Ok(()), &mut CodecTimes::default())?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[2])
    }

    /// Whether `m` is compressed (see `min_compression_rate`).
    fn worth(&self, m: &Matrix) -> bool {
        let factors = ((m.rows + m.cols) * self.rank) as f64;
        (m.rows * m.cols) as f64 >= self.min_compression_rate * factors
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Orthonormalizes the r columns of the row-major n × r `p` in place
/// (modified Gram–Schmidt; a column with no norm left becomes zero).
fn orthogonalize(p: &mut [f32], n: usize, r: usize) {
    for j in 0..r {
        for i in 0..j {
            let dot: f32 = (0..n).map(|k| p[k * r + i] * p[k * r + j]).sum();
            for k in 0..n {
                p[k * r + j] -= dot * p[k * r + i];
            }
        }
        let norm = (0..n).map(|k| p[k * r + j] * p[k * r + j]).sum::<f32>().sqrt();
        let scale = if norm > 1e-30 { 1.0 / norm } else { 0.0 };
        for k in 0..n {
            p[k * r + j] *= scale;
        }
    }
}

/// PowerSGD on a bucket: round 0 averages the P = M·Q of the weight
/// matrices inside it and its other values; round 1 the Q = Mᵀ·P of the
/// orthogonalized P's; the bucket's gradient is then P·Qᵀ per matrix and
/// the averaged values elsewhere, the residual keeping what the factors
/// missed. The products up to round 1 count as encoding, Gram–Schmidt
/// and P·Qᵀ with the residual as decoding.
impl BucketCodec for PowerSgd {
    fn rounds(&self) -> usize {
        2
    }

    fn encode(
        &mut self,
        round: usize,
        range: Range<usize>,
        bucket: &mut [f32],
        carry: &mut Vec<f32>,
    ) -> Vec<f32> {
        let (r, at) = (self.rank, range.start);
        let (inside, small) = self.split(&range);
        let mut buf = Vec::new();
        if round == 0 {
            if self.error_feedback {
                for (g, e) in bucket.iter_mut().zip(&self.residual[range.clone()]) {
                    *g += e;
                }
            }
            // Every P = M·Q, then the values travelling uncompressed.
            for &i in &inside {
                let m = self.compressed[i];
                let q = &self.qs[self.q_at[i]..self.q_at[i] + m.cols * r];
                let from = buf.len();
                buf.resize(from + m.rows * r, 0.0);
                gemm(
                    m.rows,
                    m.cols,
                    r,
                    m.of(bucket, at),
                    false,
                    q,
                    false,
                    0.0,
                    &mut buf[from..],
                );
            }
            for s in &small {
                buf.extend_from_slice(&bucket[s.start - at..s.end - at]);
            }
        } else {
            // Q = Mᵀ·P, P orthogonalized.
            let mut p_at = 0;
            for &i in &inside {
                let m = self.compressed[i];
                let from = buf.len();
                buf.resize(from + m.cols * r, 0.0);
                let p = &carry[p_at..p_at + m.rows * r];
                gemm(
                    m.cols,
                    m.rows,
                    r,
                    m.of(bucket, at),
                    true,
                    p,
                    false,
                    0.0,
                    &mut buf[from..],
                );
                p_at += m.rows * r;
            }
        }
        buf
    }

    fn decode(
        &mut self,
        round: usize,
        range: Range<usize>,
        bucket: &mut [f32],
        carry: &mut Vec<f32>,
        reduced: Vec<f32>,
    ) {
        let (r, at) = (self.rank, range.start);
        let (inside, small) = self.split(&range);
        if round == 0 {
            *carry = reduced;
            let mut p_at = 0;
            for &i in &inside {
                let rows = self.compressed[i].rows;
                orthogonalize(&mut carry[p_at..p_at + rows * r], rows, r);
                p_at += rows * r;
            }
            return;
        }
        // The applied gradient: P·Qᵀ per matrix, the other values as they
        // came; the residual keeps what the factors missed.
        let (mut p_at, mut q_from) = (0, 0);
        for &i in &inside {
            let m = self.compressed[i];
            let q = self.q_at[i];
            self.qs[q..q + m.cols * r].copy_from_slice(&reduced[q_from..q_from + m.cols * r]);
            let mut approx = vec![0f32; m.rows * m.cols];
            let p = &carry[p_at..p_at + m.rows * r];
            gemm(
                m.rows,
                r,
                m.cols,
                p,
                false,
                &self.qs[q..q + m.cols * r],
                true,
                0.0,
                &mut approx,
            );
            let span = m.offset - at..m.end() - at;
            if self.error_feedback {
                let residual = &mut self.residual[m.offset..m.end()];
                for ((e, g), a) in residual.iter_mut().zip(&bucket[span.clone()]).zip(&approx) {
                    *e = g - a;
                }
            }
            bucket[span].copy_from_slice(&approx);
            p_at += m.rows * r;
            q_from += m.cols * r;
        }
        for s in &small {
            bucket[s.start - at..s.end - at].copy_from_slice(&carry[p_at..p_at + s.len()]);
            if self.error_feedback {
                self.residual[s.clone()].fill(0.0);
            }
            p_at += s.len();
        }
    }
}

impl Strategy for PowerSgd {
    fn name(&self) -> String {
        let ef = if self.error_feedback {
            ""
        } else {
            ",error-feedback=off"
        };
        format!("sync:{},compress=powersgd:rank={}{ef}", self.algorithm, self.rank)
    }

    fn check(&self, _p: usize) -> Result<()> {
        match self.rank {
            0 => Err(invalid(
                "powersgd:rank=0: the factors need a rank of at least 1".into(),
            )),
            _ => Ok(()),
        }
    }

    fn start<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
        let n = params.len();
        self.prepare(ctx.matrices())?;
        self.residual = self
            .residuals
            .start(ctx, if self.error_feedback { n } else { 0 })?;
        Ok(())
    }

    codec_hooks!();

    residual_after_step!();

    fn state(&self) -> Vec<Section> {
        let mut s = vec![Section {
            name: "powersgd_q".into(),
            values: self.qs.clone(),
        }];
        if self.error_feedback {
            s.extend(self.residuals.state());
        }
        s
    }

    fn restore(&mut self, sections: &[Section]) -> Result<()> {
        self.restored_q = sections
            .iter()
            .find(|s| s.name == "powersgd_q")
            .map(|s| s.values.clone());
        if self.restored_q.is_none() {
            return Err(invalid("the checkpoint holds no PowerSGD factors".into()));
        }
        self.residuals.restore(sections, self.error_feedback)
    }
}

impl Registered for PowerSgd {
    const SYNOPSIS: &'static str = "sync[:ALGO],compress=powersgd:rank=R[,error-feedback=off]";
    const HELP: &'static str =
        "PowerSGD: rank-R factors of every weight matrix, two all-reduces by ALGO a step, error feedback";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        s.compressor("powersgd", |g, c| {
            let rank = c.number::<usize>(s, Some("rank"), "powersgd takes rank=R, e.g. powersgd:rank=2")?;
            let mut ps = PowerSgd::new(rank)?;
            ps.algorithm = g.algorithm.unwrap_or(Algorithm::Ring);
            ps.error_feedback = g.feedback.unwrap_or(true);
            Ok(ps)
        })
    }

    fn communication(&self, t: &mut Tally<'_>) {
        let (first, second) = self.sizes(t.params, t.matrices);
        t.all_reduce(self.algorithm, first, t.steps as u64);
        t.all_reduce(self.algorithm, second, t.steps as u64);
    }

    fn codec_secs(&self, _p: usize, n: usize, matrices: &[Matrix]) -> Option<Result<f64>> {
        Some(self.measure_codec_secs(n, matrices))
    }

    fn factors_matrices(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::Group;

    fn step(p: usize, rank: usize, grads: &[Vec<f32>], m: Matrix) -> Vec<Vec<f32>> {
        Group::local(p, |g| {
            let mut s = PowerSgd::new(rank).unwrap();
            s.min_compression_rate = 0.0;
            let mut ctx = Step::new(&g, 1, 0, 1, 1);
            ctx.matrices = vec![m];
            let n = grads[0].len();
            s.start(&mut ctx, &mut vec![0.0; n]).unwrap();
            assert_eq!(s.compressed.len(), 1);
            let mut grad = grads[g.rank()].clone();
            s.after_backward(&mut ctx, &mut grad).unwrap();
            grad
        })
    }

    #[test]
    fn full_rank_factors_reproduce_the_averaged_gradient() {
        // A 6 × 10 matrix plus 4 small elements, rank 6 = full rank: P·Qᵀ
        // is the mean gradient up to float rounding (measured 6.5e-7 of the
        // largest entry at most; allowed 1e-4).
        let p = 3;
        let m = Matrix {
            offset: 2,
            rows: 6,
            cols: 10,
        };
        let grads: Vec<Vec<f32>> = (0..p)
            .map(|r| {
                (0..64)
                    .map(|i| (((i * 13 + r * 29) % 17) as f32 - 8.0) * 0.05)
                    .collect()
            })
            .collect();
        let out = step(p, 6, &grads, m);
        let big = grads.iter().flatten().fold(0f32, |a, x| a.max(x.abs()));
        for i in 0..64 {
            let mean = grads.iter().map(|g| g[i]).sum::<f32>() / p as f32;
            assert!(
                (out[0][i] - mean).abs() <= 1e-4 * big,
                "i={i}: {} vs {mean}",
                out[0][i]
            );
        }
        for o in &out {
            assert_eq!(o, &out[0], "the same bits on every rank");
        }
    }

    #[test]
    fn low_rank_factors_approximate_and_the_residual_keeps_the_rest() {
        let p = 2;
        let m = Matrix {
            offset: 0,
            rows: 8,
            cols: 8,
        };
        let grads: Vec<Vec<f32>> = (0..p)
            .map(|r| (0..64).map(|i| ((i * 7 + r * 3) % 11) as f32 - 5.0).collect())
            .collect();
        let out = Group::local(p, |g| {
            let mut s = PowerSgd::new(1).unwrap();
            let mut ctx = Step::new(&g, 1, 0, 1, 1);
            ctx.matrices = vec![m];
            s.start(&mut ctx, &mut vec![0.0; 64]).unwrap();
            let mut grad = grads[g.rank()].clone();
            s.after_backward(&mut ctx, &mut grad).unwrap();
            // What this rank held = what was applied + what it keeps.
            for i in 0..64 {
                let back = grad[i] + s.residual[i];
                assert!((back - grads[g.rank()][i]).abs() < 1e-4, "i={i}");
            }
            (grad, ctx.bytes)
        });
        assert_eq!(out[0], out[1]);
        // Two ring all-reduces of 8·1 elements each at p = 2.
        let ring = Algorithm::Ring.exact_cost(2, 8, 4).unwrap();
        assert_eq!(out[0].1, 2 * ring.bytes_sent);
    }
}
