//! Every layout the command line prints or writes: aligned tables, CSV,
//! JSON and the `osu_allreduce` format, in one place.

use ringreduce::bench::Row;
use ringreduce::cost::{Cost, CostParams};
use ringreduce::train::{EpochMetrics, EvalPoint};
use ringreduce::DType;

use super::Format;

/// Column header of the bench table: nccl-tests' out-of-place and
/// in-place column groups (the second when `in_place`), units in brackets.
pub fn bench_header(in_place: bool, predict: bool) -> String {
    let mut groups = format!("#{:>47}{:<73}", "", "out-of-place");
    let mut h = format!(
        "{:>12} {:>10} {:>5} {:>16} {:>12} {:>12} {:>12} {:>11} {:>11} {:>7}",
        "size(B)",
        "count",
        "type",
        "algo",
        "time(us)",
        "min(us)",
        "max(us)",
        "algbw(GB/s)",
        "busbw(GB/s)",
        "#wrong"
    );
    if in_place {
        groups += "in-place";
        h += &format!(
            "  {:>12} {:>11} {:>11} {:>7}",
            "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong"
        );
    }
    if predict {
        h += &format!(" {:>12} {:>10}", "pred(us)", "meas/pred");
    }
    format!("{}\n{h}", groups.trim_end())
}

/// One row of the bench table, columns as [`bench_header`].
pub fn bench_row(r: &Row, in_place: bool, predict: bool) -> String {
    let wrong = |w: Option<u64>| w.map_or("-".to_string(), |w| w.to_string());
    let mut line = format!(
        "{:>12} {:>10} {:>5} {:>16} {:>12.2} {:>12.2} {:>12.2} {:>11.3} {:>11.3} {:>7}",
        r.bytes,
        r.count,
        r.dtype,
        r.algo,
        r.time.avg_us,
        r.time.min_us,
        r.time.max_us,
        r.time.algbw,
        r.time.busbw,
        wrong(r.time.wrong)
    );
    if in_place {
        match r.in_place {
            Some(t) => {
                line += &format!(
                    "  {:>12.2} {:>11.3} {:>11.3} {:>7}",
                    t.avg_us,
                    t.algbw,
                    t.busbw,
                    wrong(t.wrong)
                )
            }
            None => line += &format!("  {:>12} {:>11} {:>11} {:>7}", "-", "-", "-", "-"),
        }
    }
    if predict {
        match r.predicted_us {
            Some(p) => line += &format!(" {:>12.2} {:>10.2}", p, r.time.avg_us / p),
            None => line += &format!(" {:>12} {:>10}", "-", "-"),
        }
    }
    line
}

/// nccl-tests' closing lines: the bus bandwidth averaged over every size
/// and both placements (one line per subject when there are several), and
/// the count of wrong values when checked.
pub fn bench_footer(rows: &[Row], check: bool) -> Vec<String> {
    let mut subjects: Vec<String> = Vec::new();
    let mut sums: Vec<(f64, usize)> = Vec::new();
    for r in rows {
        // `auto:ring` and `auto:butterfly` are one subject.
        let name = r.algo.split(':').next().unwrap_or(&r.algo).to_string();
        let i = match subjects.iter().position(|s| *s == name) {
            Some(i) => i,
            None => {
                subjects.push(name);
                sums.push((0.0, 0));
                subjects.len() - 1
            }
        };
        for bw in std::iter::once(r.time.busbw).chain(r.in_place.map(|t| t.busbw)) {
            sums[i].0 += bw;
            sums[i].1 += 1;
        }
    }
    let mut lines: Vec<String> = subjects
        .iter()
        .zip(&sums)
        .map(|(name, (sum, n))| {
            let avg = sum / (*n).max(1) as f64;
            if subjects.len() == 1 {
                format!("# Avg bus bandwidth    : {avg:.5} GB/s")
            } else {
                format!("# Avg bus bandwidth    : {avg:.5} GB/s  ({name})")
            }
        })
        .collect();
    if check {
        let wrong: u64 = rows
            .iter()
            .flat_map(|r| [r.time.wrong, r.in_place.and_then(|t| t.wrong)])
            .flatten()
            .sum();
        lines.push(format!(
            "# Out of bounds values : {wrong} {}",
            if wrong == 0 { "OK" } else { "FAILED" }
        ));
    }
    lines
}

/// The `osu_allreduce` header for `dtype` (a blank line first, as OSU prints).
pub fn osu_header(dtype: DType) -> String {
    let name = dtype.mpi_name();
    format!("\n# OSU MPI Allreduce Latency Test\n# Datatype: {name}.\n# Size       Avg Latency(us)")
}

/// One `osu_allreduce` row: `%-10d%20.2f`.
pub fn osu_row(r: &Row) -> String {
    format!("{:<10}{:>20.2}", r.bytes, r.time.avg_us)
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
    /// Every rank on one node (`auto` is then `shm`).
    pub one_node: bool,
}

/// Prints a cost report in `format`.
pub fn print_cost(c: &CostReport, format: Format) {
    let s = c.dtype.size();
    // What one call costs with the call checks on (the default): the
    // algorithm and the agreement before it (nothing for a small butterfly).
    let predict =
        |row: &Cost| ringreduce::cost::predict_call(row.algorithm, c.ranks, c.count, s, c.params, true) * 1e6;
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
                        "memory_bytes": row.memory_bytes,
                        "footprint": row.footprint,
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
                "algorithm,rounds,exchanges,messages,bytes_sent,total_bytes,path_bytes,reduced,memory_bytes,footprint,predicted_us,chosen"
            );
            for row in c.rows {
                println!(
                    "{},{},{},{},{},{},{},{},{},{},{:.3},{}",
                    row.algorithm,
                    row.rounds,
                    row.exchanges,
                    row.messages,
                    row.bytes_sent,
                    row.total_bytes,
                    row.path_bytes,
                    row.reduced,
                    row.memory_bytes,
                    row.footprint,
                    predict(row),
                    row.algorithm == c.chosen
                );
            }
            println!("lower-bound,,,,{:.0},,,,,,,", c.bound);
        }
        Format::Table => {
            println!(
                "# {}, {} per rank ({} {}); ring messages: α = {:.3} µs, β = {:.4} ns/B; γ = {:.4} ns/B",
                super::ranks(c.ranks),
                ringreduce::units::human_size(c.bytes),
                c.count,
                c.dtype,
                c.ring_line.0 * 1e6,
                c.ring_line.1 * 1e9,
                c.params.gamma * 1e9
            );
            if c.params.memory.is_some() {
                println!("# local work is priced as memory traffic (memory_bytes) at the price of each algorithm's working set, e.g. {:.4} ns/B at {}, {:.4} ns/B at {}",
                    c.params.memory_per_byte(c.bytes) * 1e9,
                    ringreduce::units::human_size(c.bytes),
                    c.params.memory_per_byte(c.bytes.saturating_mul(4)) * 1e9,
                    ringreduce::units::human_size(c.bytes.saturating_mul(4)));
            }
            println!("# predicted_us includes the call check's agreement (a butterfly of 48-B headers; a butterfly call of at most {} B rides in it)", ringreduce::cost::FUSE_MAX);
            println!(
                "{:<12} {:>7} {:>9} {:>14} {:>16} {:>14} {:>12} {:>14} {:>14}",
                "algorithm",
                "rounds",
                "messages",
                "bytes_sent",
                "total_bytes",
                "path_bytes",
                "reduced",
                "memory_bytes",
                "predicted_us"
            );
            for row in c.rows {
                let mark = if row.algorithm == c.chosen {
                    "  <- auto"
                } else {
                    ""
                };
                println!(
                    "{:<12} {:>7} {:>9} {:>14} {:>16} {:>14} {:>12} {:>14} {:>14.2}{mark}",
                    row.algorithm.name(),
                    row.rounds,
                    row.messages,
                    row.bytes_sent,
                    row.total_bytes,
                    row.path_bytes,
                    row.reduced,
                    row.memory_bytes,
                    predict(row)
                );
            }
            println!("{:<12} {:>7} {:>9} {:>14.0}", "lower-bound", "-", "-", c.bound);
            match c.one_node {
                true => println!("auto chooses: {} (every rank on one node)", c.chosen),
                false => println!(
                    "auto chooses: {} (ranks on different nodes; --nodes 1 for one machine)",
                    c.chosen
                ),
            }
        }
    }
}

/// Column header of the per-epoch training lines; `accuracy` names the
/// held-out column (`test_acc`, `val_acc`) or is `None` without one;
/// `consensus` adds the consensus distance (strategies whose ranks differ).
pub fn epoch_header(accuracy: Option<&str>, consensus: bool) -> String {
    let acc = accuracy.map_or(String::new(), |a| format!("  {a:>8}"));
    let cons = if consensus { "  consensus" } else { "" };
    format!("epoch  train_loss{acc}  epoch_s  samples/s  allreduce_share  allreduced_MB{cons}")
}

/// An evaluation within epoch `epoch` (`--eval-every`), in
/// [`epoch_header`]'s columns: the step where the loss goes, the
/// epoch's seconds and bytes so far.
pub fn eval_row(epoch: usize, e: &EvalPoint) -> String {
    format!(
        "{epoch:>5}  {:>10}  {:>8.4}  {:>7.3}  {:>9}  {:>15}  {:>13.1}",
        format!("step {}", e.step),
        e.test_accuracy,
        e.epoch_secs,
        "",
        "",
        e.allreduce_bytes as f64 / 1e6
    ) + &e
        .consensus_distance
        .map_or(String::new(), |d| format!("  {d:>9.3e}"))
}

/// One per-epoch training line, columns as [`epoch_header`].
pub fn epoch_row(m: &EpochMetrics) -> String {
    let acc = m.test_accuracy.map_or(String::new(), |a| format!("  {a:>8.4}"));
    format!(
        "{:>5}  {:>10.4}{acc}  {:>7.3}  {:>9.0}  {:>14.1}%  {:>13.1}",
        m.epoch,
        m.train_loss,
        m.epoch_secs,
        m.samples_per_sec,
        100.0 * m.allreduce_secs / m.epoch_secs.max(1e-12),
        m.allreduce_bytes as f64 / 1e6
    ) + &m
        .consensus_distance
        .map_or(String::new(), |d| format!("  {d:>9.3e}"))
}
