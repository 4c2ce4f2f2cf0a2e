//! `ringreduce calibrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::calibrate::{self, Outcome};
use ringreduce::cost::Round;
use ringreduce::vendor::Vendor;

use super::{fail, on_world, size_arg, writable};

/// Settings of `ringreduce calibrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the calibration JSON.
    #[arg(long, default_value = "calibration.json")]
    out: PathBuf,
    /// Largest message of the sweep.
    #[arg(long, value_parser = size_arg, default_value = "16M")]
    max_bytes: u64,
}

/// Measures, prints the fit and writes the file.
pub fn run(args: Args) -> ExitCode {
    if let Err(e) = writable(&args.out) {
        return fail(format!("--out {}: {e}", args.out.display()));
    }
    on_world(None, |group| {
        let outcome = match calibrate::run(group, args.max_bytes, Some(group.transport() as &dyn Vendor)) {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        if group.rank() != 0 {
            return ExitCode::SUCCESS;
        }
        print(&outcome);
        if let Err(e) = outcome.calibration.save(&args.out) {
            return fail(e);
        }
        println!("wrote {}", args.out.display());
        ExitCode::SUCCESS
    })
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
