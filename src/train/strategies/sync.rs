//! Synchronous data parallelism: the gradient all-reduced every step.

use crate::algorithms::Algorithm;
use crate::compress::Wire;
use crate::element::ReduceOp;
use crate::error::Result;
use crate::transport::Transport;

use super::{Registered, Spelling, Step, Strategy, Tally};
use crate::train::{BucketHook, BucketSize};

/// Synchronous data parallelism: every step the flat gradient buffer is
/// averaged over the ranks with one all-reduce of `algorithm`, so every
/// rank applies the same update — parallel minibatch SGD, equal to serial
/// minibatch SGD with the same global batch. With a [`Wire`] the gradient
/// travels as 16-bit floats through the ring, accumulated in f32
/// ([`Group::all_reduce_wire`](crate::Group::all_reduce_wire)): half the bytes, every rank still applying
/// the same update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientAllReduce {
    /// The all-reduce schedule (or `Auto`); the ring when `wire` is set.
    pub algorithm: Algorithm,
    /// 16-bit floats on the wire, or f32 (`None`).
    pub wire: Option<Wire>,
    /// Gradient buckets overlapping the backward pass ([`crate::train::buckets`]),
    /// each all-reduced as the whole gradient would be. Default: off.
    pub buckets: BucketSize,
}

impl GradientAllReduce {
    /// All-reduce the gradient with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        GradientAllReduce {
            algorithm,
            wire: None,
            buckets: BucketSize::Off,
        }
    }

    /// All-reduce the gradient with the ring, as `wire` on the wire.
    pub fn on_wire(wire: Wire) -> Self {
        GradientAllReduce {
            algorithm: Algorithm::Ring,
            wire: Some(wire),
            buckets: BucketSize::Off,
        }
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
        match self.wire {
            None => format!("sync:{}", self.algorithm),
            Some(w) => format!("sync:{},compress={w}", self.algorithm),
        }
    }

    fn check(&self, _p: usize) -> Result<()> {
        match (self.wire, self.algorithm) {
            (Some(w), a) if a != Algorithm::Ring => Err(crate::error::Error::InvalidArgument {
                what: "strategy",
                reason: format!("compress={w} runs the ring with 16-bit floats on the wire, not {a}"),
            }),
            _ => Ok(()),
        }
    }

    fn buckets(&self) -> Option<BucketHook> {
        Some(BucketHook {
            size: self.buckets,
            algorithm: self.algorithm,
            wire: self.wire,
        })
    }

    fn bucket_size(&mut self) -> Option<&mut BucketSize> {
        Some(&mut self.buckets)
    }

    fn after_backward<C: Transport>(&mut self, ctx: &mut Step<'_, C>, grad: &mut [f32]) -> Result<()> {
        match self.wire {
            Some(w) => ctx.all_reduce_wire(grad, ReduceOp::Avg, w),
            None => ctx.all_reduce(grad, ReduceOp::Avg, self.algorithm),
        }
    }
}

impl Registered for GradientAllReduce {
    const SYNOPSIS: &'static str = "sync[:ALGO][,compress=fp16|bf16]";
    const HELP: &'static str =
        "synchronous SGD: the gradient all-reduced every step by ALGO (default ring), optionally as 16-bit floats on the ring's wire";

    fn parse(s: &Spelling<'_>) -> Option<Result<Self>> {
        let g = match s.gradient()? {
            Ok(g) => g,
            Err(e) => return Some(Err(e)),
        };
        let wire = match g.compress {
            None => None,
            Some(c) if c.value == "none" => None,
            Some(c) => Some(c.value.parse::<Wire>().ok()?),
        };
        let build = || {
            if g.feedback.is_some() {
                return Err(s.invalid(format!(
                    "`{}`: error feedback applies to topk:F, randomk:F and powersgd:rank=R",
                    s.text()
                )));
            }
            let sync = GradientAllReduce {
                wire,
                ..GradientAllReduce::new(g.algorithm.unwrap_or(Algorithm::Ring))
            };
            sync.check(1)?;
            Ok(sync)
        };
        Some(build())
    }

    fn communication(&self, t: &mut Tally<'_>) {
        let steps = t.steps as u64;
        match self.wire {
            Some(_) => {
                let x = crate::compress::wire_cost(t.p, t.params);
                t.add_cost(&x, 2, steps);
            }
            None => t.all_reduce(self.algorithm, t.params, steps),
        }
    }

    fn codec_secs(&self, p: usize, n: usize, _: &[crate::train::Matrix]) -> Option<Result<f64>> {
        Some(Ok(match self.wire {
            None => 0.0,
            Some(w) => {
                // The ring encodes n values in all and decodes (2p − 1)/p·n.
                let grad = crate::train::codec::probe_gradient(n);
                let mut bits = vec![0u16; n];
                let mut back = vec![0f32; n];
                let enc = crate::train::codec::median_secs(|| w.encode(&grad, &mut bits));
                let dec = crate::train::codec::median_secs(|| w.decode(&bits, &mut back));
                enc + dec * (2 * p - 1) as f64 / p as f64
            }
        }))
    }
}
