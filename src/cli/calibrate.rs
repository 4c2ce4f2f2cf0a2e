//! `ringreduce calibrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::bench::{self, Trial};
use ringreduce::calibrate::{self, Outcome};
use ringreduce::cost::{Calibration, Round, Rule, Rules};
use ringreduce::vendor::Vendor;

use super::{fail, list, on_world, size_arg, writable, List};
use ringreduce::Algorithm;

/// Settings of `ringreduce calibrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the calibration JSON.
    #[arg(long, default_value = "calibration.json")]
    out: PathBuf,
    /// Largest message of the sweep.
    #[arg(long, value_parser = size_arg, default_value = "16M")]
    max_bytes: u64,
    /// Also time every algorithm this job can run at every size from 8 B
    /// to --max-bytes on this placement, and write the fastest per size as
    /// rules that `auto` takes before the model (the file's `rules`; the
    /// rules of other rank counts and placements already in --out are kept).
    #[arg(long)]
    rules: bool,
    /// Repetitions of the rules sweep, the algorithms' order rotated each time (medians).
    #[arg(long, default_value_t = 3, requires = "rules")]
    reps: usize,
    /// Time the out-of-place call only in the rules sweep (as `bench
    /// --no-in-place` does); by default the in-place call's time is added,
    /// as a training step's all-reduces are in place.
    #[arg(long, requires = "rules")]
    no_in_place: bool,
    /// The rules sweep's candidates, comma-separated (default: every
    /// algorithm this job can run); fewer make a shorter sweep.
    #[arg(long, requires = "rules", value_parser = list::<Algorithm>)]
    algo: Option<List<Algorithm>>,
    /// Timed calls per size and algorithm in the rules sweep (default: 16
    /// MiB worth, 3 to 200); `bench.sh --tune` passes the benchmark's own.
    #[arg(long, requires = "rules")]
    iters: Option<usize>,
    /// Untimed calls before them (default: a fifth of --iters, at least 1).
    #[arg(long, requires = "rules")]
    warmup: Option<usize>,
}

/// Measures, prints the fit and writes the file.
pub fn run(args: Args) -> ExitCode {
    if let Err(e) = writable(&args.out) {
        return fail(format!("--out {}: {e}", args.out.display()));
    }
    // Rules of other placements that --out already holds are kept.
    let kept: Vec<Rule> = match (args.rules, Calibration::load(&args.out)) {
        (true, Ok(old)) => old.rules.as_slice().to_vec(),
        _ => Vec::new(),
    };
    on_world(None, |group| {
        let mut outcome = match calibrate::run(group, args.max_bytes, Some(group.transport() as &dyn Vendor))
        {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        let first = group.rank() == 0;
        if first {
            print(&outcome);
        }
        if args.rules {
            if first {
                println!(
                    "# rules sweep: every algorithm at every size, f32 sum, median of {} run(s), us",
                    args.reps
                );
            }
            let sweep = bench::Sweep {
                max_bytes: args.max_bytes,
                reps: args.reps,
                in_place: !args.no_in_place,
                algorithms: args.algo.as_ref().map_or(Vec::new(), |l| l.0.clone()),
                iters: args.iters,
                warmup: args.warmup,
            };
            let swept = bench::rules(group, &sweep, |t| {
                if first {
                    print_trial(t);
                }
            });
            let table = match swept {
                Ok((table, _)) => table,
                Err(e) => return fail(e),
            };
            let layout = group.layout();
            let mut all: Vec<Rule> = kept
                .iter()
                .filter(|r| (r.ranks, r.per_node) != (group.size(), layout.per_node))
                .copied()
                .collect();
            all.extend_from_slice(table.as_slice());
            outcome.calibration.rules = match Rules::new(&all) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if first {
                for r in table.as_slice() {
                    let upto = r.up_to.map_or("and up".to_string(), |u| format!("up to {u} B"));
                    println!(
                        "rule: {} ranks, {} per node, {upto}: {}",
                        r.ranks, r.per_node, r.algorithm
                    );
                }
            }
        }
        if !first {
            return ExitCode::SUCCESS;
        }
        if let Err(e) = outcome.calibration.save(&args.out) {
            return fail(e);
        }
        println!("wrote {}", args.out.display());
        ExitCode::SUCCESS
    })
}

/// One size of the rules sweep: every candidate's median, the winner marked.
fn print_trial(t: &Trial) {
    let cells: Vec<String> = t
        .medians
        .iter()
        .map(|(a, us)| {
            let mark = if *a == t.best { "*" } else { "" };
            format!("{a}={us:.1}{mark}")
        })
        .collect();
    println!("{:>10} B  {}", t.bytes, cells.join("  "));
}

fn print(outcome: &Outcome) {
    let c = &outcome.calibration;
    println!(
        "# ringreduce calibrate: {} on {} ({}), {}",
        super::ranks(c.ranks),
        c.host,
        c.cpu,
        c.mpi_version
    );
    let q = &c.params;
    println!(
        "{:>10} {:>14} {:>10} {:>14} {:>10}{}",
        "bytes",
        "one-way(us)",
        "residual",
        "exchange(us)",
        "residual",
        if q.shift.is_some() { "  ring-shift(us)" } else { "" }
    );
    for p in &outcome.points {
        let shift = match (p.shift, q.shift) {
            (Some(t), Some(_)) => format!(
                " {:>15.3} ({:+.1}%)",
                t * 1e6,
                (t / q.round_time(p.bytes, 0, Round::Shift) - 1.0) * 100.0
            ),
            _ => String::new(),
        };
        println!(
            "{:>10} {:>14.3} {:>9.1}% {:>14.3} {:>9.1}%{shift}",
            p.bytes,
            p.pingpong * 1e6,
            p.residual_oneway() * 100.0,
            p.exchange * 1e6,
            p.residual() * 100.0
        );
    }
    let oneway = q.oneway.unwrap_or(q.lines);
    let shift = q.shift.map(|s| ("ring shift", s));
    let kinds = [("exchange", q.lines), ("one-way", oneway)];
    for (kind, lines) in kinds.iter().chain(shift.as_ref()).map(|(k, l)| (*k, l)) {
        let mut lower = 0;
        for l in lines {
            if l.up_to < lower {
                continue;
            }
            let upper = if l.up_to == u64::MAX {
                "up".to_string()
            } else {
                format!("{} B", l.up_to)
            };
            println!(
                "fit ({kind}), messages {lower} B to {upper}: alpha = {:.3} us, beta = {:.4} ns/B ({:.2} GB/s)",
                l.alpha * 1e6,
                l.beta * 1e9,
                1e-9 / l.beta
            );
            if l.up_to == u64::MAX {
                break;
            }
            lower = l.up_to + 1;
        }
    }
    println!(
        "gamma (f32 sum kernel) = {:.4} ns/B ({:.2} GB/s)",
        q.gamma * 1e9,
        1e-9 / q.gamma
    );
    println!(
        "copy (memcpy) = {:.4} ns/B ({:.2} GB/s)",
        q.copy * 1e9,
        1e-9 / q.copy
    );
    if let Some(b) = q.barrier {
        println!("shared-memory barrier = {:.3} us", b * 1e6);
    }
    for l in q.memory.iter().flatten() {
        println!(
            "memory traffic, working set {:>9} B: {:.4} ns/B ({:.2} GB/s), every rank at once",
            l.footprint,
            l.per_byte * 1e9,
            1e-9 / l.per_byte
        );
    }
}
