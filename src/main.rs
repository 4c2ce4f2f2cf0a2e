//! `ringreduce` command line: a thin front end over the library.
//!
//! Every error is one line on stderr and exit code 2 (1 when `verify`
//! finds failing cases).

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Parser, Subcommand, ValueEnum};
use mpi::traits::*;
use ringreduce::bench::{self, BenchConfig, Subject};
use ringreduce::check::CheckConfig;
use ringreduce::cost::{self, Calibration, CostParams, Tuning};
use ringreduce::soak::{self, SoakConfig};
use ringreduce::units::{format_size, parse_size};
use ringreduce::verify::{self, VerifyConfig};
use ringreduce::{calibrate, Algorithm, DType, ReduceOp};

/// Ring all-reduce and friends on MPI.
#[derive(Parser, Debug)]
#[command(
    name = "ringreduce",
    version,
    about,
    after_help = "Environment (read by rank 0 and broadcast):\n  \
        RINGREDUCE_CHECK=0        skip the per-call agreement that catches mismatched calls\n  \
        RINGREDUCE_TIMEOUT=60     seconds a rank waits for another before the job is aborted (0: forever)\n  \
        RINGREDUCE_ALGO=ring      the algorithm `auto` runs\n  \
        RINGREDUCE_CALIBRATION=F  calibration file (from `calibrate`) for `auto`"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every algorithm against MPI_Allreduce on this cluster (run under mpirun).
    ///
    /// Tries every algorithm × dtype × op over the counts 0, 1, p−1, p, p+1,
    /// 65537 and --max-count, checks results against the vendor's
    /// MPI_Allreduce (or a rank-ordered reference for f16/bf16) and that all
    /// ranks hold identical bytes. Prints one line per failing case and ends
    /// with `N passed, N failed`; exits 1 if any case failed.
    Verify {
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
    },
    /// Run many all-reduces of random algorithm, type, op and size in a row (run under mpirun).
    ///
    /// Every rank draws the same calls from --seed. With --check each result
    /// is checked as `verify` does. Prints progress, failures, and the
    /// resident memory after the warm-up and at the end (largest over the
    /// ranks); exits 1 if any call failed.
    Soak {
        /// Number of all-reduces.
        #[arg(long, default_value_t = 10_000)]
        calls: u64,
        /// Largest message per rank: bytes, or with a unit (4K, 16M).
        #[arg(long, value_parser = size_arg, default_value = "1M")]
        max_size: u64,
        /// Seed of the call sequence and data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Check every result against MPI_Allreduce / the serial reference.
        #[arg(long)]
        check: bool,
        /// Calls before the first memory sample.
        #[arg(long, default_value_t = 500)]
        warmup: u64,
    },
    /// Print the cost model's rounds, bytes and predicted time (no mpirun needed).
    Cost {
        /// Number of ranks.
        #[arg(long, allow_hyphen_values = true)]
        ranks: usize,
        /// Message size per rank: bytes, or with a unit (4K, 16M, 1G).
        #[arg(long, value_parser = size_arg, allow_hyphen_values = true)]
        bytes: u64,
        /// Element type.
        #[arg(long, default_value = "f32", value_parser = one::<DType>)]
        dtype: DType,
        /// Algorithms, comma-separated, or `all`.
        #[arg(long, default_value = "all", value_parser = list::<Algorithm>)]
        algo: List<Algorithm>,
        /// Latency α in seconds per message (default: built-in).
        #[arg(long, conflicts_with = "calibration", allow_hyphen_values = true)]
        alpha: Option<f64>,
        /// Inverse bandwidth β in seconds per byte.
        #[arg(long, conflicts_with = "calibration", allow_hyphen_values = true)]
        beta: Option<f64>,
        /// Reduction cost γ in seconds per byte.
        #[arg(long, conflicts_with = "calibration", allow_hyphen_values = true)]
        gamma: Option<f64>,
        /// Take α, β, γ from a file written by `ringreduce calibrate`.
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Measure α, β (ping-pong / exchange sweep) and γ (local kernel); under mpirun -n 2 or more.
    Calibrate {
        /// Where to write the calibration JSON.
        #[arg(long, default_value = "calibration.json")]
        out: PathBuf,
        /// Largest message of the sweep.
        #[arg(long, value_parser = size_arg, default_value = "16M")]
        max_bytes: u64,
    },
    /// Train a classifier with synchronous data-parallel SGD (run under mpirun).
    Train(TrainOpts),
    /// Draw latency and bus-bandwidth charts (PNG and SVG) from a `bench --format csv` file.
    Plot {
        /// The CSV written by `ringreduce bench --format csv`.
        #[arg(long)]
        csv: PathBuf,
        /// Directory for latency.{png,svg} and busbw.{png,svg}.
        #[arg(long)]
        out: PathBuf,
        /// Chart title prefix.
        #[arg(long, default_value = "ringreduce all-reduce", allow_hyphen_values = true)]
        title: String,
    },
    /// Time the algorithms beside the vendor's MPI_Allreduce (run under mpirun).
    Bench {
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
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
/// Output format of reports.
enum Format {
    Table,
    Csv,
    Json,
}

/// Names that can be listed on the command line, with `all` for every one.
trait Listed: FromStr<Err = ringreduce::Error> + Copy + Send + Sync + 'static {
    const ALL: &'static [Self];
}
impl Listed for Algorithm {
    const ALL: &'static [Self] = &Algorithm::CONCRETE;
}
impl Listed for DType {
    const ALL: &'static [Self] = &DType::ALL;
}
impl Listed for ReduceOp {
    const ALL: &'static [Self] = &ReduceOp::ALL;
}

/// A comma-separated list of names (one clap value).
#[derive(Debug, Clone)]
struct List<T>(Vec<T>);

fn list<T: Listed>(s: &str) -> Result<List<T>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(List(T::ALL.to_vec()));
    }
    s.split(',').map(one::<T>).collect::<Result<_, _>>().map(List)
}

fn one<T: FromStr<Err = ringreduce::Error>>(s: &str) -> Result<T, String> {
    s.trim().parse::<T>().map_err(|e| e.to_string())
}

fn subjects(s: &str) -> Result<List<Subject>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(List(Subject::all()));
    }
    s.split(',')
        .map(|x| Subject::parse(x.trim()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(List)
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn size_range(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}`: expected MIN:MAX, e.g. 4:16M"))?;
    let (lo, hi) = (size_arg(lo)?, size_arg(hi)?);
    if lo > hi {
        return Err(format!("`{s}`: minimum is above maximum"));
    }
    Ok((lo, hi))
}

/// This process's rank as told by the launcher, before MPI is initialised
/// (so that only one rank prints argument errors under mpirun).
fn launcher_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Prints one error line (from rank 0 only) and returns exit code 2.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    if launcher_rank() == 0 {
        eprintln!("ringreduce: {msg}");
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                if launcher_rank() == 0 {
                    let _ = e.print();
                }
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
            // One line: clap's first line, without the usage block.
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").to_string();
            if first.ends_with(':') {
                // "the following required arguments were not provided:" names them next.
                first = format!("{first} {}", lines.next().unwrap_or(""));
            }
            return fail(first.trim_start_matches("error: "));
        }
    };
    match cli.command {
        Command::Verify {
            seed,
            max_count,
            algo,
            dtype,
            op,
        } => {
            let cfg = VerifyConfig {
                seed,
                max_count,
                algorithms: algo.0,
                dtypes: dtype.0,
                ops: op.0,
            };
            run_verify(&cfg)
        }
        Command::Soak {
            calls,
            max_size,
            seed,
            check,
            warmup,
        } => run_soak(&SoakConfig {
            calls,
            max_bytes: max_size,
            seed,
            check,
            warmup,
        }),
        Command::Cost {
            ranks,
            bytes,
            dtype,
            algo,
            alpha,
            beta,
            gamma,
            calibration,
            format,
        } => {
            let params = match calibration {
                Some(path) => match Calibration::load(&path) {
                    Ok(c) => c.params,
                    Err(e) => return fail(e),
                },
                None if alpha.is_some() || beta.is_some() || gamma.is_some() => {
                    // One line for all sizes; unset constants from the built-in mid-size line.
                    let d = CostParams::default();
                    CostParams::line(
                        alpha.unwrap_or(d.lines[1].alpha),
                        beta.unwrap_or(d.lines[1].beta),
                        gamma.unwrap_or(d.gamma),
                    )
                }
                None => CostParams::default(),
            };
            match run_cost(ranks, bytes, dtype, &algo.0, params, format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Calibrate { out, max_bytes } => run_calibrate(&out, max_bytes),
        Command::Train(opts) => run_train(&opts),
        Command::Plot { csv, out, title } => match ringreduce::plot::plot_bench(&csv, &out, &title) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Bench {
            algo,
            dtype,
            op,
            sizes,
            iters,
            warmup,
            check,
            predict,
            calibration,
            calibrate,
            format,
            osu,
            seed,
        } => {
            if osu && algo.0.len() != 1 {
                return fail("--osu prints one algorithm: pass exactly one with --algo");
            }
            let tuning = match calibration {
                Some(path) => Calibration::load(&path).and_then(|c| {
                    Tuning::from_env().map(|t| Tuning {
                        params: c.params,
                        force: t.force,
                    })
                }),
                None => Tuning::from_env(),
            };
            let (tuning, checks) = match tuning.and_then(|t| Ok((t, CheckConfig::from_env()?))) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let cfg = BenchConfig {
                checks,
                subjects: algo.0,
                dtype,
                op,
                min_bytes: sizes.0,
                max_bytes: sizes.1,
                iters,
                warmup,
                check,
                seed,
            };
            run_bench(&cfg, tuning, calibrate, format, osu, predict)
        }
    }
}

fn init_mpi() -> Option<mpi::environment::Universe> {
    mpi::initialize()
}

fn run_soak(cfg: &SoakConfig) -> ExitCode {
    let Some(universe) = init_mpi() else {
        return fail("MPI could not be initialised");
    };
    let world = universe.world();
    let root = world.rank() == 0;
    if root {
        println!(
            "# ringreduce soak: {} ranks, {} calls up to {} per rank, seed {}, check {}",
            world.size(),
            cfg.calls,
            format_size(cfg.max_bytes),
            cfg.seed,
            if cfg.check { "on" } else { "off" }
        );
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let progress = |r: &soak::SoakReport| {
        if root {
            println!(
                "{:>8} calls  {:>4} failures  rss {:.1} MiB (after warm-up {:.1} MiB, growth {:+.2} MiB)  {:.1} s",
                r.calls,
                r.failures,
                mib(r.rss_now),
                mib(r.rss_start),
                r.rss_growth as f64 / (1 << 20) as f64,
                r.seconds
            );
        }
    };
    let report = match soak::run(&world, cfg, progress, |call, f| println!("call {call}: {f}")) {
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
            report.rss_growth as f64 / (1 << 20) as f64
        );
    }
    if report.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_verify(cfg: &VerifyConfig) -> ExitCode {
    let Some(universe) = init_mpi() else {
        return fail("MPI could not be initialised");
    };
    let world = universe.world();
    let p = world.size() as usize;
    let root = world.rank() == 0;
    if root {
        let counts = verify::counts(p, cfg.max_count);
        let cases = cfg.algorithms.len() * cfg.dtypes.len() * cfg.ops.len() * counts.len();
        println!(
            "# ringreduce verify: {p} ranks, {cases} cases, counts {counts:?}, seed {}",
            cfg.seed
        );
    }
    let report = match verify::run(&world, cfg, |f| println!("{f}")) {
        Ok(report) => report,
        Err(e) => return fail(e),
    };
    if root {
        println!("{} passed, {} failed", report.passed, report.failed);
    }
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_cost(
    ranks: usize,
    bytes: u64,
    dtype: DType,
    algos: &[Algorithm],
    params: CostParams,
    format: Format,
) -> ringreduce::Result<()> {
    params.validate()?;
    let s = dtype.size();
    if bytes % s as u64 != 0 {
        return Err(ringreduce::Error::InvalidArgument {
            what: "size",
            reason: format!("--bytes {bytes} is not a whole number of {dtype} elements ({s} B each)"),
        });
    }
    let count = usize::try_from(bytes / s as u64).map_err(|_| ringreduce::Error::InvalidArgument {
        what: "size",
        reason: format!("{bytes} B does not fit this machine's address space"),
    })?;
    cost::check_range(ranks, count, s)?;
    let chosen = cost::select(ranks, count, s, &params);
    let rows: Vec<_> = algos.iter().map(|&a| cost::cost(a, ranks, count, s)).collect();
    let bound = cost::lower_bound_bytes(ranks, count, s);
    match format {
        Format::Json => {
            let rows: Vec<_> = rows
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "algorithm": c.algorithm.name(),
                        "rounds": c.rounds,
                        "exchanges": c.exchanges,
                        "messages": c.messages,
                        "bytes_sent": c.bytes_sent,
                        "total_bytes": c.total_bytes,
                        "path_bytes": c.path_bytes,
                        "reduced": c.reduced,
                        "predicted_us": c.predict(&params, s) * 1e6,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "ranks": ranks, "bytes": bytes, "count": count, "dtype": dtype.name(),
                "params": params, "lower_bound_bytes": bound, "chosen": chosen.name(), "algorithms": rows,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON of plain values")
            );
        }
        Format::Csv => {
            println!(
                "algorithm,rounds,exchanges,messages,bytes_sent,total_bytes,path_bytes,reduced,predicted_us,chosen"
            );
            for c in &rows {
                println!(
                    "{},{},{},{},{},{},{},{},{:.3},{}",
                    c.algorithm,
                    c.rounds,
                    c.exchanges,
                    c.messages,
                    c.bytes_sent,
                    c.total_bytes,
                    c.path_bytes,
                    c.reduced,
                    c.predict(&params, s) * 1e6,
                    c.algorithm == chosen
                );
            }
            println!("lower-bound,,,,{bound:.0},,,,,");
        }
        Format::Table => {
            let l = params.line_for(cost::ring_message_bytes(ranks, count, s));
            println!(
                "# {ranks} ranks, {} B per rank ({count} {dtype}); ring messages: α = {:.3} µs, β = {:.4} ns/B; γ = {:.4} ns/B",
                format_size(bytes),
                l.alpha * 1e6,
                l.beta * 1e9,
                params.gamma * 1e9
            );
            println!(
                "{:<12} {:>7} {:>9} {:>14} {:>16} {:>14} {:>12} {:>14}",
                "algorithm",
                "rounds",
                "messages",
                "bytes_sent",
                "total_bytes",
                "path_bytes",
                "reduced",
                "predicted_us"
            );
            for c in &rows {
                let mark = if c.algorithm == chosen { "  <- auto" } else { "" };
                println!(
                    "{:<12} {:>7} {:>9} {:>14} {:>16} {:>14} {:>12} {:>14.2}{mark}",
                    c.algorithm.name(),
                    c.rounds,
                    c.messages,
                    c.bytes_sent,
                    c.total_bytes,
                    c.path_bytes,
                    c.reduced,
                    c.predict(&params, s) * 1e6
                );
            }
            println!("{:<12} {:>7} {:>9} {:>14.0}", "lower-bound", "-", "-", bound);
            println!("auto chooses: {chosen}");
        }
    }
    Ok(())
}

fn run_calibrate(out: &std::path::Path, max_bytes: u64) -> ExitCode {
    if let Err(e) = writable(out) {
        return fail(format!("--out {}: {e}", out.display()));
    }
    let Some(universe) = init_mpi() else {
        return fail("MPI could not be initialised");
    };
    let world = universe.world();
    let root = world.rank() == 0;
    let outcome = match calibrate::run(&world, max_bytes) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if !root {
        return ExitCode::SUCCESS;
    }
    let c = &outcome.calibration;
    println!(
        "# ringreduce calibrate: {} ranks on {} ({}), {}",
        c.ranks, c.host, c.cpu, c.mpi_version
    );
    println!(
        "{:>10} {:>14} {:>10} {:>14} {:>10}",
        "bytes", "one-way(us)", "residual", "exchange(us)", "residual"
    );
    for p in &outcome.points {
        println!(
            "{:>10} {:>14.3} {:>9.1}% {:>14.3} {:>9.1}%",
            p.bytes,
            p.pingpong * 1e6,
            p.residual_oneway() * 100.0,
            p.exchange * 1e6,
            p.residual() * 100.0
        );
    }
    let q = &c.params;
    let oneway = q.oneway.unwrap_or(q.lines);
    for (kind, lines) in [("exchange", &q.lines), ("one-way", &oneway)] {
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
    if let Err(e) = c.save(out) {
        return fail(e);
    }
    println!("wrote {}", out.display());
    ExitCode::SUCCESS
}

fn run_bench(
    cfg: &BenchConfig,
    mut tuning: Tuning,
    calibrate: bool,
    format: Format,
    osu: bool,
    predict: bool,
) -> ExitCode {
    let Some(universe) = init_mpi() else {
        return fail("MPI could not be initialised");
    };
    let world = universe.world();
    let root = world.rank() == 0;
    if calibrate {
        match calibrate::run(&world, cfg.max_bytes.max(1 << 20)) {
            Ok(outcome) => tuning.params = outcome.calibration.params,
            Err(e) => return fail(e),
        }
    }
    if root {
        if osu {
            println!("{}", bench::osu_header(cfg.dtype));
        } else {
            match format {
                Format::Table => {
                    println!(
                        "# ringreduce bench: {} ranks, {} {}, iters {}, warmup {}",
                        world.size(),
                        cfg.dtype,
                        cfg.op,
                        cfg.iters.map_or("osu-default".into(), |i| i.to_string()),
                        cfg.warmup.map_or("osu-default".into(), |i| i.to_string())
                    );
                    println!("{}", bench::table_header(predict));
                }
                Format::Csv => println!("{}", bench::CSV_HEADER),
                Format::Json => {}
            }
        }
    }
    let result = bench::run(&world, cfg, tuning, |row| {
        if !root {
            return;
        }
        if osu {
            println!("{}", bench::osu_row(row));
        } else {
            match format {
                Format::Table => println!("{}", bench::table_row(row, predict)),
                Format::Csv => println!("{}", bench::csv_row(row)),
                Format::Json => {}
            }
        }
    });
    match result {
        Ok(rows) => {
            if root && matches!(format, Format::Json) && !osu {
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
        Err(e) => fail(e),
    }
}

/// Settings of `ringreduce train`.
#[derive(clap::Args, Debug)]
struct TrainOpts {
    /// fashion-mnist (Debian's dataset-fashion-mnist), synthetic, a directory of
    /// MNIST-layout IDX files (train-images-idx3-ubyte[.gz] …), or a CSV file (label, features…).
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// softmax or mlp.
    #[arg(long, default_value = "mlp")]
    model: String,
    /// Hidden layer widths of the MLP, comma-separated.
    #[arg(long, default_value = "128")]
    hidden: String,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Global batch size (split across ranks).
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    lr: f32,
    /// Momentum.
    #[arg(long, default_value_t = 0.9, allow_hyphen_values = true)]
    momentum: f32,
    /// Gradient all-reduce algorithm.
    #[arg(long, default_value = "ring", value_parser = one::<Algorithm>)]
    algo: Algorithm,
    /// Seed of initialisation and shuffling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write per-epoch metrics to this CSV file (rank 0).
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Draw loss and accuracy per epoch to this PNG or SVG file (rank 0).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Rank 0 writes a checkpoint here after every epoch.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from --checkpoint (on any rank count dividing --batch).
    #[arg(long, requires = "checkpoint")]
    resume: bool,
}

/// Whether a file can be written at `path`: its directory exists and is a
/// directory, and the path is not itself a directory.
fn writable(path: &std::path::Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    if path.is_dir() {
        return Err("is a directory".into());
    }
    Ok(())
}

fn run_train(o: &TrainOpts) -> ExitCode {
    use ringreduce::train::{data, Mlp, Model, SyncSgd};
    // Everything that can be checked before MPI starts is checked first.
    if o.epochs == 0 {
        return fail("--epochs must be at least 1");
    }
    let outputs = [
        ("--metrics", &o.metrics),
        ("--plot", &o.plot),
        ("--checkpoint", &o.checkpoint),
    ];
    for (flag, path) in outputs {
        if let Some(path) = path {
            if let Err(e) = writable(path) {
                return fail(format!("{flag} {}: {e}", path.display()));
            }
        }
    }
    if let Some(plot) = &o.plot {
        if let Err(e) = ringreduce::plot::check_extension(plot) {
            return fail(e);
        }
    }
    let model_sizes = |dim: usize, classes: usize| -> ringreduce::Result<Mlp> {
        match o.model.as_str() {
            "softmax" => Mlp::softmax(dim, classes),
            "mlp" => {
                let hidden: Vec<usize> = o
                    .hidden
                    .split(',')
                    .map(|h| h.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| ringreduce::Error::InvalidArgument {
                        what: "--hidden",
                        reason: format!("`{}` is not a comma-separated list of widths", o.hidden),
                    })?;
                Mlp::new(
                    std::iter::once(dim)
                        .chain(hidden)
                        .chain(std::iter::once(classes))
                        .collect(),
                )
            }
            other => Err(ringreduce::Error::UnknownName {
                kind: "model",
                name: other.to_string(),
                expected: "softmax, mlp".into(),
            }),
        }
    };
    let mut builder = SyncSgd::builder().resume(o.resume);
    if let Some(path) = &o.checkpoint {
        builder = builder.checkpoint(path);
    }
    let opt = match builder
        .algorithm(o.algo)
        .batch(o.batch)
        .lr(o.lr)
        .momentum(o.momentum)
        .epochs(o.epochs)
        .seed(o.seed)
        .build()
    {
        Ok(opt) => opt,
        Err(e) => return fail(e),
    };
    let loaded = match o.data.as_str() {
        "fashion-mnist" => data::fashion_mnist(std::path::Path::new(data::FASHION_MNIST_DIR)),
        // One draw split in two, so train and test share the class means.
        "synthetic" => Ok(data::synthetic(7000, 20, 5, o.seed).split(6000)),
        // A directory of the four MNIST-layout IDX files (MNIST, Fashion-MNIST, KMNIST).
        dir if std::path::Path::new(dir).is_dir() => data::fashion_mnist(std::path::Path::new(dir)),
        path => data::load_csv(std::path::Path::new(path)).map(|d| (d.clone(), d)),
    };
    let (train, test) = match loaded {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let model = match model_sizes(train.dim, train.classes.max(test.classes)) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let Some(universe) = init_mpi() else {
        return fail("MPI could not be initialised");
    };
    let world = universe.world();
    let root = world.rank() == 0;
    let comm = match ringreduce::Mpi::new(&world) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if root {
        println!(
            "# train: {} ranks, {} ({} train / {} test, {} features, {} classes), model {:?} ({} parameters), batch {}, lr {}, momentum {}, {}",
            world.size(),
            o.data,
            train.len(),
            test.len(),
            train.dim,
            train.classes,
            model.sizes(),
            model.num_params(),
            o.batch,
            o.lr,
            o.momentum,
            o.algo
        );
        println!("epoch  train_loss  test_acc  epoch_s  allreduce_share  allreduced_MB");
    }
    let mut params = opt.init_params(&model);
    // A progress bar on a terminal; plain per-epoch lines otherwise. Under
    // mpirun a rank's stdout is a pseudo-terminal even when the job's output
    // goes to a file, so launched ranks always print plain lines.
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let bar = (root && terminal && !launched).then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stdout());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:40}] {pos}/{len} steps, {eta} left",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let on_step = |epoch: usize, step: usize, steps: usize| {
        if let Some(bar) = &bar {
            if step == 1 {
                bar.set_length(steps as u64);
                bar.set_prefix(epoch.to_string());
            }
            bar.set_position(step as u64);
        }
    };
    let result = opt.fit_with_progress(&comm, &model, &mut params, &train, Some(&test), on_step, |m| {
        if root {
            let print = |line: String| match &bar {
                Some(bar) if !bar.is_hidden() => bar.println(line),
                _ => println!("{line}"),
            };
            print(format!(
                "{:>5}  {:>10.4}  {:>8.4}  {:>7.2}  {:>14.1}%  {:>13.1}",
                m.epoch,
                m.train_loss,
                m.test_accuracy,
                m.epoch_secs,
                100.0 * m.allreduce_secs / m.epoch_secs.max(1e-12),
                m.allreduce_bytes as f64 / 1e6
            ));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let history = match result {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    if root {
        if let Some(path) = &o.metrics {
            let mut csv =
                String::from("epoch,train_loss,test_accuracy,epoch_secs,allreduce_secs,allreduce_bytes\n");
            for m in &history {
                csv += &format!(
                    "{},{},{},{},{},{}\n",
                    m.epoch, m.train_loss, m.test_accuracy, m.epoch_secs, m.allreduce_secs, m.allreduce_bytes
                );
            }
            if let Err(e) = std::fs::write(path, csv) {
                return fail(format!("{}: {e}", path.display()));
            }
            println!("metrics: {}", path.display());
        }
        if let Some(path) = &o.plot {
            use ringreduce::plot::{draw, Chart, Series};
            let series = [
                Series {
                    name: "train loss".into(),
                    points: history.iter().map(|m| (m.epoch as f64, m.train_loss)).collect(),
                },
                Series {
                    name: "test accuracy".into(),
                    points: history
                        .iter()
                        .map(|m| (m.epoch as f64, m.test_accuracy))
                        .collect(),
                },
            ];
            let chart = Chart {
                title: "synchronous SGD",
                x_label: "epoch",
                y_label: "loss / accuracy",
                log_x: false,
                x_bytes: false,
                log_y: false,
                series: &series,
            };
            if let Err(e) = draw(&chart, path) {
                return fail(e);
            }
            println!("plot: {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
