//! The [`Compressor`] abstraction: a code per rank, and which collective
//! may carry it.
//!
//! A compressor turns this rank's f32 values into a *code* (a slice of
//! plain words of a length every rank knows) and a code back into values.
//! Whether codes may be added is part of the type:
//!
//! - [`Linear`] compressors encode in a basis every rank shares, so the sum
//!   of the codes is the code of the sum: [`Cast`] (a 16-bit cast, up to
//!   rounding), random-k with a shared seed, PowerSGD's projections. Their
//!   codes are all-reduced by any algorithm and decoded once:
//!   [`Group::all_reduce_compressed`](crate::Group::all_reduce_compressed),
//!   which accepts nothing else.
//! - Every other compressor ([`TopK`], QSGD, sign) picks its code from its
//!   own data; summing two such codes is meaningless. They travel whole
//!   through an all-gather and every rank decodes every code in rank order:
//!   [`Group::all_gather_compressed`](crate::Group::all_gather_compressed).
//!
//! Handing a non-linear compressor to the all-reduce is a compile error:
//!
//! ```compile_fail
//! use ringreduce::{compress::TopK, Algorithm, Group, ReduceOp};
//! Group::local(2, |g| {
//!     let mut v = vec![1.0f32; 8];
//!     // error: `TopK` is not `Linear`
//!     g.all_reduce_compressed(&mut TopK::new(0.25), &mut v, ReduceOp::Avg, Algorithm::Ring, 0)
//! });
//! ```
//!
//! [`ErrorFeedback`] wraps any compressor: it adds back what earlier codes
//! left out and keeps the new remainder, a residual the caller can save and
//! restore (a checkpoint's part).
//!
//! The 16-bit wire ring ([`Wire`](super::Wire)) is a linear compressor fused
//! into the ring: it re-encodes every partial sum it forwards and
//! accumulates in f32, which an encode → all-reduce → decode pipeline
//! cannot do. [`Cast`] is that pipeline, the baseline it is measured against.

use std::marker::PhantomData;

use bytemuck::Pod;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::topk::{densify, k_of, top_k, Pair};
use crate::algorithms::Algorithm;
use crate::element::Element;

/// Turns f32 values into a code of [`Compressor::Word`]s and back.
pub trait Compressor {
    /// One word of a code.
    type Word: Pod;

    /// The spelling in reports (`topk:0.01`).
    fn name(&self) -> String;

    /// Words of the code of `n` values: the same on every rank, a function
    /// of `n` and the settings only.
    fn code_len(&self, n: usize) -> usize;

    /// Encodes `values` into `code` (`code_len(values.len())` words).
    /// `stream` is the same on every rank for one call (the global step):
    /// randomized compressors draw from it, with `rank` when their draws
    /// must differ between ranks.
    fn encode(&mut self, values: &[f32], stream: u64, rank: usize, code: &mut [Self::Word]);

    /// Writes the values `code` stands for into `out` (every element).
    /// Called after [`encode`](Compressor::encode) of the same call.
    fn decode(&mut self, code: &[Self::Word], out: &mut [f32]);

    /// Adds the values `code` stands for to `out`.
    fn add_decoded(&mut self, code: &[Self::Word], out: &mut [f32]) {
        let mut tmp = vec![0f32; out.len()];
        self.decode(code, &mut tmp);
        for (o, t) in out.iter_mut().zip(&tmp) {
            *o += t;
        }
    }
}

/// A compressor whose codes add: Σ encode(g_i) decodes to Σ g_i (up to the
/// compressor's own loss), because every rank encodes in the same basis.
/// Only these may be all-reduced; implementing it for a compressor whose
/// ranks pick different bases makes the all-reduce's result meaningless.
pub trait Linear: Compressor
where
    Self::Word: Element,
{
}

/// A cast of f32 values to a 16-bit float ([`struct@f16`] or [`struct@bf16`]): linear
/// (up to rounding), so the casts are all-reduced *in 16 bits* and cast
/// back — each rank's input and each addition rounded to 16 bits, where
/// the [wire ring](super::Wire) accumulates in f32.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cast<H>(PhantomData<H>);

impl<H> Cast<H> {
    /// The cast to `H`.
    pub fn new() -> Self {
        Cast(PhantomData)
    }
}

macro_rules! cast {
    ($h:ty, $name:literal) => {
        impl Compressor for Cast<$h> {
            type Word = $h;

            fn name(&self) -> String {
                $name.into()
            }

            fn code_len(&self, n: usize) -> usize {
                n
            }

            fn encode(&mut self, values: &[f32], _stream: u64, _rank: usize, code: &mut [$h]) {
                code.convert_from_f32_slice(values);
            }

            fn decode(&mut self, code: &[$h], out: &mut [f32]) {
                code.convert_to_f32_slice(out);
            }
        }

        impl Linear for Cast<$h> {}
    };
}
cast!(f16, "cast:fp16");
cast!(bf16, "cast:bf16");

/// Each rank's k = ⌈fraction·n⌉ largest-magnitude values as (index, value)
/// [`Pair`]s (ties to the lower index). Not linear: ranks pick different
/// coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopK {
    /// Fraction of the values kept, in (0, 1].
    pub fraction: f64,
}

impl TopK {
    /// Keeps `fraction` of the values.
    pub fn new(fraction: f64) -> Self {
        TopK { fraction }
    }
}

impl Compressor for TopK {
    type Word = Pair;

    fn name(&self) -> String {
        format!("topk:{}", self.fraction)
    }

    fn code_len(&self, n: usize) -> usize {
        k_of(self.fraction, n)
    }

    fn encode(&mut self, values: &[f32], _stream: u64, _rank: usize, code: &mut [Pair]) {
        code.copy_from_slice(&top_k(values, code.len()));
    }

    fn decode(&mut self, code: &[Pair], out: &mut [f32]) {
        densify(code, out);
    }

    fn add_decoded(&mut self, code: &[Pair], out: &mut [f32]) {
        for p in code {
            out[p.index as usize] += p.value;
        }
    }
}

/// Error feedback around any compressor (Stich et al. 2018, Karimireddy et
/// al. 2019): encodes `values + residual` and keeps as the next residual
/// what its code leaves out, `values + residual − decode(code)`, so every
/// value is sent eventually. The residual is this rank's own; save it with
/// [`residual`](ErrorFeedback::residual) and put it back with
/// [`set_residual`](ErrorFeedback::set_residual) to resume exactly.
/// Disabled, it is the bare compressor.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFeedback<C> {
    /// The compressor.
    pub inner: C,
    enabled: bool,
    residual: Vec<f32>,
    scratch: Vec<f32>,
}

impl<C: Compressor> ErrorFeedback<C> {
    /// `inner` with error feedback if `enabled`.
    pub fn new(inner: C, enabled: bool) -> Self {
        ErrorFeedback {
            inner,
            enabled,
            residual: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether the residual is kept.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// What has not been sent yet (empty before the first encode).
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }

    /// Replaces the residual (a restored checkpoint's).
    pub fn set_residual(&mut self, residual: Vec<f32>) {
        self.residual = residual;
    }
}

impl<C: Compressor> Compressor for ErrorFeedback<C> {
    type Word = C::Word;

    fn name(&self) -> String {
        match self.enabled {
            true => self.inner.name(),
            false => format!("{},error-feedback=off", self.inner.name()),
        }
    }

    fn code_len(&self, n: usize) -> usize {
        self.inner.code_len(n)
    }

    fn encode(&mut self, values: &[f32], stream: u64, rank: usize, code: &mut [C::Word]) {
        if !self.enabled {
            return self.inner.encode(values, stream, rank, code);
        }
        let n = values.len();
        if self.residual.len() != n {
            self.residual = vec![0.0; n];
        }
        // The residual becomes the compressed input, then what it misses.
        for (e, v) in self.residual.iter_mut().zip(values) {
            *e += v;
        }
        self.inner.encode(&self.residual, stream, rank, code);
        self.scratch.resize(n, 0.0);
        self.inner.decode(code, &mut self.scratch);
        for (e, d) in self.residual.iter_mut().zip(&self.scratch) {
            *e -= d;
        }
    }

    fn decode(&mut self, code: &[C::Word], out: &mut [f32]) {
        self.inner.decode(code, out);
    }

    fn add_decoded(&mut self, code: &[C::Word], out: &mut [f32]) {
        self.inner.add_decoded(code, out);
    }
}

/// Error feedback keeps the inner compressor's basis: the residuals differ
/// between ranks, but the codes of a shared-basis compressor still add.
impl<C: Linear> Linear for ErrorFeedback<C> where C::Word: Element {}

/// What a compressed collective puts on the wire (the Counting transport's
/// figures, data only: the call check's agreement aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeTraffic {
    /// Bytes the busiest rank sends.
    pub bytes_sent: u64,
    /// Bytes all ranks send together.
    pub total_bytes: u64,
    /// Sequential rounds.
    pub rounds: u64,
}

/// The traffic of [`Group::all_reduce_compressed`](crate::Group::all_reduce_compressed)
/// of `n` values on `p` ranks by a concrete `algorithm`: its exact cost for
/// the code (`None` where it has none, as [`Algorithm::exact_cost`]).
pub fn reduced_traffic<L>(c: &L, algorithm: Algorithm, p: usize, n: usize) -> Option<CodeTraffic>
where
    L: Linear,
    L::Word: Element,
{
    algorithm
        .exact_cost(p, c.code_len(n), std::mem::size_of::<L::Word>())
        .map(|cost| CodeTraffic {
            bytes_sent: cost.bytes_sent,
            total_bytes: cost.total_bytes,
            rounds: cost.rounds,
        })
}

/// The traffic of [`Group::all_gather_compressed`](crate::Group::all_gather_compressed)
/// of `n` values on `p` ranks: a ring all-gather, every rank sending p − 1
/// codes in p − 1 rounds.
pub fn gathered_traffic<K: Compressor>(c: &K, p: usize, n: usize) -> CodeTraffic {
    let code = (c.code_len(n) * std::mem::size_of::<K::Word>()) as u64;
    let hops = p.saturating_sub(1) as u64;
    CodeTraffic {
        bytes_sent: hops * code,
        total_bytes: p as u64 * hops * code,
        rounds: hops,
    }
}
