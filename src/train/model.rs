//! Models over flattened parameter and gradient buffers.
//!
//! A [`Model`] never owns its parameters: the trainer keeps one flat `Vec<f32>`
//! of parameters and one of gradients, so the gradient all-reduce is a single
//! call on one contiguous buffer.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// A differentiable classifier over flat buffers.
pub trait Model: Sync {
    /// Length of the parameter (and gradient) buffer.
    fn num_params(&self) -> usize;
    /// Features per example.
    fn input_dim(&self) -> usize;
    /// Fills `params` with initial values drawn from a generator seeded
    /// with `seed` (any generator: the same seed must give the same values).
    fn init(&self, params: &mut [f32], seed: u64);
    /// Returns the *sum* over the batch of the loss and overwrites `grad`
    /// with its gradient. `x` holds `y.len()` rows of `input_dim()` features.
    fn loss_and_grad(&self, params: &[f32], x: &[f32], y: &[u32], grad: &mut [f32]) -> f32;
    /// [`loss_and_grad`](Model::loss_and_grad), telling `ready` about each
    /// part of `grad` as soon as the backward pass has finished it — the
    /// range and its final values, in the order the pass produces them
    /// (for a layered network: the last layer first), the ranges together
    /// covering the buffer once. A caller can start communicating a part
    /// while the pass goes on (gradient buckets). The arithmetic is
    /// `loss_and_grad`'s: the same bits.
    ///
    /// Default: the whole pass, then the whole buffer at once.
    fn loss_and_grad_layered(
        &self,
        params: &[f32],
        x: &[f32],
        y: &[u32],
        grad: &mut [f32],
        ready: &mut dyn FnMut(Range<usize>, &[f32]),
    ) -> f32 {
        let loss = self.loss_and_grad(params, x, y, grad);
        ready(0..grad.len(), grad);
        loss
    }
    /// Writes the predicted class of every row of `x` into `out`.
    fn predict(&self, params: &[f32], x: &[f32], out: &mut [u32]);
    /// The weight matrices inside the parameter buffer, for compressors
    /// that work on matrices (PowerSGD); the rest counts as small tensors.
    /// Default: none.
    fn matrices(&self) -> Vec<Matrix> {
        Vec::new()
    }
}

/// A row-major matrix inside a flat parameter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrix {
    /// Index of its first element.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl Matrix {
    /// One past its last element.
    pub fn end(&self) -> usize {
        self.offset + self.rows * self.cols
    }

    /// Its elements in `buf`, a part of the parameter buffer starting at
    /// index `at`.
    pub(crate) fn of<'a>(&self, buf: &'a [f32], at: usize) -> &'a [f32] {
        &buf[self.offset - at..self.end() - at]
    }
}

/// `c = a·b + beta·c` for row-major matrices, `a` m×k (or its transpose
/// stored k×m), `b` k×n (or its transpose stored n×k), `c` m×n.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_t { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the assert above guarantees every index the strides reach,
    // (m−1)·rs + (k−1)·cs < m·k etc., lies inside the slices; `c` is
    // exclusively borrowed and does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// A multi-layer perceptron with ReLU hidden layers and a softmax
/// cross-entropy output; with no hidden layer it is softmax regression.
///
/// Parameters per layer, in order: weights (inputs × outputs, row-major),
/// then biases.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    sizes: Vec<usize>,
}

impl Mlp {
    /// A network with layer widths `sizes` (input, hidden…, classes).
    ///
    /// # Errors
    /// Fewer than two sizes, a zero width, or more than
    /// [`Mlp::MAX_PARAMS`] parameters in all.
    pub fn new(sizes: Vec<usize>) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "model",
            reason,
        };
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(bad(format!(
                "layer sizes {sizes:?}: need input and output widths, all ≥ 1"
            )));
        }
        let params = sizes.windows(2).try_fold(0usize, |n, w| {
            w[0].checked_mul(w[1])?.checked_add(w[1])?.checked_add(n)
        });
        match params {
            Some(n) if n <= Mlp::MAX_PARAMS => Ok(Mlp { sizes }),
            _ => Err(bad(format!(
                "layer sizes {sizes:?}: more than {} parameters",
                Mlp::MAX_PARAMS
            ))),
        }
    }

    /// Hidden widths of the `wide` preset: 784-1024-1024-1024-10 has
    /// 2 913 290 parameters (11.7 MB of f32), a model whose gradient
    /// all-reduce can overlap a backward pass long enough to hide it.
    pub const WIDE: [usize; 3] = [1024, 1024, 1024];

    /// The most parameters a network may have (2^31: 8 GiB of f32).
    pub const MAX_PARAMS: usize = 1 << 31;

    /// Softmax regression: `dim` inputs straight to `classes` outputs.
    pub fn softmax(dim: usize, classes: usize) -> Result<Self> {
        Mlp::new(vec![dim, classes])
    }

    /// The model a command line names: `softmax` (no hidden layer), `mlp`
    /// with `hidden` widths, comma-separated (`128` or `256,128`), or
    /// `wide` (three hidden layers of 1024, [`Mlp::WIDE`]; `hidden` is not
    /// used), for `dim` features and `classes` classes.
    ///
    /// # Errors
    /// An unknown kind, widths that do not parse, or the errors of [`Mlp::new`].
    pub fn named(kind: &str, hidden: &str, dim: usize, classes: usize) -> Result<Self> {
        match kind {
            "softmax" => Mlp::softmax(dim, classes),
            "wide" => Mlp::new(
                std::iter::once(dim)
                    .chain(Mlp::WIDE)
                    .chain(std::iter::once(classes))
                    .collect(),
            ),
            "mlp" => {
                let widths: Vec<usize> = hidden
                    .split(',')
                    .map(|h| h.trim().parse::<usize>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| Error::InvalidArgument {
                        what: "--hidden",
                        reason: format!("`{hidden}` is not a comma-separated list of widths"),
                    })?;
                Mlp::new(
                    std::iter::once(dim)
                        .chain(widths)
                        .chain(std::iter::once(classes))
                        .collect(),
                )
            }
            other => Err(Error::UnknownName {
                kind: "model",
                name: other.to_string(),
                expected: "softmax, mlp, wide".into(),
            }),
        }
    }

    /// Layer widths.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// (weights offset, bias offset) of layer `l`.
    fn offsets(&self) -> Vec<(usize, usize)> {
        let mut off = 0;
        self.sizes
            .windows(2)
            .map(|w| {
                let o = (off, off + w[0] * w[1]);
                off += w[0] * w[1] + w[1];
                o
            })
            .collect()
    }

    /// Forward pass: activations of every layer (input first, logits last).
    fn forward(&self, params: &[f32], x: &[f32], rows: usize) -> Vec<Vec<f32>> {
        let mut acts = vec![x[..rows * self.sizes[0]].to_vec()];
        let layers = self.sizes.len() - 1;
        for (l, (w, b)) in self.offsets().into_iter().enumerate() {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            let mut z = vec![0f32; rows * fan_out];
            for row in z.chunks_exact_mut(fan_out) {
                row.copy_from_slice(&params[b..b + fan_out]);
            }
            gemm(
                rows,
                fan_in,
                fan_out,
                &acts[l],
                false,
                &params[w..w + fan_in * fan_out],
                false,
                1.0,
                &mut z,
            );
            if l + 1 < layers {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            acts.push(z);
        }
        acts
    }
}

impl Model for Mlp {
    fn num_params(&self) -> usize {
        self.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    fn input_dim(&self) -> usize {
        self.sizes[0]
    }

    /// Each layer's weights: inputs × outputs.
    fn matrices(&self) -> Vec<Matrix> {
        self.offsets()
            .into_iter()
            .enumerate()
            .map(|(l, (w, _))| Matrix {
                offset: w,
                rows: self.sizes[l],
                cols: self.sizes[l + 1],
            })
            .collect()
    }

    fn init(&self, params: &mut [f32], seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (l, (w, b)) in self.offsets().into_iter().enumerate() {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            // He-uniform for ReLU layers (Glorot would also do for the last).
            let bound = (6.0 / fan_in as f32).sqrt();
            for p in &mut params[w..w + fan_in * fan_out] {
                *p = rng.gen_range(-bound..bound);
            }
            params[b..b + fan_out].iter_mut().for_each(|p| *p = 0.0);
        }
    }

    fn loss_and_grad(&self, params: &[f32], x: &[f32], y: &[u32], grad: &mut [f32]) -> f32 {
        self.loss_and_grad_layered(params, x, y, grad, &mut |_, _| {})
    }

    /// Reports each layer's weights and bias (one contiguous range) as soon
    /// as its gradient is complete: the last layer first.
    fn loss_and_grad_layered(
        &self,
        params: &[f32],
        x: &[f32],
        y: &[u32],
        grad: &mut [f32],
        ready: &mut dyn FnMut(Range<usize>, &[f32]),
    ) -> f32 {
        let rows = y.len();
        let acts = self.forward(params, x, rows);
        let classes = *self.sizes.last().expect("two sizes");
        // Softmax cross-entropy: loss = logsumexp(z) − z_y; dz = softmax(z) − onehot(y).
        let mut dz = acts.last().expect("logits").clone();
        let mut loss = 0.0f32;
        for (row, &label) in dz.chunks_exact_mut(classes).zip(y) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let label = (label as usize).min(classes - 1);
            loss += sum.ln() - (row[label].ln());
            for v in row.iter_mut() {
                *v /= sum;
            }
            row[label] -= 1.0;
        }
        let offsets = self.offsets();
        for l in (0..self.sizes.len() - 1).rev() {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w, b) = offsets[l];
            // dW = a_{l}ᵀ · dz ; db = Σ_rows dz
            gemm(
                fan_in,
                rows,
                fan_out,
                &acts[l],
                true,
                &dz,
                false,
                0.0,
                &mut grad[w..w + fan_in * fan_out],
            );
            let db = &mut grad[b..b + fan_out];
            db.iter_mut().for_each(|g| *g = 0.0);
            for row in dz.chunks_exact(fan_out) {
                db.iter_mut().zip(row).for_each(|(g, d)| *g += d);
            }
            ready(w..b + fan_out, &grad[w..b + fan_out]);
            if l > 0 {
                // da = dz · Wᵀ, then through the ReLU of layer l.
                let mut da = vec![0f32; rows * fan_in];
                gemm(
                    rows,
                    fan_out,
                    fan_in,
                    &dz,
                    false,
                    &params[w..w + fan_in * fan_out],
                    true,
                    0.0,
                    &mut da,
                );
                for (d, &a) in da.iter_mut().zip(&acts[l]) {
                    if a <= 0.0 {
                        *d = 0.0;
                    }
                }
                dz = da;
            }
        }
        loss
    }

    fn predict(&self, params: &[f32], x: &[f32], out: &mut [u32]) {
        let rows = out.len();
        let acts = self.forward(params, x, rows);
        let classes = *self.sizes.last().expect("two sizes");
        for (o, row) in out
            .iter_mut()
            .zip(acts.last().expect("logits").chunks_exact(classes))
        {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            *o = best as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences (in f64 on a tiny model) against backprop.
    fn gradient_check(model: &Mlp) {
        let mut params = vec![0f32; model.num_params()];
        model.init(&mut params, 3);
        // A stream of its own for the perturbations and the data.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        rng.set_stream(1);
        for p in params.iter_mut() {
            *p += rng.gen_range(-0.1..0.1); // non-zero biases too
        }
        let rows = 5;
        let x: Vec<f32> = (0..rows * model.input_dim())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let classes = *model.sizes().last().unwrap() as u32;
        let y: Vec<u32> = (0..rows as u32).map(|i| i % classes).collect();
        let mut grad = vec![0f32; params.len()];
        model.loss_and_grad(&params, &x, &y, &mut grad);
        let mut scratch = vec![0f32; params.len()];
        let h = 1e-2f32;
        let mut errors: Vec<f32> = (0..params.len())
            .map(|i| {
                let mut p = params.clone();
                p[i] += h;
                let up = model.loss_and_grad(&p, &x, &y, &mut scratch);
                p[i] -= 2.0 * h;
                let down = model.loss_and_grad(&p, &x, &y, &mut scratch);
                let numeric = (up - down) / (2.0 * h);
                (numeric - grad[i]).abs() / numeric.abs().max(grad[i].abs()).max(0.05)
            })
            .collect();
        errors.sort_by(f32::total_cmp);
        // A ReLU whose input lies within h of zero makes the central
        // difference straddle a kink; allow a few such parameters, but a
        // wrong gradient shows up in many.
        let allowed = params.len() / 20;
        let bad = errors.iter().filter(|&&e| e > 2e-2).count();
        assert!(
            bad <= allowed,
            "{:?}: {bad} of {} gradients off by > 2% ({:?})",
            model.sizes(),
            errors.len(),
            &errors[errors.len() - 3..]
        );
        assert!(
            errors[errors.len() / 2] < 1e-3,
            "{:?}: median error {}",
            model.sizes(),
            errors[errors.len() / 2]
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        gradient_check(&Mlp::softmax(4, 3).unwrap());
        gradient_check(&Mlp::new(vec![4, 6, 3]).unwrap());
        gradient_check(&Mlp::new(vec![3, 5, 4, 2]).unwrap());
    }

    #[test]
    fn the_layered_backward_reports_each_layer_once_last_first_with_its_final_bits() {
        for model in [
            Mlp::softmax(5, 3).unwrap(),
            Mlp::new(vec![6, 7, 5, 3]).unwrap(),
            Mlp::named("mlp", "9,4", 8, 4).unwrap(),
        ] {
            let n = model.num_params();
            let mut params = vec![0f32; n];
            model.init(&mut params, 7);
            let rows = 5;
            let x: Vec<f32> = (0..rows * model.input_dim())
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let y: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
            let mut whole = vec![0f32; n];
            let loss = model.loss_and_grad(&params, &x, &y, &mut whole);
            let mut parts: Vec<(Range<usize>, Vec<f32>)> = Vec::new();
            let mut grad = vec![f32::NAN; n];
            let layered = model.loss_and_grad_layered(&params, &x, &y, &mut grad, &mut |r, g| {
                parts.push((r, g.to_vec()))
            });
            assert_eq!(loss.to_bits(), layered.to_bits());
            assert_eq!(
                bytemuck::cast_slice::<f32, u32>(&grad),
                bytemuck::cast_slice::<f32, u32>(&whole)
            );
            // One part per layer, last layer first, covering the buffer.
            assert_eq!(parts.len(), model.sizes().len() - 1);
            let mut end = n;
            for (r, g) in &parts {
                assert_eq!(r.end, end, "{parts:?}");
                end = r.start;
                // What was reported is already final.
                assert_eq!(
                    bytemuck::cast_slice::<f32, u32>(g),
                    bytemuck::cast_slice::<f32, u32>(&whole[r.clone()])
                );
            }
            assert_eq!(end, 0);
        }
    }

    #[test]
    fn the_wide_preset_is_784_1024_1024_1024_10() {
        let wide = Mlp::named("wide", "ignored", 784, 10).unwrap();
        assert_eq!(wide.sizes(), &[784, 1024, 1024, 1024, 10]);
        assert_eq!(
            wide.num_params(),
            784 * 1024 + 1024 + 2 * (1024 * 1024 + 1024) + 1024 * 10 + 10
        );
        let e = Mlp::named("deep", "", 784, 10).unwrap_err().to_string();
        assert!(e.contains("softmax, mlp, wide"), "{e}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(Mlp::new(vec![3]).is_err());
        assert!(Mlp::new(vec![3, 0, 2]).is_err());
        // Regression: widths whose parameter count wraps or does not fit in
        // memory were accepted (a wrapped count panicked in `init`).
        for huge in [1usize << 32, 9_223_372_036_854_775_808, usize::MAX] {
            let e = Mlp::named("mlp", &huge.to_string(), 784, 10)
                .unwrap_err()
                .to_string();
            assert!(e.contains("more than 2147483648 parameters"), "{huge}: {e}");
        }
        assert_eq!(
            Mlp::new(vec![784, 128, 10]).unwrap().num_params(),
            784 * 128 + 128 + 128 * 10 + 10
        );
    }
}
