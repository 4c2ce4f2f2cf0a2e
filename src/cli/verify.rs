//! `ringreduce verify`.

use std::process::ExitCode;

use ringreduce::verify::{self, VerifyConfig};
use ringreduce::{Algorithm, DType, ReduceOp};

use super::{exit_failures, fail, list, on_world, List};

/// Settings of `ringreduce verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Largest element count tried.
    #[arg(long, default_value_t = 1 << 18)]
    max_count: usize,
    /// Algorithms, comma-separated, or `all`.
    #[arg(long, default_value = "all", value_parser = list::<Algorithm>)]
    algo: List<Algorithm>,
    /// Element types, comma-separated, or `all`.
    #[arg(long, default_value = "all", value_parser = list::<DType>)]
    dtype: List<DType>,
    /// Reduce ops, comma-separated, or `all`.
    #[arg(long, default_value = "all", value_parser = list::<ReduceOp>)]
    op: List<ReduceOp>,
}

/// Runs the check matrix against the vendor and prints the tally.
pub fn run(args: Args) -> ExitCode {
    let cfg = VerifyConfig {
        seed: args.seed,
        max_count: args.max_count,
        algorithms: args.algo.0,
        dtypes: args.dtype.0,
        ops: args.op.0,
    };
    on_world(None, |group| {
        let p = group.size();
        let root = group.rank() == 0;
        let runnable = group.runnable(&cfg.algorithms);
        if root {
            let counts = verify::counts(p, cfg.max_count);
            let algorithms = if runnable.is_empty() {
                cfg.algorithms.len()
            } else {
                runnable.len()
            };
            let cases = algorithms * cfg.dtypes.len() * cfg.ops.len() * counts.len();
            println!(
                "# ringreduce verify: {p} rank{}, {cases} cases, counts {counts:?}, seed {}",
                if p == 1 { "" } else { "s" },
                cfg.seed
            );
        }
        if root {
            println!("# nodes: {}", nodes(group.transport()));
        }
        if root && !runnable.is_empty() && runnable.len() < cfg.algorithms.len() {
            println!("# note: shm left out: the ranks do not share a node");
        }
        let vendor = Some(group.transport() as &dyn ringreduce::vendor::Vendor);
        // What the MPI library gets wrong here is checked against the serial
        // reference instead; say so.
        for flaw in vendor.map(|v| v.flaws()).unwrap_or_default() {
            if root {
                println!("# note: {flaw}");
            }
        }
        let report = match verify::run(group, &cfg, vendor, |f| println!("{f}")) {
            Ok(report) => report,
            Err(e) => return fail(e),
        };
        if root {
            println!("{} passed, {} failed", report.passed, report.failed);
        }
        exit_failures(report.failed as u64)
    })
}

/// How the ranks sit on nodes, as rank 0 sees it: what `shm` and
/// `hierarchical` can use.
fn nodes(t: &impl ringreduce::Transport) -> String {
    match t.segment() {
        Some(seg) if seg.size() == t.size() => format!("1 node × {} ranks, sharing memory", seg.size()),
        Some(seg) if !seg.rail().is_empty() => format!(
            "{} nodes × {} ranks, sharing memory inside each node (hierarchical's pieces: {})",
            seg.rail().len(),
            seg.size(),
            ringreduce::units::human_size(seg.piece() as u64)
        ),
        Some(seg) => format!("nodes of different sizes (rank 0's holds {} ranks)", seg.size()),
        None if t.size() == 1 => "1 node × 1 rank".to_string(),
        None => "rank 0 shares its node with no other rank (messages only)".to_string(),
    }
}
