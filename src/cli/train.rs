//! `ringreduce train`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::train::data::Sets;
use ringreduce::train::log::{MetricsLog, Row};
use ringreduce::train::{
    data, BucketSize, Mlp, Model, ParameterServer, Plan, PlanEpoch, PlanOptions, Trainer,
};
use ringreduce::{Algorithm, Error};

use super::report::{epoch_header, epoch_row, eval_row};
use super::watch::{describe, histogram, short_name, Watch};
use super::{fail, on_world_at, one, writable};

/// Settings of `ringreduce train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    recipe: super::Recipe,
    /// Held-out set to measure accuracy on: a CSV file, or a directory's
    /// t10k-* IDX files (default: the data set's own test part; a CSV has none).
    #[arg(long, value_name = "FILE")]
    test: Option<PathBuf>,
    /// Hold out this fraction of the training set (seeded by --seed,
    /// stratified by class) and report val_accuracy on it.
    #[arg(long, value_name = "F", conflicts_with = "test")]
    val_split: Option<f64>,
    /// Gradient all-reduce algorithm of synchronous SGD.
    #[arg(long, default_value = "ring", value_parser = one::<Algorithm>)]
    algo: Algorithm,
    /// What the ranks exchange: a strategy of the trainer (sync:ALGO,
    /// local:tau=T, gossip:ring, …; --help lists every spelling) or a
    /// parameter server (ps:async, ps:ssp=S) (default: sync with --algo).
    #[arg(long, value_name = "SPEC", conflicts_with = "algo", long_help = super::strategy_help())]
    strategy: Option<String>,
    /// Parameter server: server ranks (the first ones), each holding a
    /// contiguous shard of the parameters.
    #[arg(long, value_name = "S", default_value_t = 1)]
    servers: usize,
    /// Parameter server: steps whose gradients a worker sums into one push.
    #[arg(long, value_name = "N", default_value_t = 1)]
    n_push: usize,
    /// Parameter server: a worker pulls the parameters every N steps.
    #[arg(long, value_name = "N", default_value_t = 1)]
    n_fetch: usize,
    /// Parameter server: divide an update's learning rate by its staleness.
    #[arg(long)]
    staleness_lr: bool,
    /// Parameter server: write the order in which the servers applied
    /// updates and served pulls to this file.
    #[arg(long, value_name = "LOG")]
    record: Option<PathBuf>,
    /// Parameter server: force the order of a --record file; the run's
    /// parameters repeat bit for bit.
    #[arg(long, value_name = "LOG", conflicts_with = "record")]
    replay: Option<PathBuf>,
    /// Gradient compression of synchronous SGD: none; fp16 or bf16 (16-bit
    /// floats on the wire of the ring, accumulated in f32); powersgd:rank=R
    /// (low-rank factors, error feedback); topk:F (each rank's ⌈F·n⌉
    /// largest coordinates, all-gathered, error feedback); randomk:F
    /// (coordinates shared by the ranks, all-reduced); qsgd:levels=S.
    /// The same as `--strategy sync:ring,compress=C`.
    #[arg(long, value_name = "C", default_value = "none")]
    compress: String,
    /// Turn off error feedback of --compress topk:F (to compare).
    #[arg(long)]
    no_error_feedback: bool,
    /// Gradient buckets of synchronous SGD (f32 or fp16/bf16 on the wire): their
    /// all-reduces start during the backward pass, on a communication
    /// thread, last layer first. auto: the size the cost model predicts
    /// fastest from the first steps' timings, kept if a trial confirms it
    /// (with algorithms whose sums a cut cannot change: any at 2 ranks,
    /// butterfly, rabenseifner, naive, central, shm); N: buckets of at
    /// least N MiB; 0: one all-reduce after the backward pass.
    #[arg(long, value_name = "MB", default_value = "auto", value_parser = one::<BucketSize>)]
    bucket_mb: BucketSize,
    /// Write metrics to this CSV file (rank 0): a row every --log-every
    /// steps and one per epoch, rewritten after every epoch.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Log the loss every N steps: a line on stderr (without a terminal)
    /// and a row in --metrics; 0 for none.
    #[arg(long, value_name = "N", default_value_t = 50)]
    log_every: usize,
    /// Draw loss and accuracy per epoch to this PNG or SVG file (rank 0).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write every rank's timeline to this JSON file (rank 0): Chrome trace
    /// events for Perfetto or chrome://tracing.
    #[arg(long, value_name = "FILE.json")]
    timeline: Option<PathBuf>,
    /// Rank 0 writes a checkpoint here after every epoch.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Also write --checkpoint after every STEPS steps (counted over the
    /// run), so a crash loses at most STEPS steps.
    #[arg(long, value_name = "STEPS", requires = "checkpoint")]
    checkpoint_every: Option<usize>,
    /// Continue from --checkpoint (on any rank count; strategies whose
    /// replicas differ start from their average on another one),
    /// appending to --metrics.
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Stop after this epoch of the --epochs planned (which still set the
    /// schedule and a strategy's final averaging): a time slice of a longer
    /// run, continued with --resume.
    #[arg(long, value_name = "EPOCH", requires = "checkpoint")]
    stop_after: Option<usize>,
    /// (From `ringreduce elastic`.) Rank 0 writes its global step here
    /// after every step.
    #[arg(long, hide = true)]
    elastic_progress: Option<PathBuf>,
    /// (From `ringreduce elastic`.) A stall report is also appended here.
    #[arg(long, hide = true)]
    elastic_stall: Option<PathBuf>,
    /// (From `ringreduce elastic`.) This launch is restart N after a
    /// fault: `N<TAB>UNIX_SECS<TAB>STEP_REACHED<TAB>CAUSE`.
    #[arg(long, hide = true, value_parser = super::watch::restart_note)]
    elastic_restart: Option<super::watch::RestartNote>,
}

/// Checks everything that can be checked before MPI starts, trains, and
/// writes the metrics and the plot.
pub fn run(o: Args) -> ExitCode {
    if let Some(path) = &o.elastic_stall {
        // SAFETY (of the environment): no other thread runs yet.
        std::env::set_var(ringreduce::transport::STALL_FILE, path);
    }
    // What is the same on every rank is checked before MPI starts.
    let planned = (|| -> ringreduce::Result<(Plan, Trainer)> {
        preflight(&o)?;
        let options = PlanOptions {
            algorithm: o.algo,
            compress: Some(o.compress.clone()),
            no_error_feedback: o.no_error_feedback,
            buckets: o.bucket_mb,
            parameter_server: ParameterServer {
                servers: o.servers,
                n_push: o.n_push,
                n_fetch: o.n_fetch,
                staleness_lr: o.staleness_lr,
                record: o.record.clone(),
                replay: o.replay.clone(),
                ..ParameterServer::default()
            },
        };
        let plan = Plan::new(o.strategy.as_deref(), &options)?;
        options.check_applies(&plan)?;
        Ok((plan, trainer(&o)?))
    })();
    let (plan, recipe) = match planned {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    // A communication thread for the buckets needs MPI_THREAD_MULTIPLE;
    // `--bucket-mb 0` runs at the same level, so the two compare alike.
    let threading = plan
        .wants_comm_thread()
        .then_some(ringreduce::mpi::Threading::Multiple);
    on_world_at(None, threading, |group| train(&o, &plan, recipe, group))
}

/// `run` on every rank, once MPI is up.
fn train(o: &Args, plan: &Plan, recipe: Trainer, group: &ringreduce::Group<ringreduce::Mpi>) -> ExitCode {
    // Each rank reads the data itself: a rank that cannot is named by
    // rank 0 (`rank 1: …`), and every rank stops.
    let loaded = load(o);
    let (sets, model) = match group.agree(loaded) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (p, root) = (group.size(), group.rank() == 0);
    // Rank 0 keeps the metrics of the epochs a resumed run does not redo.
    let mut log = MetricsLog::new(p, plan.name(), sets.kind.accuracy_column());
    if let Err(e) = group.agree(keep_earlier(o, root, &mut log)) {
        return fail(e);
    }
    if let Err(e) = plan.check(p) {
        return fail(e);
    }
    if root {
        println!("{}", header(o, plan, &sets, &model, p));
    }
    let mut params = recipe.init_params(&model);
    let watch = Watch::new(root, o.log_every, o.recipe.batch);
    let recipe = watch.attach(recipe, o.recipe.epochs, o.checkpoint.clone().unwrap_or_default());
    let recipe = watch.elastic(recipe, o.elastic_progress.clone(), o.elastic_restart.clone());
    let recipe = watch.timeline(recipe, o.timeline.clone());
    if root {
        println!(
            "{}",
            epoch_header(
                sets.kind.accuracy_column().map(short_name),
                plan.replicas_differ()
            )
        );
    }
    let mut saved = Ok(());
    let mut first = true;
    let on_epoch = |e: &PlanEpoch| {
        if !root {
            return;
        }
        let m = &e.metrics;
        for point in &m.evals {
            watch.progress.println(&eval_row(m.epoch, point));
        }
        watch.progress.println(&epoch_row(m));
        if !e.staleness.is_empty() {
            watch
                .progress
                .println(&format!("       staleness {}", histogram(&e.staleness)));
            let servers = p - e.per_worker.len();
            let by: Vec<String> = e
                .per_worker
                .iter()
                .enumerate()
                .map(|(i, h)| format!("rank {}: {}", i + servers, h.iter().sum::<u64>()))
                .collect();
            watch
                .progress
                .println(&format!("       updates   {}", by.join(", ")));
        }
        if std::mem::take(&mut first) {
            log.truncate_after(m.epoch - 1);
        }
        for row in watch.progress.take_rows() {
            log.push(row);
        }
        log.push(Row::Epoch(m.clone()));
        if let (Some(path), Ok(())) = (&o.metrics, &saved) {
            saved = log.save(path);
        }
    };
    let result = plan.fit(
        &recipe,
        group,
        &model,
        &mut params,
        &sets.train,
        sets.held_out.as_ref(),
        on_epoch,
    );
    watch.progress.finish();
    let result = result.and_then(|h| group.agree(saved).map(|()| h));
    let history = match result {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let plotted = match (&o.plot, root) {
        (Some(path), true) => ringreduce::plot::training(
            &log,
            &format!("{}, {}", super::plot::training_title(&log), o.recipe.data),
            path,
        ),
        _ => Ok(()),
    };
    if let Err(e) = group.agree(plotted) {
        return fail(e);
    }
    if root {
        let outputs = [("metrics", &o.metrics), ("plot", &o.plot), ("record", &o.record)];
        for (what, path) in outputs.into_iter().chain([("timeline", &o.timeline)]) {
            if let Some(path) = path {
                println!("{what}: {}", path.display());
            }
        }
        if history.is_empty() {
            println!("no epochs left to run");
        }
        if let Some(line) = watch.steps_line() {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

/// The run's first line: ranks, data, model, recipe and plan.
fn header(o: &Args, plan: &Plan, sets: &Sets, model: &Mlp, p: usize) -> String {
    format!(
        "# train: {p} rank{}, {} ({}), model {:?} ({} parameters), batch {}, lr {}, momentum {}, {}{}",
        if p == 1 { "" } else { "s" },
        o.recipe.data,
        describe(sets),
        model.sizes(),
        model.num_params(),
        o.recipe.batch,
        o.recipe.lr,
        o.recipe.momentum,
        plan.describe(p),
        o.recipe
            .straggler
            .map_or(String::new(), |(r, f)| format!(", rank {r} slowed {f}×"))
    )
}

/// A resumed run's rank 0 takes the lines of its `--metrics` file into
/// `log` (the epochs it does not redo); other ranks and fresh runs keep
/// `log` as it is.
fn keep_earlier(o: &Args, root: bool, log: &mut MetricsLog) -> ringreduce::Result<()> {
    if let (true, true, Some(path)) = (root, o.resume, &o.metrics) {
        if path.exists() {
            if let Some(old) = earlier_metrics(path, log)? {
                log.lines = old.lines;
            }
        }
    }
    Ok(())
}

/// The metrics file a resumed run appends to, when it is one this run can
/// continue (the same held-out column).
fn earlier_metrics(path: &std::path::Path, log: &MetricsLog) -> ringreduce::Result<Option<MetricsLog>> {
    let old = MetricsLog::load(path)?;
    if old.accuracy != log.accuracy {
        return Err(Error::Data {
            path: path.display().to_string(),
            reason: format!(
                "has the columns `{}`, this run writes `{}`: move it away to start a new file",
                old.header(),
                log.header()
            ),
        });
    }
    Ok(Some(old))
}

/// Refuses settings and output paths that would fail after training.
fn preflight(o: &Args) -> ringreduce::Result<()> {
    let bad = |what: &'static str, reason: String| Error::InvalidArgument { what, reason };
    if o.recipe.epochs == 0 {
        return Err(bad("--epochs", "must be at least 1".into()));
    }
    for (flag, path) in [
        ("--metrics", &o.metrics),
        ("--plot", &o.plot),
        ("--checkpoint", &o.checkpoint),
        ("--record", &o.record),
        ("--timeline", &o.timeline),
    ] {
        if let Some(path) = path {
            writable(path).map_err(|e| bad(flag, format!("{}: {e}", path.display())))?;
        }
    }
    if let Some(plot) = &o.plot {
        ringreduce::plot::check_extension(plot)?;
    }
    Ok(())
}

/// The data sets and the model (each rank reads the data itself).
fn load(o: &Args) -> ringreduce::Result<(Sets, Mlp)> {
    let sets = data::load(&o.recipe.data, o.test.as_deref(), o.val_split, o.recipe.seed)?;
    let classes = sets
        .held_out
        .iter()
        .fold(sets.train.classes, |c, d| c.max(d.classes));
    let model = Mlp::named(&o.recipe.model, &o.recipe.hidden, sets.train.dim, classes)?;
    Ok((sets, model))
}

/// The trainer of the recipe and the checkpoint settings (the plan brings
/// its strategy).
fn trainer(o: &Args) -> ringreduce::Result<Trainer> {
    let mut builder = o
        .recipe
        .builder()
        .resume(o.resume)
        .stop_after(o.stop_after)
        .checkpoint_every(o.checkpoint_every);
    if let Some(path) = &o.checkpoint {
        builder = builder.checkpoint(path);
    }
    builder.build()
}
