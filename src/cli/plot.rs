//! `ringreduce plot`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::fail;

/// Settings of `ringreduce plot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The CSV written by `ringreduce bench --format csv`.
    #[arg(long)]
    csv: PathBuf,
    /// Directory for latency.{png,svg} and busbw.{png,svg}.
    #[arg(long)]
    out: PathBuf,
    /// Chart title prefix.
    #[arg(long, default_value = "ringreduce all-reduce", allow_hyphen_values = true)]
    title: String,
}

/// Draws the bench charts and names the files written.
pub fn run(args: Args) -> ExitCode {
    match ringreduce::plot::plot_bench(&args.csv, &args.out, &args.title) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
