//! Strategies: what crosses the network around each training step.
//!
//! The training loop computes each rank's gradient on its examples and
//! applies the optimizer; a [`Strategy`] decides what the ranks exchange,
//! through hooks around those two: before the step (gossip mixes with its
//! neighbours), after the backward pass (all-reduce the gradient —
//! [`GradientAllReduce`], synchronous data parallelism), after the
//! optimizer step (local SGD averages every τ steps), and at the end. A
//! strategy may keep state; what it returns from [`Strategy::state`] goes
//! into checkpoints.
//!
//! Every built-in strategy is one file here, implementing [`Strategy`] (its
//! hooks) and [`Registered`] (its spelling, its help line, its exact
//! communication over a run and its codec's local work), and one line of
//! the `registry!` below, which generates [`AnyStrategy`] — the enum, the
//! dispatch of every hook, the parser of `--strategy` spellings, its help
//! text, and the cost and codec tables. Adding a strategy is one new file
//! and one registry line. (`rustfmt` does not see modules declared by a
//! macro, so `scripts/test.sh` checks these files by name.)

use std::fmt;
use std::str::FromStr;

use crate::algorithms::{Algorithm, Cost};
use crate::cost::{select, CostParams};
use crate::error::{Error, Result};
use crate::transport::Transport;

use super::model::Matrix;
use super::optim::OptimizerState;

mod hooks;
mod residuals;
mod spelling;
mod step;
#[cfg(test)]
mod tests;

pub use self::qsgd::Qsgd;
pub use self::randomk::RandomK;
pub use self::spelling::{Compress, Gradient, Spelling};
pub use self::step::Step;

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

    /// Whether the ranks' parameters (and optimizer state) may differ
    /// between steps — local SGD between averagings, gossip always. The
    /// loop then evaluates the ranks' average, reports the consensus
    /// distance, and checkpoints every rank's state. Default: no.
    fn replicas_differ(&self) -> bool {
        false
    }

    /// Checks the strategy's settings for `p` ranks before the run starts.
    ///
    /// # Errors
    /// Settings that cannot work on `p` ranks (a torus on a prime count).
    fn check(&self, _p: usize) -> Result<()> {
        Ok(())
    }

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

    /// Whether the gradient's exchange may run per bucket as the backward
    /// pass finishes them (see [`crate::train::buckets`]), and what runs on
    /// each bucket; the trainer then runs that hook instead of
    /// [`after_backward`](Strategy::after_backward). Default: no.
    fn buckets(&self) -> Option<crate::train::BucketHook> {
        None
    }

    /// What the strategy does to each bucket around its all-reduces, when
    /// it runs on buckets ([`buckets`](Strategy::buckets)); `None`: each
    /// bucket is averaged as it is.
    fn bucket_codec(&mut self) -> Option<&mut dyn crate::train::buckets::BucketCodec> {
        None
    }

    /// The size of the gradient buckets, for a strategy that can cut its
    /// gradient (`--bucket-mb` sets it). Default: none.
    fn bucket_size(&mut self) -> Option<&mut crate::train::BucketSize> {
        None
    }

    /// After [`after_backward`](Strategy::after_backward), before the
    /// optimizer: `params` are still those the gradient `grad` was computed
    /// at. Gossip mixes the parameters with the neighbours' here.
    fn before_update<C: Transport>(
        &mut self,
        _ctx: &mut Step<'_, C>,
        _params: &mut [f32],
        _grad: &[f32],
    ) -> Result<()> {
        Ok(())
    }

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

/// What the registry needs of a strategy file besides its hooks: its
/// spelling, one line of help, what it puts on the wire over a run (exact,
/// held to the `Counting` transport by the tests), and its codec's local
/// work.
pub trait Registered: Strategy {
    /// The spelling's synopsis (`local:tau=T[,warmup=W][,momentum][,algo=A]`).
    const SYNOPSIS: &'static str;
    /// One line of help.
    const HELP: &'static str;

    /// This strategy from `spelling`, or `None` when the spelling is
    /// another strategy's.
    fn parse(spelling: &Spelling<'_>) -> Option<Result<Self>>;

    /// Adds what a run puts on the wire to `tally` (called with p ≥ 2).
    fn communication(&self, tally: &mut Tally<'_>);

    /// Seconds of the local encoding and decoding a compressor adds to a
    /// step on `p` ranks for `n` parameters; `None` for a strategy that
    /// is no gradient compressor of synchronous SGD.
    fn codec_secs(&self, _p: usize, _n: usize, _matrices: &[Matrix]) -> Option<Result<f64>> {
        None
    }

    /// Whether what it sends depends on the model's weight matrices
    /// (PowerSGD's factors), so pricing it needs them. Default: no.
    fn factors_matrices(&self) -> bool {
        false
    }

    /// The strategy in a run's header on `p` ranks (its name, and what
    /// else a reader should know: gossip's spectral gap).
    fn describe(&self, _p: usize) -> String {
        self.name()
    }
}

/// What a strategy puts on the wire over a run, from the exact cost model
/// of each all-reduce and the topology of each gossip step: the figures
/// `train` and `compare` count, predicted without running.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Communication {
    /// The strategy's spelling.
    pub strategy: String,
    /// Steps of the run.
    pub steps: usize,
    /// Bytes the busiest rank sends over the run.
    pub bytes: u64,
    /// Sequential rounds over the run.
    pub rounds: u64,
    /// Predicted seconds of communication over the run (α-β-γ model).
    pub predicted_secs: f64,
}

impl Communication {
    /// Bytes per step, on average over the run.
    pub fn bytes_per_step(&self) -> f64 {
        self.bytes as f64 / self.steps.max(1) as f64
    }
    /// Rounds per step, on average over the run.
    pub fn rounds_per_step(&self) -> f64 {
        self.rounds as f64 / self.steps.max(1) as f64
    }
}

/// The run a [`Registered::communication`] prices, and the running sums.
pub struct Tally<'a> {
    /// Ranks (at least 2).
    pub p: usize,
    /// f32 parameters of the model.
    pub params: usize,
    /// The model's weight matrices (PowerSGD's factors depend on them).
    pub matrices: &'a [Matrix],
    /// Steps of the run.
    pub steps: usize,
    /// The optimizer's state buffers (1 for SGD with momentum, 0 without, 2 for Adam).
    pub buffers: usize,
    /// The cost constants.
    pub cost: &'a CostParams,
    bytes: u64,
    rounds: u64,
    secs: f64,
}

impl Tally<'_> {
    /// `times` calls of `x`, an exact cost for elements of `elem_size` bytes.
    pub fn add_cost(&mut self, x: &Cost, elem_size: usize, times: u64) {
        self.bytes += times * x.bytes_sent;
        self.rounds += times * x.rounds;
        self.secs += times as f64 * x.predict(self.cost, elem_size);
    }

    /// `times` all-reduces of `count` f32 values by `algorithm` (`Auto`
    /// resolved as the cost model would); none when `count` is 0 (an
    /// empty buffer is not sent).
    pub fn all_reduce(&mut self, algorithm: Algorithm, count: usize, times: u64) {
        if count == 0 {
            return;
        }
        let algorithm = match algorithm {
            Algorithm::Auto => select(self.p, count, 4, self.cost),
            a => a,
        };
        if let Some(x) = algorithm.exact_cost(self.p, count, 4) {
            self.add_cost(&x, 4, times);
        }
    }

    /// `times` ring all-gathers of one `block`-byte block per rank: p − 1
    /// rounds of one block each.
    pub fn all_gather(&mut self, block: u64, times: u64) {
        let rounds = times * (self.p - 1) as u64;
        self.bytes += rounds * block;
        self.rounds += rounds;
        self.secs += rounds as f64
            * self
                .cost
                .round_time(block, block * self.p as u64, crate::cost::Round::Shift);
    }

    /// `bytes` sent in `rounds` rounds taking `secs`.
    pub fn add(&mut self, bytes: u64, rounds: u64, secs: f64) {
        self.bytes += bytes;
        self.rounds += rounds;
        self.secs += secs;
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "strategy",
        reason,
    }
}

/// Declares the strategy files and generates [`AnyStrategy`] from them.
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $module:ident::$ty:ident, )*) => {
        $( mod $module; pub use self::$module::$ty; )*

        /// A built-in strategy chosen at run time (`train --strategy`,
        /// `compare`), parsed from its spelling; [`AnyStrategy::help`] lists
        /// the spellings.
        ///
        /// ```
        /// use ringreduce::train::{AnyStrategy, Strategy};
        /// let s: AnyStrategy = "postlocal:warmup=200,tau=8".parse().unwrap();
        /// assert_eq!(s.name(), "postlocal:warmup=200,tau=8");
        /// assert!("local:tau=0".parse::<AnyStrategy>().is_err());
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum AnyStrategy {
            $( $(#[$doc])* $variant($ty), )*
        }

        $(
            impl From<$ty> for AnyStrategy {
                fn from(s: $ty) -> Self {
                    AnyStrategy::$variant(s)
                }
            }
        )*

        impl AnyStrategy {
            /// Every spelling's synopsis and help line, in registry order.
            pub const SPELLINGS: &'static [(&'static str, &'static str)] =
                &[$( (<$ty as Registered>::SYNOPSIS, <$ty as Registered>::HELP), )*];

            fn parse_registered(s: &Spelling<'_>) -> Option<Result<Self>> {
                $(
                    if let Some(r) = <$ty as Registered>::parse(s) {
                        return Some(r.map(AnyStrategy::$variant));
                    }
                )*
                None
            }

            fn tally(&self, t: &mut Tally<'_>) {
                match self { $( AnyStrategy::$variant(s) => s.communication(t), )* }
            }

            /// Seconds of the local work this strategy adds to a step on
            /// `p` ranks for `n` parameters (0 for the uncompressed ring,
            /// whose reduction the cost model prices already).
            ///
            /// # Errors
            /// A strategy that is no compressor of synchronous SGD.
            pub fn codec_secs(&self, p: usize, n: usize, matrices: &[Matrix]) -> Result<f64> {
                let secs = match self { $( AnyStrategy::$variant(s) => s.codec_secs(p, n, matrices), )* };
                secs.unwrap_or_else(|| Err(Error::InvalidArgument {
                    what: "compressor",
                    reason: format!("{} is not a gradient compressor of synchronous SGD", self.name()),
                }))
            }

            /// Whether pricing it needs the model's weight matrices.
            pub fn factors_matrices(&self) -> bool {
                match self { $( AnyStrategy::$variant(s) => s.factors_matrices(), )* }
            }

            /// The strategy in a run's header on `p` ranks.
            pub fn describe(&self, p: usize) -> String {
                match self { $( AnyStrategy::$variant(s) => s.describe(p), )* }
            }
        }

        impl Strategy for AnyStrategy {
            fn name(&self) -> String {
                match self { $( AnyStrategy::$variant(s) => s.name(), )* }
            }
            fn replicas_differ(&self) -> bool {
                match self { $( AnyStrategy::$variant(s) => s.replicas_differ(), )* }
            }
            fn check(&self, p: usize) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.check(p), )* }
            }
            fn start<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.start(ctx, params), )* }
            }
            fn before_step<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.before_step(ctx, params), )* }
            }
            fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.after_backward(ctx, grad), )* }
            }
            fn buckets(&self) -> Option<crate::train::BucketHook> {
                match self { $( AnyStrategy::$variant(s) => s.buckets(), )* }
            }
            fn bucket_codec(&mut self) -> Option<&mut dyn crate::train::buckets::BucketCodec> {
                match self { $( AnyStrategy::$variant(s) => s.bucket_codec(), )* }
            }
            fn bucket_size(&mut self) -> Option<&mut crate::train::BucketSize> {
                match self { $( AnyStrategy::$variant(s) => s.bucket_size(), )* }
            }
            fn before_update<C: Transport>(
                &mut self,
                ctx: &mut Step<'_, C>,
                params: &mut [f32],
                grad: &[f32],
            ) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.before_update(ctx, params, grad), )* }
            }
            fn after_step<C: Transport>(
                &mut self,
                ctx: &mut Step<'_, C>,
                params: &mut [f32],
                optimizer: &mut OptimizerState,
            ) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.after_step(ctx, params, optimizer), )* }
            }
            fn finish<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.finish(ctx, params), )* }
            }
            fn state(&self) -> Vec<Section> {
                match self { $( AnyStrategy::$variant(s) => s.state(), )* }
            }
            fn restore(&mut self, sections: &[Section]) -> Result<()> {
                match self { $( AnyStrategy::$variant(s) => s.restore(sections), )* }
            }
        }
    };
}

registry! {
    /// Synchronous SGD: the gradient all-reduced every step (f32, or 16-bit floats on the wire).
    Sync => sync::GradientAllReduce,
    /// Local SGD, post-local SGD, one-shot averaging.
    Local => local::LocalSgd,
    /// Decentralized gossip SGD.
    Gossip => gossip::Gossip,
    /// Synchronous SGD with top-k sparsified gradients.
    TopK => topk::TopKSgd,
    /// Synchronous SGD with QSGD-quantized gradients.
    Qsgd => qsgd::QsgdSgd,
    /// Synchronous SGD with PowerSGD's low-rank gradients.
    PowerSgd => powersgd::PowerSgd,
    /// Synchronous SGD with random-k gradients (shared coordinates).
    RandomK => randomk::RandomKSgd,
    /// DiLoCo: local SGD whose averaging is an outer Nesterov step.
    DiLoCo => diloco::DiLoCo,
}

impl Default for AnyStrategy {
    fn default() -> Self {
        AnyStrategy::Sync(GradientAllReduce::default())
    }
}

impl fmt::Display for AnyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for AnyStrategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let spelling = Spelling::new(s);
        if let Some(found) = AnyStrategy::parse_registered(&spelling) {
            return found;
        }
        let text = spelling.text();
        match spelling.gradient() {
            // A synchronous spelling whose compressor no strategy claimed.
            Some(Ok(Gradient {
                compress: Some(c), ..
            })) => Err(invalid(format!(
                "unknown compression `{}` in `{text}` (none, fp16, bf16, {})",
                c.value,
                AnyStrategy::compressors().join(", ")
            ))),
            Some(Err(e)) => Err(e),
            _ => Err(invalid(format!(
                "unknown strategy `{text}` (expected {})",
                AnyStrategy::SPELLINGS
                    .iter()
                    .map(|(synopsis, _)| *synopsis)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

impl AnyStrategy {
    /// The spellings of `sync`'s compressors (`topk:F`, …), from the
    /// registered synopses of the form `sync…,compress=C…`.
    fn compressors() -> Vec<&'static str> {
        AnyStrategy::SPELLINGS
            .iter()
            .filter_map(|(synopsis, _)| synopsis.split_once("compress=").map(|(_, c)| c))
            .filter_map(|c| c.split([',', '[']).next())
            .filter(|c| !c.contains('|'))
            .collect()
    }

    /// The `--strategy` help: one line per registered spelling.
    pub fn help() -> String {
        AnyStrategy::SPELLINGS
            .iter()
            .map(|(synopsis, help)| format!("{synopsis}: {help}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What this strategy sends over a run of `steps` steps on `p` ranks
    /// for a model of `params` f32 parameters, with an optimizer of
    /// `buffers` state buffers (1 for SGD with momentum, 0 without, 2 for
    /// Adam), under the cost constants `cost`. PowerSGD is costed as if
    /// the model had no weight matrix (everything uncompressed); see
    /// [`AnyStrategy::communication_for`].
    pub fn communication(
        &self,
        p: usize,
        params: usize,
        steps: usize,
        buffers: usize,
        cost: &CostParams,
    ) -> Communication {
        self.communication_for(p, params, &[], steps, buffers, cost)
    }

    /// [`AnyStrategy::communication`] for a model whose weight matrices
    /// are `matrices` ([`Model::matrices`](crate::train::Model::matrices)), which
    /// PowerSGD's factors depend on.
    pub fn communication_for(
        &self,
        p: usize,
        params: usize,
        matrices: &[Matrix],
        steps: usize,
        buffers: usize,
        cost: &CostParams,
    ) -> Communication {
        let mut t = Tally {
            p,
            params,
            matrices,
            steps,
            buffers,
            cost,
            bytes: 0,
            rounds: 0,
            secs: 0.0,
        };
        if p > 1 {
            self.tally(&mut t);
        }
        Communication {
            strategy: self.name(),
            steps,
            bytes: t.bytes,
            rounds: t.rounds,
            predicted_secs: t.secs,
        }
    }
}
