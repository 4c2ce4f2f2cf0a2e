//! `ringreduce` command line: a thin front end over the library.

use std::process::ExitCode;
use std::str::FromStr;

use clap::{Parser, Subcommand};
use mpi::traits::*;
use ringreduce::verify::{self, VerifyConfig};
use ringreduce::{Algorithm, DType, ReduceOp};

/// Ring all-reduce and friends on MPI.
#[derive(Parser, Debug)]
#[command(name = "ringreduce", version, about)]
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
    s.split(',')
        .map(|x| x.trim().parse::<T>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(List)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
            // One line: clap's first line, without the usage block.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringreduce: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
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
    }
}

fn run_verify(cfg: &VerifyConfig) -> ExitCode {
    let Some(universe) = mpi::initialize() else {
        eprintln!("ringreduce: MPI could not be initialised");
        return ExitCode::from(2);
    };
    let world = universe.world();
    let p = world.size() as usize;
    let root = world.rank() == 0;
    if root {
        let cases =
            cfg.algorithms.len() * cfg.dtypes.len() * cfg.ops.len() * verify::counts(p, cfg.max_count).len();
        println!(
            "# ringreduce verify: {p} ranks, {cases} cases, counts {:?}, seed {}",
            verify::counts(p, cfg.max_count),
            cfg.seed
        );
    }
    let report = match verify::run(&world, cfg, |f| println!("{f}")) {
        Ok(report) => report,
        Err(e) => {
            if root {
                eprintln!("ringreduce: {e}");
            }
            return ExitCode::from(2);
        }
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
