//! `ringreduce train`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use ringreduce::train::data::{HeldOut, Sets};
use ringreduce::train::log::{MetricsLog, Row};
use ringreduce::train::{
    buckets, data, AnyStrategy, BucketChoice, BucketSize, EpochMetrics, Mlp, Model, Strategy, Trainer,
};
use ringreduce::{Algorithm, Error};

use super::progress::Progress;
use super::report::{epoch_header, epoch_row};
use super::{fail, on_world, on_world_at, one, writable, Spec};

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
    #[arg(long, value_name = "SPEC", value_parser = one::<Spec>, conflicts_with = "algo", long_help = super::strategy_help())]
    strategy: Option<Spec>,
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
    /// Gradient buckets of synchronous SGD (f32 on the wire): their
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
    /// Rank 0 writes a checkpoint here after every epoch.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from --checkpoint (on any rank count dividing --batch),
    /// appending to --metrics.
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Stop after this epoch of the --epochs planned (which still set the
    /// schedule and a strategy's final averaging): a time slice of a longer
    /// run, continued with --resume.
    #[arg(long, value_name = "EPOCH", requires = "checkpoint")]
    stop_after: Option<usize>,
}

/// Checks everything that can be checked before MPI starts, trains, and
/// writes the metrics and the plot.
pub fn run(o: Args) -> ExitCode {
    if let Some(Spec::Ps {
        bound,
        servers,
        dynamic,
    }) = o.strategy
    {
        return run_ps(o, bound, servers, dynamic);
    }
    // What is the same on every rank is checked before MPI starts.
    let opt = (|| -> ringreduce::Result<Trainer<AnyStrategy>> {
        preflight(&o)?;
        let mut strategy = match &o.strategy {
            Some(Spec::Strategy(s)) => s.clone(),
            _ => AnyStrategy::Sync(ringreduce::train::GradientAllReduce::new(o.algo)),
        };
        let ps_only = [
            ("--servers", o.servers != 1),
            ("--n-push", o.n_push != 1),
            ("--n-fetch", o.n_fetch != 1),
            ("--staleness-lr", o.staleness_lr),
            ("--record", o.record.is_some()),
            ("--replay", o.replay.is_some()),
        ];
        if let Some((flag, _)) = ps_only.iter().find(|(_, given)| *given) {
            return Err(Error::InvalidArgument {
                what: flag,
                reason: "is a setting of the parameter server (--strategy ps:async or ps:ssp=S)".into(),
            });
        }
        if o.compress.trim() != "none" || o.no_error_feedback {
            match &strategy {
                AnyStrategy::Sync(s) => {
                    let ef = if o.no_error_feedback {
                        ",error-feedback=off"
                    } else {
                        ""
                    };
                    strategy = format!("sync:{},compress={}{ef}", s.algorithm, o.compress.trim()).parse()?;
                }
                other => {
                    return Err(ringreduce::Error::InvalidArgument {
                        what: "--compress",
                        reason: format!("compresses the gradient of sync strategies, not {}", other.name()),
                    })
                }
            }
            strategy.check(1)?;
        }
        match &mut strategy {
            AnyStrategy::Sync(s) if s.wire.is_none() => s.buckets = o.bucket_mb,
            _ if matches!(o.bucket_mb, BucketSize::Bytes(_)) => {
                return Err(Error::InvalidArgument {
                    what: "--bucket-mb",
                    reason: format!(
                        "cuts the gradient all-reduce of sync strategies (f32 on the wire), not {}",
                        strategy.name()
                    ),
                })
            }
            _ => {}
        }
        trainer(&o, strategy)
    })();
    let opt = match opt {
        Ok(opt) => opt,
        Err(e) => return fail(e),
    };
    // A communication thread for the buckets needs MPI_THREAD_MULTIPLE;
    // `--bucket-mb 0` runs at the same level, so the two compare alike.
    let threading = match opt.strategy() {
        AnyStrategy::Sync(s) if s.wire.is_none() => Some(ringreduce::mpi::Threading::Multiple),
        _ => None,
    };
    on_world_at(None, threading, |group| {
        // Each rank reads the data itself: a rank that cannot is named by
        // rank 0 (`rank 1: …`), and every rank stops.
        let loaded = load(&o);
        let (sets, model) = match group.agree(loaded) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let root = group.rank() == 0;
        // Rank 0 keeps the metrics of the epochs a resumed run does not redo.
        let mut log = MetricsLog::new(group.size(), opt.strategy().name(), sets.kind.accuracy_column());
        if let Err(e) = group.agree(keep_earlier(&o, root, &mut log)) {
            return fail(e);
        }
        let p = group.size();
        if let Err(e) = opt.strategy().check(p) {
            return fail(e);
        }
        if root {
            println!(
                "# train: {p} rank{}, {} ({}), model {:?} ({} parameters), batch {}, lr {}, momentum {}, {}",
                if p == 1 { "" } else { "s" },
                o.recipe.data,
                describe(&sets),
                model.sizes(),
                model.num_params(),
                o.recipe.batch,
                o.recipe.lr,
                o.recipe.momentum,
                opt.strategy().describe(p)
            );
        }
        let mut params = opt.init_params(&model);
        let progress = Arc::new(Progress::new(root, o.log_every, o.recipe.batch));
        let resumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let chosen = Arc::new(std::sync::Mutex::new(None::<BucketChoice>));
        let chosen_hook = chosen.clone();
        let step_times = Arc::new(std::sync::Mutex::new(Vec::<[f64; 4]>::new()));
        let first_step = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let opt = {
            let (progress, resumed) = (progress.clone(), resumed.clone());
            let (epochs, checkpoint) = (o.recipe.epochs, o.checkpoint.clone().unwrap_or_default());
            let steps = step_times.clone();
            let first = first_step.clone();
            opt.on_step(move |m| {
                progress.step(m);
                // The steps after a (resumed) run's warm-up.
                let from = first.fetch_min(m.global_step, std::sync::atomic::Ordering::Relaxed);
                if m.global_step >= from.min(m.global_step) + buckets::SETTLED {
                    if let Ok(mut s) = steps.lock() {
                        s.push([m.step_secs, m.compute_secs, m.exposed_secs, m.comm_secs]);
                    }
                }
            })
            .on_buckets(move |c| {
                if root {
                    println!("{}", describe_buckets(c));
                }
                if let Ok(mut slot) = chosen_hook.lock() {
                    *slot = Some(c.clone());
                }
            })
            .on_resume(move |&done| {
                resumed.store(done, std::sync::atomic::Ordering::Relaxed);
                if root {
                    println!(
                        "resumed from epoch {done} of {epochs} (checkpoint {})",
                        checkpoint.display()
                    );
                }
            })
        };
        if root {
            println!(
                "{}",
                epoch_header(
                    sets.kind.accuracy_column().map(short_name),
                    opt.strategy().replicas_differ()
                )
            );
        }
        let mut saved = Ok(());
        let on_epoch = |m: &EpochMetrics| {
            if !root {
                return;
            }
            progress.println(&epoch_row(m));
            if m.epoch == resumed.load(std::sync::atomic::Ordering::Relaxed) + 1 {
                log.truncate_after(m.epoch - 1);
            }
            for row in progress.take_rows() {
                log.push(row);
            }
            log.push(Row::Epoch(m.clone()));
            if let (Some(path), Ok(())) = (&o.metrics, &saved) {
                saved = log.save(path);
            }
        };
        let result = opt.fit(
            group,
            &model,
            &mut params,
            &sets.train,
            sets.held_out.as_ref(),
            on_epoch,
        );
        progress.finish();
        let result = result.and_then(|h| group.agree(saved).map(|()| h));
        let history = match result {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        if root {
            if let Some(path) = &o.metrics {
                println!("metrics: {}", path.display());
            }
            if let Some(path) = &o.plot {
                if let Err(e) = ringreduce::plot::training(
                    &log,
                    &format!("{}, {}", super::plot::training_title(&log), o.recipe.data),
                    path,
                ) {
                    return fail(e);
                }
                println!("plot: {}", path.display());
            }
            if history.is_empty() {
                println!("no epochs left to run");
            }
            let choice = chosen.lock().ok().and_then(|c| c.clone());
            let steps = step_times.lock().map(|s| s.clone()).unwrap_or_default();
            if !steps.is_empty() {
                println!("{}", measured_steps(choice.as_ref(), &steps));
            }
        }
        ExitCode::SUCCESS
    })
}

/// The bucket choice, one line (and the sweep of `auto`).
fn describe_buckets(c: &BucketChoice) -> String {
    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    let mb = |b: u64| format!("{:.3} MiB", b as f64 / 1048576.0);
    let what = match (c.cap_bytes, c.buckets.len()) {
        (Some(cap), n) => format!(
            "{} buckets of ≥ {} ({} MB, last layer first)",
            n,
            mb(cap),
            c.buckets
                .iter()
                .map(|&k| format!("{:.2}", k as f64 * 4.0 / 1e6))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        (None, _) => "off (one all-reduce after the backward pass)".into(),
    };
    let mut line = format!(
        "buckets: --bucket-mb {} → {what}; predicted step {} (one all-reduce: {}; warm-up measured {}{}), α {:.1} µs, β {:.3} ns/B{}",
        c.requested,
        ms(c.predicted_secs),
        ms(c.predicted_unbucketed_secs),
        ms(c.warmup_step_secs),
        c.trial_secs.map_or(String::new(), |t| format!(", with buckets {}", ms(t))),
        c.alpha * 1e6,
        c.beta * 1e9,
        match (&c.note, c.threaded) {
            (Some(n), _) => format!(" ({n})"),
            (None, false) => " (no communication thread: buckets run in place)".into(),
            _ => String::new(),
        }
    );
    if !c.sweep.is_empty() {
        let sweep: Vec<String> = c
            .sweep
            .iter()
            .map(|s| match s.cap_bytes {
                Some(b) => format!("{} {}×{}", mb(b), s.buckets, ms(s.predicted_secs)),
                None => format!("0 {}", ms(s.predicted_secs)),
            })
            .collect();
        line += &format!("\n         predicted per cap: {}", sweep.join(", "));
    }
    line
}

/// Medians of the steps after the warm-up (against the buckets'
/// prediction, when they were chosen).
fn measured_steps(c: Option<&BucketChoice>, steps: &[[f64; 4]]) -> String {
    let median = |i: usize| {
        let mut v: Vec<f64> = steps.iter().map(|s| s[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (step, compute, exposed, comm) = (median(0), median(1), median(2), median(3));
    let overlap = if comm > 0.0 {
        (1.0 - exposed / comm).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let predicted = match c {
        Some(c) => format!(
            "; predicted {:.1} ms, {:+.1} %",
            c.predicted_secs * 1e3,
            100.0 * (step / c.predicted_secs.max(1e-12) - 1.0)
        ),
        None => String::new(),
    };
    format!(
        "steps: median {:.1} ms (of {} steps after the first {}{predicted}): compute {:.1} ms, communication {:.1} ms, exposed {:.1} ms, overlap {:.0} %",
        step * 1e3,
        steps.len(),
        buckets::SETTLED,
        compute * 1e3,
        comm * 1e3,
        exposed * 1e3,
        100.0 * overlap
    )
}

/// `60000 train / 10000 test, 784 features, 10 classes`, and what a run
/// without a held-out set does not measure.
fn describe(sets: &Sets) -> String {
    let (train, n) = (&sets.train, sets.held_out.as_ref().map_or(0, |d| d.len()));
    let held = match sets.kind {
        HeldOut::Test => format!(" / {n} test"),
        HeldOut::Validation(f) => format!(" / {n} validation ({f} of the training set, stratified)"),
        HeldOut::None => ", no held-out set: accuracy not measured (give --test or --val-split)".into(),
    };
    format!(
        "{} train{held}, {} features, {} classes",
        train.len(),
        train.dim,
        train.classes
    )
}

/// `test_accuracy` → `test_acc` in the terminal table.
fn short_name(column: &str) -> &str {
    column.strip_suffix("uracy").unwrap_or(column)
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

/// `train --strategy ps:…`: the parameter server.
fn run_ps(o: Args, bound: Option<u64>, servers: Option<usize>, dynamic: bool) -> ExitCode {
    let ps = ringreduce::train::ParameterServer {
        servers: servers.unwrap_or(o.servers),
        max_staleness: bound,
        n_push: o.n_push,
        n_fetch: o.n_fetch,
        staleness_lr: o.staleness_lr,
        record: o.record.clone(),
        replay: o.replay.clone(),
        dynamic,
    };
    let opt = (|| -> ringreduce::Result<Trainer<AnyStrategy>> {
        preflight(&o)?;
        for (flag, given) in [("--compress", o.compress.trim() != "none" || o.no_error_feedback)] {
            if given {
                return Err(Error::InvalidArgument {
                    what: flag,
                    reason: format!("is not available with the parameter server ({})", ps.name()),
                });
            }
        }
        if let Some(path) = &o.record {
            writable(path).map_err(|e| Error::InvalidArgument {
                what: "--record",
                reason: format!("{}: {e}", path.display()),
            })?;
        }
        trainer(&o, AnyStrategy::default())
    })();
    let opt = match opt {
        Ok(opt) => opt,
        Err(e) => return fail(e),
    };
    on_world(None, |group| {
        let loaded = load(&o);
        let (sets, model) = match group.agree(loaded) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let (p, root) = (group.size(), group.rank() == 0);
        if root {
            println!(
                "# train: {p} ranks ({} servers, {} workers), {} ({}), model {:?} ({} parameters), batch {}, lr {}, momentum {} (at the servers), {}{}",
                ps.servers,
                p.saturating_sub(ps.servers),
                o.recipe.data,
                describe(&sets),
                model.sizes(),
                model.num_params(),
                o.recipe.batch,
                o.recipe.lr,
                o.recipe.momentum,
                ps.name(),
                o.recipe.straggler.map_or(String::new(), |(r, f)| format!(", rank {r} slowed {f}×"))
            );
        }
        // A resumed run appends to the metrics of the epochs it does not redo.
        let mut log = MetricsLog::new(p, ps.name(), sets.kind.accuracy_column());
        if let Err(e) = group.agree(keep_earlier(&o, root, &mut log)) {
            return fail(e);
        }
        let mut params = opt.init_params(&model);
        let result = ps.fit(
            &opt,
            group,
            &model,
            &mut params,
            &sets.train,
            sets.held_out.as_ref(),
        );
        let epochs = match result {
            Ok(e) => e,
            Err(e) => return fail(e),
        };
        if let Some(first) = epochs.first() {
            log.truncate_after(first.metrics.epoch - 1);
        }
        if root && epochs.is_empty() {
            println!("no epochs left to run");
        }
        if root {
            println!(
                "{}",
                epoch_header(sets.kind.accuracy_column().map(short_name), false)
            );
            for e in &epochs {
                println!("{}", epoch_row(&e.metrics));
                println!("       staleness {}", histogram(&e.staleness));
                let by: Vec<String> = e
                    .per_worker
                    .iter()
                    .enumerate()
                    .map(|(i, h)| format!("rank {}: {}", i + ps.servers, h.iter().sum::<u64>()))
                    .collect();
                println!("       updates   {}", by.join(", "));
                log.push(Row::Epoch(e.metrics.clone()));
            }
        }
        let saved = match (&o.metrics, root) {
            (Some(path), true) => log.save(path),
            _ => Ok(()),
        };
        let plotted = match (&o.plot, root) {
            (Some(path), true) => {
                ringreduce::plot::training(&log, &format!("{}, {}", ps.name(), o.recipe.data), path)
            }
            _ => Ok(()),
        };
        if let Err(e) = group.agree(saved.and(plotted)) {
            return fail(e);
        }
        if root {
            for (what, path) in [("metrics", &o.metrics), ("plot", &o.plot), ("record", &o.record)] {
                if let Some(path) = path {
                    println!("{what}: {}", path.display());
                }
            }
        }
        ExitCode::SUCCESS
    })
}

/// `0:120 1:80 2:3 (mean 0.64, max 2)`: updates by staleness.
fn histogram(counts: &[u64]) -> String {
    let total: u64 = counts.iter().sum();
    let mean = counts
        .iter()
        .enumerate()
        .map(|(s, &c)| s as f64 * c as f64)
        .sum::<f64>()
        / total.max(1) as f64;
    let bins: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(s, c)| format!("{s}:{c}"))
        .collect();
    format!(
        "{} (mean {mean:.2}, max {})",
        bins.join(" "),
        counts.len().saturating_sub(1)
    )
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

/// The trainer of `strategy` with the recipe and the checkpoint settings.
fn trainer(o: &Args, strategy: AnyStrategy) -> ringreduce::Result<Trainer<AnyStrategy>> {
    let mut builder = o
        .recipe
        .builder(strategy)
        .resume(o.resume)
        .stop_after(o.stop_after);
    if let Some(path) = &o.checkpoint {
        builder = builder.checkpoint(path);
    }
    builder.build()
}
