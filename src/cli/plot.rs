//! `ringreduce plot` and `ringreduce summary`: charts and tables from the
//! CSV files `bench` and `train` write.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringreduce::summary::Summary;
use ringreduce::train::MetricsLog;
use ringreduce::Error;

use super::fail;

/// Settings of `ringreduce plot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `bench --format csv` files (several runs of one sweep: medians with
    /// a min–max band), one `train --metrics` file, `compare --out` files,
    /// one `hogwild --metrics` file, one `scripts/hogwild.sh` summary, or
    /// one `train --timeline` file.
    #[arg(long, required = true, num_args = 1..)]
    csv: Vec<PathBuf>,
    /// Directory for latency.{png,svg} and busbw.{png,svg}, training.{png,svg},
    /// accuracy_vs_time.{png,svg} and accuracy_vs_bytes.{png,svg},
    /// objective.{png,svg}, or speedup-PROBLEM.{png,svg}.
    #[arg(long)]
    out: PathBuf,
    /// Chart title (default: ranks, type, op, host and date from the CSV).
    #[arg(long, allow_hyphen_values = true)]
    title: Option<String>,
    /// Draw a link's rate on the busbw chart, as tc spells it (1gbit,
    /// 100mbit): what `scripts/cluster.sh --rate` set.
    #[arg(long, value_name = "RATE")]
    link_rate: Option<String>,
}

/// Settings of `ringreduce summary`.
#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    /// `bench --format csv` files: several runs of one sweep.
    #[arg(long, required = true, num_args = 1..)]
    csv: Vec<PathBuf>,
    /// Plain text, or a Markdown table for a README.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    format: SummaryFormat,
}

/// Layout of `ringreduce summary`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SummaryFormat {
    // One line per subject and size, then the ratios.
    Text,
    // One table row per size.
    Markdown,
}

/// Reads a CSV file (at most 256 MiB) as text, naming it in errors.
fn read(path: &Path) -> ringreduce::Result<String> {
    let data = |reason: String| Error::Data {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| data(e.to_string()))?;
    if !meta.is_file() || meta.len() > 256 << 20 {
        return Err(data("not a regular file of at most 256 MiB".into()));
    }
    std::fs::read_to_string(path).map_err(|e| data(e.to_string()))
}

/// The summary of bench CSV files.
fn summarise(files: &[PathBuf]) -> ringreduce::Result<Summary> {
    let runs = files
        .iter()
        .map(|f| {
            ringreduce::bench::parse_csv(&read(f)?).map_err(|e| Error::Data {
                path: f.display().to_string(),
                reason: e.to_string(),
            })
        })
        .collect::<ringreduce::Result<Vec<_>>>()?;
    Summary::new(&runs)
}

/// Creates the output directory `dir`.
fn make_dir(dir: &std::path::Path) -> ringreduce::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Data {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })
}

/// Draws `NAME.png` and `NAME.svg` in `dir` with `draw`.
fn png_and_svg(
    dir: &std::path::Path,
    name: &str,
    draw: impl Fn(&std::path::Path) -> ringreduce::Result<()>,
) -> ringreduce::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for ext in ["png", "svg"] {
        let path = dir.join(format!("{name}.{ext}"));
        draw(&path)?;
        files.push(path);
    }
    Ok(files)
}

/// Draws the charts and names the files written.
pub fn run(args: Args) -> ExitCode {
    let drawn = (|| -> ringreduce::Result<Vec<PathBuf>> {
        let first = read(&args.csv[0])?;
        if first.starts_with(super::curves::HEADER_V1) {
            let mut points = Vec::new();
            for path in &args.csv {
                let text = if points.is_empty() {
                    first.clone()
                } else {
                    read(path)?
                };
                points.extend(super::curves::parse_points(&text).map_err(|e| Error::Data {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?);
            }
            make_dir(&args.out)?;
            let title = args
                .title
                .clone()
                .unwrap_or_else(|| "training strategies compared".into());
            return super::curves::charts(&points, &title, &args.out);
        }
        for (header, draw) in [
            (
                super::hogwild::METRICS_HEADER,
                super::hogwild::metrics_charts as fn(_, _, _) -> _,
            ),
            (super::hogwild::SWEEP_HEADER, super::hogwild::sweep_charts),
        ] {
            if first.starts_with(header) {
                if args.csv.len() > 1 {
                    return Err(Error::InvalidArgument {
                        what: "--csv",
                        reason: "one hogwild metrics or summary file at a time".into(),
                    });
                }
                make_dir(&args.out)?;
                return draw(&first, args.title.as_deref(), &args.out).map_err(|e| Error::Data {
                    path: args.csv[0].display().to_string(),
                    reason: e.to_string(),
                });
            }
        }
        if first.trim_start().starts_with('{') && first.contains("\"traceEvents\"") {
            let events = ringreduce::train::trace::read_chrome(&first).map_err(|e| Error::Data {
                path: args.csv[0].display().to_string(),
                reason: e.to_string(),
            })?;
            make_dir(&args.out)?;
            let title = args
                .title
                .clone()
                .unwrap_or_else(|| "timeline: the last three steps".into());
            return png_and_svg(&args.out, "timeline", |p| {
                ringreduce::plot::timeline(&events, &title, p)
            });
        }
        if first.starts_with("epoch,step,") {
            if args.csv.len() > 1 {
                return Err(Error::InvalidArgument {
                    what: "--csv",
                    reason: "one training metrics file at a time".into(),
                });
            }
            let log = MetricsLog::parse(&first).map_err(|e| Error::Data {
                path: args.csv[0].display().to_string(),
                reason: e.to_string(),
            })?;
            make_dir(&args.out)?;
            let title = args.title.clone().unwrap_or_else(|| training_title(&log));
            return png_and_svg(&args.out, "training", |p| {
                ringreduce::plot::training(&log, &title, p)
            });
        }
        ringreduce::plot::plot_bench(
            &summarise(&args.csv)?,
            &args.out,
            args.title.as_deref(),
            args.link_rate.as_deref(),
        )
    })();
    match drawn {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `sync:ring, 2 ranks` (the last run's, for a resumed log).
pub fn training_title(log: &MetricsLog) -> String {
    format!(
        "training: {}, {} rank{}",
        log.strategy,
        log.ranks,
        if log.ranks == 1 { "" } else { "s" }
    )
}

/// Prints the summary of several bench runs.
pub fn summary(args: SummaryArgs) -> ExitCode {
    match summarise(&args.csv) {
        Ok(s) => {
            match args.format {
                SummaryFormat::Text => print!("{}", s.to_text()),
                SummaryFormat::Markdown => print!("{}", s.to_markdown()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
