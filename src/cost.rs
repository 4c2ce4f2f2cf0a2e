//! The cost model: pure functions of (algorithm, p, count, element size).
//!
//! Like NCCL's `tuning.cc` this module holds formulas only; it never touches
//! a transport. The tests hold it to the code by running every algorithm over
//! the [`Counting`](crate::Counting) transport and requiring the counted
//! rounds, messages and bytes to equal these numbers exactly.
//!
//! Predicted time is the α-β-γ model: every round on the critical path costs
//! α plus β per byte of its larger direction, and every byte reduced costs γ:
//!
//! `time = rounds·α + path_bytes·β + reduced_bytes·γ`
//!
//! | algorithm | rounds | path bytes | reduced elements |
//! |---|---|---|---|
//! | naive | p−1 | (p−1)·n | (p−1)·k |
//! | butterfly | L (+2) | rounds·n | (L (+1))·k |
//! | ring | 2(p−1) | 2(p−1)·⌈k/p⌉·s | k − ⌊k/p⌋ |
//! | central | 2(p−1) | 2(p−1)·n | (p−1)·k |
//!
//! with n = k·s bytes, L = log2 p' for the largest power of two p' ≤ p, and
//! the bracketed terms only when p ≠ p'. The central root's sends and
//! receives happen one after another, so both count on its path.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::algorithms::{chunk_range, Algorithm};
use crate::error::{Error, Result};

/// Machine constants of the α-β-γ model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostParams {
    /// Seconds per message (latency).
    pub alpha: f64,
    /// Seconds per byte transferred (inverse bandwidth).
    pub beta: f64,
    /// Seconds per byte reduced by the local kernel.
    pub gamma: f64,
}

impl Default for CostParams {
    /// Built-in defaults, from `ringreduce calibrate` at `-n 2` over shared
    /// memory on a 2-core x86-64 machine: 0.5 µs, 0.25 ns/B (4 GB/s), 0.08 ns/B.
    fn default() -> Self {
        CostParams { alpha: 0.5e-6, beta: 0.25e-9, gamma: 0.08e-9 }
    }
}

impl CostParams {
    /// Checks that every constant is finite and not negative.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("alpha", self.alpha), ("beta", self.beta), ("gamma", self.gamma)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidArgument {
                    what: "cost parameter",
                    reason: format!("{name} = {v} (must be finite and ≥ 0)"),
                });
            }
        }
        Ok(())
    }
}

/// The modelled cost of one all-reduce.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// The algorithm.
    #[serde(serialize_with = "ser_name")]
    pub algorithm: Algorithm,
    /// Sequential communication steps of the busiest rank.
    pub rounds: u64,
    /// Messages sent by the busiest rank.
    pub messages: u64,
    /// Bytes sent by the busiest rank.
    pub bytes_sent: u64,
    /// Bytes sent by all ranks together.
    pub total_bytes: u64,
    /// Bytes on the busiest rank's critical path (per round, the larger direction).
    pub path_bytes: u64,
    /// Elements reduced by the busiest rank.
    pub reduced: u64,
}

fn ser_name<S: serde::Serializer>(a: &Algorithm, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

impl Cost {
    /// Predicted seconds under `params` for elements of `elem_size` bytes.
    pub fn predict(&self, params: &CostParams, elem_size: usize) -> f64 {
        self.rounds as f64 * params.alpha
            + self.path_bytes as f64 * params.beta
            + (self.reduced * elem_size as u64) as f64 * params.gamma
    }
}

/// Rounds, messages and bytes of `algorithm` for `p` ranks all-reducing
/// `count` elements of `elem_size` bytes. `Auto` is costed as the algorithm
/// it would choose under the default parameters.
pub fn cost(algorithm: Algorithm, p: usize, count: usize, elem_size: usize) -> Cost {
    let zero = Cost {
        algorithm,
        rounds: 0,
        messages: 0,
        bytes_sent: 0,
        total_bytes: 0,
        path_bytes: 0,
        reduced: 0,
    };
    if p <= 1 || count == 0 {
        return zero; // the trivial exits of `all_reduce_in_place`
    }
    let (pu, k, s) = (p as u64, count as u64, elem_size as u64);
    let n = k * s;
    match algorithm {
        Algorithm::Naive => Cost {
            rounds: pu - 1,
            messages: pu - 1,
            bytes_sent: (pu - 1) * n,
            total_bytes: pu * (pu - 1) * n,
            path_bytes: (pu - 1) * n,
            reduced: (pu - 1) * k,
            ..zero
        },
        Algorithm::Butterfly => {
            let pof2 = crate::algorithms::largest_power_of_two(p) as u64;
            let extra = pu - pof2;
            let l = pof2.trailing_zeros() as u64;
            let folds = u64::from(extra > 0);
            Cost {
                rounds: l + 2 * folds,
                messages: l + folds,
                bytes_sent: (l + folds) * n,
                total_bytes: (pof2 * l + 2 * extra) * n,
                path_bytes: (l + 2 * folds) * n,
                reduced: (l + folds) * k,
                ..zero
            }
        }
        Algorithm::Ring => {
            let q = k / pu;
            let m = k % pu;
            let big = q + u64::from(m > 0);
            // Rank r skips chunk r+1 in reduce-scatter and r+2 in all-gather;
            // the busiest rank skips the two smallest neighbouring chunks.
            let skipped = if m == 0 || pu - m >= 2 { 2 * q } else { 2 * q + 1 };
            Cost {
                rounds: 2 * (pu - 1),
                messages: 2 * (pu - 1),
                bytes_sent: (2 * k - skipped) * s,
                total_bytes: 2 * (pu - 1) * n,
                path_bytes: 2 * (pu - 1) * big * s,
                reduced: k - q,
                ..zero
            }
        }
        Algorithm::Central => Cost {
            rounds: 2 * (pu - 1),
            messages: pu - 1,
            bytes_sent: (pu - 1) * n,
            total_bytes: 2 * (pu - 1) * n,
            path_bytes: 2 * (pu - 1) * n,
            reduced: (pu - 1) * k,
            ..zero
        },
        Algorithm::Auto => cost(select(p, count, elem_size, &CostParams::default()), p, count, elem_size),
    }
}

/// The bandwidth lower bound on bytes each rank must send:
/// 2·(p−1)/p·n (Patarasuk & Yuan 2009), for n = count·elem_size bytes.
pub fn lower_bound_bytes(p: usize, count: usize, elem_size: usize) -> f64 {
    if p <= 1 {
        return 0.0;
    }
    2.0 * (p - 1) as f64 / p as f64 * (count * elem_size) as f64
}

/// The concrete algorithm with the lowest predicted time (ties go to the
/// earlier one in [`Algorithm::CONCRETE`]).
pub fn select(p: usize, count: usize, elem_size: usize, params: &CostParams) -> Algorithm {
    let mut best = (Algorithm::Ring, f64::INFINITY);
    for a in Algorithm::CONCRETE {
        let t = cost(a, p, count, elem_size).predict(params, elem_size);
        if t < best.1 {
            best = (a, t);
        }
    }
    best.0
}

/// Chunk sizes are exposed for reports: the largest ring chunk in elements.
pub fn ring_chunk(p: usize, count: usize) -> usize {
    if p == 0 {
        0
    } else {
        chunk_range(count, p, 0).len()
    }
}

/// A calibration: fitted constants plus where and when they were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The fitted constants.
    #[serde(flatten)]
    pub params: CostParams,
    /// Ranks the calibration ran on.
    pub ranks: usize,
    /// Host name of rank 0.
    #[serde(default)]
    pub host: String,
    /// CPU model of rank 0.
    #[serde(default)]
    pub cpu: String,
    /// `MPI_Get_library_version`, first line.
    #[serde(default)]
    pub mpi_version: String,
    /// When it was measured (RFC 3339, UTC).
    #[serde(default)]
    pub date: String,
}

impl Calibration {
    /// Reads a calibration JSON file written by `ringreduce calibrate`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the file when it cannot be read,
    /// is not valid JSON of this shape, or holds negative or non-finite constants.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument { what: "calibration file", reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let cal: Calibration =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        cal.params.validate().map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Ok(cal)
    }

    /// Writes the calibration as pretty JSON, atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Error::InvalidArgument { what: "calibration file", reason };
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| bad(format!("{}: {e}", path.display())))
    }
}

/// How `Algorithm::Auto` chooses: the model's constants and an optional
/// override (like `NCCL_ALGO`). Every rank must hold the same value; the
/// [`Mpi`](crate::Mpi) transport broadcasts rank 0's at construction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tuning {
    /// Constants of the model.
    pub params: CostParams,
    /// When set, `Auto` always runs this algorithm.
    pub force: Option<Algorithm>,
}

/// Environment variable naming a calibration JSON file for `Auto`.
pub const ENV_CALIBRATION: &str = "RINGREDUCE_CALIBRATION";
/// Environment variable forcing the algorithm `Auto` runs (`ring`, `naive`, …).
pub const ENV_ALGO: &str = "RINGREDUCE_ALGO";

impl Tuning {
    /// Reads [`ENV_CALIBRATION`] and [`ENV_ALGO`] (unset: built-in defaults, no override).
    ///
    /// # Errors
    /// An unreadable or malformed calibration file, or an unknown algorithm name.
    pub fn from_env() -> Result<Self> {
        let mut t = Tuning::default();
        if let Some(path) = std::env::var_os(ENV_CALIBRATION).filter(|v| !v.is_empty()) {
            t.params = Calibration::load(Path::new(&path))?.params;
        }
        if let Ok(name) = std::env::var(ENV_ALGO) {
            if !name.is_empty() {
                let a: Algorithm = name.parse()?;
                t.force = (a != Algorithm::Auto).then_some(a);
            }
        }
        Ok(t)
    }

    /// The concrete algorithm `Auto` runs for this call.
    pub fn resolve(&self, p: usize, count: usize, elem_size: usize) -> Algorithm {
        self.force.unwrap_or_else(|| select(p, count, elem_size, &self.params))
    }

    /// Packs the tuning into numbers for broadcasting.
    pub(crate) fn to_wire(self) -> [f64; 4] {
        let force = self
            .force
            .and_then(|a| Algorithm::CONCRETE.iter().position(|&b| b == a))
            .map_or(-1.0, |i| i as f64);
        [self.params.alpha, self.params.beta, self.params.gamma, force]
    }

    /// Inverse of [`Tuning::to_wire`].
    pub(crate) fn from_wire(w: [f64; 4]) -> Self {
        let force = (w[3] >= 0.0).then(|| Algorithm::CONCRETE[w[3] as usize]);
        Tuning { params: CostParams { alpha: w[0], beta: w[1], gamma: w[2] }, force }
    }
}
