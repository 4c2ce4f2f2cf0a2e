//! `ringreduce bench`: time the algorithms side by side with the vendor's
//! `MPI_Allreduce`, the way OSU Micro-Benchmarks and nccl-tests do.
//!
//! Timing follows `osu_allreduce`: warm-up calls, then every timed call is
//! followed by an untimed barrier; each rank averages its own times and the
//! report gives the average, minimum and maximum of those averages across
//! ranks. Bandwidths follow nccl-tests: `algbw = bytes / time` and
//! `busbw = algbw · 2(p−1)/p` (GB = 1e9 B). At each size the algorithms run
//! one after another, so drift on a shared machine hits them alike.

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::traits::*;
use serde::Serialize;

use crate::algorithms::{all_reduce, Algorithm};
use crate::check::CheckConfig;
use crate::cost::{self, Tuning};
use crate::element::{DType, Element, ReduceOp};
use crate::error::{Error, Result};
use crate::transport::{Mpi, Transport};
use crate::units::check_memory;
use crate::verify::{first_wrong, input, reference, Case, VerifyElement};

/// What a benchmark row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// One of ours (`Auto` is resolved per size).
    Ours(Algorithm),
    /// One of ours with the call checks off ([`CheckConfig::OFF`]), named
    /// `ring-nocheck` etc.: beside `Ours` it shows what the checks cost.
    Unchecked(Algorithm),
    /// The vendor's `MPI_Allreduce` (through rsmpi's `all_reduce_into`).
    Vendor,
}

impl Subject {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Ours(a) => a.name(),
            Subject::Unchecked(a) => match a {
                Algorithm::Naive => "naive-nocheck",
                Algorithm::Butterfly => "butterfly-nocheck",
                Algorithm::Ring => "ring-nocheck",
                Algorithm::Central => "central-nocheck",
                Algorithm::Auto => "auto-nocheck",
            },
            Subject::Vendor => "mpi",
        }
    }

    /// Parses `naive`, `butterfly`, `ring`, `central`, `auto` (each also
    /// with `-nocheck`) or `mpi`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("mpi") {
            return Ok(Subject::Vendor);
        }
        let lower = s.to_ascii_lowercase();
        let (name, wrap): (&str, fn(Algorithm) -> Subject) = match lower.strip_suffix("-nocheck") {
            Some(base) => (base, Subject::Unchecked),
            None => (&lower, Subject::Ours),
        };
        name.parse::<Algorithm>().map(wrap).map_err(|e| match e {
            Error::UnknownName { kind, expected, .. } => Error::UnknownName {
                kind,
                name: s.to_string(),
                expected: expected + ", mpi (add -nocheck to run ours without call checks)",
            },
            other => other,
        })
    }

    /// Every algorithm of ours, then the vendor's.
    pub fn all() -> Vec<Subject> {
        let mut v: Vec<Subject> = Algorithm::CONCRETE.into_iter().map(Subject::Ours).collect();
        v.push(Subject::Ours(Algorithm::Auto));
        v.push(Subject::Vendor);
        v
    }
}

/// A benchmark run's settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// What to time, in this order at every size.
    pub subjects: Vec<Subject>,
    /// Element type.
    pub dtype: DType,
    /// Reduce op.
    pub op: ReduceOp,
    /// Smallest message in bytes.
    pub min_bytes: u64,
    /// Largest message in bytes (sizes double from `min_bytes`).
    pub max_bytes: u64,
    /// Timed iterations; `None`: 1000 up to 8 KiB, 100 above (OSU's defaults).
    pub iters: Option<usize>,
    /// Warm-up iterations; `None`: 100 up to 8 KiB, 10 above.
    pub warmup: Option<usize>,
    /// Validate one result per row and count wrong elements.
    pub check: bool,
    /// Seed of the check data.
    pub seed: u64,
    /// Call checks of the `Ours` subjects (rank 0's are used).
    pub checks: CheckConfig,
}

impl BenchConfig {
    /// The message sizes: `min_bytes`, doubling, up to `max_bytes`, each
    /// rounded down to whole elements.
    ///
    /// # Errors
    /// When the range is empty or reversed, or holds no whole element.
    pub fn sizes(&self) -> Result<Vec<u64>> {
        let s = self.dtype.size() as u64;
        if self.min_bytes > self.max_bytes {
            return Err(Error::InvalidArgument {
                what: "size range",
                reason: format!("minimum {} is above maximum {}", self.min_bytes, self.max_bytes),
            });
        }
        if self.max_bytes < s {
            return Err(Error::InvalidArgument {
                what: "size range",
                reason: format!(
                    "maximum {} B holds no whole {} element ({s} B)",
                    self.max_bytes, self.dtype
                ),
            });
        }
        let mut out = Vec::new();
        let mut b = self.min_bytes.max(s);
        while b <= self.max_bytes {
            out.push(b / s * s);
            b = match b.checked_mul(2) {
                Some(n) => n,
                None => break,
            };
        }
        out.dedup();
        Ok(out)
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Message size in bytes.
    pub bytes: u64,
    /// Elements per rank.
    pub count: u64,
    /// Element type.
    pub dtype: String,
    /// Algorithm (`auto:ring` when auto chose the ring).
    pub algo: String,
    /// Average over ranks of each rank's mean time, µs.
    pub avg_us: f64,
    /// Smallest rank mean, µs.
    pub min_us: f64,
    /// Largest rank mean, µs.
    pub max_us: f64,
    /// Algorithm bandwidth, GB/s.
    pub algbw: f64,
    /// Bus bandwidth, GB/s.
    pub busbw: f64,
    /// Elements that differed from the reference (all ranks), when checking.
    pub wrong: Option<u64>,
    /// Time the cost model predicts for the out-of-place call (model plus
    /// the copy of the input), µs (ours only).
    pub predicted_us: Option<f64>,
}

/// Runs the benchmark. Collective over `comm`; `on_row` is called on every
/// rank as each row completes (print on rank 0 only).
///
/// # Errors
/// Bad settings (empty size range, `mpi` with a type MPI lacks), or a
/// failing all-reduce.
pub fn run<C: Communicator>(
    comm: &C,
    cfg: &BenchConfig,
    tuning: Tuning,
    mut on_row: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    let sizes = cfg.sizes()?;
    // input, output, scratch and a reference: about 4× the message
    crate::transport::agree_on(comm, check_memory(cfg.max_bytes, 4, "size range"))?;
    if cfg.iters == Some(0) {
        return Err(Error::InvalidArgument {
            what: "--iters",
            reason: "at least 1 timed iteration is needed".into(),
        });
    }
    if cfg.subjects.contains(&Subject::Vendor) && matches!(cfg.dtype, DType::F16 | DType::BF16) {
        return Err(Error::InvalidArgument {
            what: "algorithm",
            reason: format!(
                "`mpi` has no {} datatype; leave it out for 16-bit floats",
                cfg.dtype
            ),
        });
    }
    let transport = Mpi::with_config(comm, tuning, cfg.checks);
    let unchecked = Mpi::with_config(comm, tuning, CheckConfig::OFF);
    let mut rows = Vec::new();
    for bytes in sizes {
        crate::with_dtype!(cfg.dtype, T => {
            // One pair of buffers per size, shared by every subject, so that
            // memory placement favours none of them.
            let count = (bytes / T::DTYPE.size() as u64) as usize;
            let case = Case { algorithm: Algorithm::Ring, dtype: T::DTYPE, op: cfg.op, count, seed: cfg.seed };
            let send: Vec<T> = input(&case, comm.rank() as usize);
            let mut recv = send.clone();
            for &subject in &cfg.subjects {
                let t = if matches!(subject, Subject::Unchecked(_)) { &unchecked } else { &transport };
                let row = time_one::<T, C>(comm, t, cfg, subject, &case, &send, &mut recv)?;
                on_row(&row);
                rows.push(row);
            }
        });
    }
    Ok(rows)
}

fn time_one<T: VerifyElement, C: Communicator>(
    comm: &C,
    transport: &Mpi,
    cfg: &BenchConfig,
    subject: Subject,
    case: &Case,
    send: &[T],
    recv: &mut [T],
) -> Result<Row> {
    let p = comm.size() as usize;
    let count = case.count;
    let bytes = (count * T::DTYPE.size()) as u64;
    let small = bytes <= 8192;
    let iters = cfg.iters.unwrap_or(if small { 1000 } else { 100 }).max(1);
    let warmup = cfg.warmup.unwrap_or(if small { 100 } else { 10 });

    let call = |recv: &mut [T]| -> Result<()> {
        match subject {
            Subject::Ours(a) | Subject::Unchecked(a) => all_reduce(transport, send, recv, cfg.op, a),
            Subject::Vendor => {
                T::mpi_all_reduce_into(comm, send, recv, cfg.op);
                Ok(())
            }
        }
    };

    for _ in 0..warmup {
        call(recv)?;
    }
    comm.barrier();
    let mut total = 0.0;
    for _ in 0..iters {
        let start = Instant::now();
        call(recv)?;
        total += start.elapsed().as_secs_f64();
        comm.barrier();
    }
    let mine = total / iters as f64 * 1e6;
    let (mut sum, mut min, mut max) = (0.0, 0.0, 0.0);
    comm.all_reduce_into(&mine, &mut sum, SystemOperation::sum());
    comm.all_reduce_into(&mine, &mut min, SystemOperation::min());
    comm.all_reduce_into(&mine, &mut max, SystemOperation::max());
    let avg = sum / p as f64;

    let wrong = if cfg.check {
        call(recv)?;
        let expected = reference(comm, case, send);
        let local = first_wrong(recv, &expected, cfg.op, p).map_or(0, |(w, _)| w as u64);
        let mut all = 0u64;
        comm.all_reduce_into(&local, &mut all, SystemOperation::sum());
        Some(all)
    } else {
        None
    };

    let elem = T::DTYPE.size();
    let (algo, predicted_us) = match subject {
        Subject::Vendor => ("mpi".to_string(), None),
        Subject::Ours(a) | Subject::Unchecked(a) => {
            let tuning = transport.tuning();
            let chosen = if a == Algorithm::Auto {
                tuning.resolve(p, count, elem)
            } else {
                a
            };
            let name = if a == Algorithm::Auto {
                format!("{}:{chosen}", subject.name())
            } else {
                subject.name().to_string()
            };
            // The benchmark times the out-of-place call, which copies the input
            // first — except the ring, which writes the output directly.
            let model = cost::cost(chosen, p, count, elem).predict(&tuning.params, elem);
            let copy = if chosen == Algorithm::Ring {
                0.0
            } else {
                tuning.params.copy * bytes as f64
            };
            let predicted = (model + copy) * 1e6;
            (name, Some(predicted))
        }
    };
    let algbw = if avg > 0.0 {
        bytes as f64 / (avg * 1e-6) / 1e9
    } else {
        0.0
    };
    let busbw = if p > 1 {
        algbw * 2.0 * (p - 1) as f64 / p as f64
    } else {
        0.0
    };
    Ok(Row {
        bytes,
        count: count as u64,
        dtype: T::DTYPE.to_string(),
        algo,
        avg_us: avg,
        min_us: min,
        max_us: max,
        algbw,
        busbw,
        wrong,
        predicted_us,
    })
}

/// Column header of the table format.
pub fn table_header(predict: bool) -> String {
    let mut h = format!(
        "{:>12} {:>10} {:>5} {:>16} {:>12} {:>12} {:>12} {:>8} {:>8} {:>7}",
        "size(B)", "count", "type", "algo", "avg(us)", "min(us)", "max(us)", "algbw", "busbw", "#wrong"
    );
    if predict {
        h += &format!(" {:>12} {:>10}", "pred(us)", "meas/pred");
    }
    h
}

/// One row of the table format.
pub fn table_row(r: &Row, predict: bool) -> String {
    let wrong = r.wrong.map_or("-".to_string(), |w| w.to_string());
    let mut line = format!(
        "{:>12} {:>10} {:>5} {:>16} {:>12.2} {:>12.2} {:>12.2} {:>8.3} {:>8.3} {:>7}",
        r.bytes, r.count, r.dtype, r.algo, r.avg_us, r.min_us, r.max_us, r.algbw, r.busbw, wrong
    );
    if predict {
        match r.predicted_us {
            Some(p) => line += &format!(" {:>12.2} {:>10.2}", p, r.avg_us / p),
            None => line += &format!(" {:>12} {:>10}", "-", "-"),
        }
    }
    line
}

/// Column header of the CSV format.
pub const CSV_HEADER: &str =
    "bytes,count,type,algo,avg_us,min_us,max_us,algbw_gbs,busbw_gbs,wrong,predicted_us";

/// One row of the CSV format.
pub fn csv_row(r: &Row) -> String {
    format!(
        "{},{},{},{},{:.3},{:.3},{:.3},{:.4},{:.4},{},{}",
        r.bytes,
        r.count,
        r.dtype,
        r.algo,
        r.avg_us,
        r.min_us,
        r.max_us,
        r.algbw,
        r.busbw,
        r.wrong.map_or(String::new(), |w| w.to_string()),
        r.predicted_us.map_or(String::new(), |p| format!("{p:.3}"))
    )
}

/// The `osu_allreduce` header for `dtype` (a blank line first, as OSU prints).
pub fn osu_header(dtype: DType) -> String {
    let name = match dtype {
        DType::F32 => "MPI_FLOAT",
        DType::F64 => "MPI_DOUBLE",
        DType::I32 => "MPI_INT",
        DType::I64 => "MPI_LONG",
        DType::U8 => "MPI_CHAR",
        DType::F16 | DType::BF16 => "MPI_UINT16_T",
    };
    format!("\n# OSU MPI Allreduce Latency Test\n# Datatype: {name}.\n# Size       Avg Latency(us)")
}

/// One `osu_allreduce` row: `%-10d%20.2f`.
pub fn osu_row(r: &Row) -> String {
    format!("{:<10}{:>20.2}", r.bytes, r.avg_us)
}
