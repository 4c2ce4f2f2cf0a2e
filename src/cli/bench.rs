//! `ringreduce bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::bench::{self, csv_row, BenchConfig, Subject, CSV_HEADER};
use ringreduce::cost::Calibration;
use ringreduce::vendor::Vendor;
use ringreduce::{calibrate, DType, Group, Mpi, ReduceOp, Settings};

use super::report::{bench_header, bench_row, osu_header, osu_row};
use super::{fail, on_world, one, size_range, subjects, Format, List};

/// Settings of `ringreduce bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to time, comma-separated: naive, butterfly, ring, central, auto, mpi, or `all`.
    #[arg(long, default_value = "all", value_parser = subjects)]
    algo: List<Subject>,
    /// Element type.
    #[arg(long, default_value = "f32", value_parser = one::<DType>)]
    dtype: DType,
    /// Reduce op.
    #[arg(long, default_value = "sum", value_parser = one::<ReduceOp>)]
    op: ReduceOp,
    /// Size range MIN:MAX in bytes, doubling (units allowed: 4:16M).
    #[arg(short = 'm', long = "message-size", default_value = "4:16M", value_parser = size_range)]
    sizes: (u64, u64),
    /// Timed iterations per size (default: 1000 up to 8 KiB, 100 above).
    #[arg(long)]
    iters: Option<usize>,
    /// Warm-up iterations per size (default: 100 up to 8 KiB, 10 above).
    #[arg(long)]
    warmup: Option<usize>,
    /// Validate one result per row and fill #wrong.
    #[arg(long)]
    check: bool,
    /// Add the cost model's predicted time and the measured/predicted ratio.
    #[arg(long)]
    predict: bool,
    /// Calibration for `auto` and --predict (default: $RINGREDUCE_CALIBRATION or built-in).
    #[arg(long, conflicts_with = "calibrate")]
    calibration: Option<PathBuf>,
    /// Calibrate in this same job first (up to the largest size) and use it
    /// for `auto` and --predict, so model and measurement share one placement.
    #[arg(long)]
    calibrate: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Print exactly osu_allreduce's layout (one algorithm only).
    #[arg(long)]
    osu: bool,
    /// Seed of the data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Times every subject at every size and prints the rows as they come.
pub fn run(args: Args) -> ExitCode {
    if args.osu && args.algo.0.len() != 1 {
        return fail("--osu prints one algorithm: pass exactly one with --algo");
    }
    // The environment's settings, with the tuning's constants from --calibration.
    let settings = Settings::from_env().and_then(|s| match &args.calibration {
        Some(path) => Calibration::load(path).map(|c| {
            let mut s = s;
            s.tuning.params = c.params;
            s
        }),
        None => Ok(s),
    });
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let cfg = BenchConfig {
        subjects: args.algo.0.clone(),
        dtype: args.dtype,
        op: args.op,
        min_bytes: args.sizes.0,
        max_bytes: args.sizes.1,
        iters: args.iters,
        warmup: args.warmup,
        check: args.check,
        seed: args.seed,
    };
    // Rank 0's settings on every rank.
    on_world(Some(settings), |group| measure(&args, &cfg, group))
}

/// Calibrates if asked, then times and prints. Collective.
fn measure(args: &Args, cfg: &BenchConfig, group: &Group<Mpi>) -> ExitCode {
    let vendor = Some(group.transport() as &dyn Vendor);
    if args.calibrate {
        match calibrate::run(group, cfg.max_bytes.max(1 << 20), vendor) {
            Ok(outcome) => {
                let mut s = group.settings();
                s.tuning.params = outcome.calibration.params;
                group.set_settings(s);
            }
            Err(e) => return fail(e),
        }
    }
    let root = group.rank() == 0;
    if root {
        print_header(args, cfg, group.size());
    }
    let result = bench::run(group, cfg, vendor, |row| {
        if !root {
            return;
        }
        if args.osu {
            println!("{}", osu_row(row));
        } else {
            match args.format {
                Format::Table => println!("{}", bench_row(row, args.predict)),
                Format::Csv => println!("{}", csv_row(row)),
                Format::Json => {}
            }
        }
    });
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => return fail(e),
    };
    if root && matches!(args.format, Format::Json) && !args.osu {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON of plain values")
        );
    }
    let wrong: u64 = rows.iter().filter_map(|r| r.wrong).sum();
    if wrong > 0 {
        if root {
            eprintln!("ringreduce: {wrong} wrong elements in checked results");
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn print_header(args: &Args, cfg: &BenchConfig, ranks: usize) {
    if args.osu {
        println!("{}", osu_header(cfg.dtype));
        return;
    }
    match args.format {
        Format::Table => {
            let default = || "osu-default".to_string();
            println!(
                "# ringreduce bench: {} ranks, {} {}, iters {}, warmup {}",
                ranks,
                cfg.dtype,
                cfg.op,
                cfg.iters.map_or_else(default, |i| i.to_string()),
                cfg.warmup.map_or_else(default, |i| i.to_string())
            );
            println!("{}", bench_header(args.predict));
        }
        Format::Csv => println!("{CSV_HEADER}"),
        Format::Json => {}
    }
}
