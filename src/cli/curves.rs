//! What `ringreduce compare` writes: each strategy's curve of epochs, the
//! CSV, the table of time and bytes to a target accuracy, and the charts
//! of accuracy against time, against bytes, and of a parameter server's
//! staleness.

use std::fmt::Write as _;
use std::path::PathBuf;

use ringreduce::plot::{Chart, Series};
use ringreduce::train::EpochMetrics;
use ringreduce::Error;

/// The CSV's header: the strategy's spelling first.
pub const HEADER: &str =
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

pub fn csv(curves: &[Curve], ranks: usize) -> String {
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
pub fn table(curves: &[Curve], target: f64) -> String {
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

pub fn points(curves: &[Curve]) -> Vec<Point> {
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
