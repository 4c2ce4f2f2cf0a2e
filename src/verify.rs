//! `ringreduce verify`: check every algorithm against the vendor's
//! `MPI_Allreduce` on the cluster at hand.
//!
//! For every algorithm × element type × op × count, every rank fills a
//! buffer with random data derived from the seed and its rank, runs the
//! algorithm, and compares with the vendor's `MPI_Allreduce` where MPI has
//! the type (f32, f64, i32, i64, u8) or with a serial rank-ordered reference
//! (f16, bf16, u8 sum/avg — which OpenMPI 4.1's AVX kernels saturate instead
//! of wrapping — and everything when run without MPI, e.g. on threads;
//! every rank regenerates every rank's input). A vendor may also distrust
//! itself: [`Vendor::trusted`] probes it once (MPICH 4.0.2 reduces u8 min
//! and max as signed) and those cases take the serial reference too. It
//! then checks that every rank holds the same bytes as rank 0.
//!
//! Integers must match exactly. Floats may differ from the reference by the
//! rounding of a different summation order, bounded per element by
//! `2·p·ε·S` where S bounds Σ|x| (inputs lie in [−1, 1], so S = p) for
//! sum and avg, and |reference| for prod; min and max must match exactly.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::algorithms::Algorithm;
use crate::element::{DType, Element, ReduceOp, Widen};
use crate::error::Result;
use crate::group::Group;
use crate::transport::Transport;
use crate::vendor::Vendor;

/// Odd prime count every run includes (when ≤ `max_count`): catches chunking
/// that only works for even or power-of-two sizes.
pub const LARGE_PRIME: usize = 65_537;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// Seed of the random inputs.
    pub seed: u64,
    /// Largest count (elements) tried; also tried itself.
    pub max_count: usize,
    /// Algorithms to check.
    pub algorithms: Vec<Algorithm>,
    /// Element types to check.
    pub dtypes: Vec<DType>,
    /// Ops to check.
    pub ops: Vec<ReduceOp>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            seed: 42,
            max_count: 1 << 18,
            algorithms: Algorithm::CONCRETE.to_vec(),
            dtypes: DType::ALL.to_vec(),
            ops: ReduceOp::ALL.to_vec(),
        }
    }
}

/// The counts tried for `p` ranks: 0, 1, p−1, p, p+1, [`LARGE_PRIME`] and
/// `max_count`, those ≤ `max_count`, sorted and without repeats.
pub fn counts(p: usize, max_count: usize) -> Vec<usize> {
    let mut c: Vec<usize> = [0, 1, p.saturating_sub(1), p, p + 1, LARGE_PRIME, max_count]
        .into_iter()
        .filter(|&c| c <= max_count)
        .collect();
    c.sort_unstable();
    c.dedup();
    c
}

/// One failing case, as seen by the first rank that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Algorithm under test.
    pub algorithm: Algorithm,
    /// Element type.
    pub dtype: DType,
    /// Reduce op.
    pub op: ReduceOp,
    /// Elements per rank.
    pub count: usize,
    /// The rank that saw the failure.
    pub rank: usize,
    /// What went wrong.
    pub kind: FailureKind,
}

/// How a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum FailureKind {
    /// `wrong` elements differ from the reference; the first at `index`.
    Wrong {
        /// Number of elements outside tolerance on that rank.
        wrong: usize,
        /// First such element.
        index: usize,
        /// Our value there.
        got: f64,
        /// The reference value there.
        expected: f64,
    },
    /// The rank's bytes differ from rank 0's; the first at element `index`.
    NotIdentical {
        /// First element that differs from rank 0.
        index: usize,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FAIL {} {} {} count={}: rank {} ",
            self.algorithm, self.dtype, self.op, self.count, self.rank
        )?;
        match self.kind {
            FailureKind::Wrong {
                wrong,
                index,
                got,
                expected,
            } => write!(
                f,
                "has {wrong} wrong elements, first at index {index}: got {got}, expected {expected}"
            ),
            FailureKind::NotIdentical { index } => {
                write!(
                    f,
                    "differs from rank 0 first at index {index} (results not bitwise identical)"
                )
            }
        }
    }
}

/// The tally of a verify run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Cases that passed on every rank.
    pub passed: usize,
    /// Cases that failed on at least one rank.
    pub failed: usize,
}

/// Runs the whole matrix. Collective over `group`: every rank must call it
/// with the same config. `vendor` (the MPI library, under `mpirun`) is the
/// reference where it has the type; without one, the serial reference is.
/// `on_failure` is called on rank 0 only, as each failing case is found;
/// the returned report is the same on every rank.
///
/// # Errors
/// Work that does not fit in memory (on every rank), or an all-reduce that
/// failed — the same on every rank.
pub fn run<C: Transport>(
    group: &Group<C>,
    cfg: &VerifyConfig,
    vendor: Option<&dyn Vendor>,
    mut on_failure: impl FnMut(&Failure),
) -> Result<Report> {
    let p = group.size();
    // Per rank: input, result, reference, rank 0's copy, scratch, and every
    // rank's input for the serial references; 8-byte elements at most.
    let bytes = (cfg.max_count as u64).saturating_mul(8);
    group.agree(crate::units::check_memory(bytes, 5 + p as u64, "--max-count"))?;
    let mut report = Report::default();
    // Shared memory only where the ranks share a node; asked for alone
    // elsewhere, it runs and reports its error.
    let mut algorithms = group.runnable(&cfg.algorithms);
    if algorithms.is_empty() {
        algorithms = cfg.algorithms.clone();
    }
    for &dtype in &cfg.dtypes {
        for &op in &cfg.ops {
            for count in counts(p, cfg.max_count) {
                for &algorithm in &algorithms {
                    let case = Case {
                        algorithm,
                        dtype,
                        op,
                        count,
                        seed: cfg.seed,
                    };
                    match crate::with_dtype!(dtype, T => check_case::<T, C>(group, vendor, &case, true))? {
                        None => report.passed += 1,
                        Some(failure) => {
                            report.failed += 1;
                            if group.rank() == 0 {
                                on_failure(&failure);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(report)
}

/// One all-reduce to check: what, and the seed of its inputs.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The schedule.
    pub algorithm: Algorithm,
    /// Element type.
    pub dtype: DType,
    /// Reduce op.
    pub op: ReduceOp,
    /// Elements per rank.
    pub count: usize,
    /// Seed of the inputs.
    pub seed: u64,
}

/// Input of `rank` for a case: reproducible on every rank.
pub(crate) fn input<T: VerifyElement>(case: &Case, rank: usize) -> Vec<T> {
    // One stream per (seed, case, rank), so no two ranks or cases share data.
    let key = (case.dtype as u64) << 56 ^ (case.op as u64) << 48 ^ (case.count as u64) << 8;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ key);
    rng.set_stream(rank as u64);
    (0..case.count).map(|_| T::sample(&mut rng, case.op)).collect()
}

/// Runs one case (in place, or out of place into a fresh buffer) and checks
/// it against the reference and rank 0's bytes. Collective.
///
/// # Errors
/// The all-reduce's error, on every rank.
pub(crate) fn check_case<T: VerifyElement, C: Transport>(
    group: &Group<C>,
    vendor: Option<&dyn Vendor>,
    case: &Case,
    in_place: bool,
) -> Result<Option<Failure>> {
    let p = group.size();
    let mine = input::<T>(case, group.rank());

    let mut ours = mine.clone();
    let result = if in_place {
        group.all_reduce_in_place(&mut ours, case.op, case.algorithm)
    } else {
        group.all_reduce(&mine, &mut ours, case.op, case.algorithm)
    };
    // An error seen by some ranks only must not leave the others waiting.
    group.agree(result)?;

    let expected = reference(group, vendor, case, &mine)?;

    // Every rank must hold rank 0's bytes exactly.
    let mut root_copy = ours.clone();
    group.broadcast(&mut root_copy, 0)?;
    let differs_from_root = ours
        .iter()
        .zip(&root_copy)
        .position(|(a, b)| bytemuck::bytes_of(a) != bytemuck::bytes_of(b));

    // Each rank's verdict (`None`: right), gathered so every rank reports the first failing one.
    let verdict = if let Some((wrong, index)) = first_wrong(&ours, &expected, case.op, p) {
        Some(FailureKind::Wrong {
            wrong,
            index,
            got: ours[index].to_f64(),
            expected: expected[index].to_f64(),
        })
    } else {
        differs_from_root.map(|index| FailureKind::NotIdentical { index })
    };
    let all = group.all_gather_value(&verdict)?;
    let Some((rank, kind)) = all.into_iter().enumerate().find_map(|(r, v)| Some((r, v?))) else {
        return Ok(None);
    };
    Ok(Some(Failure {
        algorithm: case.algorithm,
        dtype: case.dtype,
        op: case.op,
        count: case.count,
        rank,
        kind,
    }))
}

/// The reference result for `case`: the vendor's all-reduce of every
/// rank's input where the vendor is trusted with the type and op, the
/// serial rank-ordered fold otherwise. Collective.
pub(crate) fn reference<T: VerifyElement, C: Transport>(
    group: &Group<C>,
    vendor: Option<&dyn Vendor>,
    case: &Case,
    mine: &[T],
) -> Result<Vec<T>> {
    // Whether the vendor is used must be the same on every rank.
    let mut out = vec![T::zeroed(); mine.len()];
    let used = vendor
        .filter(|v| T::vendor_trusted(case.op) && v.trusted(T::DTYPE, case.op))
        .is_some_and(|v| {
            v.all_reduce(
                T::DTYPE,
                case.op,
                bytemuck::cast_slice(mine),
                bytemuck::cast_slice_mut(&mut out),
            )
        });
    if used {
        return Ok(out);
    }
    let all: Vec<Vec<T>> = (0..group.size()).map(|r| input::<T>(case, r)).collect();
    Ok(serial_reference(&all, case.op))
}

/// Whether any element of `ours` is outside tolerance of `expected`;
/// returns the count of such elements and the first index.
pub fn first_wrong<T: Element>(ours: &[T], expected: &[T], op: ReduceOp, p: usize) -> Option<(usize, usize)> {
    let mut first = None;
    let mut wrong = 0;
    for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
        if !within_tolerance(*a, *b, op, p) {
            wrong += 1;
            first.get_or_insert(i);
        }
    }
    first.map(|i| (wrong, i))
}

/// The per-element tolerance rule of the module docs.
pub fn within_tolerance<T: Element>(got: T, expected: T, op: ReduceOp, p: usize) -> bool {
    if bytemuck::bytes_of(&got) == bytemuck::bytes_of(&expected) {
        return true;
    }
    let (a, b) = (got.to_f64(), expected.to_f64());
    if T::EPSILON == 0.0 || matches!(op, ReduceOp::Min | ReduceOp::Max) {
        return a == b || (a.is_nan() && b.is_nan());
    }
    let pf = p as f64;
    let tol = match op {
        ReduceOp::Sum => 2.0 * pf * T::EPSILON * pf,
        ReduceOp::Avg => 2.0 * pf * T::EPSILON + T::EPSILON * b.abs(),
        _ => 2.0 * pf * T::EPSILON * b.abs(),
    };
    (a - b).abs() <= tol
}

/// `op` over the rows of `inputs` as a left fold in rank order — what a
/// single process would compute. `Avg` follows the type's
/// [`Widen`]: the exact mean for integers (in i128,
/// truncated toward zero), the f64 mean rounded once for f16 and bf16.
pub fn serial_reference<T: Element>(inputs: &[Vec<T>], op: ReduceOp) -> Vec<T> {
    if op == ReduceOp::Avg && T::AVG != Widen::None && !inputs.is_empty() {
        return exact_mean(inputs);
    }
    let mut acc = inputs.first().cloned().unwrap_or_default();
    for x in inputs.iter().skip(1) {
        T::reduce(op, &mut acc, x, crate::element::Order::AccFirst);
    }
    if op == ReduceOp::Avg && !inputs.is_empty() {
        T::divide(&mut acc, inputs.len());
    }
    acc
}

/// The mean of the rows of `inputs`, element by element, as `Avg` defines it
/// for the types it widens.
fn exact_mean<T: Element>(inputs: &[Vec<T>]) -> Vec<T> {
    let p = inputs.len();
    let k = inputs[0].len();
    let bytes = |x: &T| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..std::mem::size_of::<T>()].copy_from_slice(bytemuck::bytes_of(x));
        b
    };
    (0..k)
        .map(|i| {
            let column = inputs.iter().map(|row| &row[i]);
            let out: [u8; 8] = match T::DTYPE {
                DType::U8 | DType::I32 | DType::I64 => {
                    let value = |x: &T| -> i128 {
                        let b = bytes(x);
                        match T::DTYPE {
                            DType::U8 => i128::from(b[0]),
                            DType::I32 => i128::from(i32::from_le_bytes(b[..4].try_into().expect("4 bytes"))),
                            _ => i128::from(i64::from_le_bytes(b)),
                        }
                    };
                    let mean = column.map(value).sum::<i128>() / p as i128;
                    (mean as i64).to_le_bytes()
                }
                _ => {
                    let mean = column.map(|x| x.to_f64()).sum::<f64>() / p as f64;
                    let half = match T::DTYPE {
                        DType::F16 => half::f16::from_f64(mean).to_bits(),
                        _ => half::bf16::from_f64(mean).to_bits(),
                    };
                    u64::from(half).to_le_bytes()
                }
            };
            bytemuck::pod_read_unaligned(&out[..std::mem::size_of::<T>()])
        })
        .collect()
}

/// Element types `verify` and `bench` can generate and check.
pub trait VerifyElement: Element {
    /// A random input value suited to `op` (bounded so products stay finite).
    fn sample<R: Rng + ?Sized>(rng: &mut R, op: ReduceOp) -> Self;
    /// Whether the vendor's result for `op` can serve as the reference: not
    /// for the averages this library widens (the vendor's sum wraps or overflows).
    fn vendor_trusted(op: ReduceOp) -> bool {
        op != ReduceOp::Avg || Self::AVG == Widen::None
    }
}

fn float_sample<R: Rng + ?Sized>(rng: &mut R, op: ReduceOp) -> f64 {
    if op == ReduceOp::Prod {
        let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
        sign * rng.gen_range(0.75..1.33)
    } else {
        rng.gen_range(-1.0..1.0)
    }
}

impl VerifyElement for f32 {
    fn sample<R: Rng + ?Sized>(rng: &mut R, op: ReduceOp) -> Self {
        float_sample(rng, op) as f32
    }
}

impl VerifyElement for f64 {
    fn sample<R: Rng + ?Sized>(rng: &mut R, op: ReduceOp) -> Self {
        float_sample(rng, op)
    }
}

macro_rules! int_verify {
    ($t:ty) => {
        impl VerifyElement for $t {
            fn sample<R: Rng + ?Sized>(rng: &mut R, _op: ReduceOp) -> Self {
                // Full range on purpose: sums and products wrap.
                rng.gen()
            }
        }
    };
}
int_verify!(i32);
int_verify!(i64);

impl VerifyElement for u8 {
    fn sample<R: Rng + ?Sized>(rng: &mut R, _op: ReduceOp) -> Self {
        rng.gen()
    }
    /// OpenMPI 4.1's AVX reduction component saturates 8- and 16-bit integer
    /// sums (open-mpi/ompi#8045, closed as won't-fix) while MPI and C define
    /// them to wrap, as ringreduce does; for those ops the rank-ordered
    /// reference is used instead.
    fn vendor_trusted(op: ReduceOp) -> bool {
        !matches!(op, ReduceOp::Sum | ReduceOp::Avg)
    }
}

macro_rules! half_verify {
    ($t:ty) => {
        impl VerifyElement for $t {
            fn sample<R: Rng + ?Sized>(rng: &mut R, op: ReduceOp) -> Self {
                <$t>::from_f64(float_sample(rng, op))
            }
        }
    };
}
half_verify!(half::f16);
half_verify!(half::bf16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_runs_on_threads_and_passes() {
        for p in [1, 3, 4] {
            let reports = Group::local(p, |g| {
                let cfg = VerifyConfig {
                    max_count: 40,
                    ..VerifyConfig::default()
                };
                let mut failures = Vec::new();
                let report = run(&g, &cfg, None, |f| failures.push(f.to_string())).unwrap();
                (report, failures)
            });
            let cases =
                Algorithm::CONCRETE.len() * DType::ALL.len() * ReduceOp::ALL.len() * counts(p, 40).len();
            for (report, failures) in reports {
                assert_eq!(
                    report,
                    Report {
                        passed: cases,
                        failed: 0
                    },
                    "p={p}: {failures:?}"
                );
            }
        }
    }
}
