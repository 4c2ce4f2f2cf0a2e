//! Every layout the command line prints or writes: aligned tables, CSV,
//! JSON and the `osu_allreduce` format, in one place.

use ringreduce::bench::Row;
use ringreduce::cost::{Cost, CostParams};
use ringreduce::train::EpochMetrics;
use ringreduce::DType;

use super::Format;

/// Column header of the bench table.
pub fn bench_header(predict: bool) -> String {
    let mut h = format!(
        "{:>12} {:>10} {:>5} {:>16} {:>12} {:>12} {:>12} {:>8} {:>8} {:>7}",
        "size(B)", "count", "type", "algo", "avg(us)", "min(us)", "max(us)", "algbw", "busbw", "#wrong"
    );
    if predict {
        h += &format!(" {:>12} {:>10}", "pred(us)", "meas/pred");
    }
    h
}

/// One row of the bench table.
pub fn bench_row(r: &Row, predict: bool) -> String {
    let wrong = r.wrong.map_or("-".to_string(), |w| w.to_string());
    let mut line = format!(
        "{:>12} {:>10} {:>5} {:>16} {:>12.2} {:>12.2} {:>12.2} {:>8.3} {:>8.3} {:>7}",
        r.bytes, r.count, r.dtype, r.algo, r.avg_us, r.min_us, r.max_us, r.algbw, r.busbw, wrong
    );
    if predict {
        match r.predicted_us {
            Some(p) => line += &format!(" {:>12.2} {:>10.2}", p, r.avg_us / p),
            None => line += &format!(" {:>12} {:>10}", "-", "-"),
        }
    }
    line
}

/// The `osu_allreduce` header for `dtype` (a blank line first, as OSU prints).
pub fn osu_header(dtype: DType) -> String {
    let name = match dtype {
        DType::F32 => "MPI_FLOAT",
        DType::F64 => "MPI_DOUBLE",
        DType::I32 => "MPI_INT",
        DType::I64 => "MPI_LONG",
        DType::U8 => "MPI_CHAR",
        DType::F16 | DType::BF16 => "MPI_UINT16_T",
    };
    format!("\n# OSU MPI Allreduce Latency Test\n# Datatype: {name}.\n# Size       Avg Latency(us)")
}

/// One `osu_allreduce` row: `%-10d%20.2f`.
pub fn osu_row(r: &Row) -> String {
    format!("{:<10}{:>20.2}", r.bytes, r.avg_us)
}

/// Everything `ringreduce cost` reports for one rank count and size.
pub struct CostReport<'a> {
    /// Ranks.
    pub ranks: usize,
    /// Bytes per rank.
    pub bytes: u64,
    /// Elements per rank.
    pub count: usize,
    /// Element type.
    pub dtype: DType,
    /// The model's constants.
    pub params: &'a CostParams,
    /// One row per algorithm asked for.
    pub rows: &'a [Cost],
    /// The bandwidth lower bound, bytes per rank.
    pub bound: f64,
    /// What `auto` chooses.
    pub chosen: ringreduce::Algorithm,
    /// α and β of the line that prices the ring's messages.
    pub ring_line: (f64, f64),
}

/// Prints a cost report in `format`.
pub fn print_cost(c: &CostReport, format: Format) {
    let s = c.dtype.size();
    let predict = |row: &Cost| row.predict(c.params, s) * 1e6;
    match format {
        Format::Json => {
            let rows: Vec<_> = c
                .rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "algorithm": row.algorithm.name(),
                        "rounds": row.rounds,
                        "exchanges": row.exchanges,
                        "messages": row.messages,
                        "bytes_sent": row.bytes_sent,
                        "total_bytes": row.total_bytes,
                        "path_bytes": row.path_bytes,
                        "reduced": row.reduced,
                        "predicted_us": predict(row),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "ranks": c.ranks, "bytes": c.bytes, "count": c.count, "dtype": c.dtype.name(),
                "params": c.params, "lower_bound_bytes": c.bound, "chosen": c.chosen.name(), "algorithms": rows,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON of plain values")
            );
        }
        Format::Csv => {
            println!(
                "algorithm,rounds,exchanges,messages,bytes_sent,total_bytes,path_bytes,reduced,predicted_us,chosen"
            );
            for row in c.rows {
                println!(
                    "{},{},{},{},{},{},{},{},{:.3},{}",
                    row.algorithm,
                    row.rounds,
                    row.exchanges,
                    row.messages,
                    row.bytes_sent,
                    row.total_bytes,
                    row.path_bytes,
                    row.reduced,
                    predict(row),
                    row.algorithm == c.chosen
                );
            }
            println!("lower-bound,,,,{:.0},,,,,", c.bound);
        }
        Format::Table => {
            println!(
                "# {} ranks, {} per rank ({} {}); ring messages: α = {:.3} µs, β = {:.4} ns/B; γ = {:.4} ns/B",
                c.ranks,
                ringreduce::units::human_size(c.bytes),
                c.count,
                c.dtype,
                c.ring_line.0 * 1e6,
                c.ring_line.1 * 1e9,
                c.params.gamma * 1e9
            );
            println!(
                "{:<12} {:>7} {:>9} {:>14} {:>16} {:>14} {:>12} {:>14}",
                "algorithm",
                "rounds",
                "messages",
                "bytes_sent",
                "total_bytes",
                "path_bytes",
                "reduced",
                "predicted_us"
            );
            for row in c.rows {
                let mark = if row.algorithm == c.chosen {
                    "  <- auto"
                } else {
                    ""
                };
                println!(
                    "{:<12} {:>7} {:>9} {:>14} {:>16} {:>14} {:>12} {:>14.2}{mark}",
                    row.algorithm.name(),
                    row.rounds,
                    row.messages,
                    row.bytes_sent,
                    row.total_bytes,
                    row.path_bytes,
                    row.reduced,
                    predict(row)
                );
            }
            println!("{:<12} {:>7} {:>9} {:>14.0}", "lower-bound", "-", "-", c.bound);
            println!("auto chooses: {}", c.chosen);
        }
    }
}

/// Column header of the per-epoch training lines.
pub const EPOCH_HEADER: &str = "epoch  train_loss  test_acc  epoch_s  allreduce_share  allreduced_MB";

/// One per-epoch training line.
pub fn epoch_row(m: &EpochMetrics) -> String {
    format!(
        "{:>5}  {:>10.4}  {:>8.4}  {:>7.2}  {:>14.1}%  {:>13.1}",
        m.epoch,
        m.train_loss,
        m.test_accuracy,
        m.epoch_secs,
        100.0 * m.allreduce_secs / m.epoch_secs.max(1e-12),
        m.allreduce_bytes as f64 / 1e6
    )
}

/// The metrics CSV of a training run.
pub fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut csv = String::from("epoch,train_loss,test_accuracy,epoch_secs,allreduce_secs,allreduce_bytes\n");
    for m in history {
        csv += &format!(
            "{},{},{},{},{},{}\n",
            m.epoch, m.train_loss, m.test_accuracy, m.epoch_secs, m.allreduce_secs, m.allreduce_bytes
        );
    }
    csv
}
