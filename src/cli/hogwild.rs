//! `ringreduce hogwild`: lock-free shared-memory SGD on sparse problems,
//! threads inside each rank, averaging across ranks under mpirun.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringreduce::hogwild::{
    self, libsvm, Combine, Completion, Config, Diagnostics, EpochReport, Loss, Problem, Ratings,
    SparseLinear, SparseSet, Store, ThreadSchedule, Update,
};
use ringreduce::plot::{Chart, Series};
use ringreduce::{Algorithm, Error, Group, Transport};

use super::{fail, on_world_at, one, writable};

/// The problem to solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Sparse SVM: hinge loss, L2 scaled by feature frequency.
    Svm,
    /// Sparse logistic regression.
    Logreg,
    /// Low-rank matrix completion (synthetic data only).
    Mc,
}

/// Settings of `ringreduce hogwild`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `synthetic` (generated, seeded by --seed), or a libsvm file
    /// (`label index:value …`, 1-based indices; .gz accepted).
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Held-out libsvm file: test accuracy after every epoch (the feature
    /// count is the larger of the two files' highest index).
    #[arg(long, value_name = "FILE")]
    test: Option<PathBuf>,
    /// svm, logreg, or mc (matrix completion).
    #[arg(long, value_enum, default_value = "svm")]
    model: ModelKind,
    /// Threads sharing the parameters in each rank (default: 2; 1 for
    /// the serial schedule).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// serial, hogwild, coordinate (one random coordinate of the gradient
    /// per update, scaled by the support), mutex (one lock), striped
    /// (per-coordinate locks), roundrobin (threads write in turn).
    #[arg(long, default_value = "hogwild", value_parser = one::<ThreadSchedule>)]
    schedule: ThreadSchedule,
    /// Passes over the data (at most; see --target-loss).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Step size of the first epoch.
    #[arg(long, value_name = "η", default_value_t = 0.5, allow_negative_numbers = true)]
    lr: f32,
    /// Step-size factor after every epoch (the paper's β).
    #[arg(long, value_name = "β", default_value_t = 0.9, allow_negative_numbers = true)]
    decay: f32,
    /// L2 weight λ of svm and logreg (each coordinate's share scaled by
    /// its feature's frequency).
    #[arg(long, value_name = "λ", default_value_t = 1e-4)]
    lambda: f32,
    /// Regularisation μ of matrix completion.
    #[arg(long, value_name = "μ", default_value_t = 1e-3)]
    mu: f32,
    /// lossy: load, compute, store (the paper's update; a racing write can
    /// be lost); exact: compare-and-swap (nothing lost).
    #[arg(long, value_enum, default_value = "lossy")]
    update: UpdateArg,
    /// Across ranks: average the ranks' parameters, or add the sum of
    /// their changes (for sparse problems, where the changes rarely meet).
    #[arg(long, default_value = "average", value_parser = one::<Combine>)]
    combine: Combine,
    /// Parameter combinations across ranks per epoch (under mpirun).
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: usize,
    /// All-reduce of the combinations.
    #[arg(long, default_value = "ring", value_parser = one::<Algorithm>)]
    algo: Algorithm,
    /// Stop after the first epoch whose training objective is at most this;
    /// the time to reach it is printed.
    #[arg(long, value_name = "LOSS")]
    target_loss: Option<f64>,
    /// Seed of the data, the initial parameters and the shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Synthetic svm/logreg: training examples.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    examples: usize,
    /// Synthetic svm/logreg: held-out examples (0: none).
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    test_examples: usize,
    /// Synthetic svm/logreg: features.
    #[arg(long, value_name = "D", default_value_t = 5_000)]
    features: usize,
    /// Synthetic svm/logreg: nonzeros per example.
    #[arg(long, value_name = "K", default_value_t = 20)]
    nnz: usize,
    /// Synthetic svm/logreg: power-law exponent of feature popularity (0:
    /// uniform; 0.65 at 47k features and 80 nonzeros gives Δ ≈ 0.49, ρ ≈ 0.95: a dense
    /// conflict graph, RCV1's "bad case").
    #[arg(long, value_name = "S", default_value_t = 0.65)]
    exponent: f64,
    /// Synthetic svm/logreg: fraction of labels flipped (noise).
    #[arg(long, value_name = "F", default_value_t = 0.02)]
    flip: f64,
    /// Matrix completion: rows of the matrix.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    rows: usize,
    /// Matrix completion: columns of the matrix.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    cols: usize,
    /// Matrix completion: rank of the matrix and of the factors.
    #[arg(long, value_name = "R", default_value_t = 5)]
    rank: usize,
    /// Matrix completion: observed entries (a tenth more are held out).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    observed: usize,
    /// Matrix completion: standard deviation of the noise on the entries.
    #[arg(long, value_name = "σ", default_value_t = 0.01)]
    noise: f32,
    /// Write a CSV row per epoch here (rank 0): objective, accuracies or
    /// RMSE, updates/s, conflict and lost rates, wall time.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Draw the training objective against time to this PNG or SVG (rank 0).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// How lock-free writes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpdateArg {
    /// Load, compute, store.
    Lossy,
    /// Compare-and-swap.
    Exact,
}

/// Most threads per rank.
const MAX_THREADS: usize = 1024;

/// Most nonzeros (or observed entries) generated: 2³⁰, 8 GiB of CSR.
const MAX_SYNTHETIC_ENTRIES: usize = 1 << 30;

/// Header of the `--metrics` file.
pub const METRICS_HEADER: &str = "epoch,wall_secs,epoch_secs,objective,train_accuracy,test_accuracy,train_rmse,test_rmse,updates,updates_per_sec,conflict_rate,lost_rate,step,averaging_bytes";

/// Header of the summary `scripts/hogwild.sh` writes (and `plot` reads).
pub const SWEEP_HEADER: &str =
    "problem,schedule,threads,runs,secs_to_target,speedup,updates_per_sec,conflict_rate";

/// The loaded problem and its held-out part.
enum Loaded {
    Linear(SparseLinear, Option<SparseLinear>, String),
    Completion(Completion, Completion, String),
}

/// Checks the settings, loads the data on every rank, and trains.
pub fn run(o: Args) -> ExitCode {
    if let Err(e) = preflight(&o) {
        return fail(e);
    }
    on_world_at(None, Some(ringreduce::mpi::Threading::Funneled), |group| {
        // Rank 0 writes the outputs: on a cluster their directory may
        // exist on its node only. Its answer reaches every rank.
        let outputs = if group.rank() == 0 {
            outputs_writable(&o)
        } else {
            Ok(())
        };
        let loaded = group.agree(outputs).and_then(|()| group.agree(load(&o)));
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let result = match &loaded {
            Loaded::Linear(p, t, what) => train(group, &o, p, t.as_ref(), what),
            Loaded::Completion(p, t, what) => train(group, &o, p, Some(t), what),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        what,
        reason: reason.into(),
    }
}

/// What is the same on every rank, checked before MPI starts.
fn preflight(o: &Args) -> ringreduce::Result<()> {
    if let Some(p) = &o.plot {
        ringreduce::plot::check_extension(p)?;
    }
    // The parameter count is known once the data is loaded.
    config(o).check(1, 1)?;
    if o.threads.is_some_and(|t| t > MAX_THREADS) {
        return Err(invalid("threads", format!("at most {MAX_THREADS} per rank")));
    }
    if o.model == ModelKind::Mc {
        if o.data != "synthetic" || o.test.is_some() {
            return Err(invalid(
                "--model mc",
                "runs on synthetic data (--data synthetic, no --test)",
            ));
        }
        let observed = o.observed.checked_add(o.observed / 10);
        let params = o.rows.checked_add(o.cols).and_then(|n| n.checked_mul(o.rank));
        if !(observed.is_some_and(|n| n <= MAX_SYNTHETIC_ENTRIES)
            && params.is_some_and(|n| n <= libsvm::MAX_FEATURES))
        {
            return Err(invalid(
                "matrix completion",
                format!(
                    "--observed (+ a tenth held out) must be at most {MAX_SYNTHETIC_ENTRIES}, (--rows + --cols) × --rank at most {} parameters",
                    libsvm::MAX_FEATURES
                ),
            ));
        }
    }
    if o.data == "synthetic" && o.model != ModelKind::Mc {
        if o.examples == 0 || o.features == 0 || o.nnz == 0 {
            return Err(invalid(
                "synthetic data",
                "--examples, --features and --nnz must be at least 1",
            ));
        }
        if o.features > libsvm::MAX_FEATURES {
            return Err(invalid("--features", format!("at most {}", libsvm::MAX_FEATURES)));
        }
        let entries = o
            .examples
            .checked_add(o.test_examples)
            .filter(|&n| n <= libsvm::MAX_EXAMPLES)
            .and_then(|n| n.checked_mul(o.nnz.min(o.features)))
            .filter(|&e| e <= MAX_SYNTHETIC_ENTRIES);
        if entries.is_none() {
            return Err(invalid(
                "synthetic data",
                format!(
                    "(--examples + --test-examples) × --nnz must be at most {MAX_SYNTHETIC_ENTRIES} nonzeros"
                ),
            ));
        }
        if !(o.exponent.is_finite() && o.exponent >= 0.0) {
            return Err(invalid("--exponent", "a finite number ≥ 0"));
        }
        if !(0.0..=1.0).contains(&o.flip) {
            return Err(invalid("--flip", "a fraction in [0, 1]"));
        }
        if o.test.is_some() {
            return Err(invalid(
                "--test",
                "is a libsvm file for --data FILE (synthetic data holds out --test-examples)",
            ));
        }
    }
    Ok(())
}

/// Whether rank 0 can write `--metrics` and `--plot`.
fn outputs_writable(o: &Args) -> ringreduce::Result<()> {
    for (what, path) in [("--metrics", &o.metrics), ("--plot", &o.plot)] {
        if let Some(p) = path {
            writable(p).map_err(|e| invalid(what, format!("{}: {e}", p.display())))?;
        }
    }
    Ok(())
}

fn config(o: &Args) -> Config {
    let serial = o.schedule == ThreadSchedule::Serial;
    Config {
        schedule: o.schedule,
        threads: o.threads.unwrap_or(if serial { 1 } else { 2 }),
        epochs: o.epochs,
        step: o.lr,
        decay: o.decay,
        update: match o.update {
            UpdateArg::Lossy => Update::Lossy,
            UpdateArg::Exact => Update::Exact,
        },
        seed: o.seed,
        rounds: o.rounds,
        algorithm: o.algo,
        target: o.target_loss,
        combine: o.combine,
    }
}

/// Reads or generates the data (every rank the same).
fn load(o: &Args) -> ringreduce::Result<Loaded> {
    if o.model == ModelKind::Mc {
        let held = (o.observed / 10).max(1);
        let (train, test) =
            Ratings::synthetic(o.rows, o.cols, o.rank, o.observed + held, held, o.noise, o.seed)?;
        let what = format!(
            "synthetic {}×{} matrix of rank {}, {} observed entries ({} held out), noise {}",
            o.rows, o.cols, o.rank, o.observed, held, o.noise
        );
        let p = Completion::new(train, o.rank, o.mu)?;
        let t = p.with_data(test);
        return Ok(Loaded::Completion(p, t, what));
    }
    let loss = match o.model {
        ModelKind::Logreg => Loss::Logistic,
        _ => Loss::Hinge,
    };
    let (train, test, what) = if o.data == "synthetic" {
        let mut all = libsvm::synthetic(
            o.examples + o.test_examples,
            o.features,
            o.nnz,
            o.exponent,
            o.flip,
            o.seed,
        );
        let test = all.split_off(o.examples);
        let what = format!(
            "synthetic: {} examples ({} held out), {} features, {} nonzeros each, popularity exponent {}, {} labels flipped",
            o.examples, o.test_examples, o.features, o.nnz, o.exponent, o.flip
        );
        (all, (o.test_examples > 0).then_some(test), what)
    } else {
        let path = Path::new(&o.data);
        let train = libsvm::load_libsvm(path)?.to_binary(path)?;
        let test = match &o.test {
            Some(t) => Some(libsvm::load_libsvm(t)?.to_binary(t)?),
            None => None,
        };
        let dim = test.as_ref().map_or(0, SparseSet::dim).max(train.dim());
        let train = train.with_dim(dim)?;
        let test = test.map(|t| t.with_dim(dim)).transpose()?;
        let what = format!(
            "{}: {} examples, {} features, {:.1} nonzeros each{}",
            o.data,
            train.len(),
            dim,
            train.nnz() as f64 / train.len() as f64,
            test.as_ref()
                .map(|t| format!("; test {} examples", t.len()))
                .unwrap_or_default()
        );
        (train, test, what)
    };
    let p = SparseLinear::new(train, loss, o.lambda)?;
    let t = test.map(|t| p.with_data(t));
    Ok(Loaded::Linear(p, t, what))
}

/// Trains `p` on every rank and reports on rank 0.
fn train<P: Problem, C: Transport>(
    group: &Group<C>,
    o: &Args,
    p: &P,
    test: Option<&P>,
    what: &str,
) -> ringreduce::Result<()> {
    let root = group.rank() == 0;
    let ranks = group.size();
    let cfg = config(o);
    if root {
        println!(
            "# hogwild: {} rank{} × {} thread{}, schedule {}, model {:?}, {} update, η {} β {}, seed {}{}",
            ranks,
            if ranks == 1 { "" } else { "s" },
            cfg.thread_count(),
            if cfg.thread_count() == 1 { "" } else { "s" },
            cfg.schedule,
            o.model,
            if cfg.update == Update::Lossy {
                "lossy"
            } else {
                "exact"
            },
            cfg.step,
            cfg.decay,
            cfg.seed,
            if ranks > 1 {
                format!(
                    ", {} {} combination(s) per epoch ({})",
                    cfg.rounds, cfg.combine, cfg.algorithm
                )
            } else {
                String::new()
            }
        );
        println!("# data: {what}");
        println!("sparsity: {}", Diagnostics::of(p, cfg.seed));
        println!("{}", header(test.is_some()));
    }
    let store = Store::from_slice(&p.init(cfg.seed));
    let mut rows = vec![METRICS_HEADER.to_string()];
    let mut saved = Ok(());
    let reports = hogwild::run_on(group, p, test, &store, &cfg, |r| {
        if !root {
            return;
        }
        // A closed stdout (`| head`) does not stop the run.
        let _ = writeln!(std::io::stdout(), "{}", line(r));
        rows.push(csv_row(r));
        if let (Some(path), Ok(())) = (&o.metrics, &saved) {
            saved = std::fs::write(path, rows.join("\n") + "\n").map_err(|e| Error::Data {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    })?;
    group.agree(saved)?;
    if !root {
        return Ok(());
    }
    println!("{}", summary(&reports, cfg.target));
    if let Some(path) = &o.metrics {
        println!("metrics: {}", path.display());
    }
    if let Some(path) = &o.plot {
        let title = format!(
            "{:?}, {} × {} threads ({}), {ranks} rank(s)",
            o.model,
            cfg.schedule,
            cfg.thread_count(),
            if cfg.update == Update::Lossy {
                "lossy"
            } else {
                "exact"
            }
        );
        objective_chart(&[(cfg.schedule.to_string(), &reports[..])], &title, path)?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

fn header(test: bool) -> String {
    format!(
        "epoch      step  objective  {}  updates/s  conflicts   lost   epoch_s  wall_s",
        if test {
            "train / test acc-or-rmse"
        } else {
            "train acc-or-rmse       "
        }
    )
}

/// One progress line per epoch.
fn line(r: &EpochReport) -> String {
    let quality = match (r.train_accuracy, r.test_accuracy, r.train_rmse, r.test_rmse) {
        (Some(a), Some(t), _, _) => format!("{:6.2} % / {:6.2} %     ", a * 100.0, t * 100.0),
        (Some(a), None, _, _) => format!("{:6.2} %                 ", a * 100.0),
        (_, _, Some(a), Some(t)) => format!("rmse {a:.4} / {t:.4}    "),
        (_, _, Some(a), None) => format!("rmse {a:.4}              "),
        _ => " ".repeat(24),
    };
    format!(
        "{:5}  {:8.5}  {:9.6}  {quality}  {:>9}  {:8.4} %  {:5.3} %  {:7.3}  {:6.2}",
        r.epoch,
        r.step,
        r.objective,
        si(r.updates_per_sec()),
        r.conflict_rate() * 100.0,
        r.lost_rate() * 100.0,
        r.epoch_secs,
        r.wall_secs
    )
}

/// 1.23M, 456k.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn csv_row(r: &EpochReport) -> String {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        r.epoch,
        r.wall_secs,
        r.epoch_secs,
        r.objective,
        opt(r.train_accuracy),
        opt(r.test_accuracy),
        opt(r.train_rmse),
        opt(r.test_rmse),
        r.updates,
        r.updates_per_sec(),
        r.conflict_rate(),
        r.lost_rate(),
        r.step,
        r.averaging_bytes
    )
}

/// The closing line: updates/s over the run and the time to the target.
/// `scripts/hogwild.sh` reads it.
fn summary(reports: &[EpochReport], target: Option<f64>) -> String {
    let Some(last) = reports.last() else {
        return "result: no epochs".into();
    };
    let secs: f64 = reports.iter().map(|r| r.epoch_secs).sum();
    let updates: u64 = reports.iter().map(|r| r.updates).sum();
    let conflicts: u64 = reports.iter().map(|r| r.conflicts).sum();
    let lost: u64 = reports.iter().map(|r| r.lost).sum();
    let checked: u64 = reports.iter().map(|r| r.lost_checked).sum();
    let mut s = format!(
        "result: epochs {} objective {:.6} wall_secs {:.4} updates_per_sec {:.0} conflict_rate {:.6} lost_rate {:.6}",
        last.epoch,
        last.objective,
        last.wall_secs,
        updates as f64 / secs.max(1e-12),
        conflicts as f64 / updates.max(1) as f64,
        lost as f64 / checked.max(1) as f64,
    );
    if let Some(t) = target {
        match reports.iter().find(|r| r.objective <= t) {
            Some(r) => write!(
                s,
                " target_secs {:.4} (objective ≤ {t} at epoch {})",
                r.wall_secs, r.epoch
            ),
            None => write!(s, " target_secs none (objective ≤ {t} not reached)"),
        }
        .expect("writing to a String");
    }
    s
}

/// Training objective against seconds, one line per run.
fn objective_chart(runs: &[(String, &[EpochReport])], title: &str, path: &Path) -> ringreduce::Result<()> {
    let series: Vec<Series> = runs
        .iter()
        .map(|(name, rs)| Series {
            name: name.clone(),
            points: rs.iter().map(|r| (r.wall_secs, r.objective)).collect(),
            band: Vec::new(),
        })
        .collect();
    draw_objective(&series, title, path)
}

/// Draws objective-against-seconds series. A logarithmic axis cannot show
/// an objective of 0 (a separable set without regularisation): then the
/// axis is linear.
fn draw_objective(series: &[Series], title: &str, path: &Path) -> ringreduce::Result<()> {
    let positive = series.iter().all(|s| s.points.iter().all(|p| p.1 > 0.0));
    ringreduce::plot::draw(
        &Chart {
            title,
            x_label: "seconds of training",
            y_label: "training objective",
            log_x: false,
            x_bytes: false,
            log_y: positive,
            series,
        },
        path,
    )
}

/// Draws a `--metrics` file (objective against time), for `ringreduce plot`.
pub fn metrics_charts(text: &str, title: Option<&str>, out: &Path) -> ringreduce::Result<Vec<PathBuf>> {
    let bad = |reason: String| invalid("hogwild metrics", reason);
    let mut points = Vec::new();
    for (k, row) in text.lines().skip(1).filter(|l| !l.trim().is_empty()).enumerate() {
        let f: Vec<&str> = row.split(',').collect();
        let num = |i: usize| -> ringreduce::Result<f64> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("row {}: column {} is not a number", k + 2, i + 1)))
        };
        points.push((num(1)?, num(3)?));
    }
    let series = [Series {
        name: "training objective".into(),
        points,
        band: Vec::new(),
    }];
    let mut files = Vec::new();
    for ext in ["png", "svg"] {
        let path = out.join(format!("objective.{ext}"));
        draw_objective(&series, title.unwrap_or("Hogwild! training objective"), &path)?;
        files.push(path);
    }
    Ok(files)
}

/// Draws a sweep summary (speedup over serial SGD against threads, one
/// line per schedule; a chart per problem), for `ringreduce plot`.
pub fn sweep_charts(text: &str, title: Option<&str>, out: &Path) -> ringreduce::Result<Vec<PathBuf>> {
    let bad = |reason: String| invalid("hogwild summary", reason);
    // problem → schedule → (threads, speedup)
    let mut problems: Vec<(String, Vec<Series>)> = Vec::new();
    for (k, row) in text.lines().skip(1).filter(|l| !l.trim().is_empty()).enumerate() {
        let f: Vec<&str> = row.split(',').collect();
        if f.len() != SWEEP_HEADER.split(',').count() {
            return Err(bad(format!("row {} has {} columns", k + 2, f.len())));
        }
        let (Ok(threads), Ok(speedup)) = (f[2].parse::<f64>(), f[5].parse::<f64>()) else {
            continue; // a schedule that never reached the target
        };
        let slot = match problems.iter().position(|(p, _)| p == f[0]) {
            Some(i) => i,
            None => {
                problems.push((f[0].to_string(), Vec::new()));
                problems.len() - 1
            }
        };
        let lines = &mut problems[slot].1;
        match lines.iter_mut().find(|s| s.name == f[1]) {
            Some(s) => s.points.push((threads, speedup)),
            None => lines.push(Series {
                name: f[1].to_string(),
                points: vec![(threads, speedup)],
                band: Vec::new(),
            }),
        }
    }
    if problems.is_empty() {
        return Err(bad("no rows with a speedup".into()));
    }
    let mut files = Vec::new();
    for (problem, mut series) in problems {
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let heading = format!(
            "{}: {problem}",
            title.unwrap_or("Hogwild! speedup over serial SGD")
        );
        for ext in ["png", "svg"] {
            let path = out.join(format!("speedup-{problem}.{ext}"));
            ringreduce::plot::draw(
                &Chart {
                    title: &heading,
                    x_label: "threads",
                    y_label: "speedup in time to target (serial = 1)",
                    log_x: true,
                    x_bytes: false,
                    log_y: false,
                    series: &series,
                },
                &path,
            )?;
            files.push(path);
        }
    }
    Ok(files)
}
