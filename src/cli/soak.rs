//! `ringreduce soak`.

use std::process::ExitCode;

use ringreduce::soak::{self, SoakConfig, SoakReport};
use ringreduce::units::format_size;

use super::{exit_failures, fail, on_world, size_arg};

/// Settings of `ringreduce soak`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of all-reduces.
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Largest message per rank: bytes, or with a unit (4K, 16M).
    #[arg(long, alias = "max-size", value_parser = size_arg, default_value = "1M")]
    max_bytes: u64,
    /// Seed of the call sequence and data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Check every result against MPI_Allreduce / the serial reference.
    #[arg(long)]
    check: bool,
    /// Calls before the first memory sample.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn growth(r: &SoakReport) -> f64 {
    r.rss_growth as f64 / (1 << 20) as f64
}

/// Runs the soak and prints progress, failures and the memory figures.
pub fn run(args: Args) -> ExitCode {
    let cfg = SoakConfig {
        calls: args.calls,
        max_bytes: args.max_bytes,
        seed: args.seed,
        check: args.check,
        warmup: args.warmup,
    };
    on_world(None, |group| {
        let root = group.rank() == 0;
        if root {
            println!(
                "# ringreduce soak: {}, {} calls up to {} per rank, seed {}, check {}",
                super::ranks(group.size()),
                cfg.calls,
                format_size(cfg.max_bytes),
                cfg.seed,
                if cfg.check { "on" } else { "off" }
            );
        }
        let progress = |r: &SoakReport| {
            if root {
                println!(
                "{:>8} calls  {:>4} failures  rss {:.1} MiB (after warm-up {:.1} MiB, growth {:+.2} MiB)  {:.1} s",
                r.calls,
                r.failures,
                mib(r.rss_now),
                mib(r.rss_start),
                growth(r),
                r.seconds
            );
            }
        };
        let vendor = Some(group.transport() as &dyn ringreduce::vendor::Vendor);
        let report = match soak::run(group, &cfg, vendor, progress, |call, f| {
            println!("call {call}: {f}")
        }) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if root {
            println!(
            "soak: {} calls, {} failures; resident memory {:.1} MiB after warm-up, {:.1} MiB at the end (largest rank growth {:+.2} MiB)",
            report.calls,
            report.failures,
            mib(report.rss_start),
            mib(report.rss_now),
            growth(&report)
        );
        }
        exit_failures(report.failures)
    })
}
