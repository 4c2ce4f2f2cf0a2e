//! `ringreduce` command line: a thin front end over the library.
//!
//! Every error is one line on stderr and exit code 2 (1 when `verify`,
//! `soak` or `bench --check` find failing cases). Each subcommand lives in
//! its own file under `src/cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        RINGREDUCE_CALIBRATION=F  calibration file (from `calibrate`) for `auto`\n  \
        RINGREDUCE_SEGMENTS=N     segments of the pipelined ring\n  \
        RINGREDUCE_SHM_PIECE=512K shared-memory piece (each node's first rank's; also _SLOT=4064)\n  \
        RINGREDUCE_HIER_PIECE=4M  hierarchical's piece when the ranks span nodes (rank 0's)\n  \
        RINGREDUCE_SHM_WRITES=X   shared-memory pieces: cached (default), auto (around the cache when that is faster), streamed\n\
        Documentation: README.md and docs/ in the source tree"
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
    Verify(cli::verify::Args),
    /// Run many all-reduces of random algorithm, type, op and size in a row (run under mpirun).
    ///
    /// Every rank draws the same calls from --seed. With --check each result
    /// is checked as `verify` does. Prints progress, failures, and the
    /// resident memory after the warm-up and at the end (largest over the
    /// ranks); exits 1 if any call failed.
    Soak(cli::soak::Args),
    /// Print the cost model's rounds, bytes and predicted time (no mpirun needed).
    Cost(cli::cost::Args),
    /// Measure α, β (ping-pong / exchange sweep) and γ (local kernel); under mpirun -n 2 or more.
    Calibrate(cli::calibrate::Args),
    /// Train a classifier with data-parallel SGD: synchronous, local SGD, gossip (run under mpirun).
    Train(Box<cli::train::Args>),
    /// Train with several strategies on the same model, data and seed, and compare accuracy against time and bytes (run under mpirun).
    Compare(cli::compare::Args),
    /// Draw charts (PNG and SVG): latency and bus bandwidth from `bench --format csv` files, a training run from its `--metrics` file, or a `compare` CSV.
    Plot(cli::plot::Args),
    /// Medians and ranges over several `bench --format csv` runs, and paired ratios to the vendor.
    Summary(cli::plot::SummaryArgs),
    /// Hogwild!: lock-free SGD by threads sharing the parameters, on sparse problems (under mpirun: threads in every rank, averaging across ranks).
    ///
    /// Prints the problem's sparsity (Ω, Δ, ρ, conflict-graph degree), a
    /// line per epoch (objective, accuracy or RMSE, updates/s, measured
    /// conflict and lost-write rates) and a closing `result:` line with
    /// the time to --target-loss.
    Hogwild(Box<cli::hogwild::Args>),
    /// Time the algorithms beside the vendor's MPI_Allreduce (run under mpirun).
    Bench(cli::bench::Args),
    /// Run `train` under mpirun on a host file and, when a host is lost, launch it again on the hosts left from its newest checkpoint (not under mpirun).
    ///
    /// Finds the lost hosts in mpirun's lines and in the stall report,
    /// comments them out of the host file, and launches `train --resume`
    /// on the rest, while at least --min-np ranks are left and at most
    /// --max-restarts times. Every restart is a line here and, in the
    /// resumed run, a line and a row of its --metrics file with its cause,
    /// the steps lost and the seconds from the fault to training again.
    Elastic(cli::elastic::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::parse_error(e),
    };
    if matches!(
        cli.command,
        Command::Cost(_) | Command::Plot(_) | Command::Summary(_)
    ) {
        quiet_on_closed_pipe();
    }
    match cli.command {
        Command::Verify(args) => cli::verify::run(args),
        Command::Soak(args) => cli::soak::run(args),
        Command::Cost(args) => cli::cost::run(args),
        Command::Calibrate(args) => cli::calibrate::run(args),
        Command::Train(args) => cli::train::run(*args),
        Command::Compare(args) => cli::compare::run(args),
        Command::Plot(args) => cli::plot::run(args),
        Command::Summary(args) => cli::plot::summary(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Hogwild(args) => cli::hogwild::run(*args),
        Command::Elastic(args) => cli::elastic::run(args),
    }
}

/// Lets the commands that never start MPI end quietly when their reader
/// goes away (`ringreduce cost --format csv | head -1`), as other Unix
/// tools do, instead of panicking on the failed write: the default action
/// of SIGPIPE. The MPI commands keep Rust's setting (ignored), so a peer's
/// closed socket is an error MPI reports, not a silent death.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called before any thread is started; restoring a signal's
    // default action has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
