//! DiLoCo (Douillard et al., 2023, "DiLoCo: Distributed Low-Communication
//! Training of Language Models"): local SGD whose averaging step is an
//! outer optimizer.

use crate::algorithms::Algorithm;
use crate::element::ReduceOp;
use crate::error::Result;
use crate::train::OptimizerState;
use crate::transport::Transport;

use super::local::LocalSgd;
use super::{Registered, Section, Spelling, Step, Strategy, Tally};

/// Local SGD with an outer Nesterov optimizer.
///
/// Every rank takes H inner steps on its own examples with the trainer's
/// optimizer (whose state stays local, as in the paper). Then the ranks
/// average their parameters with one all-reduce of `algorithm`, and the
/// pseudo-gradient Δ = θ_before − mean(θ_ranks) — how far the round moved
/// the model from where it began — is applied to θ_before by SGD with
/// Nesterov momentum (PyTorch's `SGD(nesterov=True)`, the paper's outer
/// optimizer): v ← μ·v + Δ, θ ← θ_before − η_o·(Δ + μ·v). The paper uses
/// η_o = 0.7, μ = 0.9. With η_o = 1 and μ = 0 the update is θ ← mean:
/// local SGD with τ = H, bit for bit (the update is written as mean +
/// (1 − η_o)·Δ − η_o·μ·v and skipped where that correction is zero).
///
/// Every rank applies the same outer update to the same θ_before, so the
/// ranks agree after each round. θ_before and v are the same on every rank
/// and are saved in checkpoints; a resumed run continues exactly. As with
/// local SGD the last step of the run ends a round, so the trained model
/// is one model. On the wire: one all-reduce of the parameters per round.
#[derive(Debug, Clone, PartialEq)]
pub struct DiLoCo {
    /// Inner steps per round (H).
    pub inner_steps: usize,
    /// Outer learning rate η_o.
    pub outer_lr: f32,
    /// Outer Nesterov momentum μ.
    pub outer_momentum: f32,
    /// The all-reduce of the averaging.
    pub algorithm: Algorithm,
    /// θ_before: the parameters at the start of the round.
    anchor: Vec<f32>,
    /// The outer momentum buffer v.
    velocity: Vec<f32>,
}

impl DiLoCo {
    /// H inner steps per round, the paper's outer optimizer (η_o 0.7, μ 0.9), the ring.
    ///
    /// # Errors
    /// H = 0.
    pub fn new(inner_steps: usize) -> Result<Self> {
        let d = DiLoCo {
            inner_steps,
            outer_lr: 0.7,
            outer_momentum: 0.9,
            algorithm: Algorithm::Ring,
            anchor: Vec::new(),
            velocity: Vec::new(),
        };
        d.check(1)?;
        Ok(d)
    }

    /// The rounds' schedule: local SGD with τ = H.
    fn rounds(&self) -> LocalSgd {
        LocalSgd {
            period: Some(self.inner_steps),
            warmup_steps: 0,
            average_momentum: false,
            algorithm: self.algorithm,
        }
    }

    /// The outer step: `mean` (the ranks' average) becomes the new θ.
    fn outer_step(&mut self, mean: &mut [f32]) {
        let (lr, mu) = (self.outer_lr, self.outer_momentum);
        for ((theta, before), v) in mean.iter_mut().zip(&mut self.anchor).zip(&mut self.velocity) {
            let delta = *before - *theta;
            *v = mu * *v + delta;
            // θ_before − η(Δ + μv) = mean + (1 − η)Δ − ημv.
            let correction = (1.0 - lr) * delta - lr * mu * *v;
            if correction != 0.0 {
                *theta += correction;
            }
            *before = *theta;
        }
    }
}

impl Strategy for DiLoCo {
    fn name(&self) -> String {
        let algo = match self.algorithm {
            Algorithm::Ring => String::new(),
            a => format!(",algo={a}"),
        };
        format!(
            "diloco:h={},outer-lr={},outer-momentum={}{algo}",
            self.inner_steps, self.outer_lr, self.outer_momentum
        )
    }

    fn replicas_differ(&self) -> bool {
        true
    }

    fn check(&self, _p: usize) -> Result<()> {
        let bad = |reason: String| {
            Err(crate::error::Error::InvalidArgument {
                what: "DiLoCo",
                reason,
            })
        };
        if self.inner_steps == 0 {
            return bad("h must be at least 1 inner step (h=1 is an outer step after every step)".into());
        }
        if !(self.outer_lr.is_finite() && self.outer_lr > 0.0) {
            return bad(format!("outer-lr={} must be a positive number", self.outer_lr));
        }
        if !(0.0..1.0).contains(&self.outer_momentum) {
            return bad(format!(
                "outer-momentum={} must lie in [0, 1)",
                self.outer_momentum
            ));
        }
        Ok(())
    }

    fn start<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
        if self.anchor.is_empty() && self.velocity.is_empty() {
            self.anchor = params.to_vec();
            self.velocity = vec![0.0; params.len()];
        } else if self.anchor.len() != params.len() || self.velocity.len() != params.len() {
            return Err(crate::error::Error::InvalidArgument {
                what: "checkpoint",
                reason: format!(
                    "DiLoCo's outer state holds {} values, the model has {} parameters",
                    self.anchor.len(),
                    params.len()
                ),
            });
        }
        Ok(())
    }

    fn after_backward<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _grad: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn after_step<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        params: &mut [f32],
        _optimizer: &mut OptimizerState,
    ) -> Result<()> {
        if !self.rounds().averages_after(ctx.global_step(), ctx.total_steps) {
            return Ok(());
        }
        ctx.all_reduce(params, ReduceOp::Avg, self.algorithm)?;
        self.outer_step(params);
        Ok(())
    }

    fn state(&self) -> Vec<Section> {
        vec![
            Section {
                name: "diloco.anchor".into(),
                values: self.anchor.clone(),
            },
            Section {
                name: "diloco.velocity".into(),
                values: self.velocity.clone(),
            },
        ]
    }

    fn restore(&mut self, sections: &[Section]) -> Result<()> {
        let find = |name: &str| {
            sections
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.values.clone())
                .ok_or_else(|| crate::error::Error::InvalidArgument {
                    what: "checkpoint",
                    reason: format!("holds no `{name}` section: not a DiLoCo checkpoint"),
                })
        };
        self.anchor = find("diloco.anchor")?;
        self.velocity = find("diloco.velocity")?;
        Ok(())
    }
}

impl Registered for DiLoCo {
    const SYNOPSIS: &'static str = "diloco:h=H[,outer-lr=0.7][,outer-momentum=0.9][,algo=A]";
    const HELP: &'static str = "DiLoCo: H local steps, then the parameters averaged and the round's pseudo-gradient applied by an outer Nesterov optimizer";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        if s.kind() != "diloco" {
            return None;
        }
        let text = s.text();
        let parse = || -> Result<Self> {
            let mut d = DiLoCo::new(1)?;
            let mut h = None;
            for item in s.items() {
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                let number = |what: &str| s.invalid(format!("`{item}` in `{text}`: {key} takes {what}"));
                match key {
                    "h" => h = Some(value.parse().map_err(|_| number("a whole number of steps"))?),
                    "outer-lr" => d.outer_lr = value.parse().map_err(|_| number("a number"))?,
                    "outer-momentum" => d.outer_momentum = value.parse().map_err(|_| number("a number"))?,
                    "algo" => d.algorithm = value.parse()?,
                    _ => {
                        return Err(s.invalid(format!(
                            "unknown setting `{item}` in `{text}` (h=, outer-lr=, outer-momentum=, algo=)"
                        )))
                    }
                }
            }
            d.inner_steps =
                h.ok_or_else(|| s.invalid(format!("`{text}` needs h=H (inner steps per round)")))?;
            d.check(1)?;
            Ok(d)
        };
        Some(parse())
    }

    fn communication(&self, t: &mut Tally<'_>) {
        self.rounds().communication(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_bad_ones() {
        let d: super::super::AnyStrategy = "diloco:h=32".parse().unwrap();
        assert_eq!(d.name(), "diloco:h=32,outer-lr=0.7,outer-momentum=0.9");
        for (bad, says) in [
            ("diloco", "needs h=H"),
            ("diloco:h=0", "at least 1"),
            ("diloco:h=4,outer-lr=0", "positive"),
            ("diloco:h=4,outer-momentum=1", "[0, 1)"),
            ("diloco:h=4,speed=2", "unknown setting `speed=2`"),
            ("diloco:h=x", "whole number"),
        ] {
            let e = bad.parse::<super::super::AnyStrategy>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_outer_step_is_nesterov_on_the_pseudo_gradient() {
        let mut d = DiLoCo::new(4).unwrap();
        d.outer_lr = 0.5;
        d.outer_momentum = 0.5;
        d.anchor = vec![1.0, 2.0];
        d.velocity = vec![0.0, 0.25];
        let mut mean = vec![0.5, 2.5];
        d.outer_step(&mut mean);
        // Δ = (0.5, −0.5); v = (0.5, 0.125 − 0.5 = −0.375);
        // θ = before − 0.5·(Δ + 0.5·v) = (1 − 0.375, 2 + 0.34375).
        assert_eq!(d.velocity, vec![0.5, -0.375]);
        assert_eq!(mean, vec![0.625, 2.34375]);
        assert_eq!(d.anchor, mean);
    }
}
