//! `ringreduce compare`: every training strategy on the same model, data,
//! seed and global batch, in one MPI job, with exact communication
//! accounting; a CSV of epochs, a table, and accuracy against time and
//! against bytes.

use std::path::PathBuf;
use std::process::ExitCode;

use ringreduce::train::{data, Mlp, Model, ParameterServer, Plan, PlanEpoch, PlanOptions};
use ringreduce::Error;

use super::curves::{charts, csv, points, staleness_chart, staleness_csv, staleness_path, table, Curve};
use super::{fail, on_world, writable};

/// Settings of `ringreduce compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    recipe: super::Recipe,
    /// The strategies, space-separated, in the spellings of `train
    /// --strategy`: sync:ring local:tau=8 postlocal:warmup=200,tau=8 oneshot
    /// gossip:ring ps:async ps:ssp=2 ps:async,dynamic …
    #[arg(long, required = true, num_args = 1.., value_name = "SPEC", long_help = super::strategy_help())]
    strategies: Vec<String>,
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
    #[arg(long = "plot-dir", value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Chart title (default: ranks, data set and epochs).
    #[arg(long, allow_hyphen_values = true)]
    title: Option<String>,
}

/// Runs every strategy in turn and reports.
pub fn run(o: Args) -> ExitCode {
    let bad = |what: &'static str, reason: String| Error::InvalidArgument { what, reason };
    let checked = (|| -> ringreduce::Result<Vec<Plan>> {
        if o.recipe.epochs == 0 {
            return Err(bad("--epochs", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&o.target_acc) {
            return Err(bad(
                "--target-acc",
                format!("{} is not an accuracy in [0, 1]", o.target_acc),
            ));
        }
        o.recipe.builder().build()?;
        writable(&o.out).map_err(|e| bad("--out", format!("{}: {e}", o.out.display())))?;
        if let Some(dir) = &o.plot {
            if !dir.is_dir() {
                return Err(bad("--plot-dir", format!("{}: not a directory", dir.display())));
            }
        }
        let options = PlanOptions {
            parameter_server: ParameterServer {
                servers: o.servers,
                ..ParameterServer::default()
            },
            ..PlanOptions::default()
        };
        o.strategies
            .iter()
            .map(|s| Plan::new(Some(s), &options))
            .collect()
    })();
    let plans = match checked {
        Ok(plans) => plans,
        Err(e) => return fail(e),
    };
    on_world(None, |group| {
        let loaded = load(&o);
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
        for plan in &plans {
            match run_one(&o, plan, group, &model, &train, &test) {
                Ok(c) => curves.push(c),
                Err(e) => return fail(e),
            }
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

/// The training and test sets and the model (each rank reads the data itself).
fn load(o: &Args) -> ringreduce::Result<(ringreduce::train::Dataset, ringreduce::train::Dataset, Mlp)> {
    let sets = data::load(&o.recipe.data, None, None, o.recipe.seed)?;
    let Some(test) = sets.held_out else {
        return Err(Error::InvalidArgument {
            what: "--data",
            reason: format!("{} has no test part to measure accuracy on", o.recipe.data),
        });
    };
    let classes = sets.train.classes.max(test.classes);
    let model = Mlp::named(&o.recipe.model, &o.recipe.hidden, sets.train.dim, classes)?;
    Ok((sets.train, test, model))
}

/// One strategy of the comparison: trained, printed epoch by epoch, with
/// the bytes the cost model predicts for the epochs it ran.
fn run_one(
    o: &Args,
    plan: &Plan,
    group: &ringreduce::Group<ringreduce::Mpi>,
    model: &Mlp,
    train: &ringreduce::train::Dataset,
    test: &ringreduce::train::Dataset,
) -> ringreduce::Result<Curve> {
    let trainer = o.recipe.builder().build()?;
    let mut params = trainer.init_params(model);
    let name = plan.name();
    let root = group.rank() == 0;
    let mut epochs = Vec::new();
    let fitted = plan.fit(&trainer, group, model, &mut params, train, Some(test), |e| {
        epochs.push(e.clone());
        if root {
            for point in &e.metrics.evals {
                println!(
                    "{name:<34} epoch {:>3}  step {}  acc {:.4}  {:.3} s  {:.1} MB sent",
                    e.metrics.epoch,
                    point.step,
                    point.test_accuracy,
                    point.epoch_secs,
                    point.allreduce_bytes as f64 / 1e6
                );
            }
            println!("{}", epoch_line(&name, e));
        }
    });
    // A strategy that diverges is a result, not a failure of the
    // comparison (every rank stops it at the same step).
    let stopped = match fitted {
        Ok(_) => None,
        Err(e @ Error::NonFinite { .. }) => {
            if root {
                println!("{name:<34} stopped: {e}");
            }
            Some(format!("diverged: {e}"))
        }
        Err(e) => {
            return Err(Error::InvalidArgument {
                what: "strategy",
                reason: format!("{name}: {e}"),
            })
        }
    };
    let ranks = plan.computing_ranks(group.size());
    let steps = o
        .recipe
        .partition
        .source()
        .steps(o.recipe.batch, train.len(), ranks);
    let buffers = usize::from(o.recipe.momentum != 0.0);
    let predicted = plan.predicted_bytes(group.size(), model, steps, epochs.len(), buffers);
    let staleness = match epochs.iter().all(|e| e.staleness.is_empty()) {
        true => Vec::new(),
        false => epochs.iter().map(|e| e.staleness.clone()).collect(),
    };
    Ok(Curve {
        name,
        staleness,
        epochs: epochs.into_iter().map(|e| e.metrics).collect(),
        stopped,
        predicted,
    })
}

/// One epoch's line: loss, accuracy, time and bytes, then the codec's share
/// and the consensus distance, or a parameter server's staleness.
fn epoch_line(name: &str, e: &PlanEpoch) -> String {
    let m = &e.metrics;
    let head = format!(
        "{name:<34} epoch {:>3}  loss {:.4}  acc {:.4}  {:.3} s",
        m.epoch,
        m.train_loss,
        m.test_accuracy.unwrap_or(f64::NAN),
        m.epoch_secs
    );
    let mb = m.allreduce_bytes as f64 / 1e6;
    if e.staleness.is_empty() {
        return format!(
            "{head} (enc {:.3}, comm {:.3}, dec {:.3})  {mb:.1} MB sent{}",
            m.encode_secs,
            (m.allreduce_secs - m.encode_secs - m.decode_secs).max(0.0),
            m.decode_secs,
            m.consensus_distance
                .map_or(String::new(), |d| format!("  consensus {d:.3e}"))
        );
    }
    let total: u64 = e.staleness.iter().sum();
    let mean = e
        .staleness
        .iter()
        .enumerate()
        .map(|(s, &c)| s as f64 * c as f64)
        .sum::<f64>()
        / total.max(1) as f64;
    format!(
        "{head}  {mb:.1} MB sent  staleness mean {mean:.2} max {} [{}]",
        e.staleness.len().saturating_sub(1),
        e.staleness
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    )
}
