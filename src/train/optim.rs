//! Optimizers and learning-rate schedules over flat buffers.
//!
//! An [`Optimizer`] is a rule; its state (momentum, Adam's moments, the step
//! count) lives in an [`OptimizerState`] that the training loop owns and
//! checkpoints, so resuming continues exactly where a run stopped.

use std::fmt;

use crate::error::{Error, Result};

/// Learning-rate schedule over the whole run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// The same rate every step.
    Constant,
    /// Cosine decay from the base rate to zero over all steps.
    Cosine,
}

impl LrSchedule {
    /// The rate at `step` (0-based) of `total` steps, from `base`.
    pub fn rate(self, base: f32, step: usize, total: usize) -> f32 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let t = step as f32 / total.max(1) as f32;
                base * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}

/// What an optimizer carries from step to step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    /// Buffers as long as the parameters ([`Optimizer::buffers`] of them).
    pub buffers: Vec<Vec<f32>>,
    /// Steps taken.
    pub steps: u64,
}

impl OptimizerState {
    /// Zeroed state of `optimizer` for `n` parameters.
    pub fn new(optimizer: &dyn Optimizer, n: usize) -> Self {
        OptimizerState {
            buffers: vec![vec![0.0; n]; optimizer.buffers()],
            steps: 0,
        }
    }
}

/// An update rule: parameters, gradient and learning rate in, parameters out.
pub trait Optimizer: Send + Sync + fmt::Debug {
    /// Name in reports and checkpoints (`sgd`, `adam`).
    fn name(&self) -> &'static str;
    /// How many state buffers as long as the parameters it keeps.
    fn buffers(&self) -> usize;
    /// Applies one step to `params` with `grad` at learning rate `lr`,
    /// updating `state` (whose buffers are as long as `params`).
    fn step(&self, params: &mut [f32], grad: &[f32], lr: f32, state: &mut OptimizerState);
    /// The heavy-ball momentum μ, for an optimizer that keeps one (`None`:
    /// it keeps none, or its momentum is not a heavy ball's).
    fn momentum(&self) -> Option<f32> {
        None
    }
    /// [`step`](Self::step) with the momentum `momentum` in place of the
    /// optimizer's own; an optimizer without [`momentum`](Self::momentum)
    /// takes a plain step.
    fn step_with_momentum(
        &self,
        params: &mut [f32],
        grad: &[f32],
        lr: f32,
        momentum: f32,
        state: &mut OptimizerState,
    ) {
        let _ = momentum;
        self.step(params, grad, lr, state);
    }
}

/// `Ok` when `ok`, else an optimizer-setting error saying `why`.
fn require(ok: bool, why: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "optimizer setting",
            reason: why(),
        })
    }
}

/// Whether `x` is finite and at least 0.
fn non_negative(x: f32) -> bool {
    x.is_finite() && x >= 0.0
}

/// SGD with heavy-ball momentum and L2 weight decay:
/// `v ← μ·v + g + λ·w`, `w ← w − η·v`. One state buffer (`v`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    momentum: f32,
    weight_decay: f32,
}

impl Sgd {
    /// SGD with momentum μ ∈ [0, 1) and weight decay λ ≥ 0.
    ///
    /// # Errors
    /// Values outside those ranges.
    pub fn new(momentum: f32, weight_decay: f32) -> Result<Self> {
        require((0.0..1.0).contains(&momentum), || {
            format!("momentum {momentum} must be in [0, 1)")
        })?;
        require(non_negative(weight_decay), || {
            format!("weight decay {weight_decay} must be ≥ 0")
        })?;
        Ok(Sgd {
            momentum,
            weight_decay,
        })
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn buffers(&self) -> usize {
        1
    }
    fn step(&self, params: &mut [f32], grad: &[f32], lr: f32, state: &mut OptimizerState) {
        self.step_with_momentum(params, grad, lr, self.momentum, state);
    }
    fn momentum(&self) -> Option<f32> {
        Some(self.momentum)
    }
    fn step_with_momentum(
        &self,
        params: &mut [f32],
        grad: &[f32],
        lr: f32,
        momentum: f32,
        state: &mut OptimizerState,
    ) {
        let velocity = &mut state.buffers[0];
        for ((w, v), g) in params.iter_mut().zip(velocity.iter_mut()).zip(grad) {
            *v = momentum * *v + g + self.weight_decay * *w;
            *w -= lr * *v;
        }
        state.steps += 1;
    }
}

/// Adam with decoupled weight decay (AdamW, Loshchilov & Hutter 2019):
/// bias-corrected first and second moments; two state buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

impl Adam {
    /// Adam with β1, β2 ∈ [0, 1), ε > 0 and weight decay ≥ 0.
    ///
    /// # Errors
    /// Values outside those ranges.
    pub fn new(beta1: f32, beta2: f32, eps: f32, weight_decay: f32) -> Result<Self> {
        for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
            require((0.0..1.0).contains(&b), || {
                format!("{name} {b} must be in [0, 1)")
            })?;
        }
        require(non_negative(eps) && eps > 0.0, || {
            format!("epsilon {eps} must be > 0")
        })?;
        require(non_negative(weight_decay), || {
            format!("weight decay {weight_decay} must be ≥ 0")
        })?;
        Ok(Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        })
    }
}

impl Default for Adam {
    /// β1 = 0.9, β2 = 0.999, ε = 1e-8, no weight decay.
    fn default() -> Self {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }
    fn buffers(&self) -> usize {
        2
    }
    fn step(&self, params: &mut [f32], grad: &[f32], lr: f32, state: &mut OptimizerState) {
        state.steps += 1;
        let t = state.steps.min(i32::MAX as u64) as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        let (first, rest) = state.buffers.split_at_mut(1);
        let (m, v) = (&mut first[0], &mut rest[0]);
        for (((w, m), v), &g) in params.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(grad) {
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let update = (*m / c1) / ((*v / c2).sqrt() + self.eps);
            *w -= lr * (update + self.weight_decay * *w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises (w − 3)² from w = 0.
    fn descend(o: &dyn Optimizer, lr: f32, steps: usize) -> f32 {
        let mut w = [0.0f32];
        let mut state = OptimizerState::new(o, 1);
        for _ in 0..steps {
            let g = [2.0 * (w[0] - 3.0)];
            o.step(&mut w, &g, lr, &mut state);
        }
        assert_eq!(state.steps, steps as u64);
        w[0]
    }

    #[test]
    fn both_optimizers_find_a_quadratic_minimum() {
        assert!((descend(&Sgd::new(0.5, 0.0).unwrap(), 0.1, 200) - 3.0).abs() < 1e-4);
        assert!((descend(&Adam::default(), 0.05, 2000) - 3.0).abs() < 1e-2);
    }

    #[test]
    fn sgd_is_the_heavy_ball_formula() {
        let o = Sgd::new(0.9, 0.1).unwrap();
        let mut w = [1.0f32];
        let mut s = OptimizerState::new(&o, 1);
        o.step(&mut w, &[0.5], 0.2, &mut s);
        // v = 0 + 0.5 + 0.1·1 = 0.6; w = 1 − 0.2·0.6
        assert_eq!((w[0], s.buffers[0][0]), (1.0 - 0.2 * 0.6, 0.6));
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Sgd::new(1.0, 0.0).is_err());
        assert!(Sgd::new(0.5, -1.0).is_err());
        assert!(Adam::new(0.9, 1.0, 1e-8, 0.0).is_err());
        assert!(Adam::new(0.9, 0.99, 0.0, 0.0).is_err());
    }

    #[test]
    fn cosine_decays_to_zero() {
        assert_eq!(LrSchedule::Cosine.rate(0.4, 0, 10), 0.4);
        assert!(LrSchedule::Cosine.rate(0.4, 10, 10).abs() < 1e-7);
        assert_eq!(LrSchedule::Constant.rate(0.4, 7, 10), 0.4);
    }
}
