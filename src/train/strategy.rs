//! Strategies: what crosses the network around each training step.
//!
//! The training loop computes each rank's gradient on its examples and
//! applies the optimizer; a [`Strategy`] decides what the ranks exchange,
//! through hooks around those two: before the step (a parameter server
//! would pull, gossip would mix with neighbours), after the backward pass
//! (all-reduce the gradient — [`GradientAllReduce`], synchronous data
//! parallelism), after the optimizer step (local SGD would average every τ
//! steps), and at the end. A strategy may keep state; what it returns from
//! [`Strategy::state`] goes into checkpoints.

use std::fmt;

use crate::algorithms::Algorithm;
use crate::element::ReduceOp;
use crate::error::Result;
use crate::group::Group;
use crate::transport::Transport;

use super::optim::OptimizerState;

/// Where a hook is called: the group, the position in the run, and the
/// tally of what the strategy put on the wire.
pub struct Step<'a, C: Transport> {
    /// The ranks.
    pub group: &'a Group<C>,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Step within the epoch, from 0.
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    pub(crate) bytes: u64,
}

impl<'a, C: Transport> Step<'a, C> {
    pub(crate) fn new(group: &'a Group<C>, epoch: usize, step: usize, steps_per_epoch: usize) -> Self {
        Step {
            group,
            epoch,
            step,
            steps_per_epoch,
            bytes: 0,
        }
    }

    /// Steps taken before this one over the whole run.
    pub fn global_step(&self) -> usize {
        (self.epoch - 1) * self.steps_per_epoch + self.step
    }
    /// Records `bytes` this rank handed to collectives (for the epoch's
    /// metrics). On one rank nothing crosses a network, and nothing is
    /// counted.
    pub fn count_bytes(&mut self, bytes: u64) {
        if self.group.size() > 1 {
            self.bytes += bytes;
        }
    }
}

/// A named buffer of a strategy's state, saved in checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Name, unique within the strategy.
    pub name: String,
    /// Values.
    pub values: Vec<f32>,
}

/// What the ranks exchange around each training step; see the module docs.
///
/// The loop clones the strategy for every run, so a strategy value is a
/// configuration and its clone's fields the run's state. Every hook is
/// collective: every rank calls it at the same point.
pub trait Strategy: Clone + Send + Sync + fmt::Debug {
    /// Name in reports and checkpoints (`sync:ring`).
    fn name(&self) -> String;

    /// Before the first step (after the parameters are initialised or
    /// restored, the same on every rank).
    fn start<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _params: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// Before the gradient of a step is computed.
    fn before_step<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _params: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// After the backward pass: `grad` holds this rank's mean gradient over
    /// its examples; on return it is the gradient the optimizer applies.
    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()>;

    /// After the optimizer updated `params`.
    fn after_step<C: Transport>(
        &mut self,
        _ctx: &mut Step<'_, C>,
        _params: &mut [f32],
        _optimizer: &mut OptimizerState,
    ) -> Result<()> {
        Ok(())
    }

    /// After the last step of the run.
    fn finish<C: Transport>(&mut self, _ctx: &mut Step<'_, C>, _params: &mut [f32]) -> Result<()> {
        Ok(())
    }

    /// State to checkpoint (nothing by default).
    fn state(&self) -> Vec<Section> {
        Vec::new()
    }

    /// Takes back what [`Strategy::state`] returned.
    ///
    /// # Errors
    /// Sections that do not fit this strategy.
    fn restore(&mut self, _sections: &[Section]) -> Result<()> {
        Ok(())
    }
}

/// Synchronous data parallelism: every step the flat gradient buffer is
/// averaged over the ranks with one all-reduce of `algorithm`, so every
/// rank applies the same update — parallel minibatch SGD, equal to serial
/// minibatch SGD with the same global batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientAllReduce {
    /// The all-reduce schedule (or `Auto`).
    pub algorithm: Algorithm,
}

impl GradientAllReduce {
    /// All-reduce the gradient with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        GradientAllReduce { algorithm }
    }
}

impl Default for GradientAllReduce {
    /// The ring.
    fn default() -> Self {
        GradientAllReduce::new(Algorithm::Ring)
    }
}

impl Strategy for GradientAllReduce {
    fn name(&self) -> String {
        format!("sync:{}", self.algorithm)
    }

    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        ctx.group
            .all_reduce_in_place(grad, ReduceOp::Avg, self.algorithm)?;
        ctx.count_bytes(std::mem::size_of_val(grad) as u64);
        Ok(())
    }
}
