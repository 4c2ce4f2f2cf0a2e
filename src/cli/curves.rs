//! What `ringreduce compare` writes: each strategy's curve of epochs, the
//! CSV, the table of time and bytes to a target accuracy, and the charts
//! of accuracy against time, against bytes, and of a parameter server's
//! staleness.

use std::fmt::Write as _;
use std::path::PathBuf;

use ringreduce::plot::{Chart, Series};
use ringreduce::train::EpochMetrics;
use ringreduce::Error;

/// The CSV's header: the strategy's spelling first. Rows without a
/// `train_loss` are evaluations within an epoch (`--eval-every`);
/// `scoring_bytes` is what the busiest rank sent to score, cumulative,
/// on the epochs' rows.
pub const HEADER: &str = "strategy,epoch,ranks,wall_secs,bytes_sent,rounds,train_loss,test_accuracy,consensus_distance,step,scoring_bytes";
/// The header before the evaluations within epochs (still read; every
/// header starts with it).
pub const HEADER_V1: &str =
    "strategy,epoch,ranks,wall_secs,bytes_sent,rounds,train_loss,test_accuracy,consensus_distance";

/// One strategy's run: its epochs with cumulative time, bytes and rounds.
pub struct Curve {
    pub name: String,
    pub epochs: Vec<EpochMetrics>,
    /// Why the run stopped early (a non-finite loss or gradient).
    pub stopped: Option<String>,
    /// Bytes the cost model predicts for the epochs run.
    pub predicted: u64,
    /// Parameter-server strategies: per epoch, `[s]` = updates applied
    /// with staleness s (empty for the others).
    pub staleness: Vec<Vec<u64>>,
}

/// A point of a curve: an evaluation within an epoch or an epoch's end,
/// with the run's seconds, bytes and rounds up to it.
struct At<'a> {
    secs: f64,
    bytes: u64,
    rounds: u64,
    /// Bytes spent scoring up to the end of this point's epoch.
    scoring: u64,
    epoch: usize,
    step: usize,
    accuracy: Option<f64>,
    consensus: Option<f64>,
    /// The epoch's metrics, at an epoch's end.
    end: Option<&'a EpochMetrics>,
}

impl Curve {
    /// Every evaluation in order, with cumulative seconds, bytes and rounds.
    fn cumulative(&self) -> Vec<At<'_>> {
        let (mut t, mut b, mut r, mut scoring) = (0.0, 0u64, 0u64, 0u64);
        let mut out = Vec::new();
        for m in &self.epochs {
            scoring += m.scoring_bytes;
            for e in &m.evals {
                out.push(At {
                    secs: t + e.epoch_secs,
                    bytes: b + e.allreduce_bytes,
                    rounds: r + e.rounds,
                    scoring,
                    epoch: m.epoch,
                    step: e.step,
                    accuracy: Some(e.test_accuracy),
                    consensus: e.consensus_distance,
                    end: None,
                });
            }
            (t, b, r) = (t + m.epoch_secs, b + m.allreduce_bytes, r + m.rounds);
            out.push(At {
                secs: t,
                bytes: b,
                rounds: r,
                scoring,
                epoch: m.epoch,
                step: m.step,
                accuracy: m.test_accuracy,
                consensus: m.consensus_distance,
                end: Some(m),
            });
        }
        out
    }

    /// The first evaluation whose accuracy reached `target`.
    fn to_target(&self, target: f64) -> Option<At<'_>> {
        self.cumulative()
            .into_iter()
            .find(|a| a.accuracy.is_some_and(|a| a >= target))
    }
}

pub fn csv(curves: &[Curve], ranks: usize) -> String {
    let mut out = format!("{HEADER}\n");
    let opt = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
    for c in curves {
        for a in c.cumulative() {
            let (loss, scoring) = match a.end {
                Some(m) => (m.train_loss.to_string(), a.scoring.to_string()),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{},{},{ranks},{},{},{},{loss},{},{},{},{scoring}",
                ringreduce::train::log::csv_field(&c.name),
                a.epoch,
                a.secs,
                a.bytes,
                a.rounds,
                opt(a.accuracy),
                opt(a.consensus),
                a.step,
            );
        }
    }
    out
}

/// The summary table; the consensus column is the largest distance at
/// the end of an epoch (the last step of a run averages it to 0); KB_step
/// is what the busiest rank sends per step; enc% and dec% are the shares
/// of the training time spent encoding and decoding; score_MB is what
/// the busiest rank sent to score (apart from the strategy's bytes). The
/// time to the target names the epoch whose end reached it, or the step
/// of an evaluation within an epoch (`--eval-every`).
pub fn table(curves: &[Curve], target: f64) -> String {
    let mut out = format!(
        "{:<34} {:>6} {:>18} {:>12} {:>9} {:>8} {:>9} {:>11} {:>8} {:>5} {:>5} {:>8} {:>13}\n",
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
        "score_MB",
        "max_consensus"
    );
    for c in curves {
        let points = c.cumulative();
        let (t, b, scoring, m) = match (points.last(), &c.stopped) {
            (
                Some(At {
                    secs,
                    bytes,
                    scoring,
                    end: Some(m),
                    ..
                }),
                _,
            ) => (*secs, *bytes, *scoring, *m),
            (_, Some(why)) => {
                let _ = writeln!(out, "{:<34} {why}", c.name);
                continue;
            }
            _ => continue,
        };
        let (tt, bt) = match c.to_target(target) {
            Some(a) => (
                match a.end {
                    Some(_) => format!("{:.2} (ep {})", a.secs, a.epoch),
                    None => format!("{:.2} (step {})", a.secs, a.step),
                },
                format!("{:.1}", a.bytes as f64 / 1e6),
            ),
            None => ("not reached".to_string(), "-".to_string()),
        };
        let share = |f: fn(&EpochMetrics) -> f64| {
            100.0 * c.epochs.iter().map(f).sum::<f64>()
                / c.epochs.iter().map(|m| m.epoch_secs).sum::<f64>().max(1e-12)
        };
        let _ = writeln!(
            out,
            "{:<34} {:>6} {:>18} {:>12} {:>9} {:>8.2} {:>9.1} {:>11.1} {:>8.1} {:>5.1} {:>5.1} {:>8.2} {:>13}",
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
            scoring as f64 / 1e6,
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

pub fn points(curves: &[Curve]) -> Vec<Point> {
    curves
        .iter()
        .flat_map(|c| {
            c.cumulative().into_iter().filter_map(|a| {
                Some(Point {
                    strategy: c.name.clone(),
                    secs: a.secs,
                    bytes: a.bytes,
                    accuracy: a.accuracy?,
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
    let header = lines.next().filter(|h| [HEADER, HEADER_V1].contains(h));
    let Some(header) = header else {
        return Err(bad("not a `ringreduce compare` file".into()));
    };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let f = ringreduce::train::log::csv_fields(line);
        let num = |k: usize| -> ringreduce::Result<f64> {
            f[k].parse()
                .map_err(|_| bad(format!("line {}: `{}` is not a number", i + 2, f[k])))
        };
        if f.len() != header.split(',').count() {
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
pub fn staleness_path(out: &std::path::Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "compare".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}-staleness.csv"))
}

/// The staleness histograms of the parameter-server strategies:
/// `strategy,epoch,staleness,updates`, one row per non-empty bin.
pub fn staleness_csv(curves: &[Curve]) -> String {
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
pub fn staleness_chart(
    curves: &[Curve],
    title: &str,
    dir: &std::path::Path,
) -> ringreduce::Result<Vec<PathBuf>> {
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
