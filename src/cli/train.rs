//! `ringreduce train`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::train::{data, Dataset, EpochMetrics, Mlp, Model, SyncSgd};
use ringreduce::{Algorithm, Error};

use super::report::{epoch_row, metrics_csv, EPOCH_HEADER};
use super::{fail, launched, on_world, one, writable};

/// Settings of `ringreduce train`.
#[derive(clap::Args, Debug)]
pub struct Args {
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

/// Checks everything that can be checked before MPI starts, trains, and
/// writes the metrics and the plot.
pub fn run(o: Args) -> ExitCode {
    // What is the same on every rank is checked before MPI starts.
    let opt = (|| -> ringreduce::Result<SyncSgd> {
        preflight(&o)?;
        let mut builder = SyncSgd::builder().resume(o.resume);
        if let Some(path) = &o.checkpoint {
            builder = builder.checkpoint(path);
        }
        builder
            .algorithm(o.algo)
            .batch(o.batch)
            .lr(o.lr)
            .momentum(o.momentum)
            .epochs(o.epochs)
            .seed(o.seed)
            .build()
    })();
    let opt = match opt {
        Ok(opt) => opt,
        Err(e) => return fail(e),
    };
    on_world(None, |group| {
        // Each rank reads the data itself: a rank that cannot is named by
        // rank 0 (`rank 1: …`), and every rank stops.
        let loaded = (|| -> ringreduce::Result<(Dataset, Dataset, Mlp)> {
            let (train, test) = data::named(&o.data, o.seed)?;
            let model = Mlp::named(&o.model, &o.hidden, train.dim, train.classes.max(test.classes))?;
            Ok((train, test, model))
        })();
        let (train, test, model) = match group.agree(loaded) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let root = group.rank() == 0;
        if root {
            println!(
            "# train: {} ranks, {} ({} train / {} test, {} features, {} classes), model {:?} ({} parameters), batch {}, lr {}, momentum {}, {}",
            group.size(), o.data, train.len(), test.len(), train.dim, train.classes,
            model.sizes(), model.num_params(), o.batch, o.lr, o.momentum, o.algo
        );
            println!("{EPOCH_HEADER}");
        }
        let mut params = opt.init_params(&model);
        // A progress bar on a terminal; plain per-epoch lines otherwise. Under
        // mpirun a rank's stdout is a pseudo-terminal even when the job's output
        // goes to a file, so launched ranks always print plain lines.
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let bar = (root && terminal && !launched()).then(progress_bar);
        let opt = match bar.clone() {
            Some(bar) => opt.on_step(move |epoch, step, steps| {
                if step == 1 {
                    bar.set_length(steps as u64);
                    bar.set_prefix(epoch.to_string());
                }
                bar.set_position(step as u64);
            }),
            None => opt,
        };
        let on_epoch = |m: &EpochMetrics| match &bar {
            Some(bar) if root && !bar.is_hidden() => bar.println(epoch_row(m)),
            _ if root => println!("{}", epoch_row(m)),
            _ => {}
        };
        let result = opt.fit(group, &model, &mut params, &train, Some(&test), on_epoch);
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let history = match result {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        if root {
            if let Err(e) = outputs(&o, &history) {
                return fail(e);
            }
        }
        ExitCode::SUCCESS
    })
}

/// Refuses settings and output paths that would fail after training.
fn preflight(o: &Args) -> ringreduce::Result<()> {
    let bad = |what: &'static str, reason: String| Error::InvalidArgument { what, reason };
    if o.epochs == 0 {
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

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stdout());
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:40}] {pos}/{len} steps, {eta} left")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Rank 0 writes the metrics CSV and draws the plot.
fn outputs(o: &Args, history: &[EpochMetrics]) -> ringreduce::Result<()> {
    if let Some(path) = &o.metrics {
        std::fs::write(path, metrics_csv(history)).map_err(|e| Error::Data {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        println!("metrics: {}", path.display());
    }
    if let Some(path) = &o.plot {
        ringreduce::plot::training(history, "synchronous SGD", path)?;
        println!("plot: {}", path.display());
    }
    Ok(())
}
