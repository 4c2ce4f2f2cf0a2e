//! Top-k sparsified SGD with error feedback: each rank sends only its k
//! largest gradient coordinates, all-gathered as (index, value) pairs.

use crate::compress::{ErrorFeedback, TopK};
use crate::error::{Error, Result};
use crate::transport::Transport;

use super::strategy::{Section, Step, Strategy};

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

/// Error feedback's per-rank residual, and how it reaches checkpoints: the
/// residuals differ between ranks, so every rank's is gathered at the end
/// of each epoch (not counted in the strategy's bytes, like the scoring),
/// saved as one section, and on resume each rank takes back its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Residuals {
    /// Every rank's residual (rank order), gathered at the last epoch end.
    gathered: Vec<f32>,
    /// From a checkpoint, until `start` takes this rank's part.
    restored: Option<Vec<f32>>,
}

impl Residuals {
    /// This rank's first residual: zeros of `n`, or its part of a restored
    /// checkpoint.
    pub(crate) fn start<C: Transport>(&mut self, ctx: &Step<'_, C>, n: usize) -> Result<Vec<f32>> {
        let (p, r) = (ctx.group.size(), ctx.group.rank());
        let mut own = vec![0.0; n];
        self.gathered.clear();
        if let Some(all) = self.restored.take() {
            if all.len() != p * n {
                let saved = all.len() / n.max(1);
                return Err(invalid(format!(
                    "the checkpoint holds the state of {saved} ranks (their error-feedback residuals): resume it on {saved} ranks"
                )));
            }
            own.copy_from_slice(&all[r * n..(r + 1) * n]);
        }
        Ok(own)
    }

    /// Whether `ctx` is the last step of an epoch, where
    /// [`gather`](Residuals::gather) is called.
    pub(crate) fn due<C: Transport>(ctx: &Step<'_, C>) -> bool {
        ctx.step + 1 == ctx.steps_per_epoch
    }

    /// Gathers every rank's residual `own` (at the end of an epoch).
    /// Collective.
    pub(crate) fn gather<C: Transport>(&mut self, ctx: &mut Step<'_, C>, own: &[f32]) -> Result<()> {
        self.gathered = vec![0.0; ctx.group.size() * own.len()];
        ctx.all_gather(own, &mut self.gathered)
    }

    /// The checkpoint section, once gathered.
    pub(crate) fn state(&self) -> Vec<Section> {
        match self.gathered.is_empty() {
            true => Vec::new(),
            false => vec![Section {
                name: "residuals".into(),
                values: self.gathered.clone(),
            }],
        }
    }

    /// Takes the section back; with error feedback `on`, an error when it
    /// is missing.
    pub(crate) fn restore(&mut self, sections: &[Section], on: bool) -> Result<()> {
        self.restored = sections
            .iter()
            .find(|s| s.name == "residuals")
            .map(|s| s.values.clone());
        match (on, &self.restored) {
            (true, None) => Err(invalid("the checkpoint holds no error-feedback residuals".into())),
            _ => Ok(()),
        }
    }
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

/// The `after_step` hook of a strategy with `residuals: Residuals`,
/// `error_feedback: bool` and a method `residual()`: with error feedback,
/// gathers the residuals at epoch ends.
macro_rules! residual_after_step {
    () => {
        fn after_step<C: Transport>(
            &mut self,
            ctx: &mut Step<'_, C>,
            _params: &mut [f32],
            _optimizer: &mut super::optim::OptimizerState,
        ) -> Result<()> {
            if self.error_feedback && super::sparse::Residuals::due(ctx) {
                let own = self.residual().to_vec();
                self.residuals.gather(ctx, &own)?;
            }
            Ok(())
        }
    };
}
pub(crate) use residual_after_step;

pub(crate) fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "strategy",
        reason,
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

    fn state(&self) -> Vec<Section> {
        self.residuals.state()
    }

    fn restore(&mut self, sections: &[Section]) -> Result<()> {
        self.residuals.restore(sections, self.error_feedback)
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
