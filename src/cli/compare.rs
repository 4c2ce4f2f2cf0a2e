//! `ringreduce compare`: every training strategy on the same model, data,
//! seed and global batch, in one MPI job, with exact communication
//! accounting; a CSV of epochs, a table, and accuracy against time and
//! against bytes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::plot::{Chart, Series};
use ringreduce::train::{data, AnyStrategy, EpochMetrics, Mlp, Model, Strategy};
use ringreduce::Error;

use super::{fail, on_world, one, writable, Spec};

/// Settings of `ringreduce compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    recipe: super::Recipe,
    /// The strategies, space-separated, in the spellings of `train
    /// --strategy`: sync:ring local:tau=8 postlocal:warmup=200,tau=8 oneshot
    /// gossip:ring ps:async ps:ssp=2 ps:async,dynamic …
    #[arg(long, required = true, num_args = 1.., value_name = "SPEC", value_parser = one::<Spec>, long_help = super::strategy_help())]
    strategies: Vec<Spec>,
    /// Server ranks of the parameter-server strategies (ps:…).
    #[arg(long, value_name = "S", default_value_t = 1)]
    servers: usize,
    /// Accuracy whose first crossing the table reports time and bytes for.
    #[arg(long, value_name = "A", default_value_t = 0.85)]
    target_acc: f64,
    /// The CSV of every strategy's epochs (rank 0); the parameter-server
    /// strategies' staleness histograms go to OUT-staleness.csv beside it.
    #[arg(long)]
    out: PathBuf,
    /// Directory for accuracy_vs_time.{png,svg} and accuracy_vs_bytes.{png,svg}
    /// (and staleness.{png,svg} when a parameter-server strategy runs).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Chart title (default: ranks, data set and epochs).
    #[arg(long, allow_hyphen_values = true)]
    title: Option<String>,
}

/// The CSV's header: the strategy's spelling first.
pub const HEADER: &str =
    "strategy,epoch,ranks,wall_secs,bytes_sent,rounds,train_loss,test_accuracy,consensus_distance";

/// One strategy's run: its epochs with cumulative time, bytes and rounds.
struct Curve {
    name: String,
    epochs: Vec<EpochMetrics>,
    /// Why the run stopped early (a non-finite loss or gradient).
    stopped: Option<String>,
    /// Bytes the cost model predicts for the epochs run.
    predicted: u64,
    /// Parameter-server strategies: per epoch, `[s]` = updates applied
    /// with staleness s (empty for the others).
    staleness: Vec<Vec<u64>>,
}

impl Curve {
    /// (epoch, cumulative seconds, cumulative bytes, cumulative rounds, metrics).
    fn cumulative(&self) -> impl Iterator<Item = (f64, u64, u64, &EpochMetrics)> {
        let (mut t, mut b, mut r) = (0.0, 0u64, 0u64);
        self.epochs.iter().map(move |m| {
            t += m.epoch_secs;
            b += m.allreduce_bytes;
            r += m.rounds;
            (t, b, r, m)
        })
    }

    /// Seconds and bytes when the accuracy first reached `target`.
    fn to_target(&self, target: f64) -> Option<(f64, u64, usize)> {
        self.cumulative()
            .find(|(_, _, _, m)| m.test_accuracy.is_some_and(|a| a >= target))
            .map(|(t, b, _, m)| (t, b, m.epoch))
    }
}

fn csv(curves: &[Curve], ranks: usize) -> String {
    let mut out = format!("{HEADER}\n");
    for c in curves {
        for (t, b, r, m) in c.cumulative() {
            let _ = writeln!(
                out,
                "{},{},{ranks},{t},{b},{r},{},{},{}",
                ringreduce::train::log::csv_field(&c.name),
                m.epoch,
                m.train_loss,
                m.test_accuracy.map_or(String::new(), |a| a.to_string()),
                m.consensus_distance.map_or(String::new(), |d| d.to_string())
            );
        }
    }
    out
}

/// The summary table; the consensus column is the largest distance at
/// the end of an epoch (the last step of a run averages it to 0); KB_step
/// is what the busiest rank sends per step; enc% and dec% are the shares
/// of the training time spent encoding and decoding.
fn table(curves: &[Curve], target: f64) -> String {
    let mut out = format!(
        "{:<34} {:>6} {:>14} {:>12} {:>9} {:>8} {:>9} {:>11} {:>8} {:>5} {:>5} {:>13}\n",
        "strategy",
        "epochs",
        format!("s_to_{target}"),
        format!("MB_to_{target}"),
        "final_acc",
        "total_s",
        "total_MB",
        "predicted_MB",
        "KB_step",
        "enc%",
        "dec%",
        "max_consensus"
    );
    for c in curves {
        let last = c.cumulative().last();
        let (t, b, _, m) = match (last, &c.stopped) {
            (Some(x), _) => x,
            (None, Some(why)) => {
                let _ = writeln!(out, "{:<34} {why}", c.name);
                continue;
            }
            (None, None) => continue,
        };
        let (tt, bt) = match c.to_target(target) {
            Some((tt, bt, e)) => (format!("{tt:.2} (ep {e})"), format!("{:.1}", bt as f64 / 1e6)),
            None => ("not reached".to_string(), "-".to_string()),
        };
        let share = |f: fn(&EpochMetrics) -> f64| {
            100.0 * c.epochs.iter().map(f).sum::<f64>()
                / c.epochs.iter().map(|m| m.epoch_secs).sum::<f64>().max(1e-12)
        };
        let _ = writeln!(
            out,
            "{:<34} {:>6} {:>14} {:>12} {:>9} {:>8.2} {:>9.1} {:>11.1} {:>8.1} {:>5.1} {:>5.1} {:>13}",
            c.name,
            m.epoch,
            tt,
            bt,
            m.test_accuracy.map_or("-".into(), |a| format!("{a:.4}")),
            t,
            b as f64 / 1e6,
            c.predicted as f64 / 1e6,
            b as f64 / 1e3 / m.step.max(1) as f64,
            share(|m| m.encode_secs),
            share(|m| m.decode_secs),
            c.epochs
                .iter()
                .filter_map(|m| m.consensus_distance)
                .reduce(f64::max)
                .map_or("-".into(), |d| format!("{d:.3e}"))
        );
        if let Some(why) = &c.stopped {
            let _ = writeln!(out, "{:<34} then {why}", "");
        }
    }
    out
}

/// One point of a comparison chart: a strategy's accuracy after `secs`
/// of training and `bytes` sent (cumulative).
pub struct Point {
    /// The strategy's spelling.
    pub strategy: String,
    /// Cumulative training seconds.
    pub secs: f64,
    /// Cumulative bytes sent by the busiest rank.
    pub bytes: u64,
    /// Test accuracy.
    pub accuracy: f64,
}

fn points(curves: &[Curve]) -> Vec<Point> {
    curves
        .iter()
        .flat_map(|c| {
            c.cumulative().filter_map(|(secs, bytes, _, m)| {
                Some(Point {
                    strategy: c.name.clone(),
                    secs,
                    bytes,
                    accuracy: m.test_accuracy?,
                })
            })
        })
        .collect()
}

/// Reads the points of a CSV that `compare` wrote.
///
/// # Errors
/// Another header, or a row with a wrong field count or an unreadable number.
pub fn parse_points(text: &str) -> ringreduce::Result<Vec<Point>> {
    let bad = |reason: String| Error::InvalidArgument {
        what: "compare CSV",
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(bad("not a `ringreduce compare` file".into()));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let f = ringreduce::train::log::csv_fields(line);
        let num = |k: usize| -> ringreduce::Result<f64> {
            f[k].parse()
                .map_err(|_| bad(format!("line {}: `{}` is not a number", i + 2, f[k])))
        };
        if f.len() != HEADER.split(',').count() {
            return Err(bad(format!("line {}: {} fields", i + 2, f.len())));
        }
        if f[7].is_empty() {
            continue;
        }
        out.push(Point {
            strategy: f[0].clone(),
            secs: num(3)?,
            bytes: num(4)? as u64,
            accuracy: num(7)?,
        });
    }
    Ok(out)
}

/// Draws accuracy against time and against bytes into `dir`.
///
/// # Errors
/// No points, no font, or files that cannot be written.
pub fn charts(points: &[Point], title: &str, dir: &std::path::Path) -> ringreduce::Result<Vec<PathBuf>> {
    let mut names: Vec<&str> = Vec::new();
    for p in points {
        if !names.contains(&p.strategy.as_str()) {
            names.push(&p.strategy);
        }
    }
    let series = |x: &dyn Fn(&Point) -> f64| -> Vec<Series> {
        names
            .iter()
            .map(|&name| Series {
                name: name.to_string(),
                points: points
                    .iter()
                    .filter(|p| p.strategy == name)
                    .map(|p| (x(p), p.accuracy))
                    .collect(),
                band: Vec::new(),
            })
            .collect()
    };
    let mut written = Vec::new();
    for (stem, x_label, lines) in [
        (
            "accuracy_vs_time",
            "training time (s, rank 0's clock, evaluation excluded)",
            series(&|p| p.secs),
        ),
        (
            "accuracy_vs_bytes",
            "MB sent by the busiest rank",
            series(&|p| p.bytes as f64 / 1e6),
        ),
    ] {
        let chart = Chart {
            title,
            x_label,
            y_label: "test accuracy",
            log_x: false,
            x_bytes: false,
            log_y: false,
            series: &lines,
        };
        for ext in ["png", "svg"] {
            let path = dir.join(format!("{stem}.{ext}"));
            ringreduce::plot::draw(&chart, &path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// `OUT.csv` → `OUT-staleness.csv`, beside it.
fn staleness_path(out: &std::path::Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "compare".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}-staleness.csv"))
}

/// The staleness histograms of the parameter-server strategies:
/// `strategy,epoch,staleness,updates`, one row per non-empty bin.
fn staleness_csv(curves: &[Curve]) -> String {
    let mut out = String::from("strategy,epoch,staleness,updates\n");
    for c in curves {
        for (m, hist) in c.epochs.iter().zip(&c.staleness) {
            for (s, &n) in hist.iter().enumerate().filter(|(_, &n)| n > 0) {
                let _ = writeln!(
                    out,
                    "{},{},{s},{n}",
                    ringreduce::train::log::csv_field(&c.name),
                    m.epoch
                );
            }
        }
    }
    out
}

/// `staleness.{png,svg}`: per parameter-server strategy, the share of
/// all its updates applied with each staleness (log scale: the tail is
/// what matters). Nothing when no strategy has a histogram.
fn staleness_chart(curves: &[Curve], title: &str, dir: &std::path::Path) -> ringreduce::Result<Vec<PathBuf>> {
    let series: Vec<Series> = curves
        .iter()
        .filter(|c| !c.staleness.is_empty())
        .map(|c| {
            let depth = c.staleness.iter().map(Vec::len).max().unwrap_or(0);
            let total: Vec<u64> = (0..depth)
                .map(|s| c.staleness.iter().map(|h| h.get(s).copied().unwrap_or(0)).sum())
                .collect();
            let all = total.iter().sum::<u64>().max(1) as f64;
            Series {
                name: c.name.clone(),
                points: total
                    .iter()
                    .enumerate()
                    .filter(|(_, &n)| n > 0)
                    .map(|(s, &n)| (s as f64, n as f64 / all))
                    .collect(),
                band: Vec::new(),
            }
        })
        .collect();
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let chart = Chart {
        title,
        x_label: "staleness (server version at apply - version computed on)",
        y_label: "share of updates (all epochs)",
        log_x: false,
        x_bytes: false,
        log_y: true,
        series: &series,
    };
    let mut written = Vec::new();
    for ext in ["png", "svg"] {
        let path = dir.join(format!("staleness.{ext}"));
        ringreduce::plot::draw(&chart, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// Runs every strategy in turn and reports.
pub fn run(o: Args) -> ExitCode {
    let bad = |what: &'static str, reason: String| Error::InvalidArgument { what, reason };
    let checked = (|| -> ringreduce::Result<()> {
        if o.recipe.epochs == 0 {
            return Err(bad("--epochs", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&o.target_acc) {
            return Err(bad(
                "--target-acc",
                format!("{} is not an accuracy in [0, 1]", o.target_acc),
            ));
        }
        writable(&o.out).map_err(|e| bad("--out", format!("{}: {e}", o.out.display())))?;
        if let Some(dir) = &o.plot {
            if !dir.is_dir() {
                return Err(bad("--plot", format!("{}: not a directory", dir.display())));
            }
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return fail(e);
    }
    on_world(None, |group| {
        let loaded = (|| -> ringreduce::Result<_> {
            let sets = data::load(&o.recipe.data, None, None, o.recipe.seed)?;
            let Some(test) = sets.held_out else {
                return Err(bad(
                    "--data",
                    format!("{} has no test part to measure accuracy on", o.recipe.data),
                ));
            };
            let classes = sets.train.classes.max(test.classes);
            let model = Mlp::named(&o.recipe.model, &o.recipe.hidden, sets.train.dim, classes)?;
            Ok((sets.train, test, model))
        })();
        let (train, test, model) = match group.agree(loaded) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let (root, p) = (group.rank() == 0, group.size());
        if root {
            println!(
                "# compare: {}, {} ({} train / {} test), model {:?} ({} parameters), batch {}, lr {}, momentum {}, seed {}, {} epochs each",
                super::ranks(p),
                o.recipe.data,
                train.len(),
                test.len(),
                model.sizes(),
                model.num_params(),
                o.recipe.batch,
                o.recipe.lr,
                o.recipe.momentum,
                o.recipe.seed,
                o.recipe.epochs
            );
        }
        let mut curves = Vec::new();
        for spec in &o.strategies {
            let strategy = match spec {
                Spec::Strategy(s) => s,
                Spec::Ps {
                    bound,
                    servers,
                    dynamic,
                } => match run_ps(
                    &o,
                    ringreduce::train::ParameterServer {
                        servers: servers.unwrap_or(o.servers),
                        max_staleness: *bound,
                        dynamic: *dynamic,
                        ..Default::default()
                    },
                    group,
                    &model,
                    &train,
                    &test,
                ) {
                    Ok(c) => {
                        curves.push(c);
                        continue;
                    }
                    Err(e) => return fail(e),
                },
            };
            let trainer = o.recipe.builder(strategy.clone()).build();
            let trainer = match trainer {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let name = strategy.name();
            let mut params = trainer.init_params(&model);
            let mut epochs = Vec::new();
            let fitted = trainer.fit(group, &model, &mut params, &train, Some(&test), |m| {
                epochs.push(m.clone());
                if root {
                    println!(
                        "{name:<34} epoch {:>3}  loss {:.4}  acc {:.4}  {:.3} s (enc {:.3}, comm {:.3}, dec {:.3})  {:.1} MB sent{}",
                        m.epoch,
                        m.train_loss,
                        m.test_accuracy.unwrap_or(f64::NAN),
                        m.epoch_secs,
                        m.encode_secs,
                        (m.allreduce_secs - m.encode_secs - m.decode_secs).max(0.0),
                        m.decode_secs,
                        m.allreduce_bytes as f64 / 1e6,
                        m.consensus_distance
                            .map_or(String::new(), |d| format!("  consensus {d:.3e}"))
                    );
                }
            });
            // A strategy that diverges is a result, not a failure of the
            // comparison (every rank stops it at the same step).
            let stopped = match fitted {
                Ok(_) => None,
                Err(e @ Error::NonFinite { .. }) => {
                    if root {
                        println!("{name:<30} stopped: {e}");
                    }
                    Some(format!("diverged: {e}"))
                }
                Err(e) => return fail(format!("{name}: {e}")),
            };
            let steps = epochs.len() * (train.len() / o.recipe.batch.max(1));
            let buffers = usize::from(o.recipe.momentum != 0.0);
            let predicted = strategy
                .communication_for(
                    p,
                    model.num_params(),
                    &model.matrices(),
                    steps,
                    buffers,
                    &ringreduce::cost::CostParams::default(),
                )
                .bytes;
            curves.push(Curve {
                name,
                epochs,
                stopped,
                predicted,
                staleness: Vec::new(),
            });
        }
        if root {
            print!("{}", table(&curves, o.target_acc));
            if let Err(e) = ringreduce::files::write_atomically(&o.out, csv(&curves, p).as_bytes()) {
                return fail(format!("{}: {e}", o.out.display()));
            }
            println!("csv: {}", o.out.display());
            if curves.iter().any(|c| !c.staleness.is_empty()) {
                let path = staleness_path(&o.out);
                if let Err(e) = ringreduce::files::write_atomically(&path, staleness_csv(&curves).as_bytes())
                {
                    return fail(format!("{}: {e}", path.display()));
                }
                println!("staleness csv: {}", path.display());
            }
        }
        if let Some(dir) = &o.plot {
            let drawn = if root {
                let title = o.title.clone().unwrap_or_else(|| {
                    format!(
                        "{}, {}, {} epochs",
                        super::ranks(p),
                        o.recipe.data,
                        o.recipe.epochs
                    )
                });
                charts(&points(&curves), &title, dir)
                    .and_then(|mut paths| {
                        paths.extend(staleness_chart(&curves, &title, dir)?);
                        Ok(paths)
                    })
                    .map(Some)
            } else {
                Ok(None)
            };
            match group.agree(drawn) {
                Ok(Some(paths)) => {
                    for path in paths {
                        println!("plot: {}", path.display());
                    }
                }
                Ok(None) => {}
                Err(e) => return fail(e),
            }
        }
        ExitCode::SUCCESS
    })
}

/// One parameter-server strategy of the comparison.
fn run_ps(
    o: &Args,
    ps: ringreduce::train::ParameterServer,
    group: &ringreduce::Group<ringreduce::Mpi>,
    model: &Mlp,
    train: &ringreduce::train::Dataset,
    test: &ringreduce::train::Dataset,
) -> ringreduce::Result<Curve> {
    let trainer = o.recipe.builder(AnyStrategy::default()).build()?;
    let mut params = trainer.init_params(model);
    let name = ps.name();
    let root = group.rank() == 0;
    let (epochs, stopped) = match ps.fit(&trainer, group, model, &mut params, train, Some(test)) {
        Ok(e) => (e, None),
        Err(e @ Error::NonFinite { .. }) => {
            if root {
                println!("{name:<34} stopped: {e}");
            }
            (Vec::new(), Some(format!("diverged: {e}")))
        }
        Err(e) => return Err(e),
    };
    if root {
        for e in &epochs {
            let m = &e.metrics;
            let total: u64 = e.staleness.iter().sum();
            let mean = e
                .staleness
                .iter()
                .enumerate()
                .map(|(s, &c)| s as f64 * c as f64)
                .sum::<f64>()
                / total.max(1) as f64;
            println!(
                "{name:<34} epoch {:>3}  loss {:.4}  acc {:.4}  {:.3} s  {:.1} MB sent  staleness mean {mean:.2} max {} [{}]",
                m.epoch,
                m.train_loss,
                m.test_accuracy.unwrap_or(f64::NAN),
                m.epoch_secs,
                m.allreduce_bytes as f64 / 1e6,
                e.staleness.len().saturating_sub(1),
                e.staleness.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")
            );
        }
    }
    let steps = train.len() / o.recipe.batch.max(1);
    let predicted = ps
        .traffic(group.size(), model.num_params(), steps, epochs.len())
        .worker_sent;
    Ok(Curve {
        name,
        staleness: epochs.iter().map(|e| e.staleness.clone()).collect(),
        epochs: epochs.into_iter().map(|e| e.metrics).collect(),
        stopped,
        predicted,
    })
}
