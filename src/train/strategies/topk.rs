//! Top-k sparsified SGD with error feedback: each rank sends only its k
//! largest gradient coordinates, all-gathered as (index, value) pairs.

use crate::compress::{ErrorFeedback, TopK};
use crate::error::Result;
use crate::transport::Transport;

use super::residuals::{invalid, residual_after_step, residual_state, Residuals};
use super::{Registered, Section, Spelling, Step, Strategy, Tally};
use crate::algorithms::Algorithm;
use crate::compress::topk::{k_of, PAIR_BYTES};
use crate::train::codec::{gathered_secs, probe_gradient};
use crate::train::Matrix;

/// Synchronous SGD whose gradient travels as each rank's top-k coordinates
/// (`k = ⌈fraction·n⌉`). Top-k is not linear — the ranks pick different
/// coordinates — so the pairs are all-gathered (a ring, p − 1 rounds,
/// (p − 1)·8k bytes sent per rank), and every rank sums them in rank order
/// into the same dense gradient, averaged over the ranks.
///
/// With error feedback (the default; Stich et al. 2018, Karimireddy et al.
/// 2019; the generic [`ErrorFeedback`] around [`TopK`]) each rank adds back
/// what it did not send: it selects from `g + residual` and keeps the rest
/// as the next residual, so over the steps every coordinate is sent
/// eventually. The residuals differ between
/// ranks; they are gathered at the end of every epoch (not counted in the
/// strategy's bytes, like the scoring) and saved in checkpoints, so a
/// resumed run continues exactly — the state PyTorch's PowerSGD hook loses
/// on a restart (pytorch#75666).
#[derive(Debug, Clone, PartialEq)]
pub struct TopKSgd {
    /// Fraction of the coordinates each rank sends, in (0, 1].
    pub fraction: f64,
    /// Keep and add back what was not sent.
    pub error_feedback: bool,
    codec: ErrorFeedback<TopK>,
    residuals: Residuals,
}

impl TopKSgd {
    /// Sends `fraction` of the coordinates, with error feedback.
    ///
    /// # Errors
    /// A fraction outside (0, 1].
    pub fn new(fraction: f64) -> Result<Self> {
        let s = TopKSgd {
            fraction,
            error_feedback: true,
            codec: ErrorFeedback::new(TopK::new(fraction), true),
            residuals: Residuals::default(),
        };
        s.check(1)?;
        Ok(s)
    }

    /// This rank's residual (what error feedback has not sent yet).
    pub fn residual(&self) -> &[f32] {
        self.codec.residual()
    }
}

impl Strategy for TopKSgd {
    fn name(&self) -> String {
        let ef = if self.error_feedback {
            ""
        } else {
            ",error-feedback=off"
        };
        format!("sync,compress=topk:{}{ef}", self.fraction)
    }

    fn check(&self, _p: usize) -> Result<()> {
        if self.fraction > 0.0 && self.fraction <= 1.0 {
            Ok(())
        } else {
            Err(invalid(format!(
                "topk:{} sends a fraction of the coordinates: it must lie in (0, 1]",
                self.fraction
            )))
        }
    }

    fn start<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
        self.codec = ErrorFeedback::new(TopK::new(self.fraction), self.error_feedback);
        let n = if self.error_feedback { params.len() } else { 0 };
        self.codec.set_residual(self.residuals.start(ctx, n)?);
        Ok(())
    }

    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        let p = ctx.group.size();
        if p <= 1 {
            return Ok(());
        }
        ctx.all_gather_compressed(&mut self.codec, grad)
    }

    residual_after_step!();
    residual_state!();
}

impl Registered for TopKSgd {
    const SYNOPSIS: &'static str = "sync,compress=topk:F[,error-feedback=off]";
    const HELP: &'static str =
        "each rank's ⌈F·n⌉ largest gradient coordinates (plus error feedback's residual), all-gathered";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        s.compressor("topk", |g, c| {
            let fraction = c.number::<f64>(s, None, "topk takes a fraction, e.g. topk:0.01")?;
            if g.algorithm.unwrap_or(Algorithm::Ring) != Algorithm::Ring {
                return Err(s.invalid(format!(
                    "`{}`: top-k is not linear, so its pairs are all-gathered: it takes no algorithm or wire type",
                    s.text()
                )));
            }
            let mut t = TopKSgd::new(fraction)?;
            t.error_feedback = g.feedback.unwrap_or(true);
            Ok(t)
        })
    }

    fn communication(&self, t: &mut Tally<'_>) {
        // A ring all-gather of every rank's k pairs each step.
        t.all_gather(
            (k_of(self.fraction, t.params) * PAIR_BYTES) as u64,
            t.steps as u64,
        );
    }

    fn codec_secs(&self, p: usize, n: usize, _: &[Matrix]) -> Option<Result<f64>> {
        let codec = ErrorFeedback::new(TopK::new(self.fraction), self.error_feedback);
        Some(Ok(gathered_secs(codec, &probe_gradient(n), p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::topk::{k_of, top_k, PAIR_BYTES};
    use crate::group::Group;

    #[test]
    fn every_coordinate_is_sent_eventually_what_is_not_is_the_residual() {
        // Over T steps, per rank: Σ sent + final residual = Σ g (f32
        // rounding of g + residual aside), exactly k pairs a step, and the
        // averaged gradient is the same bits on every rank.
        let (p, n, steps, fraction) = (3usize, 200usize, 25usize, 0.05);
        let k = k_of(fraction, n);
        let out = Group::local(p, |g| {
            let mut s = TopKSgd::new(fraction).unwrap();
            let mut ctx = Step::new(&g, 1, 0, steps, 1);
            s.start(&mut ctx, &mut vec![0.0; n]).unwrap();
            let (mut sum_g, mut sum_sent) = (vec![0f64; n], vec![0f64; n]);
            let mut averaged = Vec::new();
            for t in 0..steps {
                let mut grad: Vec<f32> = (0..n)
                    .map(|i| (((i * 31 + t * 17 + g.rank() * 7) % 23) as f32 - 11.0) * 0.01)
                    .collect();
                for (a, &x) in sum_g.iter_mut().zip(&grad) {
                    *a += x as f64;
                }
                let acc: Vec<f32> = grad.iter().zip(s.residual()).map(|(x, e)| x + e).collect();
                let sent = top_k(&acc, k);
                assert_eq!(sent.len(), k);
                for pair in &sent {
                    sum_sent[pair.index as usize] += pair.value as f64;
                }
                s.after_backward(&mut ctx, &mut grad).unwrap();
                averaged.push(grad);
            }
            for i in 0..n {
                let err = (sum_sent[i] + s.residual()[i] as f64 - sum_g[i]).abs();
                assert!(err < 1e-4, "coordinate {i}: {err}");
            }
            assert!(s.residual().iter().any(|&e| e != 0.0));
            (averaged, ctx.bytes, ctx.rounds)
        });
        for (a, bytes, rounds) in &out {
            assert_eq!(a, &out[0].0, "the same update on every rank");
            assert_eq!(*bytes, (steps * (p - 1) * k * PAIR_BYTES) as u64);
            assert_eq!(*rounds, (steps * (p - 1)) as u64);
        }
    }

    #[test]
    fn without_error_feedback_nothing_is_kept() {
        let out = Group::local(2, |g| {
            let mut s = TopKSgd::new(0.1).unwrap();
            s.error_feedback = false;
            let mut ctx = Step::new(&g, 1, 0, 1, 1);
            s.start(&mut ctx, &mut [0.0; 50]).unwrap();
            let mut grad: Vec<f32> = (0..50).map(|i| i as f32).collect();
            s.after_backward(&mut ctx, &mut grad).unwrap();
            (grad, s.residual().iter().all(|&e| e == 0.0))
        });
        // Both ranks send coordinates 45..50 (the largest): their mean.
        let want: Vec<f32> = (0..50).map(|i| if i >= 45 { i as f32 } else { 0.0 }).collect();
        assert!(out.iter().all(|(g, clean)| g == &want && *clean));
    }
}
