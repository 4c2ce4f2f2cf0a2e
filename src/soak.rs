//! `ringreduce soak`: many all-reduces of random shapes in a row, to find
//! what a short test cannot — leaks, rare shapes, state carried between calls.
//!
//! Every rank draws the same sequence of calls from the seed: algorithm
//! (the four schedules and `auto`), element type, op, count (log-uniform
//! bytes up to `max_bytes`, with a share of the awkward counts 0, 1, p−1,
//! p, p+1) and in-place or out-of-place. With `check`, every result is
//! compared with the reference and with rank 0's bytes as `verify` does.
//! Resident memory (`VmRSS`) is sampled on every rank after a warm-up and
//! at the end.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::algorithms::Algorithm;
use crate::element::{DType, ReduceOp};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::transport::Transport;
use crate::vendor::Vendor;
use crate::verify::{check_case, input, Case, Failure, VerifyElement};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Number of all-reduces.
    pub calls: u64,
    /// Largest message in bytes.
    pub max_bytes: u64,
    /// Seed of the call sequence and of the data.
    pub seed: u64,
    /// Check every result (as `verify` does).
    pub check: bool,
    /// Calls before the first memory sample (buffers and pools warm up).
    pub warmup: u64,
}

/// Progress and outcome, the same on every rank.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoakReport {
    /// Calls made so far.
    pub calls: u64,
    /// Calls whose result was wrong or not identical on every rank.
    pub failures: u64,
    /// Largest resident set over the ranks after the warm-up, bytes.
    pub rss_start: u64,
    /// Largest resident set over the ranks now, bytes.
    pub rss_now: u64,
    /// Largest growth of one rank's resident set since the warm-up, bytes.
    pub rss_growth: i64,
    /// Seconds since the start.
    pub seconds: f64,
}

/// One drawn call.
struct Draw {
    case: Case,
    in_place: bool,
}

/// Every algorithm and `Auto`: what a soak draws from (those the group runs).
fn every_algorithm() -> Vec<Algorithm> {
    Algorithm::CONCRETE.into_iter().chain([Algorithm::Auto]).collect()
}

fn draw(rng: &mut ChaCha8Rng, algorithms: &[Algorithm], p: usize, max_bytes: u64, seed: u64) -> Draw {
    let algorithm = algorithms[rng.gen_range(0..algorithms.len())];
    let dtype = DType::ALL[rng.gen_range(0..DType::ALL.len())];
    let op = ReduceOp::ALL[rng.gen_range(0..ReduceOp::ALL.len())];
    let count = if rng.gen_bool(0.1) {
        [0, 1, p.saturating_sub(1), p, p + 1][rng.gen_range(0..5)]
    } else {
        let bits = (max_bytes.max(1) as f64).log2();
        let bytes = 2f64.powf(rng.gen_range(0.0..=bits)) as u64;
        (bytes / dtype.size() as u64) as usize
    };
    Draw {
        case: Case {
            algorithm,
            dtype,
            op,
            count,
            seed: seed ^ rng.gen::<u64>(),
        },
        in_place: rng.gen_bool(0.5),
    }
}

/// This process's resident set in bytes (0 where `/proc` is missing).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs the soak. Collective over `group`; `vendor` serves as the
/// reference where it can (see [`crate::verify`]). `on_progress` is called
/// on every rank about every `calls / 10` calls and at the end,
/// `on_failure` on rank 0 for each failing call.
///
/// # Errors
/// Bad settings, work that does not fit in memory, or an all-reduce that
/// returned an error (on every rank).
pub fn run<C: Transport>(
    group: &Group<C>,
    cfg: &SoakConfig,
    vendor: Option<&dyn Vendor>,
    mut on_progress: impl FnMut(&SoakReport),
    mut on_failure: impl FnMut(u64, &Failure),
) -> Result<SoakReport> {
    if cfg.calls == 0 || cfg.max_bytes == 0 {
        return Err(Error::InvalidArgument {
            what: "soak",
            reason: "--calls and --max-bytes must be at least 1".into(),
        });
    }
    let p = group.size();
    group.agree(crate::units::check_memory(
        cfg.max_bytes,
        5 + p as u64,
        "--max-bytes",
    ))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let start = Instant::now();
    let mut report = SoakReport::default();
    let mut mine_start = resident_bytes();
    let every = (cfg.calls / 10).max(1);
    let algorithms = group.runnable(&every_algorithm());
    for call in 1..=cfg.calls {
        let d = draw(&mut rng, &algorithms, p, cfg.max_bytes, cfg.seed);
        let failure = if cfg.check {
            crate::with_dtype!(d.case.dtype, T => check_case::<T, C>(group, vendor, &d.case, d.in_place))?
        } else {
            crate::with_dtype!(d.case.dtype, T => unchecked::<T, C>(group, &d))?;
            None
        };
        if let Some(f) = failure {
            report.failures += 1;
            if group.rank() == 0 {
                on_failure(call, &f);
            }
        }
        report.calls = call;
        if call == cfg.warmup.min(cfg.calls) {
            mine_start = resident_bytes();
        }
        if call % every == 0 || call == cfg.calls {
            let now = resident_bytes();
            let growth = now as i64 - mine_start as i64;
            let all = group.all_gather_value(&(mine_start, now, growth))?;
            report.rss_start = all.iter().map(|a| a.0).max().unwrap_or(0);
            report.rss_now = all.iter().map(|a| a.1).max().unwrap_or(0);
            report.rss_growth = all.iter().map(|a| a.2).max().unwrap_or(0);
            report.seconds = start.elapsed().as_secs_f64();
            on_progress(&report);
        }
    }
    Ok(report)
}

/// A call without checking: only errors count (and reach every rank).
fn unchecked<T: VerifyElement, C: Transport>(group: &Group<C>, d: &Draw) -> Result<()> {
    let mine = input::<T>(&d.case, group.rank());
    let mut out = mine.clone();
    let result = if d.in_place {
        group.all_reduce_in_place(&mut out, d.case.op, d.case.algorithm)
    } else {
        group.all_reduce(&mine, &mut out, d.case.op, d.case.algorithm)
    };
    group.agree(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_cover_every_choice() {
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        let (mut algos, mut dtypes, mut zero, mut out_of_place) = (vec![], vec![], 0, 0);
        for _ in 0..2000 {
            let (x, y) = (
                draw(&mut a, &every_algorithm(), 4, 1 << 20, 1),
                draw(&mut b, &every_algorithm(), 4, 1 << 20, 1),
            );
            assert_eq!(
                (x.case.count, x.case.seed, x.in_place),
                (y.case.count, y.case.seed, y.in_place)
            );
            assert!(x.case.count * x.case.dtype.size() <= 1 << 20);
            algos.push(x.case.algorithm);
            dtypes.push(x.case.dtype);
            zero += usize::from(x.case.count == 0);
            out_of_place += usize::from(!x.in_place);
        }
        assert!(Algorithm::CONCRETE.iter().all(|a| algos.contains(a)));
        assert!(algos.contains(&Algorithm::Auto));
        assert!(DType::ALL.iter().all(|d| dtypes.contains(d)));
        assert!(zero > 0 && out_of_place > 500);
    }

    #[test]
    fn a_checked_soak_passes_on_threads() {
        let reports = Group::local(3, |g| {
            let cfg = SoakConfig {
                calls: 60,
                max_bytes: 4096,
                seed: 5,
                check: true,
                warmup: 10,
            };
            run(&g, &cfg, None, |_| {}, |_, _| {}).unwrap()
        });
        assert!(
            reports.iter().all(|r| r.calls == 60 && r.failures == 0),
            "{reports:?}"
        );
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_bytes() > 0);
    }
}
