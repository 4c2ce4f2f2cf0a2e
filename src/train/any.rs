//! Every built-in strategy behind one type, spelled as on the command line.

use std::fmt;
use std::str::FromStr;

use crate::algorithms::Algorithm;
use crate::cost::{select, CostParams};
use crate::error::{Error, Result};
use crate::transport::Transport;

use super::gossip::Gossip;
use super::local::LocalSgd;
use super::model::Matrix;
use super::optim::OptimizerState;
use super::powersgd::PowerSgd;
use super::qsgd::QsgdSgd;
use super::randomk::RandomKSgd;
use super::sparse::TopKSgd;
use super::strategy::{GradientAllReduce, Section, Step, Strategy};

/// A built-in strategy chosen at run time (`train --strategy`, `compare`).
///
/// | spelling | strategy |
/// |---|---|
/// | `sync:ALGO` (`sync` = `sync:ring`) | [`GradientAllReduce`] |
/// | `sync:ring,compress=fp16` (or `bf16`; `sync,compress=…`) | the same, 16-bit floats on the wire |
/// | `local:tau=T[,warmup=W][,momentum][,algo=A]` | [`LocalSgd`] averaging every T steps |
/// | `postlocal:warmup=W,tau=T` | the same, synchronous for the first W steps |
/// | `oneshot` | [`LocalSgd::one_shot`]: average once, at the end |
/// | `sync,compress=topk:F[,error-feedback=off]` | [`TopKSgd`]: each rank's ⌈F·n⌉ largest coordinates, all-gathered |
/// | `sync:ALGO,compress=powersgd:rank=R[,error-feedback=off]` | [`PowerSgd`]: rank-R factors of every weight matrix, two all-reduces |
/// | `sync:ALGO,compress=randomk:F[,error-feedback=on]` | [`RandomKSgd`]: ⌈F·n⌉ coordinates shared by the ranks, all-reduced |
/// | `sync,compress=qsgd:levels=S` | [`QsgdSgd`]: QSGD, one byte per coordinate, all-gathered |
/// | `gossip:TOPOLOGY` | [`Gossip`] on ring, torus, expo, expo1, complete or edges=0-1/… |
///
/// ```
/// use ringreduce::train::{AnyStrategy, Strategy};
/// let s: AnyStrategy = "postlocal:warmup=200,tau=8".parse().unwrap();
/// assert_eq!(s.name(), "postlocal:warmup=200,tau=8");
/// assert!("local:tau=0".parse::<AnyStrategy>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum AnyStrategy {
    /// Synchronous SGD: the gradient all-reduced every step.
    Sync(GradientAllReduce),
    /// Local SGD, post-local SGD, one-shot averaging.
    Local(LocalSgd),
    /// Decentralized gossip SGD.
    Gossip(Gossip),
    /// Synchronous SGD with top-k sparsified gradients.
    TopK(TopKSgd),
    /// Synchronous SGD with QSGD-quantized gradients.
    Qsgd(QsgdSgd),
    /// Synchronous SGD with PowerSGD's low-rank gradients.
    PowerSgd(PowerSgd),
    /// Synchronous SGD with random-k gradients (shared coordinates).
    RandomK(RandomKSgd),
}

impl Default for AnyStrategy {
    fn default() -> Self {
        AnyStrategy::Sync(GradientAllReduce::default())
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "strategy",
        reason,
    }
}

const EXPECTED: &str =
    "expected sync:ALGO, local:tau=T, postlocal:warmup=W,tau=T, oneshot or gossip:TOPOLOGY";

impl FromStr for AnyStrategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        // The kind ends at the first `:` — or `,` for `sync,compress=…`,
        // which names no algorithm.
        let (kind, rest) = match s.find([':', ',']) {
            Some(i) if s[..i] == *"sync" || s.as_bytes()[i] == b':' => (&s[..i], &s[i + 1..]),
            _ => (s, ""),
        };
        match kind {
            "sync" => {
                let mut items = rest
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .peekable();
                let algorithm = match items.peek() {
                    Some(first) if !first.contains('=') => {
                        let a = first.parse()?;
                        items.next();
                        a
                    }
                    _ => Algorithm::Ring,
                };
                let mut sync = GradientAllReduce::new(algorithm);
                let (mut topk, mut feedback, mut qsgd, mut power, mut randomk) =
                    (None, None, None, None, None);
                for item in items {
                    match item.split_once('=') {
                        Some(("compress", "none")) => sync.wire = None,
                        Some(("compress", c)) if c.starts_with("topk:") => {
                            let f = &c["topk:".len()..];
                            topk = Some(f.parse::<f64>().map_err(|_| {
                                invalid(format!("`{item}` in `{s}`: topk takes a fraction, e.g. topk:0.01"))
                            })?);
                        }
                        Some(("compress", c)) if c.starts_with("powersgd:rank=") => {
                            let r = &c["powersgd:rank=".len()..];
                            power = Some(r.parse::<usize>().map_err(|_| {
                                invalid(format!("`{item}` in `{s}`: powersgd takes rank=R, e.g. powersgd:rank=2"))
                            })?);
                        }
                        Some(("compress", c)) if c.starts_with("randomk:") => {
                            let f = &c["randomk:".len()..];
                            randomk = Some(f.parse::<f64>().map_err(|_| {
                                invalid(format!("`{item}` in `{s}`: randomk takes a fraction, e.g. randomk:0.01"))
                            })?);
                        }
                        Some(("compress", c)) if c.starts_with("qsgd:levels=") => {
                            let l = &c["qsgd:levels=".len()..];
                            qsgd = Some(l.parse::<u8>().map_err(|_| {
                                invalid(format!("`{item}` in `{s}`: qsgd takes levels=1..127, e.g. qsgd:levels=16"))
                            })?);
                        }
                        Some(("compress", w)) => {
                            sync.wire = Some(w.parse().map_err(|_| {
                                invalid(format!("unknown compression `{w}` in `{s}` (none, fp16, bf16, topk:F, randomk:F, qsgd:levels=S or powersgd:rank=R)"))
                            })?)
                        }
                        Some(("error-feedback", v)) => {
                            feedback = Some(match v {
                                "on" => true,
                                "off" => false,
                                _ => return Err(invalid(format!("`{item}` in `{s}`: error-feedback=on|off"))),
                            })
                        }
                        _ => {
                            return Err(invalid(format!(
                                "unknown setting `{item}` in `{s}` (compress=none|fp16|bf16|topk:F|randomk:F|qsgd:levels=S|powersgd:rank=R, error-feedback=on|off)"
                            )))
                        }
                    }
                }
                if let Some(rank) = power {
                    if sync.wire.is_some() {
                        return Err(invalid(format!("`{s}`: PowerSGD's factors travel as f32")));
                    }
                    let mut ps = PowerSgd::new(rank)?;
                    ps.algorithm = algorithm;
                    ps.error_feedback = feedback.unwrap_or(true);
                    return Ok(AnyStrategy::PowerSgd(ps));
                }
                if let Some(fraction) = randomk {
                    if sync.wire.is_some() {
                        return Err(invalid(format!("`{s}`: random-k's values travel as f32")));
                    }
                    let mut rk = RandomKSgd::new(fraction)?;
                    rk.algorithm = algorithm;
                    rk.error_feedback = feedback.unwrap_or(false);
                    return Ok(AnyStrategy::RandomK(rk));
                }
                if let Some(levels) = qsgd {
                    if algorithm != Algorithm::Ring || sync.wire.is_some() || feedback.is_some() {
                        return Err(invalid(format!(
                            "`{s}`: QSGD is not linear, so its levels are all-gathered: it takes no algorithm, wire type or error feedback"
                        )));
                    }
                    return Ok(AnyStrategy::Qsgd(QsgdSgd::new(levels)?));
                }
                if let Some(fraction) = topk {
                    if algorithm != Algorithm::Ring || sync.wire.is_some() {
                        return Err(invalid(format!(
                            "`{s}`: top-k is not linear, so its pairs are all-gathered: it takes no algorithm or wire type"
                        )));
                    }
                    let mut t = TopKSgd::new(fraction)?;
                    t.error_feedback = feedback.unwrap_or(true);
                    return Ok(AnyStrategy::TopK(t));
                }
                if feedback.is_some() {
                    return Err(invalid(format!(
                        "`{s}`: error feedback applies to topk:F, randomk:F and powersgd:rank=R"
                    )));
                }
                sync.check(1)?;
                Ok(AnyStrategy::Sync(sync))
            }
            "gossip" => {
                if rest.is_empty() {
                    return Err(invalid(format!(
                        "`{s}` names no topology (gossip:ring, torus, expo, expo1, complete or edges=0-1/…)"
                    )));
                }
                Ok(AnyStrategy::Gossip(Gossip::new(rest.parse()?)))
            }
            "local" | "postlocal" | "oneshot" => {
                let mut l = LocalSgd::one_shot();
                let (mut tau, mut warmup) = (None, None);
                for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let (key, value) = item.split_once('=').unwrap_or((item, ""));
                    let number = || -> Result<usize> {
                        value.parse().map_err(|_| {
                            invalid(format!("`{item}` in `{s}`: {key} takes a whole number of steps"))
                        })
                    };
                    match key {
                        "tau" if value == "inf" => tau = Some(None),
                        "tau" => tau = Some(Some(number()?)),
                        "warmup" => warmup = Some(number()?),
                        "momentum" if value.is_empty() => l.average_momentum = true,
                        "algo" => l.algorithm = value.parse()?,
                        _ => {
                            return Err(invalid(format!(
                                "unknown setting `{item}` in `{s}` (tau=, warmup=, momentum, algo=)"
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
                        return Err(invalid(format!("`{s}` needs tau=T (steps between averagings)")))
                    }
                    ("postlocal", ..) => return Err(invalid(format!("`{s}` needs warmup=W and tau=T"))),
                    _ => return Err(invalid(format!("`{s}`: oneshot takes no tau or warmup"))),
                }
                l.check(1)?;
                Ok(AnyStrategy::Local(l))
            }
            _ => Err(invalid(format!("unknown strategy `{s}` ({EXPECTED})"))),
        }
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

impl AnyStrategy {
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
    /// are `matrices` ([`Model::matrices`](super::Model::matrices)), which
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
        let mut c = Communication {
            strategy: self.name(),
            steps,
            bytes: 0,
            rounds: 0,
            predicted_secs: 0.0,
        };
        if p <= 1 {
            return c;
        }
        let all_reduce_of = |c: &mut Communication, algorithm: Algorithm, count: usize, times: u64| {
            let algorithm = match algorithm {
                Algorithm::Auto => select(p, count, 4, cost),
                a => a,
            };
            if let Some(x) = algorithm.exact_cost(p, count, 4) {
                c.bytes += times * x.bytes_sent;
                c.rounds += times * x.rounds;
                c.predicted_secs += times as f64 * x.predict(cost, 4);
            }
        };
        let all_reduce = |c: &mut Communication, algorithm: Algorithm, times: u64| {
            all_reduce_of(c, algorithm, params, times)
        };
        match self {
            AnyStrategy::RandomK(s) => {
                let k = crate::compress::topk::k_of(s.fraction, params);
                all_reduce_of(&mut c, s.algorithm, k, steps as u64);
            }
            AnyStrategy::PowerSgd(s) => {
                let (first, second) = s.sizes(params, matrices);
                all_reduce_of(&mut c, s.algorithm, first, steps as u64);
                all_reduce_of(&mut c, s.algorithm, second, steps as u64);
            }
            AnyStrategy::Qsgd(_) => {
                let block = QsgdSgd::block_bytes(params) as u64;
                let rounds = (p - 1) as u64;
                c.bytes += steps as u64 * rounds * block;
                c.rounds += steps as u64 * rounds;
                c.predicted_secs += (steps as u64 * rounds) as f64
                    * cost.round_time(block, block * p as u64, crate::cost::Round::Shift);
            }
            AnyStrategy::TopK(t) => {
                // A ring all-gather of every rank's k pairs each step.
                let block = (crate::compress::topk::k_of(t.fraction, params)
                    * crate::compress::topk::PAIR_BYTES) as u64;
                let rounds = (p - 1) as u64;
                c.bytes += steps as u64 * rounds * block;
                c.rounds += steps as u64 * rounds;
                c.predicted_secs += (steps as u64 * rounds) as f64
                    * cost.round_time(block, block * p as u64, crate::cost::Round::Shift);
            }
            AnyStrategy::Sync(GradientAllReduce { wire: Some(_), .. }) => {
                let x = crate::compress::wire_cost(p, params);
                c.bytes += steps as u64 * x.bytes_sent;
                c.rounds += steps as u64 * x.rounds;
                c.predicted_secs += steps as f64 * x.predict(cost, 2);
            }
            AnyStrategy::Sync(s) => all_reduce(&mut c, s.algorithm, steps as u64),
            AnyStrategy::Local(l) => {
                let synced = l.warmup_steps.min(steps);
                let averagings = (synced..steps).filter(|&s| l.averages_after(s, steps)).count() as u64;
                let per = 1 + if l.average_momentum { buffers as u64 } else { 0 };
                all_reduce(&mut c, l.algorithm, synced as u64 + averagings * per);
            }
            AnyStrategy::Gossip(g) => {
                for step in 0..steps {
                    // The busiest rank of the step: the most out-neighbours.
                    let sends = (0..p)
                        .map(|r| g.topology.plan(p, r, step).send_to.len())
                        .max()
                        .unwrap_or(0);
                    let bytes = (sends * params * 4) as u64;
                    if bytes > 0 {
                        c.bytes += bytes;
                        c.rounds += 1;
                        let line = cost.line_for(bytes);
                        c.predicted_secs += line.alpha + bytes as f64 * line.beta;
                    }
                }
                if steps > 0 {
                    all_reduce(&mut c, Algorithm::Ring, 1);
                }
            }
        }
        c
    }
}

impl fmt::Display for AnyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Calls the same method on whichever strategy this is.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            AnyStrategy::Sync($s) => $e,
            AnyStrategy::Local($s) => $e,
            AnyStrategy::Gossip($s) => $e,
            AnyStrategy::TopK($s) => $e,
            AnyStrategy::Qsgd($s) => $e,
            AnyStrategy::PowerSgd($s) => $e,
            AnyStrategy::RandomK($s) => $e,
        }
    };
}

impl Strategy for AnyStrategy {
    fn name(&self) -> String {
        each!(self, s => s.name())
    }
    fn replicas_differ(&self) -> bool {
        each!(self, s => s.replicas_differ())
    }
    fn check(&self, p: usize) -> Result<()> {
        each!(self, s => s.check(p))
    }
    fn start<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
        each!(self, s => s.start(ctx, params))
    }
    fn before_step<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
        each!(self, s => s.before_step(ctx, params))
    }
    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        each!(self, s => s.after_backward(ctx, grad))
    }
    fn buckets(&self) -> Option<(crate::train::BucketSize, Algorithm)> {
        each!(self, s => s.buckets())
    }
    fn before_update<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        params: &mut [f32],
        grad: &[f32],
    ) -> Result<()> {
        each!(self, s => s.before_update(ctx, params, grad))
    }
    fn after_step<C: Transport>(
        &mut self,
        ctx: &mut Step<'_, C>,
        params: &mut [f32],
        optimizer: &mut OptimizerState,
    ) -> Result<()> {
        each!(self, s => s.after_step(ctx, params, optimizer))
    }
    fn finish<C: Transport>(&mut self, ctx: &mut Step<'_, C>, params: &mut [f32]) -> Result<()> {
        each!(self, s => s.finish(ctx, params))
    }
    fn state(&self) -> Vec<Section> {
        each!(self, s => s.state())
    }
    fn restore(&mut self, sections: &[Section]) -> Result<()> {
        each!(self, s => s.restore(sections))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_bad_ones_say_why() {
        for s in [
            "sync:ring",
            "sync:butterfly",
            "local:tau=8",
            "local:tau=1,momentum",
            "postlocal:warmup=200,tau=8",
            "oneshot",
            "gossip:ring",
            "gossip:expo1",
            "gossip:edges=0-1/1-2",
        ] {
            assert_eq!(s.parse::<AnyStrategy>().unwrap().name(), s);
        }
        assert_eq!("sync".parse::<AnyStrategy>().unwrap().name(), "sync:ring");
        for (bad, says) in [
            ("local:tau=0", "tau must be at least 1"),
            ("local", "needs tau=T"),
            ("local:tau=x", "takes a whole number"),
            ("local:tau=4,speed=2", "unknown setting `speed=2`"),
            ("postlocal:tau=8", "needs warmup=W and tau=T"),
            ("gossip:star", "unknown topology `star`"),
            ("gossip", "names no topology"),
            ("async", "unknown strategy `async`"),
            ("sync:fast", "fast"),
        ] {
            let e = bad.parse::<AnyStrategy>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::group::{CheckConfig, Group, Settings};
    use crate::train::optim::OptimizerState;
    use crate::transport::{Counting, Local};

    /// The bytes each strategy's hooks put on the wire over a run, counted
    /// by the `Counting` transport under the real hooks (call checks off, so
    /// the count is the strategy's alone): the busiest rank's count is
    /// exactly [`AnyStrategy::communication`]'s.
    #[test]
    fn counted_wire_bytes_equal_the_prediction() {
        let (n, steps_per_epoch, epochs) = (301, 7, 3);
        for spec in [
            "sync:ring",
            "sync:naive",
            "local:tau=3",
            "local:tau=2,momentum",
            "postlocal:warmup=5,tau=4",
            "oneshot",
            "gossip:ring",
            "gossip:expo",
            "gossip:expo1",
            "gossip:complete",
        ] {
            for p in [2, 3, 4, 5] {
                let strategy: AnyStrategy = spec.parse().unwrap();
                let sent = Local::run(p, |t| {
                    let settings = Settings {
                        checks: CheckConfig::OFF,
                        ..Settings::default()
                    };
                    let g = Group::with_settings(Counting::new(t), settings);
                    let mut s = strategy.clone();
                    let mut params = vec![0.5f32; n];
                    let mut grad = vec![0.25f32; n];
                    let mut opt = OptimizerState {
                        buffers: vec![vec![0.0; n]],
                        steps: 0,
                    };
                    for epoch in 1..=epochs {
                        for step in 0..steps_per_epoch {
                            let mut ctx = Step::new(&g, epoch, step, steps_per_epoch, epochs);
                            s.before_step(&mut ctx, &mut params).unwrap();
                            s.after_backward(&mut ctx, &mut grad).unwrap();
                            s.before_update(&mut ctx, &mut params, &grad).unwrap();
                            s.after_step(&mut ctx, &mut params, &mut opt).unwrap();
                        }
                    }
                    g.transport().stats().bytes_sent
                });
                let busiest = sent.iter().copied().max().unwrap();
                let predicted =
                    strategy.communication(p, n, steps_per_epoch * epochs, 1, &CostParams::default());
                assert_eq!(busiest, predicted.bytes, "{spec} p={p}: counted {sent:?}");
            }
        }
    }
}
