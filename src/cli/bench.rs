//! `ringreduce bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::bench::{self, csv_row, BenchConfig, Subject, CSV_HEADER};
use ringreduce::cost::{Calibration, Collective};
use ringreduce::vendor::Vendor;
use ringreduce::{calibrate, DType, Group, Mpi, ReduceOp, Settings};

use super::report::{bench_footer, bench_header, bench_row, osu_header, osu_row};
use super::{fail, on_world, one, size_arg, size_range, subjects, Format, List};

/// Settings of `ringreduce bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "all", value_parser = subjects, help = algo_help())]
    algo: List<Subject>,
    /// Print the names --algo takes (`all` times these), one a line, and exit.
    #[arg(long)]
    list: bool,
    /// Element type (nccl-tests' -d).
    #[arg(short = 'd', long, visible_alias = "datatype", default_value = "f32", value_parser = one::<DType>)]
    dtype: DType,
    /// Reduce op (nccl-tests' -o).
    #[arg(short = 'o', long, default_value = "sum", value_parser = one::<ReduceOp>)]
    op: ReduceOp,
    /// Sizes [MIN:]MAX in bytes (OSU's -m; K, M, G are powers of two:
    /// 4:16M, or 4K for 1 element up to 4 KiB).
    #[arg(short = 'm', long = "message-size", value_parser = size_range, conflicts_with_all = ["minbytes", "maxbytes"])]
    sizes: Option<(u64, u64)>,
    /// Smallest size (nccl-tests' -b).
    #[arg(short = 'b', long = "min-bytes", visible_alias = "minbytes", value_parser = size_arg, default_value = "4")]
    minbytes: u64,
    /// Largest size (nccl-tests' -e).
    #[arg(short = 'e', long = "max-bytes", visible_alias = "maxbytes", value_parser = size_arg, default_value = "16M")]
    maxbytes: u64,
    /// Each size is this many times the one before (nccl-tests' -f).
    #[arg(short = 'f', long, default_value_t = 2)]
    stepfactor: u64,
    /// Timed iterations per size (nccl-tests' -n, OSU's --iterations;
    /// default: 1000 up to 8 KiB, 100 above).
    #[arg(short = 'n', long, visible_alias = "iterations")]
    iters: Option<usize>,
    /// `-i` is refused: OSU's iterations but nccl-tests' step in bytes.
    #[arg(short = 'i', hide = true, allow_hyphen_values = true)]
    ambiguous_i: Option<String>,
    /// Warm-up iterations per size (nccl-tests' -w, OSU's -x; default: 100
    /// up to 8 KiB, 10 above).
    #[arg(short = 'w', long, visible_short_alias = 'x', visible_alias = "warmup_iters")]
    warmup: Option<usize>,
    /// Validate one result per row and fill #wrong (nccl-tests' -c 0/1;
    /// alone it means 1).
    #[arg(short = 'c', long, num_args = 0..=1, default_value = "0", default_missing_value = "1", value_parser = zero_one)]
    check: bool,
    /// Time the out-of-place call only (by default the in-place call too,
    /// as nccl-tests does).
    #[arg(long)]
    no_in_place: bool,
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
    /// Time another collective than the all-reduce: reduce_scatter, reduce
    /// (to rank 0) or all_gather, ours (`ring`) against MPI's (`mpi`);
    /// sizes are the whole vector, as in nccl-tests.
    #[arg(long, value_parser = collective)]
    collective: Option<Collective>,
}

/// Parses a `--collective` name.
fn collective(s: &str) -> Result<Collective, String> {
    match s.replace('-', "_").as_str() {
        "all_reduce" | "allreduce" => Err("all_reduce is the default: leave --collective out".into()),
        name => Collective::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                format!("unknown collective `{s}`; expected reduce_scatter, reduce or all_gather")
            }),
    }
}

/// The help of `--algo`, from the algorithms' registry.
fn algo_help() -> String {
    let names: Vec<String> = Subject::all().into_iter().map(Subject::name).collect();
    format!("What to time, comma-separated: {}, or `all` (any algorithm also as NAME-nocheck: without the call check); also `memcpy`: every rank copies its n bytes, the memory roofline, and `peer-copy`: every rank copies the n bytes its neighbour's core just wrote (one node), the cross-core roofline", names.join(", "))
}

/// Times every subject at every size and prints the rows as they come.
pub fn run(args: Args) -> ExitCode {
    if args.list {
        for s in Subject::all() {
            println!("{}", s.name());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(v) = &args.ambiguous_i {
        return fail(format!(
            "-i {v}: OSU's -i is iterations, nccl-tests' the step in bytes; say which: -n/--iters N for iterations, -f/--stepfactor F for the size step (sizes grow by a factor)"
        ));
    }
    if args.osu && args.algo.0.len() != 1 {
        return fail("--osu prints one algorithm: pass exactly one with --algo");
    }
    // The environment's settings, with the tuning's constants from --calibration.
    let settings = Settings::from_env().and_then(|s| match &args.calibration {
        Some(path) => Calibration::load(path).map(|c| Settings {
            tuning: s.tuning.with_calibration(c),
            ..s
        }),
        None => Ok(s),
    });
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (min_bytes, max_bytes) = args.sizes.unwrap_or((args.minbytes, args.maxbytes));
    let cfg = BenchConfig {
        subjects: args.algo.0.clone(),
        dtype: args.dtype,
        op: args.op,
        min_bytes,
        max_bytes,
        factor: args.stepfactor,
        iters: args.iters,
        warmup: args.warmup,
        check: args.check,
        seed: args.seed,
        collective: args.collective,
        // OSU's layout has no in-place column.
        in_place: !args.no_in_place && !args.osu,
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
        let apart = !group.supports(ringreduce::Algorithm::Shm);
        let asked = |s: &Subject| {
            matches!(
                s,
                Subject::Ours(ringreduce::Algorithm::Shm) | Subject::Unchecked(ringreduce::Algorithm::Shm)
            )
        };
        if apart
            && matches!(args.format, Format::Table)
            && !args.osu
            && cfg.subjects.iter().any(asked)
            && cfg.subjects.len() > 1
        {
            println!("# note: shm left out: the ranks do not share a node");
        }
    }
    let result = bench::run(group, cfg, vendor, |row| {
        if !root {
            return;
        }
        if args.osu {
            println!("{}", osu_row(row));
        } else {
            match args.format {
                Format::Table => println!("{}", bench_row(row, cfg.in_place, args.predict)),
                Format::Csv => println!("{}", csv_row(row)),
                Format::Json => {}
            }
        }
    });
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => return fail(e),
    };
    if root && matches!(args.format, Format::Table) && !args.osu {
        for line in bench_footer(&rows, cfg.check) {
            println!("{line}");
        }
    }
    if root && matches!(args.format, Format::Json) && !args.osu {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON of plain values")
        );
    }
    let wrong: u64 = rows
        .iter()
        .flat_map(|r| [r.time.wrong, r.in_place.and_then(|t| t.wrong)])
        .flatten()
        .sum();
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
                "# ringreduce bench: {}, {} {}, iters {}, warmup {}",
                super::ranks(ranks),
                cfg.dtype,
                cfg.op,
                cfg.iters.map_or_else(default, |i| i.to_string()),
                cfg.warmup.map_or_else(default, |i| i.to_string())
            );
            println!("{}", bench_header(cfg.in_place, args.predict));
        }
        Format::Csv => println!("{CSV_HEADER}"),
        Format::Json => {}
    }
}

/// nccl-tests' `-c 0/1`: 0, 1, false or true.
fn zero_one(s: &str) -> Result<bool, String> {
    match s {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("`{s}`: expected 0 or 1")),
    }
}
