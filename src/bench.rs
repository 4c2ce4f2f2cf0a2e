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

use serde::Serialize;

use crate::algorithms::{shm_peer_copy, Algorithm};
use crate::calibrate::median;
use crate::cost::{self, Rule, Rules, Tuning};
use crate::element::{DType, Element, ReduceOp};
use crate::error::{Error, Result};
use crate::group::{CheckConfig, Group, Settings};
use crate::transport::{whole_segment, Transport};
use crate::units::check_memory;
use crate::vendor::Vendor;
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
    /// Not an all-reduce: every rank copies its n bytes from the send
    /// buffer to the receive buffer at once, in the same timing loop with
    /// the same buffers — the least any call that reads and writes n bytes
    /// costs, the roofline the shared-memory rows are measured against.
    /// Its `busbw` is its `algbw` (bytes copied per second).
    Memcpy,
    /// Not an all-reduce either: every rank copies its n bytes into the
    /// node's shared memory and then the n bytes its neighbour just wrote
    /// there into its receive buffer (512 KiB pieces, two barriers each).
    /// With 2 ranks that is what any all-reduce must bring into each core
    /// (half the other's input, half its result): the roofline of the
    /// shared-memory rows once the cores' caches are apart. Needs every
    /// rank on one node; `busbw` = `algbw`.
    PeerCopy,
}

impl Subject {
    /// The name on the command line and in reports.
    pub fn name(self) -> String {
        match self {
            Subject::Ours(a) => a.name().to_string(),
            Subject::Unchecked(a) => format!("{a}-nocheck"),
            Subject::Vendor => "mpi".to_string(),
            Subject::Memcpy => "memcpy".to_string(),
            Subject::PeerCopy => "peer-copy".to_string(),
        }
    }

    /// A copy timed as a roofline, not an all-reduce: never checked, and
    /// its bus bandwidth is the bytes it copies per second.
    pub fn copies(self) -> bool {
        matches!(self, Subject::Memcpy | Subject::PeerCopy)
    }

    /// Parses `naive`, `butterfly`, `ring`, `central`, `auto` (each also
    /// with `-nocheck`), `mpi`, `memcpy` or `peer-copy`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("mpi") {
            return Ok(Subject::Vendor);
        }
        if s.eq_ignore_ascii_case("memcpy") {
            return Ok(Subject::Memcpy);
        }
        if s.eq_ignore_ascii_case("peer-copy") {
            return Ok(Subject::PeerCopy);
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
                expected: expected
                    + ", mpi, memcpy, peer-copy (add -nocheck to run ours without call checks)",
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
    /// Timed iterations; `None`: 1000 up to 8 KiB, 100 above (OSU's defaults).
    pub iters: Option<usize>,
    /// Warm-up iterations; `None`: 100 up to 8 KiB, 10 above.
    pub warmup: Option<usize>,
    /// Smallest message in bytes.
    pub min_bytes: u64,
    /// Largest message in bytes.
    pub max_bytes: u64,
    /// Each size is this many times the one before (nccl-tests' `-f`; 2).
    pub factor: u64,
    /// Time the in-place call too (nccl-tests' second column group).
    pub in_place: bool,
    /// Validate one result per row and count wrong elements.
    pub check: bool,
    /// Seed of the check data.
    pub seed: u64,
    /// Another collective than the all-reduce: ours (the ring's halves,
    /// named `ring`) against the vendor's `MPI_Reduce_scatter_block`,
    /// `MPI_Reduce` (to rank 0) or `MPI_Allgather`. Sizes are the whole
    /// vector (p blocks), as nccl-tests counts them.
    pub collective: Option<cost::Collective>,
}

impl BenchConfig {
    /// The message sizes: `min_bytes`, times `factor` each step, up to
    /// `max_bytes`, each rounded down to whole elements.
    ///
    /// # Errors
    /// When the range is empty or reversed, holds no whole element, or the
    /// factor is below 2.
    pub fn sizes(&self) -> Result<Vec<u64>> {
        let s = self.dtype.size() as u64;
        if self.factor < 2 {
            return Err(Error::InvalidArgument {
                what: "size factor",
                reason: format!("{} does not grow the size; use 2 or more", self.factor),
            });
        }
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
            b = match b.checked_mul(self.factor) {
                Some(n) => n,
                None => break,
            };
        }
        out.dedup();
        Ok(out)
    }
}

/// One line of the report: one subject at one size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Message size in bytes.
    pub bytes: u64,
    /// Elements per rank.
    pub count: u64,
    /// Element type.
    pub dtype: String,
    /// Algorithm (`auto:ring` when auto chose the ring).
    pub algo: String,
    /// The out-of-place call (its fields at the top level in JSON).
    #[serde(flatten)]
    pub time: Timing,
    /// Time the cost model predicts for the out-of-place call (model plus
    /// the copy of the input), µs (ours only).
    pub predicted_us: Option<f64>,
    /// The in-place call, when timed.
    pub in_place: Option<Timing>,
    /// Time the cost model predicts for the in-place call (the model
    /// alone), µs (ours only, when the in-place call was timed).
    pub in_place_predicted_us: Option<f64>,
    /// Ranks.
    pub ranks: usize,
    /// Reduce op.
    pub op: String,
    /// Rank 0's host name.
    pub host: String,
    /// UTC date of the run, `2026-11-23`.
    pub date: String,
}

/// Times of one call kind (the in-place one, in a [`Row`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
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
}

/// This host's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Today's UTC date, `2026-11-23`.
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Runs the benchmark over `group` (its settings: the call checks of the
/// `Ours` subjects, the tuning of `auto`); `vendor` times the `mpi`
/// subject and serves as the reference of `--check`. Collective;
/// `on_row` is called on every rank as each row completes (print on rank 0
/// only).
///
/// # Errors
/// Bad settings (empty size range, `mpi` without a vendor or with a type it
/// lacks), or a failing all-reduce.
pub fn run<C: Transport>(
    group: &Group<C>,
    cfg: &BenchConfig,
    vendor: Option<&dyn Vendor>,
    mut on_row: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    let sizes = cfg.sizes()?;
    // input, output, scratch and a reference: about 4× the message
    group.agree(check_memory(cfg.max_bytes, 4, "size range"))?;
    if cfg.iters == Some(0) {
        return Err(Error::InvalidArgument {
            what: "--iters",
            reason: "at least 1 timed iteration is needed".into(),
        });
    }
    if cfg.subjects.contains(&Subject::Vendor) {
        let lacks = match vendor {
            None => Some("no vendor library to compare with here".to_string()),
            Some(_) if matches!(cfg.dtype, DType::F16 | DType::BF16) => Some(format!(
                "`mpi` has no {} datatype; leave it out for 16-bit floats",
                cfg.dtype
            )),
            Some(_) => None,
        };
        if let Some(reason) = lacks {
            return Err(Error::InvalidArgument {
                what: "algorithm",
                reason,
            });
        }
    }
    // Shared memory only where the ranks share a node (unless it is all
    // that was asked for: then it runs and reports its error).
    let runnable = |s: &&Subject| match s {
        Subject::Ours(a) | Subject::Unchecked(a) => group.supports(*a),
        Subject::PeerCopy => group.size() == 1 || whole_segment(group.transport()).is_some(),
        _ => true,
    };
    let mut subjects: Vec<Subject> = cfg.subjects.iter().filter(runnable).copied().collect();
    if subjects.is_empty() {
        subjects = cfg.subjects.clone();
    }
    if let Some(c) = cfg.collective {
        subjects = collective_subjects(c, &subjects, cfg.check)?;
    }
    let mut rows = Vec::new();
    for bytes in sizes {
        crate::with_dtype!(cfg.dtype, T => {
            // One pair of buffers per size, shared by every subject, so that
            // memory placement favours none of them.
            let mut count = (bytes / T::DTYPE.size() as u64) as usize;
            if cfg.collective.is_some() {
                // p blocks of at least one element.
                count = (count / group.size()).max(1) * group.size();
            }
            let case = Case { algorithm: Algorithm::Ring, dtype: T::DTYPE, op: cfg.op, count, seed: cfg.seed };
            let send: Vec<T> = input(&case, group.rank());
            let mut recv = send.clone();
            for &subject in &subjects {
                let row = time_one::<T, C>(group, vendor, cfg, subject, &case, &send, &mut recv)?;
                on_row(&row);
                rows.push(row);
            }
        });
    }
    Ok(rows)
}

/// The subjects of a `collective` run: ours as `ring` (what `auto` and
/// `ring` mean there; the other algorithms have no such collective) and
/// the vendor's.
fn collective_subjects(c: cost::Collective, asked: &[Subject], check: bool) -> Result<Vec<Subject>> {
    if check {
        return Err(Error::InvalidArgument {
            what: "--check",
            reason: format!(
                "validates all-reduce results; {} is held to the vendor's by the tests (leave --check out)",
                c.name()
            ),
        });
    }
    let mut out = Vec::new();
    for &s in asked {
        let mapped = match s {
            Subject::Ours(Algorithm::Ring | Algorithm::Auto) => Subject::Ours(Algorithm::Ring),
            Subject::Unchecked(Algorithm::Ring | Algorithm::Auto) => Subject::Unchecked(Algorithm::Ring),
            Subject::Vendor => Subject::Vendor,
            _ => continue,
        };
        if !out.contains(&mapped) {
            out.push(mapped);
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument {
            what: "algorithm",
            reason: format!("{} runs the ring: time `ring`, `ring-nocheck` or `mpi`", c.name()),
        });
    }
    Ok(out)
}

/// Where a timed call leaves its result.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    OutOfPlace,
    InPlace,
}

fn time_one<T: VerifyElement, C: Transport>(
    group: &Group<C>,
    vendor: Option<&dyn Vendor>,
    cfg: &BenchConfig,
    subject: Subject,
    case: &Case,
    send: &[T],
    recv: &mut [T],
) -> Result<Row> {
    let p = group.size();
    let count = case.count;
    let bytes = (count * T::DTYPE.size()) as u64;

    // `-nocheck` subjects run with the call checks off, the same on every rank.
    let settings = group.settings();
    if let Subject::Unchecked(_) = subject {
        group.set_settings(Settings {
            checks: CheckConfig::OFF,
            ..settings
        });
    }
    let timed = (|| -> Result<(Timing, Option<Timing>)> {
        let out = time_placement(
            group,
            vendor,
            cfg,
            subject,
            case,
            send,
            recv,
            Placement::OutOfPlace,
        )?;
        let inp = match cfg.in_place && cfg.collective.is_none() {
            true => Some(time_placement(
                group,
                vendor,
                cfg,
                subject,
                case,
                send,
                recv,
                Placement::InPlace,
            )?),
            false => None,
        };
        Ok((out, inp))
    })();
    group.set_settings(settings);
    let (out, in_place) = timed?;

    let elem = T::DTYPE.size();
    let (algo, predicted_us, in_place_predicted_us) = match (subject, cfg.collective) {
        (_, Some(c)) => (format!("{}:{}", c.name(), subject.name()), None, None),
        (Subject::Vendor, None) => ("mpi".to_string(), None, None),
        (Subject::Memcpy | Subject::PeerCopy, None) => (subject.name(), None, None),
        (Subject::Ours(a) | Subject::Unchecked(a), None) => {
            let tuning = settings.tuning;
            let chosen = group.resolve(a, count, elem);
            let name = if a == Algorithm::Auto {
                format!("{}:{chosen}", subject.name())
            } else {
                subject.name()
            };
            // The benchmark times the out-of-place call, which copies the input
            // first — except the schedules that read it where it is and write
            // the output directly. Checked subjects pay the call check's
            // agreement too.
            let checked = matches!(subject, Subject::Ours(_)) && settings.checks.mismatch;
            let model = cost::predict_call(chosen, p, count, elem, &tuning.params, checked);
            let copy = if chosen.copies_input() {
                let footprint = cost::cost(chosen, p, count, elem).footprint;
                tuning.params.copy_time(bytes, footprint.saturating_add(bytes))
            } else {
                0.0
            };
            let predicted = (model + copy) * 1e6;
            (name, Some(predicted), in_place.is_some().then_some(model * 1e6))
        }
    };
    Ok(Row {
        bytes,
        count: count as u64,
        dtype: T::DTYPE.to_string(),
        algo,
        time: out,
        predicted_us,
        in_place,
        in_place_predicted_us,
        ranks: p,
        op: cfg.op.to_string(),
        host: host_name(),
        date: utc_date(),
    })
}

/// Warm-up, timed calls each followed by a barrier (OSU's method), the
/// ranks' means gathered, and the optional check of one more call.
#[allow(clippy::too_many_arguments)]
fn time_placement<T: VerifyElement, C: Transport>(
    group: &Group<C>,
    vendor: Option<&dyn Vendor>,
    cfg: &BenchConfig,
    subject: Subject,
    case: &Case,
    send: &[T],
    recv: &mut [T],
    placement: Placement,
) -> Result<Timing> {
    let p = group.size();
    let bytes = std::mem::size_of_val(send) as u64;
    let small = bytes <= 8192;
    let iters = cfg.iters.unwrap_or(if small { 1000 } else { 100 }).max(1);
    let warmup = cfg.warmup.unwrap_or(if small { 100 } else { 10 });
    // In place, the buffer starts as the input; repeated sums grow (floats
    // saturate at ±inf, integers wrap), which costs the kernels nothing.
    if placement == Placement::InPlace {
        recv.copy_from_slice(send);
    }
    let call = |recv: &mut [T]| -> Result<()> {
        if let Some(c) = cfg.collective {
            return time_collective(group, vendor, c, subject, cfg.op, send, recv);
        }
        match (subject, placement) {
            (Subject::Ours(a) | Subject::Unchecked(a), Placement::OutOfPlace) => {
                group.all_reduce(send, recv, cfg.op, a)
            }
            (Subject::Ours(a) | Subject::Unchecked(a), Placement::InPlace) => {
                group.all_reduce_in_place(recv, cfg.op, a)
            }
            (Subject::Memcpy, _) => {
                recv.copy_from_slice(send);
                Ok(())
            }
            (Subject::PeerCopy, _) => peer_copy(group, send, recv),
            (Subject::Vendor, _) => {
                if let Some(v) = vendor {
                    match placement {
                        Placement::OutOfPlace => v.all_reduce(
                            T::DTYPE,
                            cfg.op,
                            bytemuck::cast_slice(send),
                            bytemuck::cast_slice_mut(recv),
                        ),
                        Placement::InPlace => {
                            v.all_reduce_in_place(T::DTYPE, cfg.op, bytemuck::cast_slice_mut(recv))
                        }
                    };
                }
                Ok(())
            }
        }
    };
    // OSU's barrier after every timed call: the vendor's where there is one.
    let barrier = || -> Result<()> {
        match vendor {
            Some(v) => {
                v.barrier();
                Ok(())
            }
            None => group.barrier(),
        }
    };
    for _ in 0..warmup {
        call(recv)?;
    }
    barrier()?;
    let mut total = 0.0;
    for _ in 0..iters {
        let start = Instant::now();
        call(recv)?;
        total += start.elapsed().as_secs_f64();
        barrier()?;
    }
    let mine = total / iters as f64 * 1e6;
    let times = group.all_gather_value(&mine)?;
    let avg = times.iter().sum::<f64>() / p as f64;
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);

    let wrong = if cfg.check && !subject.copies() {
        if placement == Placement::InPlace {
            recv.copy_from_slice(send);
        }
        call(recv)?;
        let expected = reference(group, vendor, case, send)?;
        let local = first_wrong(recv, &expected, cfg.op, p).map_or(0, |(w, _)| w as u64);
        Some(group.all_gather_value(&local)?.iter().sum())
    } else {
        None
    };
    let algbw = if avg > 0.0 {
        bytes as f64 / (avg * 1e-6) / 1e9
    } else {
        0.0
    };
    // nccl-tests' bus factors: 2(p−1)/p, (p−1)/p for the halves, 1 for a reduce.
    let factor = match cfg.collective {
        None if subject.copies() => 1.0,
        None => 2.0 * (p - 1) as f64 / p as f64,
        Some(cost::Collective::Reduce) => 1.0,
        Some(cost::Collective::ReduceScatter | cost::Collective::AllGather) => (p - 1) as f64 / p as f64,
    };
    let busbw = if p > 1 { algbw * factor } else { 0.0 };
    Ok(Timing {
        avg_us: avg,
        min_us: min,
        max_us: max,
        algbw,
        busbw,
        wrong,
    })
}

/// The `peer-copy` subject ([`Subject::PeerCopy`]).
fn peer_copy<T: Element, C: Transport>(group: &Group<C>, send: &[T], recv: &mut [T]) -> Result<()> {
    if group.size() == 1 {
        // Its own neighbour.
        recv.copy_from_slice(send);
        return Ok(());
    }
    let comm = group.transport();
    let seg = whole_segment(comm).ok_or_else(|| Error::InvalidArgument {
        what: "algorithm",
        reason: "`peer-copy` copies through the node's shared memory: it needs every rank on one node".into(),
    })?;
    let mut idle = |waited| comm.idle(waited);
    shm_peer_copy(
        seg,
        &mut idle,
        bytemuck::cast_slice(send),
        bytemuck::cast_slice_mut(recv),
    )
}

/// One size of the rules sweep ([`rules`]).
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Bytes per rank (f32 sum).
    pub bytes: u64,
    /// Every candidate and the median, over the repetitions, of its mean
    /// out-of-place (plus in-place, when swept) call time (µs, averaged
    /// over the ranks).
    pub medians: Vec<(Algorithm, f64)>,
    /// The fastest.
    pub best: Algorithm,
}

/// How much slower than the fastest the model's own choice may measure in
/// the rules sweep and still be kept (3 %).
const TIE: f64 = 1.05;

/// Timed calls per candidate and repetition at `bytes`: about 16 MiB of
/// each rank's data, from 3 to 200 calls; a fifth as many warm-up calls.
fn rules_iters(bytes: u64) -> usize {
    ((16 << 20) / bytes.max(1)).clamp(3, 200) as usize
}

/// What the rules sweep ([`rules`]) measures.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Largest size, bytes per rank (from 8 B, doubling).
    pub max_bytes: u64,
    /// Repetitions, the algorithms' order rotated each time.
    pub reps: usize,
    /// Time the in-place call too and add it to the out-of-place one (as
    /// a training step's all-reduces are in place); `false`: out of place
    /// only, as `bench --no-in-place` times.
    pub in_place: bool,
    /// The candidates (those this group cannot run left out); empty: every
    /// algorithm it can run.
    pub algorithms: Vec<Algorithm>,
    /// Timed calls per size and candidate; `None`: 16 MiB worth, from 3
    /// to 200. Where links pass bursts faster than their rate (a token
    /// bucket), the calls just before a timed one change what it costs;
    /// the default counts drain such a bucket.
    pub iters: Option<usize>,
    /// Untimed calls before them; `None`: a fifth of the timed ones, at
    /// least 1.
    pub warmup: Option<usize>,
}

/// The rules sweep (`ringreduce calibrate --rules`): at every size from
/// 8 B to `sweep.max_bytes` (doubling), every algorithm this group can run is
/// timed with the benchmark's loop (f32 sum, the group's call checks; an
/// out-of-place call and, with `sweep.in_place`, an in-place one, their
/// times added), `sweep.reps` times
/// with the order rotated each time; the fastest median wins the size —
/// unless what `auto` runs without rules is within 5 % of it, which then
/// keeps the size. Runs of sizes with the same winner become
/// one rule for this group's rank count and placement ([`Group::layout`]):
/// up to the last size it won, the last rule unbounded. `on_size` sees
/// each size as it completes (every rank). Collective.
///
/// # Errors
/// [`Error::InvalidArgument`] with fewer than 2 ranks, `reps` of 0,
/// `max_bytes` below 8 B or above 1 GiB, `auto` among the algorithms or
/// none of them runnable here; a failing call.
pub fn rules<C: Transport>(
    group: &Group<C>,
    sweep: &Sweep,
    mut on_size: impl FnMut(&Trial),
) -> Result<(Rules, Vec<Trial>)> {
    let (max_bytes, reps, in_place) = (sweep.max_bytes, sweep.reps, sweep.in_place);
    let p = group.size();
    let bad = |what: &'static str, reason: String| Error::InvalidArgument { what, reason };
    if p < 2 {
        return Err(bad(
            "rank count",
            "the rules sweep needs at least 2 ranks (run it under mpirun)".into(),
        ));
    }
    if reps == 0 {
        return Err(bad("--reps", "at least 1 repetition is needed".into()));
    }
    if sweep.iters == Some(0) {
        return Err(bad("--iters", "at least 1 timed call is needed".into()));
    }
    if !(8..=1 << 30).contains(&max_bytes) {
        return Err(bad(
            "size",
            format!("--max-bytes {max_bytes} must be between 8 and 1G for --rules"),
        ));
    }
    let asked = match sweep.algorithms.is_empty() {
        true => Algorithm::CONCRETE.to_vec(),
        false => sweep.algorithms.clone(),
    };
    if asked.contains(&Algorithm::Auto) {
        return Err(bad(
            "--algo",
            "`auto` is what the rules decide; name concrete algorithms".into(),
        ));
    }
    let mut candidates: Vec<Algorithm> = Vec::new();
    for a in group.runnable(&asked) {
        if !candidates.contains(&a) {
            candidates.push(a);
        }
    }
    if candidates.is_empty() {
        return Err(bad(
            "--algo",
            "none of them runs here (shm needs every rank on one node)".into(),
        ));
    }
    let layout = group.layout();
    let untuned = Tuning {
        rules: Rules::default(),
        ..group.settings().tuning
    };
    let mut trials = Vec::new();
    let mut bytes = 8u64;
    while bytes <= max_bytes {
        let iters = sweep.iters.unwrap_or_else(|| rules_iters(bytes));
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
        for rep in 0..reps {
            for k in 0..candidates.len() {
                let i = (k + rep) % candidates.len();
                let cfg = BenchConfig {
                    subjects: vec![Subject::Ours(candidates[i])],
                    dtype: DType::F32,
                    op: ReduceOp::Sum,
                    iters: Some(iters),
                    warmup: Some(sweep.warmup.unwrap_or((iters / 5).max(1))),
                    min_bytes: bytes,
                    max_bytes: bytes,
                    factor: 2,
                    in_place,
                    check: false,
                    seed: 1,
                    collective: None,
                };
                let rows = run(group, &cfg, None, |_| {})?;
                times[i].extend(
                    rows.iter()
                        .map(|r| r.time.avg_us + r.in_place.map_or(0.0, |t| t.avg_us)),
                );
            }
        }
        let medians: Vec<(Algorithm, f64)> = candidates
            .iter()
            .zip(times)
            .map(|(&a, t)| (a, median(t)))
            .collect();
        let fastest = medians
            .iter()
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .map_or((Algorithm::Ring, 0.0), |m| *m);
        // Within TIE of the fastest, what `auto` runs without rules stays:
        // rules record where measurement overturns the model, not noise.
        let count = (bytes / 4) as usize;
        let model = untuned.resolve_on(p, count, 4, layout, group.settings().checks.mismatch);
        let best = match medians.iter().find(|m| m.0 == model) {
            Some(&(_, t)) if t <= fastest.1 * TIE => model,
            _ => fastest.0,
        };
        let trial = Trial { bytes, medians, best };
        on_size(&trial);
        trials.push(trial);
        bytes *= 2;
    }
    let table = rules_of(p, layout.per_node, &trials)?;
    Ok((table, trials))
}

/// The rules that take each size of `trials` (increasing) to its winner:
/// one rule per run of sizes with the same winner, bounded by the run's
/// last size, the last one unbounded.
pub fn rules_of(ranks: usize, per_node: usize, trials: &[Trial]) -> Result<Rules> {
    let mut out: Vec<Rule> = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        let last = i + 1 == trials.len();
        if !last && trials[i + 1].best == t.best {
            continue;
        }
        out.push(Rule {
            ranks,
            per_node,
            up_to: (!last).then_some(t.bytes),
            algorithm: t.best,
        });
    }
    Rules::new(&out)
}

/// One call of `collective` over the whole vector `send` (p blocks of n):
/// ours or the vendor's. Ours reduces in place into `recv` (the reduce's
/// root reads its input there too); the vendor's reads `send`.
fn time_collective<T: VerifyElement, C: Transport>(
    group: &Group<C>,
    vendor: Option<&dyn Vendor>,
    c: cost::Collective,
    subject: Subject,
    op: ReduceOp,
    send: &[T],
    recv: &mut [T],
) -> Result<()> {
    let n = send.len() / group.size();
    let (bytes, out): (&[u8], &mut [u8]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
    let nb = n * T::DTYPE.size();
    match (subject, vendor) {
        (Subject::Vendor, Some(v)) => {
            match c {
                cost::Collective::ReduceScatter => {
                    v.reduce_scatter_block(T::DTYPE, op, bytes, &mut out[..nb])
                }
                cost::Collective::Reduce => v.reduce(T::DTYPE, op, bytes, out, 0),
                cost::Collective::AllGather => v.all_gather(&bytes[..nb], out),
            };
            Ok(())
        }
        (Subject::Vendor, None) => Ok(()),
        _ => match c {
            cost::Collective::ReduceScatter => group.reduce_scatter(send, &mut recv[..n], op),
            cost::Collective::Reduce => group.reduce(recv, op, 0),
            cost::Collective::AllGather => group.all_gather(&send[..n], recv),
        },
    }
}

/// Column header of the CSV format (what `ringreduce plot` and
/// `ringreduce summary` read). The `ip_` columns are the in-place call's,
/// empty when it was not timed.
pub const CSV_HEADER: &str =
    "bytes,count,type,algo,avg_us,min_us,max_us,algbw_gbs,busbw_gbs,wrong,predicted_us,\
ip_avg_us,ip_min_us,ip_max_us,ip_algbw_gbs,ip_busbw_gbs,ip_wrong,ranks,op,host,date,ip_predicted_us";

/// The last column, added after the others: files written before it (21
/// columns) are still read, without the in-place prediction.
const LAST_COLUMN: &str = ",ip_predicted_us";

/// The six CSV columns of a timing (empty ones for none).
fn timing_csv(t: Option<&Timing>) -> String {
    match t {
        Some(t) => format!(
            "{:.3},{:.3},{:.3},{:.4},{:.4},{}",
            t.avg_us,
            t.min_us,
            t.max_us,
            t.algbw,
            t.busbw,
            t.wrong.map(|w| w.to_string()).unwrap_or_default()
        ),
        None => ",,,,,".into(),
    }
}

/// One row of the CSV format.
pub fn csv_row(r: &Row) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}",
        r.bytes,
        r.count,
        r.dtype,
        r.algo,
        timing_csv(Some(&r.time)),
        r.predicted_us.map(|p| format!("{p:.3}")).unwrap_or_default(),
        timing_csv(r.in_place.as_ref()),
        r.ranks,
        r.op,
        r.host,
        r.date,
        r.in_place_predicted_us
            .map(|p| format!("{p:.3}"))
            .unwrap_or_default(),
    )
}

/// Reads a CSV that [`csv_row`] wrote (header first) back into rows.
///
/// # Errors
/// Another header, or a row whose fields do not parse (naming its line).
pub fn parse_csv(text: &str) -> Result<Vec<Row>> {
    let bad = |reason: String| Error::InvalidArgument {
        what: "bench CSV",
        reason,
    };
    let mut lines = text.lines();
    let fields = match lines.next().map(str::trim) {
        Some(CSV_HEADER) => 22,
        Some(h) if CSV_HEADER.strip_suffix(LAST_COLUMN) == Some(h) => 21,
        _ => return Err(bad("not a `ringreduce bench --format csv` file".into())),
    };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 2;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != fields {
            return Err(bad(format!(
                "line {n}: {} fields, the header has {fields}",
                f.len()
            )));
        }
        fn num<T: std::str::FromStr>(f: &[&str], i: usize, n: usize) -> Result<T> {
            f[i].parse().map_err(|_| Error::InvalidArgument {
                what: "bench CSV",
                reason: format!("line {n}: field {} `{}` is not a number", i + 1, f[i]),
            })
        }
        fn opt<T: std::str::FromStr>(f: &[&str], i: usize, n: usize) -> Result<Option<T>> {
            if f[i].is_empty() {
                Ok(None)
            } else {
                num(f, i, n).map(Some)
            }
        }
        // The six columns of a timing, from `at`.
        let timing = |at: usize| -> Result<Timing> {
            Ok(Timing {
                avg_us: num(&f, at, n)?,
                min_us: num(&f, at + 1, n)?,
                max_us: num(&f, at + 2, n)?,
                algbw: num(&f, at + 3, n)?,
                busbw: num(&f, at + 4, n)?,
                wrong: opt(&f, at + 5, n)?,
            })
        };
        let in_place = match f[11] {
            "" => None,
            _ => Some(timing(11)?),
        };
        rows.push(Row {
            bytes: num(&f, 0, n)?,
            count: num(&f, 1, n)?,
            dtype: f[2].to_string(),
            algo: f[3].to_string(),
            time: timing(4)?,
            predicted_us: opt(&f, 10, n)?,
            in_place,
            in_place_predicted_us: if fields > 21 { opt(&f, 21, n)? } else { None },
            ranks: num(&f, 17, n)?,
            op: f[18].to_string(),
            host: f[19].to_string(),
            date: f[20].to_string(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_size_factors() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let cfg = |min, max, factor| BenchConfig {
            subjects: vec![],
            dtype: DType::F32,
            op: ReduceOp::Sum,
            min_bytes: min,
            max_bytes: max,
            iters: None,
            warmup: None,
            check: false,
            seed: 1,
            factor,
            in_place: false,
            collective: None,
        };
        assert_eq!(cfg(8, 1024, 4).sizes().unwrap(), [8, 32, 128, 512]);
        assert_eq!(cfg(4, 16, 2).sizes().unwrap(), [4, 8, 16]);
        assert!(cfg(4, 16, 1).sizes().is_err());
    }

    #[test]
    fn memcpy_is_timed_beside_the_all_reduce_and_never_checked_as_one() {
        assert_eq!(Subject::parse("MEMCPY").unwrap(), Subject::Memcpy);
        assert_eq!(Subject::Memcpy.name(), "memcpy");
        assert_eq!(Subject::parse("Peer-Copy").unwrap(), Subject::PeerCopy);
        assert_eq!(Subject::PeerCopy.name(), "peer-copy");
        assert!(Subject::parse("memcopy")
            .unwrap_err()
            .to_string()
            .contains("memcpy"));
        let rows = Group::local(2, |g| {
            let cfg = BenchConfig {
                subjects: vec![Subject::Memcpy, Subject::PeerCopy, Subject::Ours(Algorithm::Ring)],
                dtype: DType::F32,
                op: ReduceOp::Sum,
                min_bytes: 4,
                max_bytes: 64,
                iters: Some(3),
                warmup: Some(1),
                check: true,
                collective: None,
                seed: 1,
                factor: 4,
                in_place: true,
            };
            run(&g, &cfg, None, |_| {}).unwrap()
        });
        let (copies, ring): (Vec<&Row>, Vec<&Row>) = rows[0]
            .iter()
            .partition(|r| r.algo == "memcpy" || r.algo == "peer-copy");
        assert_eq!((copies.len(), ring.len()), (6, 3));
        // A copy is no all-reduce: not checked as one, no prediction, and
        // its bus bandwidth is the bytes it copies.
        assert!(copies
            .iter()
            .all(|r| r.time.wrong.is_none() && r.predicted_us.is_none()));
        assert!(copies.iter().all(|r| r.time.busbw == r.time.algbw));
        assert!(ring.iter().all(|r| r.time.wrong == Some(0)));
    }

    #[test]
    fn the_rules_sweep_times_as_many_calls_as_the_benchmark_it_is_told_of() {
        let sweep = |iters, warmup| Sweep {
            max_bytes: 16,
            reps: 1,
            in_place: false,
            algorithms: vec![Algorithm::Ring],
            iters,
            warmup,
        };
        let bench = BenchConfig {
            subjects: vec![Subject::Ours(Algorithm::Ring)],
            dtype: DType::F32,
            op: ReduceOp::Sum,
            min_bytes: 8,
            max_bytes: 8,
            iters: Some(5),
            warmup: Some(2),
            check: false,
            collective: None,
            seed: 1,
            factor: 2,
            in_place: false,
        };
        let calls = Group::local(2, |g| {
            let mut counts = Vec::new();
            for s in [sweep(Some(5), Some(2)), sweep(None, None)] {
                let before = g.calls();
                rules(&g, &s, |_| {}).unwrap();
                counts.push(g.calls() - before);
            }
            // The sweep runs the benchmark at one size at a time.
            let before = g.calls();
            for bytes in [8, 16] {
                let one = BenchConfig {
                    min_bytes: bytes,
                    max_bytes: bytes,
                    ..bench.clone()
                };
                run(&g, &one, None, |_| {}).unwrap();
            }
            counts.push(g.calls() - before);
            let refused = rules(&g, &sweep(Some(0), None), |_| {}).unwrap_err();
            assert!(refused.to_string().contains("--iters"), "{refused}");
            counts
        });
        let [told, default, benchmark] = calls[0][..] else {
            panic!("{calls:?}")
        };
        assert_eq!(told, benchmark, "the sweep's calls, the benchmark's");
        // Without counts: 16 MiB worth, at most 200 per size (more than 5).
        assert!(default > 10 * benchmark, "{default} against {benchmark}");
    }

    #[test]
    fn peer_copy_brings_each_rank_its_neighbours_bytes_and_keeps_the_segment_in_step() {
        use crate::transport::{Local, Shape};
        let piece = Shape::DEFAULT.piece;
        for p in 2..=4 {
            let out = Group::local(p, |g| {
                let r = g.rank();
                let mut seen = Vec::new();
                // One piece and less, exactly one, two and a half: the
                // buffers alternate by barrier count across calls.
                for (round, bytes) in [1, 4096, piece, piece * 5 / 2, 3].into_iter().enumerate() {
                    let mine = |j: usize| -> Vec<u8> {
                        (0..bytes).map(|i| (i * 7 + j * 31 + round * 13) as u8).collect()
                    };
                    let mut got = vec![0u8; bytes];
                    peer_copy(&g, &mine(r), &mut got).unwrap();
                    seen.push(got == mine((r + 1) % p));
                }
                // A rank with another length: every rank's error, nothing copied.
                let n = if r == 1 { 8 } else { 9 };
                let mut got = vec![0u8; n];
                let e = peer_copy(&g, &vec![1u8; n], &mut got).unwrap_err().to_string();
                seen.push(e.contains("different lengths") && got.iter().all(|&x| x == 0));
                // The segment's next user, the shm all-reduce, still agrees.
                let mut v = vec![r as f32 + 1.0; piece / 4 * 3 + 5];
                g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Shm)
                    .unwrap();
                seen.push(v.iter().all(|&x| x == (p * (p + 1) / 2) as f32));
                seen
            });
            for (r, seen) in out.iter().enumerate() {
                assert!(seen.iter().all(|&ok| ok), "p = {p}, rank {r}: {seen:?}");
            }
        }
        // Ranks on two nodes share no segment: a clear error, no copy.
        let errs = Local::run_nodes(2, 1, |ep| {
            let g = Group::new(ep);
            peer_copy(&g, &[1u8; 8], &mut [0u8; 8]).unwrap_err().to_string()
        });
        assert!(
            errs.iter()
                .all(|e| e.contains("`peer-copy`") && e.contains("one node")),
            "{errs:?}"
        );
        // One rank is its own neighbour.
        let alone = Group::local(1, |g| {
            let mut got = [0u8; 3];
            peer_copy(&g, &[4u8, 5, 6], &mut got).map(|()| got)
        });
        assert_eq!(alone[0].as_ref().unwrap(), &[4, 5, 6]);
    }

    #[test]
    fn bench_runs_on_threads_with_checked_results() {
        let rows = Group::local(3, |g| {
            let cfg = BenchConfig {
                subjects: vec![
                    Subject::Ours(Algorithm::Ring),
                    Subject::Unchecked(Algorithm::Butterfly),
                    Subject::Ours(Algorithm::Auto),
                ],
                dtype: DType::F32,
                op: ReduceOp::Sum,
                min_bytes: 4,
                max_bytes: 4096,
                iters: Some(3),
                warmup: Some(1),
                check: true,
                collective: None,
                seed: 1,
                factor: 2,
                in_place: true,
            };
            run(&g, &cfg, None, |_| {}).unwrap()
        });
        let rows = &rows[0];
        assert_eq!(rows.len(), 11 * 3);
        assert!(rows
            .iter()
            .all(|r| r.time.wrong == Some(0) && r.time.avg_us > 0.0 && r.time.min_us <= r.time.max_us));
        // The in-place calls were timed and checked too.
        assert!(rows
            .iter()
            .all(|r| r.in_place.is_some_and(|t| t.wrong == Some(0) && t.avg_us > 0.0)));
        assert!(rows
            .iter()
            .all(|r| r.ranks == 3 && r.op == "sum" && r.date.len() == 10));
        // The CSV reads back as written.
        let csv: String = std::iter::once(CSV_HEADER.to_string())
            .chain(rows.iter().map(csv_row))
            .collect::<Vec<_>>()
            .join("\n");
        let back = parse_csv(&csv).unwrap();
        assert_eq!(back.len(), rows.len());
        assert_eq!(csv_row(&back[5]), csv_row(&rows[5]));
        assert!(parse_csv("bytes,time\n").is_err());
        assert!(parse_csv(&csv.replacen(",sum,", ",sum,x,", 1))
            .unwrap_err()
            .to_string()
            .contains("line 2: 23 fields"));
        // The in-place call has its own prediction: the model without the
        // copy of the input that the out-of-place prediction adds.
        for r in rows {
            let (out, inp) = (r.predicted_us.unwrap(), r.in_place_predicted_us.unwrap());
            assert!(
                inp > 0.0 && inp <= out,
                "{}: {inp} in place, {out} out of place",
                r.algo
            );
        }
        // Files written before that column still read, without it.
        let old: String = std::iter::once(CSV_HEADER.strip_suffix(LAST_COLUMN).unwrap().to_string())
            .chain(rows.iter().map(|r| {
                let row = csv_row(r);
                row[..row.rfind(',').unwrap()].to_string()
            }))
            .collect::<Vec<_>>()
            .join("\n");
        let back = parse_csv(&old).unwrap();
        assert_eq!(back.len(), rows.len());
        assert!(back
            .iter()
            .all(|r| r.in_place_predicted_us.is_none() && r.in_place.is_some()));
        assert!(parse_csv(&old.replacen(",sum,", ",sum,x,", 1))
            .unwrap_err()
            .to_string()
            .contains("line 2: 22 fields, the header has 21"));
        assert!(rows.iter().any(|r| r.algo == "butterfly-nocheck"));
        assert!(rows.iter().any(|r| r.algo.starts_with("auto:")));
        // Without a vendor the `mpi` subject is refused, on every rank.
        let refused = Group::local(2, |g| {
            let cfg = BenchConfig {
                subjects: vec![Subject::Vendor],
                dtype: DType::F32,
                op: ReduceOp::Sum,
                min_bytes: 4,
                max_bytes: 4,
                iters: None,
                warmup: None,
                check: false,
                collective: None,
                seed: 1,
                factor: 2,
                in_place: false,
            };
            run(&g, &cfg, None, |_| {}).unwrap_err().to_string()
        });
        assert!(refused.iter().all(|e| e.contains("no vendor")), "{refused:?}");
    }

    #[test]
    fn sizes_with_one_winner_become_one_rule_up_to_the_last_of_them() {
        let trial = |bytes, best| Trial {
            bytes,
            medians: Vec::new(),
            best,
        };
        use Algorithm::*;
        let trials = [
            trial(8, Butterfly),
            trial(16, Butterfly),
            trial(32, Rabenseifner),
            trial(64, Butterfly),
            trial(128, Ring),
            trial(256, Ring),
        ];
        let rules = rules_of(4, 2, &trials).unwrap();
        let got: Vec<(Option<u64>, Algorithm)> =
            rules.as_slice().iter().map(|r| (r.up_to, r.algorithm)).collect();
        assert_eq!(
            got,
            [
                (Some(16), Butterfly),
                (Some(32), Rabenseifner),
                (Some(64), Butterfly),
                (None, Ring)
            ]
        );
        assert!(rules.as_slice().iter().all(|r| (r.ranks, r.per_node) == (4, 2)));
        assert!(rules_of(4, 2, &[]).unwrap().is_empty());
    }
}
