//! Local SGD and model averaging: ranks step on their own examples and
//! average their parameters every τ steps.

use crate::algorithms::Algorithm;
use crate::element::ReduceOp;
use crate::error::{Error, Result};
use crate::transport::Transport;

use super::{Registered, Spelling, Step, Strategy, Tally};
use crate::train::OptimizerState;

/// Periodic model averaging (local SGD), post-local SGD and one-shot
/// averaging.
///
/// The batch semantics are those of synchronous SGD: every step each rank
/// computes the gradient of its own B/p examples of the step's global batch
/// B (the batch source decides which), but applies it to its own
/// parameters without exchanging it. Every `period` steps (τ) the ranks
/// average their parameters with one all-reduce of `algorithm` — and the
/// optimizer's buffers (momentum) too when `average_momentum` is set. The
/// first `warmup_steps` steps are synchronous (the gradient is all-reduced,
/// as [`GradientAllReduce`](super::GradientAllReduce) does): post-local SGD
/// (Lin et al. 2020). `period: None` averages once, at the end of training
/// (one-shot averaging, Zinkevich et al.'s SimuParallelSGD). The last step
/// of the run always averages, so the trained model is one model.
///
/// With τ = 1, plain SGD and no momentum averaging this is synchronous SGD
/// up to float rounding: the mean of (w − η·g_i) is w − η·mean(g_i).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSgd {
    /// Steps between averagings (τ); `None`: once, at the end.
    pub period: Option<usize>,
    /// Synchronous steps before local ones begin.
    pub warmup_steps: usize,
    /// Average the optimizer's buffers (momentum, Adam's moments) with the parameters.
    pub average_momentum: bool,
    /// The all-reduce of the averaging (and of the warm-up's gradients).
    pub algorithm: Algorithm,
}

impl LocalSgd {
    /// Averaging every `period` steps, no warm-up, momentum kept local, the ring.
    ///
    /// # Errors
    /// A period of 0.
    pub fn new(period: usize) -> Result<Self> {
        let s = LocalSgd {
            period: Some(period),
            warmup_steps: 0,
            average_momentum: false,
            algorithm: Algorithm::Ring,
        };
        s.check(1)?;
        Ok(s)
    }

    /// One-shot averaging: every rank trains alone, the models are averaged once at the end.
    pub fn one_shot() -> Self {
        LocalSgd {
            period: None,
            warmup_steps: 0,
            average_momentum: false,
            algorithm: Algorithm::Ring,
        }
    }

    /// Whether the step with 0-based global index `step` ends with an averaging.
    pub fn averages_after(&self, step: usize, total_steps: usize) -> bool {
        if step + 1 == total_steps {
            return true;
        }
        match (self.period, step.checked_sub(self.warmup_steps)) {
            (Some(tau), Some(local)) => (local + 1) % tau == 0,
            _ => false,
        }
    }
}

impl Strategy for LocalSgd {
    fn name(&self) -> String {
        let mut name = match (self.period, self.warmup_steps) {
            (None, 0) => "oneshot".to_string(),
            (None, w) => format!("postlocal:warmup={w},tau=inf"),
            (Some(t), 0) => format!("local:tau={t}"),
            (Some(t), w) => format!("postlocal:warmup={w},tau={t}"),
        };
        if self.average_momentum {
            name.push_str(",momentum");
        }
        if self.algorithm != Algorithm::Ring {
            name.push_str(&format!(",algo={}", self.algorithm));
        }
        name
    }

    fn replicas_differ(&self) -> bool {
        true
    }

    fn check(&self, _p: usize) -> Result<()> {
        if self.period == Some(0) {
            return Err(Error::InvalidArgument {
                what: "local SGD period",
                reason: "tau must be at least 1 step (tau=1 averages after every step)".into(),
            });
        }
        Ok(())
    }

    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        if ctx.global_step() < self.warmup_steps {
            ctx.all_reduce(grad, ReduceOp::Avg, self.algorithm)?;
        }
        Ok(())
    }

    fn after_step<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        params: &mut [f32],
        optimizer: &mut OptimizerState,
    ) -> Result<()> {
        let step = ctx.global_step();
        // During the warm-up every rank applied the same averaged gradient:
        // nothing to average.
        if step < self.warmup_steps || !self.averages_after(step, ctx.total_steps) {
            return Ok(());
        }
        ctx.all_reduce(params, ReduceOp::Avg, self.algorithm)?;
        if self.average_momentum {
            for b in &mut optimizer.buffers {
                ctx.all_reduce(b, ReduceOp::Avg, self.algorithm)?;
            }
        }
        Ok(())
    }
}

impl Registered for LocalSgd {
    const SYNOPSIS: &'static str =
        "local:tau=T[,warmup=W][,momentum][,algo=A] | postlocal:warmup=W,tau=T | oneshot";
    const HELP: &'static str = "local SGD: the parameters averaged every T steps (momentum: the optimizer's buffers too), after W synchronous steps; oneshot averages once, at the end";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        let kind = s.kind();
        if !matches!(kind, "local" | "postlocal" | "oneshot") {
            return None;
        }
        let text = s.text();
        let parse = || -> Result<Self> {
            let mut l = LocalSgd::one_shot();
            let (mut tau, mut warmup) = (None, None);
            for item in s.items() {
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                let number = || -> Result<usize> {
                    value.parse().map_err(|_| {
                        s.invalid(format!(
                            "`{item}` in `{text}`: {key} takes a whole number of steps"
                        ))
                    })
                };
                match key {
                    "tau" if value == "inf" => tau = Some(None),
                    "tau" => tau = Some(Some(number()?)),
                    "warmup" => warmup = Some(number()?),
                    "momentum" if value.is_empty() => l.average_momentum = true,
                    "algo" => l.algorithm = value.parse()?,
                    _ => {
                        return Err(s.invalid(format!(
                            "unknown setting `{item}` in `{text}` (tau=, warmup=, momentum, algo=)"
                        )))
                    }
                }
            }
            match (kind, tau, warmup) {
                ("local", Some(t), w) => {
                    l.period = t;
                    l.warmup_steps = w.unwrap_or(0);
                }
                ("postlocal", Some(t), Some(w)) => {
                    l.period = t;
                    l.warmup_steps = w;
                }
                ("oneshot", None, None) => {}
                ("local", None, _) => {
                    return Err(s.invalid(format!("`{text}` needs tau=T (steps between averagings)")))
                }
                ("postlocal", ..) => return Err(s.invalid(format!("`{text}` needs warmup=W and tau=T"))),
                _ => return Err(s.invalid(format!("`{text}`: oneshot takes no tau or warmup"))),
            }
            l.check(1)?;
            Ok(l)
        };
        Some(parse())
    }

    fn communication(&self, t: &mut Tally<'_>) {
        let steps = t.steps;
        let synced = self.warmup_steps.min(steps);
        let averagings = (synced..steps).filter(|&s| self.averages_after(s, steps)).count() as u64;
        let per = 1 + if self.average_momentum {
            t.buffers as u64
        } else {
            0
        };
        t.all_reduce(self.algorithm, t.params, synced as u64 + averagings * per);
    }
}
