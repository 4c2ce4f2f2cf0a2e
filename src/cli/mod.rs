//! The `ringreduce` command line: one file per subcommand (parse → call the
//! library → print), the shared argument parsers and error handling here,
//! and every table/CSV/JSON layout in [`report`].

pub mod bench;
pub mod calibrate;
pub mod compare;
pub mod cost;
pub mod curves;
pub mod elastic;
pub mod hogwild;
pub mod plot;
pub mod progress;
pub mod report;
pub mod soak;
pub mod train;
pub mod verify;
pub mod watch;

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use clap::ValueEnum;
use ringreduce::bench::Subject;
use ringreduce::train::MAX_STRAGGLER;
use ringreduce::units::parse_size;
use ringreduce::{Algorithm, DType, Group, Mpi, ReduceOp, Settings};

/// Output format of reports.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    // (Plain comments: doc comments here would turn clap's help into the long layout.)
    // Aligned columns for people.
    Table,
    // Comma-separated values with a header line.
    Csv,
    // One JSON document.
    Json,
}

/// What `train` and `compare` train: data, model, batch, optimizer settings
/// and seed (one set of flags, one set of defaults).
#[derive(clap::Args, Debug, Clone)]
pub struct Recipe {
    /// fashion-mnist (Debian's dataset-fashion-mnist), synthetic, a directory of
    /// MNIST-layout IDX files (train-images-idx3-ubyte[.gz] …), or a CSV file (label, features…).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// softmax, mlp (hidden widths from --hidden) or wide (784-1024-1024-1024-10
    /// on Fashion-MNIST: three hidden layers of 1024, 2.9 M parameters).
    #[arg(long, default_value = "mlp")]
    pub model: String,
    /// Hidden layer widths of the MLP, comma-separated.
    #[arg(long, default_value = "128")]
    pub hidden: String,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Global batch size (split across ranks).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    pub lr: f32,
    /// Momentum.
    #[arg(long, default_value_t = 0.9, allow_hyphen_values = true)]
    pub momentum: f32,
    /// Seed of initialisation and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which examples each rank computes: `shuffle` (every step's global
    /// batch split across the ranks, one shuffle per epoch) or `shards`
    /// (each rank its own fixed part of the data, as SimuParallelSGD and
    /// decentralized SGD assume).
    #[arg(long, value_enum, default_value_t = Partition::Shuffle)]
    pub partition: Partition,
    /// Slow rank RANK's computation by FACTOR (it sleeps FACTOR − 1 times
    /// its compute time after each gradient): a straggler.
    #[arg(long, value_name = "RANK:FACTOR", value_parser = straggler)]
    pub straggler: Option<(usize, f64)>,
    /// Also score the held-out set every STEPS steps, not only at each
    /// epoch's end, so time and bytes to an accuracy are known to the
    /// step (the scoring's time is left out, its bytes reported apart).
    #[arg(long, value_name = "STEPS")]
    pub eval_every: Option<usize>,
}

/// The long help of `--strategy`: every registered spelling, then the
/// parameter server's.
pub fn strategy_help() -> String {
    format!(
        "What the ranks exchange, one of:\n{}\nps:async | ps:ssp=S [,servers=K] [,dynamic]: a parameter server (SSP: at most S pushes ahead of the slowest worker, 0 is bulk-synchronous; dynamic: workers run at their own speed, the servers count the epochs)",
        ringreduce::train::AnyStrategy::help()
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// `RANK:FACTOR`, the factor from 1 to [`MAX_STRAGGLER`].
pub fn straggler(s: &str) -> Result<(usize, f64), String> {
    let bad = || format!("`{s}`: expected RANK:FACTOR, e.g. 1:3");
    let (r, f) = s.split_once(':').ok_or_else(bad)?;
    let factor: f64 = f.trim().parse().map_err(|_| bad())?;
    if !(1.0..=MAX_STRAGGLER).contains(&factor) {
        return Err(format!(
            "`{s}`: the factor must lie between 1 and {MAX_STRAGGLER}"
        ));
    }
    Ok((r.trim().parse().map_err(|_| bad())?, factor))
}

impl Recipe {
    /// A trainer builder with these settings (a plan brings the strategy).
    pub fn builder(&self) -> ringreduce::train::TrainerBuilder<ringreduce::train::GradientAllReduce> {
        ringreduce::train::SyncSgd::builder()
            .batches_from(self.partition.source())
            .batch(self.batch)
            .lr(self.lr)
            .momentum(self.momentum)
            .epochs(self.epochs)
            .seed(self.seed)
            .straggler(self.straggler)
            .eval_every(self.eval_every)
    }
}

/// `--partition`: which examples each rank trains on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Partition {
    // One shuffle per epoch, every global batch split across the ranks.
    Shuffle,
    // Each rank its own fixed part of the data.
    Shards,
}

impl Partition {
    /// The library's batch source.
    pub fn source(self) -> std::sync::Arc<dyn ringreduce::train::BatchSource> {
        match self {
            Partition::Shuffle => std::sync::Arc::new(ringreduce::train::SharedShuffle),
            Partition::Shards => std::sync::Arc::new(ringreduce::train::Shards),
        }
    }
}

/// Names that can be listed on the command line, with `all` for every one.
pub trait Listed: FromStr<Err = ringreduce::Error> + Copy + Send + Sync + 'static {
    /// What `all` means.
    fn all() -> Vec<Self>;
}
impl Listed for Algorithm {
    fn all() -> Vec<Self> {
        Algorithm::CONCRETE.to_vec()
    }
}
impl Listed for DType {
    fn all() -> Vec<Self> {
        DType::ALL.to_vec()
    }
}
impl Listed for ReduceOp {
    fn all() -> Vec<Self> {
        ReduceOp::ALL.to_vec()
    }
}

/// A comma-separated list of names (one clap value).
#[derive(Debug, Clone)]
pub struct List<T>(pub Vec<T>);

/// Parses `all` or a comma-separated list of names.
pub fn list<T: Listed>(s: &str) -> Result<List<T>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(List(T::all()));
    }
    s.split(',').map(one::<T>).collect::<Result<_, _>>().map(List)
}

/// `1 rank`, `3 ranks`.
pub fn ranks(n: usize) -> String {
    format!("{n} rank{}", if n == 1 { "" } else { "s" })
}

/// Parses one name.
pub fn one<T: FromStr<Err = ringreduce::Error>>(s: &str) -> Result<T, String> {
    s.trim().parse::<T>().map_err(|e| e.to_string())
}

/// Parses `all` or a comma-separated list of bench subjects.
pub fn subjects(s: &str) -> Result<List<Subject>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(List(Subject::all()));
    }
    s.split(',')
        .map(|x| Subject::parse(x.trim()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(List)
}

/// Parses a byte size with an optional unit.
pub fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// Parses `MIN:MAX` byte sizes, or OSU's `MAX` alone (from one element).
pub fn size_range(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = match s.split_once(':') {
        Some((lo, hi)) => (size_arg(lo)?, size_arg(hi)?),
        None => (1, size_arg(s)?),
    };
    if lo > hi {
        return Err(format!("`{s}`: minimum is above maximum"));
    }
    Ok((lo, hi))
}

/// This process's rank as told by the launcher, before MPI is initialised
/// (so that only one rank prints argument errors under mpirun): Open MPI,
/// PMIx (Open MPI 5, `srun --mpi=pmix`), MPICH's Hydra and PMI-1/2, Slurm,
/// MVAPICH.
pub fn launcher_rank() -> usize {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
        "MV2_COMM_WORLD_RANK",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

/// Prints one error line (from rank 0 only) and returns exit code 2.
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    if launcher_rank() == 0 {
        eprintln!("ringreduce: {msg}");
    }
    ExitCode::from(2)
}

/// What `main` does with a command line clap refused: help and version go
/// to stdout (rank 0 only); an error becomes one line and exit code 2.
pub fn parse_error(e: clap::Error) -> ExitCode {
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
    // One line: clap's first line and its tip, without the usage block.
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut first = lines.next().unwrap_or("invalid arguments").to_string();
    if first.ends_with(':') {
        // "the following required arguments were not provided:" names them next.
        first = format!("{first} {}", lines.next().unwrap_or(""));
    }
    // "tip: a similar argument exists: '--epochs'", as clap suggests.
    if let Some(tip) = rendered.lines().map(str::trim).find(|l| l.starts_with("tip:")) {
        first = format!("{first} ({tip})");
    }
    fail(first.trim_start_matches("error: "))
}

/// Whether a file can be written at `path` as [`ringreduce::files::output`]
/// resolves it: the resolved path's directory exists, and it is not a
/// directory, a block device or a socket (links are followed; devices and
/// FIFOs are written through).
pub fn writable(path: &Path) -> Result<(), String> {
    ringreduce::files::output(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Initialises MPI and runs `f` with the world's group: rank 0's settings
/// from the environment, or rank 0's `settings` when given.
pub fn on_world(settings: Option<Settings>, f: impl FnOnce(&Group<Mpi>) -> ExitCode) -> ExitCode {
    on_world_at(settings, None, f)
}

/// [`on_world`], with MPI initialised at `threading` (e.g. `Multiple` for
/// a communication thread) when given; what MPI grants is checked by the
/// code that needs it.
pub fn on_world_at(
    settings: Option<Settings>,
    threading: Option<ringreduce::mpi::Threading>,
    f: impl FnOnce(&Group<Mpi>) -> ExitCode,
) -> ExitCode {
    // Open MPI settings the user left unset (see `MPI_DEFAULTS`, and
    // `OVERLAP_MPI_DEFAULTS` for a communication thread).
    match threading {
        Some(ringreduce::mpi::Threading::Multiple) => ringreduce::transport::set_overlap_mpi_defaults(),
        _ => ringreduce::transport::set_mpi_defaults(),
    };
    let universe = match threading {
        None => ringreduce::mpi::initialize(),
        Some(level) => ringreduce::mpi::initialize_with_threading(level).map(|(u, _)| u),
    };
    let Some(universe) = universe else {
        return fail("MPI could not be initialised");
    };
    // A malformed shape falls back here; the settings report it.
    let shape = ringreduce::group::shape_from_env().unwrap_or(ringreduce::transport::Shape::DEFAULT);
    let transport = Mpi::with_shape(&universe.world(), shape);
    let group = match settings {
        Some(s) => Group::with_rank0_settings(transport, Ok(s)),
        None => Group::from_env(transport),
    };
    let g = match group {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let code = f(&g);
    stop_if_asked(g.rank(), "work-done");
    // The last agreement, under the stall timeout: a rank that stopped or
    // hung after its work is named here (exit 3). What follows, the shared
    // window's free and MPI_Finalize, waits for every rank with no timeout
    // and no way to report: a rank stopped there is not (docs/reliability.md).
    if let Err(e) = g.barrier() {
        return fail(e);
    }
    stop_if_asked(g.rank(), "finalize");
    code
}

/// Fault injection for the tests: `RINGREDUCE_STOP_AT=RANK:PHASE` stops
/// (SIGSTOP) rank RANK when it reaches PHASE, `work-done` (its subcommand
/// finished, before the last agreement) or `finalize` (after it).
fn stop_if_asked(rank: usize, phase: &str) {
    let Ok(at) = std::env::var("RINGREDUCE_STOP_AT") else {
        return;
    };
    if at.split_once(':') == Some((rank.to_string().as_str(), phase)) {
        // SAFETY: raise only sends a signal to this process.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

/// Exit code 0 when `failures` is 0, else 1.
pub fn exit_failures(failures: u64) -> ExitCode {
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
