//! `ringreduce verify`: check every algorithm against the vendor's
//! `MPI_Allreduce` on the cluster at hand.
//!
//! For every algorithm × element type × op × count, every rank fills a
//! buffer with random data derived from the seed and its rank, runs the
//! algorithm, and compares with `MPI_Allreduce` where MPI has the type
//! (f32, f64, i32, i64, u8) or with a serial rank-ordered reference (f16,
//! bf16, and u8 sum/avg, which OpenMPI 4.1's AVX kernels saturate instead
//! of wrapping; every rank regenerates every rank's input). It then checks that
//! every rank holds the same bytes as rank 0.
//!
//! Integers must match exactly. Floats may differ from the reference by the
//! rounding of a different summation order, bounded per element by
//! `2·p·ε·S` where S bounds Σ|x| (inputs lie in [−1, 1], so S = p) for
//! sum and avg, and |reference| for prod; min and max must match exactly.

use std::fmt;

use mpi::collective::SystemOperation;
use mpi::traits::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::algorithms::{all_reduce, all_reduce_in_place, Algorithm};
use crate::element::{DType, Element, ReduceOp};
use crate::transport::Mpi;

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
#[derive(Debug, Clone, PartialEq)]
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

/// Runs the whole matrix. Collective over `comm`: every rank must call it
/// with the same config. `on_failure` is called on rank 0 only, as each
/// failing case is found; the returned report is the same on every rank.
///
/// If an algorithm returns an error (which would leave peers waiting in the
/// collective), the job is aborted with `MPI_Abort` after printing it.
///
/// # Errors
/// Those of [`Mpi::new`] (a bad calibration file or `RINGREDUCE_ALGO`).
pub fn run<C: Communicator>(
    comm: &C,
    cfg: &VerifyConfig,
    mut on_failure: impl FnMut(&Failure),
) -> crate::Result<Report> {
    let p = comm.size() as usize;
    // Per rank: input, result, reference, rank 0's copy, scratch, and every
    // rank's input for the serial references; 8-byte elements at most.
    let bytes = (cfg.max_count as u64).saturating_mul(8);
    crate::transport::agree_on(
        comm,
        crate::units::check_memory(bytes, 5 + p as u64, "--max-count"),
    )?;
    let transport = Mpi::new(comm)?;
    let mut report = Report::default();
    for &dtype in &cfg.dtypes {
        for &op in &cfg.ops {
            for count in counts(p, cfg.max_count) {
                for &algorithm in &cfg.algorithms {
                    let case = Case {
                        algorithm,
                        dtype,
                        op,
                        count,
                        seed: cfg.seed,
                    };
                    match crate::with_dtype!(dtype, T => run_case::<T, C>(comm, &transport, &case)) {
                        None => report.passed += 1,
                        Some(failure) => {
                            report.failed += 1;
                            if comm.rank() == 0 {
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

pub(crate) struct Case {
    pub(crate) algorithm: Algorithm,
    pub(crate) dtype: DType,
    pub(crate) op: ReduceOp,
    pub(crate) count: usize,
    pub(crate) seed: u64,
}

/// Input of `rank` for a case: reproducible on every rank.
pub(crate) fn input<T: VerifyElement>(case: &Case, rank: usize) -> Vec<T> {
    // One stream per (seed, case, rank), so no two ranks or cases share data.
    let key = (case.dtype as u64) << 56 ^ (case.op as u64) << 48 ^ (case.count as u64) << 8;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ key);
    rng.set_stream(rank as u64);
    (0..case.count).map(|_| T::sample(&mut rng, case.op)).collect()
}

fn run_case<T: VerifyElement, C: Communicator>(comm: &C, transport: &Mpi, case: &Case) -> Option<Failure> {
    check_case::<T, C>(comm, transport, case, true)
}

/// Runs one case (in place, or out of place into a fresh buffer) and checks
/// it against the reference and rank 0's bytes. Collective.
pub(crate) fn check_case<T: VerifyElement, C: Communicator>(
    comm: &C,
    transport: &Mpi,
    case: &Case,
    in_place: bool,
) -> Option<Failure> {
    let p = comm.size() as usize;
    let rank = comm.rank() as usize;
    let mine = input::<T>(case, rank);

    let mut ours = mine.clone();
    let result = if in_place {
        all_reduce_in_place(transport, &mut ours, case.op, case.algorithm)
    } else {
        all_reduce(transport, &mine, &mut ours, case.op, case.algorithm)
    };
    if let Err(e) = result {
        eprintln!(
            "ringreduce verify: rank {rank}: {} {} {} count={} returned an error: {e}",
            case.algorithm, case.dtype, case.op, case.count
        );
        comm.abort(2);
    }

    let expected = reference(comm, case, &mine);

    // Every rank must hold rank 0's bytes exactly.
    let mut root_copy = ours.clone();
    if !root_copy.is_empty() {
        // (An empty u8 Vec's dangling pointer is 0x1, which OpenMPI reads as MPI_IN_PLACE.)
        comm.process_at_rank(0)
            .broadcast_into(bytemuck::cast_slice_mut::<T, u8>(&mut root_copy));
    }
    let differs_from_root = ours
        .iter()
        .zip(&root_copy)
        .position(|(a, b)| bytemuck::bytes_of(a) != bytemuck::bytes_of(b));

    // Each rank's verdict: [kind, wrong, index, got, expected]; kind 0 = ok,
    // 1 = wrong values, 2 = not identical to rank 0.
    let mut local = [0f64; 5];
    if let Some((wrong, index)) = first_wrong(&ours, &expected, case.op, p) {
        local = [
            1.0,
            wrong as f64,
            index as f64,
            ours[index].to_f64(),
            expected[index].to_f64(),
        ];
    } else if let Some(index) = differs_from_root {
        local = [2.0, 0.0, index as f64, 0.0, 0.0];
    }
    let mut all = vec![0f64; 5 * p];
    comm.all_gather_into(&local[..], &mut all[..]);
    let (rank, v) = all.chunks_exact(5).enumerate().find(|(_, v)| v[0] != 0.0)?;
    let kind = if v[0] == 1.0 {
        FailureKind::Wrong {
            wrong: v[1] as usize,
            index: v[2] as usize,
            got: v[3],
            expected: v[4],
        }
    } else {
        FailureKind::NotIdentical { index: v[2] as usize }
    };
    Some(Failure {
        algorithm: case.algorithm,
        dtype: case.dtype,
        op: case.op,
        count: case.count,
        rank,
        kind,
    })
}

/// The reference result for `case`: `MPI_Allreduce` of every rank's input
/// where MPI is trusted with the type, the serial rank-ordered fold otherwise.
/// Collective.
pub(crate) fn reference<T: VerifyElement, C: Communicator>(comm: &C, case: &Case, mine: &[T]) -> Vec<T> {
    T::mpi_reference(comm, mine, case.op).unwrap_or_else(|| {
        let all: Vec<Vec<T>> = (0..comm.size() as usize).map(|r| input::<T>(case, r)).collect();
        serial_reference(&all, case.op)
    })
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
/// single process would compute.
pub fn serial_reference<T: Element>(inputs: &[Vec<T>], op: ReduceOp) -> Vec<T> {
    let mut acc = inputs.first().cloned().unwrap_or_default();
    for x in inputs.iter().skip(1) {
        T::reduce(op, &mut acc, x, crate::element::Order::AccFirst);
    }
    if op == ReduceOp::Avg && !inputs.is_empty() {
        T::divide(&mut acc, inputs.len());
    }
    acc
}

/// Element types `verify` and `bench` can generate, check and hand to MPI.
pub trait VerifyElement: Element {
    /// A random input value suited to `op` (bounded so products stay finite).
    fn sample(rng: &mut ChaCha8Rng, op: ReduceOp) -> Self;
    /// The vendor's `MPI_Allreduce(send, recv, op)` (sum then divide for
    /// avg); `false` when MPI has no datatype for `Self`.
    fn mpi_all_reduce_into<C: Communicator>(comm: &C, send: &[Self], recv: &mut [Self], op: ReduceOp)
        -> bool;
    /// The reference result verify compares with: `MPI_Allreduce` where MPI
    /// has the type and computes it correctly, `None` otherwise.
    fn mpi_reference<C: Communicator>(comm: &C, send: &[Self], op: ReduceOp) -> Option<Vec<Self>> {
        let mut out = vec![<Self as bytemuck::Zeroable>::zeroed(); send.len()];
        Self::mpi_all_reduce_into(comm, send, &mut out, op).then_some(out)
    }
}

fn float_sample(rng: &mut ChaCha8Rng, op: ReduceOp) -> f64 {
    if op == ReduceOp::Prod {
        let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
        sign * rng.gen_range(0.75..1.33)
    } else {
        rng.gen_range(-1.0..1.0)
    }
}

fn system_op(op: ReduceOp) -> SystemOperation {
    match op {
        ReduceOp::Sum | ReduceOp::Avg => SystemOperation::sum(),
        ReduceOp::Prod => SystemOperation::product(),
        ReduceOp::Min => SystemOperation::min(),
        ReduceOp::Max => SystemOperation::max(),
    }
}

macro_rules! mpi_all_reduce {
    () => {
        fn mpi_all_reduce_into<C: Communicator>(
            comm: &C,
            send: &[Self],
            recv: &mut [Self],
            op: ReduceOp,
        ) -> bool {
            mpi_all_reduce(comm, send, recv, op);
            true
        }
    };
}

fn mpi_all_reduce<T, C>(comm: &C, send: &[T], recv: &mut [T], op: ReduceOp)
where
    T: Element + Equivalence,
    C: Communicator,
{
    if send.is_empty() {
        // Two empty Vecs share a dangling pointer, which MPI rejects as
        // sendbuf == recvbuf; there is nothing to reduce anyway.
        return;
    }
    comm.all_reduce_into(send, recv, system_op(op));
    if op == ReduceOp::Avg {
        T::divide(recv, comm.size() as usize);
    }
}

impl VerifyElement for f32 {
    fn sample(rng: &mut ChaCha8Rng, op: ReduceOp) -> Self {
        float_sample(rng, op) as f32
    }
    mpi_all_reduce!();
}

impl VerifyElement for f64 {
    fn sample(rng: &mut ChaCha8Rng, op: ReduceOp) -> Self {
        float_sample(rng, op)
    }
    mpi_all_reduce!();
}

macro_rules! int_verify {
    ($t:ty) => {
        impl VerifyElement for $t {
            fn sample(rng: &mut ChaCha8Rng, _op: ReduceOp) -> Self {
                // Full range on purpose: sums and products wrap.
                rng.gen()
            }
            mpi_all_reduce!();
        }
    };
}
int_verify!(i32);
int_verify!(i64);

impl VerifyElement for u8 {
    fn sample(rng: &mut ChaCha8Rng, _op: ReduceOp) -> Self {
        rng.gen()
    }
    mpi_all_reduce!();
    /// OpenMPI 4.1's AVX reduction component saturates 8- and 16-bit integer
    /// sums (open-mpi/ompi#8045, closed as won't-fix) while MPI and C define
    /// them to wrap, as ringreduce does; for those ops the rank-ordered
    /// reference is used instead.
    fn mpi_reference<C: Communicator>(comm: &C, send: &[Self], op: ReduceOp) -> Option<Vec<Self>> {
        let mut out = vec![0; send.len()];
        match op {
            ReduceOp::Sum | ReduceOp::Avg => None,
            _ => Self::mpi_all_reduce_into(comm, send, &mut out, op).then_some(out),
        }
    }
}

macro_rules! half_verify {
    ($t:ty) => {
        impl VerifyElement for $t {
            fn sample(rng: &mut ChaCha8Rng, op: ReduceOp) -> Self {
                <$t>::from_f64(float_sample(rng, op))
            }
            fn mpi_all_reduce_into<C: Communicator>(_: &C, _: &[Self], _: &mut [Self], _: ReduceOp) -> bool {
                false
            }
        }
    };
}
half_verify!(half::f16);
half_verify!(half::bf16);
