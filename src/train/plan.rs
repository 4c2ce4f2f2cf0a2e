//! A run's plan: a strategy the [`Trainer`] runs through its hooks, or a
//! runner that owns the whole run (the parameter server). `train`,
//! `compare` and `cost` each handle one [`Plan`]: one parser, one check,
//! one communication model, one `fit`.

use std::str::FromStr;

use crate::algorithms::Algorithm;
use crate::cost::CostParams;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::AnySource;

use super::buckets::BucketSize;
use super::data::Dataset;
use super::model::{Matrix, Model};
use super::ps::ParameterServer;
use super::strategies::{AnyStrategy, Communication, Spelling, Strategy};
use super::trainer::{PlanEpoch, Trainer};

/// How a run trains.
///
/// ```
/// use ringreduce::train::Plan;
/// let p: Plan = "ps:ssp=2,servers=2".parse().unwrap();
/// assert_eq!(p.name(), "ps:ssp=2");
/// let s: Plan = "local:tau=8".parse().unwrap();
/// assert_eq!(s.name(), "local:tau=8");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// A strategy of the trainer's hooks (every rank trains).
    Hooks(AnyStrategy),
    /// The parameter server: the first ranks serve shards, the others work.
    ParameterServer(ParameterServer),
}

/// What a run is given besides its spelling (the command line's flags).
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Synchronous SGD's algorithm when no spelling is given.
    pub algorithm: Algorithm,
    /// A gradient compressor for a `sync` spelling (`fp16`, `topk:0.01`, …; `none`: off).
    pub compress: Option<String>,
    /// Error feedback off (for the compressors that keep it).
    pub no_error_feedback: bool,
    /// Gradient buckets of synchronous SGD (f32 or a 16-bit wire).
    pub buckets: BucketSize,
    /// The parameter server's settings, which a `ps:` spelling completes
    /// (its staleness bound, dynamic shares and, when spelled, servers).
    pub parameter_server: ParameterServer,
}

impl Default for PlanOptions {
    /// The ring, no compression, buckets off, one server.
    fn default() -> Self {
        PlanOptions {
            algorithm: Algorithm::Ring,
            compress: None,
            no_error_feedback: false,
            buckets: BucketSize::Off,
            parameter_server: ParameterServer::default(),
        }
    }
}

impl PlanOptions {
    /// Checks that the parameter server's settings here are left at their
    /// defaults unless `plan` is the parameter server.
    ///
    /// # Errors
    /// The first such setting given to a strategy of the trainer.
    pub fn check_applies(&self, plan: &Plan) -> Result<()> {
        if let Plan::ParameterServer(_) = plan {
            return Ok(());
        }
        let defaults = ParameterServer::default();
        let ps = &self.parameter_server;
        let ps_only = [
            ("--servers", ps.servers != defaults.servers),
            ("--n-push", ps.n_push != defaults.n_push),
            ("--n-fetch", ps.n_fetch != defaults.n_fetch),
            ("--staleness-lr", ps.staleness_lr),
            ("--record", ps.record.is_some()),
            ("--replay", ps.replay.is_some()),
        ];
        match ps_only.iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(flag(
                name,
                "is a setting of the parameter server (--strategy ps:async or ps:ssp=S)".into(),
            )),
            None => Ok(()),
        }
    }
}

fn flag(what: &'static str, reason: String) -> Error {
    Error::InvalidArgument { what, reason }
}

impl Plan {
    /// The plan of `spelling` (`None`: synchronous SGD with
    /// `options.algorithm`), completed by `options`.
    ///
    /// # Errors
    /// An unknown or malformed spelling; an option that does not apply to
    /// it (a compressor for a strategy that is not `sync`, a parameter
    /// server's setting for a strategy of the trainer, buckets of a given
    /// size for a strategy that cannot cut its gradient).
    pub fn new(spelling: Option<&str>, options: &PlanOptions) -> Result<Plan> {
        let text = match spelling {
            Some(s) => s.trim().to_string(),
            None => format!("sync:{}", options.algorithm),
        };
        let compress = options
            .compress
            .as_deref()
            .map(str::trim)
            .filter(|c| *c != "none");
        let compressing = compress.is_some() || options.no_error_feedback;
        if let Some(rest) = text.strip_prefix("ps:") {
            if compressing {
                return Err(flag(
                    "--compress",
                    format!("is not available with the parameter server ({text})"),
                ));
            }
            return parameter_server(&text, rest, options.parameter_server.clone())
                .map(Plan::ParameterServer);
        }
        // A compressor joins the spelling, which is then parsed once.
        let spelled = match compressing {
            false => text,
            true if Spelling::new(&text).kind() == "sync" => {
                let mut s = format!("{text},compress={}", compress.unwrap_or("none"));
                if options.no_error_feedback {
                    s.push_str(",error-feedback=off");
                }
                s
            }
            true => {
                return Err(flag(
                    "--compress",
                    format!("compresses the gradient of sync strategies, not {text}"),
                ))
            }
        };
        let mut strategy: AnyStrategy = spelled.parse()?;
        match (strategy.bucket_size(), options.buckets) {
            (Some(size), asked) => *size = asked,
            (None, BucketSize::Bytes(_)) => {
                return Err(flag(
                    "--bucket-mb",
                    format!(
                        "cuts the gradient all-reduce of sync strategies (f32, fp16/bf16, randomk, powersgd), not {}",
                        strategy.name()
                    ),
                ))
            }
            _ => {}
        }
        Ok(Plan::Hooks(strategy))
    }

    /// The spelling in reports (`sync:ring`, `ps:ssp=2`).
    pub fn name(&self) -> String {
        match self {
            Plan::Hooks(s) => s.name(),
            Plan::ParameterServer(ps) => ps.name(),
        }
    }

    /// The plan in a run's header on `p` ranks.
    pub fn describe(&self, p: usize) -> String {
        match self {
            Plan::Hooks(s) => s.describe(p),
            Plan::ParameterServer(ps) => format!(
                "{} ({} server{}, {} workers; momentum at the servers)",
                ps.name(),
                ps.servers,
                if ps.servers == 1 { "" } else { "s" },
                p.saturating_sub(ps.servers)
            ),
        }
    }

    /// Checks the plan on `p` ranks.
    ///
    /// # Errors
    /// Settings that cannot work on `p` ranks.
    pub fn check(&self, p: usize) -> Result<()> {
        match self {
            Plan::Hooks(s) => s.check(p),
            Plan::ParameterServer(ps) => ps.check(p),
        }
    }

    /// Whether the ranks' models may differ between steps (the loop then
    /// reports their consensus distance).
    pub fn replicas_differ(&self) -> bool {
        matches!(self, Plan::Hooks(s) if s.replicas_differ())
    }

    /// Whether the run can use a communication thread (gradient buckets),
    /// which needs MPI at `MPI_THREAD_MULTIPLE`.
    pub fn wants_comm_thread(&self) -> bool {
        matches!(self, Plan::Hooks(s) if s.buckets().is_some())
    }

    /// What a run of `steps` steps sends on `p` ranks for a model of
    /// `params` f32 parameters with weight matrices `matrices` and an
    /// optimizer of `buffers` state buffers, predicted under `cost` (see
    /// [`AnyStrategy::communication_for`] and
    /// [`ParameterServer::communication`]).
    pub fn communication(
        &self,
        p: usize,
        params: usize,
        matrices: &[Matrix],
        steps: usize,
        buffers: usize,
        cost: &CostParams,
    ) -> Communication {
        match self {
            Plan::Hooks(s) => s.communication_for(p, params, matrices, steps, buffers, cost),
            Plan::ParameterServer(ps) => ps.communication(p, params, steps, cost),
        }
    }

    /// Whether [`Plan::communication`] needs the model's weight matrices
    /// (PowerSGD's factors): without them it prices the whole gradient.
    pub fn needs_matrices(&self) -> bool {
        match self {
            Plan::Hooks(s) => s.factors_matrices(),
            Plan::ParameterServer(_) => false,
        }
    }

    /// The ranks of `p` that compute gradients, among which every global
    /// batch is split: all of them, or the parameter server's workers.
    pub fn computing_ranks(&self, p: usize) -> usize {
        match self {
            Plan::Hooks(_) => p,
            Plan::ParameterServer(ps) => p.saturating_sub(ps.servers).max(1),
        }
    }

    /// The bytes the busiest worker sends over `epochs` epochs of `steps`
    /// steps (what `compare` sets against the counted bytes).
    pub fn predicted_bytes(
        &self,
        p: usize,
        model: &impl Model,
        steps: usize,
        epochs: usize,
        buffers: usize,
    ) -> u64 {
        match self {
            Plan::Hooks(s) => {
                let cost = CostParams::default();
                s.communication_for(
                    p,
                    model.num_params(),
                    &model.matrices(),
                    steps * epochs,
                    buffers,
                    &cost,
                )
                .bytes
            }
            Plan::ParameterServer(ps) => ps.traffic(p, model.num_params(), steps, epochs).worker_sent,
        }
    }

    /// Trains `params` with `recipe`'s optimizer, batches, schedule,
    /// epochs, seed, checkpoints and hooks (its own strategy is replaced
    /// by this plan's). `on_epoch` sees every epoch on every rank — as it
    /// ends under the trainer, once the run is over under the parameter
    /// server. Collective.
    ///
    /// # Errors
    /// As [`Trainer::fit`] and [`ParameterServer::fit`].
    #[allow(clippy::too_many_arguments)] // Trainer::fit's, and the recipe
    pub fn fit<S, M, C>(
        &self,
        recipe: &Trainer<S>,
        group: &Group<C>,
        model: &M,
        params: &mut [f32],
        train: &Dataset,
        test: Option<&Dataset>,
        mut on_epoch: impl FnMut(&PlanEpoch),
    ) -> Result<Vec<PlanEpoch>>
    where
        S: Strategy,
        M: Model,
        C: AnySource,
    {
        match self {
            Plan::Hooks(s) => {
                let trainer = recipe.with_strategy(s.clone());
                let history = trainer.fit(group, model, params, train, test, |m| {
                    on_epoch(&PlanEpoch::of(m.clone()));
                })?;
                Ok(history.into_iter().map(PlanEpoch::of).collect())
            }
            Plan::ParameterServer(ps) => {
                let epochs = ps.fit(recipe, group, model, params, train, test)?;
                epochs.iter().for_each(&mut on_epoch);
                Ok(epochs)
            }
        }
    }
}

impl FromStr for Plan {
    type Err = Error;

    /// [`Plan::new`] with the default options.
    fn from_str(s: &str) -> Result<Plan> {
        Plan::new(Some(s), &PlanOptions::default())
    }
}

/// `ps:async` or `ps:ssp=S`, optionally `,servers=K`, `,dynamic` and
/// `,keep-momentum`, onto `base`.
fn parameter_server(text: &str, rest: &str, mut ps: ParameterServer) -> Result<ParameterServer> {
    let bad = || {
        flag(
            "strategy",
            format!(
                "`{text}`: a parameter server is ps:async or ps:ssp=S (S a whole number ≥ 0), optionally with ,servers=K (K ≥ 1), ,dynamic and ,keep-momentum"
            ),
        )
    };
    for part in rest.split(',') {
        match part.trim() {
            "async" => {}
            "dynamic" => ps.dynamic = true,
            "keep-momentum" => ps.discount_momentum = false,
            p => {
                if let Some(v) = p.strip_prefix("ssp=") {
                    ps.max_staleness = Some(v.parse().map_err(|_| bad())?);
                } else if let Some(v) = p.strip_prefix("servers=") {
                    ps.servers = v.parse().ok().filter(|&k: &usize| k >= 1).ok_or_else(bad)?;
                } else {
                    return Err(bad());
                }
            }
        }
    }
    Ok(ps)
}
