//! Error feedback's residuals across ranks and checkpoints, shared by the
//! compressors that keep one (top-k, random-k, PowerSGD).

use crate::error::{Error, Result};
use crate::transport::Transport;

use super::{Section, Step};

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
            let saved = all.len() / n.max(1);
            if n == 0 || all.len() != saved * n || saved == 0 {
                return Err(invalid(format!(
                    "the checkpoint's error-feedback residuals hold {} values, not a multiple of this model's {n} parameters",
                    all.len()
                )));
            }
            if saved == p {
                own.copy_from_slice(&all[r * n..(r + 1) * n]);
            } else {
                // On another rank count every rank starts from the saved
                // residuals' mean: the average update still owes the model
                // what the saved ranks' average did.
                crate::train::checkpoint::mean_of(&all, &mut own);
            }
        }
        Ok(own)
    }

    /// Whether a checkpoint follows `ctx` (an epoch's last step, or one
    /// of the checkpoint interval), where [`gather`](Residuals::gather) is
    /// called.
    pub(crate) fn due<C: Transport>(ctx: &Step<'_, C>) -> bool {
        ctx.saves
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

/// The `after_step` hook of a strategy with `residuals: Residuals`,
/// `error_feedback: bool` and a method `residual()`: with error feedback,
/// gathers the residuals at epoch ends.
macro_rules! residual_after_step {
    () => {
        fn after_step<C: Transport>(
            &mut self,
            ctx: &mut Step<'_, C>,
            _params: &mut [f32],
            _optimizer: &mut crate::train::OptimizerState,
        ) -> Result<()> {
            if self.error_feedback && super::residuals::Residuals::due(ctx) {
                let own = self.residual().to_vec();
                self.residuals.gather(ctx, &own)?;
            }
            Ok(())
        }
    };
}
pub(crate) use residual_after_step;

/// The `state` and `restore` hooks of a strategy whose only state is its
/// `residuals: Residuals` (with `error_feedback: bool`).
macro_rules! residual_state {
    () => {
        fn state(&self) -> Vec<Section> {
            self.residuals.state()
        }

        fn restore(&mut self, sections: &[Section]) -> Result<()> {
            self.residuals.restore(sections, self.error_feedback)
        }
    };
}
pub(crate) use residual_state;

pub(crate) fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "strategy",
        reason,
    }
}
